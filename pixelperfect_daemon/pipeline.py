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
A file whose tags could not be written (index status ``tag_error``) is tagged again from its row
at the next rescan, without a new analysis; ``retag=True`` does that for every analysed file (after
a ``[metadata]`` setting changed).

Early analysis (the daemon): while a file waits to be complete, the decode/analyse workers may
analyse it when no complete file waits for them (``analyse_early``, early_analysis.py); once it is
complete, ``decode`` takes that result if the file is still exactly what was read.

One ``threading.Event`` stops everything: the stages up to ``analyse`` finish the file in hand and
hand the rest back (they have no row, so the next start picks them up); ``write metadata`` and
``index`` finish everything already analysed.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import socket
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .common import CONTENT_HASHES, file_hash, one_line, path_to_text, text_to_path, utc_in, utc_now
from .config import Settings
from .early_analysis import LOOKAHEAD, EarlyResult, EarlyResults, TwoLaneQueue, settled_identity
from .failures import is_transient, retry_delay
from .file_replace import FileIdentity, writers_of
from .file_views import FileViews, load_views_pinned
from .index import TAG_ERROR, ImageIndex, ImageIndexGoneError, ImageIndexWriteError
from .loading import ImageLoadError
from .metadata import FileBusyError, MetadataWriter
from .result import AnalysisResult

logger = logging.getLogger(__name__)

# How long a stage waits on an empty queue before looking at the stop event again.
_QUEUE_POLL_SECONDS = 0.1
# How many analysed files may wait for their tags.
_ANALYSED_QUEUE_SIZE = 64
# An index write that failed (disk full, server away) is retried after this long, doubling up to the cap.
_WRITE_RETRY_SECONDS = 1.0
_WRITE_RETRY_MAX_SECONDS = 30.0

# Outcomes: how a file left the pipeline.
ANALYSED = "analysed"
RETAGGED = "retagged"  # unchanged, tagged again from its row (its tagging had failed, or --retag)
UNCHANGED = "unchanged"
MOVED = "moved"
CHANGED = "changed"  # modified while being analysed: looked at again once it is stable
CLAIMED = "claimed elsewhere"  # another daemon on the shared index is analysing it
IGNORED = "ignored"  # no longer a regular file
ERROR = "error"


def effective_verdict(
    model_verdict: str, model_defect: str | None, row: dict | None
) -> tuple[str, str | None, str | None, str | None, str | None]:
    """(verdict, defect, reviewed_by, reviewed_at, reason) to tag: a human review wins over the model.

    ``reason`` is the reviewer's reason beside the defect (e.g. "duplicate"), None without one.
    """
    if row and row.get("reviewed_verdict"):
        return (row["reviewed_verdict"], row.get("reviewed_defect"), row.get("reviewed_by"), row.get("reviewed_at"),
                row.get("reviewed_reason"))  # fmt: skip
    return model_verdict, model_defect, None, None, None


def retry_is_due(row: dict, now: str | None = None) -> bool:
    """An error row the environment caused whose back-off has ended: analysed again though unchanged."""
    return row.get("retry_after") is not None and row["retry_after"] <= (now or utc_now())


@dataclass
class Job:
    """One file on its way through the pipeline."""

    path: Path
    size: int | None = None
    mtime: float | None = None
    identity: FileIdentity | None = None  # the file as identify saw it: tags replace only that file
    hashes: dict[str, str] = field(default_factory=dict)  # content hashes of the file as it is, by algorithm
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
    claimed: bool = False  # holds the shared index's claim on this file
    cull_flags: dict | None = None  # the cull-flag memory written into its tags, for the index
    from_row: bool = False  # tagged again from its index row, not analysed
    transient: bool = False  # the error was the environment's (disk, permissions): retried with back-off
    retry_after: str | None = None
    early: bool = False  # analysed while it waits to be complete (early_analysis.py): its tags wait


def content_hash(job: Job, algorithm: str = "blake3") -> str:
    """``job``'s file's content hash, computed once (a 24 MP photo's costs a millisecond or more)."""
    if algorithm not in job.hashes:
        job.hashes[algorithm] = file_hash(job.path, algorithm)
    return job.hashes[algorithm]


