"""Measured statistics of each view, appended to the backbone's features for both heads.

Frozen ImageNet features describe content well but exposure, colour cast, noise level and
blocking only indirectly (they were trained to ignore them). These are the readings a photo
editor's histogram, a noise meter and a blockiness meter give; the heads learn how much to trust
them next to the deep features. Training (``training/dataset.py``) and inference (``engine.py``) both
call :func:`head_inputs`, so they see the same numbers in the same columns.

Every value is scale-free (a fraction, a ratio or a logarithm) so a standardising layer handles it.
"""

from __future__ import annotations

import cv2
import numpy as np

STATISTIC_NAMES = (
    "luma_mean",
    "luma_std",
    "luma_p01",
    "luma_p10",
    "luma_p50",
    "luma_p90",
    "luma_p99",
    "crushed_fraction",  # near black: under-exposure, clipping
    "blown_fraction",  # near white: over-exposure
    "colourfulness",  # Hasler & Suesstrunk 2003
    "cast_red_green",
    "cast_yellow_blue",
    "log_sharpness",  # variance of the Laplacian
    "log_noise_sigma",  # Immerkaer 1996, on luma
    "log_chroma_noise_sigma",  # the same on the red-green channel
    "blockiness",  # 8-pixel grid edges against other edges (JPEG blocking)
    "histogram_gaps",  # empty luma levels inside the used range (posterisation, quantisation)
    "colour_count",  # distinct colours at 5 bits per channel (quantisation)
    "row_streaks",  # the strongest jump between neighbouring rows (streaks, lost rows)
    "column_streaks",
    "flat_blocks",  # 8 x 8 blocks with no variation (grey fill, lost blocks)
    "impulses",  # pixels far from their 3 x 3 median (salt and pepper)
    # A damaged JPEG or JPEG 2000 stream decodes to bands of wrong colour, which luma misses:
    "chroma_row_streaks",  # the strongest colour jump between neighbouring rows
    "chroma_column_streaks",
)
STATISTICS_PER_VIEW = len(STATISTIC_NAMES)

# Immerkaer's fast noise estimate: this kernel cancels smooth image structure (up to second order).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_BLOCK = 8
_BLOCK_KERNEL = np.ones((_BLOCK, _BLOCK), np.uint8)
_EPS = 1e-6
# 8-bit levels as fractions of full scale, rounded to float32 as ``level / 255.0`` is.
_FRACTION_OF_LEVEL = np.arange(256, dtype=np.float32) / 255.0
_LEVELS = np.arange(256) / 255.0
_PERCENTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
# Colours at 5 bits per channel: 32 bins a channel, the bin of a level being level >> 3.
_COARSE_BINS, _LEVEL_RANGE = [32, 32, 32], [0, 256, 0, 256, 0, 256]


def _noise_sigma(channel: np.ndarray) -> float:
    height, width = channel.shape
    response = cv2.filter2D(channel, cv2.CV_32F, _NOISE_KERNEL, borderType=cv2.BORDER_REPLICATE)
    inner = float(cv2.norm(response[1:-1, 1:-1], cv2.NORM_L1))
    return float(np.sqrt(np.pi / 2) * inner / (6 * (width - 2) * (height - 2)))


