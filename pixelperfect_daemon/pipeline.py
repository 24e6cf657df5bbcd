"""The stages a complete file goes through, in order:

    identify → decode → analyse → write metadata → index

(discovering files and waiting until each is complete come before, in ``watcher.py``). Each stage
has its own threads and a bounded ``queue.Queue`` in front of it, so a burst of files waits in the
stability tracker instead of filling memory with decoded 24-megapixel images.

Exactly once: ``identify`` skips a file whose index row has the same size and mtime or the same
content hash, and turns a known hash at a path that no longer exists into a move (the row and its
review follow the file). A new file is hashed only when it could be such a move. Tags are written before the row, both idempotently, so a crash between
them is repaired on restart: a file without a row is analysed again and its tags are replaced.
A human review always wins: changed content is re-analysed, but the tags keep the reviewed verdict.

One ``threading.Event`` stops everything: the stages up to ``analyse`` finish the file in hand and
hand the rest back (they have no row, so the next start picks them up); ``write metadata`` and
``index`` finish everything already analysed.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import one_line, sha256_of, utc_now
from .config import Settings
from .index import ImageIndex
from .file_views import FileViews, load_views
from .loading import ImageLoadError
from .metadata import MetadataWriter
from .result import AnalysisResult

logger = logging.getLogger(__name__)

# How long a stage waits on an empty queue before looking at the stop event again.
_QUEUE_POLL_SECONDS = 0.1

# Outcomes: how a file left the pipeline.
ANALYSED = "analysed"
UNCHANGED = "unchanged"
MOVED = "moved"
CHANGED = "changed"  # modified while being analysed: looked at again once it is stable
IGNORED = "ignored"  # no longer a regular file
ERROR = "error"


def effective_verdict(
    model_verdict: str, model_defect: str | None, row: dict | None
) -> tuple[str, str | None, str | None, str | None]:
    """(verdict, defect, reviewed_by, reviewed_at) to tag: a human review wins over the model."""
    if row and row.get("reviewed_verdict"):
        return row["reviewed_verdict"], row.get("reviewed_defect"), row.get("reviewed_by"), row.get("reviewed_at")
    return model_verdict, model_defect, None, None


@dataclass
class Job:
    """One file on its way through the pipeline."""

    path: Path
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    row: dict | None = None  # its index row before this run
    decoded: FileViews | None = None  # dropped once analysed
    width: int | None = None
    height: int | None = None
    result: AnalysisResult | None = None
    analyzed_at: str | None = None
    tagged_file: Path | None = None
    moved_from: str | None = None
    outcome: str | None = None  # set once the file is finished with
    error: str | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    steps: tuple[Callable[[Job], None], ...]  # run in order by the same thread, until one finishes the job
    threads: int
    queue_size: int
    # On stop: True = finish every queued job (already analysed: do not waste it);
    # False = finish the job in hand, hand the queued ones back.
    drains_on_stop: bool


@dataclass
class PipelineStats:
    outcomes: Counter = field(default_factory=Counter)
    handed_back: int = 0

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())


class Pipeline:
    """identify → decode → analyse → write metadata → index, with bounded queues between them.

    ``writer`` and ``index`` are None in a dry run: files are analysed and logged, nothing is written.
    ``on_done(path)`` is called for every file that leaves the pipeline, however it left.
    """

    def __init__(
        self,
        settings: Settings,
        analyzer,
        *,
        writer: MetadataWriter | None,
        index: ImageIndex | None,
        stop: threading.Event,
        on_done: Callable[[Path], None] | None = None,
        on_finished: Callable[[Job], None] | None = None,
    ):
        self.settings = settings
        self.analyzer = analyzer
        self.writer = writer
        self.index = index
        self.stop_event = stop
        self.dry_run = writer is None
        self._on_done = on_done
        self._on_finished = on_finished
        workers = settings.analysis.workers
        self.stages = [
            Stage("identify", (self.identify,), threads=1, queue_size=2 * workers, drains_on_stop=False),
            # Decode and analyse share a thread: the decoded pixels are used while still in this
            # core's cache and never wait in a queue (measured: 5 % less CPU
            # per image than separate decode and analyse threads, and half the memory).
            Stage("decode, analyse", (self.decode, self.analyse), threads=workers, queue_size=2 * workers,
                  drains_on_stop=False),
            Stage("write metadata", (self.write_metadata,), threads=1, queue_size=2 * workers, drains_on_stop=True),
            Stage("index", (self.record,), threads=1, queue_size=2 * workers, drains_on_stop=True),
        ]
        self._queues = [queue.Queue(maxsize=s.queue_size) for s in self.stages]
        self._threads: list[list[threading.Thread]] = [[] for _ in self.stages]
        self._input_closed = threading.Event()
        self._stats_lock = threading.Lock()
        self.stats = PipelineStats()

    # -- the stages -------------------------------------------------------------------------

    def identify(self, job: Job) -> None:
        """Stat and hash the file; finish it here if it is unchanged or was moved."""
        try:
            st = os.lstat(job.path)
        except FileNotFoundError:
            job.outcome, job.error = ERROR, "file vanished before it could be analysed"
            return
        if not stat.S_ISREG(st.st_mode):
            job.outcome = IGNORED
            return
        job.size, job.mtime = st.st_size, st.st_mtime
        if self.index is None:
            return  # dry run: no index to compare with
        job.row = self.index.get(job.path)
        if job.row is not None and (job.row["size"], job.row["mtime"]) == (job.size, job.mtime):
            job.outcome = UNCHANGED
            return
        # Hashing 5-10 MB costs as much as a tenth of an analysis: a new file is hashed here only
        # when it could be a moved one, i.e. an analysed row of the same size lost its file.
        moved_candidates = [
            other for other in self.index.find_by_size(job.size)
            if other["path"] != str(job.path) and not os.path.lexists(other["path"])
        ]
        if job.row is None and not moved_candidates:
            return
        job.sha256 = sha256_of(job.path)
        if job.row is not None and job.row["sha256"] == job.sha256:
            self.index.record_stat(job.path, size=job.size, mtime=job.mtime)
            job.outcome = UNCHANGED
            return
        for other in moved_candidates:
            # Only a finished analysis moves with the file; an error row's file is simply retried.
            if other["sha256"] == job.sha256:
                self._record_move(job, other)
                return

    def _record_move(self, job: Job, old_row: dict) -> None:
        self.index.record_move(Path(old_row["path"]), job.path)
        self.index.record_stat(job.path, size=job.size, mtime=job.mtime)
        job.moved_from, job.outcome = old_row["path"], MOVED
        tagged_elsewhere = old_row["tagged_file"] not in (None, old_row["path"])
        if tagged_elsewhere and old_row["verdict"] is not None:
            # The sidecar stayed behind with the old name: tag the file's new sidecar.
            verdict, defect, reviewed_by, reviewed_at = effective_verdict(old_row["verdict"], old_row["defect"], old_row)
            job.tagged_file = self.writer.write_verdict(
                job.path,
                verdict=verdict,
                defect=defect,
                quality=old_row["quality"],
                model_version=old_row["model_version"] or "",
                analyzed_at=old_row["analyzed_at"] or utc_now(),
                reviewed_by=reviewed_by,
                reviewed_at=reviewed_at,
            )
            self.index.set_tagged_file(job.path, job.tagged_file)

    def decode(self, job: Job) -> None:
        try:
            job.decoded = load_views(job.path, max_pixels=self.settings.analysis.max_pixels)
        except ImageLoadError as error:
            job.result = AnalysisResult.failed(str(job.path), one_line(error), self.analyzer.model_version)
            job.analyzed_at = utc_now()
            job.outcome, job.error = ERROR, job.result.error
            return
        job.width, job.height = job.decoded.original_size

    def analyse(self, job: Job) -> None:
        decoded, job.decoded = job.decoded, None  # free the pixels as soon as the models are done
        job.result = self.analyzer.analyze_views(job.path, decoded)
        job.analyzed_at = utc_now()
        if job.result.verdict == "error":
            job.outcome, job.error = ERROR, job.result.error

    def write_metadata(self, job: Job) -> None:
        if self.writer is None:
            return  # dry run
        try:
            st = os.lstat(job.path)
        except FileNotFoundError:
            job.outcome, job.error = ERROR, "file vanished before its tags could be written"
            return
        if (st.st_size, st.st_mtime) != (job.size, job.mtime):
            # Someone is still writing it: replacing it now would lose their data.
            job.outcome = CHANGED
            return
        # A review may have landed while the file was being analysed: it wins.
        job.row = self.index.get(job.path) if self.index is not None else job.row
        verdict, defect, reviewed_by, reviewed_at = effective_verdict(job.result.verdict, job.result.defect, job.row)
        job.tagged_file = self.writer.write_verdict(
            job.path,
            verdict=verdict,
            defect=defect,
            quality=job.result.quality,
            model_version=job.result.model_version,
            analyzed_at=job.analyzed_at,
            reviewed_by=reviewed_by,
            reviewed_at=reviewed_at,
        )
        if job.tagged_file == job.path:
            # The file changed by our write: the row must describe it as it is now.
            st = os.lstat(job.path)
            job.size, job.mtime, job.sha256 = st.st_size, st.st_mtime, sha256_of(job.path)
        elif job.sha256 is None:
            job.sha256 = sha256_of(job.path)  # tags in a sidecar: the image is as identify saw it

    def record(self, job: Job) -> None:
        if self.index is not None:
            self.index.record_analysis(
                job.path,
                sha256=job.sha256,
                size=job.size,
                mtime=job.mtime,
                result=job.result,
                analyzed_at=job.analyzed_at,
                tagged_file=job.tagged_file,
                width=job.width,
                height=job.height,
            )
        job.outcome = ANALYSED

    # -- finishing a file -------------------------------------------------------------------

    def _finish(self, job: Job) -> None:
        """Record an error row if it failed, log one line, and tell the caller the file is done."""
        try:
            if job.outcome == ERROR and self.index is not None:
                self._record_error(job)
            self._log(job)
        except Exception as error:  # the index itself failed: the file has no row and is retried later
            logger.error("could not record %s: %s", job.path, one_line(error))
        with self._stats_lock:
            self.stats.outcomes[job.outcome] += 1
        if self._on_done is not None:
            self._on_done(job.path)
        if self._on_finished is not None:
            self._on_finished(job)

    def _record_error(self, job: Job) -> None:
        analyzed_at = job.analyzed_at or utc_now()
        if job.sha256 is None and job.size is not None:
            try:
                job.sha256 = sha256_of(job.path)  # so an unchanged broken file is not retried
            except OSError:
                pass  # vanished or unreadable: the row says why
        if job.result is not None:
            self.index.record_analysis(
                job.path,
                sha256=job.sha256,
                size=job.size,
                mtime=job.mtime,
                result=job.result,
                analyzed_at=analyzed_at,
                tagged_file=job.tagged_file,
                width=job.width,
                height=job.height,
                error=None if job.result.verdict == "error" else job.error,
            )
        else:
            self.index.record_error(
                job.path,
                error=job.error,
                analyzed_at=analyzed_at,
                model_version=self.analyzer.model_version,
                sha256=job.sha256,
                size=job.size,
                mtime=job.mtime,
            )

    def _log(self, job: Job) -> None:
        path = job.path
        if job.outcome == ANALYSED:
            verdict, defect, reviewed_by, _ = effective_verdict(job.result.verdict, job.result.defect, job.row)
            what = verdict + (f" ({defect})" if defect else "")
            if reviewed_by:
                what += f" as reviewed by {reviewed_by} (model: {job.result.verdict})"
            quality = f"quality {job.result.quality:.2f}" if job.result.quality is not None else "no quality"
            if self.dry_run:
                logger.info("dry run, nothing written: %s: %s, %s", path, what, quality)
            else:
                logger.info("tagged %s: %s, %s, into %s", path, what, quality, job.tagged_file)
        elif job.outcome == MOVED:
            logger.info("moved %s -> %s (row and review kept)", job.moved_from, path)
        elif job.outcome == ERROR:
            logger.warning("error %s: %s", path, job.error)
        elif job.outcome == CHANGED:
            logger.info("changed while being analysed, will look again once complete: %s", path)
        else:
            logger.debug("%s: %s", job.outcome, path)

    # -- running the stages -----------------------------------------------------------------

    def start(self) -> None:
        for number, stage in enumerate(self.stages):
            for thread_number in range(stage.threads):
                thread = threading.Thread(
                    target=self._stage_loop,
                    args=(number,),
                    name=f"pipeline-{stage.name.replace(', ', '-').replace(' ', '-')}-{thread_number}",
                    daemon=True,
                )
                self._threads[number].append(thread)
                thread.start()

    def submit(self, path: Path) -> bool:
        """Queue a complete file; blocks while the pipeline is full. False once stopping."""
        return self._put(0, Job(path=Path(os.path.abspath(path))))

    def close_input(self) -> None:
        """No more files will be submitted: the stages end once everything is through."""
        self._input_closed.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every stage thread to end; True when all did."""
        for threads in self._threads:
            for thread in threads:
                thread.join(timeout)
        finished = not any(t.is_alive() for threads in self._threads for t in threads)
        if finished:
            self._count_handed_back()
        return finished

    def _count_handed_back(self) -> None:
        for inbox in self._queues:
            while True:
                try:
                    job = inbox.get_nowait()
                except queue.Empty:
                    break
                self.stats.handed_back += 1
                if self._on_done is not None:
                    self._on_done(job.path)

    def _upstream_finished(self, number: int) -> bool:
        if number == 0:
            return self._input_closed.is_set() or self.stop_event.is_set()
        return not any(thread.is_alive() for thread in self._threads[number - 1])

    def _put(self, number: int, job: Job) -> bool:
        """Hand ``job`` to stage ``number``; False when it was handed back because of a stop."""
        stage = self.stages[number]
        while True:
            if self.stop_event.is_set() and not stage.drains_on_stop:
                with self._stats_lock:
                    self.stats.handed_back += 1
                if self._on_done is not None:
                    self._on_done(job.path)
                return False
            try:
                self._queues[number].put(job, timeout=_QUEUE_POLL_SECONDS)
                return True
            except queue.Full:
                continue

    def _stage_loop(self, number: int) -> None:
        stage, inbox = self.stages[number], self._queues[number]
        while not (self.stop_event.is_set() and not stage.drains_on_stop):
            try:
                job = inbox.get(timeout=_QUEUE_POLL_SECONDS)
            except queue.Empty:
                # Upstream first: once it has ended, an empty inbox stays empty.
                if self._upstream_finished(number) and inbox.empty():
                    break
                continue
            self._run_stage(number, job)

    def _run_stage(self, number: int, job: Job) -> None:
        stage = self.stages[number]
        for step in stage.steps:
            try:
                step(job)
            except Exception as error:  # one file's failure never stops the pipeline
                step_name = step.__name__.replace("_", " ")
                job.outcome, job.error = ERROR, f"{step_name}: {one_line(error)}"
                logger.debug("%s failed for %s", step_name, job.path, exc_info=True)
            if job.outcome is not None:
                break
        if job.outcome is not None:
            self._finish(job)
        elif number + 1 < len(self.stages):
            self._put(number + 1, job)
        else:
            raise AssertionError(f"the last stage left {job.path} unfinished")
