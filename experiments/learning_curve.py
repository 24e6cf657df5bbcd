"""The learning curve of ``pixelperfect learn`` with simulated reviewers on the scored CLIVE photos.

Each scored photo is analysed once by the shipped engine (its ``LEARN_INPUTS``). A simulated
reviewer decides every photo by a rule; ``pixelperfect learn``'s own procedure (``learning.py``:
the cross-validated fit, then the checks on the shipped validation data, the adaptation kept only
when it passes them) learns from N of their decisions, drawn at random from the photos the shipped
models were trained on, and is measured on the photos that reviewer did not review:

* the 100 validation photos the shipped models never saw (the honest figure);
* the other training photos (the models fitted their quality score to these, so the shipped
  verdict is better on them than it would be on new photos).

Reviewers:
* ``strict``: every photo with a MOS below 55 is Poor (the shipped line is 50, and the verdict
  keeps many fair photos Good);
* ``night``: photos whose mean luma is below ``--dark`` are Good whatever their score, the others
  Poor below MOS 50 (a library that keeps its dark night photos);
* ``night-models``: the same dark photos Good, the others as the shipped verdict says (the taste
  alone, without the models' disagreement with the crowd elsewhere).

Each row gives the gain of what ``learn`` saved (the shipped verdict where it saved nothing) and,
beside it, of the fitted adaptation before the checks ("unchecked"), so the cost of the checks shows.
``--pool unseen`` draws the reviews from the 100 unseen photos instead (and measures on the rest).

Run: python -m experiments.learning_curve --mos-csv ../shared/data/manifest.csv --pristine ../shared/data/pristine
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

from pixelperfect_daemon.adaptation import LEARN_INPUTS
from pixelperfect_daemon.config import PACKAGE_MODELS_DIR
from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.learning import (
    ENFORCED_DAMAGE,
    MARGIN,
    Reviews,
    fit_adaptation,
    guard_failures,
    load_validation,
    validation_measures,
)
from pixelperfect_daemon.training import dataset
from pixelperfect_daemon.verdict import is_poor

SIZES = (10, 25, 50, 100)
SEED = 0  # the shipped models' training seed (their split)


def analysed_photos(mos_csv: Path, pristine: Path, models_dir: Path, cache: Path) -> dict[str, np.ndarray]:
    """LEARN_INPUTS, MOS and split of every scored photo (cached: the engine runs once per photo, per
    model version)."""
    analyzer = Analyzer(models_dir)
    if cache.is_file():
        with np.load(cache) as data:
            if str(data.get("model_version", "")) == analyzer.model_version:
                return dict(data)
    sources = dataset.read_mos_csv(mos_csv)
    splits = dataset.assign_splits(dataset.find_pristine(pristine) + sources, SEED)
    from tqdm import tqdm

    inputs = []
    for source in tqdm(sources, unit="photo", desc="analysing", file=sys.stderr):
        inputs.append(analyzer.analyze_path(source.path).learn_inputs)
    data = {
        "inputs": np.asarray(inputs, dtype=float),
        "mos": np.array([s.mos for s in sources]),
        "validation": np.array([splits[s.path] == "val" for s in sources]),
        "name": np.array([s.path.name for s in sources]),
        "model_version": np.array(analyzer.model_version),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def reviewer(name: str, mos: np.ndarray, luma: np.ndarray, shipped: np.ndarray, dark: float) -> np.ndarray:
    """Each photo's verdict by the named simulated reviewer (True: Poor)."""
    if name == "strict":
        return mos < 55
    if name == "night":  # dark photos Good, the others by the crowd's line
        return (mos < 50) & (luma >= dark)
    if name == "night-models":  # dark photos Good, the others as the shipped models say
        return shipped & (luma >= dark)
    raise ValueError(name)


def run(
    data,
    validation,
    analyzer: Analyzer,
    name: str,
    sizes,
    draws: int,
    dark: float,
    pool_of: str,
    margin: float = MARGIN,
) -> list[dict]:
    inputs, mos, unseen = data["inputs"], data["mos"], data["validation"].astype(bool)
    luma = inputs[:, LEARN_INPUTS.index("overview_luma_mean")]
    shipped = np.asarray(is_poor(inputs[:, 0], inputs[:, 1], analyzer.poor_threshold, analyzer.poor_below_quality))
    truth = reviewer(name, mos, luma, shipped, dark)

    def shipped_rule(x):
        return np.asarray(is_poor(x[:, 0], x[:, 1], analyzer.poor_threshold, analyzer.poor_below_quality))

    before = validation_measures(validation, shipped_rule)
    pool = np.flatnonzero(unseen if pool_of == "unseen" else ~unseen)
    rows = []
    for size in sizes:
        for draw in range(draws):
            rng = np.random.default_rng(1000 * size + draw)
            reviewed = rng.choice(pool, size=size, replace=False)
            reviews = Reviews(inputs=inputs[reviewed], poor=truth[reviewed], paths=[])
            row = {"reviews": size, "draw": draw, "saved": False, "refused": []}
            fitted = kept = shipped
            if 0 < truth[reviewed].sum() < size:
                adaptation, _ = fit_adaptation(
                    reviews, validation, analyzer.model_version, analyzer.poor_threshold, analyzer.poor_below_quality
                )
                if adaptation is not None:
                    after = validation_measures(validation, adaptation.is_poor, shipped_rule)
                    row.update({f"after {k}": v for k, v in after.items()})
                    failures = guard_failures(before, after, margin)
                    row["refused"] = [
                        failure.rsplit(" ", 3)[0].replace(" (levels 3-5) flagged", "") for failure in failures
                    ]
                    fitted = adaptation.is_poor(inputs)
                    if not row["refused"]:
                        row["saved"], kept = True, fitted
            not_reviewed = np.ones(len(mos), bool)
            not_reviewed[reviewed] = False
            for where, mask in (("unseen", unseen & not_reviewed), ("training", ~unseen & not_reviewed)):
                row[f"shipped {where}"] = float(np.mean(shipped[mask] == truth[mask]))
                row[f"adapted {where}"] = float(np.mean(kept[mask] == truth[mask]))
                row[f"unchecked {where}"] = float(np.mean(fitted[mask] == truth[mask]))
            # Of the unreviewed photos the shipped verdict gets wrong for this reviewer, how many the
            # saved adaptation gets right; of those it gets right, how many it gets wrong.
            wrong = not_reviewed & (shipped != truth)
            right = not_reviewed & (shipped == truth)
            row["fixed"] = float(np.mean(kept[wrong] == truth[wrong])) if wrong.any() else 0.0
            row["broken"] = float(np.mean(kept[right] != truth[right])) if right.any() else 0.0
            rows.append(row)
    return rows, before, truth


