"""Discovering files in the watch folders and waiting until each is complete.

* ``IgnoreRules``: temporary files of copy and sync tools, NAS metadata folders, our own scratch files.
* ``FileStabilityTracker``: a file is ready once it is a regular file whose size and mtime stayed
  unchanged for ``stable_seconds`` on a monotonic clock. Each path is pending or in flight at most
  once, so a burst of events never queues a file twice, and nothing is dropped (the pending set
  is unbounded; the queues after it are bounded).
* ``FolderWatcher``: feeds the tracker from watchdog events (inotify, or polling for SMB/NFS shares
  which send no inotify events) and from full scans of the folders.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from .common import path_to_text
from .files import is_image_name

logger = logging.getLogger(__name__)

# File names copy/sync tools use while a file is incomplete, and our own ExifTool scratch file.
TEMPORARY_FILE_PATTERNS = (".*", "~$*", "*.tmp", "*.part", "*.crdownload", ".syncthing.*", "*_exiftool_tmp")
# Folders NAS systems and sync tools keep their own copies in (hidden folders are skipped too).
IGNORED_FOLDER_NAMES = ("@eaDir", "#recycle", ".stversions")
# The events that can mean "a file to look at". With inotify, a file written in place is seen when
# it is closed, not at every write(): a 5 MB copy, or ExifTool writing our tags, sends hundreds of
# IN_MODIFY events, and the tracker polls a file's size and mtime anyway once it has seen it.
INOTIFY_EVENTS = (FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent)
# Polling compares snapshots: it has no close event, and reports a rewrite as a modification.
POLLING_EVENTS = (FileCreatedEvent, FileMovedEvent, FileModifiedEvent, DirCreatedEvent, DirMovedEvent)


class WatchError(Exception):
    """A watch folder cannot be watched."""


@dataclass(frozen=True)
class IgnoreRules:
    """Which paths under a watch folder are not images to analyse."""

    extra_patterns: tuple[str, ...] = ()  # [watch] ignore: globs against the name or the relative path

    def ignores_folder(self, name: str) -> bool:
        return name.startswith(".") or name in IGNORED_FOLDER_NAMES

    def ignores(self, relative_path: PurePath) -> bool:
        """True for anything that is not an image to analyse (``relative_path`` is under a watch folder)."""
        if any(self.ignores_folder(part) for part in relative_path.parts[:-1]):
            return True
        name = relative_path.name
        lowered = name.lower()
        if any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in TEMPORARY_FILE_PATTERNS):
            return True
        relative = relative_path.as_posix()
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(relative, p) for p in self.extra_patterns):
            return True
        return not is_image_name(name)


def relative_to_root(path: Path, roots: Iterable[Path]) -> PurePath | None:
    """``path`` relative to the watch folder holding it, or None when it is under none."""
    for root in roots:
        try:
            return path.relative_to(root)
        except ValueError:
            continue
    return None


def iter_candidate_files(root: Path, rules: IgnoreRules, stop: threading.Event | None = None) -> Iterator[Path]:
    """Every file under ``root`` the rules do not ignore (sorted, so scans are repeatable)."""
    for folder, subfolders, names in os.walk(root):
        if stop is not None and stop.is_set():
            return
        subfolders[:] = sorted(d for d in subfolders if not rules.ignores_folder(d))
        folder_path = Path(folder)
        for name in sorted(names):
            path = folder_path / name
            if not rules.ignores(path.relative_to(root)):
                yield path


@dataclass
class _Observation:
    size: int | None  # None until the first poll has stat'ed the file
    mtime_ns: int | None
    since: float  # monotonic time the size/mtime were first seen as they are


class FileStabilityTracker:
    """Paths seen recently, until each has held still for ``stable_seconds`` (thread-safe)."""

    def __init__(self, stable_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.stable_seconds = stable_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[Path, _Observation] = {}
        self._in_flight: set[Path] = set()
        self._seen_again: set[Path] = set()  # changed while in flight: look again once done
        # Set when a file arrives while none is waiting: the first files of a burst are looked at
        # (and analysed early) at once, not at the next poll.
        self.arrived = threading.Event()

    def _first_look(self, path: Path) -> _Observation:
        """The wait starts now, with what the file is now (a burst is not delayed by a poll)."""
        try:
            st = os.lstat(path)
        except OSError:
            return _Observation(None, None, self._clock())  # the next poll decides
        return _Observation(st.st_size, st.st_mtime_ns, self._clock())

    def observe(self, path: Path) -> None:
        """A file was created, modified or moved here: (re)start its stability wait."""
        path = Path(path)
        seen = self._first_look(path)
        with self._lock:
            first = not self._pending
            if path in self._in_flight:
                self._seen_again.add(path)
            else:
                self._pending[path] = seen
        if first:
            self.arrived.set()

    def poll(self) -> list[Path]:
        """Stat the pending paths; return those now ready, which become in flight until ``done``."""
        with self._lock:
            pending = list(self._pending.items())
        changes: dict[Path, _Observation | None] = {}
        now = self._clock()
        for path, seen in pending:
            try:
                st = os.lstat(path)
            except OSError:
                changes[path] = None  # vanished (moved away, deleted): nothing to analyse
                continue
            if not stat.S_ISREG(st.st_mode):
                changes[path] = None  # a folder, a symlink, a device: never analysed
                continue
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
                changes[path] = _Observation(st.st_size, st.st_mtime_ns, now)
        ready = []
        with self._lock:
            for path, seen in pending:
                current = self._pending.get(path)
                if current is not seen:
                    continue  # observed again meanwhile: its wait restarted
                change = changes.get(path, seen)
                if change is None:
                    del self._pending[path]
                    logger.debug("no longer a regular file, not analysed: %s", path)
                elif change is not seen:
                    self._pending[path] = change
                elif now - seen.since >= self.stable_seconds:
                    del self._pending[path]
                    self._in_flight.add(path)
                    ready.append(path)
        return ready

    def done(self, path: Path) -> None:
        """The pipeline is finished with ``path`` (or handed it back)."""
        path = Path(path)
        with self._lock:
            self._in_flight.discard(path)
            if path in self._seen_again:
                self._seen_again.discard(path)
                self._pending[path] = self._first_look(path)

    def pending_paths(self) -> list[Path]:
        """The paths waiting to be complete, longest waiting first."""
        with self._lock:
            return list(self._pending)

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def in_flight_count(self) -> int:
        with self._lock:
            return len(self._in_flight)


class _EventHandler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        # A move's destination is what is new here (rename-into-place of a .part file).
        path = getattr(event, "dest_path", "") or event.src_path
        path = Path(os.fsdecode(path))
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # A folder moved in brings files that send no events of their own.
                self.watcher.scan_folder(path)
            return
        self.watcher.consider(path)


class FolderWatcher:
    """Watches the folders (recursively) and scans them; every candidate goes to the tracker."""

    def __init__(
        self,
        folders: Iterable[Path],
        tracker: FileStabilityTracker,
        rules: IgnoreRules,
        *,
        poll_interval: float = 0.0,
        known_files: Callable[[], dict[str, tuple[int | None, float | None]]] | None = None,
        stop: threading.Event | None = None,
    ):
        self.folders = tuple(Path(os.path.abspath(f)) for f in folders)
        self.tracker = tracker
        self.rules = rules
        self.poll_interval = poll_interval
        # {path: (size, mtime)} of indexed files: scans skip those unchanged without a second look.
        self.known_files = known_files
        self.stop_event = stop or threading.Event()
        self._observer = None

    def consider(self, path: Path) -> None:
        relative = relative_to_root(path, self.folders)
        if relative is None or self.rules.ignores(relative):
            return
        logger.debug("seen %s", path)
        self.tracker.observe(path)

    def scan_folder(self, folder: Path, known: dict | None = None) -> int:
        """Hand every candidate under ``folder`` to the tracker; return how many."""
        root = next((r for r in self.folders if folder == r or r in folder.parents), None)
        if root is None:
            return 0
        count = 0
        for path in iter_candidate_files(folder, self.rules, self.stop_event):
            if root != folder and self.rules.ignores(path.relative_to(root)):
                continue
            if known is not None and self._unchanged(path, known):
                continue
            self.tracker.observe(path)
            count += 1
        return count

    @staticmethod
    def _unchanged(path: Path, known: dict) -> bool:
        recorded = known.get(path_to_text(path))
        if recorded is None:
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return (st.st_size, st.st_mtime) == recorded

    def scan(self) -> int:
        """Full scan of every watch folder (at start and every rescan_interval)."""
        known = self.known_files() if self.known_files is not None else None
        count = sum(self.scan_folder(folder, known) for folder in self.folders if folder.is_dir())
        logger.info("scan found %d new or changed file(s) in %d folder(s)", count, len(self.folders))
        return count

    def start(self) -> None:
        missing = [str(f) for f in self.folders if not f.is_dir()]
        if missing:
            raise WatchError(f"watch folder(s) not found: {', '.join(missing)}")
        if self.poll_interval > 0:
            self._observer = PollingObserver(timeout=self.poll_interval)
            how, events = f"polling every {self.poll_interval:g} s", POLLING_EVENTS
        else:
            self._observer = Observer()
            how, events = "inotify", INOTIFY_EVENTS
        handler = _EventHandler(self)
        for folder in self.folders:
            self._observer.schedule(handler, str(folder), recursive=True, event_filter=list(events))
            logger.info("watching %s (%s)", folder, how)
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None
