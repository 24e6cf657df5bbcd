"""The screen's pure parts: the listing key, the loupe markup, the heat-map, capture times."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from review_ui.capture_time import parse_exif_time, read_capture_time
from review_ui.heatmap import HeatMap, colour_band_steps, compute_heatmap, grid_shape, missing_detail, robust_heat
from review_ui.screen.helpers import listing_key
from review_ui.screen.loupe import file_url, loupe_html
from review_ui.service import LoupeView


def test_listing_key_ignores_surrounding_spaces_and_names_the_page():
    assert listing_key(["poor", " IMG "], "quality_asc", None) == ["poor", "IMG", "quality_asc", 1]
    assert listing_key(["poor", None], "name", "3") == ["poor", None, "name", 3]


def test_exif_times_become_sortable_iso_text():
    assert parse_exif_time("2024:05:01 10:00:03", "25") == "2024-05-01T10:00:03.250000"
    assert parse_exif_time(b"2024:05:01 10:00:03\x00") == "2024-05-01T10:00:03.000000"
    assert parse_exif_time("0000:00:00 00:00:00") == "" and parse_exif_time(None) == ""


def test_capture_time_is_read_from_the_files_exif(tmp_path):
    image = Image.new("RGB", (32, 32))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2023:12:24 18:30:00"
    exif.get_ifd(0x8769)[37521] = "5"
    image.save(tmp_path / "a.jpg", exif=exif)
    image.save(tmp_path / "b.jpg")
    assert read_capture_time(tmp_path / "a.jpg") == "2023-12-24T18:30:00.500000"
    assert read_capture_time(tmp_path / "b.jpg") == ""
    (tmp_path / "c.cr2").write_bytes(b"not an image")
    assert read_capture_time(tmp_path / "c.cr2") == ""


def test_grid_tiles_are_roughly_square_and_never_tiny():
    assert grid_shape(1600, 1067) == (5, 8)
    assert grid_shape(1067, 1600) == (12, 8)
    assert grid_shape(100, 60) == (1, 2)


def test_robust_heat_marks_only_the_outlier():
    heat = robust_heat(np.array([1.0, 1.1, 0.9, 1.0, 5.0]))
    assert heat[-1] == 1.0 and heat[:-1].max() < 0.2


def test_robust_heat_keeps_the_hottest_of_several_strong_outliers_unique():
    heat = robust_heat(np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 5.0, 9.0]))
    assert int(np.argmax(heat)) == 7 and heat[7] == 1.0 and 0.2 < heat[6] < 0.9 and heat[:6].max() < 0.1


def textured(width=640, height=480, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 50 * np.sin(x / 3.0) * np.cos(y / 4.0) + rng.normal(0, 2, (height, width))
    return np.clip(np.stack([base] * 3, axis=-1), 0, 255).astype(np.uint8)


def test_heatmap_points_at_a_blurred_and_at_a_noisy_corner():
    pixels = textured()
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(4))).copy()
    damaged = pixels.copy()
    damaged[:160, :240] = blurred[:160, :240]  # top left
    heat = compute_heatmap(damaged)
    row, column = heat.hottest("blur")
    assert row < 2 and column < 3, (row, column)

    noisy = pixels.astype(np.float32)
    noisy[320:, 400:] += np.random.default_rng(1).normal(0, 30, noisy[320:, 400:].shape)
    heat = compute_heatmap(np.clip(noisy, 0, 255).astype(np.uint8))
    row, column = heat.hottest("noise")
    assert row >= heat.rows - 2 and column >= heat.columns - 3, (row, column)
    assert set(heat.scores) == {"blur", "noise", "color_distortion", "luminance_contrast", "compression",
                                "transmission_errors", "other"}  # fmt: skip
    assert HeatMap.from_dict(heat.to_dict()) == heat


def sky_over_ground(width=800, height=600, seed=0) -> np.ndarray:
    """A clean sky (a smooth gradient, as rendered or denoised) over ground of sharp-edged patches
    of colour, as walls, windows and leaves are: 6 x 8 tiles, the sky in the top 2.4 rows."""
    rng = np.random.default_rng(seed)
    t = (np.arange(height, dtype=np.float32) / height)[:, None, None]
    sky = np.array([80, 130, 210], np.float32) * (1 - t) + np.array([190, 210, 240], np.float32) * t
    patches = rng.integers(40, 220, (height // 6 + 1, width // 6 + 1, 3)).astype(np.float32)
    ground = np.repeat(np.repeat(patches, 6, axis=0), 6, axis=1)[:height, :width]
    ground += rng.normal(0, 2, ground.shape)
    is_sky = np.arange(height)[:, None, None] < 0.4 * height
    return np.clip(np.where(is_sky, np.broadcast_to(sky, ground.shape), ground), 0, 255).astype(np.uint8)


def luma_of(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).convert("L"), np.float32) / 255.0


def test_heatmap_blur_points_at_blurred_detail_not_at_a_clean_sky():
    pixels = sky_over_ground()
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(3)))
    damaged = pixels.copy()
    damaged[400:, 600:] = blurred[400:, 600:]  # tiles (4, 6) to (5, 7)
    heat = compute_heatmap(damaged)
    assert (heat.rows, heat.columns) == (6, 8)
    row, column = heat.hottest("blur")
    assert row >= 4 and column >= 6, (row, column)
    evidence = missing_detail(luma_of(damaged), heat.rows, heat.columns)
    assert evidence[4:, 6:].min() > evidence[:2].max() + 1.0  # the sky has no detail, but nothing lost either
    assert evidence[4:, 6:].min() > evidence[2:, :5].max() + 1.0


def test_heatmap_of_a_uniformly_soft_photo_has_no_hot_spot():
    soft = np.asarray(Image.fromarray(sky_over_ground()).filter(ImageFilter.GaussianBlur(3)))
    assert np.max(compute_heatmap(soft).scores["blur"]) < 0.5


def test_heatmap_of_a_tiny_or_sliver_image_is_cold_not_an_error():
    rng = np.random.default_rng(5)
    for height, width in ((1, 1), (7, 7), (60, 60), (40, 3), (5, 500), (500, 6)):
        heat = compute_heatmap(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        assert (heat.rows, heat.columns) == grid_shape(width, height)
        assert all(np.shape(grid) == (heat.rows, heat.columns) and not np.any(grid) for grid in heat.scores.values())


def test_colour_band_steps_see_a_level_change_of_colour_not_an_upright_or_sloping_one():
    y, x = np.mgrid[0:200, 0:200]
    grey, magenta = np.array([128, 128, 128], np.uint8), np.array([188, 38, 128], np.uint8)
    one_tile = ([0, 200], [0, 200])
    level, upright, sloping = (
        np.where(below[..., None], magenta, grey) for below in (y >= 100, x >= 100, y >= 50 + x / 2)
    )
    level_step = colour_band_steps(level, *one_tile)[0, 0]
    assert level_step > 0.3
    assert colour_band_steps(upright, *one_tile)[0, 0] < 0.01
    assert colour_band_steps(sloping, *one_tile)[0, 0] < 0.1 * level_step


def test_heatmap_transmission_errors_point_at_a_band_of_wrong_colour():
    pixels = sky_over_ground().astype(np.int16)
    pixels[330:350, 300:500] += np.array([60, -90, 0], np.int16)  # a magenta band in tiles (3, 3) and (3, 4)
    heat = compute_heatmap(np.clip(pixels, 0, 255).astype(np.uint8))
    assert heat.hottest("transmission_errors") in {(3, 3), (3, 4)}, heat.hottest("transmission_errors")


def test_loupe_markup_names_the_derivative_the_focus_and_the_heat_grid(tmp_path):
    heat = HeatMap(rows=2, columns=2, scores={"blur": [[0.0, 1.0], [0.1, 0.5]]})
    view = LoupeView(path="/w/a <b>.jpg", image=tmp_path / "ab" / "x y.jpg", size=(6000, 4000), focus=(0.75, 0.25),
                     defect="blur", heatmap=heat)  # fmt: skip
    html = loupe_html(view)
    assert 'data-width="6000" data-height="4000"' in html and 'data-focus-x="0.7500"' in html
    assert f'src="{file_url(view.image)}"' in html and "x%20y.jpg" in html
    assert html.count("pp-heat-cell") == 4 and "rgba(255, 40, 0, 0.0)" in html
    assert "<b>" not in html  # the file name is escaped


def test_rejects_summary_says_what_was_done_and_what_failed():
    from review_ui.screen.helpers import rejects_summary

    done = {"folder": "/r", "done": [["/a", "/r/a"]], "failures": []}
    assert rejects_summary(done, move=True) == "Moved 1 Poor image to `/r`."
    failed = {"folder": "/r", "done": [], "failures": ["a: not found"] * 4}
    assert rejects_summary(failed, move=False).endswith("⚠ not done: a: not found; a: not found; a: not found …")


def test_lightroom_summary_names_what_lightroom_cannot_select_without_quoting_the_filter():
    from review_ui.lightroom_export import plan_collection
    from review_ui.queries import ImageFilter
    from review_ui.screen.helpers import lightroom_summary

    text = lightroom_summary(plan_collection(ImageFilter(verdict="poor", folder="/x/<b>evil`", name="[link](x)")))
    assert text.startswith("Smart collection: keywords PixelPerfect › Poor.")
    assert "cannot select by folder, file name" in text and "evil" not in text and "link" not in text
    assert "cannot select" not in lightroom_summary(plan_collection(ImageFilter(verdict="good")))
    assert lightroom_summary(plan_collection(ImageFilter(verdict="error"))).startswith("No smart collection")
