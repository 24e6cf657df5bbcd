"""Writes ``models/learn_validation.npz``: what ``pixelperfect learn`` checks an adaptation against.

The shipped engine's outputs on training's validation split (``training/validation_outputs.py``):
the authentic validation photos with their MOS, and the synthetic samples of the validation
pristine photos, for "good photos kept Good" and "damage flagged".

No photo is stored, only 57 numbers a sample. Run it again whenever the models change (the file
records the model version, and ``learn`` refuses a file of other models).

Run: python -m experiments.learn_validation_data --pristine DIR --mos-csv CSV [--out models/learn_validation.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pixelperfect_daemon.config import PACKAGE_MODELS_DIR
from pixelperfect_daemon.training.validation_outputs import engine_outputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=PACKAGE_MODELS_DIR)
    parser.add_argument("--out", type=Path, default=PACKAGE_MODELS_DIR / "learn_validation.npz")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    with tqdm(unit="photo", desc="validation photos", file=sys.stderr) as bar:
        data = engine_outputs(args.pristine, args.mos_csv, args.models, bar.update)
    np.savez_compressed(args.out, **data)
    print(
        f"{args.out}: {len(data['authentic_mos'])} authentic photos, {len(data['synthetic_level'])} synthetic "
        "samples "
        f"of model {data['model_version']}"
    )


if __name__ == "__main__":
    main()
