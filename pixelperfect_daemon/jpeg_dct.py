"""A JPEG's two views from one entropy decode, without decoding the photo at full resolution.

libjpeg-turbo (its TurboJPEG library, through ctypes) reads the DCT coefficients once; a custom
filter sees them block row by block row. Pass one keeps of each block the frequencies that give
its means over 2 x 2, 4 x 4 or 8 x 8 pixels (for 8 x 8 the DC alone): the photo shrunk by a power
of two, averaged as the full decode's box filter averages it; the caller picks the detail region
on that. Pass two, over the same coefficients,
keeps only the blocks under that region, which are inverse-transformed at full size, their
chroma upsampled as libjpeg's default ("fancy", triangular) upsampling does and converted to RGB.

Only clean, 8-bit, YCbCr or greyscale JPEGs whose chroma is subsampled by at most 2 take this
route: anything else, and any libjpeg warning (it stops on warnings), raises ``NotForDctPath``
and the caller decodes the file in full as before, so damaged files keep their findings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

_TJXOPT_NOOUTPUT = 16
_TJFLAG_STOPONWARNING = 8192
_TJCS_YCBCR, _TJCS_GRAY = 1, 2
_TJPF_RGB = 0
_BLOCK = 8
# glibc's mallopt parameters, and the largest buffer kept in the heap instead of mmap-ed afresh.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEPT_BUFFER_BYTES = 256 << 20
# JPEG stores quantisation tables in zig-zag order; libjpeg's coefficient blocks are in natural order.
_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
    54, 47, 55, 62, 63,
])  # fmt: skip


class NotForDctPath(Exception):
    """This JPEG needs the full decode (unsupported layout, or libjpeg found something amiss)."""


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):
    pass


_FILTER = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, _Region, _Region, ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Transform)
)
_Transform._fields_ = [
    ("r", _Region), ("op", ctypes.c_int), ("options", ctypes.c_int), ("data", ctypes.c_void_p),
    ("customFilter", _FILTER),
]  # fmt: skip


@functools.cache
def _turbojpeg():
    """The TurboJPEG library (Debian's libturbojpeg0), or None where it is not installed."""
    name = ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0"
    try:
        library = ctypes.CDLL(name)
    except OSError:
        return None
    library.tjInitTransform.restype = ctypes.c_void_p
    library.tjInitDecompress.restype = ctypes.c_void_p
    library.tjDecompress2.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
        *[ctypes.c_int] * 5,
    ]
    library.tjDestroy.argtypes = [ctypes.c_void_p]
    library.tjDecompressHeader3.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        *[ctypes.POINTER(ctypes.c_int)] * 4,
    ]
    library.tjTransform.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(_Transform),
        ctypes.c_int,
    ]
    library.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
    library.tjGetErrorStr2.restype = ctypes.c_char_p
    return library


