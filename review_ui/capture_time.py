"""When a photo was taken: EXIF DateTimeOriginal with its sub-seconds, as sortable ISO text.

Read lazily by the UI (the daemon does not need it) and stored in the index's ``captured_at``
column, so sorting by capture time and grouping bursts run in SQL. A file without the tag gets
"" (looked, nothing there) so it is not read again.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 36867
_SUBSEC_TIME_ORIGINAL = 37521


def parse_exif_time(value, subseconds=None) -> str:
    """ISO 8601 text ("2024-05-01T10:00:00.250000") from EXIF's "YYYY:MM:DD HH:MM:SS"; "" when malformed."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return ""
    try:
        moment = dt.datetime.strptime(value.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return ""
    digits = "".join(ch for ch in str(subseconds or "").strip() if ch.isdigit())[:6]
    if digits:
        moment = moment.replace(microsecond=int(digits.ljust(6, "0")))
    return moment.isoformat(timespec="microseconds")


def read_capture_time(path: Path, exif_reader=None) -> str:
    """The capture time of ``path`` or "" when it records none; RAW files go through ``exif_reader``."""
    try:
        with Image.open(path) as image:
            exif = image.getexif().get_ifd(_EXIF_IFD)
            return parse_exif_time(exif.get(_DATE_TIME_ORIGINAL), exif.get(_SUBSEC_TIME_ORIGINAL))
    except Exception as error:  # not a format Pillow opens (RAW) or a damaged header: ask ExifTool
        log.debug("Pillow cannot read the EXIF of %s: %s", path, error)
    if exif_reader is None:
        return ""
    try:
        tags = exif_reader.read_tags(Path(path), ("DateTimeOriginal", "SubSecTimeOriginal"))
    except Exception as error:
        log.warning("cannot read the capture time of %s: %s", path, error)
        return ""
    return parse_exif_time(tags.get("DateTimeOriginal"), tags.get("SubSecTimeOriginal"))
