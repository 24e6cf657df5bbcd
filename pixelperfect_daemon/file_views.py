"""A file's two views (``views.py``), decoding no more of it than they need.

A clean JPEG (or a RAW file's embedded JPEG preview) big enough to be shrunk for the overview
is never decoded at full resolution: its
views come from one entropy decode (``jpeg_dct.py``), the overview from the DCT-scaled photo and
the detail crop from the blocks under the most detailed region alone. A small clean JPEG is
decoded whole by TurboJPEG straight into one array. Everything else (other formats, damaged
JPEGs, layouts ``jpeg_dct`` does not handle, any libjpeg warning) is decoded in full by
``loading.py`` and goes through ``views_of_pixels`` (``views.make_views``' views and the noise
meter), so the decoder's findings stay as they were.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import jpeg_dct
from .common import one_line
from .loading import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    check_pixel_budget,
    jpeg_orientation,
    load_image,
    load_jpeg,
    pinned_file,
    read_all,
    read_head,
    read_raw_preview,
    scan_jpeg_structure,
    set_pixel_limit,
    sniff_format,
)
from .screen_noise import screen_noise_sigma
from .views import VIEW_SIZE, detail_origin_in, overview_view, reduction_factor, views_and_reduced_copy

log = logging.getLogger(__name__)

# The DCT scalings libjpeg offers; the largest not beyond the search's own reduction is used.
_DENOMINATORS = (8, 4, 2)
# EXIF orientation -> (flip rows, flip columns, then transpose) that shows the stored pixels upright.
_ORIENTATION_STEPS = {
    1: (False, False, False), 2: (False, True, False), 3: (True, True, False), 4: (True, False, False),
    5: (False, False, True), 6: (True, False, True), 7: (True, True, True), 8: (False, True, True),
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class FileViews:
    views: np.ndarray  # (2, 224, 224, 3) uint8: overview, detail
    original_size: tuple[int, int]  # (width, height) after orientation
    format: str
    corruption: str | None  # the decoder's one-line finding for damaged data, as DecodedImage's
    from_coefficients: bool  # True when the views came from the DCT coefficients
    detail_origin: tuple[int, int] | None = None  # upright (y, x) of the detail crop, where known
    screen_noise: float = math.nan  # screen_noise.screen_noise_sigma of the photo; NaN where unmeasured


def views_of_pixels(pixels, original_size, format: str, corruption: str | None) -> FileViews:
    """The views and the noise reading of decoded pixels (the full-decode route)."""
    views, small = views_and_reduced_copy(pixels)
    return FileViews(views, original_size, format, corruption, False, screen_noise=screen_noise_sigma(small))


def load_views(path, *, max_pixels: int = DEFAULT_MAX_PIXELS, suffix: str | None = None) -> FileViews:
    """The views of the photo in ``path``; raises ``ImageLoadError`` as ``load_image`` does (and
    takes its ``suffix``)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    set_pixel_limit(max_pixels)
    head, _ = read_head(path)
    kind = sniff_format(head, suffix)
    if kind == "JPEG":
        data = read_all(path)
        fast = jpeg_views(data, max_pixels)
        if fast is not None:
            return fast
        decoded = load_jpeg(data, max_pixels, None)
    else:
        fast = (
            _raw_preview_views(path, kind, max_pixels) if kind and (kind.startswith("RAW:") or kind == "DNG") else None
        )
        if fast is not None:
            return fast
        decoded = load_image(path, max_pixels=max_pixels, suffix=suffix)
    return views_of_pixels(decoded.image, decoded.original_size, decoded.format, decoded.corruption)


