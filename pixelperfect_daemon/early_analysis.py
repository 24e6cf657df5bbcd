"""Analysing a new file while its stability wait runs, so that its tags follow as soon as it is complete.

The wait (``[watch] stable_seconds``) keeps the daemon from *writing* to a file that is still being
copied; reading it does no harm. So while a file waits, and the workers have no complete file to
analyse, it is decoded and analysed, and the result is kept with the file's identity (device,
inode, size, mtime) from before the read. Once the file is complete, the pipeline uses the kept
result only if the file is still exactly that identity, and analyses it again otherwise. The tags
are written after the wait, with the same checks as ever.

The bytes read are the bytes on disk: a file is read early only if its last write was at least
``SETTLED_SECONDS`` before the read, so any later write gives it a newer mtime and a new identity;
and its identity after the read must equal the one before.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from .file_replace import FileIdentity
from .result import AnalysisResult

# Well above the kernel's coarse timestamp tick: a write after the read cannot share the old mtime.
SETTLED_SECONDS = 0.1
# Results of files that never completed (renamed away, removed) are forgotten oldest first.
MAX_KEPT = 4096
# How many of the longest-waiting files are looked at for early analysis each time: a backlog of
# 100 000 waiting files costs no more than a burst of 1 000.
LOOKAHEAD = 1000


@dataclass(frozen=True)
class EarlyResult:
    identity: FileIdentity  # the file as it was read
    result: AnalysisResult | None  # None: left to the pipeline (an indexed file, a decoding failure)
    size: tuple[int, int] | None = None  # (width, height)
    analyzed_at: str | None = None


def settled_identity(path: Path, now: float | None = None) -> FileIdentity | None:
    """``path``'s identity if it is a regular file last written ``SETTLED_SECONDS`` ago or more, else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if (time.time() if now is None else now) - st.st_mtime < SETTLED_SECONDS:
        return None  # still being written (or its mtime is in the future)
    return FileIdentity.from_stat(st)


class EarlyResults:
    """Which waiting files are queued for or in early analysis, and the results kept (thread-safe)."""

    def __init__(self, max_kept: int = MAX_KEPT):
        self.max_kept = max_kept
        self._changed = threading.Condition()
        self._queued: set[Path] = set()
        self._running: set[Path] = set()
        self._kept: OrderedDict[Path, EarlyResult] = OrderedDict()

    def is_busy(self, path: Path) -> bool:
        """Whether ``path`` is queued for or in early analysis."""
        with self._changed:
            return path in self._queued or path in self._running

    def is_new(self, path: Path, identity: FileIdentity) -> bool:
        """Whether ``path`` is neither queued, nor running, nor was read as ``identity``."""
        with self._changed:
            return self._is_new(path, identity)

    def _is_new(self, path: Path, identity: FileIdentity) -> bool:
        if path in self._queued or path in self._running:
            return False
        kept = self._kept.get(path)
        return kept is None or kept.identity != identity

    def want(self, path: Path, identity: FileIdentity) -> bool:
        """True, and ``path`` counted as queued, when ``is_new``."""
        with self._changed:
            if not self._is_new(path, identity):
                return False
            self._queued.add(path)
            return True

    def decline(self, path: Path, identity: FileIdentity) -> None:
        """``path`` as ``identity`` is not for early analysis: not offered again until it changes."""
        with self._changed:
            self._remember(path, EarlyResult(identity, None))

    def unqueue(self, path: Path) -> None:
        """``want`` said yes, but the job could not be queued."""
        with self._changed:
            self._queued.discard(path)

    def begin(self, path: Path) -> bool:
        """A worker starts on ``path``; False when its complete file has been taken on meanwhile."""
        with self._changed:
            if path not in self._queued:
                return False
            self._queued.discard(path)
            self._running.add(path)
            return True

    def finish(self, path: Path, early: EarlyResult | None) -> None:
        """Keep what the early analysis found (None: nothing worth keeping; it may be offered again)."""
        with self._changed:
            self._running.discard(path)
            if early is None:
                self._kept.pop(path, None)  # describes an older version of the file
            else:
                self._remember(path, early)
            self._changed.notify_all()

    def _remember(self, path: Path, early: EarlyResult) -> None:
        self._kept[path] = early
        self._kept.move_to_end(path)
        while len(self._kept) > self.max_kept:
            self._kept.popitem(last=False)

    def take(self, path: Path, identity: FileIdentity, model_version: str) -> EarlyResult | None:
        """The kept result for ``path`` if it was read as ``identity`` and analysed by ``model_version``.

        Waits while another worker is analysing ``path`` early (it is nearly done) rather than
        analysing it twice at once; a queued early job for it is called off."""
        with self._changed:
            self._queued.discard(path)
            while path in self._running:
                self._changed.wait()
            early = self._kept.pop(path, None)
        if early is None or early.result is None or early.identity != identity:
            return None
        if early.result.model_version != model_version:
            return None  # a library adaptation was learnt meanwhile
        return early

    @property
    def kept_count(self) -> int:
        with self._changed:
            return len(self._kept)


class TwoLaneQueue:
    """A bounded FIFO of complete files, and a small lane of early work taken only while the FIFO is empty.

    ``put``/``get``/``get_nowait``/``empty`` behave as ``queue.Queue``'s (``empty`` looks at the FIFO
    only: early work is optional and dropped at a stop); ``offer`` adds early work without waiting.
    """

    def __init__(self, maxsize: int, early_size: int):
        self.maxsize, self.early_size = maxsize, early_size
        self._changed = threading.Condition()
        self._complete: deque = deque()
        self._early: deque = deque()

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._complete) < self.maxsize, timeout if block else 0):
                raise queue.Full
            self._complete.append(item)
            self._changed.notify_all()

    def early_room(self) -> int:
        """How much early work the lane takes now."""
        with self._changed:
            return self.early_size - len(self._early)

    def offer(self, item) -> bool:
        """Queue early work; False (nothing queued) when the lane is full."""
        with self._changed:
            if len(self._early) >= self.early_size:
                return False
            self._early.append(item)
            self._changed.notify_all()
            return True

    def get(self, block: bool = True, timeout: float | None = None):
        with self._changed:
            if not self._changed.wait_for(lambda: self._complete or self._early, timeout if block else 0):
                raise queue.Empty
            item = self._complete.popleft() if self._complete else self._early.popleft()
            self._changed.notify_all()
            return item

    def get_nowait(self):
        return self.get(block=False)

    def empty(self) -> bool:
        with self._changed:
            return not self._complete
