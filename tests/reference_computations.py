"""The engine's earlier, slower computations of the views' detail search, statistics and greyness,
kept as they were so tests can hold the faster ones to the same results."""

from __future__ import annotations

import cv2
import numpy as np

from pixelperfect_daemon.engine import MONOCHROME_CHANNEL_SPREAD
from pixelperfect_daemon.views import VIEW_SIZE

_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_BLOCK = 8
_BLOCK_KERNEL = np.ones((_BLOCK, _BLOCK), np.uint8)
_EPS = 1e-6


def detail_origin_in(size: tuple[int, int], small: np.ndarray, scale: float) -> tuple[int, int]:
    """The detail search as a normalised box filter over the whole Laplacian energy image."""
    height, width = size
    if height <= VIEW_SIZE and width <= VIEW_SIZE:
        return 0, 0
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3))
    window = max(1, round(VIEW_SIZE * scale))
    window_h, window_w = min(window, energy.shape[0]), min(window, energy.shape[1])
    mean_energy = cv2.boxFilter(energy, -1, (window_w, window_h), normalize=True, borderType=cv2.BORDER_CONSTANT)
    half_h, half_w = window_h // 2, window_w // 2
    valid = mean_energy[
        half_h : energy.shape[0] - (window_h - half_h) + 1, half_w : energy.shape[1] - (window_w - half_w) + 1
    ]
    if valid.size == 0:
        cy, cx = energy.shape[0] // 2, energy.shape[1] // 2
    else:
        iy, ix = np.unravel_index(int(np.argmax(valid)), valid.shape)
        cy, cx = iy + half_h, ix + half_w
    y = int(round(cy / scale)) - VIEW_SIZE // 2
    x = int(round(cx / scale)) - VIEW_SIZE // 2
    return min(max(0, y), max(0, height - VIEW_SIZE)), min(max(0, x), max(0, width - VIEW_SIZE))


def is_monochrome(views: np.ndarray) -> bool:
    red, green, blue = views[..., 0], views[..., 1], views[..., 2]
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    return np.count_nonzero(spread > MONOCHROME_CHANNEL_SPREAD) <= 0.01 * spread.size


def _noise_sigma(channel: np.ndarray) -> float:
    height, width = channel.shape
    response = cv2.filter2D(channel, cv2.CV_32F, _NOISE_KERNEL, borderType=cv2.BORDER_REPLICATE)
    inner = float(cv2.norm(response[1:-1, 1:-1], cv2.NORM_L1))
    return float(np.sqrt(np.pi / 2) * inner / (6 * (width - 2) * (height - 2)))


def _steps(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean absolute step between neighbouring columns (per column gap) and rows (per row gap)."""
    return np.abs(np.diff(luma, axis=1)).mean(axis=0), np.abs(np.diff(luma, axis=0)).mean(axis=1)


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


def _streaks(jumps: np.ndarray) -> float:
    """The largest mean jump between neighbouring rows (or columns), against the median."""
    return float(np.log((jumps.max() + _EPS) / (np.median(jumps) + _EPS)))


def _histogram_statistics(luma: np.ndarray) -> list[float]:
    """Mean, spread, percentiles, clipping and gaps, all from the 256-level luma histogram."""
    counts = np.bincount(luma.ravel(), minlength=256).astype(np.float64)
    share = counts / counts.sum()
    levels = np.arange(256) / 255.0
    mean = float(share @ levels)
    std = float(np.sqrt(max(share @ (levels - mean) ** 2, 0.0)))
    cumulative = np.cumsum(share)
    p01, p10, p50, p90, p99 = np.searchsorted(cumulative, (0.01, 0.10, 0.50, 0.90, 0.99))
    used = counts[p01 : p99 + 1]
    gaps = float(np.mean(used == 0)) if p99 > p01 else 1.0
    return [mean, std, p01 / 255, p10 / 255, p50 / 255, p90 / 255, p99 / 255, share[:5].sum(), share[251:].sum(), gaps]


def view_statistics(view: np.ndarray) -> np.ndarray:
    """The ``STATISTIC_NAMES`` of one H x W x 3 uint8 RGB view, as float32.

    Written with OpenCV and small arrays: it runs on every image (about 1 ms a view)."""
    luma = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)
    mean, std, p01, p10, p50, p90, p99, crushed, blown, gaps = _histogram_statistics(luma)
    luma_float = luma.astype(np.float32) / 255.0

    rgb = view.astype(np.float32) / 255.0
    red, green, blue = cv2.split(rgb)
    red_green = red - green
    yellow_blue = cv2.addWeighted(red, 0.5, green, 0.5, 0.0) - blue
    rg_mean, rg_std = (float(v[0, 0]) for v in cv2.meanStdDev(red_green))
    yb_mean, yb_std = (float(v[0, 0]) for v in cv2.meanStdDev(yellow_blue))
    colourfulness = np.hypot(rg_std, yb_std) + 0.3 * np.hypot(rg_mean, yb_mean)
    laplacian_std = float(cv2.meanStdDev(cv2.Laplacian(luma_float, cv2.CV_32F, ksize=3))[1][0, 0])

    # Distinct colours at 5 bits per channel (a bincount of 32 768 bins is far cheaper than a sort).
    coarse = (view >> 3).astype(np.uint16)
    packed = (coarse[..., 0] << 10) | (coarse[..., 1] << 5) | coarse[..., 2]
    colour_count = np.log(np.count_nonzero(np.bincount(packed.ravel(), minlength=1 << 15))) / np.log(1 << 15)

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
    impulses = np.count_nonzero(distance > 76) / distance.size
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
