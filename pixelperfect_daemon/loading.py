"""Decode any supported photo into RGB pixels: the one place that knows about file formats.

``load_image`` detects the format from the file's content (not its extension), refuses
decompression bombs from the header alone, applies the orientation the camera recorded and
returns 8-bit RGB. Damage is a finding, not a crash: a truncated or corrupted file that still
decodes partly comes back with ``corruption`` set; one that cannot be decoded at all, or is no
image, raises ``ImageLoadError`` with a one-line reason. The input file is only ever read.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import io
import json
import os
import stat
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
import rawpy
from PIL import (
    BmpImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)
from pillow_heif.as_plugin import HeifImageFile

# TIFF-based RAW formats (CR2, NEF, ARW, DNG ...) are only told apart by their extension.
from .common import one_line
from .files import RAW_EXTENSIONS

pillow_heif.register_heif_opener()

DEFAULT_MAX_PIXELS = 250_000_000
EXIFTOOL_TIMEOUT_SECONDS = 30.0
# ExifTool's names for the JPEGs cameras embed in RAW files; the largest one wins.
EXIFTOOL_PREVIEW_TAGS = ("JpgFromRaw", "PreviewImage", "OtherImage", "ThumbnailImage")

_HEAD_BYTES = 64
_JPEG_EOI = b"\xff\xd9"
_ORIENTATION_TAG = 0x0112
_DNG_VERSION_TAG = 50706
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# LibRaw's sizes.flip -> the EXIF orientation that means the same.
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
_PLUGINS = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "HEIF": HeifImageFile,
}
# What Pillow raises for data it cannot make sense of (it is not consistent about it).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error)


class ImageLoadError(Exception):
    """The file is not a readable image; str(error) is a one-line reason for the index and the
    JSON `error` field."""


@dataclass(frozen=True, eq=False)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    original_size: tuple[int, int]  # (width, height) after orientation, before any reduced decode
    format: str  # "JPEG", "PNG", "TIFF", "WEBP", "BMP", "HEIF", "RAW:CR2", "RAW:NEF", ..., "DNG"
    corruption: str | None  # a one-line finding when the data is damaged but (partly) decodable

    @functools.cached_property
    def pixels(self) -> np.ndarray:
        """H x W x 3 uint8 RGB (read-only). Made on first use: copying 24 megapixels out of
        Pillow costs as much as decoding them, and the engine needs only a reduced copy and a crop."""
        return np.asarray(self.image)


def load_image(
    path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None, suffix: str | None = None
) -> DecodedImage:
    """Decode ``path`` to RGB pixels; ``min_side=N`` decodes as little as keeps the short side >= N.
    ``suffix`` stands for the path's own extension (which tells TIFF-based RAW flavours apart) where
    the path has none, as a ``pinned_file`` path."""
    set_pixel_limit(max_pixels)
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be at least 1 or None, got {min_side}")
    path = Path(path)
    head, file_size = read_head(path)
    kind = sniff_format(head, path.suffix if suffix is None else suffix)
    if kind is None:
        raise ImageLoadError(_describe_unknown_content(head))
    if kind in ("AVIF", "GIF", "JXL"):
        raise ImageLoadError(f"unsupported image format: {kind}")
    if kind.startswith("RAW:") or kind == "DNG":
        return _load_raw(path, kind, max_pixels, min_side)
    if kind in ("TIFF", "HEIF"):
        # Large and seekable formats: let the decoder read the file itself.
        if kind == "TIFF" and (finding := _tiff_directory_beyond_end(head, file_size)):
            raise ImageLoadError(finding)
        return _load_file(path, kind, file_size, max_pixels, min_side)
    data = read_all(path)
    return _load_bytes(data, kind, max_pixels, min_side)


def set_pixel_limit(max_pixels: int) -> None:
    """Refuse images over ``max_pixels``: our header checks, and Pillow's own guard for anything
    decoded outside them."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    Image.MAX_IMAGE_PIXELS = max_pixels


# --- reading the file ---------------------------------------------------------------------


