"""The on-disk cache of everything the browser is shown: grid thumbnails, large previews, 100 % crops.

The browser never receives an original: a 24-megapixel file (or a RAW it cannot display) is
decoded once at reduced size (``load_image(min_side=...)``, DCT scaling for JPEG) and the small
JPEG is kept under ``[ui] thumbnail_cache``. Entries are named by a hash of the path, size and
mtime of the original, so an edited file gets a fresh thumbnail and a stale one is never shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .regions import crop_region, flattest_region, sharpest_region

log = logging.getLogger(__name__)

THUMBNAIL_LONG_SIDE = 320
PREVIEW_LONG_SIDE = 1600
CROP_SIZE = 512
CROP_KINDS = {"sharpest": sharpest_region, "flattest": flattest_region}


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
    """Thumbnails, previews and 100 % crops of originals, generated once, kept under ``cache_dir``."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_pixels: int = 250_000_000,
        decode: Callable | None = None,
        thumbnail_long_side: int = THUMBNAIL_LONG_SIDE,
        preview_long_side: int = PREVIEW_LONG_SIDE,
        crop_size: int = CROP_SIZE,
    ):
        self.cache_dir = Path(cache_dir).resolve()
        self.max_pixels = max_pixels
        self._decode = decode or _default_decode
        self.thumbnail_long_side = thumbnail_long_side
        self.preview_long_side = preview_long_side
        self.crop_size = crop_size

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

        def make(p: Path) -> Image.Image:
            return self._decode(p, max_pixels=self.max_pixels, min_side=None).image

        return self._render(path, "full", ".jpg", make, format="JPEG", quality=95, subsampling=0)

    def heatmap(self, path: Path, compute: Callable) -> dict | None:
        """``compute(pixels)`` of a preview-sized decode, kept as JSON beside the renders; None when unreadable."""
        target = self._entry(path, "heatmap", ".json")
        if target is None:
            return None
        if target.exists():
            return json.loads(target.read_text(encoding="utf-8"))
        try:
            pixels = self._reduced(Path(path), self.preview_long_side)
            data = compute(np.asarray(pixels))
        except Exception as error:
            log.warning("cannot compute the heat-map of %s: %s", path, error)
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temp_name, target)
        return data

    def detail_crop(self, path: Path, kind: str) -> Path:
        """A lossless crop at 100 % (full resolution) of the sharpest or flattest region."""
        if kind not in CROP_KINDS:
            raise ValueError(f"unknown crop kind {kind!r}; expected one of {', '.join(CROP_KINDS)}")

        def make(p: Path) -> Image.Image:
            pixels = self._decode(p, max_pixels=self.max_pixels, min_side=None).pixels
            region = CROP_KINDS[kind](pixels, self.crop_size)
            return Image.fromarray(crop_region(pixels, region))

        # PNG: a lossy crop would add the very artifacts the reviewer is judging.
        return self._render(path, f"crop-{kind}{self.crop_size}", ".png", make, format="PNG", compress_level=1)
