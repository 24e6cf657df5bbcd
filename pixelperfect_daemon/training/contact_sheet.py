"""A contact sheet of every distortion at a few levels, for a person to judge them by eye."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .distortions import DISTORTIONS, distort

LABEL_WIDTH = 250
HEADER_HEIGHT = 28
GAP = 4
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
CLASS_RULE = (160, 160, 160)


class ContactSheetError(ValueError):
    """The input image cannot be read or shown, or the sheet cannot be written."""


def make_contact_sheet(image: np.ndarray, levels=(1, 3, 5), tile: int = 256, seed: int = 0) -> Image.Image:
    """One row per sub-type, grouped by defect class: the original, then each level.

    The image is first shrunk to fit ``tile`` x ``tile`` and distorted at that size, so codec
    blocks and noise grain show at 1:1 rather than being averaged away by a later shrink.
    """
    picture = fit_within(image, tile)
    height, width = picture.shape[:2]
    if min(height, width) < 16:
        raise ContactSheetError(f"a {width}x{height} cell is too thin to distort; use a larger tile")
    rows = [(defect, subtype) for defect, subtypes in DISTORTIONS.items() for subtype in subtypes]
    columns = ["original"] + [f"level {level}" for level in levels]
    sheet = Image.new(
        "RGB",
        (LABEL_WIDTH + len(columns) * (width + GAP), HEADER_HEIGHT + len(rows) * (height + GAP)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    font = _font(16)
    for index, title in enumerate(columns):
        draw.text((LABEL_WIDTH + index * (width + GAP) + 4, 5), title, fill=INK, font=font)
    original = Image.fromarray(picture)
    previous_defect = None
    for row_index, (defect, subtype) in enumerate(rows):
        top = HEADER_HEIGHT + row_index * (height + GAP)
        if defect != previous_defect and previous_defect is not None:
            rule_y = top - GAP // 2 - 1
            draw.line([(0, rule_y), (sheet.width, rule_y)], fill=CLASS_RULE, width=2)
        previous_defect = defect
        draw.text((6, top + height // 2 - 20), f"{defect} /", fill=INK, font=font)
        draw.text((6, top + height // 2), subtype, fill=INK, font=font)
        sheet.paste(original, (LABEL_WIDTH, top))
        for column, level in enumerate(levels, start=1):
            distorted = distort(picture, defect, subtype, level, seed)
            sheet.paste(Image.fromarray(distorted), (LABEL_WIDTH + column * (width + GAP), top))
    return sheet


def fit_within(image: np.ndarray, tile: int) -> np.ndarray:
    """The image shrunk (never enlarged) to fit inside tile x tile."""
    picture = Image.fromarray(image)
    picture.thumbnail((tile, tile), Image.Resampling.LANCZOS)
    return np.asarray(picture.convert("RGB"))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the bitmap font
        return ImageFont.load_default()


def sample_image() -> np.ndarray:
    """scikit-image's bundled 'astronaut' photo (512 x 512): ships with the package, no download."""
    try:
        from skimage import data
    except ImportError:
        raise ContactSheetError(
            "the default sample photo needs scikit-image (the 'train' extra); pass --image instead"
        ) from None
    return np.ascontiguousarray(data.astronaut()[:, :, :3])


def read_rgb(path: Path) -> np.ndarray:
    """A photo as an upright H x W x 3 uint8 RGB array."""
    try:
        with Image.open(path) as picture:
            return np.asarray(ImageOps.exif_transpose(picture).convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise ContactSheetError(f"cannot read {path}: {error}") from None


def save_png(sheet: Image.Image, out: Path) -> None:
    """Write ``sheet`` as a PNG, atomically: a reader never sees half a file."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    except OSError as error:
        raise ContactSheetError(f"cannot write {out}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            sheet.save(stream, "PNG", optimize=True)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the sheet is for everyone to read
        os.replace(temporary, out)
    except OSError as error:
        os.unlink(temporary)  # our own half-written temporary file, never the target
        raise ContactSheetError(f"cannot write {out}: {error.strerror or error}") from None
