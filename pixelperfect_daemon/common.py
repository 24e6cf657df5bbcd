"""Small helpers the daemon, the index and the review UI share: time stamps, file hashes, one-line errors."""

from __future__ import annotations

import hashlib
import math
import time
from datetime import datetime, timezone
from pathlib import Path


def utc_now() -> str:
    """Now in UTC as ISO 8601 to the second, ``Z``-suffixed (the index's and the XMP dates' form)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_in(seconds: float) -> str:
    """``utc_now()``'s form, ``seconds`` from now, rounded up to a whole second (never earlier than asked)."""
    moment = datetime.fromtimestamp(math.ceil(time.time() + seconds), timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_of(path: Path | str) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def one_line(error: BaseException | str | bytes) -> str:
    """An error as one line of text (LibRaw's messages arrive as bytes); the exception's type name if empty."""
    message = error
    if isinstance(error, BaseException) and len(error.args) == 1 and isinstance(error.args[0], bytes):
        message = error.args[0]
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    text = " ".join(text.split())
    if isinstance(error, BaseException) and not text:
        text = type(error).__name__
    return text
