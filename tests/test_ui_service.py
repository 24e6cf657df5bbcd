"""Reviewer actions end to end below the web layer: real index (a SQLite file and a real PostgreSQL
server: every test runs on both), real ExifTool, real files."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pixelperfect_daemon.common import file_hash
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.metadata import MetadataError, MetadataWriter
from pixelperfect_daemon.result import AnalysisResult
from review_ui.queries import ImageFilter
from review_ui.service import ReviewError, ReviewService, csv_safe
from tests.lua_reader import read_assignment
from tests.ui_support import add_analysed, make_photo, make_settings


def tags_of(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", str(path)], capture_output=True, check=True, text=True).stdout
    return json.loads(out)[0]


def indexed_row(settings, path: Path) -> dict:
    """The row as another process reads it from the index."""
    with ImageIndex.from_settings(settings.index) as index:
        return index.get(path)


def review_columns(settings, path: Path) -> tuple:
    row = indexed_row(settings, path)
    return row["reviewed_verdict"], row["reviewed_defect"], row["reviewed_by"], row["reviewed_at"]


@pytest.fixture
def setup(tmp_path, index_database):
    settings = make_settings(tmp_path, page_size=2)
    settings = dataclasses.replace(settings, index=dataclasses.replace(settings.index, database=index_database))
    watch = tmp_path / "watch"
    index = ImageIndex(settings.index.database)
    files = {
        "blurry": make_photo(watch / "blurry.jpg", kind="blurred"),
        "noisy": make_photo(watch / "noisy.jpg", kind="noisy", seed=1),
        "sharp": make_photo(watch / "sharp.jpg", seed=2),
        "=formula.jpg": make_photo(watch / "=formula.jpg", seed=3),
    }
    add_analysed(index, files["blurry"], verdict="poor", defect="blur", quality=0.2)
    add_analysed(index, files["noisy"], verdict="poor", defect="noise", quality=0.3)
    add_analysed(index, files["sharp"], verdict="good", quality=0.9)
    add_analysed(index, files["=formula.jpg"], verdict="good", quality=0.8)
    broken = watch / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    index.record_analysis(broken, blake3="x", size=12, mtime=0.0, tagged_file=None, analyzed_at="2024-05-01T10:00:00+00:00",
                          result=AnalysisResult.failed(str(broken), "truncated JPEG", "test-1"))  # fmt: skip
    files["broken"] = broken
    metadata = MetadataWriter(settings.metadata)
    service = ReviewService(settings, index=index, metadata=metadata, clock=lambda: "2024-06-01T12:00:00+00:00")
    yield settings, service, files
    service.close()
    metadata.close()
    index.close()


def test_override_lands_in_the_index_and_the_files_xmp(setup):
    settings, service, files = setup
    (row,) = service.override([str(files["blurry"])], verdict="good", defect=None, reviewer="ann")
    assert (row["verdict"], row["defect"], row["reviewed"], row["model_verdict"]) == ("good", None, True, "poor")
    assert review_columns(settings, files["blurry"]) == ("good", None, "ann", "2024-06-01T12:00:00+00:00")
    tags = tags_of(files["blurry"])
    assert tags["XMP-pixelperfect:Verdict"] == "Good"
    assert "XMP-pixelperfect:Defect" not in tags
    assert tags["XMP-pixelperfect:ReviewedBy"] == "ann"
    assert str(tags["XMP-pixelperfect:ReviewedAt"]).startswith("2024")
    assert tags["XMP-lr:HierarchicalSubject"] == "PixelPerfect|Good"
    assert tags["XMP-pixelperfect:ModelVersion"] == "test-1"  # the model's facts are kept


def test_override_records_the_tagged_files_new_hash_so_the_daemon_does_not_reanalyse_it(setup):
    settings, service, files = setup
    service.override([str(files["blurry"])], verdict="good", defect=None, reviewer="ann")
    indexed_hash = indexed_row(settings, files["blurry"])["blake3"]
    assert indexed_hash == file_hash(files["blurry"])


def test_poor_with_a_defect_and_poor_keeping_the_models_defect(setup):
    settings, service, files = setup
    service.override([str(files["sharp"])], verdict="poor", defect="noise", reviewer="ann")
    assert tags_of(files["sharp"])["XMP-lr:HierarchicalSubject"] == "PixelPerfect|Poor|Noise"
    (row,) = service.override([str(files["blurry"])], verdict="poor", defect=None, reviewer="ann")
    assert row["defect"] == "blur"
    with pytest.raises(ReviewError, match="which defect"):
        service.override([str(files["=formula.jpg"])], verdict="poor", defect=None, reviewer="ann")
    with pytest.raises(ReviewError, match="Good verdict has no defect"):
        service.override([str(files["blurry"])], verdict="good", defect="blur", reviewer="ann")
    with pytest.raises(ReviewError, match="unknown defect"):
        service.override([str(files["blurry"])], verdict="poor", defect="Blur", reviewer="ann")
    with pytest.raises(ReviewError, match="good or poor"):
        service.override([str(files["blurry"])], verdict="error", defect=None, reviewer="ann")


@pytest.mark.parametrize("path", ["/etc/passwd", "{watch}/../../etc/passwd", "{watch}/not-indexed.jpg", "", "{watch}"])
def test_only_indexed_images_can_be_reviewed(setup, path):
    settings, service, files = setup
    path = path.format(watch=files["blurry"].parent)
    with pytest.raises(ReviewError, match="not in the index|no image given"):
        service.override([path], verdict="good", defect=None, reviewer="ann")
    with pytest.raises(ReviewError):
        service.inspect(path)


def test_images_that_failed_analysis_cannot_be_reviewed(setup):
    settings, service, files = setup
    with pytest.raises(ReviewError, match="could not be analysed"):
        service.override([str(files["broken"])], verdict="good", defect=None, reviewer="ann")
    assert review_columns(settings, files["broken"]) == (None, None, None, None)


def test_undo_restores_the_models_verdict_in_index_and_tags(setup):
    settings, service, files = setup
    service.override([str(files["blurry"])], verdict="good", defect=None, reviewer="ann")
    (restored,) = service.undo("ann")
    assert (restored["verdict"], restored["defect"], restored["reviewed"]) == ("poor", "blur", False)
    assert review_columns(settings, files["blurry"]) == (None, None, None, None)
    tags = tags_of(files["blurry"])
    assert tags["XMP-pixelperfect:Verdict"] == "Poor" and tags["XMP-pixelperfect:Defect"] == "Blur"
    assert "XMP-pixelperfect:ReviewedBy" not in tags and "XMP-pixelperfect:ReviewedAt" not in tags
    with pytest.raises(ReviewError, match="nothing to undo"):
        service.undo("ann")


def test_undo_returns_to_an_earlier_review_not_to_the_model(setup):
    settings, service, files = setup
    service.override([str(files["blurry"])], verdict="poor", defect="noise", reviewer="bob")
    service.override([str(files["blurry"])], verdict="good", defect=None, reviewer="ann")
    service.undo("ann")
    assert review_columns(settings, files["blurry"])[:3] == ("poor", "noise", "bob")
    assert tags_of(files["blurry"])["XMP-pixelperfect:ReviewedBy"] == "bob"


def test_each_reviewer_undoes_only_their_own_actions(setup):
    settings, service, files = setup
    service.override([str(files["blurry"])], verdict="good", defect=None, reviewer="ann")
    with pytest.raises(ReviewError, match="nothing to undo"):
        service.undo("bob")
    assert service.can_undo("ann") and not service.can_undo("bob")


def test_bulk_override_is_one_undo_step(setup):
    settings, service, files = setup
    paths = [str(files["blurry"]), str(files["noisy"])]
    rows = service.override(paths, verdict="good", defect=None, reviewer="ann")
    assert [r["verdict"] for r in rows] == ["good", "good"]
    assert service.undo("ann") and all(review_columns(settings, Path(p))[0] is None for p in paths)
    assert [tags_of(Path(p))["XMP-pixelperfect:Verdict"] for p in paths] == ["Poor", "Poor"]


def test_bulk_with_an_unknown_path_changes_nothing(setup):
    settings, service, files = setup
    with pytest.raises(ReviewError, match="not in the index"):
        service.override([str(files["blurry"]), "/nope.jpg"], verdict="good", defect=None, reviewer="ann")
    assert review_columns(settings, files["blurry"])[0] is None


def test_a_failed_tag_write_leaves_the_index_as_it_was(setup, monkeypatch):
    """The index must never claim a review the file's tags do not carry."""
    settings, service, files = setup

    def disk_full(*args, **kwargs):
        raise MetadataError("cannot tag: disk full")

    monkeypatch.setattr(service.metadata, "write_verdict", disk_full)
    with pytest.raises(ReviewError, match="disk full"):
        service.override([str(files["blurry"])], verdict="good", defect=None, reviewer="ann")
    assert review_columns(settings, files["blurry"]) == (None, None, None, None)
    assert not service.can_undo("ann")


