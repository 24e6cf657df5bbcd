"""``pixelperfect learn``: fit a library adaptation (``adaptation.py``) to the index's reviews, check
it, and save it only when it helps.

The fit is a logistic regression on the reviewers' Good/Poor decisions whose starting point is the
shipped verdict: its margin enters with a weight near 1 and every other coefficient is pulled to 0
by a ridge penalty, so few reviews move the verdict little. The penalty is chosen by
cross-validation on the reviews (with "no adaptation" among the choices). Before saving, the
adaptation must

* agree with the reviewers more often than the shipped verdict, cross-validated;
* lose at most ``MARGIN`` in SRCC and in clear Good/Poor balanced accuracy on the shipped models'
  authentic validation photos (``CROWD_CHECK``: exposure and colour left to the library), and at
  most ``MARGIN`` of the synthetic blur, noise, compression and transmission damage (levels 3-5)
  flagged on their pristine validation photos (``models/learn_validation.npz``, made by
  ``experiments/learn_validation_data.py``).

Exposure and colour are the library's taste: an adaptation may keep Good what the models flag for
them (``adaptation.held_poor`` keeps every other flagged photo Poor), and their damage flagged is
shown, not enforced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .adaptation import (
    LEARN_INPUTS,
    TASTE_DEFECTS,
    LibraryAdaptation,
    adaptation_file,
    base_margin,
    features,
    held_poor,
    most_likely_defect,
    unpack,
)
from .common import utc_now
from .engine import Analyzer
from .evaluation import clear_balanced_accuracy, clearly_good_and_poor
from .index import ImageIndex
from .labels import DEFECTS
from .metrics import srcc

log = logging.getLogger(__name__)

VALIDATION_FILE = "learn_validation.npz"
MIN_REVIEWS = 10
MARGIN = 0.01  # the most an adaptation may lose on the shipped validation data
# Ridge strengths tried, strongest first (a tie goes to the smaller change).
STRENGTHS = (100.0, 30.0, 10.0, 3.0, 1.0)
FOLDS = 5
# Synthetic damage a library's taste must not hide, checked at these levels (the Poor ones).
ENFORCED_DAMAGE = ("blur", "noise", "compression", "transmission_errors")
POOR_LEVELS = (3, 4, 5)
_NEWTON_STEPS = 50
CROWD_CHECK = "clear Good/Poor balanced accuracy, exposure and colour left to the library"
SRCC_MEASURE = "SRCC of the quality score with MOS"
# The validation measures an adaptation may lose at most MARGIN of.
ENFORCED_MEASURES = (CROWD_CHECK, SRCC_MEASURE, *(f"{name} damage (levels 3-5) flagged" for name in ENFORCED_DAMAGE))


class LearnError(Exception):
    """Learning cannot start (no validation data for these models, an unreadable index ...)."""


@dataclass
class Reviews:
    inputs: np.ndarray  # (N, len(LEARN_INPUTS))
    poor: np.ndarray  # (N,) bool: the reviewer's verdict
    paths: list[str]
    decoded: int = 0  # rows whose inputs were found again by decoding the file
    decode_seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # why some reviews could not be used


@dataclass(frozen=True)
class Validation:
    """The shipped models' validation samples as ``LEARN_INPUTS`` rows (learn_validation.npz)."""

    model_version: str
    authentic_inputs: np.ndarray
    authentic_mos: np.ndarray
    synthetic_inputs: np.ndarray
    synthetic_defect: np.ndarray
    synthetic_level: np.ndarray


@dataclass
class LearnOutcome:
    table: str
    saved: bool
    reason: str
    adaptation: LibraryAdaptation | None = None
    path: Path | None = None
    reviews: Reviews | None = None

    @property
    def reviews_line(self) -> str:
        if self.reviews is None:
            return ""
        line = f"{len(self.reviews.poor)} reviews used"
        if self.reviews.decoded:
            line += f", {self.reviews.decoded} of them decoded again ({self.reviews.decode_seconds:.1f} s)"
        if self.reviews.skipped:
            line += f"; {len(self.reviews.skipped)} left out (a decoder finding, or the file cannot be analysed)"
        return line


