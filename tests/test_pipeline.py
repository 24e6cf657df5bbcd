"""The pipeline stages with a fake analyzer, and the real decoder, ExifTool and SQLite file.

The analyzer is the only stand-in: its verdict comes from the file name, so each test says what it
expects, and it counts its calls, so "analysed exactly once" is checked directly.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import pixelperfect_daemon.pipeline as pipeline_module
from pixelperfect_daemon.config import Settings
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.metadata import MetadataWriter
from pixelperfect_daemon.pipeline import (
    ANALYSED,
    CHANGED,
    ERROR,
    MOVED,
    RETAGGED,
    UNCHANGED,
    Pipeline,
    effective_verdict,
    file_hash,
)
from pixelperfect_daemon.result import AnalysisResult
from tests.fixtures_images import make_jpeg, make_png, make_random_bytes_jpg, make_raw_like

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")

SMALL = (64, 48)


class FakeAnalyzer:
    """Poor (blur) when the file name contains "poor", good otherwise; counts its calls."""

    model_version = "fake-1"

    def __init__(self, during_analysis=None):
        self.calls: list[Path] = []
        self._lock = threading.Lock()
        self._during_analysis = during_analysis

    def analyze_views(self, path, loaded) -> AnalysisResult:
        with self._lock:
            self.calls.append(Path(path))
        if self._during_analysis is not None:
            self._during_analysis(Path(path))
        poor = "poor" in Path(path).name
        scores = {key: (0.94 if key == "blur" else 0.01) for key in DEFECTS}
        return AnalysisResult(
            path=str(path),
            verdict="poor" if poor else "good",
            quality=0.2 if poor else 0.8,
            defect="blur" if poor else None,
            defect_scores=scores,
            model_version=self.model_version,
        )


def settings_for(tmp_path: Path, **metadata) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        analysis=dataclasses.replace(base.analysis, workers=2),
        metadata=dataclasses.replace(base.metadata, **metadata),
        index=dataclasses.replace(base.index, database=tmp_path / "index.sqlite"),
    )


class Harness:
    """A pipeline run over a list of files, as ``pixelperfect scan`` does it."""

    def __init__(self, tmp_path: Path, analyzer=None, **metadata):
        self.settings = settings_for(tmp_path, **metadata)
        self.analyzer = analyzer or FakeAnalyzer()
        self.writer = MetadataWriter(self.settings.metadata)
        self.index = ImageIndex(self.settings.index.database)
        self.done: list[Path] = []

    def run(self, *paths: Path, stop: threading.Event | None = None, dry_run=False):
        pipeline = Pipeline(
            self.settings,
            self.analyzer,
            writer=None if dry_run else self.writer,
            index=None if dry_run else self.index,
            stop=stop or threading.Event(),
            on_done=self.done.append,
        )
        pipeline.start()
        for path in paths:
            pipeline.submit(path)
        pipeline.close_input()
        assert pipeline.join(timeout=60)
        return pipeline.stats

    def close(self):
        self.writer.close()
        self.index.close()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


def pixelperfect_keywords(harness: Harness, path: Path) -> list[str]:
    return [k for k in harness.writer.read_verdict(path)["keywords"] if k.startswith("PixelPerfect")]


def test_effective_verdict_prefers_the_review():
    assert effective_verdict("poor", "noise", None) == ("poor", "noise", None, None, None)
    assert effective_verdict("poor", "noise", {"reviewed_verdict": None, "reviewed_reason": "duplicate"}) == (
        "poor", "noise", None, None, None
    )  # fmt: skip
    reviewed = {"reviewed_verdict": "good", "reviewed_defect": None, "reviewed_by": "ann", "reviewed_at": "t"}
    assert effective_verdict("poor", "noise", reviewed) == ("good", None, "ann", "t", None)
    culled = {**reviewed, "reviewed_verdict": "poor", "reviewed_defect": "other", "reviewed_reason": "duplicate"}
    assert effective_verdict("poor", "noise", culled) == ("poor", "other", "ann", "t", "duplicate")


def test_new_files_are_tagged_and_indexed(harness, photos):
    good = make_jpeg(photos / "a.jpg", size=SMALL)
    poor = make_png(photos / "b_poor.png", size=SMALL)
    stats = harness.run(good, poor)
    assert stats.outcomes == {ANALYSED: 2}
    row = harness.index.get(poor)
    assert (row["verdict"], row["defect"], row["status"], row["width"], row["height"]) == ("poor", "blur", "ok", 64, 48)
    assert row["blake3"] == file_hash(poor)  # the file as it is after tagging
    assert row["tagged_file"] == str(poor)
    assert harness.writer.read_verdict(poor)["keywords"] == ["PixelPerfect|Poor|Blur"]
    assert harness.writer.read_verdict(good)["Verdict"] == "Good"
    assert sorted(harness.done) == sorted([good, poor])


def test_unchanged_file_is_not_analysed_again(harness, photos):
    image = make_jpeg(photos / "a.jpg", size=SMALL)
    harness.run(image)
    tagged = image.read_bytes()
    assert harness.run(image).outcomes == {UNCHANGED: 1}
    image.touch()  # new mtime, same content: still unchanged (and the row learns the new mtime)
    assert harness.run(image).outcomes == {UNCHANGED: 1}
    assert harness.index.get(image)["mtime"] == image.stat().st_mtime
    assert harness.analyzer.calls == [image]
    assert image.read_bytes() == tagged


def test_moved_file_keeps_its_row_and_review(harness, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    harness.run(image)
    harness.index.record_review(image, verdict="good", defect=None, reviewed_by="ann", reviewed_at="t")
    moved = photos / "sorted" / "renamed_poor.jpg"
    moved.parent.mkdir()
    image.rename(moved)
    assert harness.run(moved).outcomes == {MOVED: 1}
    assert harness.index.get(image) is None
    row = harness.index.get(moved)
    assert (row["verdict"], row["reviewed_verdict"], row["reviewed_by"]) == ("poor", "good", "ann")
    assert harness.index.count() == 1
    assert harness.analyzer.calls == [image]


def as_row_from_before_blake3(index, image):
    """Make ``image``'s row look as an index written before the blake3 column left it: SHA-256 only."""
    index._write(
        [("UPDATE images SET blake3 = NULL, sha256 = ? WHERE path = ?", (file_hash(image, "sha256"), str(image)))]
    )


