"""Are black-and-white photos kept Good? A check of installed models on photos they never saw.

A black-and-white photo is a choice the photographer made, not a defect. This runs the engine on
the validation photos of the training split (``--pristine``, split with the training seed) and on
the demo photos, each in colour and converted to black and white (Pillow's ``L`` mode, saved as
a JPEG at quality 92 like a camera's), and prints the share kept Good for both.

Run: python -m experiments.check_black_and_white --pristine DIR --models models/
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.result import AnalysisResult
from pixelperfect_daemon.training import dataset
from pixelperfect_daemon.verdict import POOR_ABOVE_NOISE

DEMO_PHOTOS = Path(__file__).resolve().parent.parent / "data" / "demo"
JPEG_QUALITY = 92


def unseen_photos(pristine: Path, seed: int) -> list[Path]:
    """The demo photos and the pristine photos of the validation split."""
    sources = dataset.find_pristine(pristine)
    splits = dataset.assign_splits(sources, seed)
    return sorted(DEMO_PHOTOS.glob("*.jpg")) + [s.path for s in sources if splits[s.path] == "val"]


def analysed_as_jpegs(analyzer: Analyzer, images: Iterable[Image.Image], quality: int) -> Iterator[AnalysisResult]:
    """The engine's result for each of ``images`` once saved as a JPEG of ``quality`` (as a camera
    or scanner would save it) in a scratch folder; the checks' one way to show the engine a photo."""
    with tempfile.TemporaryDirectory() as scratch:
        for number, image in enumerate(images):
            path = Path(scratch) / f"{number}.jpg"
            image.save(path, quality=quality)
            yield analyzer.analyze_path(path)


def kept_good(analyzer: Analyzer, photos: list[Path]) -> dict[str, float]:
    """Share of ``photos`` called Good, in colour and in black and white."""
    kinds = {"colour": lambda image: image, "black_and_white": lambda image: image.convert("L")}
    good = {}
    for kind, convert in kinds.items():
        images = (convert(Image.open(photo).convert("RGB")) for photo in photos)
        good[kind] = sum(result.verdict == "good" for result in analysed_as_jpegs(analyzer, images, JPEG_QUALITY))
    return {kind: count / len(photos) for kind, count in good.items()}


def parse_check_arguments(description: str) -> tuple[list[Path], Analyzer, int]:
    """The command line of a check on unseen photos: (the photos, the engine on --models, --seed)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pristine", type=Path, required=True, help="the folder the models were trained on")
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder (default models/)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (decides the split)")
    parser.add_argument(
        "--poor-above-noise",
        type=float,
        default=POOR_ABOVE_NOISE,
        help="the verdict's noise line (0: the models alone)",
    )
    args = parser.parse_args()
    return (
        unseen_photos(args.pristine, args.seed),
        Analyzer(args.models, poor_above_noise=args.poor_above_noise),
        args.seed,
    )


def main() -> None:
    photos, analyzer, _ = parse_check_arguments(__doc__.split("\n\n")[0])
    shares = kept_good(analyzer, photos)
    print(
        f"{len(photos)} unseen good photos, kept Good: colour {shares['colour']:.2f}, "
        f"black and white {shares['black_and_white']:.2f}"
    )


if __name__ == "__main__":
    main()
