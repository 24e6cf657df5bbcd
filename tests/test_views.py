import cv2
import numpy as np
import pytest

from pixelperfect_daemon.views import VIEW_SIZE, detail_origin, make_views


def textured_patch_image(height, width, patch_yx):
    """A flat grey image with one noisy (detailed) patch: the detail view must find it."""
    image = np.full((height, width, 3), 128, np.uint8)
    y, x = patch_yx
    rng = np.random.default_rng(0)
    image[y : y + VIEW_SIZE, x : x + VIEW_SIZE] = rng.integers(0, 255, (VIEW_SIZE, VIEW_SIZE, 3))
    return image


@pytest.mark.parametrize("shape", [(4000, 6000), (500, 500), (100, 300), (1, 1), (3000, 40)])
def test_views_have_the_model_input_shape(shape):
    views = make_views(np.zeros((*shape, 3), np.uint8))
    assert views.shape == (2, VIEW_SIZE, VIEW_SIZE, 3) and views.dtype == np.uint8


@pytest.mark.parametrize("shape, patch", [((600, 800), (300, 500)), ((3000, 4000), (1200, 2600)), ((500, 500), (0, 0))])
def test_detail_view_is_the_most_detailed_region_at_full_resolution(shape, patch):
    image = textured_patch_image(*shape, patch)
    y, x = detail_origin(image)
    # Within a few pixels of the patch (the search runs on a reduced copy of big images).
    tolerance = max(4, max(shape) // 384 * 2)
    assert abs(y - patch[0]) <= tolerance and abs(x - patch[1]) <= tolerance
    detail = make_views(image)[1]
    assert detail.std() > 50  # the noisy patch, not grey


def test_overview_keeps_the_whole_frame():
    image = np.zeros((400, 800, 3), np.uint8)
    image[:, 400:] = 255  # right half white
    overview = make_views(image)[0]
    assert overview[:, : VIEW_SIZE // 2 - 2].max() == 0 and overview[:, VIEW_SIZE // 2 + 2 :].min() == 255


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError):
        make_views(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("shape", [(3000, 4000), (1000, 1337), (500, 500), (300, 120)])
def test_a_pillow_image_gives_the_same_views_as_its_array(shape):
    from PIL import Image

    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 255, (shape[0] // 20 + 2, shape[1] // 20 + 2, 3), dtype=np.uint8), shape[::-1])
    pixels = textured_patch_image(*shape, (shape[0] // 3, shape[1] // 2)) if min(shape) > VIEW_SIZE else base
    pixels = np.where(pixels == 128, base, pixels).astype(np.uint8)
    from_array, from_image = make_views(pixels), make_views(Image.fromarray(pixels))
    assert np.abs(from_array[0].astype(int) - from_image[0].astype(int)).mean() < 1.0  # overview, up to rounding
    assert np.array_equal(from_array[1], from_image[1])  # the same 100 % crop