def test_a_row_from_before_blake3_still_recognises_its_moved_file(harness, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    harness.run(image)
    harness.index.record_review(image, verdict="good", defect=None, reviewed_by="ann", reviewed_at="t")
    as_row_from_before_blake3(harness.index, image)
    moved = photos / "renamed_poor.jpg"
    image.rename(moved)
    assert harness.run(moved).outcomes == {MOVED: 1}
    row = harness.index.get(moved)
    assert (row["reviewed_verdict"], row["sha256"]) == ("good", file_hash(moved, "sha256"))
    moved.touch()  # same content, new mtime: compared by SHA-256, and the row keeps its hash
    assert harness.run(moved).outcomes == {UNCHANGED: 1}
    assert harness.analyzer.calls == [image]


def test_a_row_from_before_blake3_gets_one_when_its_file_changes(harness, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    harness.run(image)
    as_row_from_before_blake3(harness.index, image)
    make_jpeg(image, size=SMALL, variant=1)  # edited in place: new pixels, no tags
    assert harness.run(image).outcomes == {ANALYSED: 1}
    row = harness.index.get(image)
    assert (row["blake3"], row["sha256"]) == (file_hash(image), None)  # one hash per row, never a stale one


def test_a_reanalysed_duplicate_keeps_its_review_reason_in_the_tags(harness, photos):
    image = make_jpeg(photos / "a.jpg", size=SMALL)
    harness.run(image)
    harness.index.record_review(image, verdict="poor", defect="other", reviewed_by="ann", reviewed_at="t",
                                reason="duplicate")  # fmt: skip
    make_jpeg(image, size=SMALL, variant=1)  # edited in place: new pixels, no tags
    assert harness.run(image).outcomes == {ANALYSED: 1}
    tags = harness.writer.read_verdict(image)
    assert (tags["Verdict"], tags["Defect"], tags["ReviewReason"]) == ("Poor", "Other", "Duplicate")
    assert pixelperfect_keywords(harness, image) == ["PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate"]


def test_a_new_file_is_hashed_only_when_it_could_be_a_move(harness, photos, monkeypatch):
    hashed = []
    real_file_hash = pipeline_module.file_hash
    monkeypatch.setattr(
        pipeline_module, "file_hash", lambda path, *a: hashed.append(Path(path)) or real_file_hash(path, *a)
    )
    first = make_jpeg(photos / "a.jpg", size=SMALL)
    harness.run(first)
    assert hashed == [first]  # once, after tagging: the row describes the tagged file
    hashed.clear()
    read_only = make_jpeg(photos / "b.jpg", size=SMALL)
    read_only.chmod(0o444)
    harness.run(read_only)
    assert hashed == [read_only]  # tagged in a sidecar: the image itself is hashed once
    assert harness.index.get(read_only)["blake3"] == real_file_hash(read_only)
    hashed.clear()
    moved = photos / "c.jpg"
    first.rename(moved)  # a row of the same size lost its file: hash, compare, move
    assert harness.run(moved).outcomes == {MOVED: 1}
    assert hashed == [moved]


def test_a_copy_is_analysed_on_its_own(harness, photos):
    image = make_jpeg(photos / "a.jpg", size=SMALL)
    harness.run(image)
    copy = photos / "copy.jpg"
    shutil.copy(image, copy)
    assert harness.run(copy).outcomes == {ANALYSED: 1}
    assert harness.index.count() == 2


def test_changed_content_is_reanalysed_but_the_review_wins(harness, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    harness.run(image)
    harness.index.record_review(
        image, verdict="good", defect=None, reviewed_by="ann", reviewed_at="2026-01-02T00:00:00Z"
    )
    make_jpeg(image, size=SMALL, variant=1)  # edited in place: new pixels, no tags
    assert harness.run(image).outcomes == {ANALYSED: 1}
    row = harness.index.get(image)
    assert (row["verdict"], row["reviewed_verdict"]) == ("poor", "good")
    tags = harness.writer.read_verdict(image)
    assert (tags["Verdict"], tags["ReviewedBy"]) == ("Good", "ann")
    assert pixelperfect_keywords(harness, image) == ["PixelPerfect|Good"]
    assert len(harness.analyzer.calls) == 2


def test_crash_between_tags_and_row_is_repaired(harness, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    # The previous run wrote the tags and died before the row.
    harness.writer.write_verdict(
        image, verdict="good", defect=None, quality=0.5, model_version="old", analyzed_at="2026-01-01T00:00:00Z"
    )
    assert harness.run(image).outcomes == {ANALYSED: 1}
    assert pixelperfect_keywords(harness, image) == ["PixelPerfect|Poor|Blur"]
    assert harness.writer.read_verdict(image)["subject"].count("PixelPerfect") == 1
    assert harness.index.get(image)["blake3"] == file_hash(image)


def test_broken_file_gets_an_error_row_and_the_rest_go_on(harness, photos):
    broken = make_random_bytes_jpg(photos / "broken.jpg")
    before = broken.read_bytes()
    fine = make_jpeg(photos / "fine.jpg", size=SMALL)
    stats = harness.run(broken, fine)
    assert stats.outcomes == {ERROR: 1, ANALYSED: 1}
    row = harness.index.get(broken)
    assert (row["status"], row["verdict"], row["tagged_file"]) == ("error", None, None)
    assert row["error"] and "\n" not in row["error"]
    assert row["blake3"] == file_hash(broken)
    assert broken.read_bytes() == before
    assert harness.run(broken).outcomes == {UNCHANGED: 1}  # not retried until it changes


def test_png_named_jpg_gets_a_sidecar_and_the_log_says_why(harness, photos, caplog):
    # PNG content under a .jpg name: the decoder reads it, ExifTool would refuse it as "Not a valid JPG".
    misnamed = photos / "misnamed_poor.jpg"
    make_png(photos / "tmp.png", size=SMALL).rename(misnamed)
    before = misnamed.read_bytes()
    with caplog.at_level("INFO", logger="pixelperfect_daemon.metadata"):
        assert harness.run(misnamed).outcomes == {ANALYSED: 1}
    row = harness.index.get(misnamed)
    assert (row["status"], row["verdict"], row["tagged_file"]) == ("ok", "poor", str(photos / "misnamed_poor.xmp"))
    assert harness.writer.read_verdict(misnamed)["keywords"] == ["PixelPerfect|Poor|Blur"]
    assert "named .jpg but a PNG inside, which cannot hold embedded XMP" in caplog.text
    assert misnamed.read_bytes() == before


def test_tag_failure_is_a_status_and_is_retried_at_the_next_scan(harness, photos):
    raw = make_raw_like(photos / "IMG_poor.cr2", ext=".cr2", preview_size=SMALL)
    (photos / "IMG_poor.xmp").mkdir()  # the sidecar's name is taken: ExifTool cannot write it
    assert harness.run(raw).outcomes == {ERROR: 1}
    row = harness.index.get(raw)
    assert (row["status"], row["verdict"], row["tagged_file"]) == ("tag_error", "poor", None)
    assert row["error"].startswith("write metadata:")
    assert str(raw) not in harness.index.stat_snapshot()  # a rescan does not skip it
    assert harness.run(raw).outcomes == {ERROR: 1}  # still failing: tried again, still an error
    (photos / "IMG_poor.xmp").rmdir()
    assert harness.run(raw).outcomes == {RETAGGED: 1}
    assert len(harness.analyzer.calls) == 1  # tagged from the row, never analysed again
    row = harness.index.get(raw)
    assert (row["status"], row["error"], row["tagged_file"]) == ("ok", None, str(photos / "IMG_poor.xmp"))
    assert harness.writer.read_verdict(raw)["Verdict"] == "Poor"
    assert harness.run(raw).outcomes == {UNCHANGED: 1}


def test_retag_applies_a_changed_setting_without_analysing_again(tmp_path, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    first = Harness(tmp_path, poor_reject_rating=True)
    try:
        first.run(image)
        assert first.writer.read_verdict(image)["Rating"] == "-1"
    finally:
        first.close()
    second = Harness(tmp_path)  # poor_reject_rating switched off
    try:
        assert second.run(image).outcomes == {UNCHANGED: 1}
        second_pipeline_retag = Pipeline(
            second.settings,
            second.analyzer,
            writer=second.writer,
            index=second.index,
            stop=threading.Event(),
            retag=True,
        )
        second_pipeline_retag.start()
        second_pipeline_retag.submit(image)
        second_pipeline_retag.close_input()
        assert second_pipeline_retag.join(timeout=60)
        assert second_pipeline_retag.stats.outcomes == {RETAGGED: 1}
        assert second.analyzer.calls == []
        assert second.writer.read_verdict(image)["Rating"] is None  # the file had none: absent again
        row = second.index.get(image)
        assert row["blake3"] == file_hash(image) and row["written_rating"] is None
        assert second.run(image).outcomes == {UNCHANGED: 1}
    finally:
        second.close()


def test_touch_on_change_sets_mtime_and_is_not_analysed_again(tmp_path, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    os.utime(image, (1_000_000_000, 1_000_000_000))
    harness = Harness(tmp_path, touch_on_change=True, poor_reject_rating=True)
    try:
        started = time.time()
        assert harness.run(image).outcomes == {ANALYSED: 1}
        mtime = image.stat().st_mtime
        assert mtime >= started - 1
        row = harness.index.get(image)
        assert (row["mtime"], row["blake3"], row["written_rating"], row["previous_rating"]) == (
            mtime,
            file_hash(image),
            "-1",
            None,
        )
        assert harness.run(image).outcomes == {UNCHANGED: 1}
        assert len(harness.analyzer.calls) == 1 and image.stat().st_mtime == mtime
    finally:
        harness.close()


def test_vanished_file_gets_an_error_row(harness, photos):
    assert harness.run(photos / "gone.jpg").outcomes == {ERROR: 1}
    assert harness.index.get(photos / "gone.jpg")["error"] == "file vanished before it could be analysed"


def test_file_changed_during_analysis_is_not_tagged(tmp_path, photos):
    def keep_writing(path):
        with path.open("ab") as f:
            f.write(b"more data arriving")

    h = Harness(tmp_path, analyzer=FakeAnalyzer(during_analysis=keep_writing))
    try:
        image = make_jpeg(photos / "a.jpg", size=SMALL)
        assert h.run(image).outcomes == {CHANGED: 1}
        assert h.index.get(image) is None
        assert h.writer.read_verdict(image)["Verdict"] is None
    finally:
        h.close()


def test_read_only_file_is_tagged_in_a_sidecar(harness, photos):
    image = make_jpeg(photos / "a.jpg", size=SMALL)
    image.chmod(0o444)
    before = image.read_bytes()
    assert harness.run(image).outcomes == {ANALYSED: 1}
    assert image.read_bytes() == before
    assert harness.index.get(image)["tagged_file"] == str(photos / "a.xmp")


def test_raw_is_tagged_in_a_sidecar_that_follows_a_move(tmp_path, photos):
    h = Harness(tmp_path, sidecar_name="fullname")
    try:
        raw = make_raw_like(photos / "IMG_0001_poor.CR2", preview_size=SMALL)
        before = raw.read_bytes()
        assert h.run(raw).outcomes == {ANALYSED: 1}
        assert raw.read_bytes() == before
        sidecar = photos / "IMG_0001_poor.CR2.xmp"
        assert h.index.get(raw)["tagged_file"] == str(sidecar)
        moved = photos / "IMG_0002_poor.CR2"
        raw.rename(moved)
        assert h.run(moved).outcomes == {MOVED: 1}
        assert h.index.get(moved)["tagged_file"] == str(photos / "IMG_0002_poor.CR2.xmp")
        assert h.writer.read_verdict(moved)["Verdict"] == "Poor"
        assert sidecar.exists()  # nothing is ever deleted
    finally:
        h.close()


def test_dry_run_writes_nothing(harness, photos, tmp_path):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    before = image.read_bytes()
    assert harness.run(image, dry_run=True).outcomes == {ANALYSED: 1}
    assert image.read_bytes() == before
    assert harness.index.count() == 0
    assert sorted(p.name for p in photos.iterdir()) == ["a_poor.jpg"]


def test_stop_finishes_the_files_in_hand_and_hands_back_the_rest(tmp_path, photos):
    stop = threading.Event()
    release = threading.Event()

    def first_one_blocks(path):
        if not stop.is_set():
            stop.set()  # SIGTERM arrives while the first files are being analysed
            release.wait(5)

    h = Harness(tmp_path, analyzer=FakeAnalyzer(during_analysis=first_one_blocks))
    try:
        images = [make_jpeg(photos / f"{i}.jpg", size=SMALL, variant=i) for i in range(8)]
        pipeline = Pipeline(h.settings, h.analyzer, writer=h.writer, index=h.index, stop=stop)
        pipeline.start()
        offered = 0
        for image in images:
            offered += 1
            if not pipeline.submit(image):
                break
        release.set()
        assert pipeline.join(timeout=30)
        stats = pipeline.stats
        analysed = stats.outcomes[ANALYSED]
        assert analysed >= 1  # the file in hand was finished: tags and row
        assert analysed == h.index.count() == len(h.analyzer.calls)
        assert stats.finished + stats.handed_back == offered  # nothing lost, nothing twice
        assert stats.handed_back >= 1
        for image in images:
            row = h.index.get(image)
            assert (row is not None) == (h.writer.read_verdict(image)["Verdict"] is not None)
    finally:
        h.close()


def test_a_file_moved_while_being_analysed_is_analysed_at_its_new_path(tmp_path, photos):
    def move_it_away(path):
        path.rename(path.with_name("renamed.jpg"))

    h = Harness(tmp_path, analyzer=FakeAnalyzer(during_analysis=move_it_away))
    try:
        image = make_jpeg(photos / "a.jpg", size=SMALL)
        assert h.run(image).outcomes == {ERROR: 1}  # vanished before its tags could be written
        h.analyzer._during_analysis = None
        renamed = photos / "renamed.jpg"
        assert h.run(renamed).outcomes == {ANALYSED: 1}  # not mistaken for a move of the error row
        assert h.writer.read_verdict(renamed)["Verdict"] == "Good"
        assert h.index.get(renamed)["status"] == "ok"
    finally:
        h.close()


def test_a_review_recorded_during_analysis_wins(tmp_path, photos):
    image = make_jpeg(photos / "a_poor.jpg", size=SMALL)
    h = Harness(tmp_path)
    try:
        h.run(image)
        make_jpeg(image, size=SMALL, variant=2)  # changed: will be analysed again

        def reviewer_acts_meanwhile(path):
            h.index.record_review(path, verdict="good", defect=None, reviewed_by="ann", reviewed_at="t")

        h.analyzer._during_analysis = reviewer_acts_meanwhile
        h.run(image)
        assert h.writer.read_verdict(image)["Verdict"] == "Good"
    finally:
        h.close()


def test_a_symlink_swapped_in_after_identify_is_never_followed(harness, photos, tmp_path, monkeypatch):
    """Between the look at a file and its decoding, a stranger replaces it by a symlink to a file
    outside the watched folders: the decoders never read that file, and the path gets an error row."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = make_jpeg(outside / "secret.jpg", size=SMALL)
    secret_bytes = secret.read_bytes()
    image = make_jpeg(photos / "a.jpg", size=SMALL)
    load = pipeline_module.load_views_pinned

    def swapped_then_loaded(path, **options):
        link = path.with_name(".swap")
        os.symlink(secret, link)
        os.replace(link, path)
        return load(path, **options)

    monkeypatch.setattr(pipeline_module, "load_views_pinned", swapped_then_loaded)
    assert harness.run(image).outcomes == {ERROR: 1}
    assert harness.index.get(image)["error"] == "is a symbolic link (not followed)"
    assert harness.analyzer.calls == []  # nothing decoded reached the models
    assert secret.read_bytes() == secret_bytes
