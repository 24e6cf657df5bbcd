"""Ignore rules, the stability tracker (fake clock), and the real watchdog observers on tmp_path."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path, PurePath

import pytest

from pixelperfect_daemon.watcher import (
    FileStabilityTracker,
    FolderWatcher,
    IgnoreRules,
    WatchError,
    iter_candidate_files,
    relative_to_root,
)

# Slow lane: real watchdog observers and stability waits (scripts/test.sh --fast leaves it out; CI runs it).
pytestmark = pytest.mark.slow


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- ignore rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        ".hidden.jpg",
        "~$draft.jpg",
        "IMG_1.jpg.tmp",
        "IMG_1.JPG.part",
        "IMG_1.jpg.crdownload",
        ".syncthing.IMG_1.jpg.tmp",
        "IMG_1.jpg_exiftool_tmp",
        "@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg",
        "#recycle/IMG_1.jpg",
        ".stversions/IMG_1~20240101.jpg",
        "sub/.cache/IMG_1.jpg",
        "notes.txt",
        "IMG_1.xmp",
        "IMG_1.CR2.xmp",
    ],
)
def test_ignored(relative):
    assert IgnoreRules().ignores(PurePath(relative))


@pytest.mark.parametrize("relative", ["IMG_1.jpg", "IMG_1.JPG", "2024/trip/IMG_1.CR2", "a.heic", "scan.tif", "x.png"])
def test_not_ignored(relative):
    assert not IgnoreRules().ignores(PurePath(relative))


def test_extra_patterns_match_the_name_or_the_relative_path():
    rules = IgnoreRules(extra_patterns=("*_thumb.jpg", "Exports/*"))
    assert rules.ignores(PurePath("a_thumb.jpg"))
    assert rules.ignores(PurePath("Exports/a.jpg"))
    assert not rules.ignores(PurePath("Imports/a.jpg"))


def test_relative_to_root(tmp_path):
    assert relative_to_root(tmp_path / "a" / "b.jpg", [tmp_path / "x", tmp_path]) == PurePath("a/b.jpg")
    assert relative_to_root(Path("/elsewhere/b.jpg"), [tmp_path]) is None


def test_iter_candidate_files_skips_ignored_folders_and_names(tmp_path):
    for relative in ("a.jpg", "sub/b.png", "@eaDir/c.jpg", ".stversions/d.jpg", "sub/e.jpg.part", "f.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_candidate_files(tmp_path, IgnoreRules())]
    assert found == ["a.jpg", "sub/b.png"]


# --- the stability tracker --------------------------------------------------------------------


def test_file_is_ready_only_after_holding_still(tmp_path):
    clock = FakeClock()
    tracker = FileStabilityTracker(2.0, clock=clock)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"first chunk")
    tracker.observe(image)  # first look: size and mtime recorded, the wait starts
    assert tracker.poll() == []
    clock.advance(1.5)
    with image.open("ab") as f:
        f.write(b"second chunk")
    assert tracker.poll() == []  # changed: the wait starts again
    clock.advance(1.9)
    assert tracker.poll() == []
    clock.advance(0.2)
    assert tracker.poll() == [image]
    assert tracker.pending_count == 0 and tracker.in_flight_count == 1
    clock.advance(10)
    assert tracker.poll() == []  # in flight: never handed out twice


def test_the_wait_counts_from_the_event_not_from_the_first_poll(tmp_path):
    clock = FakeClock()
    tracker = FileStabilityTracker(2.0, clock=clock)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"complete")
    tracker.observe(image)
    clock.advance(2.0)
    assert tracker.poll() == [image]


def test_repeated_events_queue_a_file_once(tmp_path):
    clock = FakeClock()
    tracker = FileStabilityTracker(1.0, clock=clock)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    for _ in range(50):
        tracker.observe(image)
    tracker.poll()
    clock.advance(1.0)
    assert tracker.poll() == [image]


def test_the_first_arrival_after_a_quiet_spell_is_announced_and_the_rest_of_the_burst_is_not(tmp_path):
    tracker = FileStabilityTracker(stable_seconds=2.0, clock=FakeClock())
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    first.write_bytes(b"a")
    second.write_bytes(b"b")
    tracker.observe(first)
    assert tracker.arrived.is_set()  # the daemon looks at once (early analysis), not at its next poll
    tracker.arrived.clear()
    tracker.observe(second)
    assert not tracker.arrived.is_set()  # a burst is polled at the usual pace, however large
    assert tracker.pending_paths() == [first, second]  # longest waiting first


def test_event_during_work_is_looked_at_again_after(tmp_path):
    clock = FakeClock()
    tracker = FileStabilityTracker(1.0, clock=clock)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    tracker.observe(image)
    tracker.poll()
    clock.advance(1)
    assert tracker.poll() == [image]
    tracker.observe(image)  # e.g. our own tag write, or the user editing it meanwhile
    assert tracker.pending_count == 0
    tracker.done(image)
    assert tracker.pending_count == 1 and tracker.in_flight_count == 0
    tracker.poll()
    clock.advance(1)
    assert tracker.poll() == [image]


def test_done_without_a_new_event_forgets_the_file(tmp_path):
    clock = FakeClock()
    tracker = FileStabilityTracker(0.0, clock=clock)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    tracker.observe(image)
    assert tracker.poll() == [image]
    tracker.done(image)
    assert (tracker.pending_count, tracker.in_flight_count) == (0, 0)


def test_vanished_folders_and_symlinks_are_dropped(tmp_path):
    clock = FakeClock()
    tracker = FileStabilityTracker(0.0, clock=clock)
    gone = tmp_path / "gone.jpg"
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    target = tmp_path / "target.bin"
    target.write_bytes(b"x")
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    for path in (gone, folder, link):
        tracker.observe(path)
    assert tracker.poll() == []
    assert tracker.pending_count == 0


# --- the real watchdog observers --------------------------------------------------------------


def wait_for_ready(tracker: FileStabilityTracker, timeout: float, expected: int | None = None) -> list[Path]:
    """Poll like the daemon does until ``expected`` files are ready (or the timeout)."""
    ready: list[Path] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready += tracker.poll()
        if expected is not None and len(ready) >= expected:
            time.sleep(0.3)  # and nothing more arrives
            ready += tracker.poll()
            break
        time.sleep(0.05)
    return ready


@pytest.fixture(params=[0.0, 0.1], ids=["inotify", "polling"])
def watcher(request, tmp_path):
    watch = tmp_path / "ingest"
    watch.mkdir()
    tracker = FileStabilityTracker(0.3)
    folder_watcher = FolderWatcher([watch], tracker, IgnoreRules(), poll_interval=request.param)
    folder_watcher.start()
    yield folder_watcher
    folder_watcher.stop()


def test_slow_chunked_copy_is_ready_once_complete(watcher):
    image = watcher.folders[0] / "IMG_0001.jpg"
    with image.open("wb") as f:
        for _ in range(6):
            f.write(os.urandom(4096))
            f.flush()
            time.sleep(0.1)  # a slow copy, but each pause shorter than stable_seconds
            assert watcher.tracker.poll() == []
    assert wait_for_ready(watcher.tracker, timeout=5, expected=1) == [image]
    assert image.stat().st_size == 6 * 4096


def test_file_rewritten_in_place_is_seen_again(watcher):
    image = watcher.folders[0] / "IMG_0003.jpg"
    image.write_bytes(os.urandom(5000))
    assert wait_for_ready(watcher.tracker, timeout=5, expected=1) == [image]
    watcher.tracker.done(image)
    with image.open("r+b") as f:  # an editor saving over the file: no create event, only writes
        f.write(os.urandom(100))
    assert wait_for_ready(watcher.tracker, timeout=5, expected=1) == [image]


def test_rename_into_place_is_seen_once_under_the_final_name(watcher):
    partial = watcher.folders[0] / "IMG_0002.jpg.part"
    partial.write_bytes(os.urandom(10000))
    time.sleep(0.2)
    final = partial.with_name("IMG_0002.jpg")
    partial.rename(final)
    assert wait_for_ready(watcher.tracker, timeout=5, expected=1) == [final]


def test_folder_moved_in_brings_its_files(watcher, tmp_path):
    outside = tmp_path / "card"
    (outside / "DCIM").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (outside / "DCIM" / name).write_bytes(os.urandom(100))
    shutil.move(str(outside), str(watcher.folders[0] / "card"))
    ready = wait_for_ready(watcher.tracker, timeout=5, expected=2)
    assert sorted(p.name for p in ready) == ["a.jpg", "b.jpg"]


def test_temporary_and_other_files_are_never_ready(watcher):
    folder = watcher.folders[0]
    (folder / "x.jpg.crdownload").write_bytes(b"x")
    (folder / ".syncthing.y.jpg.tmp").write_bytes(b"x")
    (folder / "notes.txt").write_bytes(b"x")
    (folder / "@eaDir").mkdir()
    (folder / "@eaDir" / "thumb.jpg").write_bytes(b"x")
    (folder / "photo.jpg").write_bytes(b"x")  # the one file that counts, seen with the same watcher
    assert wait_for_ready(watcher.tracker, timeout=1.5) == [folder / "photo.jpg"]


def test_burst_of_files_each_ready_exactly_once(watcher):
    folder = watcher.folders[0]
    for i in range(300):
        (folder / f"IMG_{i:04}.jpg").write_bytes(os.urandom(64))
    ready = wait_for_ready(watcher.tracker, timeout=15, expected=300)
    assert len(ready) == 300 and len(set(ready)) == 300


def test_scan_finds_files_present_before_the_start_and_skips_known_ones(tmp_path):
    watch = tmp_path / "ingest"
    (watch / "2024").mkdir(parents=True)
    known = watch / "known.jpg"
    known.write_bytes(b"known")
    (watch / "2024" / "new.jpg").write_bytes(b"new")
    st = known.stat()
    tracker = FileStabilityTracker(0.0)
    folder_watcher = FolderWatcher(
        [watch], tracker, IgnoreRules(), known_files=lambda: {str(known): (st.st_size, st.st_mtime)}
    )
    assert folder_watcher.scan() == 1
    assert tracker.poll() == [watch / "2024" / "new.jpg"]


def test_missing_watch_folder_is_an_error(tmp_path):
    folder_watcher = FolderWatcher([tmp_path / "nope"], FileStabilityTracker(1.0), IgnoreRules())
    with pytest.raises(WatchError, match="nope"):
        folder_watcher.start()
