"""Does a candidate features model (e.g. int8) keep the validation figures of another folder's?

Both model folders run training's validation split through the engine
(``training/validation_outputs.py``: the 100 authentic validation photos with their MOS, the 38
validation pristine photos' 16 clean variants and one damaged round, every defect at levels 1-5).
The candidate passes when SRCC, the clear Good/Poor balanced accuracy and the defect top-1 each
drop by at most ``--margin`` (issue 27: 0.005). ``pixelperfect train`` applies the same gate.

Run: python -m experiments.compare_features_models --pristine DIR --mos-csv CSV --candidate DIR
     [--base models/] [--base-data X.npz] [--candidate-data Y.npz]
(``--*-data``: the engine's outputs of that folder, kept there to skip the run next time;
``models/learn_validation.npz`` holds the shipped folder's)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pixelperfect_daemon.config import PACKAGE_MODELS_DIR
from pixelperfect_daemon.training.validation_outputs import (
    GATE_MARGIN,
    engine_outputs,
    figures,
    figures_table,
    gate_failures,
)


def load_or_run(path: Path | None, models: Path, pristine: Path, mos_csv: Path) -> dict:
    if path is not None and path.exists():
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    outputs = engine_outputs(pristine, mos_csv, models)
    if path is not None:
        np.savez_compressed(path, **outputs)
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--base", type=Path, default=PACKAGE_MODELS_DIR)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--base-data", type=Path)
    parser.add_argument("--candidate-data", type=Path)
    parser.add_argument("--margin", type=float, default=GATE_MARGIN)
    args = parser.parse_args(argv)
    labels = json.loads((args.base / "labels.json").read_text())
    rule = labels["poor_threshold"], labels["poor_below_quality"]
    base = figures(load_or_run(args.base_data, args.base, args.pristine, args.mos_csv), *rule)
    candidate = figures(load_or_run(args.candidate_data, args.candidate, args.pristine, args.mos_csv), *rule)
    print(figures_table(base, candidate, (str(args.base), str(args.candidate))))
    failed = gate_failures(base, candidate, args.margin)
    print(f"* may drop by at most {args.margin}: " + ("passes" if not failed else "FAILS: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
