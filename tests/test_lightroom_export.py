"""The Lightroom export's pure builders: keyword list, smart collection (read back as Lua), file list, README."""

from __future__ import annotations

import os
import subprocess

import pytest

from pixelperfect_daemon.common import path_to_text, text_to_path
from review_ui.lightroom_export import (
    CollectionPlan,
    Rule,
    check_keyword_name,
    file_list_text,
    keyword_list_text,
    keyword_paths,
    lua_string,
    plan_collection,
    readme_text,
    smart_collection_text,
)
from review_ui.queries import ImageFilter
from tests.hostile_files import HOSTILE_FILE_NAMES, HOSTILE_FOLDER_NAMES
from tests.lua_reader import LUA, LuaSyntaxError, read_assignment

STRANGERS_TEXT = [
    'say "cheese"', "back\\slash", "ends in backslash\\", "new\nline", "cr\rlf\r\n", "tab\there", "nul\x00byte",
    "\\ddd \\065 after a digit: \n1", "]] --[[ not a comment", "café ünïcödé 日本 😀", "\u2028line separator\x85",
    "\x7f delete", "\udce9 a byte that was not UTF-8", "",
]  # fmt: skip


def summary(verdict, defect=None, reason=None) -> dict:
    return {"verdict": verdict, "defect": defect, "reason": reason}


def read_keyword_list(text: str) -> list[str]:
    """The keyword paths a tab-indented keyword list describes (independently of the builder)."""
    paths, stack = [], []
    for line in text.splitlines():
        depth = len(line) - len(line.lstrip("\t"))
        assert depth <= len(stack), f"{line!r} is indented deeper than a child of the line above"
        stack[depth:] = [line[depth:]]
        paths.append("|".join(stack))
    return paths


def lua_string_value(literal: str) -> str:
    return read_assignment(f"s = {{ v = {literal} }}")[1]["v"]


# --- keywords ----------------------------------------------------------------------------------


def test_keyword_paths_are_those_the_daemon_writes_for_the_matches():
    summaries = [summary("poor", "blur"), summary("poor", "other", "duplicate"), summary("good"),
                 summary("poor", "blur"), summary("error"), summary("poor", "luminance_contrast")]  # fmt: skip
    assert keyword_paths(summaries) == [
        "PixelPerfect|Good", "PixelPerfect|Poor|Blur", "PixelPerfect|Poor|Luminance/Contrast",
        "PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate",
    ]  # fmt: skip
    assert keyword_paths([summary("error")]) == []


def test_keyword_list_is_a_tab_indented_tree_with_each_level_once():
    paths = [
        "PixelPerfect|Poor|Other|Duplicate",
        "PixelPerfect|Good",
        "PixelPerfect|Poor|Blur",
        "PixelPerfect|Poor|Other",
    ]
    text = keyword_list_text(paths)
    assert text == "PixelPerfect\n\tGood\n\tPoor\n\t\tBlur\n\t\tOther\n\t\t\tDuplicate\n"
    assert set(paths) <= set(read_keyword_list(text))
    assert read_keyword_list(text) == sorted(set(read_keyword_list(text)), key=read_keyword_list(text).index)
    assert keyword_list_text([]) == ""


@pytest.mark.parametrize("name", ["tab\there", "new\nline", "cr\r", "[category]", "{synonym}", "~order", " lead",
                                  "trail,", "trail;", ""])  # fmt: skip
def test_a_name_the_keyword_list_would_misread_is_refused(name):
    with pytest.raises(ValueError, match="keyword list"):
        check_keyword_name(name)
    with pytest.raises(ValueError):
        keyword_list_text([f"PixelPerfect|{name}"])


def test_every_name_of_our_vocabulary_fits_the_keyword_list():
    from pixelperfect_daemon.labels import DEFECT_DISPLAY_NAMES, REASON_DISPLAY_NAMES, VERDICT_DISPLAY_NAMES

    for name in [*DEFECT_DISPLAY_NAMES.values(), *REASON_DISPLAY_NAMES.values(), *VERDICT_DISPLAY_NAMES.values()]:
        assert check_keyword_name(name) == name


# --- Lua strings -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", STRANGERS_TEXT)
def test_a_lua_string_reads_back_as_the_text_it_was_made_of(text):
    literal = lua_string(text)
    assert "\n" not in literal and "\r" not in literal  # one line whatever the name
    assert lua_string_value(literal) == text


def test_the_reader_refuses_what_lua_refuses():
    for broken in ('s = { v = "open }', 's = { v = "a" ', 's = { { } ', 's = { v = "x\ny" }',
                   's = { v = "\\256" }', 's = { } trailing'):  # fmt: skip
        with pytest.raises(LuaSyntaxError):
            read_assignment(broken)


@pytest.mark.parametrize("text", STRANGERS_TEXT)
def test_a_lua_string_is_written_back_by_lua_itself(tmp_path, text):
    script = tmp_path / "s.lua"
    script.write_text(f"io.write({lua_string(text)})", encoding="utf-8", errors="surrogateescape")
    output = subprocess.run([LUA, str(script)], capture_output=True, check=True)
    assert output.stdout == text.encode("utf-8", "surrogateescape")


