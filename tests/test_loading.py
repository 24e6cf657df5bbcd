"""Tests for pixelperfect_daemon.loading: every format, orientation, reduced decodes, damage."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from pixelperfect_daemon.loading import (
    DecodedImage,
    ImageLoadError,
    describe_os_error,
    load_image,
    parse_exiftool_previews,
    scan_jpeg_structure,
    scan_png_structure,
    sniff_format,
)
from tests import fixtures_images as fx

SIZE = (640, 480)  # width, height as stored

needs_exiftool = pytest.mark.skipif(not fx.exiftool_available(), reason="needs exiftool")


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def gray_as_rgb(pixels: np.ndarray) -> np.ndarray:
    gray = np.asarray(Image.fromarray(pixels).convert("L"))
    return np.repeat(gray[..., None], 3, axis=2)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_rgb(decoded: DecodedImage, width: int, height: int) -> None:
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.shape == (height, width, 3)
    assert decoded.pixels.std() > 10, "photo-like content expected, not a flat image"


# --- every format ---------------------------------------------------------------------------

# (file name, maker, expected format, compare with gray?, tolerance in mean absolute difference)
FORMATS = [
    ("photo.jpg", lambda p: fx.make_jpeg(p, SIZE), "JPEG", False, 4),
    ("progressive.jpg", lambda p: fx.make_jpeg(p, SIZE, progressive=True), "JPEG", False, 4),
    ("photo.png", lambda p: fx.make_png(p, SIZE), "PNG", False, 0),
    ("palette.png", lambda p: fx.make_png(p, SIZE, mode="P"), "PNG", False, 6),
    ("gray.png", lambda p: fx.make_png(p, SIZE, mode="L"), "PNG", True, 0),
    ("gray16.png", lambda p: fx.make_png(p, SIZE, mode="I;16"), "PNG", True, 0),
    ("rgb16.png", lambda p: fx.make_png(p, SIZE, mode="RGB;16"), "PNG", False, 0),
    ("photo.tif", lambda p: fx.make_tiff(p, SIZE), "TIFF", False, 0),
    ("lzw.tif", lambda p: fx.make_tiff(p, SIZE, compression="tiff_lzw"), "TIFF", False, 0),
    ("rgb16.tif", lambda p: fx.make_tiff(p, SIZE, bit_depth=16), "TIFF", False, 0),
    ("photo.webp", lambda p: fx.make_webp(p, SIZE), "WEBP", False, 6),
    ("photo.bmp", lambda p: fx.make_bmp(p, SIZE), "BMP", False, 0),
    ("photo.heic", lambda p: fx.make_heic(p, SIZE), "HEIF", False, 6),
]


@pytest.mark.parametrize("name, make, expected_format, as_gray, tolerance", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_loads_as_upright_rgb(tmp_path, name, make, expected_format, as_gray, tolerance):
    path = make(tmp_path / name)
    before = sha256(path)

    decoded = load_image(path)

    assert decoded.format == expected_format
    assert decoded.corruption is None
    assert decoded.original_size == SIZE
    assert_rgb(decoded, *SIZE)
    expected = fx.photo(SIZE)
    if as_gray:
        expected = gray_as_rgb(expected)
    # 16-bit files are scaled to 8 bits, not clipped (clipping would make them nearly white).
    assert mean_abs_difference(decoded.pixels, expected) <= tolerance + 0.5
    assert sha256(path) == before


def test_alpha_is_composited_on_white(tmp_path):
    path = fx.make_png(tmp_path / "alpha.png", SIZE, mode="RGBA")  # alpha 0 at the left edge

    decoded = load_image(path)

    assert_rgb(decoded, *SIZE)
    assert (decoded.pixels[:, 0] == 255).all()
    opaque_column = fx.photo(SIZE)[:, -1]
    assert mean_abs_difference(decoded.pixels[:, -1], opaque_column) < 2


def test_gray_with_alpha_becomes_rgb(tmp_path):
    decoded = load_image(fx.make_png(tmp_path / "la.png", SIZE, mode="LA"))
    assert_rgb(decoded, *SIZE)
    assert (decoded.pixels[..., 0] == decoded.pixels[..., 1]).all()


def test_format_comes_from_content_not_extension(tmp_path):
    png_named_jpg = fx.make_png(tmp_path / "actually_png.jpg", SIZE)
    jpeg_named_png = fx.make_jpeg(tmp_path / "actually_jpeg.png", SIZE)
    jpeg_named_tif = fx.make_jpeg(tmp_path / "actually_jpeg.tif", SIZE)

    assert load_image(png_named_jpg).format == "PNG"
    assert load_image(jpeg_named_png).format == "JPEG"
    assert load_image(jpeg_named_tif).format == "JPEG"


def test_path_may_be_a_string(tmp_path):
    path = fx.make_jpeg(tmp_path / "photo.jpg", SIZE)
    assert load_image(str(path)).format == "JPEG"


# --- orientation ----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    path = fx.make_jpeg(tmp_path / "oriented.jpg", SIZE, exif_orientation=orientation)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))

    decoded = load_image(path)

    assert decoded.pixels.shape == expected.shape
    assert np.array_equal(decoded.pixels, expected)
    assert decoded.original_size == (expected.shape[1], expected.shape[0])


def test_orientation_6_turns_the_picture_clockwise(tmp_path):
    path = fx.make_jpeg(tmp_path / "portrait.jpg", SIZE, exif_orientation=6)

    decoded = load_image(path)

    assert decoded.original_size == (480, 640)
    assert decoded.pixels.shape == (640, 480, 3)
    clockwise = np.rot90(fx.photo(SIZE), k=-1)
    assert mean_abs_difference(decoded.pixels, clockwise) < 4


@pytest.mark.parametrize(
    "make",
    [
        lambda p: fx.make_png(p.with_suffix(".png"), SIZE, exif_orientation=6),
        lambda p: fx.make_tiff(p.with_suffix(".tif"), SIZE, exif_orientation=6),
        lambda p: fx.make_heic(p.with_suffix(".heic"), SIZE, exif_orientation=6),
    ],
    ids=["png", "tiff", "heic"],
)
def test_orientation_6_in_other_formats_rotates_exactly_once(tmp_path, make):
    decoded = load_image(make(tmp_path / "portrait"))

    assert decoded.original_size == (480, 640)
    assert decoded.pixels.shape == (640, 480, 3)
    clockwise = np.rot90(fx.photo(SIZE), k=-1)
    assert mean_abs_difference(decoded.pixels, clockwise) < 6


# --- reduced decodes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    return fx.make_jpeg(tmp_path_factory.mktemp("large") / "large.jpg", (4000, 3000), quality=85)


def test_min_side_decodes_a_large_jpeg_in_the_dct_domain(large_jpeg):
    decoded = load_image(large_jpeg, min_side=500)

    assert decoded.original_size == (4000, 3000)
    # libjpeg's 1/4 scale: 1000x750. A full decode then reduced by an integer factor would
    # have given 667x500 instead.
    assert decoded.pixels.shape == (750, 1000, 3)
    assert min(decoded.pixels.shape[:2]) >= 500


def test_min_side_never_goes_below_the_requested_side(large_jpeg):
    for min_side in (224, 299, 375, 1500, 2999):
        short_side = min(load_image(large_jpeg, min_side=min_side).pixels.shape[:2])
        assert min_side <= short_side < 2 * min_side


def test_min_side_larger_than_the_image_gives_the_full_image(tmp_path):
    path = fx.make_jpeg(tmp_path / "small.jpg", SIZE)
    assert load_image(path, min_side=5000).pixels.shape == (480, 640, 3)


def test_min_side_keeps_orientation_and_original_size(tmp_path):
    path = fx.make_jpeg(tmp_path / "portrait.jpg", (2000, 1200), exif_orientation=6)

    decoded = load_image(path, min_side=300)

    assert decoded.original_size == (1200, 2000)
    height, width = decoded.pixels.shape[:2]
    assert height > width and 300 <= width < 600


@pytest.mark.parametrize("make", [fx.make_png, fx.make_webp, fx.make_tiff], ids=["png", "webp", "tiff"])
def test_min_side_reduces_other_formats(tmp_path, make):
    path = make(tmp_path / f"photo.{make.__name__}", (1600, 1200))

    decoded = load_image(path, min_side=300)

    assert decoded.original_size == (1600, 1200)
    assert decoded.pixels.shape == (300, 400, 3)  # reduced by 4: 1200 // 300


# --- RAW and DNG ----------------------------------------------------------------------------


@needs_exiftool
def test_raw_like_file_loads_its_embedded_preview_through_exiftool(tmp_path):
    path = fx.make_raw_like(tmp_path / "IMG_0001", ".CR2", preview_size=(1200, 800))
    before = sha256(path)

    decoded = load_image(path)

    assert decoded.format == "RAW:CR2"
    assert decoded.corruption is None
    assert decoded.original_size == (1200, 800)  # the preview, not the 160x120 "sensor" strip
    assert_rgb(decoded, 1200, 800)
    assert mean_abs_difference(decoded.pixels, fx.photo((1200, 800))) < 4
    assert sha256(path) == before


@needs_exiftool
def test_raw_orientation_applies_to_a_preview_without_its_own(tmp_path):
    path = fx.make_raw_like(tmp_path / "IMG_0002.CR2", preview_size=(1200, 800), orientation=6)

    decoded = load_image(path, min_side=400)

    assert decoded.original_size == (800, 1200)
    assert decoded.pixels.shape == (600, 400, 3)  # 1/2 scale of the 800x1200 upright preview


@needs_exiftool
def test_raw_extension_is_case_insensitive(tmp_path):
    path = fx.make_raw_like(tmp_path / "img_0003", ".cr2")
    assert load_image(path).format == "RAW:CR2"


@needs_exiftool
def test_raw_without_a_findable_preview_is_an_error(tmp_path):
    path = fx.make_raw_like(tmp_path / "DSC_0001", ".NEF")

    with pytest.raises(ImageLoadError, match="no embedded preview"):
        load_image(path)


def test_dng_preview_is_read_through_libraw(tmp_path):
    path = fx.make_dng(tmp_path / "IMG_0004.DNG", SIZE, preview_size=(320, 240))
    before = sha256(path)

    decoded = load_image(path)

    assert decoded.format == "DNG"
    assert decoded.corruption is None
    assert decoded.original_size == (320, 240)
    assert mean_abs_difference(decoded.pixels, fx.photo((320, 240))) < 4
    assert sha256(path) == before


@pytest.mark.parametrize("orientation, quarter_turns", [(3, 2), (6, -1), (8, 1)])
def test_dng_orientation_is_applied_to_its_preview(tmp_path, orientation, quarter_turns):
    path = fx.make_dng(tmp_path / "IMG_0005.dng", SIZE, preview_size=(320, 240), orientation=orientation)

    decoded = load_image(path)

    expected = np.rot90(fx.photo((320, 240)), k=quarter_turns)
    assert decoded.pixels.shape == expected.shape
    assert mean_abs_difference(decoded.pixels, expected) < 4


def test_dng_without_preview_falls_back_to_its_main_image(tmp_path):
    path = fx.make_dng(tmp_path / "scan.dng", SIZE, preview_size=None)

    decoded = load_image(path)

    assert decoded.format == "DNG"
    assert_rgb(decoded, *SIZE)
    assert mean_abs_difference(decoded.pixels, fx.photo(SIZE)) == 0


def test_dng_is_recognised_by_its_tag_under_any_name(tmp_path):
    path = fx.make_dng(tmp_path / "scan.tif", SIZE, preview_size=None)
    assert load_image(path).format == "DNG"


# --- damage and non-images ------------------------------------------------------------------


def test_truncated_jpeg_decodes_partly_with_a_finding(tmp_path):
    path = fx.make_truncated_jpeg(tmp_path / "cut.jpg", SIZE, keep_fraction=0.5)
    before = sha256(path)

    decoded = load_image(path)

    assert decoded.corruption.startswith("truncated JPEG: no end-of-image marker")
    assert_rgb(decoded, *SIZE)
    top, bottom = decoded.pixels[:100], decoded.pixels[-40:]
    assert mean_abs_difference(top, fx.photo(SIZE)[:100]) < 4
    assert (bottom == 128).all()  # libjpeg's grey where the data ran out
    assert sha256(path) == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_progressive_jpeg_decodes_partly_with_a_finding(tmp_path):
    path = fx.make_truncated_jpeg(tmp_path / "cut.jpg", SIZE, keep_fraction=0.6, progressive=True)

    decoded = load_image(path, min_side=200)

    assert decoded.corruption.startswith("truncated JPEG")
    assert decoded.original_size == SIZE


def test_jpeg_cut_inside_its_headers_is_an_error(tmp_path):
    path = fx.make_jpeg(tmp_path / "headers.jpg", SIZE, exif_orientation=6)
    path.write_bytes(path.read_bytes()[:40])

    with pytest.raises(ImageLoadError, match="^truncated JPEG: the file ends inside its headers"):
        load_image(path)


def test_jpeg_cut_right_after_its_headers_is_an_error(tmp_path):
    path = fx.make_jpeg(tmp_path / "no_data.jpg", SIZE)
    start, _ = fx.jpeg_image_data_range(path.read_bytes())
    path.write_bytes(path.read_bytes()[:start])

    expected = "^truncated JPEG: the file ends where the image data begins$"
    with pytest.raises(ImageLoadError, match=expected):
        load_image(path)


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_rows": 1}],
    ids=["baseline", "progressive", "restart-markers"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_bytes_in_the_image_data_are_a_finding(tmp_path, options, seed):
    path = fx.make_corrupt_jpeg(tmp_path / "flipped.jpg", SIZE, seed=seed, **options)
    before = sha256(path)

    decoded = load_image(path)

    assert decoded.corruption is not None
    assert decoded.corruption.startswith("damaged JPEG: ")
    assert_rgb(decoded, *SIZE)
    assert sha256(path) == before


def test_the_intact_original_of_a_flipped_file_has_no_finding(tmp_path):
    for options in ({}, {"progressive": True}, {"restart_marker_rows": 1}):
        path = fx.make_jpeg(tmp_path / "intact.jpg", SIZE, **options)
        assert load_image(path).corruption is None


def test_truncated_png_decodes_partly_with_a_finding(tmp_path):
    path = fx.make_truncated_png(tmp_path / "cut.png", SIZE, keep_fraction=0.5)

    decoded = load_image(path)

    assert decoded.corruption.startswith("truncated PNG: the IDAT chunk")
    assert mean_abs_difference(decoded.pixels[:50], fx.photo(SIZE)[:50]) == 0
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_cut_before_any_row_is_an_error(tmp_path):
    path = fx.make_png(tmp_path / "cut.png", SIZE)
    path.write_bytes(path.read_bytes()[:120])

    with pytest.raises(ImageLoadError, match="^truncated PNG"):
        load_image(path)


def test_png_with_a_damaged_data_chunk_is_a_finding(tmp_path):
    path = fx.make_png(tmp_path / "flipped.png", SIZE)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    decoded = load_image(path)

    assert decoded.corruption.startswith("damaged PNG: the IDAT chunk")
    assert "CRC" in decoded.corruption


def test_truncated_tiff_is_a_finding_or_an_error_never_a_crash(tmp_path):
    uncompressed = fx.make_tiff(tmp_path / "plain.tif", SIZE)
    uncompressed.write_bytes(uncompressed.read_bytes()[: 640 * 480 * 3 // 2])
    directory_last = fx.make_tiff(tmp_path / "lzw.tif", SIZE, compression="tiff_lzw")
    directory_last.write_bytes(directory_last.read_bytes()[:50_000])

    assert load_image(uncompressed).corruption.startswith("truncated TIFF")
    with pytest.raises(ImageLoadError, match="^truncated TIFF: its first directory"):
        load_image(directory_last)


def test_truncated_webp_that_cannot_decode_is_an_error(tmp_path):
    path = fx.make_webp(tmp_path / "cut.webp", SIZE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(ImageLoadError, match="^truncated WebP"):
        load_image(path)


def test_truncated_heic_is_an_error(tmp_path):
    path = fx.make_heic(tmp_path / "cut.heic", SIZE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(ImageLoadError, match="HEIF"):
        load_image(path)


def test_truncated_bmp_decodes_partly_with_a_finding(tmp_path):
    path = fx.make_bmp(tmp_path / "cut.bmp", SIZE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    assert load_image(path).corruption.startswith("truncated BMP")


@pytest.mark.parametrize(
    "make, message",
    [
        (fx.make_zero_byte, "^empty file \\(0 bytes\\)$"),
        (fx.make_random_bytes_jpg, "^not an image: unrecognised content$"),
        (fx.make_text_file, "^not an image: the file holds text$"),
    ],
    ids=["zero-bytes", "random-bytes", "text"],
)
def test_non_images_named_jpg_are_errors(tmp_path, make, message):
    path = make(tmp_path / "photo.jpg")
    before = sha256(path)

    with pytest.raises(ImageLoadError, match=message):
        load_image(path)
    assert sha256(path) == before


def test_decompression_bomb_is_refused_from_the_header_in_milliseconds(tmp_path):
    path = fx.make_png_bomb_header(tmp_path / "bomb.png")
    assert path.stat().st_size < 200

    started = time.perf_counter()
    with pytest.raises(ImageLoadError) as raised:
        load_image(path)
    elapsed = time.perf_counter() - started

    message = str(raised.value)
    assert "50000x50000" in message and "250000000" in message
    assert elapsed < 0.5
    assert Image.MAX_IMAGE_PIXELS == 250_000_000  # Pillow's own guard follows, never disabled


def test_max_pixels_is_the_callers_limit(tmp_path):
    path = fx.make_jpeg(tmp_path / "photo.jpg", SIZE)

    with pytest.raises(ImageLoadError, match="640x480 = 307200 pixels, over the limit of 300000"):
        load_image(path, max_pixels=300_000)
    assert load_image(path, max_pixels=307_200).pixels.shape == (480, 640, 3)


def test_huge_webp_canvas_is_refused_before_pillow_allocates_it(tmp_path):
    path = fx.make_webp(tmp_path / "photo.webp", SIZE, lossless=True)
    with pytest.raises(ImageLoadError, match="640x480"):
        load_image(path, max_pixels=1000)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ImageLoadError, match="^file not found$"):
        load_image(tmp_path / "gone.jpg")


def test_directory_is_an_error(tmp_path):
    with pytest.raises(ImageLoadError, match="^is a directory, not an image file$"):
        load_image(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_an_error(tmp_path):
    path = fx.make_jpeg(tmp_path / "locked.jpg", SIZE)
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError, match="^permission denied$"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageLoadError, match="^not a regular file$"):
        load_image(fifo)


def test_a_fifo_swapped_in_after_the_look_is_refused_without_blocking(tmp_path, monkeypatch):
    regular = fx.make_jpeg(tmp_path / "photo.jpg", SIZE).stat()
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    # The look (stat) still saw the regular file; by the open, a FIFO had taken its name.
    monkeypatch.setattr(Path, "stat", lambda self, **kwargs: regular)
    outcome = []

    def load():
        try:
            load_image(fifo)
        except ImageLoadError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "blocked opening a FIFO"
    assert outcome == ["not a regular file"]


def test_unsupported_image_formats_are_named(tmp_path):
    path = tmp_path / "anim.gif"
    Image.fromarray(fx.photo((64, 48))).save(path, "GIF")
    with pytest.raises(ImageLoadError, match="^unsupported image format: GIF$"):
        load_image(path)


def test_bad_arguments_are_programming_errors(tmp_path):
    path = fx.make_jpeg(tmp_path / "photo.jpg", SIZE)
    with pytest.raises(ValueError):
        load_image(path, min_side=0)
    with pytest.raises(ValueError):
        load_image(path, max_pixels=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF it skips
def test_mutated_files_give_pixels_or_a_one_line_error_never_a_crash(tmp_path):
    originals = [
        fx.make_jpeg(tmp_path / "baseline.jpg", (160, 120)),
        fx.make_jpeg(tmp_path / "progressive.jpg", (160, 120), progressive=True, restart_marker_rows=1),
        fx.make_png(tmp_path / "palette.png", (160, 120), mode="P"),
        fx.make_tiff(tmp_path / "lzw.tif", (160, 120), compression="tiff_lzw"),
        fx.make_webp(tmp_path / "photo.webp", (160, 120)),
        fx.make_bmp(tmp_path / "photo.bmp", (160, 120)),
        fx.make_heic(tmp_path / "photo.heic", (160, 120)),
    ]
    rng = random.Random(7)
    outcomes = {"clean": 0, "finding": 0, "error": 0}
    for attempt in range(120):
        original = originals[attempt % len(originals)]
        data = bytearray(original.read_bytes())
        if attempt % 3 == 0:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif attempt % 3 == 1:
            data = data[: rng.randrange(1, len(data))]
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 50))
        mutated = tmp_path / f"mutated{original.suffix}"
        mutated.write_bytes(bytes(data))
        try:
            decoded = load_image(mutated, min_side=rng.choice([None, 50]))
        except ImageLoadError as error:
            assert str(error) and "\n" not in str(error)
            outcomes["error"] += 1
        else:
            assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape[2] == 3
            assert decoded.corruption is None or "\n" not in decoded.corruption
            outcomes["finding" if decoded.corruption else "clean"] += 1
    assert outcomes["finding"] > 0 and outcomes["error"] > 0


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, suffix, expected",
    [
        (b"\xff\xd8\xff\xe0" + bytes(60), ".png", "JPEG"),
        (b"\x89PNG\r\n\x1a\n" + bytes(56), ".jpg", "PNG"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(48), "", "WEBP"),
        (b"BM" + bytes(62), ".jpg", "BMP"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(52), ".jpg", "HEIF"),
        (b"\x00\x00\x00\x18ftypmif1" + bytes(52), ".heif", "HEIF"),
        (b"\x00\x00\x00\x18ftypcrx " + bytes(52), ".jpg", "RAW:CR3"),
        (b"\x00\x00\x00\x18ftypavif" + bytes(52), ".heic", "AVIF"),
        (b"\x00\x00\x00\x18ftypisom" + bytes(52), ".heic", None),
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(52), ".tif", "RAW:CR2"),
        (b"II*\x00\x08\x00\x00\x00" + bytes(56), ".tif", "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08" + bytes(56), ".NEF", "RAW:NEF"),
        (b"II*\x00\x08\x00\x00\x00" + bytes(56), ".Dng", "DNG"),
        (b"IIRO\x08\x00\x00\x00" + bytes(56), ".jpg", "RAW:ORF"),
        (b"IIU\x00\x08\x00\x00\x00" + bytes(56), "", "RAW:RW2"),
        (b"FUJIFILMCCD-RAW 0201" + bytes(44), "", "RAW:RAF"),
        (b"GIF89a" + bytes(58), ".jpg", "GIF"),
        (b"hello world", ".jpg", None),
        (b"", ".jpg", None),
    ],
)
def test_sniff_format_reads_magic_numbers(head, suffix, expected):
    assert sniff_format(head, suffix) == expected


def _jpeg_bytes(quality: int = 85, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(fx.photo((256, 192))).save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"progressive": True},
        {"subsampling": 0},
        {"restart_marker_blocks": 3},
        {"restart_marker_rows": 2, "progressive": True},
        {"restart_marker_blocks": 1, "subsampling": 1},
    ],
)
def test_jpeg_structure_of_intact_files_is_clean(options):
    assert scan_jpeg_structure(_jpeg_bytes(**options)).finding is None


def _with_restart_markers_renumbered(data: bytes, new_numbers) -> bytes:
    start, end = fx.jpeg_image_data_range(data)
    out = bytearray(data)
    positions = [i for i in range(start, end - 1) if out[i] == 0xFF and 0xD0 <= out[i + 1] <= 0xD7]
    for position, number in zip(positions, new_numbers):
        out[position + 1] = 0xD0 + number
    return bytes(out)


def test_restart_markers_out_of_sequence_are_a_finding():
    data = _jpeg_bytes(restart_marker_blocks=2)
    damaged = _with_restart_markers_renumbered(data, [0, 1, 2, 4])

    structure = scan_jpeg_structure(damaged)

    assert structure.finding.startswith("damaged JPEG: restart marker RST4 at byte")
    assert "where RST3 was due" in structure.finding
    assert structure.damage_offset is not None


def test_missing_restart_marker_is_a_finding():
    data = _jpeg_bytes(restart_marker_rows=1)
    start, end = fx.jpeg_image_data_range(data)
    last_rst = max(i for i in range(start, end - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7)
    without_last = data[:last_rst] + data[last_rst + 2 :]

    assert "restart markers where" in scan_jpeg_structure(without_last).finding


def test_invalid_marker_inside_the_scan_is_a_finding():
    data = bytearray(_jpeg_bytes())
    start, end = fx.jpeg_image_data_range(bytes(data))
    middle = (start + end) // 2
    data[middle : middle + 2] = b"\xff\x5a"

    structure = scan_jpeg_structure(bytes(data))

    assert structure.finding == (f"damaged JPEG: invalid marker 0xFF5A in the entropy-coded data at byte {middle}")
    assert structure.damage_offset == middle


def test_missing_end_of_image_marker_is_truncation():
    structure = scan_jpeg_structure(_jpeg_bytes()[:-2])
    assert structure.truncated
    assert structure.finding.startswith("truncated JPEG: no end-of-image marker")


def test_data_after_the_end_of_image_marker_is_normal_when_it_is_another_image_or_a_trailer():
    data = _jpeg_bytes()
    mpf_second_image = data + bytes(16) + _jpeg_bytes(quality=50)
    motion_photo = data + b"\x00\x00\x00\x18ftypmp42" + bytes(1000)
    padding = data + bytes(512)

    for variant in (mpf_second_image, motion_photo, padding):
        assert scan_jpeg_structure(variant).finding is None


def test_early_end_of_image_marker_inside_the_data_is_a_finding():
    data = bytearray(_jpeg_bytes())
    start, end = fx.jpeg_image_data_range(bytes(data))
    middle = (start + end) // 2
    data[middle : middle + 2] = b"\xff\xd9"

    finding = scan_jpeg_structure(bytes(data)).finding

    assert finding.startswith(f"damaged JPEG: end-of-image marker at byte {middle}")


@needs_exiftool
def test_jpeg_with_exiftool_written_metadata_and_thumbnail_has_no_finding(tmp_path):
    # The daemon writes XMP into JPEGs through ExifTool: that must never read as damage.
    path = fx.make_jpeg(tmp_path / "tagged.jpg", SIZE)
    thumbnail = fx.make_jpeg(tmp_path / "thumbnail.jpg", (160, 120))
    subprocess.run(
        [
            "exiftool", "-q", "-q", "-overwrite_original", f"-ThumbnailImage<={thumbnail}",
            "-XMP-dc:Subject=PixelPerfect", "-XMP-xmp:Rating=1", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip

    decoded = load_image(path)

    assert decoded.corruption is None
    assert mean_abs_difference(decoded.pixels, fx.photo(SIZE)) < 4


def test_png_structure():
    buffer = io.BytesIO()
    Image.fromarray(fx.photo((64, 48))).save(buffer, "PNG")
    data = buffer.getvalue()

    assert scan_png_structure(data) is None
    assert scan_png_structure(data[:-12]) == "truncated PNG: no IEND chunk"
    assert scan_png_structure(data[:100]).startswith("truncated PNG: the IDAT chunk at byte")


def test_parse_exiftool_previews_takes_every_preview_and_the_orientation():
    small, large = b"\xff\xd8small", b"\xff\xd8" + bytes(100)
    stdout = json.dumps(
        [
            {
                "SourceFile": "/x/IMG_1.CR2",
                "IFD0:PreviewImage": "base64:" + __import__("base64").b64encode(large).decode(),
                "IFD1:ThumbnailImage": "base64:" + __import__("base64").b64encode(small).decode(),
                "IFD0:Orientation": 8,
            }
        ]
    ).encode()

    previews, orientation = parse_exiftool_previews(stdout)

    assert sorted(previews, key=len) == [small, large]
    assert orientation == 8
    assert parse_exiftool_previews(b"") == ([], 1)
    assert parse_exiftool_previews(b"not json") == ([], 1)


def test_describe_os_error():
    assert describe_os_error(FileNotFoundError(2, "No such file")) == "file not found"
    assert describe_os_error(PermissionError(13, "Permission denied")) == "permission denied"
    directory = IsADirectoryError(21, "Is a directory")
    assert describe_os_error(directory) == "is a directory, not an image file"
    io_error = OSError(5, "Input/output error")
    assert describe_os_error(io_error) == "cannot read the file: Input/output error"


# --- real photos ------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_photos_load_clean(shared_data):
    with open(shared_data / "manifest.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    pristine = [row["file"] for row in rows if row["set"] == "pristine"][:4]
    clive = [row["file"] for row in rows if row["file"].startswith("clive_train/")][:2]
    assert pristine and clive

    for relative in pristine + clive:
        path = shared_data / relative
        decoded = load_image(path)
        assert decoded.corruption is None, relative
        assert decoded.format == ("PNG" if relative.endswith(".png") else "JPEG")
        width, height = decoded.original_size
        assert decoded.pixels.shape == (height, width, 3)
        reduced = load_image(path, min_side=224)
        assert min(reduced.pixels.shape[:2]) >= min(224, width, height)
