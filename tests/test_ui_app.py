"""The app's pure helpers, and the Blocks built without a server."""

from __future__ import annotations

import pytest

from review_ui.app import (
    api_table,
    build_filter,
    build_ui,
    caption,
    counts_markdown,
    details_markdown,
    neighbour,
    reviewer_name,
)
from review_ui.queries import ImageFilter, QueryError
from review_ui.service import Inspection
from tests.ui_support import review_setup


def summary(**overrides) -> dict:
    base = {
        "path": "/p/a.jpg", "file_name": "a.jpg", "folder": "/p", "verdict": "poor", "defect": "blur",
        "quality": 0.123, "reviewed": False, "model_verdict": "poor", "model_defect": "blur",
        "reviewed_by": None, "reviewed_at": None, "analyzed_at": "2024-05-01T10:00:00+00:00", "error": None,
    }  # fmt: skip
    return {**base, **overrides}


def test_build_filter_treats_blank_and_all_as_no_filter():
    assert build_filter() == ImageFilter()
    assert build_filter("all", "all", None, None, "all", "all", "", " ", "") == ImageFilter()
    assert build_filter("poor", "blur", 0, 0.5, "no", "/p", "2024-05-01", None, " IMG ") == ImageFilter(
        verdict="poor", defect="blur", quality_min=0.0, quality_max=0.5, reviewed=False, folder="/p",
        date_from="2024-05-01", name="IMG",
    )  # fmt: skip
    assert build_filter(reviewed="yes").reviewed is True
    with pytest.raises(QueryError, match="reviewed must be"):
        build_filter(reviewed="maybe")


def test_captions_name_the_defect_quality_and_review():
    assert caption(summary()) == "Blur 0.12 · a.jpg"
    assert caption(summary(verdict="good", defect=None, quality=0.9, reviewed=True)) == "Good 0.90 ✓ · a.jpg"
    assert caption(summary(verdict="error", defect=None, quality=None)) == "Error · a.jpg"


def test_neighbour_steps_within_the_page_and_survives_the_current_image_leaving_it():
    paths = ["a", "b", "c"]
    assert neighbour(paths, "b", +1) == 2 and neighbour(paths, "b", -1) == 0
    assert neighbour(paths, "c", +1) is None and neighbour(paths, "a", -1) is None
    # "b" was reviewed out of the filter: "c" moved into its place (index 1).
    assert neighbour(["a", "c"], "b", +1, fallback_index=1) == 1
    assert neighbour(["a", "c"], "b", -1, fallback_index=1) == 0
    assert neighbour([], "a", +1) is None


def test_counts_markdown_lists_every_defect():
    text = counts_markdown({"poor": 1200, "good": 3, "error": 0}, {"blur": 1000, "noise": 200, "color_distortion": 0,
                           "compression": 0, "luminance_contrast": 0, "transmission_errors": 0, "other": 0})  # fmt: skip
    assert "**Poor** 1,200" in text and "| Blur | 1,000 |" in text and "| Transmission Errors | 0 |" in text


def test_details_show_review_model_verdict_and_exif(tmp_path):
    inspection = Inspection(
        summary=summary(verdict="good", defect=None, reviewed=True, reviewed_by="ann", reviewed_at="2024-06-01"),
        defect_scores=None, model_version="m-7", size=(6000, 4000),
        exif={"camera": "Canon EOS R5", "iso": "ISO 100", "shutter": "1/250 s", "aperture": "f/8", "lens": None},
    )  # fmt: skip
    text = details_markdown(inspection)
    assert "**Good**" in text and "reviewed by **ann**" in text and "model said Poor (Blur)" in text
    assert "Canon EOS R5 · ISO 100 · 1/250 s · f/8 · 6000×4000" in text and "`m-7`" in text
    assert "noise at screen size" not in text  # unmeasured: nothing to show


def test_details_show_the_noise_meter_reading():
    inspection = Inspection(
        summary=summary(verdict="poor", defect="noise", screen_noise=5.23),
        defect_scores=None, model_version="m-7", size=None, exif={},
    )  # fmt: skip
    assert "quality **0.123** · noise at screen size **5.2** · model `m-7`" in details_markdown(inspection)


def test_details_say_when_the_tags_could_not_be_written(tmp_path):
    inspection = Inspection(
        summary=summary(verdict="error", defect="blur", model_verdict="poor", model_defect="blur", status="tag_error",
                        error="write metadata: cannot tag /p/a.jpg: Error: disk full"),
        defect_scores=None, model_version="m-7", size=None, exif={},
    )  # fmt: skip
    text = details_markdown(inspection)
    assert "**Error: tags not written** · model said Poor (Blur)" in text
    assert "tags not written (retried at the next rescan): write metadata: cannot tag" in text


def test_api_rows_are_lists_so_gradio_client_does_not_take_them_for_files():
    table = api_table([summary()])
    assert table["columns"][:5] == ["path", "verdict", "defect", "quality", "reviewed"]
    assert table["rows"] == [["/p/a.jpg", "poor", "blur", 0.123, False, "a.jpg", "/p", "poor", "blur", None, None,
                              "2024-05-01T10:00:00+00:00", None, None, None]]  # fmt: skip


def test_reviewer_is_the_logged_in_user_else_the_local_account():
    class Request:
        username = "ann"

    assert reviewer_name(Request()) == "ann"
    assert reviewer_name(None) and reviewer_name(None) != "ann"


def test_build_ui_is_importable_without_launching(tmp_path):
    setup = review_setup(tmp_path)
    try:
        demo = build_ui(setup.settings, setup.service)
        endpoints = {d["api_name"] for d in demo.config["dependencies"] if d.get("api_visibility") == "public"}
        assert endpoints == {
            "search",
            "counts",
            "override",
            "override_bulk",
            "undo",
            "heatmap",
            "bursts",
            "cull_burst",
            "export_rejects",
            "export_lightroom",
        }
        assert not demo.is_running
    finally:
        setup.close()
