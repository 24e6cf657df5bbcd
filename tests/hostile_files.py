"""Hostile file and folder names, and checks that read files independently of the code under test."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fixtures_images import make_jpeg, make_png, make_random_bytes_jpg, make_truncated_jpeg

# The injections the issue found: a folder name holding lines that become ExifTool arguments; the
# tests put an outside file's absolute path under it, so that path is the name's last line.
# "PWNED" would land in ExifTool's working folder.
INJECTION_FOLDERS = (
    b"x\n-if\nsystem(q{touch PWNED}) or 1\n",
    b"a\n-all=\n",
    b"c\n",
)

# (folder, file) pairs: every kind of hostile name in both places.
HOSTILE_FILE_NAMES = (
    b"new\nline.jpg",
    b"carriage\rreturn.jpg",
    b"ends in cr.jpg\r",
    b" leading space.jpg",
    b"trailing space.jpg ",
    b"-dash.jpg",
    b"=equals.jpg",
    b"-all=.jpg",
    b"caf\xe9.jpg",
    b"money$\n@at.jpg",
    b"#[CSTR]hash\\n.jpg",
    b"back\\slash.jpg",
    b"per%dcent%c.jpg",
    b"n" * 251 + b".jpg",  # 255 bytes
)
HOSTILE_FOLDER_NAMES = (
    b"new\nline",
    b"cr\rfolder",
    b" leading",
    b"trailing ",
    b"-dash",
    b"=equals",
    b"caf\xe9",
    b"money$\n@at",
    b"d" * 255,
    b"%d%f%e%c%-2:1d",
)


def hostile_layout() -> list[bytes]:
    """Relative paths (bytes): each hostile file name at the top, and a plain name in each hostile folder,
    plus a hostile name in a hostile folder."""
    paths = list(HOSTILE_FILE_NAMES)
    paths += [folder + b"/plain.jpg" for folder in HOSTILE_FOLDER_NAMES]
    paths += [b"money$\n@at/new\nline.jpg", b"d" * 255 + b"/" + b"n" * 251 + b".jpg", b"caf\xe9/caf\xe9.jpg"]
    return paths


def make_photo(path: Path, seed: int) -> Path:
    """A small distinct JPEG at ``path`` (bytes or str)."""
    path = Path(os.fsdecode(path))
    return make_jpeg(path, size=(64, 48), variant=seed)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def tagged_verdict(path: Path) -> str | None:
    """The PixelPerfect verdict in the XMP bytes of ``path`` (read without ExifTool), or None."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    for verdict in (b"Good", b"Poor"):
        if (
            b"<pixelperfect:Verdict>" + verdict in data
            or b"pixelperfect:Verdict='" + verdict in data
            or (b'pixelperfect:Verdict="' + verdict in data)
        ):
            return verdict.decode()
    return None


def tree_digest(root: Path) -> dict[bytes, str]:
    """{relative path: sha256 or link target} of everything under ``root``: what must not change."""
    digest = {}
    for folder, folders, files in os.walk(os.fsencode(root)):
        for name in files + [f for f in folders if os.path.islink(os.path.join(folder, f))]:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, os.fsencode(root))
            if os.path.islink(path):
                digest[relative] = "link:" + os.fsdecode(os.readlink(path))
            else:
                with open(path, "rb") as file:
                    digest[relative] = hashlib.sha256(file.read()).hexdigest()
    return digest


_FRAGMENTS = [
    "\n",
    "\r",
    " ",
    "  ",
    "-",
    "=",
    "$",
    "@",
    "#[CSTR]",
    "\\",
    "\\n",
    "'",
    '"',
    "`",
    "|",
    ";",
    "&",
    "*",
    "?",
    "%s",
    "%d",
    "%c",
    "%-:1d",
    "{",
    "}",
    "..",
    "-if",
    "-all=",
    "system(q{touch PWNED})",
    "é",
    "日本",
    "\t",
    "~",
    "!",
    "(",
    ")",
    "photo",
    "IMG_",
    "0042",
    "x",
]
_BAD_BYTES = [b"\xe9", b"\xff", b"\xc3", b"\x80"]
_EXTENSIONS = [".jpg", ".JPG", ".jpeg", ".png", ".jpg "]


def random_hostile_name(rng: random.Random, extension: str | None = None) -> bytes:
    """A random file name of hostile pieces, at most 255 bytes, never hidden (a leading dot is ignored
    by design), ending in an image extension."""
    extension = (extension or rng.choice(_EXTENSIONS)).encode()
    parts = []
    for _ in range(rng.randint(1, 8)):
        parts.append(rng.choice(_BAD_BYTES) if rng.random() < 0.1 else rng.choice(_FRAGMENTS).encode())
    stem = b"".join(parts)
    if rng.random() < 0.05:
        stem = stem + b"n" * 255  # cut below to exactly 255 bytes
    stem = stem[: 255 - len(extension)].lstrip(b".") or b"x"
    return stem + extension


def random_hostile_folder(rng: random.Random) -> bytes:
    name = random_hostile_name(rng, extension="x")[:-1]
    return name.replace(b"/", b"_") or b"f"


def make_random_content(path: Path, rng: random.Random, seed: int) -> str:
    """A valid image (of the type its extension says), a truncated one or garbage at ``path``; returns which."""
    path = Path(os.fsdecode(path))
    kind = rng.choices(["valid", "truncated", "garbage"], weights=[8, 1, 1])[0]
    if kind == "valid":
        kind = "png" if path.suffix.strip().lower() == ".png" else "jpeg"
    if kind == "jpeg":
        make_jpeg(path, size=(48, 40), variant=seed)
    elif kind == "png":
        make_png(path, size=(40, 32), variant=seed)
    elif kind == "truncated":
        make_truncated_jpeg(path, size=(48, 40), keep_fraction=0.4)
    else:
        make_random_bytes_jpg(path, n_bytes=512, seed=seed)
    return kind
