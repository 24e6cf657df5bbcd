"""``pixelperfect daemon`` (watch folders for good) and ``pixelperfect scan`` (one backlog, then exit).

The daemon: scan what is already there (files added while it was down), then watch; every file
that has held still for ``stable_seconds`` goes through the pipeline. SIGTERM/SIGINT stop it
cleanly (files in hand are finished, queued ones handed back to the next start); a second signal
exits at once, which is as safe as ``kill -9``. With systemd's ``Type=notify`` it reports READY,
a STATUS line and STOPPING.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import sdnotify

from .common import one_line, utc_now
from .config import ConfigError, Settings, check_watch_folders
from .index import ImageIndex, ImageIndexError, ImageIndexGoneError
from .index_backends import describe
from .metadata import MetadataError, MetadataWriter
from .pipeline import ANALYSED, ERROR, MOVED, RETAGGED, UNCHANGED, Pipeline, PipelineStats
from .watcher import FileStabilityTracker, FolderWatcher, IgnoreRules, WatchError, iter_candidate_files

logger = logging.getLogger(__name__)

# New files are looked at together once this long has passed since the first of them arrived.
_ARRIVALS_BATCH_SECONDS = 0.02
# How often systemd's STATUS line is refreshed.
_STATUS_SECONDS = 10.0


class DaemonError(Exception):
    """The daemon cannot start."""


def load_analyzer(settings: Settings):
    from .adaptation import analyzer_for
    from .engine import ModelsNotFoundError

    try:
        return analyzer_for(settings)
    except ModelsNotFoundError as error:
        raise DaemonError(str(error)) from None


def analyses_early(settings: Settings, index: ImageIndex | None) -> bool:
    """Whether files are analysed while they wait to be complete: not on polled shares (every read
    crosses the network, and the server's clock sets the mtimes) nor on a shared index (claims
    decide which daemon analyses a file, and they are taken once it is complete)."""
    shared = index is not None and index.is_shared
    return settings.watch.analyse_early and settings.watch.poll_interval == 0 and not shared


def stability_poll_seconds(stable_seconds: float) -> float:
    """How often pending files are stat'ed: often enough to add little to stable_seconds."""
    return min(0.25, max(0.05, stable_seconds / 4))


@contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGTERM/SIGINT set ``stop``; a second one exits at once (safe: the work is idempotent)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, _frame):
        if stop.is_set():
            logger.warning(
                "%s again: exiting now; unfinished files are redone at the next start", signal.Signals(signum).name
            )
            os._exit(128 + signum)
        logger.info("%s: stopping (finishing the files in hand)", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _open_outputs(settings: Settings, dry_run: bool) -> tuple[MetadataWriter | None, ImageIndex | None]:
    if dry_run:
        return None, None
    writer = MetadataWriter(settings.metadata)
    try:
        writer.version()
        index = ImageIndex.from_settings(settings.index)
    except Exception:
        writer.close()
        raise
    try:
        # A SQLite index takes one daemon or scan at a time; PostgreSQL shares files out by claims.
        index.acquire_writer_lock()
    except Exception:
        _close_outputs(writer, index)
        raise
    return writer, index


def _close_outputs(writer: MetadataWriter | None, index: ImageIndex | None) -> None:
    if writer is not None:
        writer.close()
    if index is not None:
        index.close()


def _scan_periodically(watcher: FolderWatcher, interval: float, stop: threading.Event) -> None:
    """The first scan catches files added while the daemon was down; later ones, missed events."""
    while not stop.is_set():
        try:
            watcher.scan()
        except Exception as error:  # a share gone away: try again at the next rescan
            logger.error("scan failed: %s", error)
        if interval <= 0 or stop.wait(interval):
            return


def _retry_transient_errors(index: ImageIndex, watcher: FolderWatcher, interval: float, stop: threading.Event) -> None:
    """Files that failed through no fault of their own (disk full, permissions) go round again once
    their back-off has passed; the pipeline's identify stage lets them through although unchanged."""
    while not stop.wait(interval):
        try:
            for path in index.due_for_retry(utc_now()):
                watcher.consider(Path(path))
        except Exception as error:  # the index unreadable for a moment: look again next time
            logger.error("looking for files to retry failed: %s", one_line(error))


def run_daemon(
    settings: Settings,
    *,
    analyzer=None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    notifier: sdnotify.SystemdNotifier | None = None,
) -> PipelineStats:
    """Watch ``[watch] folders`` until ``stop`` is set (or SIGTERM/SIGINT); return what was done."""
    stop = stop or threading.Event()
    notifier = notifier or sdnotify.SystemdNotifier()
    check_watch_folders(settings)
    analyzer = analyzer or load_analyzer(settings)
    writer, index = _open_outputs(settings, dry_run)
    tracker = FileStabilityTracker(settings.watch.stable_seconds)
    pipeline = Pipeline(
        settings,
        analyzer,
        writer=writer,
        index=index,
        stop=stop,
        on_done=tracker.done,
        early=analyses_early(settings, index),
    )
    watcher = FolderWatcher(
        settings.watch.folders,
        tracker,
        IgnoreRules(settings.watch.ignore),
        poll_interval=settings.watch.poll_interval,
        known_files=None if index is None else index.stat_snapshot,
        stop=stop,
    )
    with stop_on_signals(stop):
        try:
            watcher.start()
            pipeline.start()
            # A dry run writes no rows, so every rescan would analyse everything again.
            rescan_interval = 0 if dry_run else settings.watch.rescan_interval
            threading.Thread(
                target=_scan_periodically, args=(watcher, rescan_interval, stop), name="scanner", daemon=True
            ).start()
            if index is not None:
                # Longer than the stability wait: observing a pending file again restarts its wait.
                interval = max(settings.watch.retry_seconds, 2 * settings.watch.stable_seconds)
                threading.Thread(
                    target=_retry_transient_errors, args=(index, watcher, interval, stop), name="retrier", daemon=True
                ).start()
            if settings.learn.every_reviews and index is not None:
                from .relearning import Relearner, relearn_periodically

                relearner = Relearner(settings, analyzer, writer, index, settings.learn.every_reviews)
                threading.Thread(
                    target=relearn_periodically, args=(relearner, stop), name="relearner", daemon=True
                ).start()
            logger.info(
                "daemon ready: model %s, %d worker(s), tags %s, index %s%s",
                analyzer.model_version,
                settings.analysis.workers,
                settings.metadata.mode,
                describe(settings.index.database),
                " (dry run: nothing is written)" if dry_run else "",
            )
            notifier.notify("READY=1")
            _feed_pipeline(tracker, pipeline, stop, notifier, settings.watch.stable_seconds)
        finally:
            stop.set()
            notifier.notify("STOPPING=1")
            watcher.stop()
            pipeline.join()
            _close_outputs(writer, index)
    if pipeline.fatal_error is not None:
        raise DaemonError(f"stopped: {pipeline.fatal_error}")
    stats = pipeline.stats
    logger.info("daemon stopped: %s", summary_line(stats))
    return stats


def _feed_pipeline(
    tracker: FileStabilityTracker,
    pipeline: Pipeline,
    stop: threading.Event,
    notifier: sdnotify.SystemdNotifier,
    stable_seconds: float,
) -> None:
    """Wait for stability: hand every file that has held still to the pipeline."""
    interval = stability_poll_seconds(stable_seconds)
    next_status = 0.0
    while not stop.is_set():
        if tracker.arrived.wait(interval):  # a burst begins: offer it for early analysis now, not at the next poll
            stop.wait(_ARRIVALS_BATCH_SECONDS)
        tracker.arrived.clear()
        if stop.is_set():
            break
        if pipeline.index is not None:
            try:
                pipeline.index.check_still_there()
            except ImageIndexGoneError as error:  # rows would go to a deleted file: stop loudly
                pipeline.fatal_error = error
                logger.error("%s: stopping; restore it, or start the daemon again to begin a new one", error)
                return
        for path in tracker.poll():
            if not pipeline.submit(path):
                break
        pipeline.analyse_early(tracker.pending_paths())
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + _STATUS_SECONDS
            notifier.notify(
                f"STATUS={tracker.pending_count} waiting, {tracker.in_flight_count} in progress; "
                f"{summary_line(pipeline.stats)}"
            )


def summary_line(stats: PipelineStats) -> str:
    counts = stats.outcomes
    early = f" ({stats.analysed_early} while they waited to be complete)" if stats.analysed_early else ""
    line = (
        f"{counts[ANALYSED]} analysed{early}, {counts[UNCHANGED]} unchanged, {counts[MOVED]} moved, "
        f"{counts[ERROR]} error(s)"
    )
    if counts[RETAGGED]:
        line += f", {counts[RETAGGED]} tagged again"
    if stats.handed_back:
        line += f", {stats.handed_back} left for the next run"
    return line


def _run_pipeline(pipeline: Pipeline, files: list[Path]) -> None:
    pipeline.start()
    for path in files:
        if not pipeline.submit(path):
            break
    pipeline.close_input()
    while not pipeline.join(timeout=0.5):
        pass


def scan_folder(
    settings: Settings,
    folder: Path,
    *,
    analyzer=None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    progress: bool | None = None,
    retag: bool = False,
    cluster: str | None = None,
) -> PipelineStats:
    """Analyse the backlog under ``folder`` once (files are taken as complete) and return.

    ``retag``: files analysed before are tagged again from the index (after a ``[metadata]`` change).
    ``cluster``: the address of a Dask scheduler whose workers decode, analyse and tag the files
    (cluster_scan.py); identifying them and writing the rows stay here.
    """
    from tqdm import tqdm

    stop = stop or threading.Event()
    folder = Path(os.path.abspath(folder))
    files = list(iter_candidate_files(folder, IgnoreRules(settings.watch.ignore)))
    analyzer = analyzer or load_analyzer(settings)
    writer, index = _open_outputs(settings, dry_run)
    # progress=None: a bar on a terminal, none in a log file.
    bar = tqdm(total=len(files), unit="file", desc="scan", disable=None if progress is None else not progress)
    pipeline = Pipeline(
        settings, analyzer, writer=writer, index=index, stop=stop, on_finished=lambda job: bar.update(1), retag=retag
    )
    with stop_on_signals(stop):
        try:
            if cluster is None:
                _run_pipeline(pipeline, files)
            else:
                from .cluster_scan import analyse_on_cluster

                analyse_on_cluster(cluster, pipeline, files)
        finally:
            stop.set()
            pipeline.join()
            bar.close()
            _close_outputs(writer, index)
    if pipeline.fatal_error is not None:
        raise DaemonError(f"stopped: {pipeline.fatal_error}")
    stats = pipeline.stats
    stats.handed_back += len(files) - stats.finished - stats.handed_back
    return stats


# What makes the daemon or a scan unable to start (the commands turn these into one-line errors).
STARTUP_ERRORS = (ConfigError, DaemonError, WatchError, MetadataError, ImageIndexError, OSError)