def load_validation(models_dir: Path, model_version: str) -> Validation:
    path = Path(models_dir) / VALIDATION_FILE
    try:
        with np.load(path) as data:
            validation = Validation(
                model_version=str(data["model_version"]),
                authentic_inputs=data["authentic_inputs"].astype(float),
                authentic_mos=data["authentic_mos"].astype(float),
                synthetic_inputs=data["synthetic_inputs"].astype(float),
                synthetic_defect=data["synthetic_defect"],
                synthetic_level=data["synthetic_level"],
            )
            names = tuple(str(n) for n in data["learn_inputs"])
    except (OSError, KeyError, ValueError) as error:
        raise LearnError(f"cannot read the shipped validation data {path}: {error}") from None
    if names != LEARN_INPUTS:
        raise LearnError(f"{path} holds other inputs than this version learns from")
    if validation.model_version != model_version:
        raise LearnError(
            f"{path} belongs to models {validation.model_version}, these are {model_version}: "
            "rebuild it with `python -m experiments.learn_validation_data`"
        )
    return validation


def collect_reviews(index: ImageIndex, analyzer: Analyzer) -> Reviews:
    """The reviewed rows' inputs and verdicts; rows analysed before the index kept inputs, or by other
    models, are decoded again (and their inputs kept). Files with a decoder finding are left out: they are Poor whatever
    an adaptation says."""
    inputs, poor, paths, skipped = [], [], [], []
    decoded, seconds = 0, 0.0
    for row in index.reviewed_rows():
        if row.get("error"):
            skipped.append(f"{row['path']}: a decoder finding decides it")
            continue
        values = unpack(row.get("learn_inputs"))
        if (row.get("model_version") or "").split("+lib-")[0] != analyzer.card["model_version"]:
            values = None  # kept by other models: their outputs are not these models'
        if values is None:
            started = time.perf_counter()
            result = analyzer.analyze_path(Path(row["path"]))
            seconds += time.perf_counter() - started
            if result.verdict == "error" or result.learn_inputs is None or result.error:
                skipped.append(f"{row['path']}: {result.error or 'cannot be analysed again'}")
                continue
            decoded += 1
            values = np.asarray(result.learn_inputs, dtype=float)
            index.set_learn_inputs(Path(row["path"]), values)
        inputs.append(values)
        poor.append(row["reviewed_verdict"] == "poor")
        paths.append(row["path"])
    return Reviews(
        inputs=np.asarray(inputs, dtype=float).reshape(-1, len(LEARN_INPUTS)),
        poor=np.asarray(poor, bool),
        paths=paths,
        decoded=decoded,
        decode_seconds=seconds,
        skipped=skipped,
    )


