"""Early analysis: files analysed while they wait to be complete, and the result used only if the
file is still exactly what was read. Unit tests of the bookkeeping, then the pipeline with the real
decoder, ExifTool and SQLite file (the analyzer is test_pipeline's stand-in, which counts its calls)."""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from pathlib import Path

import pytest

from pixelperfect_daemon.early_analysis import (
    SETTLED_SECONDS,
    EarlyResult,
    EarlyResults,
    TwoLaneQueue,
    settled_identity,
)
from pixelperfect_daemon.file_replace import FileIdentity
from pixelperfect_daemon.pipeline import ANALYSED, MOVED, Pipeline
from pixelperfect_daemon.result import AnalysisResult
from tests.fixtures_images import make_jpeg
from tests.test_pipeline import SMALL, FakeAnalyzer, Harness

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")


def settled(path: Path) -> Path:
    """Give ``path`` an mtime a minute old, as a file copied with its times (or finished long ago) has."""
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def result_for(path: Path, model_version: str = "fake-1") -> AnalysisResult:
    return AnalysisResult(
        path=str(path), verdict="good", quality=0.8, defect=None, defect_scores=None, model_version=model_version
    )


# --- which files may be read early ------------------------------------------------------------


def test_a_file_written_just_now_is_not_settled(tmp_path):
    fresh = tmp_path / "fresh.jpg"
    fresh.write_bytes(b"still arriving")
    assert settled_identity(fresh) is None
    assert settled_identity(fresh, now=time.time() + 2 * SETTLED_SECONDS) == FileIdentity.of(fresh)


def test_only_regular_files_with_a_past_mtime_are_settled(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"complete")
    settled(photo)
    assert settled_identity(photo) == FileIdentity.of(photo)
    link = tmp_path / "link.jpg"
    link.symlink_to(photo)
    assert settled_identity(link) is None
    assert settled_identity(tmp_path / "missing.jpg") is None
    future = time.time() + 3600  # a clock ahead of ours: its writes cannot be told apart
    os.utime(photo, (future, future))
    assert settled_identity(photo) is None


# --- the bookkeeping --------------------------------------------------------------------------


def test_a_kept_result_is_taken_only_for_the_identity_and_model_it_was_made_with(tmp_path):
    path = tmp_path / "a.jpg"
    identity = FileIdentity(1, 2, 300, 400)
    results = EarlyResults()

    def keep(model_version="fake-1"):
        assert results.want(path, identity) and results.begin(path)
        results.finish(path, EarlyResult(identity, result_for(path, model_version), (64, 48), "now"))

    keep()
    assert results.take(path, identity, "fake-1").size == (64, 48)
    assert results.take(path, identity, "fake-1") is None  # taken once
    keep()
    assert results.take(path, FileIdentity(1, 2, 301, 400), "fake-1") is None  # written to since
    keep(model_version="fake-1+lib-abc")
    assert results.take(path, identity, "fake-1") is None  # analysed before a library adaptation changed


def test_a_file_is_not_offered_twice_for_the_same_identity(tmp_path):
    path = tmp_path / "a.jpg"
    identity = FileIdentity(1, 2, 300, 400)
    results = EarlyResults()
    assert results.want(path, identity)
    assert not results.want(path, identity)  # queued
    assert results.begin(path)
    assert not results.want(path, identity)  # running
    results.finish(path, EarlyResult(identity, None))  # not analysable early (e.g. already indexed)
    assert not results.want(path, identity)
    assert results.want(path, FileIdentity(1, 2, 999, 400))  # changed: worth another look
    assert results.begin(path)
    results.finish(path, None)  # written to while read: nothing kept, the older finding dropped
    assert results.want(path, identity)


def test_taking_a_file_calls_off_its_queued_early_job(tmp_path):
    path = tmp_path / "a.jpg"
    results = EarlyResults()
    assert results.want(path, FileIdentity(1, 2, 3, 4))
    assert results.take(path, FileIdentity(1, 2, 3, 4), "fake-1") is None
    assert not results.begin(path)


def test_taking_a_file_waits_for_its_early_analysis_in_progress(tmp_path):
    path, identity = tmp_path / "a.jpg", FileIdentity(1, 2, 3, 4)
    results = EarlyResults()
    assert results.want(path, identity) and results.begin(path)
    taken = []
    taker = threading.Thread(target=lambda: taken.append(results.take(path, identity, "fake-1")))
    taker.start()
    time.sleep(0.2)
    assert taker.is_alive() and taken == []
    results.finish(path, EarlyResult(identity, result_for(path), (64, 48), "now"))
    taker.join(5)
    assert taken[0].result.quality == 0.8


def test_the_oldest_results_are_forgotten_beyond_the_limit(tmp_path):
    results = EarlyResults(max_kept=2)
    identity = FileIdentity(1, 2, 3, 4)
    for name in ("a", "b", "c"):
        path = tmp_path / name
        assert results.want(path, identity) and results.begin(path)
        results.finish(path, EarlyResult(identity, result_for(path), (1, 1), "now"))
    assert results.kept_count == 2
    assert results.take(tmp_path / "a", identity, "fake-1") is None
    assert results.take(tmp_path / "c", identity, "fake-1") is not None


def test_complete_files_go_before_early_work_and_early_work_never_waits():
    lanes = TwoLaneQueue(maxsize=2, early_size=1)
    assert lanes.offer("early 1")
    assert not lanes.offer("early 2")  # the lane is full: dropped, offered again later
    assert lanes.empty()  # early work is optional: the stage may end without it
    lanes.put("complete 1")
    lanes.put("complete 2")
    with pytest.raises(queue.Full):
        lanes.put("complete 3", timeout=0.05)
    assert [lanes.get(), lanes.get(), lanes.get()] == ["complete 1", "complete 2", "early 1"]
    with pytest.raises(queue.Empty):
        lanes.get(timeout=0.05)