def keywords_of(path: Path) -> list[str]:
    tags = tags_of(path)
    value = tags.get("XMP-lr:HierarchicalSubject", [])
    return sorted(value if isinstance(value, list) else [value])


def test_a_culled_bursts_duplicates_carry_the_reason_in_their_tags_until_a_decision_without_it(setup):
    settings, service, files = setup
    user_keyword = ["-XMP-lr:HierarchicalSubject+=Duplicate", "-XMP-dc:Subject+=Duplicate"]
    subprocess.run(["exiftool", "-overwrite_original", *user_keyword, str(files["noisy"])], check=True,
                   capture_output=True)  # fmt: skip
    burst = [str(files["blurry"]), str(files["sharp"]), str(files["noisy"])]
    service.cull_burst(burst, str(files["sharp"]), reviewer="ann")
    for rejected in (files["blurry"], files["noisy"]):
        tags = tags_of(rejected)
        assert (tags["XMP-pixelperfect:Defect"], tags["XMP-pixelperfect:ReviewReason"]) == ("Other", "Duplicate")
    assert keywords_of(files["blurry"]) == ["PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate"]
    assert keywords_of(files["noisy"]) == ["Duplicate", "PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate"]
    assert "XMP-pixelperfect:ReviewReason" not in tags_of(files["sharp"])

    service.override([str(files["noisy"])], verdict="good", defect=None, reviewer="ann")  # a change of mind
    tags = tags_of(files["noisy"])
    assert "XMP-pixelperfect:ReviewReason" not in tags
    assert keywords_of(files["noisy"]) == ["Duplicate", "PixelPerfect|Good"]
    assert sorted(tags["XMP-dc:Subject"]) == ["Duplicate", "Good", "PixelPerfect"]

    service.undo("ann")  # back to the burst's decision, reason included
    assert tags_of(files["noisy"])["XMP-pixelperfect:ReviewReason"] == "Duplicate"
    assert keywords_of(files["noisy"]) == ["Duplicate", "PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate"]

    service.undo("ann")  # back to the model's verdicts
    for path, keyword in ((files["blurry"], "PixelPerfect|Poor|Blur"), (files["noisy"], "PixelPerfect|Poor|Noise")):
        tags = tags_of(path)
        assert "XMP-pixelperfect:ReviewReason" not in tags and "XMP-pixelperfect:ReviewedBy" not in tags
        assert sorted(set(keywords_of(path)) - {"Duplicate"}) == [keyword]
    assert "Duplicate" in keywords_of(files["noisy"]) and "Duplicate" in tags_of(files["noisy"])["XMP-dc:Subject"]
    assert "Duplicate" not in tags_of(files["blurry"])["XMP-dc:Subject"]


