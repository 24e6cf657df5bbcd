"""Generate test images into a folder: every format the loader reads, and every kind of damage.

Each ``make_*`` function writes one file at ``path`` (creating its folder) and returns
the path as a ``Path``. Pixels are photo-like (scikit-image's bundled sample photos, cropped and
resized to ``size``), never flat colour, so quality models and codecs behave as on real photos.
Sizes are ``(width, height)`` as stored in the file, before any EXIF orientation.

Import from tests as ``from tests.fixtures_images import make_jpeg``.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin, TiffTags

DEFAULT_SIZE = (640, 480)
_SAMPLE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
_ORIENTATION_TAG = 0x0112
_DNG_VERSION_TAG = 50706


def _target(path) -> Path:
    """The path to write, its folder created if need be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def photo(size=DEFAULT_SIZE, variant: int = 0) -> np.ndarray:
    """An H x W x 3 uint8 photo of ``size`` (width, height): a sample photo, centre-cropped to the
    aspect ratio and resized. ``variant`` picks one of the bundled photos."""
    import skimage.data  # the sample photos ship inside the package: nothing is downloaded

    width, height = size
    source = getattr(skimage.data, _SAMPLE_PHOTOS[variant % len(_SAMPLE_PHOTOS)])()
    source_height, source_width = source.shape[:2]
    target_ratio = width / height
    if source_width / source_height > target_ratio:
        crop_width = round(source_height * target_ratio)
        left = (source_width - crop_width) // 2
        source = source[:, left : left + crop_width]
    else:
        crop_height = round(source_width / target_ratio)
        top = (source_height - crop_height) // 2
        source = source[top : top + crop_height]
    image = Image.fromarray(np.ascontiguousarray(source))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _exif_bytes(orientation: int | None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[_ORIENTATION_TAG] = orientation
    return exif.tobytes()


def make_jpeg(
    path,
    size=DEFAULT_SIZE,
    quality: int = 90,
    exif_orientation: int | None = None,
    *,
    progressive: bool = False,
    restart_marker_rows: int | None = None,
    variant: int = 0,
) -> Path:
    """A baseline (or progressive) JPEG; ``exif_orientation`` writes the EXIF Orientation tag;
    ``restart_marker_rows`` puts a restart marker after every that many MCU rows."""
    path = _target(path)
    options = {"quality": quality, "progressive": progressive}
    if exif_orientation is not None:
        options["exif"] = _exif_bytes(exif_orientation)
    if restart_marker_rows:
        options["restart_marker_rows"] = restart_marker_rows
    Image.fromarray(photo(size, variant)).save(path, "JPEG", **options)
    return path


def make_png(
    path,
    size=DEFAULT_SIZE,
    mode: str = "RGB",
    *,
    exif_orientation: int | None = None,
    variant: int = 0,
) -> Path:
    """A PNG in one of these modes: "RGB", "RGBA" (alpha falls off to transparent at the
    left edge), "L", "P" (palette), "LA", "RGB;16" (16 bits per channel), "I;16" (16-bit gray)."""
    path = _target(path)
    pixels = photo(size, variant)
    if mode == "RGB;16":
        import cv2  # Pillow cannot write 16-bit RGB

        wide = pixels.astype(np.uint16) * 257
        if not cv2.imwrite(str(path), np.ascontiguousarray(wide[..., ::-1])):
            raise OSError(f"cv2 could not write {path}")
        return path
    image = Image.fromarray(pixels)
    if mode == "RGBA":
        alpha = np.tile(np.linspace(0, 255, size[0], dtype=np.uint8), (size[1], 1))
        image.putalpha(Image.fromarray(alpha))
    elif mode == "L":
        image = image.convert("L")
    elif mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.quantize(256)
    elif mode == "I;16":
        gray = np.asarray(image.convert("L")).astype(np.uint16) * 257
        image = Image.fromarray(gray, "I;16")
    elif mode != "RGB":
        raise ValueError(f"unknown PNG mode {mode!r}")
    options = {}
    if exif_orientation is not None:
        options["exif"] = _exif_bytes(exif_orientation)
    image.save(path, "PNG", **options)
    return path


def make_tiff(
    path,
    size=DEFAULT_SIZE,
    bit_depth: int = 8,
    *,
    compression: str | None = None,
    exif_orientation: int | None = None,
    variant: int = 0,
) -> Path:
    """An RGB TIFF, 8 or 16 bits per channel; ``compression`` e.g. "tiff_lzw" or "tiff_adobe_deflate"."""
    path = _target(path)
    pixels = photo(size, variant)
    if bit_depth == 16:
        import cv2  # Pillow cannot write 16-bit RGB

        wide = pixels.astype(np.uint16) * 257
        if not cv2.imwrite(str(path), np.ascontiguousarray(wide[..., ::-1])):
            raise OSError(f"cv2 could not write {path}")
        return path
    if bit_depth != 8:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    options = {}
    if compression:
        options["compression"] = compression
    if exif_orientation is not None:
        options["tiffinfo"] = {274: exif_orientation}
    Image.fromarray(pixels).save(path, "TIFF", **options)
    return path


def make_webp(path, size=DEFAULT_SIZE, quality: int = 80, *, lossless: bool = False, variant: int = 0) -> Path:
    path = _target(path)
    Image.fromarray(photo(size, variant)).save(path, "WEBP", quality=quality, lossless=lossless)
    return path


def make_bmp(path, size=DEFAULT_SIZE, *, variant: int = 0) -> Path:
    path = _target(path)
    Image.fromarray(photo(size, variant)).save(path, "BMP")
    return path


def make_heic(
    path, size=DEFAULT_SIZE, quality: int = 80, exif_orientation: int | None = None, *, variant: int = 0
) -> Path:
    """A HEIC written by pillow-heif (its encoder turns the EXIF orientation into a HEIF rotation)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    path = _target(path)
    options = {"quality": quality}
    if exif_orientation is not None:
        options["exif"] = _exif_bytes(exif_orientation)
    Image.fromarray(photo(size, variant)).save(path, "HEIF", **options)
    return path


def make_raw_like(
    path,
    ext: str = ".CR2",
    *,
    preview_size=(1200, 800),
    orientation: int | None = None,
    variant: int = 0,
) -> Path:
    """A TIFF-based "RAW" that LibRaw refuses, with a JPEG preview ExifTool embedded.

    The file is written at ``path`` with its suffix replaced by ``ext``; the returned path is the
    file's. Like a real CR2, IFD0's strip holds the preview JPEG (no EXIF inside) and IFD0's
    Orientation holds ``orientation``. ExifTool tells TIFF-based RAW flavours apart by extension
    and calls IFD0's strip the PreviewImage only in a CR2, so only a .CR2 name exposes the
    preview: with another ``ext`` the file stands for a RAW whose preview cannot be found.
    Needs /usr/bin/exiftool (``exiftool_available()``).
    """
    path = _target(Path(path).with_suffix(ext))
    work = path.with_name(path.stem + ".fixture-tmp.CR2")
    # The "sensor data": a small TIFF strip that the preview then replaces.
    Image.fromarray(photo((160, 120), variant)).save(work, "TIFF")
    preview = io.BytesIO()
    Image.fromarray(photo(preview_size, variant)).save(preview, "JPEG", quality=90)
    preview_file = path.with_name(path.stem + ".fixture-preview.jpg")
    preview_file.write_bytes(preview.getvalue())
    command = ["exiftool", "-q", "-overwrite_original", f"-PreviewImage<={preview_file}"]
    if orientation is not None:
        command.append(f"-IFD0:Orientation#={orientation}")
    try:
        subprocess.run([*command, str(work)], check=True, capture_output=True, timeout=60)
    finally:
        preview_file.unlink()
    os.replace(work, path)
    return path


def make_dng(
    path,
    size=DEFAULT_SIZE,
    *,
    preview_size=(320, 240),
    orientation: int | None = None,
    variant: int = 0,
) -> Path:
    """A small DNG that LibRaw reads: a 16-bit RGGB mosaic of the photo in IFD0 and, in a SubIFD,
    a JPEG preview of ``preview_size`` (NewSubFileType 1), as cameras and converters write them.
    ``orientation`` goes to IFD0's Orientation tag.

    With ``preview_size=None`` it is instead a DNG-tagged TIFF whose IFD0 is a plain 8-bit RGB
    image and that embeds no preview: the loader must fall back to the main image."""
    path = _target(path)
    if preview_size is None:
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[_DNG_VERSION_TAG] = b"\x01\x04\x00\x00"
        tags.tagtype[_DNG_VERSION_TAG] = TiffTags.BYTE
        if orientation is not None:
            tags[_ORIENTATION_TAG] = orientation
        Image.fromarray(photo(size, variant)).save(path, "TIFF", tiffinfo=tags)
        return path
    width, height = size
    rgb = photo(size, variant).astype(np.uint16)
    mosaic = np.empty((height, width), np.uint16)
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    sensor = (mosaic * 16).astype("<u2").tobytes()  # 12-bit values
    preview_buffer = io.BytesIO()
    Image.fromarray(photo(preview_size, variant)).save(preview_buffer, "JPEG", quality=90)
    preview = _even(preview_buffer.getvalue())
    sensor_at = 8
    preview_at = sensor_at + len(sensor)
    subifd_at = preview_at + len(preview)
    preview_width, preview_height = preview_size
    subifd = _even(
        _tiff_ifd(
            {
                254: (_LONG, [1]),  # NewSubFileType: reduced-resolution preview
                256: (_LONG, [preview_width]),
                257: (_LONG, [preview_height]),
                258: (_SHORT, [8, 8, 8]),
                259: (_SHORT, [7]),  # JPEG
                262: (_SHORT, [6]),  # YCbCr
                273: (_LONG, [preview_at]),
                277: (_SHORT, [3]),
                278: (_LONG, [preview_height]),
                279: (_LONG, [len(preview_buffer.getvalue())]),
            },
            subifd_at,
        )
    )
    ifd0_at = subifd_at + len(subifd)
    ifd0 = _tiff_ifd(
        {
            254: (_LONG, [0]),
            256: (_LONG, [width]),
            257: (_LONG, [height]),
            258: (_SHORT, [16]),
            259: (_SHORT, [1]),
            262: (_SHORT, [32803]),  # CFA
            271: (_ASCII, "PixelPerfect"),
            272: (_ASCII, "Test DNG"),
            273: (_LONG, [sensor_at]),
            274: (_SHORT, [orientation or 1]),
            277: (_SHORT, [1]),
            278: (_LONG, [height]),
            279: (_LONG, [len(sensor)]),
            284: (_SHORT, [1]),
            330: (_LONG, [subifd_at]),  # SubIFDs
            33421: (_SHORT, [2, 2]),  # CFARepeatPatternDim
            33422: (_BYTE, [0, 1, 1, 2]),  # CFAPattern: RGGB
            _DNG_VERSION_TAG: (_BYTE, [1, 4, 0, 0]),
            50708: (_ASCII, "PixelPerfect Test DNG"),  # UniqueCameraModel
            50717: (_LONG, [4095]),  # WhiteLevel
        },
        ifd0_at,
    )
    header = b"II*\x00" + struct.pack("<I", ifd0_at)
    path.write_bytes(header + sensor + preview + subifd + ifd0)
    return path


_BYTE, _ASCII, _SHORT, _LONG = 1, 2, 3, 4
_TIFF_FORMATS = {_BYTE: "B", _ASCII: "B", _SHORT: "H", _LONG: "I"}


def _even(data: bytes) -> bytes:
    """TIFF wants every offset on a word boundary."""
    return data + b"\x00" * (len(data) % 2)


def _tiff_ifd(entries: dict, start: int) -> bytes:
    """A little-endian TIFF directory written at byte ``start``: {tag: (type, values)}, its
    values too long for an entry following the directory."""
    entries = sorted(entries.items())
    extra_start = start + 2 + 12 * len(entries) + 4
    table = struct.pack("<H", len(entries))
    extra = b""
    for tag, (kind, values) in entries:
        if kind == _ASCII:
            values = list(values.encode("ascii") + b"\x00")
        payload = struct.pack("<" + _TIFF_FORMATS[kind] * len(values), *values)
        if len(payload) <= 4:
            table += struct.pack("<HHI", tag, kind, len(values)) + payload.ljust(4, b"\x00")
        else:
            extra = _even(extra)
            table += struct.pack("<HHII", tag, kind, len(values), extra_start + len(extra))
            extra += payload
    return table + struct.pack("<I", 0) + extra


def make_truncated_jpeg(path, size=DEFAULT_SIZE, keep_fraction: float = 0.5, **jpeg_options) -> Path:
    """A JPEG cut off after ``keep_fraction`` of its bytes: no end-of-image marker."""
    path = _target(path)
    make_jpeg(path, size, **jpeg_options)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def make_truncated_png(path, size=DEFAULT_SIZE, keep_fraction: float = 0.5) -> Path:
    """A PNG cut off after ``keep_fraction`` of its bytes (inside the image data)."""
    path = _target(path)
    make_png(path, size)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def jpeg_image_data_range(data: bytes) -> tuple[int, int]:
    """(start, end) byte offsets of a well-formed JPEG's image data: from the entropy-coded data
    of its first scan to its end-of-image marker (all scans, for a progressive JPEG)."""
    position = 2
    while True:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + length
        if marker == 0xDA:
            return position, data.rindex(b"\xff\xd9")


def make_corrupt_jpeg(
    path,
    size=DEFAULT_SIZE,
    *,
    burst_bytes: int = 2048,
    seed: int = 0,
    **jpeg_options,
) -> Path:
    """A JPEG with a burst of flipped bytes (each XORed with 0xFF) in the middle of its
    entropy-coded data, as a transmission error leaves it; headers and the end-of-image marker
    are intact, so the file still opens and decodes (to visibly broken pixels).

    A burst that long almost surely turns some byte into a marker that may not occur inside
    the scan (0x00 -> 0xFF), the trace the loader's structural scan reports."""
    path = _target(path)
    make_jpeg(path, size, **jpeg_options)
    data = bytearray(path.read_bytes())
    start, end = jpeg_image_data_range(bytes(data))
    burst_bytes = min(burst_bytes, (end - start) // 2)
    middle = start + (end - start) // 2 + random.Random(seed).randrange(-64, 64)
    middle = max(start, min(middle, end - burst_bytes))
    for index in range(middle, middle + burst_bytes):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def make_zero_byte(path) -> Path:
    path = _target(path)
    path.write_bytes(b"")
    return path


def make_random_bytes_jpg(path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes (not starting like any image format) under whatever name ``path`` has."""
    path = _target(path)
    data = bytearray(random.Random(seed).randbytes(n_bytes))
    data[0] = 0x3C  # never 0xFF/0x89/"R"/"B"/"I"/"M": no magic number by chance
    path.write_bytes(bytes(data))
    return path


def _png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + body)
    return len(body).to_bytes(4, "big") + chunk_type + body + crc.to_bytes(4, "big")


def make_png_bomb_header(path, width: int = 50_000, height: int = 50_000) -> Path:
    """A valid, tiny PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression
    bomb): decoding it would allocate width * height * 3 bytes."""
    path = _target(path)
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _png_chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def make_text_file(path, text: str = "These are my holiday notes, not a photo.\n" * 20) -> Path:
    path = _target(path)
    path.write_text(text, encoding="utf-8")
    return path


def exiftool_available() -> bool:
    return shutil.which("exiftool") is not None