# --- the pipeline -----------------------------------------------------------------------------


class EarlyHarness(Harness):
    """A pipeline that analyses early: files are offered first, then submitted once "complete"."""

    def start(self) -> Pipeline:
        self.pipeline = Pipeline(
            self.settings, self.analyzer, writer=self.writer, index=self.index, stop=threading.Event(), early=True
        )
        self.pipeline.start()
        return self.pipeline

    def offer_and_wait(self, path: Path, kept: int = 1) -> None:
        self.pipeline.analyse_early([path])
        deadline = time.monotonic() + 30
        while self.pipeline.early.kept_count < kept:
            assert time.monotonic() < deadline, "no early result"
            time.sleep(0.01)

    def complete(self, *paths: Path):
        for path in paths:
            self.pipeline.submit(path)
        self.pipeline.close_input()
        assert self.pipeline.join(timeout=60)
        return self.pipeline.stats


@pytest.fixture
def early(tmp_path):
    h = EarlyHarness(tmp_path)
    h.start()
    yield h
    h.close()


@needs_exiftool
def test_a_file_analysed_while_it_waited_is_tagged_from_that_analysis(early, tmp_path):
    photo = settled(make_jpeg(tmp_path / "poor_blur.jpg", size=SMALL))
    early.offer_and_wait(photo)
    stats = early.complete(photo)
    assert stats.outcomes == {ANALYSED: 1} and stats.analysed_early == 1
    assert early.analyzer.calls == [photo]  # once, early
    assert early.writer.read_verdict(photo)["Verdict"] == "Poor"
    assert early.index.get(photo)["verdict"] == "poor"


@needs_exiftool
def test_a_file_rewritten_after_its_early_analysis_is_analysed_again(early, tmp_path):
    photo = settled(make_jpeg(tmp_path / "a.jpg", size=SMALL))
    early.offer_and_wait(photo)
    settled(make_jpeg(photo, size=(80, 60), variant=1))  # the copy went on: other bytes
    stats = early.complete(photo)
    assert stats.outcomes == {ANALYSED: 1} and stats.analysed_early == 0
    assert early.analyzer.calls == [photo, photo]
    assert (early.index.get(photo)["width"], early.index.get(photo)["height"]) == (80, 60)


def test_a_file_still_being_written_is_not_read_early(early, tmp_path):
    fresh = make_jpeg(tmp_path / "a.jpg", size=SMALL)  # mtime: now
    early.pipeline.analyse_early([fresh])
    time.sleep(0.3)
    assert early.analyzer.calls == [] and early.pipeline.early.kept_count == 0


def test_a_file_held_open_for_writing_is_not_read_early(early, tmp_path):
    photo = settled(make_jpeg(tmp_path / "a.jpg", size=SMALL))
    with photo.open("r+b"):  # a copy pausing between chunks
        early.pipeline.analyse_early([photo])
        time.sleep(0.3)
        assert early.analyzer.calls == []
    early.offer_and_wait(photo)  # closed: read at the next poll
    assert early.analyzer.calls == [photo]


def test_a_file_written_to_during_its_early_analysis_keeps_no_result(tmp_path):
    def keep_writing(path):
        with path.open("ab") as f:
            f.write(b"more data arriving")

    h = EarlyHarness(tmp_path, analyzer=FakeAnalyzer(during_analysis=keep_writing))
    try:
        h.start()
        photo = settled(make_jpeg(tmp_path / "a.jpg", size=SMALL))
        h.pipeline.analyse_early([photo])
        deadline = time.monotonic() + 30
        while not h.analyzer.calls or h.pipeline.early._running:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert h.pipeline.early.kept_count == 0
    finally:
        h.pipeline.close_input()
        h.pipeline.join(timeout=60)
        h.close()


@needs_exiftool
def test_an_indexed_file_is_left_to_identify(early, tmp_path):
    photo = settled(make_jpeg(tmp_path / "a.jpg", size=SMALL))
    early.index.record_error(photo, error="earlier failure", analyzed_at="2026-01-01T00:00:00Z", model_version="x")
    early.offer_and_wait(photo)
    assert early.analyzer.calls == []  # identify decides: unchanged, moved, or analysed once complete


@needs_exiftool
def test_files_beyond_the_early_lane_are_offered_again_at_the_next_poll(early, tmp_path):
    photos = [settled(make_jpeg(tmp_path / f"{n}.jpg", size=SMALL, variant=n)) for n in range(12)]
    deadline = time.monotonic() + 60
    while early.pipeline.early.kept_count < len(photos):  # the daemon offers every waiting file at each poll
        assert time.monotonic() < deadline, "not every file was analysed early"
        early.pipeline.analyse_early(photos)
        time.sleep(0.05)
    stats = early.complete(*photos)
    assert stats.outcomes == {ANALYSED: len(photos)} and stats.analysed_early == len(photos)
    assert sorted(early.analyzer.calls) == sorted(photos)  # each once


@needs_exiftool
def test_a_file_that_may_have_been_moved_is_left_to_identify(early, tmp_path):
    photo = settled(make_jpeg(tmp_path / "a.jpg", size=SMALL))
    early.offer_and_wait(photo)
    early.complete(photo)
    moved = photo.rename(tmp_path / "renamed.jpg")  # the same bytes, its row's path gone
    again = EarlyHarness(tmp_path, analyzer=early.analyzer)
    try:
        again.start()
        again.offer_and_wait(moved)
        assert early.analyzer.calls == [photo]  # not analysed again: identify recognises the move
        stats = again.complete(moved)
        assert stats.outcomes == {MOVED: 1}
    finally:
        again.close()