def _gain(group, kind, where):
    values = np.array([r[f"{kind} {where}"] - r[f"shipped {where}"] for r in group])
    return f"{values.mean():+.3f} ± {values.std():.3f}"


def summary(rows: list[dict], before: dict, name: str, truth, data, pool_of: str) -> str:
    unseen = data["validation"].astype(bool)
    lines = [
        f"reviewer {name}: {int(truth.sum())} of {len(truth)} photos Poor ({int(truth[unseen].sum())} of the "
        f"{int(unseen.sum())} unseen ones); reviews drawn from the {pool_of} photos",
        "| reviews | saved (of draws) | refused for | shipped agreement, unseen | gain, unseen: saved / "
        "unchecked | gain, other training photos: saved / unchecked | clear BA, saved (min) | "
        "blur / noise / compression / transmission flagged, saved (min) | clean kept Good, saved (mean) | "
        "unreviewed disagreements fixed / agreements broken, saved |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sorted({r["reviews"] for r in rows}):
        group = [r for r in rows if r["reviews"] == size]
        kept = [r for r in group if r["saved"]]
        refused = collections.Counter(reason for r in group for reason in r["refused"])
        ba = min((r["after clear Good/Poor balanced accuracy"] for r in kept), default=float("nan"))
        damage = " / ".join(
            f"{min((r[f'after {d} damage (levels 3-5) flagged'] for r in kept), default=float('nan')):.3f}"
            for d in ENFORCED_DAMAGE
        )
        clean = np.mean([r["after clean synthetic variants kept Good"] for r in kept]) if kept else float("nan")
        lines.append(
            f"| {size} | {len(kept)} / {len(group)} | {', '.join(f'{k} {n}' for k, n in refused.items()) or '–'} | "
            f"{np.mean([r['shipped unseen'] for r in group]):.3f} | {_gain(group, 'adapted', 'unseen')} / "
            f"{_gain(group, 'unchecked', 'unseen')} | {_gain(group, 'adapted', 'training')} / "
            f"{_gain(group, 'unchecked', 'training')} | {ba:.3f} | {damage} | {clean:.3f} | "
            f"{np.mean([r['fixed'] for r in group]):.3f} / {np.mean([r['broken'] for r in group]):.3f} |"
        )
    lines.append(
        f"shipped on the validation data: clear BA {before['clear Good/Poor balanced accuracy']:.3f}, "
        + ", ".join(f"{d} {before[f'{d} damage (levels 3-5) flagged']:.3f}" for d in ENFORCED_DAMAGE)
        + f", clean kept Good {before['clean synthetic variants kept Good']:.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--pristine", type=Path, required=True, help="the pristine photos (for training's split)")
    parser.add_argument("--models", type=Path, default=PACKAGE_MODELS_DIR)
    parser.add_argument("--cache", type=Path, default=Path(".cache/learning-curve-inputs.npz"))
    parser.add_argument("--reviewers", nargs="+", default=["strict", "night", "night-models"])
    parser.add_argument(
        "--pool",
        choices=["training", "unseen"],
        default="training",
        help="draw the reviews from the photos the models were trained on, or from the unseen ones",
    )
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--dark", type=float, default=0.25, help="the night reviewer keeps photos darker than this")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--margin", type=float, default=MARGIN, help="what the checks allow to be lost (learn's: 0.01)")
    args = parser.parse_args(argv)
    analyzer = Analyzer(args.models)
    validation = load_validation(args.models, analyzer.model_version)
    data = analysed_photos(args.mos_csv, args.pristine, args.models, args.cache)
    for name in args.reviewers:
        rows, before, truth = run(
            data, validation, analyzer, name, args.sizes, args.draws, args.dark, args.pool, args.margin
        )
        print(summary(rows, before, name, truth, data, args.pool))
        print()


if __name__ == "__main__":
    main()