def _fit(margin: np.ndarray, standardised: np.ndarray, poor: np.ndarray, strength: float) -> np.ndarray:
    """Penalised logistic regression by Newton's method: coefficients of [margin, 1, features],
    pulled towards [1, 0, 0 ...] (the shipped verdict)."""
    design = np.column_stack([margin, np.ones(len(margin)), standardised])
    prior = np.zeros(design.shape[1])
    prior[0] = 1.0
    theta = prior.copy()
    penalty = 2 * strength * np.eye(design.shape[1])
    target = poor.astype(float)
    for _ in range(_NEWTON_STEPS):
        probability = 1 / (1 + np.exp(-np.clip(design @ theta, -30, 30)))
        gradient = design.T @ (probability - target) + penalty @ (theta - prior)
        hessian = design.T @ (design * (probability * (1 - probability))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta


def _predict(theta: np.ndarray, margin: np.ndarray, standardised: np.ndarray) -> np.ndarray:
    return theta[0] * margin + theta[1] + standardised @ theta[2:] >= 0


def _folds(poor: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold per review, each verdict dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(poor), dtype=int)
    start = 0
    for label in (False, True):
        members = rng.permutation(np.flatnonzero(poor == label))
        fold[members] = (np.arange(len(members)) + start) % folds
        start += len(members)
    return fold


def cross_validated_agreement(
    margin, standardised, poor, strength: float | None, folds: int, held: np.ndarray | None = None
) -> float:
    """Agreement with the reviewers of verdicts each fitted without them (None: the shipped verdict);
    ``held``: the reviews an adaptation must leave Poor (``adaptation.held_poor``)."""
    if strength is None:
        return float(np.mean((margin >= 0) == poor))
    held = np.zeros(len(poor), dtype=bool) if held is None else held
    fold_of = _folds(poor, folds)
    predicted = np.zeros(len(poor), dtype=bool)
    for fold in range(folds):
        out = fold_of == fold
        if not out.any():
            continue
        theta = _fit(margin[~out], standardised[~out], poor[~out], strength)
        predicted[out] = _predict(theta, margin[out], standardised[out]) | held[out]
    return float(np.mean(predicted == poor))


def fit_adaptation(
    reviews: Reviews,
    validation: Validation,
    base_model_version: str,
    poor_threshold: float,
    poor_below_quality: float,
    folds: int = FOLDS,
    strengths=STRENGTHS,
) -> tuple[LibraryAdaptation | None, dict[str, float]]:
    """The adaptation the cross-validation prefers (None when none beats the shipped verdict) and
    the cross-validated agreement of each choice ({"shipped": ..., "ridge 30": ...})."""
    reference = features(np.vstack([validation.authentic_inputs, validation.synthetic_inputs]))
    mean, std = reference.mean(axis=0), np.maximum(reference.std(axis=0), 1e-6)
    margin = base_margin(reviews.inputs, poor_threshold, poor_below_quality)
    standardised = (features(reviews.inputs) - mean) / std
    held = held_poor(reviews.inputs, poor_threshold, poor_below_quality)
    folds = max(2, min(folds, int(min(reviews.poor.sum(), (~reviews.poor).sum())) or 2))
    agreement = {"shipped": cross_validated_agreement(margin, standardised, reviews.poor, None, folds)}
    best, best_strength = agreement["shipped"], None
    for strength in strengths:
        name = f"ridge {strength:g}"
        agreement[name] = cross_validated_agreement(margin, standardised, reviews.poor, strength, folds, held)
        if agreement[name] > best + 1e-9:
            best, best_strength = agreement[name], strength
    if best_strength is None:
        return None, agreement
    theta = _fit(margin, standardised, reviews.poor, best_strength)
    adaptation = LibraryAdaptation(
        base_model_version=base_model_version,
        poor_threshold=float(poor_threshold),
        poor_below_quality=float(poor_below_quality),
        scale=float(theta[0]),
        bias=float(theta[1]),
        weights=tuple(float(v) for v in theta[2:]),
        feature_mean=tuple(float(v) for v in mean),
        feature_std=tuple(float(v) for v in std),
        reviews=len(reviews.poor),
        learnt_at=utc_now(),
    )
    return adaptation, {**agreement, "chosen": best}


def validation_measures(
    validation: Validation,
    poor: Callable[[np.ndarray], np.ndarray],
    shipped: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """The shipped validation figures of a verdict rule ``poor(inputs) -> bool array``; ``shipped``:
    the shipped models' rule (when ``poor`` is another), for the crowd check."""
    mos = validation.authentic_mos
    flagged = poor(validation.authentic_inputs)
    good, clearly_poor = clearly_good_and_poor(mos)
    quality = validation.authentic_inputs[:, LEARN_INPUTS.index("quality")]
    synthetic_flagged = poor(validation.synthetic_inputs)
    level, defect = validation.synthetic_level, validation.synthetic_defect
    # Exposure and colour are the library's taste: on photos the models judge on them, a verdict that
    # departs from the crowd is not held against the adaptation (the shipped verdict is counted).
    taste = np.isin(most_likely_defect(validation.authentic_inputs), TASTE_DEFECTS)
    against_crowd = flagged != clearly_poor
    crowd_flagged = np.where(taste & against_crowd, (shipped or poor)(validation.authentic_inputs), flagged)
    measures = {
        "clear Good/Poor balanced accuracy": clear_balanced_accuracy(mos, flagged),
        CROWD_CHECK: clear_balanced_accuracy(mos, crowd_flagged),
        SRCC_MEASURE: srcc(quality, mos),  # an adaptation leaves the score as it is
        "clearly good photos (MOS >= 65) kept Good": float(np.mean(~flagged[good])),
        "clearly poor photos (MOS <= 40) flagged": float(np.mean(flagged[clearly_poor])),
        "clean synthetic variants kept Good": float(np.mean(~synthetic_flagged[level == 0])),
    }
    damaged = np.isin(level, POOR_LEVELS)
    for index, name in enumerate(DEFECTS):
        rows = damaged & (defect == index)
        if rows.any():
            measures[f"{name} damage (levels 3-5) flagged"] = float(np.mean(synthetic_flagged[rows]))
    return measures


def guard_failures(before: dict[str, float], after: dict[str, float], margin: float = MARGIN) -> list[str]:
    return [
        f"{key} {before[key]:.3f} -> {after[key]:.3f}"
        for key in ENFORCED_MEASURES
        if key in before and after[key] < before[key] - margin - 1e-9
    ]


def format_table(
    reviews: Reviews,
    agreement: dict[str, float],
    before: dict[str, float] | None,
    after: dict[str, float] | None,
    folds: int = FOLDS,
) -> str:
    rows = [("", "shipped", "adapted")]
    chosen = agreement.get("chosen")
    rows.append(
        (
            f"agreement with the {len(reviews.poor)} reviews ({reviews.poor.sum()} Poor), cross-validated",
            f"{agreement['shipped']:.3f}",
            "–" if chosen is None else f"{chosen:.3f}",
        )
    )
    if before is not None:
        for key, value in before.items():
            label = f"shipped validation: {key}{' *' if key in ENFORCED_MEASURES else ''}"
            rows.append((label, f"{value:.3f}", "–" if after is None else f"{after[key]:.3f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {a:>7}  {b:>7}" for name, a, b in rows]
    lines.insert(1, f"{'-' * width}  {'-' * 7}  {'-' * 7}")
    lines.append(f"* may not fall by more than {MARGIN}")
    return "\n".join(lines)


def learn_library(settings, *, dry_run: bool = False, analyzer: Analyzer | None = None) -> LearnOutcome:
    """Fit, check and (unless ``dry_run`` or it does not help) save this library's adaptation."""
    analyzer = analyzer or Analyzer.from_settings(settings.analysis)
    base_version = analyzer.card["model_version"]
    validation = load_validation(analyzer.models_dir, base_version)
    with ImageIndex(settings.index.database) as index:
        reviews = collect_reviews(index, analyzer)
    for reason in reviews.skipped:
        log.info("review not used: %s", reason)
    none_agreement = {
        "shipped": float(
            np.mean(
                (base_margin(reviews.inputs, analyzer.poor_threshold, analyzer.poor_below_quality) >= 0) == reviews.poor
            )
        )
        if len(reviews.poor)
        else float("nan")
    }
    if len(reviews.poor) < MIN_REVIEWS or reviews.poor.all() or not reviews.poor.any():
        reason = (
            f"{len(reviews.poor)} usable reviews; learning needs at least {MIN_REVIEWS}, with both Good and "
            "Poor verdicts among them"
        )
        return LearnOutcome(format_table(reviews, none_agreement, None, None), False, reason, reviews=reviews)
    adaptation, agreement = fit_adaptation(
        reviews, validation, base_version, analyzer.poor_threshold, analyzer.poor_below_quality
    )
    from .verdict import is_poor

    def shipped(inputs):
        return np.asarray(is_poor(inputs[:, 0], inputs[:, 1], analyzer.poor_threshold, analyzer.poor_below_quality))

    before = validation_measures(validation, shipped)
    if adaptation is None:
        reason = "no adaptation agreed with the reviewers more often than the shipped verdict"
        return LearnOutcome(format_table(reviews, agreement, before, None), False, reason, reviews=reviews)
    after = validation_measures(validation, adaptation.is_poor, shipped)
    table = format_table(reviews, agreement, before, after)
    failures = guard_failures(before, after)
    if failures:
        return LearnOutcome(
            table,
            False,
            "it would lose too much on the shipped validation data: " + "; ".join(failures),
            adaptation,
            reviews=reviews,
        )
    if dry_run:
        return LearnOutcome(table, False, "dry run: nothing saved", adaptation, reviews=reviews)
    path = save_adaptation(settings.learn_folder, LibraryAdaptation(**{**adaptation.__dict__, "report": table}))
    return LearnOutcome(
        table, True, f"saved {path} ({base_version}+lib-{adaptation.digest})", adaptation, path, reviews=reviews
    )


def save_adaptation(folder: Path, adaptation: LibraryAdaptation) -> Path:
    """Write atomically: a daemon reading the file never sees half of it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = adaptation_file(folder)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(adaptation.to_json(), encoding="utf-8")
    temporary.replace(path)
    return path


def reset_library(folder: Path) -> str:
    """Remove the saved adaptation (and its folder when nothing else is in it); nothing else."""
    path = adaptation_file(folder)
    if not path.is_file():
        return f"no adaptation in {folder}: the shipped verdicts are in use"
    path.unlink()
    try:
        Path(folder).rmdir()
    except OSError:
        pass  # the folder holds other files: they are not ours to remove
    return f"removed {path}: the shipped verdicts are in use again (files already tagged keep their tags)"
