"""The measured view statistics move the way their names say."""

import cv2
import numpy as np
import pytest
import skimage.data

from pixelperfect_daemon.view_statistics import (
    STATISTIC_NAMES,
    STATISTICS_PER_VIEW,
    statistics_of_views,
    view_statistics,
)
from pixelperfect_daemon.views import make_views


@pytest.fixture(scope="module")
def photo_view() -> np.ndarray:
    return make_views(skimage.data.coffee())[0]


def stat(view: np.ndarray, name: str) -> float:
    return float(view_statistics(view)[STATISTIC_NAMES.index(name)])


def test_one_finite_float32_value_per_name(photo_view):
    values = view_statistics(photo_view)
    assert values.shape == (STATISTICS_PER_VIEW,) and values.dtype == np.float32
    assert np.isfinite(values).all()


def test_views_of_a_batch_are_laid_side_by_side(photo_view):
    grey = np.full_like(photo_view, 128)
    batch = np.stack([np.stack([photo_view, grey]), np.stack([grey, photo_view])])
    table = statistics_of_views(batch)
    assert table.shape == (2, 2 * STATISTICS_PER_VIEW)
    np.testing.assert_array_equal(table[0, :STATISTICS_PER_VIEW], view_statistics(photo_view))
    np.testing.assert_array_equal(table[1, STATISTICS_PER_VIEW:], view_statistics(photo_view))
    assert statistics_of_views(batch[:0]).shape == (0, 2 * STATISTICS_PER_VIEW)


def test_exposure_shows_in_the_luma_histogram(photo_view):
    dark = (photo_view * 0.15).astype(np.uint8)
    bright = np.clip(photo_view.astype(int) * 3, 0, 255).astype(np.uint8)
    assert stat(dark, "luma_mean") < 0.5 * stat(photo_view, "luma_mean")
    assert stat(dark, "crushed_fraction") > stat(photo_view, "crushed_fraction") + 0.1
    assert stat(bright, "blown_fraction") > stat(photo_view, "blown_fraction") + 0.2
    assert stat(bright, "luma_p50") > stat(photo_view, "luma_p50")


def test_colour_and_its_cast(photo_view):
    grey = cv2.cvtColor(cv2.cvtColor(photo_view, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert stat(grey, "colourfulness") < 0.01 < stat(photo_view, "colourfulness")
    blue_cast = photo_view.copy()
    blue_cast[..., 2] = np.clip(blue_cast[..., 2].astype(int) + 60, 0, 255)
    assert stat(blue_cast, "cast_yellow_blue") < stat(photo_view, "cast_yellow_blue") - 0.1


def test_noise_raises_the_noise_estimates_and_blur_lowers_sharpness(photo_view):
    rng = np.random.default_rng(0)
    noisy = np.clip(photo_view + rng.normal(0, 15, photo_view.shape), 0, 255).astype(np.uint8)
    colour_noisy = photo_view.astype(float)
    colour_noisy[..., 0] += rng.normal(0, 15, photo_view.shape[:2])
    colour_noisy = np.clip(colour_noisy, 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(photo_view, (0, 0), 3)
    assert stat(noisy, "log_noise_sigma") > stat(photo_view, "log_noise_sigma") + 0.5
    assert stat(colour_noisy, "log_chroma_noise_sigma") > stat(photo_view, "log_chroma_noise_sigma") + 0.5
    assert stat(blurred, "log_sharpness") < stat(photo_view, "log_sharpness") - 1.0


def test_jpeg_blocking_is_found_off_the_grid_too(photo_view):
    _, encoded = cv2.imencode(".jpg", photo_view, [cv2.IMWRITE_JPEG_QUALITY, 8])
    blocky = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    shifted = np.roll(blocky, (3, 5), axis=(0, 1))  # the detail crop need not start on the grid
    assert stat(blocky, "blockiness") > stat(photo_view, "blockiness") + 0.3
    assert stat(shifted, "blockiness") > stat(photo_view, "blockiness") + 0.3


def test_posterisation_quantisation_streaks_flat_blocks_and_impulses(photo_view):
    posterised = (photo_view // 64 * 64).astype(np.uint8)
    assert stat(posterised, "histogram_gaps") > 0.8 > stat(photo_view, "histogram_gaps")
    assert stat(posterised, "colour_count") < stat(photo_view, "colour_count") - 0.3

    streaked = photo_view.copy()
    streaked[100:104] = 255
    assert stat(streaked, "row_streaks") > stat(photo_view, "row_streaks") + 1.0
    streaked_columns = photo_view.copy()
    streaked_columns[:, 50:52] = 0
    assert stat(streaked_columns, "column_streaks") > stat(photo_view, "column_streaks") + 1.0

    grey_filled = photo_view.copy()
    grey_filled[112:] = 128  # a truncated file's missing bottom
    assert stat(grey_filled, "flat_blocks") > stat(photo_view, "flat_blocks") + 0.4

    salt = photo_view.copy()
    rng = np.random.default_rng(1)
    salt[rng.random(photo_view.shape[:2]) < 0.05] = 255
    assert stat(salt, "impulses") > stat(photo_view, "impulses") + 0.02
