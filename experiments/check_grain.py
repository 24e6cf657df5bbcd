"""How much grain does it take to be flagged? A check of installed models on photos they never saw.

Real noisy photos (scans with film grain, old JPEGs) are the models' weakest case. This adds
luminance grain of a given strength (its standard deviation in grey levels) and coarseness (the
grain field blurred by a gaussian of that many pixels; 0 is pixel noise) to black-and-white
copies of the photos ``check_black_and_white`` uses, saves each as a JPEG at quality 85 like a
camera or a scanner would, and prints how many the engine flags Poor and how many it gives Noise
as the most likely defect.

Run: python -m experiments.check_grain --pristine DIR --models models/
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from experiments.check_black_and_white import analysed_as_jpegs, parse_check_arguments
from pixelperfect_daemon.engine import Analyzer

JPEG_QUALITY = 85
COARSENESS_PX = (0.0, 1.0, 2.0)
STRENGTHS = (0.0, 6.0, 10.0, 15.0)  # grey levels; white noise at level 3 (the first Poor one) is 11-13.5


def add_grain(grey: np.ndarray, strength: float, coarseness_px: float, rng: np.random.Generator) -> np.ndarray:
    """``grey`` (H, W) uint8 plus gaussian grain of standard deviation ``strength``, blurred by
    ``coarseness_px`` before it is scaled (so the strength is the grain's, whatever its size)."""
    if strength == 0:
        return grey.copy()
    grain = rng.standard_normal(grey.shape).astype(np.float32)
    if coarseness_px > 0:
        grain = cv2.GaussianBlur(grain, (0, 0), coarseness_px)
    grain *= strength / max(float(grain.std()), 1e-6)
    return np.clip(grey.astype(np.float32) + grain, 0, 255).round().astype(np.uint8)


def grain_table(analyzer: Analyzer, photos: list[Path], seed: int = 0) -> list[tuple[float, float, int, int]]:
    """(coarseness, strength, flagged Poor, Noise most likely) for each setting."""
    greys = [np.asarray(Image.open(photo).convert("L")) for photo in photos]
    rows = []
    for coarseness in COARSENESS_PX:
        for strength in STRENGTHS:
            if strength == 0 and coarseness != COARSENESS_PX[0]:
                continue  # no grain is the same at every coarseness
            rng = np.random.default_rng(seed)
            grainy = (Image.fromarray(add_grain(grey, strength, coarseness, rng)) for grey in greys)
            results = list(analysed_as_jpegs(analyzer, grainy, JPEG_QUALITY))
            flagged = sum(result.verdict == "poor" for result in results)
            named_noise = sum(result.most_likely_defect == "noise" for result in results)
            rows.append((coarseness, strength, flagged, named_noise))
    return rows


def main() -> None:
    photos, analyzer, seed = parse_check_arguments(__doc__.split("\n\n")[0])
    print(f"{len(photos)} unseen good photos in black and white, JPEG quality {JPEG_QUALITY}")
    print("| grain size (blur, px) | strength (grey levels) | flagged Poor | Noise most likely |\n|---|---|---|---|")
    for coarseness, strength, flagged, named_noise in grain_table(analyzer, photos, seed):
        print(f"| {coarseness:g} | {strength:g} | {flagged} | {named_noise} |")


if __name__ == "__main__":
    main()
