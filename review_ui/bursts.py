"""Bursts and near-duplicates: frames taken moments apart that show the same scene.

Consecutive frames (by capture time) belong to one burst when the time between them is at most
the configured gap and their perceptual hashes are close; the hash check splits two different
scenes shot in quick succession. The suggested pick of a burst is its best-quality frame.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_SIZE = 8
# Out of 64 bits: a reframed or shifted frame of the same scene stays below this, another scene does not.
MAX_HASH_DISTANCE = 20


@dataclass(frozen=True)
class Frame:
    path: str
    captured_at: dt.datetime
    phash: int
    quality: float | None


@dataclass(frozen=True)
class Burst:
    frames: list[Frame]  # in capture order

    @property
    def pick(self) -> Frame:
        """The suggested keeper: the best quality (the earliest frame among equals)."""
        return max(self.frames, key=lambda f: (-1.0 if f.quality is None else f.quality, -self.frames.index(f)))

    def to_dict(self) -> dict:
        return {
            "paths": [f.path for f in self.frames],
            "pick": self.pick.path,
            "first_captured_at": self.frames[0].captured_at.isoformat(),
            "last_captured_at": self.frames[-1].captured_at.isoformat(),
        }


def difference_hash(image: Image.Image) -> int:
    """dHash: brightness gradients of a 9 x 8 greyscale miniature, as 64 bits."""
    small = np.asarray(image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def hash_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def group_bursts(frames: list[Frame], gap_seconds: float, max_distance: int = MAX_HASH_DISTANCE) -> list[Burst]:
    """Bursts of two or more frames, in capture order; single frames are not returned."""
    ordered = sorted(frames, key=lambda f: (f.captured_at, f.path))
    groups: list[list[Frame]] = []
    for frame in ordered:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and (frame.captured_at - last.captured_at).total_seconds() <= gap_seconds
            and hash_distance(frame.phash, last.phash) <= max_distance
        ):
            groups[-1].append(frame)
        else:
            groups.append([frame])
    return [Burst(group) for group in groups if len(group) > 1]
