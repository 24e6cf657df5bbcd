"""The cull-flag decisions, pure: what to write and what to remember, with no file in sight.

``apply`` plays the file: it applies a plan's values and memory to a dict of tags, as ExifTool
would, so a sequence of verdicts can be followed the way the file would see them.
"""

from __future__ import annotations

import pytest

from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.cull_flags import (
    FIELDS,
    LABEL,
    PICK_LABEL,
    RATING,
    FieldMemory,
    exiftool_arguments,
    index_values,
    plan_cull_flags,
    stars_for_quality,
    state_from_tags,
)

ALL_ON = MetadataSettings(poor_color_label="Red", poor_reject_rating=True, pick_label=True, quality_stars=True)


class File:
    """The three fields and PixelPerfect's memory, as the file holds them."""

    def __init__(self, **values):
        self.values = {field: values.get(field) for field in FIELDS}
        self.memory: dict[str, FieldMemory] = {}
        self.owned: frozenset[str] = frozenset()

    def tag(self, settings, verdict, quality=0.8):
        plan = plan_cull_flags(settings, verdict, quality, dict(self.values), dict(self.memory), self.owned)
        self.values.update(plan.values)
        self.memory, self.owned = dict(plan.memory), plan.user_owned
        return plan


@pytest.mark.parametrize(
    "quality, stars", [(0.0, 1), (0.349, 1), (0.35, 2), (0.499, 2), (0.5, 3), (0.6, 4), (0.699, 4), (0.7, 5), (1.0, 5)]
)
def test_stars_follow_the_quality_bounds(quality, stars):
    assert stars_for_quality(quality) == stars


def test_nothing_is_touched_by_default():
    file = File(Rating="4", Label="Green", PickLabel="3")
    for verdict in ("poor", "good", "poor"):
        plan = file.tag(MetadataSettings(), verdict)
        assert plan.values == {} and plan.memory == {}
    assert file.values == {RATING: "4", LABEL: "Green", PICK_LABEL: "3"}


def test_poor_then_good_restores_the_users_rating_and_label_exactly():
    file = File(Rating="4", Label="Green")
    file.tag(ALL_ON, "poor")
    assert file.values == {RATING: "-1", LABEL: "Red", PICK_LABEL: "1"}
    assert file.memory[RATING] == FieldMemory(written="-1", previous="4")
    assert file.memory[LABEL] == FieldMemory(written="Red", previous="Green")
    assert file.memory[PICK_LABEL] == FieldMemory(written="1", previous=None)
    file.tag(ALL_ON, "good")
    # 4 stars and Green back; the pick label had none, so Good's "accepted" fills it in.
    assert file.values == {RATING: "4", LABEL: "Green", PICK_LABEL: "3"}
    assert set(file.memory) == {PICK_LABEL}


def test_a_file_with_no_prior_values_gets_them_back_absent():
    file = File()
    file.tag(MetadataSettings(poor_color_label="Red", poor_reject_rating=True, pick_label=True), "poor")
    assert file.values == {RATING: "-1", LABEL: "Red", PICK_LABEL: "1"}
    file.tag(MetadataSettings(poor_color_label="Red", poor_reject_rating=True), "good")
    assert file.values == {RATING: None, LABEL: None, PICK_LABEL: None}
    assert file.memory == {}


def test_good_then_poor_then_good_again():
    file = File(Rating="2", Label="Blue", PickLabel="2")
    file.tag(ALL_ON, "good")
    assert file.values == {RATING: "2", LABEL: "Blue", PICK_LABEL: "2"}  # the user's values: no fill-in
    file.tag(ALL_ON, "poor")
    assert file.values == {RATING: "-1", LABEL: "Red", PICK_LABEL: "1"}
    file.tag(ALL_ON, "good")
    assert file.values == {RATING: "2", LABEL: "Blue", PICK_LABEL: "2"}
    assert file.memory == {}


def test_a_value_the_user_changed_after_we_set_it_is_theirs():
    file = File(Rating="4", Label="Green")
    file.tag(ALL_ON, "poor")
    file.values[RATING] = "5"  # the user disagreed in their DAM
    file.values[LABEL] = None  # and removed our label
    file.tag(ALL_ON, "good")
    assert file.values[RATING] == "5" and file.values[LABEL] is None
    assert file.owned == {RATING, LABEL}
    file.tag(ALL_ON, "poor")  # never overwritten again either
    assert file.values[RATING] == "5" and file.values[LABEL] is None
    assert file.values[PICK_LABEL] == "1"  # the field they left alone still follows the verdict


