"""What the browser is shown: cached thumbnails, previews and full views, the EXIF summary."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from review_ui.exif_summary import ExifReader, format_aperture, format_shutter, summarize_exif
from review_ui.thumbnails import RenderCache
from tests.fixtures_images import make_jpeg, make_raw_like

# -- the render cache -----------------------------------------------------------------------


def test_thumbnails_are_small_cached_and_keyed_by_the_files_state(tmp_path):
    original = make_jpeg(tmp_path / "big.jpg", size=(3000, 2000))
    cache = RenderCache(tmp_path / "cache")
    thumb = cache.thumbnail(original)
    with Image.open(thumb) as image:
        assert max(image.size) == 320 and image.format == "JPEG"
    assert thumb.stat().st_size < 60_000
    assert cache.thumbnail(original) == thumb  # the same entry: generated once
    first_mtime = thumb.stat().st_mtime_ns
    cache.thumbnail(original)
    assert thumb.stat().st_mtime_ns == first_mtime  # not regenerated
    # An edited original gets a fresh thumbnail, never the stale one.
    make_jpeg(original, size=(3000, 2000), variant=1)
    os.utime(original, ns=(first_mtime + 10**9, first_mtime + 10**9))
    assert cache.thumbnail(original) != thumb


def test_generation_decodes_at_reduced_size(tmp_path):
    original = make_jpeg(tmp_path / "big.jpg", size=(4000, 3000))
    calls = []

    def spy(path, *, max_pixels, min_side):
        from pixelperfect_daemon.loading import load_image

        calls.append(min_side)
        return load_image(path, max_pixels=max_pixels, min_side=min_side)

    cache = RenderCache(tmp_path / "cache", decode=spy)
    cache.thumbnail(original)
    cache.preview(original)
    assert calls and all(side is not None and side <= 1200 for side in calls)


def test_raw_files_get_a_thumbnail_from_their_preview(tmp_path):
    raw = make_raw_like(tmp_path / "IMG_0001.CR2")
    thumb = RenderCache(tmp_path / "cache").thumbnail(raw)
    assert "placeholders" not in thumb.parts
    with Image.open(thumb) as image:
        assert image.format == "JPEG" and max(image.size) <= 320


def test_unreadable_and_missing_files_get_placeholders_not_errors(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    cache = RenderCache(tmp_path / "cache")
    assert cache.thumbnail(text).name == "unreadable.jpg"
    assert cache.thumbnail(tmp_path / "gone.jpg").name == "missing.jpg"
    assert cache.full_view(text).name == "unreadable.jpg"
    with Image.open(cache.thumbnail(text)) as image:
        image.verify()


def test_previews_and_full_views(tmp_path):
    original = make_jpeg(tmp_path / "big.jpg", size=(2400, 1600))
    cache = RenderCache(tmp_path / "cache")
    with Image.open(cache.preview(original)) as preview:
        assert max(preview.size) == 1600
    full = cache.full_view(original)
    assert full.is_relative_to(cache.cache_dir)
    with Image.open(full) as image:
        assert image.size == (2400, 1600) and image.format == "JPEG" and "exif" not in image.info
        shown = np.asarray(image, dtype=np.int16)
    # Every pixel of the original, re-encoded without chroma subsampling: close to the decode.
    from pixelperfect_daemon.loading import load_image

    decoded = np.asarray(load_image(original).image, dtype=np.int16)
    assert np.abs(shown - decoded).mean() < 2.0


def test_the_original_is_never_modified(tmp_path):
    original = make_jpeg(tmp_path / "keep.jpg")
    before = (original.read_bytes(), original.stat().st_mtime_ns)
    cache = RenderCache(tmp_path / "cache")
    cache.thumbnail(original), cache.preview(original), cache.full_view(original)
    assert (original.read_bytes(), original.stat().st_mtime_ns) == before


# -- EXIF -----------------------------------------------------------------------------------


def test_summary_formats_what_photographers_read():
    tags = {
        "EXIF:Make": "Canon", "EXIF:Model": "Canon EOS R5", "EXIF:LensModel": "RF24-70mm F2.8 L IS USM",
        "EXIF:ISO": 3200, "EXIF:ExposureTime": 0.004, "EXIF:FNumber": 2.8, "EXIF:FocalLength": 50.0,
        "EXIF:DateTimeOriginal": "2024:05:01 10:00:00",
    }  # fmt: skip
    assert summarize_exif(tags) == {
        "camera": "Canon EOS R5", "lens": "RF24-70mm F2.8 L IS USM", "iso": "ISO 3200",
        "shutter": "1/250 s", "aperture": "f/2.8", "focal_length": "50 mm", "taken": "2024:05:01 10:00:00",
    }  # fmt: skip
    assert (
        summarize_exif({"EXIF:Make": "NIKON CORPORATION", "EXIF:Model": "D850"})["camera"] == "NIKON CORPORATION D850"
    )
    assert summarize_exif({})["camera"] is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.004, "1/250 s"), (1 / 60, "1/60 s"), (2, "2 s"), (0.5, "1/2 s"), (0, None), ("x", None)]
)
def test_shutter_speeds(seconds, text):
    assert format_shutter(seconds) == text


def test_apertures():
    assert (format_aperture(8), format_aperture(1.4), format_aperture(None)) == ("f/8", "f/1.4", None)


def test_reader_uses_exiftool_on_a_real_file(tmp_path):
    photo = make_jpeg(tmp_path / "shot.jpg")
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-Make=FUJIFILM", "-Model=X-T4", "-ISO=800",
         "-ExposureTime=1/125", "-FNumber=5.6", "-LensModel=XF16-55mmF2.8 R LM WR", str(photo)],
        check=True,
    )  # fmt: skip
    reader = ExifReader()
    try:
        summary = reader.read(photo)
        assert summary["camera"] == "FUJIFILM X-T4"
        assert (summary["iso"], summary["shutter"], summary["aperture"]) == ("ISO 800", "1/125 s", "f/5.6")
        assert summary["lens"] == "XF16-55mmF2.8 R LM WR"
        assert reader.read(tmp_path / "missing.jpg")["camera"] is None  # no crash on a vanished file
    finally:
        reader.close()
