"""Are sharp photos kept Good when they are small, strongly compressed JPEGs? A check of installed
models on photos they never saw.

The blur pairs of ``real_dev`` should measure how well sharp and blurred camera photos are told
apart, but this copy holds their blurred halves only: 500 x 667 phone photos saved at JPEG quality
75. This stands in for the missing sharp halves. It shrinks the good photos ``check_black_and_white``
uses (the validation split's and the demo photos) to the blur pairs' long side, saves them at their
quality, and prints the share kept Good and what the flagged ones were called; other sizes and
qualities are printed next to it for comparison.

Run: python -m experiments.check_sharp_small_jpegs --pristine DIR --models models/
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image

from experiments.check_black_and_white import analysed_as_jpegs, parse_check_arguments
from pixelperfect_daemon.engine import Analyzer

BLUR_PAIRS_FORMAT = (667, 75)  # (long side in pixels, JPEG quality) of real_dev/blur_pairs
# (long side or None for the photo's own size, JPEG quality); the blur pairs' format first
FORMATS = (BLUR_PAIRS_FORMAT, (667, 92), (1024, 75), (None, 75), (None, 92))


def resized_to_long_side(image: Image.Image, long_side: int | None) -> Image.Image:
    """``image`` shrunk (never enlarged) so that its longer side is ``long_side``, aspect kept."""
    if long_side is None or max(image.size) <= long_side:
        return image.copy()
    scale = long_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def kept_good_in_format(
    analyzer: Analyzer, photos: list[Path], long_side: int | None, quality: int
) -> tuple[float, Counter]:
    """(share of ``photos`` called Good, the defects of those called Poor) once each photo is
    shrunk to ``long_side`` and saved as a JPEG of ``quality``."""
    resized = (resized_to_long_side(Image.open(photo).convert("RGB"), long_side) for photo in photos)
    results = list(analysed_as_jpegs(analyzer, resized, quality))
    good = sum(result.verdict == "good" for result in results)
    flagged = Counter(result.defect or result.verdict for result in results if result.verdict != "good")
    return good / len(photos), flagged


def main() -> None:
    photos, analyzer, _ = parse_check_arguments(__doc__.split("\n\n")[0])
    print(f"{len(photos)} unseen good photos")
    print("| long side | JPEG quality | kept Good | flagged as |\n|---|---|---|---|")
    for long_side, quality in FORMATS:
        share, flagged = kept_good_in_format(analyzer, photos, long_side, quality)
        called = ", ".join(f"{defect} {count}" for defect, count in flagged.most_common()) or "-"
        print(f"| {long_side or 'as taken'} | {quality} | {share:.2f} | {called} |")


if __name__ == "__main__":
    main()
