"""The views taken straight from a JPEG's DCT coefficients match those of the full decode.

Tolerance: the partial decode rounds differently from libjpeg (float inverse DCT, upsampling
and colour conversion), and below 1/8 the DCT-scaled copy is libjpeg's reduced-size inverse DCT
rather than exact block means, so pixels may differ by a few levels. Where several regions are
about equally detailed that can move the detail crop: it must then be as detailed (Laplacian
energy at 100 %) as the full decode's, and match the full decode's pixels where it lies. The
noise meter reads the reduced copy, which the DCT route makes from libjpeg's scaled inverse DCT
(a different low-pass than block means below 1/8), so its readings may differ by a grey level or so.
"""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelperfect_daemon import jpeg_dct
from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.file_views import jpeg_views, load_views, load_views_pinned
from pixelperfect_daemon.loading import ImageLoadError, load_image, pinned_file
from pixelperfect_daemon.screen_noise import screen_noise_sigma
from pixelperfect_daemon.views import make_views, reduction_factor, views_and_reduced_copy

from .fixtures_images import (
    _exif_bytes,
    exiftool_available,
    make_corrupt_jpeg,
    make_raw_like,
    make_truncated_jpeg,
    photo,
)

MAX_PIXEL_DIFFERENCE = 12  # levels of 255, in 99.9 % of a view's pixel values
WORST_PIXEL_DIFFERENCE = 32  # levels of 255, any one (colour edges: chroma averaged before upsampling)
MAX_MEAN_DIFFERENCE = 0.75  # levels of 255, averaged over a view
MIN_DETAIL_ENERGY_RATIO = 0.9  # a moved detail crop's fine detail against the full decode's crop
MAX_NOISE_READING_DIFFERENCE = 1.5  # grey levels (screen_noise.py)

pytestmark = pytest.mark.skipif(not jpeg_dct.available(), reason="libturbojpeg0 is not installed")


def camera_like(size, variant=0, seed=0) -> np.ndarray:
    """A sample photo at ``size`` with sensor-like grain, so fine detail is not one smooth upscale."""
    pixels = photo(size, variant).astype(np.float32)
    grain = np.random.default_rng(seed).normal(0, 3, pixels.shape)
    return np.clip(pixels + grain, 0, 255).astype(np.uint8)


def save_jpeg(path, pixels, *, mode="RGB", **options):
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, "JPEG", quality=options.pop("quality", 90), **options)
    return path


def detail_energy(crop: np.ndarray) -> float:
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3)).mean())


def assert_close(name, fast, full):
    difference = np.abs(fast.astype(np.int16) - full.astype(np.int16))
    assert np.percentile(difference, 99.9) <= MAX_PIXEL_DIFFERENCE, (name, float(np.percentile(difference, 99.9)))
    assert difference.max() <= WORST_PIXEL_DIFFERENCE, (name, int(difference.max()))
    assert difference.mean() <= MAX_MEAN_DIFFERENCE, (name, float(difference.mean()))


def assert_views_match(path, kind="JPEG"):
    fast = load_views(path)
    pixels = load_image(path).pixels
    full, reduced = views_and_reduced_copy(pixels)
    assert fast.from_coefficients, "the clean JPEG should have taken the DCT route"
    assert abs(fast.screen_noise - screen_noise_sigma(reduced)) <= MAX_NOISE_READING_DIFFERENCE
    assert_close("overview", fast.views[0], full[0])
    y, x = fast.detail_origin
    assert_close("detail", fast.views[1], pixels[y : y + 224, x : x + 224])
    assert detail_energy(fast.views[1]) >= MIN_DETAIL_ENERGY_RATIO * detail_energy(full[1])
    assert fast.original_size == load_image(path).original_size
    assert fast.corruption is None
    assert fast.format == kind == load_image(path).format


@pytest.mark.parametrize("size", [(1200, 900), (1203, 901), (2401, 1799), (1000, 3650)])
def test_sizes_and_scalings_match_the_full_decode(tmp_path, size):
    # Factors 2, 2, 4 and 8: every DCT scaling the route uses, odd sizes cutting blocks and MCUs.
    assert reduction_factor(size[1], size[0]) >= 2
    assert_views_match(save_jpeg(tmp_path / "photo.jpg", camera_like(size)))


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_chroma_subsampling_matches(tmp_path, subsampling):
    assert_views_match(save_jpeg(tmp_path / "photo.jpg", camera_like((1300, 950), 1), subsampling=subsampling))


def test_progressive_and_restart_markers_match(tmp_path):
    pixels = camera_like((1300, 950), 2)
    assert_views_match(save_jpeg(tmp_path / "progressive.jpg", pixels, progressive=True))
    assert_views_match(save_jpeg(tmp_path / "restarts.jpg", pixels, restart_marker_rows=1))


