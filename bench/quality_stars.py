"""Do ``[metadata] quality_stars`` ratings rise with what people think of a photo?

Analyses the scored CLIVE photos (``<data>/clive_train``, MOS in ``<data>/manifest.csv``) with the
real models, maps each quality score to stars exactly as the daemon does
(``cull_flags.stars_for_quality``), and prints per star the photo count and mean MOS, plus the
Spearman rank correlation between stars and MOS and between the raw quality score and MOS.

The quality head was fitted to these same photos' MOS, so the figures are in-sample: they show the
star mapping keeps the order of the scores, not how well the score generalises (models/README.md
has the cross-validated figures).

Usage: .venv/bin/python bench/quality_stars.py [--data ../shared/data (default: $PIXELPERFECT_SHARED_DATA)] [--limit N] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixelperfect_daemon.config import AnalysisSettings  # noqa: E402
from pixelperfect_daemon.cull_flags import STAR_BOUNDS, stars_for_quality  # noqa: E402
from pixelperfect_daemon.engine import Analyzer  # noqa: E402


def spearman(a, b) -> float:
    """Spearman's rho with average ranks for ties (stars tie a lot)."""

    def ranks(values):
        values = np.asarray(values, dtype=float)
        order = values.argsort(kind="mergesort")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(1, len(values) + 1)
        for value in np.unique(values):
            tied = values == value
            ranked[tied] = ranked[tied].mean()
        return ranked

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def scored_photos(data: Path) -> list[tuple[Path, float]]:
    with open(data / "manifest.csv", newline="", encoding="utf-8") as handle:
        return [
            (data / row["file"], float(row["mos"]))
            for row in csv.DictReader(handle)
            if row["set"] == "clive_train" and row["mos"]
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("PIXELPERFECT_SHARED_DATA", "../shared/data")))
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    photos = scored_photos(args.data)
    if args.limit:
        photos = photos[: args.limit]
    analyzer = Analyzer.from_settings(AnalysisSettings())
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda item: analyzer.analyze_path(item[0]), photos))
    pairs = [(r.quality, mos) for r, (_, mos) in zip(results, photos) if r.quality is not None]
    quality = np.array([q for q, _ in pairs])
    mos = np.array([m for _, m in pairs])
    stars = np.array([stars_for_quality(q) for q in quality])
    print(f"{len(pairs)} CLIVE photos analysed ({len(photos) - len(pairs)} errors), model {analyzer.model_version}")
    print(f"star bounds on the quality score: {STAR_BOUNDS}")
    print("| stars | photos | mean MOS | MOS range |")
    print("|---|---|---|---|")
    for star in range(1, 6):
        chosen = mos[stars == star]
        if len(chosen):
            print(f"| {star} | {len(chosen)} | {chosen.mean():.1f} | {chosen.min():.1f}-{chosen.max():.1f} |")
        else:
            print(f"| {star} | 0 | - | - |")
    print(f"Spearman(stars, MOS) = {spearman(stars, mos):.3f}")
    print(f"Spearman(quality score, MOS) = {spearman(quality, mos):.3f}")


if __name__ == "__main__":
    main()