def test_export_writes_every_matching_row_not_just_one_page(setup):
    settings, service, files = setup
    assert service.search(ImageFilter()).page_size == 2  # the page is smaller than the list ...
    target = service.export_csv(ImageFilter())
    assert target.parent == settings.ui.thumbnail_cache / "exports"
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5  # ... the export is not
    assert [r["file_name"] for r in rows[:2]] == ["broken.jpg", "blurry.jpg"]  # worst first
    assert (rows[1]["verdict"], rows[1]["defect"], rows[1]["quality"]) == ("poor", "blur", "0.2")
    assert "'=formula.jpg" in {r["file_name"] for r in rows}  # no formula runs in a spreadsheet
    poor = service.export_csv(ImageFilter(verdict="poor"))
    assert len(list(csv.DictReader(poor.open()))) == 2


def test_the_lightroom_export_holds_keywords_collection_file_list_and_csv_of_the_whole_filter(setup):
    settings, service, files = setup
    service.cull_burst([str(files["noisy"]), str(files["sharp"])], str(files["sharp"]), reviewer="ann")
    export = service.export_lightroom(ImageFilter(verdict="poor", quality_max=0.5))
    target = export.path
    assert export.images == 2 and export.plan.title == "PixelPerfect Poor"
    assert target.parent == settings.ui.thumbnail_cache / "exports" and target.suffix == ".zip"
    with zipfile.ZipFile(target) as archive:
        names = sorted(archive.namelist())
        text = {name: archive.read(name).decode("utf-8") for name in names}
    assert names == ["PixelPerfect Poor.lrsmcol", "PixelPerfect keywords.txt", "README.txt", "files.txt",
                     "pixelperfect.csv"]  # fmt: skip
    # blurry (the model's Blur) and noisy (a burst's duplicate), in the filter's order
    assert text["files.txt"].splitlines() == [str(files["blurry"]), str(files["noisy"])]
    assert text["PixelPerfect keywords.txt"] == "PixelPerfect\n\tPoor\n\t\tBlur\n\t\tOther\n\t\t\tDuplicate\n"
    _, collection = read_assignment(text["PixelPerfect Poor.lrsmcol"])
    assert [collection["value"][i]["value"] for i in (1, 2)] == ["PixelPerfect", "Poor"]
    assert collection["value"]["combine"] == "intersect" and 3 not in collection["value"]
    assert "quality 0.00 to 0.50" in text["README.txt"]
    rows = list(csv.DictReader(io.StringIO(text["pixelperfect.csv"])))
    assert [(r["file_name"], r["defect"]) for r in rows] == [("blurry.jpg", "blur"), ("noisy.jpg", "other")]

    with zipfile.ZipFile(service.export_lightroom(ImageFilter(verdict="error")).path) as archive:
        assert sorted(archive.namelist()) == [
            "PixelPerfect keywords.txt",
            "README.txt",
            "files.txt",
            "pixelperfect.csv",
        ]
        assert archive.read("files.txt").decode() == f"{files['broken']}\n"
        assert "could not analyse" in archive.read("README.txt").decode()


