"""The two views of an image that the models see, shared by training and inference.

* the **overview**: the whole frame squashed to 224 x 224, for exposure, colour, composition-level
  damage (streaks, missing parts) and overall quality;
* the **detail**: a 224 x 224 crop at full resolution (100 %) from the most detailed region,
  because blur, noise and compression artefacts vanish when a 24-megapixel photo is shrunk to
  224 px; a photographer judges focus at 100 % on the subject, and if even the most detailed
  region is soft, the photo is blurred.

Training and inference must build views with this one function, or the models would see
different pixels in production than they were trained on.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

VIEW_SIZE = 224
VIEW_NAMES = ("overview", "detail")
# Big images are first shrunk by a whole factor until the short side is about this (an integer
# INTER_AREA factor is several times faster than an arbitrary one on 24 MP).
_REDUCED_SHORT_SIDE = 2 * VIEW_SIZE
_MAX_LAPLACIAN = 8 * 255  # the largest |Laplacian| (3 x 3 aperture) of 8-bit grey


def reduction_factor(height: int, width: int) -> int:
    """The whole factor the overview and the detail search shrink an image of this size by."""
    return max(1, min(height, width) // _REDUCED_SHORT_SIDE)


def reduced_copy(pixels: np.ndarray | Image.Image) -> tuple[np.ndarray, float]:
    """A cheap box-filtered copy for the overview and the detail search, and its scale.

    Both routes average whole factor x factor blocks (the same numbers, up to rounding); a Pillow
    image is reduced by Pillow, so a decoded 24-megapixel photo is never copied out whole."""
    width, height = pixels.size if isinstance(pixels, Image.Image) else pixels.shape[1::-1]
    factor = reduction_factor(height, width)
    if isinstance(pixels, Image.Image):
        if factor == 1:
            return np.asarray(pixels), 1.0
        return np.asarray(pixels.reduce(factor).crop((0, 0, width // factor, height // factor))), 1.0 / factor
    if factor == 1:
        return pixels, 1.0
    # Whole blocks only (the ragged edge is dropped, as Pillow's reduce + crop above does).
    whole = pixels[: height // factor * factor, : width // factor * factor]
    small = cv2.resize(whole, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    return small, 1.0 / factor


def overview_view(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    interpolation = cv2.INTER_AREA if min(height, width) > VIEW_SIZE else cv2.INTER_LINEAR
    return cv2.resize(pixels, (VIEW_SIZE, VIEW_SIZE), interpolation=interpolation)


def _size(pixels: np.ndarray | Image.Image) -> tuple[int, int]:
    """(height, width) of an array or a Pillow image."""
    return (pixels.height, pixels.width) if isinstance(pixels, Image.Image) else pixels.shape[:2]


def detail_origin(
    pixels: np.ndarray | Image.Image, small: np.ndarray | None = None, scale: float = 1.0
) -> tuple[int, int]:
    """Top-left (y, x) of the full-resolution crop with the most fine detail (Laplacian energy).

    ``small``/``scale`` is an optional reduced copy of ``pixels`` to search on.
    """
    if small is None:
        small, scale = reduced_copy(pixels)
    return detail_origin_in(_size(pixels), small, scale)


def detail_origin_in(size: tuple[int, int], small: np.ndarray, scale: float) -> tuple[int, int]:
    """``detail_origin`` for an image of (height, width) ``size`` known only by a copy reduced by ``scale``."""
    height, width = size
    if height <= VIEW_SIZE and width <= VIEW_SIZE:
        return 0, 0
    # The Laplacian of 8-bit grey is in whole numbers (at most 8 x 255), so are the window sums:
    # summed as integers, held in float32 while below 2^24, they are exact, and the means rounded
    # to float32 are those of a normalised float box filter (it sums in double), ties and all.
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    energy = np.abs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3)).view(np.uint16)
    # Mean energy over every window the size of the crop, measured at the search scale.
    window = max(1, round(VIEW_SIZE * scale))
    window_h, window_w = min(window, energy.shape[0]), min(window, energy.shape[1])
    depth = cv2.CV_32F if window_w * window_h * _MAX_LAPLACIAN < (1 << 24) else cv2.CV_64F
    sums = cv2.boxFilter(energy, depth, (window_w, window_h), normalize=False, borderType=cv2.BORDER_CONSTANT)
    # Only centres whose window lies fully inside the image are candidates.
    half_h, half_w = window_h // 2, window_w // 2
    valid = sums[half_h : energy.shape[0] - (window_h - half_h) + 1, half_w : energy.shape[1] - (window_w - half_w) + 1]
    if valid.size == 0:
        cy, cx = energy.shape[0] // 2, energy.shape[1] // 2
    else:
        mean_energy = (valid.astype(np.float64) * (1.0 / (window_w * window_h))).astype(np.float32)
        iy, ix = np.unravel_index(int(np.argmax(mean_energy)), mean_energy.shape)
        cy, cx = iy + half_h, ix + half_w
    y = int(round(cy / scale)) - VIEW_SIZE // 2
    x = int(round(cx / scale)) - VIEW_SIZE // 2
    return min(max(0, y), max(0, height - VIEW_SIZE)), min(max(0, x), max(0, width - VIEW_SIZE))


def detail_view(pixels: np.ndarray | Image.Image, small: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    y, x = detail_origin(pixels, small, scale)
    if isinstance(pixels, Image.Image):
        crop = np.asarray(pixels.crop((x, y, min(x + VIEW_SIZE, pixels.width), min(y + VIEW_SIZE, pixels.height))))
    else:
        crop = pixels[y : y + VIEW_SIZE, x : x + VIEW_SIZE]
    if crop.shape[0] < VIEW_SIZE or crop.shape[1] < VIEW_SIZE:
        # Small images: mirror-pad rather than upscale, so pixels stay at 100 %.
        crop = (
            cv2.copyMakeBorder(crop, 0, VIEW_SIZE - crop.shape[0], 0, VIEW_SIZE - crop.shape[1], cv2.BORDER_REFLECT_101)
            if min(crop.shape[:2]) > 1
            else cv2.resize(crop, (VIEW_SIZE, VIEW_SIZE), interpolation=cv2.INTER_NEAREST)
        )
    return crop


def make_views(pixels: np.ndarray | Image.Image) -> np.ndarray:
    """(2, 224, 224, 3) uint8: the overview and the detail crop of an RGB image (an H x W x 3
    uint8 array, or an RGB Pillow image, which is never copied out whole)."""
    return views_and_reduced_copy(pixels)[0]


def views_and_reduced_copy(pixels: np.ndarray | Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """``make_views`` and the reduced copy it searched (``reduced_copy``), for the noise meter."""
    if isinstance(pixels, Image.Image):
        if pixels.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {pixels.mode}")
    elif pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {pixels.dtype} {pixels.shape}")
    small, scale = reduced_copy(pixels)
    return np.stack([overview_view(small), detail_view(pixels, small, scale)]), small
