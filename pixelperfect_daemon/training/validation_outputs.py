"""The engine's outputs on training's validation split, and the figures they give.

Both ``models/learn_validation.npz`` (what ``pixelperfect learn`` checks an adaptation against) and
the gate a quantised features model must pass (``quantize.py``) come from here: the validation
photos of training's split by source photo (seed 0) run through the shipped engine, reduced to each
sample's ``adaptation.LEARN_INPUTS`` (57 numbers, no photo):

* the authentic validation photos with their MOS (clear Good/Poor balanced accuracy, SRCC);
* the synthetic samples of the validation pristine photos, exactly those stage 1 is measured on
  (16 clean variants and one damaged round, every defect class at levels 1-5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..adaptation import LEARN_INPUTS, base_margin, most_likely_defect
from ..engine import Analyzer, is_monochrome
from ..evaluation import clear_balanced_accuracy
from ..labels import DEFECTS
from ..loading import load_image
from ..metrics import expected_calibration_error, plcc, srcc
from ..views import make_views
from . import dataset

SEED = 0  # the shipped models' training seed (their split)
BATCH = 16
# The figures a quantised features model may lose at most GATE_MARGIN of (issue 27's rule).
GATED = ("SRCC", "clear Good/Poor balanced accuracy", "defect top-1, levels 1-5")
GATE_MARGIN = 0.005


def inputs_of_views(analyzer: Analyzer, views: np.ndarray) -> np.ndarray:
    """LEARN_INPUTS rows for view pairs (N, 2, 224, 224, 3), as the engine computes them."""
    rows = []
    for start in range(0, len(views), BATCH):
        batch = views[start : start + BATCH]
        for pair, outputs in zip(batch, analyzer.predict_views(batch)):
            rows.append(analyzer._result("", outputs, None, monochrome=is_monochrome(pair)).learn_inputs)
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(LEARN_INPUTS))


def engine_outputs(pristine: Path, mos_csv: Path, models_dir: Path, progress=lambda n: None) -> dict[str, np.ndarray]:
    """The engine of ``models_dir`` on the validation split (the arrays of learn_validation.npz)."""
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


def _column(inputs: np.ndarray, name: str) -> np.ndarray:
    return inputs[:, LEARN_INPUTS.index(name)]


def figures(outputs: dict, poor_threshold: float, poor_below_quality: float) -> dict[str, float]:
    """The validation figures of one set of ``engine_outputs``."""
    authentic, mos = outputs["authentic_inputs"].astype(float), outputs["authentic_mos"].astype(float)
    synthetic, level = outputs["synthetic_inputs"].astype(float), outputs["synthetic_level"]
    named = np.asarray(DEFECTS)[outputs["synthetic_defect"]]  # damaged rows only are compared
    predicted = most_likely_defect(synthetic)
    poor_authentic = base_margin(authentic, poor_threshold, poor_below_quality) >= 0
    poor_synthetic = base_margin(synthetic, poor_threshold, poor_below_quality) >= 0
    damaged, clean, serious = level > 0, level == 0, level >= 3
    p_poor = _column(synthetic, "p_poor")
    judged = clean | serious  # levels 1-2 have no Good/Poor label
    return {
        "SRCC": srcc(_column(authentic, "quality"), mos),
        "PLCC": plcc(_column(authentic, "quality"), mos),
        "clear Good/Poor balanced accuracy": clear_balanced_accuracy(mos, poor_authentic),
        "defect top-1, levels 1-5": float(np.mean(predicted[damaged] == named[damaged])),
        "defect top-1, levels 2-5": float(np.mean(predicted[level >= 2] == named[level >= 2])),
        "clean synthetic variants kept Good": float(np.mean(~poor_synthetic[clean])),
        "damage (levels 3-5) flagged": float(np.mean(poor_synthetic[serious])),
        "P(poor) calibration error (ECE), synthetic levels 0 and 3-5": expected_calibration_error(
            np.maximum(p_poor, 1 - p_poor)[judged], ((p_poor >= 0.5) == serious)[judged]
        ),
    }


def gate_failures(base: dict[str, float], candidate: dict[str, float], margin: float = GATE_MARGIN) -> list[str]:
    """The GATED figures the candidate loses more than ``margin`` of."""
    return [
        f"{name} {base[name]:.4f} -> {candidate[name]:.4f}"
        for name in GATED
        if candidate[name] < base[name] - margin - 1e-9
    ]


def figures_table(base: dict[str, float], candidate: dict[str, float], names=("float", "int8")) -> str:
    lines = [f"| measure | {names[0]} | {names[1]} | change |", "|---|---:|---:|---:|"]
    for name in base:
        star = " *" if name in GATED else ""
        change = candidate[name] - base[name]
        lines.append(f"| {name}{star} | {base[name]:.4f} | {candidate[name]:.4f} | {change:+.4f} |")
    return "\n".join(lines)
