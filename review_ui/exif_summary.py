"""The five EXIF facts a photographer checks first: camera, lens, ISO, shutter, aperture."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.exiftool_arguments import ExifToolPaths

log = logging.getLogger(__name__)

# Read with -n (numbers, not ExifTool's prose) so the formatting below is ours and testable.
EXIF_TAGS = (
    "Make",
    "Model",
    "LensModel",
    "LensID",
    "Lens",
    "ISO",
    "ExposureTime",
    "FNumber",
    "FocalLength",
    "DateTimeOriginal",
)


def _first(tags: dict, *names: str):
    """The first non-empty value among ``names``, whatever group prefix ExifTool put on it."""
    by_name: dict[str, object] = {}
    for key, value in tags.items():
        by_name.setdefault(key.rsplit(":", 1)[-1], value)
    for name in names:
        value = by_name.get(name)
        if value not in (None, "", "Unknown", "----"):
            return value
    return None


def format_shutter(seconds) -> str | None:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return None
    if value <= 0:
        return None
    if value >= 1:
        return f"{value:g} s"
    return f"1/{round(1 / value)} s"


def format_aperture(f_number) -> str | None:
    try:
        value = float(f_number)
    except (TypeError, ValueError):
        return None
    return f"f/{value:.1f}".removesuffix(".0") if value > 0 else None


def _camera(make, model) -> str | None:
    make, model = (str(make).strip() if make else ""), (str(model).strip() if model else "")
    if model and make and model.lower().startswith(make.split()[0].lower()):
        return model  # "Canon EOS R5", not "Canon Canon EOS R5"
    return " ".join(part for part in (make, model) if part) or None


def format_iso(iso) -> str | None:
    try:
        value = int(float(iso))
    except (TypeError, ValueError):
        return None
    return f"ISO {value}" if value > 0 else None


def format_focal_length(millimetres) -> str | None:
    try:
        value = float(millimetres)
    except (TypeError, ValueError):
        return None
    return f"{value:.0f} mm" if value > 0 else None


def _text(value) -> str | None:
    return None if value is None else str(value).strip() or None


def summarize_exif(tags: dict) -> dict[str, str | None]:
    return {
        "camera": _camera(_first(tags, "Make"), _first(tags, "Model")),
        "lens": _text(_first(tags, "LensModel", "LensID", "Lens")),
        "iso": format_iso(_first(tags, "ISO")),
        "shutter": format_shutter(_first(tags, "ExposureTime")),
        "aperture": format_aperture(_first(tags, "FNumber")),
        "focal_length": format_focal_length(_first(tags, "FocalLength")),
        "taken": _text(_first(tags, "DateTimeOriginal")),
    }


class ExifReader:
    """One long-lived ExifTool process shared by every request (starting one costs ~0.2 s).

    pyexiftool ties the process's life to the thread that started it (PR_SET_PDEATHSIG), and
    Gradio's worker threads come and go, so every read runs on one dedicated thread of our own.
    """

    def __init__(self):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exif-reader")
        self._helper = None
        self._paths = ExifToolPaths()  # a file name never becomes an ExifTool argument

    def _read_tags(self, path: Path, names: tuple[str, ...] = EXIF_TAGS) -> dict:
        import exiftool  # pyexiftool

        from pixelperfect_daemon.metadata import run_exiftool

        if self._helper is None or not self._helper.running:
            self._helper = exiftool.ExifToolHelper(common_args=["-G", "-n"])
            run_exiftool(self._helper, MetadataSettings().exiftool_memory_mb * 1024 * 1024)
        with self._paths.arguments(path) as (file_argument,):
            # Bytes: ExifTool's messages quote the file name, which need not be UTF-8.
            output = self._helper.execute("-j", *(f"-{tag}" for tag in names), file_argument, raw_bytes=True)
        tags = json.loads(output.decode("utf-8", "replace") or "[]")
        return tags[0] if tags else {}

    def read(self, path: Path) -> dict[str, str | None]:
        try:
            tags = self._thread.submit(self._read_tags, Path(path)).result()
        except Exception as error:  # ExifTool missing or failing must not break inspecting an image
            log.warning("cannot read EXIF of %s: %s", path, error)
            tags = {}
        return summarize_exif(tags)

    def read_tags(self, path: Path, names: tuple[str, ...]) -> dict:
        """The raw values of ``names`` (without group prefixes); raises when ExifTool fails."""
        tags = self._thread.submit(self._read_tags, Path(path), tuple(names)).result()
        return {key.rsplit(":", 1)[-1]: value for key, value in tags.items()}

    def _stop(self) -> None:
        helper, self._helper = self._helper, None
        if helper is not None and helper.running:
            helper.terminate()

    def close(self) -> None:
        self._thread.submit(self._stop).result()
        self._thread.shutdown()
        self._paths.close()
