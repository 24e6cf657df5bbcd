"""A library's adaptation of the Good/Poor verdict, learnt from its reviewers (``pixelperfect learn``).

The shipped models stay as they are. What an image's analysis produced (P(poor), the quality score,
the seven defect probabilities and both views' measured statistics: ``LEARN_INPUTS``, 57 numbers a
file, kept in the index) is turned into a margin: the shipped verdict's own margin (``base_margin``:
at or above 0 is Poor, exactly the shipped rule) plus a small penalised linear correction fitted to
the reviewers' decisions (``learning.py``). The correction is numpy arithmetic on a dozen numbers, so
using an adaptation costs nothing at run time and needs no TensorFlow.

The adaptation lives in one JSON file in ``[learn] folder``; its digest names it in the model
version (``<base>+lib-<digest>``), so tags and index rows say which verdicts it decided.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .labels import DEFECTS
from .view_statistics import STATISTIC_NAMES

log = logging.getLogger(__name__)

ADAPTATION_FILE = "adaptation.json"
FORMAT_VERSION = 1
LEARN_INPUTS = (
    "p_poor",
    "quality",
    *(f"score_{defect}" for defect in DEFECTS),
    *(f"overview_{name}" for name in STATISTIC_NAMES),
    *(f"detail_{name}" for name in STATISTIC_NAMES),
)
# The readings the correction may use: the quality score, exposure and colour (what a reviewer's
# taste is most often about) and the defect probabilities. Exposure enters as hinges, so a taste
# for dark photos does not move bright ones.
DARK_BELOW = 0.30
BRIGHT_ABOVE = 0.70
FEATURES = (
    "quality",
    "darkness",  # how far the mean luma lies below DARK_BELOW, in tenths
    "brightness",  # how far it lies above BRIGHT_ABOVE
    "overview_colourfulness",
    *(f"score_{defect}" for defect in DEFECTS),
)
# A library may keep Good what the models flag for exposure or colour (its taste), not what they flag
# for damage: a photo the shipped verdict calls Poor whose most likely defect is another stays Poor.
TASTE_DEFECTS = ("luminance_contrast", "color_distortion")
# One logit unit of margin per this much quality score (5 MOS points, the soft target's scale in training).
QUALITY_MARGIN_SCALE = 0.05
_EPS = 1e-4


class AdaptationError(ValueError):
    """An adaptation file that cannot be used (unreadable, another format, other models)."""


def learn_inputs(
    p_poor: float, quality: float, defect_scores: dict[str, float], statistics: np.ndarray | None
) -> tuple[float, ...] | None:
    """One image's ``LEARN_INPUTS`` (None when the statistics are unknown)."""
    if statistics is None:
        return None
    values = [p_poor, quality, *(defect_scores[d] for d in DEFECTS), *np.asarray(statistics, dtype=float)]
    if len(values) != len(LEARN_INPUTS):
        return None
    return tuple(float(v) for v in values)


def pack(inputs) -> bytes:
    """The index's storage of ``LEARN_INPUTS``: float32, little-endian."""
    return np.asarray(inputs, dtype="<f4").tobytes()


def unpack(blob: bytes | None) -> np.ndarray | None:
    if blob is None or len(blob) != 4 * len(LEARN_INPUTS):
        return None
    return np.frombuffer(blob, dtype="<f4").astype(float)


def _column(inputs: np.ndarray, name: str) -> np.ndarray:
    return inputs[:, LEARN_INPUTS.index(name)]


def base_margin(inputs: np.ndarray, poor_threshold: float, poor_below_quality: float) -> np.ndarray:
    """The shipped verdict as a margin, in logit units: >= 0 exactly where ``verdict.is_poor`` says Poor."""
    p_poor = np.clip(_column(inputs, "p_poor"), _EPS, 1 - _EPS)
    threshold = np.clip(poor_threshold, _EPS, 1 - _EPS)
    margin = np.log(p_poor / (1 - p_poor)) - np.log(threshold / (1 - threshold))
    # p_poor >= threshold must stay >= 0 after clipping (threshold 0 or 1 included).
    margin = np.where(_column(inputs, "p_poor") >= poor_threshold, np.maximum(margin, 0.0), np.minimum(margin, -_EPS))
    if poor_below_quality > 0:
        quality_margin = (poor_below_quality - _column(inputs, "quality")) / QUALITY_MARGIN_SCALE
        quality_margin = np.where(quality_margin > 0, quality_margin, np.minimum(quality_margin, -_EPS))
        margin = np.maximum(margin, quality_margin)
    return margin


def most_likely_defect(inputs: np.ndarray) -> np.ndarray:
    """The name of each row's most likely defect."""
    scores = np.stack([_column(inputs, f"score_{d}") for d in DEFECTS], axis=1)
    return np.asarray(DEFECTS)[scores.argmax(axis=1)]


