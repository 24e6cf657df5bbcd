"""A JPEG's header segments, read without ExifTool: does it carry XMP, where does its image data begin.

A camera JPEG fresh off the card usually has EXIF but no XMP, so it holds no keywords, label or
earlier verdict to keep, and the ExifTool read before the first write (about 3 ms of CPU per
file, a tenth of what tagging costs) can be skipped. XMP in a JPEG lives in APP1 segments before
the image data (and, from old Photoshop versions, inside an APP13 resource block), so walking the
segment headers up to the start of scan answers it exactly. Whenever the walk is unsure (not a
JPEG, truncated, a malformed segment) the answer is "may hold XMP", and the caller asks ExifTool.

The same walk tells the metadata writer where the header ends, so that ExifTool can be given the
header alone (``header_tagging``), and checks that ExifTool's new header only added an XMP segment.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_SOI = b"\xff\xd8"
_SOS = 0xDA
_EOI = 0xD9
_APP1 = 0xE1
_APP13 = 0xED
# Markers that stand alone, without a length: TEM and RST0-7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_XMP_SIGNATURES = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_LONGEST_SIGNATURE = max(len(signature) for signature in _XMP_SIGNATURES)
# A header has a few dozen segments; more means this is not a JPEG header we understand.
_MAX_SEGMENTS = 1000


class _Unsure(Exception):
    """Not a JPEG header this walk understands."""


def jpeg_may_hold_xmp(path: Path) -> bool:
    """False only for a JPEG whose header was read to the start of scan and holds no XMP."""
    try:
        with open(path, "rb") as file:
            return scan_start_without_xmp(file) is None
    except OSError:
        return True


def scan_start_without_xmp(file: BinaryIO) -> int | None:
    """Where the image data of the JPEG in ``file`` begins (just past its start-of-scan segment),
    if its header was read that far and holds no XMP; None otherwise."""
    try:
        for marker, _, payload, end in _segments(file):
            if marker == _APP13:
                return None  # a Photoshop resource block may embed XMP
            if marker == _APP1 and _is_xmp(file, payload, end):
                return None
            if marker == _SOS:
                return end
    except _Unsure:
        return None
    return None


def xmp_segment_added(before: bytes, after: bytes) -> bool:
    """True when header ``after`` is header ``before`` with one XMP segment inserted between two of its
    segments, every other byte as it was."""
    source = io.BytesIO(after)
    try:
        spans = list(_segments(source))
    except _Unsure:
        return False
    if not spans or spans[-1][0] != _SOS or spans[-1][3] != len(after):
        return False
    added = [(start, end) for marker, start, payload, end in spans if marker == _APP1 and _is_xmp(source, payload, end)]
    if len(added) != 1:
        return False
    start, end = added[0]
    return after[:start] + after[end:] == before


def _is_xmp(file: BinaryIO, payload: int, end: int) -> bool:
    """Does the APP1 segment whose payload runs from ``payload`` to ``end`` carry XMP?"""
    file.seek(payload)
    head = file.read(min(end - payload, _LONGEST_SIGNATURE))
    return any(head.startswith(signature) for signature in _XMP_SIGNATURES)


def _segments(file: BinaryIO) -> Iterator[tuple[int, int, int, int]]:
    """(marker, start, payload, end) of each segment after SOI, up to and including the start-of-scan
    segment: ``start`` where its fill bytes or marker begin, ``payload`` where its data begins.
    Raises _Unsure at anything else. The caller may move the file's position between segments."""
    file.seek(0)
    if file.read(2) != _SOI:
        raise _Unsure
    position = 2
    for _ in range(_MAX_SEGMENTS):
        file.seek(position)
        marker = _next_marker(file)
        if marker is None or marker == _EOI:
            raise _Unsure  # truncated or empty: let ExifTool judge
        if marker in _STANDALONE:
            end = file.tell()
            yield marker, position, end, end
            position = end
            continue
        if marker < 0xC0:
            raise _Unsure  # not a header marker: not a JPEG header we understand
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            raise _Unsure
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            raise _Unsure
        payload = file.tell()
        end = payload + length - 2
        file.seek(end - 1)
        if not file.read(1):
            raise _Unsure  # the segment is cut short
        yield marker, position, payload, end
        if marker == _SOS:
            return
        position = end
    raise _Unsure


def _next_marker(file) -> int | None:
    """The next marker's code, skipping the 0xFF fill bytes allowed before it; None at a non-marker."""
    byte = file.read(1)
    if byte != b"\xff":
        return None
    while byte == b"\xff":
        byte = file.read(1)
    return byte[0] if byte else None
