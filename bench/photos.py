"""The shared real photos the benchmark scripts read (never copied, never changed)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PIXELPERFECT_SHARED_DATA", REPO.parent / "shared" / "data"))


def pristine_photos(limit: int = 0) -> list[Path]:
    """The pristine photos in a stable order, the first ``limit`` of them when limit > 0."""
    photos = sorted((SHARED / "pristine").rglob("*.jpg")) + sorted((SHARED / "pristine").rglob("*.png"))
    return photos[:limit] if limit else photos
