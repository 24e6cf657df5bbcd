"""The native cull flags (rating, colour label, pick label): what to write, and what to remember.

Pure decisions, no I/O: ``plan_cull_flags`` takes the ``[metadata]`` settings, the verdict and
quality score, the file's current values and what PixelPerfect wrote before (its memory, kept in
the file's ``XMP-pixelperfect`` namespace), and returns the values to write and the memory to keep.

The user's own values are never lost:

- Before PixelPerfect sets a field it remembers the user's value (``Previous<Field>``; absent when
  the user had none) and what it wrote (``Written<Field>``: the claim on the field).
- When the verdict no longer asks for the field (the image became Good, or the setting was
  switched off), the remembered value is put back exactly: absent stays absent.
- A field whose value differs from what PixelPerfect wrote was edited by the user since: it is
  theirs from then on (``UserOwned``), never overwritten or restored over.
"""

from __future__ import annotations

from dataclasses import dataclass

RATING = "Rating"  # xmp:Rating: -1 rejected (Lightroom, Bridge, darktable), 0 unrated, 1-5 stars
LABEL = "Label"  # xmp:Label: the colour label's name (Lightroom, Bridge)
PICK_LABEL = "PickLabel"  # digiKam:PickLabel: 0 none, 1 rejected, 2 pending, 3 accepted
FIELDS = (RATING, LABEL, PICK_LABEL)

REJECT_RATING = "-1"
PICK_REJECTED = "1"
PICK_ACCEPTED = "3"
# The colour labels Lightroom, Bridge, digiKam and darktable all know by these names.
COLOR_LABELS = ("Red", "Yellow", "Green", "Blue", "Purple")
# Quality score (MOS / 100) at or above each bound earns one more star: below 0.35 (the Poor line) 1 star,
# 0.35-0.50 2, 0.50-0.60 3, 0.60-0.70 4, 0.70 and above 5.
STAR_BOUNDS = (0.35, 0.50, 0.60, 0.70)
# Values a DAM writes for "nothing set": a star or pick fill-in may replace them.
_NOTHING_SET = {RATING: ("0",), LABEL: ("",), PICK_LABEL: ("0",)}


@dataclass(frozen=True)
class FieldMemory:
    """PixelPerfect's claim on one field: what it wrote, and the user's value before (None: absent)."""

    written: str
    previous: str | None


@dataclass(frozen=True)
class CullFlagPlan:
    """What to write: ``values`` (field -> value, None deletes it; fields not listed stay as they are),
    the memory to keep afterwards (fields not in it carry no claim) and the fields the user owns."""

    values: dict[str, str | None]
    memory: dict[str, FieldMemory]
    user_owned: frozenset[str]

    @property
    def changes_anything(self) -> bool:
        return bool(self.values)


def stars_for_quality(quality: float) -> int:
    """1-5 stars from a quality score in [0, 1] (``STAR_BOUNDS``)."""
    return 1 + sum(quality >= bound for bound in STAR_BOUNDS)


def normalise(field: str, value) -> str | None:
    """A field's value as compared: ratings as integers ("4.0" is "4"), None for absent."""
    if value is None:
        return None
    text = str(value).strip()
    if field in (RATING, PICK_LABEL):
        try:
            number = float(text)
        except ValueError:
            return text
        if number.is_integer():
            return str(int(number))
    return text


def _wanted(settings, verdict: str, quality: float | None) -> dict[str, tuple[str, bool]]:
    """field -> (value, fill_only): what the settings ask for; fill_only values never replace a user's."""
    wanted = {}
    poor = verdict == "poor"
    if poor and settings.poor_reject_rating:
        wanted[RATING] = (REJECT_RATING, False)
    elif settings.quality_stars and quality is not None:
        wanted[RATING] = (str(stars_for_quality(quality)), True)
    if poor and settings.poor_color_label:
        wanted[LABEL] = (settings.poor_color_label, False)
    if settings.pick_label:
        wanted[PICK_LABEL] = (PICK_REJECTED, False) if poor else (PICK_ACCEPTED, True)
    return wanted


def _users_value_is_set(field: str, value: str | None) -> bool:
    return value is not None and value not in _NOTHING_SET[field]


