"""Writes ``models/learn_validation.npz``: what ``pixelperfect learn`` checks an adaptation against.

The shipped models' validation split (training's split by source photo, seed 0), run through the
shipped engine, reduced to each sample's ``adaptation.LEARN_INPUTS``:

* the authentic validation photos with their MOS (clear Good/Poor balanced accuracy, SRCC);
* the synthetic samples of the validation pristine photos, exactly those stage 1 is measured on
  (16 clean variants and one damaged round, every defect class at levels 1-5), for "good photos
  kept Good" and "damage flagged".

No photo is stored, only 57 numbers a sample. Run it again whenever the models change (the file
records the model version, and ``learn`` refuses a file of other models).

Run: python -m experiments.learn_validation_data --pristine DIR --mos-csv CSV [--out models/learn_validation.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pixelperfect_daemon.adaptation import LEARN_INPUTS
from pixelperfect_daemon.config import PACKAGE_MODELS_DIR
from pixelperfect_daemon.engine import Analyzer, is_monochrome
from pixelperfect_daemon.loading import load_image
from pixelperfect_daemon.training import dataset
from pixelperfect_daemon.views import make_views

SEED = 0  # the shipped models' training seed (their split)
BATCH = 16


def inputs_of_views(analyzer: Analyzer, views: np.ndarray) -> np.ndarray:
    """LEARN_INPUTS rows for view pairs (N, 2, 224, 224, 3), as the engine computes them."""
    rows = []
    for start in range(0, len(views), BATCH):
        batch = views[start : start + BATCH]
        for pair, outputs in zip(batch, analyzer.predict_views(batch)):
            rows.append(analyzer._result("", outputs, None, monochrome=is_monochrome(pair)).learn_inputs)
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(LEARN_INPUTS))


def build(pristine: Path, mos_csv: Path, models_dir: Path, progress=lambda n: None) -> dict[str, np.ndarray]:
    analyzer = Analyzer(models_dir)
    sources = dataset.find_pristine(pristine) + dataset.read_mos_csv(mos_csv)
    splits = dataset.assign_splits(sources, SEED)
    validation = [s for s in sources if splits[s.path] == "val"]
    authentic, mos, synthetic, defect, level, photo = [], [], [], [], [], []
    for number, source in enumerate(validation):
        if source.kind == "authentic":
            views = make_views(load_image(source.path).pixels)[None]
            authentic.append(inputs_of_views(analyzer, views))
            mos.append(source.mos)
        else:
            samples = dataset.make_samples(source, "val", SEED, dataset.CLEAN_VARIANTS, 0)
            synthetic.append(inputs_of_views(analyzer, samples.views))
            defect.append(samples.defect), level.append(samples.level)
            photo.append(np.full(len(samples.defect), number))
        progress(1)
    return {
        "model_version": np.array(analyzer.model_version),
        "learn_inputs": np.array(LEARN_INPUTS),
        "authentic_inputs": np.concatenate(authentic),
        "authentic_mos": np.asarray(mos, dtype=np.float32),
        "synthetic_inputs": np.concatenate(synthetic),
        "synthetic_defect": np.concatenate(defect),  # index into DEFECTS, -1 for clean variants
        "synthetic_level": np.concatenate(level),  # 0 for clean variants
        "synthetic_photo": np.concatenate(photo),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=PACKAGE_MODELS_DIR)
    parser.add_argument("--out", type=Path, default=PACKAGE_MODELS_DIR / "learn_validation.npz")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    with tqdm(unit="photo", desc="validation photos", file=sys.stderr) as bar:
        data = build(args.pristine, args.mos_csv, args.models, bar.update)
    np.savez_compressed(args.out, **data)
    print(
        f"{args.out}: {len(data['authentic_mos'])} authentic photos, {len(data['synthetic_level'])} synthetic "
        "samples "
        f"of model {data['model_version']}"
    )


if __name__ == "__main__":
    main()
