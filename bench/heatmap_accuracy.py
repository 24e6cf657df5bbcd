"""Does the defect heat-map point at the damage? Synthetic damage in one region of pristine photos.

For every pristine photo in ../shared/data/pristine and each kind of damage (blur, noise, JPEG
blocking, a colour streak), one rectangle of 30 % x 30 % of the frame, placed at random (seeded),
is damaged; the heat-map of the damaged photo (computed as the UI does, from a decode reduced
to the preview size) is read for the matching defect, and a hit is counted when its hottest tile
overlaps the damaged rectangle. Chance level (a random tile) is printed beside each figure.

Usage: .venv/bin/python bench/heatmap_accuracy.py [--limit N] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.photos import SHARED, pristine_photos  # noqa: E402  (after the path is set)

REGION_FRACTION = 0.3
PREVIEW_LONG_SIDE = 1600
DAMAGE_DEFECT = {"blur": "blur", "noise": "noise", "blocking": "compression", "colour streak": "transmission_errors"}


def damage(image: Image.Image, kind: str, box: tuple[int, int, int, int], rng: np.random.Generator) -> Image.Image:
    left, top, right, bottom = box
    region = image.crop(box)
    if kind == "blur":
        region = region.filter(ImageFilter.GaussianBlur(4))
    elif kind == "noise":
        noisy = np.asarray(region, np.float32) + rng.normal(0, 20, (bottom - top, right - left, 3))
        region = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    elif kind == "blocking":
        buffer = io.BytesIO()
        region.save(buffer, format="JPEG", quality=5)
        region = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    elif kind == "colour streak":
        pixels = np.asarray(region, np.int16).copy()
        band = max(4, (bottom - top) // 12)
        start = int(rng.integers(0, max(1, bottom - top - band)))
        pixels[start : start + band, :, 1] -= 90  # a magenta band, as a damaged stream decodes to
        pixels[start : start + band, :, 0] += 60
        region = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    damaged = image.copy()
    damaged.paste(region, (left, top))
    return damaged


def overlaps(tile, box) -> bool:
    return tile[0] < box[2] and box[0] < tile[2] and tile[1] < box[3] and box[1] < tile[3]


def main(argv=None) -> int:
    from review_ui.heatmap import compute_heatmap, tile_edges

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    photos = pristine_photos(args.limit)
    if not photos:
        print(f"no photos under {SHARED / 'pristine'}")
        return 1
    rng = np.random.default_rng(args.seed)
    hits = {kind: 0 for kind in DAMAGE_DEFECT}
    chance = {kind: 0.0 for kind in DAMAGE_DEFECT}
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        image.thumbnail((PREVIEW_LONG_SIDE, PREVIEW_LONG_SIDE), Image.Resampling.LANCZOS)
        width, height = image.size
        for kind, defect in DAMAGE_DEFECT.items():
            w, h = int(width * REGION_FRACTION), int(height * REGION_FRACTION)
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            box = (left, top, left + w, top + h)
            heat = compute_heatmap(np.asarray(damage(image, kind, box, rng)))
            xs, ys = tile_edges(width, heat.columns), tile_edges(height, heat.rows)
            tiles = {
                (r, c): (xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(heat.rows) for c in range(heat.columns)
            }
            hits[kind] += overlaps(tiles[heat.hottest(defect)], box)
            chance[kind] += sum(overlaps(t, box) for t in tiles.values()) / len(tiles)
    n = len(photos)
    print(f"{n} photos, damaged region {REGION_FRACTION:.0%} x {REGION_FRACTION:.0%} of the frame, seed {args.seed}\n")
    print("| damage | map read | hottest tile on the damage | chance (random tile) |")
    print("|---|---|---:|---:|")
    for kind, defect in DAMAGE_DEFECT.items():
        print(f"| {kind} | {defect} | {hits[kind] / n:.1%} ({hits[kind]}/{n}) | {chance[kind] / n:.1%} |")
    total = sum(hits.values())
    print(f"| **all** | | **{total / (4 * n):.1%}** ({total}/{4 * n}) | {sum(chance.values()) / (4 * n):.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