def run_steps(steps: Iterable[Callable[[Job], None]], job: Job) -> None:
    """Run ``steps`` in order until one finishes ``job``; a step that raises finishes it as an error."""
    for step in steps:
        try:
            step(job)
        except Exception as error:  # one file's failure never stops the pipeline
            step_name = step.__name__.replace("_", " ")
            job.outcome, job.error, job.transient = ERROR, f"{step_name}: {one_line(error)}", is_transient(error)
            logger.debug("%s failed for %s", step_name, job.path, exc_info=True)
        if job.outcome is not None:
            return


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
    analysed_early: int = 0  # complete files whose analysis was done while they waited

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())


class Pipeline:
    """identify → decode → analyse → write metadata → index, with bounded queues between them.

    ``writer`` and ``index`` are None in a dry run: files are analysed and logged, nothing is written.
    ``on_done(path)`` is called for every file that leaves the pipeline, however it left.
    ``early``: files still waiting to be complete may be offered to ``analyse_early`` (the daemon).
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
        retag: bool = False,
        early: bool = False,
    ):
        self.settings = settings
        self.analyzer = analyzer
        self.writer = writer
        self.index = index
        self.stop_event = stop
        self.dry_run = writer is None
        self.retag = retag  # tag analysed files again from their rows, even unchanged ones
        self._on_done = on_done
        self._on_finished = on_finished
        workers = settings.analysis.workers
        self.stages = [
            Stage("identify", (self.identify,), threads=1, queue_size=2 * workers, drains_on_stop=False),
            # Decode and analyse share a thread: the decoded pixels are used while still in this
            # core's cache and never wait in a queue (measured: 5 % less CPU
            # per image than separate decode and analyse threads, and half the memory).
            Stage(
                "decode, analyse",
                (self.decode, self.analyse),
                threads=workers,
                queue_size=2 * workers,
                drains_on_stop=False,
            ),
            # Analysed files hold no pixels: a long queue keeps the workers analysing while a burst of
            # files analysed early waits for its tags (written one at a time).
            Stage(
                "write metadata",
                (self.write_metadata,),
                threads=1,
                queue_size=_ANALYSED_QUEUE_SIZE,
                drains_on_stop=True,
            ),
            Stage("index", (self.record,), threads=1, queue_size=2 * workers, drains_on_stop=True),
        ]
        self._queues = [queue.Queue(maxsize=s.queue_size) for s in self.stages]
        self.early = EarlyResults() if early else None
        if early:  # the workers take early work only while no complete file waits for them
            # Enough early work for the workers until the tracker's next poll offers more.
            self._queues[1] = TwoLaneQueue(self.stages[1].queue_size, early_size=4 * workers)
        self._threads: list[list[threading.Thread]] = [[] for _ in self.stages]
        self._input_closed = threading.Event()
        self._stats_lock = threading.Lock()
        self.stats = PipelineStats()
        # Who this pipeline is to other daemons sharing a PostgreSQL index.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.claim_timeout = settings.index.claim_timeout
        # Set when the index cannot be written any more (its file deleted): the daemon stops and reports it.
        self.fatal_error: Exception | None = None

    # -- the stages -------------------------------------------------------------------------

    def identify(self, job: Job) -> None:
        """Stat and hash the file; finish it here if it is unchanged or was moved, or (shared index)
        another daemon holds its claim. A fresh claim is followed by a second look: the claim's
        previous holder may have finished the file between the first look and the claim."""
        self._identify(job)
        if job.outcome is not None or self.index is None or not self.index.is_shared:
            return
        if not self.index.claim(job.path, self.owner, self.claim_timeout):
            job.outcome = CLAIMED
            return
        job.claimed = True
        job.row, job.hashes = None, {}
        self._identify(job)

    def _identify(self, job: Job) -> None:
        try:
            st = os.lstat(job.path)
        except FileNotFoundError:
            job.outcome, job.error = ERROR, "file vanished before it could be analysed"
            return
        if not stat.S_ISREG(st.st_mode):
            job.outcome = IGNORED
            return
        job.size, job.mtime, job.identity = st.st_size, st.st_mtime, FileIdentity.from_stat(st)
        if self.index is None:
            return  # dry run: no index to compare with
        job.row = self.index.get(job.path)
        # A retry that is due analyses again; a row whose tags failed is tagged again from the row.
        retry_due = job.row is not None and retry_is_due(job.row) and job.row["status"] != TAG_ERROR
        if job.row is not None and not retry_due and (job.row["size"], job.row["mtime"]) == (job.size, job.mtime):
            if not self._tag_again_from_row(job):
                job.outcome = UNCHANGED
            return
        # Hashing 5-10 MB costs as much as a tenth of an analysis: a new file is hashed here only
        # when it could be a moved one, i.e. an analysed row of the same size lost its file.
        moved_candidates = self._moved_candidates(job.path, job.size)
        if job.row is None and not moved_candidates:
            return
        if job.row is not None and not retry_due and self._same_content(job, job.row):
            self.index.record_stat(job.path, size=job.size, mtime=job.mtime)
            if not self._tag_again_from_row(job):
                job.outcome = UNCHANGED
            return
        for other in moved_candidates:
            # Only a finished analysis moves with the file; an error row's file is simply retried.
            if self._same_content(job, other):
                self._record_move(job, other)
                return

    @staticmethod
    def _same_content(job: Job, row: dict) -> bool:
        """Whether ``job``'s file holds the bytes ``row`` was hashed from (rows from before BLAKE3: SHA-256)."""
        for algorithm in CONTENT_HASHES:
            if row.get(algorithm) is not None:
                return content_hash(job, algorithm) == row[algorithm]
        return False

    def _moved_candidates(self, path: Path, size: int) -> list[dict]:
        """Analysed rows of files of ``size`` bytes whose file is gone: ``path`` may be one of them, moved."""
        return [
            other
            for other in self.index.find_by_size(size)
            if other["path"] != path_to_text(path) and not os.path.lexists(text_to_path(other["path"]))
        ]

    def _tag_again_from_row(self, job: Job) -> bool:
        """Send an unchanged, analysed file on to be tagged from its row (no new analysis) when its
        last tagging failed or ``retag`` asks; False when it is done with."""
        row = job.row
        if row["verdict"] is None or not (row["status"] == TAG_ERROR or self.retag):
            return False
        scores = row["defect_scores"]
        job.result = AnalysisResult(
            path=str(job.path), verdict=row["verdict"], quality=row["quality"], defect=row["defect"],
            defect_scores=None if scores is None else json.loads(scores), model_version=row["model_version"] or "",
            error=None if row["status"] == TAG_ERROR else row["error"],  # keep a finding, drop the tag failure
        )  # fmt: skip
        job.analyzed_at = row["analyzed_at"] or utc_now()
        job.hashes = {algorithm: row[algorithm] for algorithm in CONTENT_HASHES if row.get(algorithm)}
        job.width, job.height = row["width"], row["height"]
        job.from_row = True
        return True

    def _record_move(self, job: Job, old_row: dict) -> None:
        self.index.record_move(text_to_path(old_row["path"]), job.path)
        self.index.record_stat(job.path, size=job.size, mtime=job.mtime)
        job.moved_from, job.outcome = old_row["path"], MOVED
        tagged_elsewhere = old_row["tagged_file"] not in (None, old_row["path"])
        if tagged_elsewhere and old_row["verdict"] is not None:
            # The sidecar stayed behind with the old name: tag the file's new sidecar.
            verdict, defect, reviewed_by, reviewed_at, reason = effective_verdict(
                old_row["verdict"], old_row["defect"], old_row
            )
            job.cull_flags = {}
            job.tagged_file = self.writer.write_verdict(
                job.path,
                verdict=verdict,
                defect=defect,
                quality=old_row["quality"],
                model_version=old_row["model_version"] or "",
                analyzed_at=old_row["analyzed_at"] or utc_now(),
                reviewed_by=reviewed_by,
                reviewed_at=reviewed_at,
                reason=reason,
                remember=job.cull_flags,
            )
            self.index.set_tagged_file(job.path, job.tagged_file)
            self.index.record_tags_written(job.path, job.cull_flags)

    def decode(self, job: Job) -> None:
        if job.result is not None:
            return  # tagged again from its row: nothing to analyse
        if self.early is not None:
            early = self.early.take(job.path, job.identity, self.analyzer.model_version)
            if early is not None:
                job.result, (job.width, job.height), job.analyzed_at = early.result, early.size, early.analyzed_at
                with self._stats_lock:
                    self.stats.analysed_early += 1
                return
        try:
            job.decoded = load_views_pinned(job.path, max_pixels=self.settings.analysis.max_pixels)
        except ImageLoadError as error:
            job.result = AnalysisResult.failed(str(job.path), one_line(error), self.analyzer.model_version)
            job.analyzed_at = utc_now()
            job.outcome, job.error, job.transient = ERROR, job.result.error, is_transient(error)
            return
        job.width, job.height = job.decoded.original_size

    def analyse(self, job: Job) -> None:
        if job.decoded is None:
            return  # tagged again from its row
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
        verdict, defect, reviewed_by, reviewed_at, reason = effective_verdict(
            job.result.verdict, job.result.defect, job.row
        )
        job.cull_flags = {}
        try:
            job.tagged_file = self.writer.write_verdict(
                job.path,
                verdict=verdict,
                defect=defect,
                quality=job.result.quality,
                model_version=job.result.model_version,
                analyzed_at=job.analyzed_at,
                reviewed_by=reviewed_by,
                reviewed_at=reviewed_at,
                reason=reason,
                remember=job.cull_flags,
                analysed=job.identity,
            )
        except FileBusyError as refusal:
            # Still being written (or replaced): nothing was written; it is looked at again once stable.
            logger.info("%s", one_line(refusal))
            job.outcome = CHANGED
            return
        if job.tagged_file == job.path:
            # The file changed by our write: the row must describe it as it is now.
            st = os.lstat(job.path)
            job.size, job.mtime, job.hashes = st.st_size, st.st_mtime, {"blake3": file_hash(job.path)}
        else:
            content_hash(job)  # tags in a sidecar: the image is as identify saw it

    def record(self, job: Job) -> None:
        if self.index is not None:

            def write_row():
                self._record_analysis(job, job.analyzed_at)
                if job.cull_flags is not None:
                    self.index.record_tags_written(job.path, job.cull_flags)

            self._write_until_done(job, write_row)
        job.outcome = RETAGGED if job.from_row else ANALYSED

    def _record_analysis(self, job: Job, analyzed_at: str, **failure) -> None:
        """The file's analysis row, as ``job`` describes the file; ``failure``: why it still failed."""
        self.index.record_analysis(
            job.path,
            blake3=job.hashes.get("blake3"),
            size=job.size,
            mtime=job.mtime,
            result=job.result,
            analyzed_at=analyzed_at,
            tagged_file=job.tagged_file,
            width=job.width,
            height=job.height,
            **failure,
        )

    def _write_until_done(self, job: Job, write: Callable[[], object]) -> None:
        """Run an index write; while it fails (disk full, server away) log an ERROR and retry, so the
        file (already tagged) never goes without its row and is not tagged again and again meanwhile.
        The index stage holding on makes the whole pipeline wait, which is what a full disk needs."""
        delay = _WRITE_RETRY_SECONDS
        while True:
            try:
                write()
                return
            except ImageIndexGoneError as error:
                self._fail(error)
                raise
            except ImageIndexWriteError as error:
                if self.stop_event.is_set():
                    raise  # the row is not written: the file is analysed again at the next start
                logger.error("%s; retrying in %.0f s: %s", error, delay, job.path)
                self.stop_event.wait(delay)
                delay = min(2 * delay, _WRITE_RETRY_MAX_SECONDS)

    def _fail(self, error: Exception) -> None:
        """Stop everything: the index is unusable and every further file would be lost work."""
        if self.fatal_error is None:
            self.fatal_error = error
            logger.error("%s: stopping", error)
        self.stop_event.set()

    # -- analysing files that are not complete yet ------------------------------------------

    def analyse_early(self, paths: Iterable[Path]) -> None:
        """Offer files still waiting to be complete for analysis, oldest first, while the workers have
        room; not those that something is still writing (just written, or held open for writing)."""
        if self.early is None:
            return
        room = self._queues[1].early_room()
        now = time.time()
        candidates = {}
        for path in itertools.islice(paths, LOOKAHEAD):
            if len(candidates) >= room:
                break
            path = Path(os.path.abspath(path))
            if self.early.is_busy(path):
                continue
            identity = settled_identity(path, now)
            if identity is None or not self.early.is_new(path, identity):
                continue
            if self.index is not None and (
                self.index.get(path) is not None or self._moved_candidates(path, identity.size)
            ):
                self.early.decline(path, identity)  # known (e.g. just tagged) or maybe moved: identify decides
                continue
            candidates[path] = identity
        being_written = writers_of(candidates.values())  # one look at /proc for all of them
        for path, identity in candidates.items():
            if (identity.device, identity.inode) in being_written or not self.early.want(path, identity):
                continue
            if not self._queues[1].offer(Job(path=path, early=True)):
                self.early.unqueue(path)
                return

    def _analyse_early(self, job: Job) -> None:
        if not self.early.begin(job.path):
            return  # complete by now: the pipeline has it
        early = None
        try:
            early = self._early_result(job.path)
        except Exception as error:  # FileNotFoundError, an engine failure: the complete file is analysed as usual
            logger.debug("early analysis of %s failed: %s", job.path, one_line(error))
        finally:
            self.early.finish(job.path, early)

    def _early_result(self, path: Path) -> EarlyResult | None:
        before = settled_identity(path)
        if before is None:
            return None
        try:
            decoded = load_views_pinned(path, max_pixels=self.settings.analysis.max_pixels)
        except ImageLoadError:
            return EarlyResult(before, None)  # its error row comes from the complete file
        result = self.analyzer.analyze_views(path, decoded)
        if FileIdentity.of(path) != before:
            return None  # written to while being read: offered again once it settles
        if result.verdict == "error":
            return EarlyResult(before, None)
        logger.debug("analysed early, before it is complete: %s", path)
        return EarlyResult(before, result, decoded.original_size, utc_now())

    # -- finishing a file -------------------------------------------------------------------

    def _finish(self, job: Job) -> None:
        """Record an error row if it failed, log one line, and tell the caller the file is done."""
        try:
            if job.outcome == ERROR and self.index is not None:
                self._record_error(job)
            self._log(job)
        except Exception as error:  # the index itself failed: the file has no row and is retried later
            logger.error("could not record %s: %s", job.path, one_line(error))
        self._release(job)
        with self._stats_lock:
            self.stats.outcomes[job.outcome] += 1
        if self._on_done is not None:
            self._on_done(job.path)
        if self._on_finished is not None:
            self._on_finished(job)

    def _record_error(self, job: Job) -> None:
        analyzed_at = job.analyzed_at or utc_now()
        retries = None
        if job.transient:
            retries = ((job.row or {}).get("retries") or 0) + 1
            watch = self.settings.watch
            job.retry_after = utc_in(retry_delay(retries, watch.retry_seconds, watch.retry_max_seconds))
        if job.size is not None:
            try:
                content_hash(job)  # so an unchanged broken file is not retried
            except OSError:
                pass  # vanished or unreadable: the row says why
        if job.result is not None:
            self._record_analysis(
                job,
                analyzed_at,
                error=None if job.result.verdict == "error" else job.error,
                tags_failed=job.result.verdict != "error",  # analysed: what failed came after, the tagging
                retry_after=job.retry_after,
                retries=retries,
            )
        else:
            self.index.record_error(
                job.path,
                error=job.error,
                analyzed_at=analyzed_at,
                model_version=self.analyzer.model_version,
                blake3=job.hashes.get("blake3"),
                size=job.size,
                mtime=job.mtime,
                retry_after=job.retry_after,
                retries=retries,
            )

    def _log(self, job: Job) -> None:
        path = job.path
        if job.outcome in (ANALYSED, RETAGGED):
            verdict, defect, reviewed_by, *_ = effective_verdict(job.result.verdict, job.result.defect, job.row)
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
        elif job.outcome == ERROR and job.retry_after:
            logger.warning("error %s: %s (not the file's fault: retried after %s)", path, job.error, job.retry_after)
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
        if self.index is not None and self.index.is_shared:
            threading.Thread(target=self._keep_claims_alive, name="pipeline-claims", daemon=True).start()

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
                if job.early:
                    continue  # optional work: nobody waits for it
                self.stats.handed_back += 1
                self._release(job)
                if self._on_done is not None:
                    self._on_done(job.path)

    def _release(self, job: Job) -> None:
        """Give up the shared index's claim on the file (its row, if any, is written by now)."""
        if not job.claimed:
            return
        job.claimed = False
        try:
            self.index.release(job.path, self.owner)
        except Exception as error:  # the claim expires after claim_timeout instead
            logger.error("could not release the claim on %s: %s", job.path, one_line(error))

    def _keep_claims_alive(self) -> None:
        """Renew this daemon's claims every quarter of claim_timeout, for as long as a stage runs."""
        next_beat = time.monotonic() + self.claim_timeout / 4
        while any(t.is_alive() for threads in self._threads for t in threads):
            time.sleep(_QUEUE_POLL_SECONDS)
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.claim_timeout / 4
            try:
                self.index.heartbeat(self.owner, self.claim_timeout)
            except Exception as error:  # a missed beat only risks another daemon redoing a file
                logger.error("could not renew this daemon's claims: %s", one_line(error))

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
                self._release(job)
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
        if job.early:
            self._analyse_early(job)
            return
        run_steps(self.stages[number].steps, job)
        if job.outcome is not None:
            self._finish(job)
        elif number + 1 < len(self.stages):
            self._put(number + 1, job)
        else:
            raise AssertionError(f"the last stage left {job.path} unfinished")