def load_views_pinned(path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> FileViews:
    """``load_views`` of the regular file at ``path`` itself, for files strangers control: a
    symlink is refused, and the file is opened once (``loading.pinned_file``), so a name swapped
    while it is decoded cannot send any decoder to another file."""
    path = Path(path)
    with pinned_file(path) as pinned:
        return load_views(pinned, max_pixels=max_pixels, suffix=path.suffix)


def _raw_preview_views(path: Path, kind: str, max_pixels: int) -> FileViews | None:
    """The views of a RAW file's embedded JPEG preview by the DCT route, or None (then
    ``load_image`` reads the file again, with its fallbacks and findings)."""
    if not jpeg_dct.available():
        return None
    try:
        preview = read_raw_preview(path, kind)
    except ImageLoadError:
        return None
    if preview.data is None or sniff_format(preview.data[:64]) != "JPEG":
        return None
    fast = jpeg_views(preview.data, max_pixels, preview.orientation)
    return dataclasses.replace(fast, format=kind) if fast is not None else None


def jpeg_views(data: bytes, max_pixels: int, fallback_orientation: int = 1) -> FileViews | None:
    """The views of a clean JPEG (from its DCT coefficients where it is big enough), or None where
    it needs the full decode."""
    if not jpeg_dct.available() or scan_jpeg_structure(data).finding is not None:
        return None
    try:
        layout = jpeg_dct.read_layout(data)
    except jpeg_dct.NotForDctPath:
        return None
    check_pixel_budget((layout.width, layout.height), max_pixels)
    factor = reduction_factor(layout.height, layout.width)
    denominator = next((d for d in _DENOMINATORS if d <= factor), None)
    orientation = jpeg_orientation(data, fallback_orientation)
    steps = _ORIENTATION_STEPS.get(orientation, _ORIENTATION_STEPS[1])
    stored_size = (layout.height, layout.width)
    upright_size = stored_size[::-1] if steps[2] else stored_size
    if denominator is None:
        # Small enough that the detail crop is a good part of the photo: decode it all.
        return _whole_jpeg_views(data, layout, steps, upright_size)
    search: dict = {}

    def choose_region(reduced: np.ndarray) -> jpeg_dct.Box:
        search["small"] = small = _search_copy(_orient(reduced, steps), upright_size, factor, denominator)
        y, x = search["origin"] = detail_origin_in(upright_size, small, 1.0 / factor)
        height, width = upright_size
        return _stored_box(y, x, min(VIEW_SIZE, height), min(VIEW_SIZE, width), steps, stored_size)

    try:
        _, crop = jpeg_dct.decode_reduced_and_region(data, layout, denominator, choose_region)
    except jpeg_dct.NotForDctPath:
        return None
    except Exception as error:  # noqa: BLE001 - files come from strangers: the full decode judges them
        log.warning("DCT route failed, decoding in full: %s", one_line(error))
        return None
    views = np.stack([overview_view(search["small"]), _orient(crop, steps)])
    return FileViews(
        views,
        (upright_size[1], upright_size[0]),
        "JPEG",
        None,
        True,
        search["origin"],
        screen_noise_sigma(search["small"]),
    )


def _whole_jpeg_views(data: bytes, layout, steps, upright_size: tuple[int, int]) -> FileViews | None:
    """The views of a small clean JPEG decoded whole by TurboJPEG into one array (the same pixels
    as Pillow's decode, without its copies), or None where the full decode must judge it."""
    try:
        pixels = jpeg_dct.decode_whole(data, layout)
    except jpeg_dct.NotForDctPath:
        return None
    return views_of_pixels(_orient(pixels, steps), (upright_size[1], upright_size[0]), "JPEG", None)


def _orient(pixels: np.ndarray, steps: tuple[bool, bool, bool]) -> np.ndarray:
    flip_rows, flip_columns, transpose = steps
    if flip_rows:
        pixels = pixels[::-1]
    if flip_columns:
        pixels = pixels[:, ::-1]
    if transpose:
        pixels = pixels.transpose(1, 0, 2)
    return np.ascontiguousarray(pixels)


def _stored_box(y: int, x: int, height: int, width: int, steps, stored_size: tuple[int, int]) -> jpeg_dct.Box:
    """The stored-frame box whose pixels, oriented, are the upright box at (y, x)."""
    flip_rows, flip_columns, transpose = steps
    rows, columns = (x, x + width), (y, y + height)
    if not transpose:
        rows, columns = (y, y + height), (x, x + width)
    stored_height, stored_width = stored_size
    if flip_rows:
        rows = (stored_height - rows[1], stored_height - rows[0])
    if flip_columns:
        columns = (stored_width - columns[1], stored_width - columns[0])
    return jpeg_dct.Box(x0=columns[0], y0=rows[0], x1=columns[1], y1=rows[1])


def _search_copy(reduced: np.ndarray, upright_size: tuple[int, int], factor: int, denominator: int) -> np.ndarray:
    """The photo averaged over whole factor x factor blocks, as ``views.reduced_copy`` makes it,
    from its 1/denominator DCT-scaled copy."""
    height, width = upright_size[0] // factor, upright_size[1] // factor
    # The ragged edge beyond whole blocks is dropped, as reduced_copy drops it.
    covered = reduced[: -(-height * factor // denominator), : -(-width * factor // denominator)]
    if covered.shape[:2] == (height, width):
        return covered
    return cv2.resize(covered, (width, height), interpolation=cv2.INTER_AREA)
