"""Small helpers the daemon, the index and the review UI share: time stamps, file hashes, one-line errors,
paths as lossless text."""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import blake3

_PATH_ESCAPE = re.compile(r"\\\\|\\x[0-9a-f]{2}")


def utc_now() -> str:
    """Now in UTC as ISO 8601 to the second, ``Z``-suffixed (the index's and the XMP dates' form)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_in(seconds: float) -> str:
    """``utc_now()``'s form, ``seconds`` from now, rounded up to a whole second (never earlier than asked)."""
    moment = datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# The index's content hash (a third of SHA-256's CPU per photo, and as collision-resistant), then
# the one of rows written before it: a row holds one of the two.
_HASHERS = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
CONTENT_HASHES = tuple(_HASHERS)
_HASH_CHUNK = 1 << 20


def file_hash(path: Path | str, algorithm: str = "blake3") -> str:
    """The hex digest of a file's bytes, by one of ``CONTENT_HASHES``."""
    if algorithm not in _HASHERS:
        raise ValueError(f"unknown content hash {algorithm!r}")
    digest = _HASHERS[algorithm]()
    chunk = bytearray(_HASH_CHUNK)
    view = memoryview(chunk)
    with open(path, "rb", buffering=0) as file:
        while size := file.readinto(chunk):
            digest.update(view[:size])
    return digest.hexdigest()


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


def valid_text(text: str) -> str:
    """``text`` (a message quoting a path that is not UTF-8) as valid UTF-8: each undecodable byte as ``\\xHH``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def path_to_text(path: Path | str | bytes) -> str:
    """A file path as valid UTF-8 text, losslessly (the index's key and ``analyze --json``'s ``path``).

    A path without a backslash whose bytes are valid UTF-8 is its own text. Otherwise the backslash
    is the escape character: ``\\`` becomes ``\\\\`` and every byte that is not valid UTF-8 becomes
    ``\\xHH`` (``caf\\xe9.jpg``). ``text_to_path`` undoes it.
    """
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "surrogateescape")
    if "\\" not in text and not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return "".join(
        "\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in text
    )


def text_to_path(text: str) -> Path:
    """The path ``path_to_text`` wrote as ``text``."""
    if "\\" not in text:
        return Path(text)
    raw, position = bytearray(), 0
    for match in _PATH_ESCAPE.finditer(text):
        raw += text[position : match.start()].encode("utf-8")
        raw += b"\\" if match.group() == "\\\\" else bytes([int(match.group()[2:], 16)])
        position = match.end()
    raw += text[position:].encode("utf-8")
    return Path(os.fsdecode(bytes(raw)))
