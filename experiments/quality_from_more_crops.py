"""Does the quality score rank authentic photos better when it sees more of each photo?

The quality regression reads two views: the whole frame at 224 and the most detailed 224 × 224
region at 100 %. For every photo with a human score this computes, with the shipped features
model, the heads' inputs of (a) those two views, (b) the whole frame with each region of a grid of
100 % regions, averaged over the regions, and (c) the two shipped views' inputs followed by (b)'s
detail half, (d) the two shipped views' inputs followed by the regions' average statistics
(no features model for them), (e) the shipped views followed by the detail half of one mosaic
view tiled from N × N smaller regions at 100 % (the price of one view), and (f) the overview with
that mosaic instead of the most detailed region; then it cross-validates the shipped ridge regression (same folds,
by photo) on each and prints SRCC / PLCC against MOS, with a bootstrap interval of each SRCC's
gain over (a). The regression alone: P(poor) is not part of this comparison.

Run: python -m experiments.quality_from_more_crops --data ../shared/data [--grid 3]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from experiments.quality_regressors import held_out_predictions, ridge_fitter
from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.file_views import load_views
from pixelperfect_daemon.loading import load_image
from pixelperfect_daemon.metrics import plcc, srcc
from pixelperfect_daemon.training import train
from pixelperfect_daemon.view_statistics import STATISTICS_PER_VIEW
from pixelperfect_daemon.views import VIEW_SIZE

REPO_ROOT = Path(__file__).resolve().parent.parent


def scored_files(data: Path) -> tuple[list[Path], np.ndarray]:
    """The photos of ``manifest.csv`` with a human score (MOS, 0-100), in manifest order."""
    with (data / "manifest.csv").open(newline="") as manifest:
        rows = [row for row in csv.DictReader(manifest) if row["mos"]]
    return [data / row["file"] for row in rows], np.array([float(row["mos"]) for row in rows])


def grid_regions(pixels: np.ndarray, per_side: int) -> list[np.ndarray]:
    """``per_side`` × ``per_side`` regions of VIEW_SIZE at 100 %, evenly spread, overlapping where
    the photo is small; photos smaller than a view are padded by edge replication."""
    height, width = pixels.shape[:2]
    if height < VIEW_SIZE or width < VIEW_SIZE:
        pad = ((0, max(0, VIEW_SIZE - height)), (0, max(0, VIEW_SIZE - width)), (0, 0))
        pixels = np.pad(pixels, pad, mode="edge")
        height, width = pixels.shape[:2]
    tops = np.linspace(0, height - VIEW_SIZE, per_side).round().astype(int)
    lefts = np.linspace(0, width - VIEW_SIZE, per_side).round().astype(int)
    return [pixels[top : top + VIEW_SIZE, left : left + VIEW_SIZE] for top in tops for left in lefts]


def mosaic_view(pixels: np.ndarray, per_side: int) -> np.ndarray:
    """One VIEW_SIZE view tiled from ``per_side`` × ``per_side`` small regions at 100 %, evenly spread
    over the photo: as much of the photo at full resolution for the price of one view."""
    tile = VIEW_SIZE // per_side
    height, width = pixels.shape[:2]
    tops = np.linspace(0, max(0, height - tile), per_side).round().astype(int)
    lefts = np.linspace(0, max(0, width - tile), per_side).round().astype(int)
    mosaic = np.zeros((VIEW_SIZE, VIEW_SIZE, 3), dtype=np.uint8)
    for row, top in enumerate(tops):
        for column, left in enumerate(lefts):
            region = pixels[top : top + tile, left : left + tile]
            mosaic[row * tile : row * tile + region.shape[0], column * tile : column * tile + region.shape[1]] = region
    return mosaic


def inputs_of_photo(analyzer: Analyzer, path: Path, per_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the shipped views' head inputs, their mean over the grid's regions each paired with the
    overview, the inputs of the overview paired with a mosaic of ``per_side`` × ``per_side`` regions)."""
    shipped = load_views(path).views
    pixels = np.asarray(load_image(path).image.convert("RGB"))
    pairs = np.stack([np.stack([shipped[0], region]) for region in grid_regions(pixels, per_side)])
    mosaic = np.stack([shipped[0], mosaic_view(pixels, per_side)])[None]
    return (
        analyzer.head_inputs_of(shipped[None])[0],
        analyzer.head_inputs_of(pairs).mean(axis=0),
        analyzer.head_inputs_of(mosaic)[0],
    )


def detail_half(width: int) -> np.ndarray:
    """The columns of the heads' inputs that come from the detail view: its backbone features (the
    second of two blocks), then its statistics (the second of two blocks at the end)."""
    per_view = (width - 2 * STATISTICS_PER_VIEW) // 2
    return np.r_[per_view : 2 * per_view, width - STATISTICS_PER_VIEW : width]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (manifest.csv)")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--grid", type=int, default=3, help="regions per side (default 3: 9 regions)")
    args = parser.parse_args(argv)
    files, mos = scored_files(args.data)
    analyzer = Analyzer(args.models)
    shipped, grid, mosaic = map(np.stack, zip(*(inputs_of_photo(analyzer, f, args.grid) for f in files)))
    width = shipped.shape[1]
    columns = train.without_taps(train.stage1_columns(width), train.QUALITY_SKIPPED_TAPS)
    extra = np.intersect1d(columns, detail_half(width))
    extra_statistics = np.intersect1d(extra, np.arange(width - STATISTICS_PER_VIEW, width))
    variants = {
        "shipped views (overview + most detailed region)": shipped[:, columns],
        f"overview + {args.grid}x{args.grid} regions, averaged": grid[:, columns],
        "shipped views + the regions' average detail inputs": np.hstack([shipped[:, columns], grid[:, extra]]),
        "shipped views + the regions' average statistics only (no features model)": np.hstack(
            [shipped[:, columns], grid[:, extra_statistics]]
        ),
        f"shipped views + one mosaic view of {args.grid}x{args.grid} smaller regions": np.hstack(
            [shipped[:, columns], mosaic[:, extra]]
        ),
        "overview + the mosaic view (no most detailed region)": mosaic[:, columns],
    }
    photo = np.arange(len(files))
    predictions = {
        name: held_out_predictions(x.astype(np.float64), mos / 100, photo, ridge_fitter())
        for name, x in variants.items()
    }
    baseline = next(iter(predictions.values()))
    print(f"{len(files)} scored photos, {analyzer.model_version}, ridge as shipped, cross-validated by photo:")
    print("| inputs | SRCC | PLCC | SRCC gain, 95 % bootstrap interval |")
    print("|---|---|---|---|")
    for name, predicted in predictions.items():
        low, high = bootstrap_gain(predicted, baseline, mos)
        print(f"| {name} | {srcc(predicted, mos):.4f} | {plcc(predicted, mos):.4f} | {low:+.4f} to {high:+.4f} |")


def bootstrap_gain(
    predicted: np.ndarray, baseline: np.ndarray, mos: np.ndarray, draws: int = 1000
) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of SRCC(predicted) - SRCC(baseline) over photos drawn with replacement."""
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(draws):
        chosen = rng.integers(0, len(mos), len(mos))
        gains.append(srcc(predicted[chosen], mos[chosen]) - srcc(baseline[chosen], mos[chosen]))
    return tuple(np.percentile(gains, [2.5, 97.5]))


if __name__ == "__main__":
    main()
