"""The index on a real SQLite file and on a real PostgreSQL server (every test runs on both)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from pixelperfect_daemon import index as index_module
from pixelperfect_daemon.index import SCHEMA_VERSION, ImageIndex, ImageIndexError
from pixelperfect_daemon.result import AnalysisResult

SCORES = {
    "blur": 0.7,
    "color_distortion": 0.05,
    "compression": 0.05,
    "luminance_contrast": 0.05,
    "noise": 0.05,
    "transmission_errors": 0.05,
    "other": 0.05,
}


def poor_blur(path="x") -> AnalysisResult:
    return AnalysisResult(
        path=str(path), verdict="poor", quality=0.2, defect="blur", defect_scores=SCORES, model_version="m1"
    )


def good(path="x") -> AnalysisResult:
    return AnalysisResult(
        path=str(path), verdict="good", quality=0.9, defect=None, defect_scores=SCORES, model_version="m2"
    )


@pytest.fixture
def index(index_database):
    with ImageIndex(index_database) as image_index:
        yield image_index


def index_names(index) -> set[tuple[str, ...]]:
    """The images table's indexes, as column tuples (PostgreSQL's end in rowid: see index_backends)."""
    if index.db is not None:
        return {tuple(i.columns) for i in index.db["images"].indexes}
    rows = index.backend.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'images'").fetchall()
    found = set()
    for (definition,) in rows:
        keys = definition.split("(", 1)[1].rstrip(")").split(",")
        columns = tuple(c.replace("NULLS FIRST", "").strip() for c in keys)
        found.add(columns[:-1] if columns[-1] == "rowid" and len(columns) > 1 else columns)
    return found


def record(index, path, result=None, blake3="aaa", **extra):
    values = dict(
        blake3=blake3,
        size=10,
        mtime=1.5,
        result=result or poor_blur(path),
        analyzed_at="2026-01-01T00:00:00Z",
        tagged_file=path,
    )
    values.update(extra)
    return index.record_analysis(path, **values)


def test_new_database_has_the_documented_schema(index, tmp_path):
    columns = set(index.column_names())
    assert columns == set(index_module.IMAGE_COLUMNS)
    assert columns >= {
        "path",
        "folder",
        "file_name",
        "blake3",
        "size",
        "mtime",
        "width",
        "height",
        "verdict",
        "defect",
        "quality",
        "defect_scores",
        "model_version",
        "status",
        "error",
        "analyzed_at",
        "tagged_file",
        "reviewed_verdict",
        "reviewed_defect",
        "reviewed_by",
        "reviewed_at",
    }
    indexed = index_names(index)
    for column in ("verdict", "defect", "quality", "analyzed_at", "folder", "reviewed_verdict", "blake3"):
        assert (column,) in indexed
    assert index.schema_version == SCHEMA_VERSION
    if index.db is not None:
        assert index.db["images"].pks == ["path"]
        assert index.db.journal_mode == "wal"


def test_record_analysis_stores_every_column(index, tmp_path):
    path = tmp_path / "photos" / "a.jpg"
    row = record(index, path, width=640, height=480)
    assert row["path"] == str(path) and row["folder"] == str(path.parent) and row["file_name"] == "a.jpg"
    assert (row["verdict"], row["defect"], row["quality"], row["status"]) == ("poor", "blur", 0.2, "ok")
    assert json.loads(row["defect_scores"]) == SCORES
    assert (row["width"], row["height"], row["model_version"]) == (640, 480, "m1")
    assert row["tagged_file"] == str(path)
    assert row["screen_noise"] is None  # unmeasured
    assert index.get(path) == row
    assert index.get(tmp_path / "other.jpg") is None
    noisy = dataclasses.replace(good(path), verdict="poor", defect="noise", screen_noise=4.2)
    assert record(index, path, result=noisy)["screen_noise"] == 4.2


def test_paths_are_normalised(index, tmp_path):
    record(index, tmp_path / "sub" / ".." / "a.jpg")
    assert index.get(tmp_path / "a.jpg")["file_name"] == "a.jpg"


def test_error_result_gives_an_error_row(index, tmp_path):
    path = tmp_path / "broken.jpg"
    failed = AnalysisResult.failed(str(path), "truncated JPEG: no image data", "m1")
    row = record(index, path, result=failed, tagged_file=None)
    assert (row["status"], row["verdict"], row["error"], row["tagged_file"]) == (
        "error",
        None,
        "truncated JPEG: no image data",
        None,
    )


def test_record_error_for_a_file_never_analysed(index, tmp_path):
    row = index.record_error(tmp_path / "gone.jpg", error="file vanished", analyzed_at="t")
    assert (row["status"], row["error"], row["blake3"]) == ("error", "file vanished", None)


def test_metadata_failure_keeps_the_verdict_but_marks_the_row(index, tmp_path):
    row = record(index, tmp_path / "a.jpg", error="write metadata: Error: disk full", tagged_file=None)
    assert (row["status"], row["verdict"], row["error"]) == ("error", "poor", "write metadata: Error: disk full")


def test_analysis_never_overwrites_a_review(index, tmp_path):
    path = tmp_path / "a.jpg"
    record(index, path)
    index.record_review(path, verdict="good", defect=None, reviewed_by="ann", reviewed_at="2026-01-02T00:00:00Z")
    row = record(index, path, result=poor_blur(path), blake3="bbb")
    assert (row["verdict"], row["blake3"]) == ("poor", "bbb")
    assert (row["reviewed_verdict"], row["reviewed_by"], row["reviewed_at"]) == ("good", "ann", "2026-01-02T00:00:00Z")
    row = index.record_error(path, error="decode: broken", analyzed_at="t")
    assert row["reviewed_verdict"] == "good"


def test_review_is_validated(index, tmp_path):
    path = tmp_path / "a.jpg"
    record(index, path)
    with pytest.raises(ImageIndexError, match="good or poor"):
        index.record_review(path, verdict="bad", defect=None, reviewed_by="ann", reviewed_at="t")
    with pytest.raises(ImageIndexError, match="no defect"):
        index.record_review(path, verdict="good", defect="blur", reviewed_by="ann", reviewed_at="t")
    with pytest.raises(ImageIndexError, match="unknown defect"):
        index.record_review(path, verdict="poor", defect="Blur", reviewed_by="ann", reviewed_at="t")
    with pytest.raises(ImageIndexError, match="not in the index"):
        index.record_review(tmp_path / "other.jpg", verdict="good", defect=None, reviewed_by="ann", reviewed_at="t")


def test_clear_review_restores_the_previous_review_or_nulls(index, tmp_path):
    path = tmp_path / "a.jpg"
    record(index, path)
    first = index.record_review(path, verdict="poor", defect="noise", reviewed_by="ann", reviewed_at="t1")
    index.record_review(path, verdict="good", defect=None, reviewed_by="bob", reviewed_at="t2")
    restored = index.clear_review(path, previous=first)
    assert (restored["reviewed_verdict"], restored["reviewed_defect"], restored["reviewed_by"]) == (
        "poor",
        "noise",
        "ann",
    )
    cleared = index.clear_review(path)
    assert all(cleared[c] is None for c in index_module.REVIEW_COLUMNS)
    assert cleared["verdict"] == "poor"


def test_move_keeps_the_row_and_its_review(index, tmp_path):
    old, new = tmp_path / "in" / "a.jpg", tmp_path / "sorted" / "b.jpg"
    record(index, old)
    index.record_review(old, verdict="good", defect=None, reviewed_by="ann", reviewed_at="t")
    index.record_move(old, new)
    assert index.get(old) is None
    row = index.get(new)
    assert (row["folder"], row["file_name"], row["reviewed_verdict"], row["blake3"]) == (
        str(new.parent),
        "b.jpg",
        "good",
        "aaa",
    )
    assert row["tagged_file"] == str(new)  # the tags travelled inside the file
    assert index.count() == 1


def test_move_over_an_existing_row_replaces_it(index, tmp_path):
    record(index, tmp_path / "a.jpg", blake3="aaa")
    record(index, tmp_path / "b.jpg", blake3="bbb")
    index.record_move(tmp_path / "a.jpg", tmp_path / "b.jpg")
    assert index.get(tmp_path / "b.jpg")["blake3"] == "aaa"
    assert index.count() == 1


def test_move_keeps_a_sidecar_tagged_file(index, tmp_path):
    record(index, tmp_path / "a.CR2", tagged_file=tmp_path / "a.xmp")
    index.record_move(tmp_path / "a.CR2", tmp_path / "b.CR2")
    assert index.get(tmp_path / "b.CR2")["tagged_file"] == str(tmp_path / "a.xmp")


def test_move_of_an_unknown_path_is_an_error(index, tmp_path):
    with pytest.raises(ImageIndexError, match="no row"):
        index.record_move(tmp_path / "a.jpg", tmp_path / "b.jpg")


def test_find_by_blake3_and_stat_snapshot(index, tmp_path):
    record(index, tmp_path / "a.jpg", blake3="same")
    record(index, tmp_path / "b.jpg", blake3="same")
    record(index, tmp_path / "c.jpg", blake3="other")
    assert [r["file_name"] for r in index.find_by_blake3("same")] == ["a.jpg", "b.jpg"]
    index.record_stat(tmp_path / "c.jpg", size=99, mtime=7.25)
    assert index.get(tmp_path / "c.jpg")["blake3"] == "other"
    index.record_stat(tmp_path / "b.jpg", size=11, mtime=1.5, blake3="retagged")
    assert [r["file_name"] for r in index.find_by_blake3("retagged")] == ["b.jpg"]
    snapshot = index.stat_snapshot()
    assert snapshot[str(tmp_path / "c.jpg")] == (99, 7.25)
    assert snapshot[str(tmp_path / "a.jpg")] == (10, 1.5)


def test_reopening_keeps_rows_and_version(index_database, tmp_path):
    database = index_database
    with ImageIndex(database) as first:
        record(first, tmp_path / "a.jpg")
    with ImageIndex(database) as second:
        assert second.get(tmp_path / "a.jpg")["verdict"] == "poor"
        assert second.schema_version == SCHEMA_VERSION


def test_migrations_run_in_order_once(index_database, monkeypatch):
    database = index_database
    with ImageIndex(database):
        pass

    add_rating = index_module.AddColumn("images", "rating", int, indexed=True)
    monkeypatch.setattr(index_module, "MIGRATIONS", [*index_module.MIGRATIONS, add_rating])
    assert index_module.columns_of("images")["rating"] is int
    with ImageIndex(database) as migrated:
        assert "rating" in migrated.column_names()
        assert ("rating",) in index_names(migrated)
        assert migrated.schema_version == len(index_module.MIGRATIONS)
    with ImageIndex(database) as reopened:  # already migrated: add_rating does not run twice
        assert reopened.schema_version == len(index_module.MIGRATIONS)


def test_newer_schema_is_refused(index_database):
    database = index_database
    with ImageIndex(database) as index:
        index.backend.set_schema_version(SCHEMA_VERSION + 1)
    with pytest.raises(ImageIndexError, match="newer"):
        ImageIndex(database)


def test_another_process_reads_while_we_write(index, tmp_path):
    """The review UI (another process) sees committed rows while the daemon holds the index open."""
    record(index, tmp_path / "a.jpg")
    script = (
        "import sys; from pixelperfect_daemon.index import ImageIndex; "
        "ix = ImageIndex(sys.argv[1]); "
        "ix.record_review(sys.argv[2], verdict='good', defect=None, reviewed_by='ui', reviewed_at='t'); "
        "print(ix.count())"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, str(index.database), str(tmp_path / "a.jpg")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert output.stdout.strip() == "1"
    assert index.get(tmp_path / "a.jpg")["reviewed_by"] == "ui"