def plan_cull_flags(
    settings,
    verdict: str,
    quality: float | None,
    current: dict[str, str | None],
    memory: dict[str, FieldMemory],
    user_owned: frozenset[str] = frozenset(),
) -> CullFlagPlan:
    """The values to write and the memory to keep for one image (``settings``: a MetadataSettings).

    ``current``: each field's value in the file now (None: absent); ``memory``: PixelPerfect's
    claims as read from the file; ``user_owned``: fields the user took over earlier.
    """
    wanted = _wanted(settings, verdict, quality)
    values: dict[str, str | None] = {}
    kept: dict[str, FieldMemory] = {}
    owned = set(user_owned)
    for field in FIELDS:
        if field in owned:
            continue
        now = current.get(field)
        claim = memory.get(field)
        if claim is not None and normalise(field, now) != normalise(field, claim.written):
            owned.add(field)  # edited by the user since we set it: theirs, claim dropped
            continue
        users_value = claim.previous if claim is not None else now
        target, fill_only = wanted.get(field, (None, False))
        if target is not None and fill_only and _users_value_is_set(field, users_value):
            target = None  # a fill-in never replaces the user's own value
        if claim is not None:
            if target is None:
                values[field] = claim.previous  # restore exactly; None deletes (absent stays absent)
            elif normalise(field, target) == normalise(field, claim.written):
                kept[field] = claim
            else:
                values[field] = target
                kept[field] = FieldMemory(written=target, previous=claim.previous)
        elif target is not None and normalise(field, target) != normalise(field, now):
            values[field] = target
            kept[field] = FieldMemory(written=target, previous=now)
    return CullFlagPlan(values=values, memory=kept, user_owned=frozenset(owned))


# -- the fields and the memory as XMP tags (ExifTool's group:name) and index columns -------------

FIELD_TAGS = {RATING: "XMP-xmp:Rating", LABEL: "XMP-xmp:Label", PICK_LABEL: "XMP-digiKam:PickLabel"}
_MEMORY_GROUP = "XMP-pixelperfect"
_USER_OWNED_TAG = f"{_MEMORY_GROUP}:UserOwned"
# The index keeps a copy of the memory in these columns (index.py adds them).
INDEX_COLUMNS = {
    RATING: ("written_rating", "previous_rating"),
    LABEL: ("written_label", "previous_label"),
    PICK_LABEL: ("written_pick_label", "previous_pick_label"),
}
USER_OWNED_COLUMN = "user_owned_flags"


def _text(value) -> str | None:
    return None if value is None else str(value)


def state_from_tags(tags: dict) -> tuple[dict[str, str | None], dict[str, FieldMemory], frozenset[str]]:
    """(current values, memory, user-owned fields) from ExifTool's ``-G1`` JSON of one file."""
    current = {field: _text(tags.get(tag)) for field, tag in FIELD_TAGS.items()}
    memory = {}
    for field in FIELDS:
        written = _text(tags.get(f"{_MEMORY_GROUP}:Written{field}"))
        if written is not None:
            memory[field] = FieldMemory(written=written, previous=_text(tags.get(f"{_MEMORY_GROUP}:Previous{field}")))
    owned = _text(tags.get(_USER_OWNED_TAG)) or ""
    return current, memory, frozenset(name for name in owned.split(",") if name in FIELDS)


def _argument_value(value: str | None) -> str:
    # One ExifTool argument per line: a line break inside a value would start another argument.
    return "" if value is None else value.replace("\r", " ").replace("\n", " ")


def exiftool_arguments(plan: CullFlagPlan) -> list[str]:
    """``-TAG=value`` arguments for the plan: the fields that change and the whole memory (empty deletes)."""
    arguments = [f"-{FIELD_TAGS[field]}={_argument_value(value)}" for field, value in plan.values.items()]
    for field in FIELDS:
        claim = plan.memory.get(field)
        arguments.append(f"-{_MEMORY_GROUP}:Written{field}={_argument_value(claim and claim.written)}")
        arguments.append(f"-{_MEMORY_GROUP}:Previous{field}={_argument_value(claim and claim.previous)}")
    arguments.append(f"-{_USER_OWNED_TAG}={','.join(f for f in FIELDS if f in plan.user_owned)}")
    return arguments


def index_values(plan: CullFlagPlan) -> dict[str, str | None]:
    """The memory as the index's columns (written NULL: no claim; previous NULL with written set: absent)."""
    values = {}
    for field, (written_column, previous_column) in INDEX_COLUMNS.items():
        claim = plan.memory.get(field)
        values[written_column] = claim and claim.written
        values[previous_column] = claim and claim.previous
    values[USER_OWNED_COLUMN] = ",".join(f for f in FIELDS if f in plan.user_owned) or None
    return values
