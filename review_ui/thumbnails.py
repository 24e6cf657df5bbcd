"""The on-disk cache of everything the browser is shown: grid thumbnails, previews, the loupe's full views, heat-maps.

The browser never receives an original: a 24-megapixel file (or a RAW it cannot display) is
decoded once at reduced size (``load_image(min_side=...)``, DCT scaling for JPEG) and the small
JPEG is kept under ``[ui] thumbnail_cache``. Entries are named by a hash of the path, size and
mtime of the original, so an edited file gets a fresh thumbnail and a stale one is never shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

THUMBNAIL_LONG_SIDE = 320
PREVIEW_LONG_SIDE = 1600


def _default_decode(path: Path, *, max_pixels: int, min_side: int | None):
    from pixelperfect_daemon.loading import load_image  # imported late: the UI starts without it

    return load_image(path, max_pixels=max_pixels, min_side=min_side)


def cache_key(path: Path, kind: str, stat: os.stat_result) -> str:
    """Stable for an unchanged file; different after any edit, move or resize of the original."""
    identity = f"{kind}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()


def _write_atomically(image: Image.Image, target: Path, **save_options) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(handle)
    try:
        image.save(temp_name, **save_options)
        os.replace(temp_name, target)  # readers see the old file or the whole new one, never half
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _placeholder(text: str, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size * 2 // 3), (60, 60, 60))
    ImageDraw.Draw(image).text((12, size // 3 - 6), text, fill=(230, 230, 230))
    return image


class RenderCache:
    """Thumbnails, previews and full views of originals, generated once, kept under ``cache_dir``."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_pixels: int = 250_000_000,
        decode: Callable | None = None,
        thumbnail_long_side: int = THUMBNAIL_LONG_SIDE,
        preview_long_side: int = PREVIEW_LONG_SIDE,
    ):
        self.cache_dir = Path(cache_dir).resolve()
        self.max_pixels = max_pixels
        self._decode = decode or _default_decode
        self.thumbnail_long_side = thumbnail_long_side
        self.preview_long_side = preview_long_side

    def _entry(self, path: Path, kind: str, suffix: str) -> Path | None:
        try:
            stat = Path(path).stat()
        except OSError:
            return None
        key = cache_key(Path(path), kind, stat)
        return self.cache_dir / key[:2] / f"{key}{suffix}"

    def placeholder(self, reason: str) -> Path:
        """A grey tile standing in for a missing or unreadable original."""
        target = self.cache_dir / "placeholders" / f"{reason}.jpg"
        if not target.exists():
            _write_atomically(_placeholder(reason, self.thumbnail_long_side), target, format="JPEG", quality=85)
        return target

    def _render(self, path: Path, kind: str, suffix: str, make: Callable[[Path], Image.Image], **save_options) -> Path:
        target = self._entry(path, kind, suffix)
        if target is None:
            return self.placeholder("missing")
        if target.exists():
            return target
        try:
            image = make(Path(path))
        except Exception as error:  # the loader's ImageLoadError and anything Pillow/OpenCV raise
            log.warning("cannot render %s of %s: %s", kind, path, error)
            return self.placeholder("unreadable")
        _write_atomically(image, target, **save_options)
        return target

    def _reduced(self, path: Path, long_side: int) -> Image.Image:
        # Ask the loader for just enough pixels: its reduced decode is what keeps the grid fast.
        decoded = self._decode(path, max_pixels=self.max_pixels, min_side=max(64, long_side * 3 // 4))
        image = decoded.image  # a Pillow image already: no round trip through a numpy array
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
        return image

    def thumbnail(self, path: Path) -> Path:
        return self._render(
            path,
            f"thumb{self.thumbnail_long_side}",
            ".jpg",
            lambda p: self._reduced(p, self.thumbnail_long_side),
            format="JPEG",
            quality=85,
        )

    def thumbnails(self, paths: Iterable[Path], workers: int = 4) -> list[Path]:
        """Thumbnails for a whole gallery page; cold ones are decoded in parallel (decoders release the GIL)."""
        paths = list(paths)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
            return list(pool.map(self.thumbnail, paths))

    def preview(self, path: Path) -> Path:
        return self._render(
            path,
            f"preview{self.preview_long_side}",
            ".jpg",
            lambda p: self._reduced(p, self.preview_long_side),
            format="JPEG",
            quality=90,
        )

    def full_view(self, path: Path) -> Path:
        """The whole image at full resolution (a RAW: its embedded preview) for the loupe's 100 % view.

        JPEG at high quality without chroma subsampling: a faithful copy at a fraction of a PNG's
        encoding time, and with none of the original's metadata.
        """
        return self.loupe_renders(path, None)[0]

    def _write_json(self, data: dict, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temp_name, target)

    def loupe_renders(self, path: Path, compute: Callable | None) -> tuple[Path, dict | None]:
        """The full view and ``compute(pixels)`` of a preview-sized copy (the heat-map), from one decode.

        Either is read from the cache when there; a cold image is decoded once, and the heat-map is
        computed while the full view is encoded.
        """
        full = self._entry(path, "full", ".jpg")
        heat = self._entry(path, "heatmap", ".json")
        if full is None or heat is None:
            return self.placeholder("missing"), None
        heat_data = json.loads(heat.read_text(encoding="utf-8")) if heat.exists() else None
        if full.exists() and (heat_data is not None or compute is None):
            return full, heat_data
        try:
            image = self._decode(Path(path), max_pixels=self.max_pixels, min_side=None).image
        except Exception as error:  # the loader's ImageLoadError and anything Pillow/OpenCV raise
            log.warning("cannot render the full view of %s: %s", path, error)
            return self.placeholder("unreadable"), None
        with ThreadPoolExecutor(max_workers=1) as encoder:
            written = None if full.exists() else encoder.submit(
                _write_atomically, image, full, format="JPEG", quality=95, subsampling=0
            )  # fmt: skip
            if heat_data is None and compute is not None:
                try:
                    heat_data = compute(_preview_pixels(image, self.preview_long_side))
                    self._write_json(heat_data, heat)
                except Exception as error:
                    log.warning("cannot compute the heat-map of %s: %s", path, error)
            if written is not None:
                written.result()
        return full, heat_data


def _preview_pixels(image: Image.Image, long_side: int) -> np.ndarray:
    """``image`` box-reduced by a whole factor to about ``long_side`` (no longer than 1.5 times it), as RGB pixels."""
    factor = max(1, math.ceil(max(image.size) / (long_side * 1.5)))
    return np.asarray(image.reduce(factor) if factor > 1 else image)
