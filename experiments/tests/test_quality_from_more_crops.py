"""The grid of 100 % regions covers the photo, and the detail half of the heads' inputs is the right one."""

from pathlib import Path

import numpy as np

from experiments.quality_from_more_crops import detail_half, grid_regions, inputs_of_photo, mosaic_view
from pixelperfect_daemon.view_statistics import STATISTICS_PER_VIEW
from pixelperfect_daemon.views import VIEW_SIZE
from tests.fixtures_images import make_jpeg

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def test_the_grid_reaches_every_corner_at_full_resolution():
    pixels = np.arange(500 * 700 * 3, dtype=np.uint32).reshape(500, 700, 3)
    regions = grid_regions(pixels, 3)
    assert len(regions) == 9 and all(r.shape == (VIEW_SIZE, VIEW_SIZE, 3) for r in regions)
    assert (regions[0][0, 0] == pixels[0, 0]).all() and (regions[-1][-1, -1] == pixels[-1, -1]).all()
    assert (regions[4][0, 0] == pixels[138, 238]).all()  # the middle one, centred


def test_a_photo_smaller_than_a_view_is_padded_not_scaled():
    pixels = np.full((100, 300, 3), 7, dtype=np.uint8)
    (region,) = grid_regions(pixels, 1)
    assert region.shape == (VIEW_SIZE, VIEW_SIZE, 3) and (region == 7).all()


def test_the_detail_half_is_the_second_views_features_and_statistics(tmp_path):
    from pixelperfect_daemon.engine import Analyzer

    photo = make_jpeg(tmp_path / "a.jpg", size=(400, 300))
    shipped, grid, mosaic = inputs_of_photo(Analyzer(MODELS_DIR), photo, 2)
    width = len(shipped)
    detail = detail_half(width)
    overview = np.setdiff1d(np.arange(width), detail)
    assert len(detail) == len(overview)
    assert np.allclose(shipped[overview], grid[overview], atol=1e-5)  # the same overview in every pair
    assert not np.allclose(shipped[detail], grid[detail])  # other regions than the most detailed one
    assert detail[-1] == width - 1 and detail[-STATISTICS_PER_VIEW] == width - STATISTICS_PER_VIEW


def test_the_mosaic_tiles_full_resolution_regions_from_corner_to_corner():
    pixels = np.random.default_rng(0).integers(0, 256, (500, 700, 3), dtype=np.uint8)
    mosaic = mosaic_view(pixels, 2)
    assert mosaic.shape == (VIEW_SIZE, VIEW_SIZE, 3)
    assert (mosaic[:112, :112] == pixels[:112, :112]).all()
    assert (mosaic[112:, 112:] == pixels[-112:, -112:]).all()