def test_greyscale_matches(tmp_path):
    assert_views_match(save_jpeg(tmp_path / "grey.jpg", camera_like((1300, 950), 3), mode="L"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches(tmp_path, orientation):
    path = save_jpeg(tmp_path / "rotated.jpg", camera_like((1500, 950), 1), exif=_exif_bytes(orientation))
    assert_views_match(path)


@pytest.mark.skipif(not exiftool_available(), reason="exiftool is not installed")
@pytest.mark.parametrize("orientation", [None, 6])
def test_raw_jpeg_preview_takes_the_route(tmp_path, orientation):
    path = make_raw_like(tmp_path / "IMG_0001", ".CR2", preview_size=(1300, 950), orientation=orientation)
    assert_views_match(path, "RAW:CR2")


def test_cmyk_takes_the_full_decode(tmp_path):
    path = save_jpeg(tmp_path / "cmyk.jpg", camera_like((1300, 950)), mode="CMYK")
    loaded = load_views(path)
    assert not loaded.from_coefficients
    assert np.array_equal(loaded.views, make_views(load_image(path).image))


def test_small_jpeg_takes_the_full_decode(tmp_path):
    path = save_jpeg(tmp_path / "small.jpg", camera_like((800, 600)))
    loaded = load_views(path)
    assert not loaded.from_coefficients
    assert np.array_equal(loaded.views, make_views(load_image(path).image))


def test_twelve_bit_jpeg_is_refused_cleanly(tmp_path):
    data = bytearray(save_jpeg(io.BytesIO(), camera_like((1300, 950))).getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 1], data[frame + 4] = 0xC1, 12  # an extended-sequential frame of 12-bit samples
    path = tmp_path / "twelve_bit.jpg"
    path.write_bytes(bytes(data))
    assert jpeg_views(bytes(data), 250_000_000) is None
    with pytest.raises(ImageLoadError):
        load_views(path)


def test_bomb_header_is_refused_before_decoding(tmp_path):
    path = save_jpeg(tmp_path / "photo.jpg", camera_like((1300, 950)))
    with pytest.raises(ImageLoadError, match="image too large"):
        load_views(path, max_pixels=1000 * 1000)


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "corrupt progressive"])
def test_damaged_jpegs_keep_their_transmission_errors(tmp_path, trained_models_dir, damage):
    size = (1300, 950)
    if damage == "truncated":
        path = make_truncated_jpeg(tmp_path / "damaged.jpg", size, keep_fraction=0.6)
    else:
        path = make_corrupt_jpeg(tmp_path / "damaged.jpg", size, progressive="progressive" in damage)
    assert not load_views(path).from_coefficients
    result = Analyzer(trained_models_dir).analyze_path(path)
    assert result.verdict == "poor"
    assert result.defect == "transmission_errors"
    assert result.error


def test_clean_big_jpeg_is_analysed_from_its_coefficients(tmp_path, trained_models_dir):
    path = save_jpeg(tmp_path / "photo.jpg", camera_like((1300, 950)))
    analyzer = Analyzer(trained_models_dir)
    fast = analyzer.analyze_path(path)
    full = analyzer.analyze_decoded(path, load_image(path))
    assert fast.verdict == full.verdict
    assert abs(fast.quality - full.quality) < 0.02


@pytest.mark.slow
def test_every_big_shared_jpeg_matches_the_full_decode(shared_data):
    checked = 0
    for path in sorted(shared_data.rglob("*.jpg")):
        with Image.open(path) as image:
            if reduction_factor(image.height, image.width) < 2:
                continue
        assert_views_match(path)
        checked += 1
    assert checked > 0


def test_a_failure_inside_the_route_falls_back_to_the_full_decode(tmp_path, monkeypatch, caplog):
    path = save_jpeg(tmp_path / "photo.jpg", camera_like((1300, 950)))

    def broken(*args, **kwargs):
        raise IndexError("component 3 of 3")

    monkeypatch.setattr(jpeg_dct, "decode_reduced_and_region", broken)
    loaded = load_views(path)
    assert not loaded.from_coefficients
    assert np.array_equal(loaded.views, make_views(load_image(path).image))
    assert "decoding in full" in caplog.text


@pytest.mark.skipif(not exiftool_available(), reason="exiftool is not installed")
def test_a_pinned_file_is_the_one_decoded_whatever_takes_its_name(tmp_path):
    """``load_views_pinned`` opens the file once: a name swapped meanwhile (here, inside the pin)
    reaches no decoder, the JPEG route, the full decode and LibRaw's RAW route alike."""
    other = save_jpeg(tmp_path / "other.jpg", camera_like((1300, 950), variant=3))
    for name, make in (
        ("big.jpg", lambda path: save_jpeg(path, camera_like((1300, 950)))),
        ("small.jpg", lambda path: save_jpeg(path, camera_like((400, 300)))),
        ("photo.CR2", lambda path: make_raw_like(path, ".CR2")),
    ):
        path = make(tmp_path / name)
        expected = load_views(path)
        with pinned_file(path) as pinned:
            os.replace(other, path)  # the name now holds another photo
            loaded = load_views(pinned, suffix=path.suffix)
        assert np.array_equal(loaded.views, expected.views), name
        assert loaded.format == expected.format, name
        other = save_jpeg(tmp_path / "other.jpg", camera_like((1300, 950), variant=3))


def test_a_symlink_is_refused_by_the_pinned_load(tmp_path):
    target = save_jpeg(tmp_path / "photo.jpg", camera_like((400, 300)))
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    with pytest.raises(ImageLoadError, match="symbolic link"):
        load_views_pinned(link)
    assert load_views(link).views.shape == (2, 224, 224, 3)  # analyze on a path a user gives follows it
