"""Copying or moving rejected photos, with their XMP sidecars, into the configured reject folder.

Nothing is deleted and nothing is overwritten: a name already taken in the reject folder gets a
" (2)", " (3)" ... suffix. The folder structure below the watch folder is kept, so photos of
different shoots with the same name do not collide. A basename sidecar (``IMG_1.xmp``) that also
belongs to another file of the same stem (a RAW + JPEG pair) is copied, never moved away from it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pixelperfect_daemon.metadata import sidecar_file_name

SIDECAR_NAMINGS = ("fullname", "basename")


class RejectFolderError(ValueError):
    """The reject folder cannot be used (inside a watch folder, not creatable)."""


@dataclass(frozen=True)
class Carried:
    source: Path
    target: Path
    sidecars: list[tuple[Path, Path, str]]  # (old, new, naming)


def check_reject_folder(reject_folder: Path, watch_folders: list[Path]) -> Path:
    """The resolved reject folder; it must lie outside every watch folder, or the daemon would analyse the copies."""
    folder = Path(reject_folder).resolve()
    for watch in watch_folders:
        watch = Path(watch).resolve()
        if folder == watch or folder.is_relative_to(watch):
            raise RejectFolderError(f"[ui] reject_folder {folder} lies inside the watch folder {watch}")
    return folder


def target_path(source: Path, watch_folders: list[Path], reject_folder: Path) -> Path:
    """Where ``source`` goes: the same path below the reject folder as below its watch folder; a free name."""
    relative = Path(source.name)
    for watch in watch_folders:
        watch = Path(watch).resolve()
        if source.is_relative_to(watch):
            relative = source.relative_to(watch)
            break
    target = reject_folder / relative
    number = 2
    while os.path.lexists(target) or any(os.path.lexists(sidecar_file_name(target, n)) for n in SIDECAR_NAMINGS):
        target = reject_folder / relative.parent / f"{relative.stem} ({number}){relative.suffix}"
        number += 1
    return target


def _shared_basename_sidecar(source: Path) -> bool:
    """Another file of the folder has ``source``'s stem, so ``stem.xmp`` describes it too."""
    return any(
        other.stem == source.stem and other != source and other.suffix.lower() != ".xmp"
        for other in source.parent.glob(glob_escape(source.stem) + ".*")
    )


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def carry(source: Path, target: Path, *, move: bool) -> Carried:
    """Copy (or move) ``source`` and its sidecars to ``target``; metadata and times are kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecars = []
    for naming in SIDECAR_NAMINGS:
        old = sidecar_file_name(source, naming)
        if old != source and old.is_file():
            sidecars.append((old, sidecar_file_name(target, naming), naming))
    shared = _shared_basename_sidecar(source)
    if move:
        shutil.move(source, target)  # a rename within one file system keeps the inode and mtime
    else:
        shutil.copy2(source, target)
    for old, new, naming in sidecars:
        if move and not (naming == "basename" and shared):
            shutil.move(old, new)
        else:
            shutil.copy2(old, new)
    return Carried(source, target, sidecars)