def describe_os_error(error: OSError) -> str:
    """A one-line reason for an OSError met while reading an image file."""
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if error.errno == errno.ELOOP:
        return "is a symbolic link (not followed)"
    return f"cannot read the file: {error.strerror or error}"


def _open_regular_descriptor(path: Path, *, follow_symlinks: bool = True) -> int:
    """A descriptor of ``path`` opened for reading, if it is a regular file: checked on the open
    file, so a FIFO or a device put in its place after a look at it can neither block the reader
    nor be read. Raises OSError, or ImageLoadError for anything but a regular file."""
    # Refuses a device before opening it: an open alone can act on some.
    info = Path(path).stat(follow_symlinks=follow_symlinks)
    if not stat.S_ISREG(info.st_mode):
        _refuse(info)
    # O_NONBLOCK: opening a FIFO does not wait for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            _refuse(info)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file (``_open_regular_descriptor``)."""
    fd = _open_regular_descriptor(path)
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def pinned_file(path: Path) -> Iterator[Path]:
    """The regular file at ``path`` itself (a symlink is refused, not followed), held open, as a
    path that names the open file (``/proc/self/fd/N``): every open of it, by us, LibRaw or
    ExifTool, reads this very file, whatever a stranger puts at ``path`` meanwhile.
    Raises ImageLoadError."""
    try:
        fd = _open_regular_descriptor(path, follow_symlinks=False)
    except OSError as error:
        raise ImageLoadError(describe_os_error(error)) from None
    try:
        yield Path(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else Path(path)
    finally:
        os.close(fd)


def _refuse(info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ImageLoadError("is a directory, not an image file")
    if stat.S_ISLNK(info.st_mode):
        raise ImageLoadError("is a symbolic link (not followed)")
    raise ImageLoadError("not a regular file")  # reading a FIFO or a device could block or never end


def read_head(path: Path) -> tuple[bytes, int]:
    try:
        with open_regular(path) as stream:
            size = os.fstat(stream.fileno()).st_size
            if size == 0:
                raise ImageLoadError("empty file (0 bytes)")
            return stream.read(_HEAD_BYTES), size
    except OSError as error:
        raise ImageLoadError(describe_os_error(error)) from None


def read_all(path: Path) -> bytes:
    try:
        with open_regular(path) as stream:
            return stream.read()
    except OSError as error:
        raise ImageLoadError(describe_os_error(error)) from None


# --- format detection ---------------------------------------------------------------------


def sniff_format(head: bytes, suffix: str = "") -> str | None:
    """The format the file's first bytes announce, or None when they announce no image.

    Only TIFF-based RAW flavours (NEF, ARW, DNG ...) look like plain TIFF, so for TIFF content
    the extension picks between "TIFF" and "RAW:<EXT>"; every other decision is the content's.
    """
    suffix = suffix.lower()
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAW:RAF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"crx ":
            return "RAW:CR3"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
        return None
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "RAW:ORF"
    if head[:4] == b"IIU\x00":
        return "RAW:RW2"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        if head[8:11] == b"CR\x02":
            return "RAW:CR2"
        if suffix == ".dng":
            return "DNG"
        if suffix in RAW_EXTENSIONS:
            return "RAW:" + suffix[1:].upper()
        return "TIFF"  # may still turn out to be a DNG (DNGVersion tag) once opened
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JXL"
    return None


def _describe_unknown_content(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not an image: unrecognised content"
    if all(character.isprintable() or character in "\r\n\t" for character in text):
        return "not an image: the file holds text"
    return "not an image: unrecognised content"


def _webp_canvas_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a WebP header, read before Pillow (whose opener allocates the canvas)."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30:
        return (
            int.from_bytes(head[26:28], "little") & 0x3FFF,
            int.from_bytes(head[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# --- decoding -----------------------------------------------------------------------------


def check_pixel_budget(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image whose header promises more pixels than ``max_pixels`` (decompression bomb)."""
    width, height = size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"image too large: {width}x{height} = {width * height} pixels, over the limit of {max_pixels} (max_pixels)"
        )


def _open(kind: str, source, max_pixels: int, finding: str | None = None) -> Image.Image:
    """Read the header with the plugin the content named (no probing, no pixels decoded yet)."""
    try:
        image = _PLUGINS[kind](source)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"image too large: {error}") from None
    except (*_DECODE_ERRORS, RuntimeError) as error:
        if finding:
            raise ImageLoadError(_undecodable(kind, finding, one_line(error))) from None
        raise ImageLoadError(f"not a valid {kind} file: {one_line(error)}") from None
    check_pixel_budget(image.size, max_pixels)
    return image


def _load_bytes(data: bytes, kind: str, max_pixels: int, min_side: int | None) -> DecodedImage:
    if kind == "JPEG":
        return load_jpeg(data, max_pixels, min_side)
    finding = None
    if kind == "PNG":
        finding = scan_png_structure(data)
    elif kind == "WEBP":
        size = _webp_canvas_size(data[:_HEAD_BYTES])
        if size is not None:
            check_pixel_budget(size, max_pixels)
        finding = _riff_truncation(data)
    elif kind == "BMP":
        declared = int.from_bytes(data[2:6], "little")
        if declared > len(data):
            finding = f"truncated BMP: {len(data)} of {declared} bytes"
    image = _open(kind, io.BytesIO(data), max_pixels, finding)
    return _decode(image, kind, finding, min_side)


def load_jpeg(data: bytes, max_pixels: int, min_side: int | None, fallback_orientation: int = 1) -> DecodedImage:
    structure = scan_jpeg_structure(data)
    if not structure.has_image_data:
        raise ImageLoadError(structure.finding)
    if structure.truncated:
        # libjpeg decodes what is there once it meets an end-of-image marker, which spares
        # setting Pillow's process-wide LOAD_TRUNCATED_IMAGES.
        data = data + _JPEG_EOI
    try:
        image = _open("JPEG", io.BytesIO(data), max_pixels, structure.finding)
        return _decode(image, "JPEG", structure.finding, min_side, fallback_orientation)
    except ImageLoadError:
        if structure.damage_offset is None:
            raise
    # libjpeg gave up at the damage before writing any pixel (progressive JPEGs decode all
    # scans first): decode the data before the damage, as if the file were truncated there.
    before_damage = data[: structure.damage_offset] + _JPEG_EOI
    image = _open("JPEG", io.BytesIO(before_damage), max_pixels, structure.finding)
    return _decode(image, "JPEG", structure.finding, min_side, fallback_orientation)


def _load_file(path: Path, kind: str, file_size: int, max_pixels: int, min_side: int | None) -> DecodedImage:
    try:
        with open_regular(path) as stream:
            image = _open(kind, stream, max_pixels)
            if kind == "TIFF" and _DNG_VERSION_TAG in image.tag_v2:
                image.close()
                return _load_raw(path, "DNG", max_pixels, min_side)
            finding = _tiff_truncation(image, file_size) if kind == "TIFF" else None
            return _decode(image, kind, finding, min_side)
    except OSError as error:
        raise ImageLoadError(describe_os_error(error)) from None


def _decode(
    image: Image.Image,
    kind: str,
    finding: str | None,
    min_side: int | None,
    fallback_orientation: int = 1,
) -> DecodedImage:
    """Decode the opened image (reduced where the format allows), orient it, make it RGB."""
    full_width, full_height = image.size
    if min_side is not None and kind == "JPEG":
        # libjpeg scales in the DCT domain (1/2, 1/4, 1/8): far fewer pixels ever decoded.
        image.draft("RGB", _draft_request((full_width, full_height), min_side))
    decode_error = _load_tolerantly(image, kind, finding)
    damaged = decode_error is not None or finding is not None
    # pillow-heif applies the HEIF transforms itself and resets the EXIF orientation.
    orientation = 1 if kind == "HEIF" else _orientation(image, fallback_orientation)
    rgb = _to_rgb(image, kind)
    if damaged and _is_uniform(rgb):
        # A buffer never written to (zeros), or libjpeg's grey for missing data: nothing decoded.
        raise ImageLoadError(_undecodable(kind, finding, decode_error or "no image data"))
    if decode_error is not None:
        finding = finding or f"damaged {kind}: {decode_error}"
    if min_side is not None:
        factor = min(rgb.size) // min_side
        if factor >= 2:
            rgb = rgb.reduce(factor)
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    swaps_axes = orientation in (5, 6, 7, 8)
    original_size = (full_height, full_width) if swaps_axes else (full_width, full_height)
    return DecodedImage(image=rgb, original_size=original_size, format=kind, corruption=finding)


def jpeg_orientation(data: bytes, fallback: int = 1) -> int:
    """The EXIF orientation a JPEG records (``fallback`` where it records none), from its headers alone."""
    try:
        with JpegImagePlugin.JpegImageFile(io.BytesIO(data)) as image:
            return _orientation(image, fallback)
    except (*_DECODE_ERRORS, RuntimeError):
        return fallback


def _orientation(image: Image.Image, fallback: int) -> int:
    """The EXIF orientation, or ``fallback`` (the RAW's own) where the image records none."""
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, fallback))
    except (*_DECODE_ERRORS, RuntimeError):
        return fallback  # unreadable EXIF must not cost the pixels


def _draft_request(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The (width, height) to ask Image.draft for: the short side at min_side, aspect kept."""
    width, height = size
    if width <= height:
        return min_side, -(-height * min_side // width)
    return -(-width * min_side // height), min_side


def _load_tolerantly(image: Image.Image, kind: str, finding: str | None) -> str | None:
    """Decode the pixels; on damaged data keep what was decoded and return the decoder's reason."""
    try:
        image.load()
        return None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"image too large: {error}") from None
    except (*_DECODE_ERRORS, RuntimeError) as error:
        reason = one_line(error)
    # Pillow fills its pixel buffer as it decodes and gives up midway on bad data; an empty
    # tile list makes it take the buffer as loaded instead of decoding again. Decoders that
    # are all-or-nothing (HEIF, WebP) have no buffer to keep.
    image.tile = []
    try:
        image.load()
    except (*_DECODE_ERRORS, RuntimeError):
        raise ImageLoadError(_undecodable(kind, finding, reason)) from None
    return reason


def _undecodable(kind: str, finding: str | None, reason: str) -> str:
    if finding:
        return f"{finding}; nothing could be decoded ({reason})"
    return f"cannot decode {kind}: {reason}"


def _is_uniform(image: Image.Image) -> bool:
    return all(low == high for low, high in image.getextrema())


def _to_rgb(image: Image.Image, kind: str) -> Image.Image:
    """8-bit RGB; transparency is composited on white, 16-bit is scaled (not clipped) to 8 bits."""
    mode = image.mode
    try:
        if mode == "RGB":
            return image
        if mode.startswith("I;16") or mode == "I":
            # Pillow's own conversion clips 16-bit values at 255 instead of scaling them.
            values = np.asarray(image).astype(np.uint32) >> 8
            gray = np.clip(values, 0, 255).astype(np.uint8)
            return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")
        if mode == "F":
            values = np.asarray(image)
            scale = 255.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 1.0
            gray = np.clip(np.nan_to_num(values) * scale, 0, 255).astype(np.uint8)
            return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            return canvas.convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageLoadError(f"unsupported {kind} colour mode {mode}: {one_line(error)}") from None


# --- RAW: the embedded preview ------------------------------------------------------------


@dataclass(frozen=True)
class RawPreview:
    data: bytes | None  # a JPEG preview ...
    bitmap: np.ndarray | None  # ... or an RGB bitmap (some cameras store the preview unpacked)
    orientation: int  # the RAW's own EXIF-style orientation


def _load_raw(path: Path, kind: str, max_pixels: int, min_side: int | None) -> DecodedImage:
    """Analyse the largest embedded preview JPEG; a DNG without one falls back to its main image."""
    try:
        preview = read_raw_preview(path, kind)
    except ImageLoadError:
        if kind != "DNG":
            raise
        preview = None
    if preview is None:
        return _load_dng_main_image(path, max_pixels, min_side)
    if preview.bitmap is not None:
        image = Image.fromarray(preview.bitmap).convert("RGB")
        check_pixel_budget(image.size, max_pixels)
        decoded = _decode(image, kind, None, min_side, fallback_orientation=preview.orientation)
        return DecodedImage(decoded.image, decoded.original_size, kind, None)
    if sniff_format(preview.data[:_HEAD_BYTES]) != "JPEG":
        raise ImageLoadError(f"{kind}: the embedded preview is not a JPEG")
    try:
        decoded = load_jpeg(preview.data, max_pixels, min_side, preview.orientation)
    except ImageLoadError as error:
        raise ImageLoadError(f"embedded preview: {error}") from None
    finding = f"embedded preview: {decoded.corruption}" if decoded.corruption else None
    return DecodedImage(decoded.image, decoded.original_size, kind, finding)


def read_raw_preview(path: Path, kind: str | None = None) -> RawPreview:
    """The largest preview a RAW file embeds: LibRaw first, ExifTool where LibRaw refuses the file.
    ``kind`` (``sniff_format``'s) tells ExifTool the flavour where the path has no extension."""
    try:
        with rawpy.imread(str(path)) as raw:
            orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(raw.sizes.flip, 1)
            thumb = raw.extract_thumb()
    except (rawpy.LibRawError, OSError, ValueError) as error:
        libraw_reason = one_line(error)
    else:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            return RawPreview(data=bytes(thumb.data), bitmap=None, orientation=orientation)
        return RawPreview(data=None, bitmap=np.asarray(thumb.data), orientation=orientation)
    with _named_for_exiftool(path, kind) as named:
        return _read_preview_with_exiftool(named, libraw_reason, _pinned_descriptor(path))


def _pinned_descriptor(path: Path) -> tuple[int, ...]:
    """A ``pinned_file`` path's descriptor, which a child process must inherit to open that path."""
    folder, name = os.path.split(str(path))
    return (int(name),) if folder == "/proc/self/fd" and name.isdigit() else ()


@contextlib.contextmanager
def _named_for_exiftool(path: Path, kind: str | None) -> Iterator[Path]:
    """``path``, or where its extension is not its kind's (a ``pinned_file`` path), a link to it
    that carries that extension: ExifTool tells TIFF-based RAW flavours apart by extension."""
    suffix = "." + kind.rpartition(":")[2].lower() if kind else ""
    if not suffix or Path(path).suffix.lower() == suffix:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="pixelperfect-preview-") as folder:  # removes the link only
        link = Path(folder) / f"file{suffix}"
        os.symlink(path, link)
        yield link


def _read_preview_with_exiftool(path: Path, libraw_reason: str, inherited: tuple[int, ...] = ()) -> RawPreview:
    command = [
        "exiftool", "-json", "-a", "-G1", "-b", "-n",
        *(f"-{tag}" for tag in EXIFTOOL_PREVIEW_TAGS), "-Orientation",
        # An absolute path: a name starting with "-" would read as an option.
        os.path.abspath(path),
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            command, capture_output=True, timeout=EXIFTOOL_TIMEOUT_SECONDS, check=False, pass_fds=inherited
        )
    except FileNotFoundError:
        raise ImageLoadError(f"no preview: libraw: {libraw_reason}; exiftool is not installed") from None
    except subprocess.TimeoutExpired:
        raise ImageLoadError(
            f"no preview: libraw: {libraw_reason}; exiftool timed out after {EXIFTOOL_TIMEOUT_SECONDS:g} s"
        ) from None
    previews, orientation = parse_exiftool_previews(completed.stdout)
    if not previews:
        raise ImageLoadError(f"no embedded preview found (libraw: {libraw_reason})")
    return RawPreview(data=max(previews, key=len), bitmap=None, orientation=orientation)


def parse_exiftool_previews(stdout: bytes) -> tuple[list[bytes], int]:
    """The binary previews and the orientation in ``exiftool -json -b -n`` output."""
    try:
        (record,) = json.loads(stdout or b"[{}]")
    except (ValueError, TypeError):
        return [], 1
    previews = []
    orientation = 1
    for key, value in record.items():
        tag = key.rpartition(":")[2]
        if tag in EXIFTOOL_PREVIEW_TAGS and isinstance(value, str) and value.startswith("base64:"):
            try:
                previews.append(base64.b64decode(value[len("base64:") :], validate=True))
            except ValueError:
                continue
        elif tag == "Orientation" and isinstance(value, int) and orientation == 1:
            orientation = value if value in _ORIENTATION_TRANSPOSE else 1
    return previews, orientation


def _load_dng_main_image(path: Path, max_pixels: int, min_side: int | None) -> DecodedImage:
    try:
        with open_regular(path) as stream:
            image = _open("TIFF", stream, max_pixels)
            decoded = _decode(image, "TIFF", None, min_side)
    except OSError as error:
        raise ImageLoadError(describe_os_error(error)) from None
    except ImageLoadError as error:
        raise ImageLoadError(f"DNG without a readable preview or main image: {error}") from None
    return DecodedImage(decoded.image, decoded.original_size, "DNG", decoded.corruption)


# --- structural checks: damage the decoders would swallow ---------------------------------


@dataclass(frozen=True)
class JpegStructure:
    finding: str | None  # the first structural damage found, one line, or None
    truncated: bool = False  # the data ends before the end-of-image marker
    damage_offset: int | None = None  # where the damage starts, when it is inside the data
    has_image_data: bool = True  # False when the file ends before any entropy-coded byte


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers that may follow a scan's entropy-coded data: the next tables or scan, or the end.
_MARKERS_AFTER_SCAN = frozenset({0xC4, 0xCC, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})


@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    sampling: dict[int, tuple[int, int]]  # component id -> (horizontal, vertical) factor

    def mcus_in_scan(self, component_ids: list[int]) -> int | None:
        """How many MCUs (restart-interval units) a scan over these components holds."""
        if self.height == 0 or not component_ids or any(c not in self.sampling for c in component_ids):
            return None  # height comes later (DNL) or the scan names unknown components
        h_max = max(h for h, _ in self.sampling.values())
        v_max = max(v for _, v in self.sampling.values())
        if len(component_ids) == 1:
            h, v = self.sampling[component_ids[0]]
            width = -(-self.width * h // h_max)
            height = -(-self.height * v // v_max)
            return -(-width // 8) * -(-height // 8)
        return -(-self.width // (8 * h_max)) * -(-self.height // (8 * v_max))


def scan_jpeg_structure(data: bytes) -> JpegStructure:
    """Walk a JPEG's markers and scans for damage that libjpeg only warns about.

    Inside entropy-coded data 0xFF may only be followed by 0x00 (stuffing), 0xFF (fill) or a
    restart marker RST0-7 in sequence; the scan then ends at a marker that may follow a scan.
    Anything else, a wrong number of restart markers, or a missing end-of-image marker is a
    finding. Flipped bits that happen to form none of these stay invisible here.
    """
    size = len(data)
    if size < 4 or data[:2] != b"\xff\xd8":
        return JpegStructure("damaged JPEG: no start-of-image marker")
    array = np.frombuffer(data, dtype=np.uint8)
    marker_positions = np.flatnonzero(array[:-1] == 0xFF)
    following = array[marker_positions + 1]
    is_rst = (following >= 0xD0) & (following <= 0xD7)
    ends_scan = (following != 0x00) & (following != 0xFF) & ~is_rst
    scan_ends = marker_positions[ends_scan]
    rst_positions = marker_positions[is_rst]
    rst_numbers = following[is_rst] - 0xD0

    frame: _Frame | None = None
    restart_interval = 0
    scans_seen = 0
    position = 2
    while True:
        if position >= size:
            return _truncated("the file ends before the end-of-image marker")
        if data[position] != 0xFF:
            return _damaged(f"expected a marker at byte {position}, found 0x{data[position]:02X}", position)
        while position + 1 < size and data[position + 1] == 0xFF:
            position += 1  # fill bytes
        if position + 1 >= size:
            return _truncated("the file ends before the end-of-image marker")
        marker = data[position + 1]
        if marker == 0xD9:
            return JpegStructure(_trailing_data_finding(data, position + 2))
        if marker == 0x01:
            position += 2
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x00:
            return _damaged(f"marker 0xFF{marker:02X} out of place at byte {position}", position)
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment_end = position + 2 + length
        if segment_end > size or position + 4 > size:
            if not data.endswith(_JPEG_EOI):
                return _truncated("the file ends inside its headers")
            # The file is complete, so the marker and its length are corrupted bytes.
            return _damaged(
                f"segment 0xFF{marker:02X} at byte {position} runs past the end of the file",
                position,
            )
        if length < 2:
            return _damaged(f"segment 0xFF{marker:02X} at byte {position} has length {length}", position)
        body = data[position + 4 : segment_end]
        if marker in _SOF_MARKERS:
            frame = _parse_frame(body)
        elif marker == 0xDD and len(body) >= 2:
            restart_interval = int.from_bytes(body[:2], "big")
        elif marker == 0xDC and frame is not None and len(body) >= 2:
            frame = _Frame(frame.width, int.from_bytes(body[:2], "big"), frame.sampling)
        if marker != 0xDA:
            position = segment_end
            continue
        # A scan: its entropy-coded data runs to the first marker that is not RSTn.
        component_ids = list(body[1 : 1 + 2 * body[0] : 2]) if body else []
        index = int(np.searchsorted(scan_ends, segment_end))
        if index == len(scan_ends):
            if segment_end >= size and not scans_seen:
                return JpegStructure(
                    "truncated JPEG: the file ends where the image data begins",
                    truncated=True,
                    has_image_data=False,
                )
            return _truncated("no end-of-image marker (the file ends inside the image data)")
        scans_seen += 1
        scan_end = int(scan_ends[index])
        low, high = np.searchsorted(rst_positions, [segment_end, scan_end])
        restart_damage = _restart_finding(
            rst_positions[low:high], rst_numbers[low:high], restart_interval, frame, component_ids
        )
        if restart_damage is not None:
            (finding, offset) = restart_damage
            return _damaged(finding, scan_end if offset is None else offset)
        next_marker = data[scan_end + 1]
        if next_marker not in _MARKERS_AFTER_SCAN:
            return _damaged(
                f"invalid marker 0xFF{next_marker:02X} in the entropy-coded data at byte {scan_end}",
                scan_end,
            )
        position = scan_end


def _parse_frame(body: bytes) -> _Frame | None:
    if len(body) < 6:
        return None
    height = int.from_bytes(body[1:3], "big")
    width = int.from_bytes(body[3:5], "big")
    sampling = {}
    for index in range(body[5]):
        offset = 6 + 3 * index
        if offset + 2 > len(body):
            return None
        factors = body[offset + 1]
        sampling[body[offset]] = (max(factors >> 4, 1), max(factors & 0x0F, 1))
    return _Frame(width, height, sampling) if sampling else None


def _restart_finding(
    positions: np.ndarray,
    numbers: np.ndarray,
    restart_interval: int,
    frame: _Frame | None,
    component_ids: list[int],
) -> tuple[str, int | None] | None:
    """Restart markers must cycle RST0..RST7 and number ceil(MCUs / interval) - 1 per scan.

    Returns the finding and the byte where the damage shows, if one can be named."""
    if len(numbers) and restart_interval == 0:
        first = int(positions[0])
        return f"restart marker at byte {first} in a scan without a restart interval", first
    expected_numbers = np.arange(len(numbers)) % 8
    wrong = np.flatnonzero(numbers != expected_numbers)
    if wrong.size:
        first = int(wrong[0])
        return (
            f"restart marker RST{int(numbers[first])} at byte {int(positions[first])} "
            f"where RST{int(expected_numbers[first])} was due",
            int(positions[first]),
        )
    mcus = frame.mcus_in_scan(component_ids) if (frame is not None and restart_interval) else None
    if mcus is not None:
        expected_count = -(-mcus // restart_interval) - 1
        if len(numbers) != expected_count:
            return f"a scan has {len(numbers)} restart markers where {expected_count} were due", None
    return None


def _trailing_data_finding(data: bytes, end: int) -> str | None:
    """Bytes after the end-of-image marker are normal (MPF images, motion-photo videos,
    maker trailers, padding), except when they end in another EOI without starting a new
    JPEG: then the first EOI was a corrupted byte pair inside the image data."""
    trailing = data[end:]
    if not trailing.endswith(_JPEG_EOI):
        return None
    if trailing.lstrip(b"\x00").startswith(b"\xff\xd8"):
        return None  # another JPEG follows, maybe after zero padding
    return f"damaged JPEG: end-of-image marker at byte {end - 2}, {len(trailing)} bytes before the end"


def _truncated(detail: str) -> JpegStructure:
    return JpegStructure(f"truncated JPEG: {detail}", truncated=True)


def _damaged(detail: str, offset: int | None) -> JpegStructure:
    return JpegStructure(f"damaged JPEG: {detail}", damage_offset=offset)


def scan_png_structure(data: bytes) -> str | None:
    """Walk the PNG chunks: a cut-off chunk, a missing IEND or a critical chunk failing its CRC."""
    view = memoryview(data)
    size = len(data)
    position = 8
    while position + 8 <= size:
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = bytes(data[position + 4 : position + 8])
        name = chunk_type.decode("latin-1")
        if not chunk_type.isalpha():
            return f"damaged PNG: invalid chunk type at byte {position}"
        end = position + 12 + length
        if end > size:
            return f"truncated PNG: the {name} chunk at byte {position} is cut off"
        # Only critical chunks (upper-case first letter) carry pixels; a bad CRC in a text
        # chunk damages nothing we analyse.
        if chunk_type[:1].isupper():
            stored_crc = int.from_bytes(data[end - 4 : end], "big")
            if zlib.crc32(view[position + 4 : end - 4]) != stored_crc:
                return f"damaged PNG: the {name} chunk at byte {position} fails its CRC check"
        if chunk_type == b"IEND":
            return None
        position = end
    return "truncated PNG: no IEND chunk"


def _riff_truncation(data: bytes) -> str | None:
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared > len(data):
        return f"truncated WebP: {len(data)} of {declared} bytes"
    return None


def _tiff_directory_beyond_end(head: bytes, file_size: int) -> str | None:
    """Many writers put the first directory after the image data: a cut-off file loses it."""
    byte_order = "little" if head[:2] == b"II" else "big"
    directory = int.from_bytes(head[4:8], byte_order)
    if directory + 2 > file_size:
        return (
            f"truncated TIFF: its first directory at byte {directory} lies beyond the end of the {file_size}-byte file"
        )
    return None


def _tiff_truncation(image: Image.Image, file_size: int) -> str | None:
    """Image data the first page's strips or tiles point at beyond the end of the file."""
    tags = image.tag_v2
    offsets = tags.get(273) or tags.get(324)  # StripOffsets or TileOffsets
    counts = tags.get(279) or tags.get(325)  # StripByteCounts or TileByteCounts
    if not offsets or not counts:
        return None
    if isinstance(offsets, int):
        offsets = (offsets,)
    if isinstance(counts, int):
        counts = (counts,)
    data_end = max(offset + count for offset, count in zip(offsets, counts))
    if data_end > file_size:
        return f"truncated TIFF: image data runs to byte {data_end} of a {file_size}-byte file"
    return None
