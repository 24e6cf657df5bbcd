"""Which files are images to analyse, and walking folders for them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

RAW_EXTENSIONS = frozenset({".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".dng"})
IMAGE_EXTENSIONS = (
    frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif", ".hif"})
    | RAW_EXTENSIONS
)


def image_suffix(path: Path | str) -> str:
    """The extension that says what a file is: lower case, trailing white space ignored
    (``holiday.jpg `` is a JPEG, and is tagged as itself, never as ``holiday.jpg``)."""
    return Path(path).suffix.rstrip().lower()


def is_image_name(path: Path | str) -> bool:
    return image_suffix(path) in IMAGE_EXTENSIONS


def iter_image_files(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Files named directly are always yielded; folders are walked recursively (sorted, so runs
    are repeatable) for image file names, skipping hidden files and folders."""
    for path in map(Path, paths):
        if not path.is_dir():
            yield path
            continue
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith(".") and is_image_name(name):
                    yield Path(folder) / name
