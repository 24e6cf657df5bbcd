"""Retrain with moderate blur and noise (synthetic level 2) labelled Poor for stage 1.

Issue 26's moderate damage (Gaussian blur of about 1 px, white noise at PSNR 30-33 dB) falls on the
recipe's levels 1-2, which stage 1 is not taught to call Poor (``dataset.POOR_MIN_LEVEL`` = 3).
This runs ``pixelperfect train`` unchanged except that level-2 blur and noise samples get the Poor
label in both splits (the feature cache is the shipped recipe's: the labels are not part of it).
Compare its ``metrics.json`` with the shipped one, and run ``experiments.moderate_damage --models``
on ``--out``. Nothing here ships.

Run: python -m experiments.level2_poor_retrain --pristine DIR --mos-csv CSV --out DIR
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.training import train

MODERATE = ("blur", "noise")
LEVEL = 2


def relabel(part: dict[str, np.ndarray]) -> int:
    """Label level-2 blur and noise samples Poor; return how many changed."""
    moderate = (part["level"] == LEVEL) & np.isin(part["defect"], [DEFECTS.index(name) for name in MODERATE])
    part["p_poor"] = np.where(moderate, 1.0, part["p_poor"]).astype(part["p_poor"].dtype)
    return int(moderate.sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shipped_sources_and_features = train.sources_and_features

    def with_moderate_poor(options, progress_factory=None):
        sources, data, extractor = shipped_sources_and_features(options, progress_factory)
        for key in ("synthetic_train", "synthetic_val"):
            logging.info("%s: %d level-2 blur and noise samples labelled Poor", key, relabel(data[key]))
        return sources, data, extractor

    train.sources_and_features = with_moderate_poor
    metrics = train.train(train.TrainOptions(out=args.out, pristine=args.pristine, mos_csv=args.mos_csv))
    print(f"wrote {args.out} ({metrics['model_version']})")


if __name__ == "__main__":
    main()
