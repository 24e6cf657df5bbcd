"""The verdict and defect vocabulary shared by the models, the JSON contract, XMP and the index."""

from __future__ import annotations

VERDICTS = ("good", "poor", "error")

# Order matters: it is the order of the stage-2 model's outputs (models/labels.json repeats it).
DEFECTS = (
    "blur",
    "color_distortion",
    "compression",
    "luminance_contrast",
    "noise",
    "transmission_errors",
    "other",
)

# The names DAMs show: XMP-pixelperfect:Defect and the keyword hierarchy.
DEFECT_DISPLAY_NAMES = {
    "blur": "Blur",
    "color_distortion": "Color Distortion",
    "compression": "Compression",
    "luminance_contrast": "Luminance/Contrast",
    "noise": "Noise",
    "transmission_errors": "Transmission Errors",
    "other": "Other",
}
DEFECT_KEYS_BY_DISPLAY_NAME = {name: key for key, name in DEFECT_DISPLAY_NAMES.items()}

VERDICT_DISPLAY_NAMES = {"good": "Good", "poor": "Poor"}

# Why a reviewer rejected a frame, beside its defect (which stays one of DEFECTS): the index's
# reviewed_reason, XMP-pixelperfect:ReviewReason and the keyword PixelPerfect|Poor|<Defect>|<Reason>.
REASON_DISPLAY_NAMES = {"duplicate": "Duplicate"}


def defect_display_name(key: str | None) -> str | None:
    return None if key is None else DEFECT_DISPLAY_NAMES[key]


def defect_key(display_name_or_key: str | None) -> str | None:
    """Accept either the snake_case key or the display name, return the key."""
    if display_name_or_key in (None, ""):
        return None
    if display_name_or_key in DEFECT_DISPLAY_NAMES:
        return display_name_or_key
    try:
        return DEFECT_KEYS_BY_DISPLAY_NAME[display_name_or_key]
    except KeyError:
        raise ValueError(f"unknown defect {display_name_or_key!r}; expected one of {', '.join(DEFECTS)}") from None