def test_switching_a_setting_off_restores_on_the_next_tagging():
    file = File(Rating="3")
    file.tag(MetadataSettings(poor_reject_rating=True, poor_color_label="Purple"), "poor")
    assert file.values[RATING] == "-1" and file.values[LABEL] == "Purple"
    file.tag(MetadataSettings(poor_color_label="Purple"), "poor")
    assert file.values[RATING] == "3" and file.values[LABEL] == "Purple"
    file.tag(MetadataSettings(), "poor")
    assert file.values == {RATING: "3", LABEL: None, PICK_LABEL: None}


def test_changing_the_label_keeps_the_users_original():
    file = File(Label="Yellow")
    file.tag(MetadataSettings(poor_color_label="Red"), "poor")
    file.tag(MetadataSettings(poor_color_label="Blue"), "poor")
    assert file.values[LABEL] == "Blue" and file.memory[LABEL] == FieldMemory("Blue", "Yellow")
    file.tag(MetadataSettings(poor_color_label="Blue"), "good")
    assert file.values[LABEL] == "Yellow"


def test_quality_stars_fill_in_only_where_the_user_gave_no_rating():
    settings = MetadataSettings(quality_stars=True)
    unrated, rated, zero = File(), File(Rating="2"), File(Rating="0")
    for file in (unrated, rated, zero):
        file.tag(settings, "good", quality=0.65)
    assert unrated.values[RATING] == "4" and rated.values[RATING] == "2"
    assert zero.values[RATING] == "4" and zero.memory[RATING].previous == "0"  # 0 is "unrated" in every DAM
    unrated.tag(settings, "good", quality=0.55)  # a new model's score: our stars follow
    assert unrated.values[RATING] == "3" and unrated.memory[RATING] == FieldMemory("3", None)
    zero.tag(MetadataSettings(), "good")
    assert zero.values[RATING] == "0"  # restored exactly


def test_reject_then_good_with_quality_stars_restores_the_users_stars_not_ours():
    file = File(Rating="4")
    file.tag(ALL_ON, "poor", quality=0.2)
    file.tag(ALL_ON, "good", quality=0.9)
    assert file.values[RATING] == "4" and RATING not in file.memory
    unrated = File()
    unrated.tag(ALL_ON, "poor", quality=0.2)
    unrated.tag(ALL_ON, "good", quality=0.9)
    assert unrated.values[RATING] == "5" and unrated.memory[RATING] == FieldMemory("5", None)


def test_pick_label_accepts_good_unless_the_user_picked():
    settings = MetadataSettings(pick_label=True)
    none, pending = File(), File(PickLabel="2")
    none.tag(settings, "good")
    pending.tag(settings, "good")
    assert none.values[PICK_LABEL] == "3" and pending.values[PICK_LABEL] == "2"
    pending.tag(settings, "poor")
    assert pending.values[PICK_LABEL] == "1"
    pending.tag(settings, "good")
    assert pending.values[PICK_LABEL] == "2"


def test_ratings_compare_as_numbers():
    file = File(Rating="4")
    file.tag(MetadataSettings(poor_reject_rating=True), "poor")
    file.values[RATING] = "-1.0"  # how some tools write it back: still ours
    file.tag(MetadataSettings(poor_reject_rating=True), "good")
    assert file.values[RATING] == "4"


def test_memory_round_trips_through_the_tags_exiftool_reads():
    file = File(Rating="4", Label="Green")
    plan = file.tag(ALL_ON, "poor")
    arguments = exiftool_arguments(plan)
    assert "-XMP-xmp:Rating=-1" in arguments and "-XMP-xmp:Label=Red" in arguments
    assert "-XMP-digiKam:PickLabel=1" in arguments
    assert "-XMP-pixelperfect:PreviousRating=4" in arguments and "-XMP-pixelperfect:PreviousPickLabel=" in arguments
    tags = {"XMP-xmp:Rating": -1, "XMP-xmp:Label": "Red", "XMP-digiKam:PickLabel": 1}
    for argument in arguments:
        name, _, value = argument[1:].partition("=")
        if name.startswith("XMP-pixelperfect:") and value:
            tags[name] = value
    current, memory, owned = state_from_tags(tags)
    assert current == file.values and memory == file.memory and owned == frozenset()
    assert index_values(plan)["previous_rating"] == "4" and index_values(plan)["previous_pick_label"] is None
    assert index_values(plan)["written_pick_label"] == "1"


def test_line_breaks_in_a_users_label_cannot_start_another_exiftool_argument():
    file = File(Label="Green\n-all=")
    plan = file.tag(MetadataSettings(poor_color_label="Red"), "poor")
    assert all("\n" not in argument for argument in exiftool_arguments(plan))