@functools.cache
def keep_freed_memory_for_reuse() -> None:
    """Keep freed large buffers in the process's heap: libjpeg's coefficient arrays (and Pillow's
    decoded images) are tens of megabytes, and glibc would otherwise return them to the system
    and page-fault fresh zeroed memory in for every photo. Peak memory is unchanged."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _KEPT_BUFFER_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEPT_BUFFER_BYTES)
    except (OSError, AttributeError):
        pass  # not glibc: the default allocator is only slower


def available() -> bool:
    return _turbojpeg() is not None


@dataclass(frozen=True)
class _Component:
    h: int  # sampling factors
    v: int
    table: np.ndarray  # 8 x 8 float32 quantisation steps, natural order


@dataclass(frozen=True)
class JpegLayout:
    width: int
    height: int
    components: tuple[_Component, ...]

    @property
    def h_max(self) -> int:
        return max(c.h for c in self.components)

    @property
    def v_max(self) -> int:
        return max(c.v for c in self.components)


def read_layout(data: bytes) -> JpegLayout:
    """Frame size, sampling factors and quantisation tables from the headers before the first scan."""
    tables: dict[int, np.ndarray] = {}
    frame = None
    position = 2
    size = len(data)
    while position + 4 <= size:
        if data[position] != 0xFF:
            raise NotForDctPath("unexpected bytes between markers")
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        body = data[position + 4 : position + 2 + length]
        if marker == 0xDB:
            _read_tables(body, tables)
        elif marker in (0xC0, 0xC1, 0xC2):  # Huffman-coded baseline, extended, progressive
            frame = body
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise NotForDctPath("lossless, hierarchical or arithmetic-coded JPEG")
        elif marker == 0xDA:
            break
        position += 2 + length
    if frame is None or len(frame) < 6 or frame[0] != 8:
        raise NotForDctPath("no 8-bit frame header")
    height, width, count = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    if count not in (1, 3) or len(frame) < 6 + 3 * count:
        raise NotForDctPath(f"{count} components")
    components = []
    for index in range(count):
        _, factors, table_id = frame[6 + 3 * index : 9 + 3 * index]
        if table_id not in tables:
            raise NotForDctPath("a quantisation table is defined after the frame")
        components.append(_Component(h=factors >> 4, v=factors & 0x0F, table=tables[table_id]))
    layout = JpegLayout(width, height, tuple(components))
    if height == 0 or any(
        c.h < 1
        or c.v < 1
        or layout.h_max // c.h not in (1, 2)
        or layout.v_max // c.v not in (1, 2)
        or layout.h_max % c.h
        or layout.v_max % c.v
        for c in components
    ):
        raise NotForDctPath("unusual chroma subsampling")
    return layout


def _read_tables(body: bytes, tables: dict[int, np.ndarray]) -> None:
    position = 0
    while position < len(body):
        precision, table_id = body[position] >> 4, body[position] & 0x0F
        count = 64 * (2 if precision else 1)
        raw = body[position + 1 : position + 1 + count]
        if len(raw) < count:
            raise NotForDctPath("short quantisation table")
        values = np.frombuffer(raw, dtype=">u2" if precision else np.uint8).astype(np.float32)
        natural = np.empty(64, np.float32)
        natural[_ZIGZAG] = values
        tables[table_id] = natural.reshape(8, 8)
        position += 1 + count


@functools.cache
def _block_means(samples: int, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The frequencies (indices along one axis) and the (samples x those) matrix that give the means
    of ``samples`` equal runs of an 8-sample block from its orthonormal DCT coefficients.

    ``exact`` uses every frequency that does not cancel out, so the reduced photo is the full
    decode averaged over blocks; otherwise only the ``samples`` lowest, as libjpeg's DCT scaling
    does (cheaper, a little blurred; used for subsampled chroma, which the detail search barely sees)."""
    n, u = np.arange(_BLOCK)[:, None], np.arange(_BLOCK)[None, :]
    inverse = np.sqrt(2.0 / _BLOCK) * np.cos(np.pi * (2 * n + 1) * u / (2 * _BLOCK))
    inverse[:, 0] = np.sqrt(1.0 / _BLOCK)  # sample n from frequency u
    if exact:
        means = inverse.reshape(samples, _BLOCK // samples, _BLOCK).mean(axis=1)
        used = np.flatnonzero(np.abs(means).max(axis=0) > 1e-9)
        return used, means[:, used].astype(np.float32)
    k = np.arange(samples)
    scaled = np.sqrt(2.0 / samples) * np.cos(np.pi * (2 * k[:, None] + 1) * k[None, :] / (2 * samples))
    scaled[:, 0] = np.sqrt(1.0 / samples)
    return k, (scaled * np.sqrt(samples / _BLOCK)).astype(np.float32)


def _kept_frequencies(blocks: np.ndarray, rows: int, cols: int, exact: bool) -> np.ndarray:
    """The coefficients of (By, Bx, 8, 8) blocks that ``_blocks_to_plane`` reads (a copy)."""
    used_rows, used_cols = _block_means(rows, exact)[0], _block_means(cols, exact)[0]
    if used_rows[-1] == len(used_rows) - 1 and used_cols[-1] == len(used_cols) - 1:
        return blocks[:, :, : len(used_rows), : len(used_cols)].copy()  # the lowest ones: a plain slice is faster
    return blocks[:, :, used_rows][:, :, :, used_cols]


def _blocks_to_plane(blocks: np.ndarray, table: np.ndarray, rows: int, cols: int, exact: bool = True) -> np.ndarray:
    """(By, Bx, ...) quantised coefficients (the frequencies ``_block_means`` uses) -> a
    (By*rows, Bx*cols) plane of samples in 0..255, rounded as libjpeg rounds them before upsampling."""
    (used_rows, vertical), (used_cols, horizontal) = _block_means(rows, exact), _block_means(cols, exact)
    by, bx = blocks.shape[:2]
    # One product for all blocks: the separable 2-D transform as a Kronecker product.
    steps = table[np.ix_(used_rows, used_cols)].reshape(1, -1)
    transform = (np.kron(vertical, horizontal) * steps).astype(np.float32)
    flat = _product(blocks.reshape(by * bx, -1).astype(np.float32), transform.T)
    samples = flat.reshape(by, bx, rows, cols).transpose(0, 2, 1, 3)
    return np.clip(np.rint(samples.reshape(by * rows, bx * cols) + 128.0), 0, 255)


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ right for a short inner dimension, without BLAS (whose threads spin on a busy machine),
    in whole contiguous rows."""
    columns = np.ascontiguousarray(left.T)
    result = right[0][:, None] * columns[0]
    for k in range(1, right.shape[0]):
        result += right[k][:, None] * columns[k]
    return result.T


def _to_rgb(planes: list[np.ndarray]) -> np.ndarray:
    """RGB from the Y (Cb Cr) planes, already rounded to 0..255 as libjpeg rounds them (JFIF's
    full-range conversion, which is OpenCV's YCrCb)."""
    if len(planes) == 1:
        return cv2.cvtColor(planes[0].astype(np.uint8), cv2.COLOR_GRAY2RGB)
    y, cb, cr = (plane.astype(np.uint8) for plane in planes)
    return cv2.cvtColor(cv2.merge([y, cr, cb]), cv2.COLOR_YCrCb2RGB)


@dataclass(frozen=True)
class Box:
    """A region in the stored (unrotated) frame, in pixels: [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int


def decode_whole(data: bytes, layout: JpegLayout) -> np.ndarray:
    """The whole photo as RGB uint8, stored orientation: libjpeg-turbo's default decode (accurate
    integer inverse DCT, fancy upsampling), as Pillow's, straight into one array."""
    library = _turbojpeg()
    if library is None:
        raise NotForDctPath("libturbojpeg is not installed")
    handle = library.tjInitDecompress()
    if not handle:
        raise NotForDctPath("TurboJPEG could not start")
    try:
        _check_header(library, handle, data, layout)
        pixels = np.empty((layout.height, layout.width, 3), np.uint8)
        status = library.tjDecompress2(
            handle,
            data,
            len(data),
            pixels.ctypes.data,
            layout.width,
            0,
            layout.height,
            _TJPF_RGB,
            _TJFLAG_STOPONWARNING,
        )
        if status != 0:
            raise NotForDctPath(library.tjGetErrorStr2(handle).decode(errors="replace"))
    finally:
        library.tjDestroy(handle)
    return pixels


def _check_header(library, handle, data: bytes, layout: JpegLayout) -> None:
    """Refuse what TurboJPEG sees other than a YCbCr or greyscale frame of the layout's size."""
    width, height, subsampling, colorspace = (ctypes.c_int() for _ in range(4))
    if (
        library.tjDecompressHeader3(
            handle, data, len(data), *(ctypes.byref(v) for v in (width, height, subsampling, colorspace))
        )
        != 0
    ):
        raise NotForDctPath(library.tjGetErrorStr2(handle).decode(errors="replace"))
    if colorspace.value not in (_TJCS_YCBCR, _TJCS_GRAY) or (width.value, height.value) != (
        layout.width,
        layout.height,
    ):
        raise NotForDctPath("not a YCbCr or greyscale JPEG")


def decode_reduced_and_region(
    data: bytes, layout: JpegLayout, denominator: int, choose_region: Callable[[np.ndarray], Box]
) -> tuple[np.ndarray, np.ndarray]:
    """The photo averaged over ``denominator`` (2, 4 or 8) square blocks (RGB uint8, ceil(size /
    denominator)) and the full-resolution RGB pixels of the box ``choose_region`` picks from it,
    from one entropy decode."""
    library = _turbojpeg()
    if library is None:
        raise NotForDctPath("libturbojpeg is not installed")
    scale = _BLOCK // denominator
    h_max, v_max = layout.h_max, layout.v_max
    # Each component's samples per block in the reduced image: subsampled chroma gives twice as many.
    reduced_sizes = [
        (min(_BLOCK, scale * v_max // c.v), min(_BLOCK, scale * h_max // c.h), (c.h, c.v) == (h_max, v_max))
        for c in layout.components
    ]
    # Pass one only notes where each block row lies: libjpeg holds every coefficient in memory
    # until tjTransform returns, so pass two's first call reads them all from there at once.
    addresses: list[list[int]] = [[] for _ in layout.components]
    widths = [0] * len(layout.components)
    result: dict = {}
    failure: list[BaseException] = []

    def component_span(index: int, box: Box) -> tuple[int, int, int, int]:
        """Block rows and columns of a component under the box, with one block of margin for upsampling."""
        component = layout.components[index]
        fy, fx = v_max // component.v, h_max // component.h
        return (
            max(0, box.y0 // fy // _BLOCK - 1),
            -(-box.y1 // fy // _BLOCK) + 1,
            max(0, box.x0 // fx // _BLOCK - 1),
            -(-box.x1 // fx // _BLOCK) + 1,
        )

    def on_block_row(coefficients, array_region, _plane_region, component_index, transform_index, _transform):
        if transform_index == 0:
            addresses[component_index].append(coefficients)
            widths[component_index] = array_region.w // _BLOCK
            return 0
        if result or failure:
            return 0
        try:
            blocks = [_block_rows(rows, width) for rows, width in zip(addresses, widths)]
            low = [_kept_frequencies(b, *size) for b, size in zip(blocks, reduced_sizes)]
            result["reduced"] = _reduced_image(low, layout, reduced_sizes, denominator)
            box = choose_region(result["reduced"])
            spans = [component_span(index, box) for index in range(len(blocks))]
            rows = [b[y0:y1, x0:x1].copy() for b, (y0, y1, x0, x1) in zip(blocks, spans)]
            result["region"] = _region_pixels(rows, layout, box, spans)
            return 0
        except BaseException as error:  # noqa: BLE001 - an exception must not cross into C
            failure.append(error)
            return -1

    callback = _FILTER(on_block_row)
    transforms = (_Transform * 2)()
    for transform in transforms:
        transform.options = _TJXOPT_NOOUTPUT
        transform.customFilter = callback
    handle = library.tjInitTransform()
    if not handle:
        raise NotForDctPath("TurboJPEG could not start")
    try:
        _check_header(library, handle, data, layout)
        # No output is written (NOOUTPUT), but TurboJPEG insists on somewhere to put it.
        buffers, sizes = (ctypes.c_void_p * 2)(), (ctypes.c_ulong * 2)()
        status = library.tjTransform(handle, data, len(data), 2, buffers, sizes, transforms, _TJFLAG_STOPONWARNING)
        if failure:
            raise failure[0]
        if status != 0:
            raise NotForDctPath(library.tjGetErrorStr2(handle).decode(errors="replace"))
    finally:
        library.tjDestroy(handle)
    if not result:
        raise NotForDctPath("no coefficients were read")
    return result["reduced"], result["region"]


def _block_rows(addresses: list[int], width: int) -> np.ndarray:
    """(rows, width, 8, 8) int16 over libjpeg's coefficient rows, without copying where they lie
    evenly spaced in one allocation (they do, in libjpeg-turbo's in-memory arrays)."""
    row_bytes = width * _BLOCK * _BLOCK * 2
    if len(addresses) > 1:
        gaps = np.diff(np.asarray(addresses, dtype=np.int64))
        stride = int(gaps[0])
        if stride >= row_bytes and stride % 2 == 0 and np.all(gaps == stride):
            whole = (ctypes.c_short * (stride // 2 * (len(addresses) - 1) + row_bytes // 2)).from_address(addresses[0])
            flat = np.frombuffer(whole, np.int16)
            return np.lib.stride_tricks.as_strided(
                flat, (len(addresses), width, _BLOCK, _BLOCK), (stride, 128, 16, 2), writeable=False
            )
    row_type = ctypes.c_short * (row_bytes // 2)
    return np.stack(
        [np.frombuffer(row_type.from_address(a), np.int16).reshape(width, _BLOCK, _BLOCK) for a in addresses]
    )


def _reduced_image(low, layout: JpegLayout, reduced_sizes, denominator: int) -> np.ndarray:
    height, width = -(-layout.height // denominator), -(-layout.width // denominator)
    planes = []
    for component, blocks, (rows, cols, exact) in zip(layout.components, low, reduced_sizes):
        plane = _blocks_to_plane(blocks, component.table, rows, cols, exact)
        planes.append(plane[:height, :width])
    return _to_rgb(planes)


def _region_pixels(region_rows, layout: JpegLayout, box: Box, spans) -> np.ndarray:
    planes = []
    for index, (component, rows) in enumerate(zip(layout.components, region_rows)):
        fy, fx = layout.v_max // component.v, layout.h_max // component.h
        y0, _, x0, _ = spans[index]
        plane = _blocks_to_plane(rows, component.table, _BLOCK, _BLOCK)
        # libjpeg upsamples from the component's real samples, replicating its last one at the edge.
        real_h = -(-layout.height * component.v // layout.v_max) - y0 * _BLOCK
        real_w = -(-layout.width * component.h // layout.h_max) - x0 * _BLOCK
        plane = plane[:real_h, :real_w].astype(np.float32)
        if (fy, fx) != (1, 1):
            # Bilinear at quarter-sample offsets with replicated edges is libjpeg's triangular filter.
            plane = cv2.resize(plane, (plane.shape[1] * fx, plane.shape[0] * fy), interpolation=cv2.INTER_LINEAR)
            plane = np.rint(plane)  # libjpeg's upsampling gives whole sample values too
        top, left = y0 * _BLOCK * fy, x0 * _BLOCK * fx
        planes.append(plane[box.y0 - top : box.y1 - top, box.x0 - left : box.x1 - left])
    return _to_rgb(planes)
