"""Whose fault a failure is: the file's own (not an image, corrupt) or the environment's (a full disk,
a permission fixed later, a folder made writable again, a busy file, ExifTool gone).

The file's own failures stay error rows until the file changes; the environment's are retried
with back-off (``retry_delay``), because nothing about the file says they will happen again.
"""

from __future__ import annotations

import errno
import os

from .loading import ImageLoadError
from .metadata import MetadataError

# OS errors that say nothing about the file's content.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EROFS", "EBUSY", "ETXTBSY", "EAGAIN", "EIO", "ENOMEM",
        "EMFILE", "ENFILE", "ESTALE", "ETIMEDOUT", "ENOTCONN", "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN",
        "ENETUNREACH", "ECONNRESET", "ECONNABORTED", "EINTR", "ENOLCK", "EDEADLK",
    )
    if hasattr(errno, name)
)  # fmt: skip
# The loader reports an OSError as "permission denied" or "cannot read the file: <strerror>".
_LOADER_TRANSIENT = frozenset(
    ["permission denied"] + [f"cannot read the file: {os.strerror(number)}" for number in TRANSIENT_ERRNOS]
)
# ExifTool's words for a write the environment refused (a read-only folder, a full disk, no read
# permission), a stale scratch file, or the ExifTool process itself failing.
_METADATA_TRANSIENT = (
    "Error creating file",
    "Error opening file",
    "Error writing output file",
    "Error renaming temporary file",
    "Temporary file already exists",
    "ExifTool failed",
    "ExifTool does not work",
    *(os.strerror(number) for number in TRANSIENT_ERRNOS),
)


def is_transient(error: BaseException) -> bool:
    """True when ``error`` came from the environment, so the same file may well work later."""
    if isinstance(error, OSError):
        return error.errno in TRANSIENT_ERRNOS
    if isinstance(error, ImageLoadError):
        return str(error) in _LOADER_TRANSIENT
    if isinstance(error, MetadataError):
        return any(marker in str(error) for marker in _METADATA_TRANSIENT)
    return False


def retry_delay(retries: int, first: float, cap: float) -> float:
    """Seconds to wait before retry number ``retries`` (1, 2, ...): ``first``, doubling, at most ``cap``."""
    return min(max(cap, first), first * 2 ** max(0, retries - 1))
