"""How much noise a photo shows at screen size: a noise meter for the verdict.

The models' own noise readings (``view_statistics.py``) come from the two views, and the detail
view is the most textured region, where texture reads as noise and noise hides in texture. This
meter looks where noise shows: the flattest parts of the photo (sky, walls, skin), on the copy the
detail search already made (``views.reduced_copy``: short side 448-895 px, about a screen's view
of the whole photo, so sensor noise that averages away at that size is not counted).

Per 16 x 16 block of luma it takes the spread of the pixels (standard deviation) and Immerkaer's
fast noise estimate (1996), which cancels smooth structure and reads only pixel-to-pixel
variation. In the flattest blocks (lowest spread) of a noisy photo the two agree, because what
varies there is the noise; in a photo textured all over (gravel, foliage) even the flattest blocks
vary mostly at larger scales, and the estimate is a small part of the spread. So the reading is the
estimate in the flattest blocks where it is at least about half their spread ("white"), fading to 0
below: in 8-bit grey levels, comparable with a noise sigma.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Cancels smooth image structure up to second order; its response to white noise of sigma s has
# mean absolute value 6 * s * sqrt(2 / pi).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_TO_SIGMA = math.sqrt(math.pi / 2) / 6
BLOCK = 16
# The flattest blocks: most photos have some sky, wall or skin.
FLAT_SHARE = 0.05
# White noise makes the estimate equal the spread; texture makes it a small part of it. The
# reading fades out over this range of the ratio, so that a small change of the pixels (the DCT
# route's reduced copy, a re-encode) makes a small change of the reading.
WHITENESS_RAMP = (0.4, 0.6)
# Blocks touching these levels are left out: clipping flattens noise near black and white.
_DARKEST, _BRIGHTEST = 8, 247
# Fewer measurable blocks than this (a tiny or almost black photo) give no reading.
MIN_BLOCKS = 16


def _block_means(values: np.ndarray, rows: int, columns: int) -> np.ndarray:
    # A whole-factor INTER_AREA shrink is the mean of each block.
    return cv2.resize(values, (columns, rows), interpolation=cv2.INTER_AREA)


def screen_noise_sigma(small: np.ndarray) -> float:
    """The noise in the flattest parts of ``small`` (H x W x 3 uint8 RGB, the reduced copy), in
    grey levels: 0 where they vary more than noise does; NaN where too little can be measured."""
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    rows, columns = (grey.shape[0] - 2) // BLOCK, (grey.shape[1] - 2) // BLOCK
    if rows * columns < MIN_BLOCKS:
        return math.nan
    height, width = rows * BLOCK, columns * BLOCK
    luma = grey.astype(np.float32)
    response = np.abs(cv2.filter2D(luma, cv2.CV_32F, _NOISE_KERNEL))
    inner = (slice(1, height + 1), slice(1, width + 1))  # the filter's border rows and columns are left out
    estimate = _block_means(response[inner], rows, columns) * _TO_SIGMA
    mean = _block_means(luma[inner], rows, columns)
    spread = np.sqrt(np.maximum(_block_means(luma[inner] ** 2, rows, columns) - mean**2, 0.0))
    in_range = cv2.inRange(grey[inner], _DARKEST + 1, _BRIGHTEST - 1)  # 255 where measurable
    measurable = _block_means(in_range, rows, columns) == 255
    if np.count_nonzero(measurable) < MIN_BLOCKS:
        return math.nan
    estimate, spread = estimate[measurable], spread[measurable]
    flattest = np.argsort(spread, kind="stable")[: max(3, round(FLAT_SHARE * spread.size))]
    whiteness = float(np.median(estimate[flattest] / np.maximum(spread[flattest], 1e-3)))
    low, high = WHITENESS_RAMP
    return float(np.median(estimate[flattest])) * min(max((whiteness - low) / (high - low), 0.0), 1.0)
