"""Where to look at 100 %: the sharpest region (to judge blur) and the flattest (to judge noise).

Photographers judge focus on the sharpest detail in the frame: if even that is soft, the photo is
blurred. Noise shows most in smooth, mid-toned areas (sky, walls), where there is no texture to
hide it, so for noise we pick the region with the least structure that is not clipped.
"""

from __future__ import annotations

import cv2
import numpy as np

Region = tuple[int, int, int, int]  # left, top, width, height


def _to_gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _grid(length: int, window: int, stride: int) -> list[int]:
    last = length - window
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:  # the last window reaches the image's edge
        starts.append(last)
    return starts


def _window_sums(values: np.ndarray, window_h: int, window_w: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Sum of ``values`` over every window_h x window_w window whose corner lies on a quarter-window grid."""
    height, width = values.shape
    ys = _grid(height, window_h, max(1, window_h // 4))
    xs = _grid(width, window_w, max(1, window_w // 4))
    integral = cv2.integral(values.astype(np.float64))
    y0 = np.array(ys)[:, None]
    x0 = np.array(xs)[None, :]
    y1, x1 = y0 + window_h, x0 + window_w
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return sums, ys, xs


def _window_size(pixels: np.ndarray, crop: int) -> tuple[int, int]:
    height, width = pixels.shape[:2]
    return min(crop, height), min(crop, width)


def sharpest_region(pixels: np.ndarray, crop: int = 512) -> Region:
    """The crop x crop window with the most Laplacian energy."""
    window_h, window_w = _window_size(pixels, crop)
    energy = np.abs(cv2.Laplacian(_to_gray(pixels), cv2.CV_32F, ksize=3))
    sums, ys, xs = _window_sums(energy, window_h, window_w)
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return xs[col], ys[row], window_w, window_h


def flattest_region(pixels: np.ndarray, crop: int = 512) -> Region:
    """The crop x crop window with the least structure, avoiding clipped blacks and whites."""
    window_h, window_w = _window_size(pixels, crop)
    gray = _to_gray(pixels)
    # Measure structure, not noise: a blur first removes the noise we want to show, keeping edges.
    smooth = cv2.GaussianBlur(gray, (0, 0), sigmaX=3.0)
    structure = np.abs(cv2.Sobel(smooth, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    sums, ys, xs = _window_sums(structure, window_h, window_w)
    brightness, _, _ = _window_sums(gray, window_h, window_w)
    mean = brightness / float(window_h * window_w)
    # Clipped areas hide noise; prefer mid-tones whenever any window has them.
    usable = (mean > 24) & (mean < 232)
    if usable.any():
        sums = np.where(usable, sums, np.inf)
    row, col = np.unravel_index(int(np.argmin(sums)), sums.shape)
    return xs[col], ys[row], window_w, window_h


def crop_region(pixels: np.ndarray, region: Region) -> np.ndarray:
    left, top, width, height = region
    return pixels[top : top + height, left : left + width]
