"""How well are bursts grouped? A made-up burst set from the shared pristine photos.

Every pristine photo becomes one scene shot as a burst of 1 to 5 frames: each frame a crop of
90 % of the photo, shifted a little further than the last (as a hand-held burst drifts), with
capture times 0.1-0.6 s apart. Scenes follow each other after 0.3-10 s, so some scene changes
fall inside the burst gap and only the perceptual hash can split them. Frames are hashed from a
thumbnail as the UI does. Reported: precision and recall over pairs of frames put in one burst.

Usage: .venv/bin/python bench/burst_grouping.py [--gap 2.0] [--seed 0] [--limit N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from itertools import combinations, pairwise
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.photos import SHARED, pristine_photos  # noqa: E402  (after the path is set)

THUMBNAIL = 320


def frames_of(photo: Path, count: int, rng: np.random.Generator) -> list[Image.Image]:
    image = Image.open(photo).convert("RGB")
    image.thumbnail((1200, 1200))
    width, height = image.size
    crop_w, crop_h = int(width * 0.9), int(height * 0.9)
    x, y = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    frames = []
    for _ in range(count):
        frame = image.crop((x, y, x + crop_w, y + crop_h))
        frame.thumbnail((THUMBNAIL, THUMBNAIL))
        frames.append(frame)
        # The next frame drifts by up to 2 % of the frame in each direction.
        x = int(np.clip(x + rng.integers(-width // 50, width // 50 + 1), 0, width - crop_w))
        y = int(np.clip(y + rng.integers(-height // 50, height // 50 + 1), 0, height - crop_h))
    return frames


def main(argv=None) -> int:
    from review_ui.bursts import Frame, difference_hash, group_bursts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", type=float, default=2.0, help="burst gap in seconds ([ui] burst_gap_seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)
    photos = pristine_photos(args.limit)
    if not photos:
        print(f"no photos under {SHARED / 'pristine'}")
        return 1
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(photos))
    clock = dt.datetime(2024, 5, 1, 10, 0, 0)
    frames, truth = [], {}
    for scene, index in enumerate(order):
        clock += dt.timedelta(seconds=float(rng.uniform(0.3, 10.0)))
        for number, image in enumerate(frames_of(photos[index], int(rng.integers(1, 6)), rng)):
            if number:
                clock += dt.timedelta(seconds=float(rng.uniform(0.1, 0.6)))
            name = f"scene{scene:03d}-frame{number}"
            frames.append(Frame(name, clock, difference_hash(image), float(rng.random())))
            truth[name] = scene
    found = {}
    for number, burst in enumerate(group_bursts(frames, args.gap)):
        for frame in burst.frames:
            found[frame.path] = number
    names = [f.path for f in frames]
    same_truth = {p for p in combinations(names, 2) if truth[p[0]] == truth[p[1]]}
    same_found = {p for p in combinations(names, 2) if p[0] in found and found.get(p[0]) == found.get(p[1])}
    true_positive = len(same_truth & same_found)
    precision = true_positive / len(same_found) if same_found else 1.0
    recall = true_positive / len(same_truth) if same_truth else 1.0
    scenes_in_gap = sum(1 for a, b in pairwise(frames)
                        if truth[a.path] != truth[b.path] and (b.captured_at - a.captured_at).total_seconds() <= args.gap)  # fmt: skip
    print(f"{len(photos)} scenes, {len(frames)} frames, {len(same_truth)} same-burst pairs; gap {args.gap} s; "
          f"{scenes_in_gap} scene changes inside the gap (only the hash can split them)\n")  # fmt: skip
    print("| pairs | precision | recall |\n|---|---:|---:|")
    print(f"| frames grouped together | {precision:.3f} ({true_positive}/{len(same_found)}) | "
          f"{recall:.3f} ({true_positive}/{len(same_truth)}) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