def held_poor(
    inputs: np.ndarray, poor_threshold: float, poor_below_quality: float, taste_defects=TASTE_DEFECTS
) -> np.ndarray:
    """The photos an adaptation must leave Poor: the shipped verdict flags them and their most likely
    defect is not one of ``taste_defects``."""
    taste = np.isin(most_likely_defect(inputs), list(taste_defects))
    return (base_margin(inputs, poor_threshold, poor_below_quality) >= 0) & ~taste


def features(inputs: np.ndarray) -> np.ndarray:
    """(N, len(FEATURES)) raw features of ``LEARN_INPUTS`` rows (N, 57)."""
    luma = _column(inputs, "overview_luma_mean")
    columns = [
        _column(inputs, "quality"),
        np.maximum(0.0, DARK_BELOW - luma) / 0.1,
        np.maximum(0.0, luma - BRIGHT_ABOVE) / 0.1,
        _column(inputs, "overview_colourfulness"),
    ]
    columns += [_column(inputs, f"score_{d}") for d in DEFECTS]
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class LibraryAdaptation:
    """Poor when ``scale * base_margin + bias + weights . standardised features >= 0``, and always
    where the shipped verdict flags damage (``held_poor``)."""

    base_model_version: str
    poor_threshold: float
    poor_below_quality: float
    scale: float
    bias: float
    weights: tuple[float, ...]
    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    reviews: int  # how many reviewed files it was learnt from
    learnt_at: str
    report: str = ""  # the before/after table printed when it was learnt
    taste_defects: tuple[str, ...] = TASTE_DEFECTS  # the defects whose Poor verdicts it may turn Good
    format_version: int = FORMAT_VERSION

    def margin(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        standardised = (features(inputs) - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)
        return (
            self.scale * base_margin(inputs, self.poor_threshold, self.poor_below_quality)
            + self.bias
            + standardised @ np.asarray(self.weights)
        )

    def is_poor(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        held = held_poor(inputs, self.poor_threshold, self.poor_below_quality, self.taste_defects)
        return (self.margin(inputs) >= 0) | held

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @property
    def digest(self) -> str:
        """Names this adaptation: a hash of what decides its verdicts."""
        deciding = {k: v for k, v in asdict(self).items() if k not in ("learnt_at", "report", "reviews")}
        return hashlib.sha256(json.dumps(deciding, sort_keys=True).encode()).hexdigest()[:8]

    @classmethod
    def from_json(cls, text: str) -> LibraryAdaptation:
        try:
            raw = json.loads(text)
            if raw.get("format_version") != FORMAT_VERSION:
                raise AdaptationError(f"format {raw.get('format_version')!r}, this version reads {FORMAT_VERSION}")
            raw["weights"], raw["feature_mean"], raw["feature_std"] = (
                tuple(float(v) for v in raw[k]) for k in ("weights", "feature_mean", "feature_std")
            )
            raw["taste_defects"] = tuple(str(v) for v in raw.get("taste_defects", TASTE_DEFECTS))
            if not set(raw["taste_defects"]) <= set(DEFECTS):
                raise ValueError(f"unknown taste defects {raw['taste_defects']}")
            adaptation = cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise AdaptationError(f"not an adaptation this version can read: {error}") from None
        sizes = {len(adaptation.weights), len(adaptation.feature_mean), len(adaptation.feature_std)}
        if sizes != {len(FEATURES)}:
            raise AdaptationError(f"it has {len(adaptation.weights)} weights, this version reads {len(FEATURES)}")
        return adaptation


def adaptation_file(folder: Path) -> Path:
    return Path(folder) / ADAPTATION_FILE


def load_adaptation(folder: Path, base_model_version: str) -> LibraryAdaptation | None:
    """The adaptation saved in ``folder`` for these models, or None (none saved, or learnt on other
    models: it would correct verdicts it never saw; logged)."""
    path = adaptation_file(folder)
    if not path.is_file():
        return None
    try:
        adaptation = LibraryAdaptation.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, AdaptationError) as error:
        log.warning("ignoring the library adaptation %s: %s", path, error)
        return None
    if adaptation.base_model_version != base_model_version:
        log.warning(
            "ignoring the library adaptation %s: learnt on models %s, these are %s; run pixelperfect learn again",
            path,
            adaptation.base_model_version,
            base_model_version,
        )
        return None
    return adaptation


def analyzer_for(settings):
    """The engine for these settings: the shipped models, with the library's adaptation when one is saved."""
    from .engine import Analyzer

    analyzer = Analyzer.from_settings(settings.analysis)
    adaptation = load_adaptation(settings.learn_folder, analyzer.card["model_version"])
    if adaptation is not None:
        analyzer.use_adaptation(adaptation)
        log.info(
            "verdicts adapted to this library (%s, learnt from %d reviews)", analyzer.model_version, adaptation.reviews
        )
    return analyzer