def _steps(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean absolute step between neighbouring columns (per column gap) and rows (per row gap)."""
    across = cv2.absdiff(channel[:, 1:], channel[:, :-1])
    down = cv2.absdiff(channel[1:], channel[:-1])
    return (
        cv2.reduce(across, 0, cv2.REDUCE_AVG, dtype=cv2.CV_64F).ravel(),
        cv2.reduce(down, 1, cv2.REDUCE_AVG, dtype=cv2.CV_64F).ravel(),
    )


def _blockiness(column_steps: np.ndarray, row_steps: np.ndarray) -> float:
    """How much stronger horizontal and vertical steps are on one 8-pixel grid phase than on
    average (0 for an unblocked image). The detail crop need not sit on the JPEG grid, so the
    strongest of the eight phases counts."""
    ratios = []
    for steps in (column_steps, row_steps):
        usable = len(steps) // _BLOCK * _BLOCK
        by_phase = steps[:usable].reshape(-1, _BLOCK).mean(axis=0)
        ratios.append((by_phase.max() + _EPS) / (by_phase.mean() + _EPS))
    return float(np.log(max(ratios)))


def _median(values: np.ndarray) -> float:
    """np.median, by one partition where the count is odd (a view's 223 gaps)."""
    middle = len(values) // 2
    return float(np.partition(values, middle)[middle]) if len(values) % 2 else float(np.median(values))


def _streaks(jumps: np.ndarray) -> float:
    """The largest mean jump between neighbouring rows (or columns), against the median."""
    return float(np.log((jumps.max() + _EPS) / (_median(jumps) + _EPS)))


def _histogram_statistics(luma: np.ndarray) -> list[float]:
    """Mean, spread, percentiles, clipping and gaps, all from the 256-level luma histogram."""
    counts = cv2.calcHist([luma], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    share = counts / counts.sum()
    mean = float(share @ _LEVELS)
    std = float(np.sqrt(max(share @ (_LEVELS - mean) ** 2, 0.0)))
    p01, p10, p50, p90, p99 = np.searchsorted(np.cumsum(share), _PERCENTILES).tolist()
    gaps = float(np.count_nonzero(counts[p01 : p99 + 1] == 0) / (p99 + 1 - p01)) if p99 > p01 else 1.0
    return [mean, std, p01 / 255, p10 / 255, p50 / 255, p90 / 255, p99 / 255, share[:5].sum(), share[251:].sum(), gaps]


def view_statistics(view: np.ndarray) -> np.ndarray:
    """The ``STATISTIC_NAMES`` of one H x W x 3 uint8 RGB view, as float32.

    Written with OpenCV and small arrays: it runs on every view of every image."""
    luma = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)
    mean, std, p01, p10, p50, p90, p99, crushed, blown, gaps = _histogram_statistics(luma)
    luma_float = cv2.LUT(luma, _FRACTION_OF_LEVEL)

    red, green, blue = cv2.split(cv2.LUT(view, _FRACTION_OF_LEVEL))
    red_green = red - green
    yellow_blue = cv2.addWeighted(red, 0.5, green, 0.5, 0.0) - blue
    rg_mean, rg_std = (float(v[0, 0]) for v in cv2.meanStdDev(red_green))
    yb_mean, yb_std = (float(v[0, 0]) for v in cv2.meanStdDev(yellow_blue))
    colourfulness = np.hypot(rg_std, yb_std) + 0.3 * np.hypot(rg_mean, yb_mean)
    laplacian_std = float(cv2.meanStdDev(cv2.Laplacian(luma_float, cv2.CV_32F, ksize=3))[1][0, 0])

    # Distinct colours at 5 bits per channel, from a 32 x 32 x 32 histogram.
    coarse = cv2.calcHist([view], [0, 1, 2], None, _COARSE_BINS, _LEVEL_RANGE)
    colour_count = np.log(np.count_nonzero(coarse)) / np.log(1 << 15)

    # A block is flat when its luma varies by at most one level (grey fill, lost blocks). The
    # max and min over each 8 x 8 block come from OpenCV's morphology (anchored at the block's
    # top-left corner), many times faster than numpy reductions over small axes.
    height, width = luma.shape
    whole = luma[: height // _BLOCK * _BLOCK, : width // _BLOCK * _BLOCK]
    block_max = cv2.dilate(whole, _BLOCK_KERNEL, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[::_BLOCK, ::_BLOCK]
    block_min = cv2.erode(whole, _BLOCK_KERNEL, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[::_BLOCK, ::_BLOCK]
    flat_blocks = float(np.mean(block_max - block_min <= 1))
    # An impulse differs from its 3 x 3 median by over 30 % of the range in some channel.
    distance = cv2.split(cv2.absdiff(view, cv2.medianBlur(view, 3)))
    distance = cv2.max(cv2.max(distance[0], distance[1]), distance[2])
    impulses = cv2.countNonZero(cv2.threshold(distance, 76, 255, cv2.THRESH_BINARY)[1]) / distance.size
    column_steps, row_steps = _steps(luma_float)
    (rg_column_steps, rg_row_steps), (yb_column_steps, yb_row_steps) = _steps(red_green), _steps(yellow_blue)

    return np.array(
        [
            mean,
            std,
            p01,
            p10,
            p50,
            p90,
            p99,
            crushed,
            blown,
            colourfulness,
            rg_mean,
            yb_mean,
            np.log(laplacian_std**2 + _EPS),
            np.log(_noise_sigma(luma_float) + 1e-4),
            np.log(_noise_sigma(red_green) + 1e-4),
            _blockiness(column_steps, row_steps),
            gaps,
            colour_count,
            _streaks(row_steps),
            _streaks(column_steps),
            flat_blocks,
            impulses,
            _streaks(rg_row_steps + yb_row_steps),
            _streaks(rg_column_steps + yb_column_steps),
        ],
        dtype=np.float32,
    )


def head_inputs(backbone_features: np.ndarray, views: np.ndarray) -> np.ndarray:
    """What both heads take, per image: the backbone features of its views, then their statistics.

    ``backbone_features`` is (N * 2, D) or (N, 2 * D) for ``views`` of shape (N, 2, H, W, 3).
    """
    n = views.shape[0]
    return np.concatenate([backbone_features.reshape(n, -1), statistics_of_views(views)], axis=1)


def statistics_of_views(views: np.ndarray) -> np.ndarray:
    """(N, 2 * STATISTICS_PER_VIEW) float32 for view pairs of shape (N, 2, H, W, 3) uint8."""
    n, per_image = views.shape[:2]
    flat = [view_statistics(view) for view in views.reshape(n * per_image, *views.shape[2:])]
    return (
        np.stack(flat).reshape(n, per_image * STATISTICS_PER_VIEW)
        if flat
        else np.zeros((0, per_image * STATISTICS_PER_VIEW), np.float32)
    )