def test_csv_safe():
    assert (csv_safe("=SUM(A1)"), csv_safe("-1"), csv_safe("a=b"), csv_safe(0.5)) == ("'=SUM(A1)", "'-1", "a=b", 0.5)


def test_inspect_and_the_loupe_of_an_image(setup):
    settings, service, files = setup
    blurry = service.inspect(str(files["blurry"]))
    assert blurry.defect_scores["blur"] == pytest.approx(0.7) and blurry.summary["defect"] == "blur"
    view = service.loupe(str(files["blurry"]))
    assert view.image.is_file() and view.image.is_relative_to(settings.ui.thumbnail_cache)
    with Image.open(files["blurry"]) as original:
        assert view.size == original.size
    assert view.defect == "blur" and view.heatmap is not None
    assert view.focus == view.heatmap.hottest_centre("blur")
    sharp = service.loupe(str(files["sharp"]))
    assert sharp.defect is None and sharp.focus == (0.5, 0.5)


def test_analysing_an_upload_never_touches_the_index(setup, tmp_path):
    settings, service, files = setup
    upload = make_photo(tmp_path / "upload" / "new.jpg")

    class FakeAnalyzer:
        model_version = "fake-1"

        def analyze_path(self, path):
            return AnalysisResult(path=str(path), verdict="good", quality=0.9, defect=None,
                                  defect_scores={"blur": 1.0}, model_version="fake-1")  # fmt: skip

    service._analyzer_factory = FakeAnalyzer
    assert service.analyze_upload(upload).verdict == "good"
    assert service.search(ImageFilter(name="new.jpg")).total == 0
    assert "XMP-pixelperfect:Verdict" not in tags_of(upload)


def test_missing_models_are_a_clear_message(setup, tmp_path):
    settings, service, files = setup

    def no_models():
        from pixelperfect_daemon.engine import Analyzer

        return Analyzer(tmp_path / "no-models")

    service._analyzer_factory = no_models
    with pytest.raises(ReviewError, match="analysis models are not available"):
        service.analyze_upload(files["sharp"])