# --- the smart collection ------------------------------------------------------------------------


def test_a_poor_blur_filter_becomes_three_keyword_rules_all_required():
    plan = plan_collection(ImageFilter(verdict="poor", defect="blur"))
    assert plan.rules == (Rule("keywords", "words", "PixelPerfect"), Rule("keywords", "words", "Poor"),
                          Rule("keywords", "words", "Blur"))  # fmt: skip
    assert plan.not_expressed == () and plan.title == "PixelPerfect Poor Blur"
    name, table = read_assignment(smart_collection_text(plan, "0C7F-id"))
    assert name == "s"
    assert (table["type"], table["title"], table["id"], table["version"]) == ("LibrarySmartCollection",
                                                                              "PixelPerfect Poor Blur", "0C7F-id", 0)  # fmt: skip
    rules = table["value"]
    assert rules["combine"] == "intersect"
    assert [rules[i] for i in (1, 2, 3)] == [
        {"criteria": "keywords", "operation": "words", "value": word, "value2": ""}
        for word in ("PixelPerfect", "Poor", "Blur")
    ]
    assert 4 not in rules


def test_parts_lightroom_cannot_see_are_named_and_not_turned_into_rules():
    plan = plan_collection(ImageFilter(defect="luminance_contrast", quality_min=0.1, quality_max=0.4, reviewed=True,
                                       folder="/photos/x", date_from="2024-05-01", name="IMG_1"))  # fmt: skip
    assert [r.value for r in plan.rules] == ["PixelPerfect", "Poor", "Luminance/Contrast"]
    assert plan.title == "PixelPerfect Poor Luminance-Contrast"  # a file name: no folder separator
    joined = " | ".join(plan.not_expressed)
    for part in ("quality 0.10 to 0.40", "reviewed", "folder /photos/x", "analysed from 2024-05-01", "IMG_1"):
        assert part in joined
    assert len(plan.not_expressed) == 5
    assert plan.cannot_select == ("quality", "reviewed", "folder", "analysis dates", "file name")  # no values
    assert (
        plan_collection(ImageFilter(quality_min=0.0, quality_max=1.0)).not_expressed == ()
    )  # the full range is no filter
    assert [r.value for r in plan_collection(ImageFilter()).rules] == ["PixelPerfect"]
    assert plan_collection(ImageFilter(reviewed=False)).not_expressed == ("not reviewed",)


def test_images_that_could_not_be_analysed_have_no_rule_and_no_collection():
    plan = plan_collection(ImageFilter(verdict="error"))
    assert plan.rules == () and "could not analyse" in plan.not_expressed[0]
    with pytest.raises(ValueError):
        smart_collection_text(plan, "id")


@pytest.mark.parametrize("text", STRANGERS_TEXT)
def test_a_strangers_text_anywhere_in_the_collection_keeps_the_table_well_formed(text):
    plan = CollectionPlan(title=text, rules=(Rule("keywords", "words", text, text),), not_expressed=())
    written = smart_collection_text(plan, text)
    outside_strings = written.replace(lua_string(text), '""')
    assert outside_strings.count("{") == outside_strings.count("}") == 3
    _, table = read_assignment(written)
    assert (table["title"], table["internalName"], table["id"]) == (text, text, text)
    assert (table["value"][1]["value"], table["value"][1]["value2"]) == (text, text)


# --- the file list and the README ----------------------------------------------------------------


def test_the_file_list_gives_every_hostile_path_back_one_per_line():
    raw_paths = [b"/photos/" + name for name in HOSTILE_FILE_NAMES] + [
        b"/p/" + f + b"/a.jpg" for f in HOSTILE_FOLDER_NAMES
    ]
    texts = [path_to_text(os.fsdecode(raw)) for raw in raw_paths]
    lines = file_list_text(texts).split("\n")
    assert lines[-1] == "" and len(lines) == len(raw_paths) + 1
    assert [os.fsencode(text_to_path(line)) for line in lines[:-1]] == raw_paths
    assert file_list_text(["/photos/a.jpg"]) == "/photos/a.jpg\n"  # an ordinary path is itself


def test_the_readme_says_what_to_import_and_what_lightroom_cannot_select():
    plan = plan_collection(ImageFilter(verdict="poor", name="evil\nname"))
    text = readme_text(plan, images=3, keywords_file="k.txt", collection_file="c.lrsmcol", files_file="files.txt",
                       csv_file="x.csv")  # fmt: skip
    assert "3 image(s)" in text and "Import Keywords" in text and "Import Smart Collection Settings" in text
    assert 'keywords contain the word "PixelPerfect" and keywords contain the word "Poor"' in text
    assert "- file name contains evil name" in text  # a stranger's line break does not start a line of its own
    assert "Use files.txt" in text
    plain = readme_text(plan_collection(ImageFilter(verdict="good")), images=1, keywords_file="k", collection_file="c",
                        files_file="f", csv_file="x")  # fmt: skip
    assert "cannot select" not in plain
