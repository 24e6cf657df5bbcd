"""``pixelperfect scan FOLDER --cluster ADDRESS``: a backlog analysed on a Dask distributed cluster.

The driver (this process) lists the folder and runs the pipeline's ``identify`` against the index,
so unchanged and moved files never leave it. Every other file becomes one Dask task. A worker
process loads the models and starts its ExifTool once (``AnalysisPlugin``) and runs the pipeline's
own steps on the file: decode → analyse → write metadata. The driver writes the rows: every time
it wakes it takes all the results that arrived meanwhile (a batch) and records them, then tops the
cluster up again, keeping a bounded number of tasks in flight.

A worker killed mid-file: Dask gives its tasks to another worker. The dead attempt may already
have tagged the file (ExifTool finishes or drops its rename when its parent dies, so the file is
whole either way). The retry takes the file as it is when it starts, and writing tags is
idempotent (earlier PixelPerfect keywords are replaced, each one is added once), so the file ends
with one keyword set; the row is written once, by the driver, keyed by path. A file that kills
every worker it is given to (Dask's ``allowed-failures``) gets an error row.

The workers must see the files and the models at the same paths as the driver (the same shared
storage, mounted at the same place), and run the same PixelPerfect version.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from .common import one_line
from .config import Settings
from .daemon import load_analyzer
from .metadata import MetadataWriter
from .pipeline import ERROR, Job, Pipeline, run_steps

logger = logging.getLogger(__name__)

PLUGIN_NAME = "pixelperfect-analysis"
# Tasks in flight per worker thread: enough that a worker never waits for the driver.
_TASKS_PER_THREAD = 4
_MIN_TASKS_IN_FLIGHT = 16
# How long the driver waits for results before it looks at the stop event again.
_WAIT_SECONDS = 0.5
_CONNECT_TIMEOUT = "20s"


class ClusterError(Exception):
    """The Dask cluster cannot be used (unreachable scheduler, Dask not installed, workers that fail to start)."""


def _worker_plugin_base():
    try:
        from distributed import WorkerPlugin
    except ImportError:  # the optional extra is not installed: the module still imports
        return object
    return WorkerPlugin


class AnalysisPlugin(_worker_plugin_base()):
    """Per worker process: the models and one ExifTool, set up once and used by every task."""

    name = PLUGIN_NAME

    def __init__(self, settings: Settings, dry_run: bool = False):
        self.settings = settings
        self.dry_run = dry_run
        self.pipeline: Pipeline | None = None  # built on the worker, never pickled with a value

    def setup(self, worker=None) -> None:
        analyzer = load_analyzer(self.settings)
        writer = None
        if not self.dry_run:
            writer = MetadataWriter(self.settings.metadata)
            writer.version()  # a worker without ExifTool fails here, not on every file
        # No index on a worker: the driver writes the rows; the row identify read comes with the job.
        self.pipeline = Pipeline(self.settings, analyzer, writer=writer, index=None, stop=threading.Event())

    def teardown(self, worker=None) -> None:
        if self.pipeline is not None and self.pipeline.writer is not None:
            self.pipeline.writer.close()

    def analyse(self, job: Job) -> Job:
        """decode → analyse → write metadata, after looking at the file again: a retried task may find
        it tagged by the attempt that died, and must compare with what it decodes itself."""
        pipeline = self.pipeline
        seen_by_driver = (job.size, job.mtime)

        def forget_stale_hash(job: Job) -> None:
            if (job.size, job.mtime) != seen_by_driver:
                job.hashes = {}

        # identify without an index only stats the file.
        run_steps(
            (pipeline.identify, forget_stale_hash, pipeline.decode, pipeline.analyse, pipeline.write_metadata), job
        )
        return job

    def __getstate__(self) -> dict:
        return {"settings": self.settings, "dry_run": self.dry_run, "pipeline": None}


def analyse_on_worker(job: Job) -> Job:
    """The Dask task: one file through decode → analyse → write metadata on the worker that runs it."""
    from distributed import get_worker

    return get_worker().plugins[PLUGIN_NAME].analyse(job)


def _connect(address: str):
    try:
        from distributed import Client
        from distributed.comm.addressing import parse_address
        from distributed.comm.registry import backends
    except ImportError:
        raise ClusterError(
            "--cluster needs Dask: install PixelPerfect with its cluster extra (pip install 'pixelperfect[cluster]')"
        ) from None
    # Checked first: a Client given an unknown scheme fails, then hangs at exit.
    scheme, _ = parse_address(address, strict=False)
    if scheme not in backends:
        raise ClusterError(f"{address!r} is not a Dask scheduler address (like tcp://scheduler:8786)")
    try:
        return Client(address, timeout=_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, ValueError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {one_line(error)}") from None


class _ClusterScan:
    """The driver's loop: identify here, analyse there, record here."""

    def __init__(self, client, pipeline: Pipeline, files: list[Path]):
        self.client = client
        self.pipeline = pipeline
        self.files: Iterator[Path] = iter(files)
        self.in_flight: dict = {}  # future -> the job as it was sent

    def _window(self) -> int:
        threads = sum(self.client.nthreads().values())
        return max(_MIN_TASKS_IN_FLIGHT, _TASKS_PER_THREAD * threads)

    def _top_up(self) -> None:
        """Identify files until the cluster has enough to do; unchanged and moved ones finish here."""
        window = self._window()
        while len(self.in_flight) < window and not self.pipeline.stop_event.is_set():
            path = next(self.files, None)
            if path is None:
                return
            job = Job(path=Path(os.path.abspath(path)))
            run_steps((self.pipeline.identify,), job)
            if job.outcome is not None:
                self.pipeline._finish(job)
            else:
                self.in_flight[self.client.submit(analyse_on_worker, job, pure=False)] = job

    def _record_batch(self, done: set) -> None:
        """Write the rows of every result that arrived since the last look."""
        from distributed import KilledWorker

        sent = {future: self.in_flight.pop(future) for future in done}
        finished = [future for future in done if future.status == "finished"]
        jobs = self.client.gather(finished, errors="skip")
        failed = {
            future: future.exception() if future.status == "error" else None
            for future in done
            if future.status != "finished"
        }
        for future in done:
            # Released before the rows are written: Dask recomputes a result it still holds for us
            # when the worker holding it dies, and that rerun would tag the file again after its row.
            future.release()
        for job in jobs:
            if job.outcome is None:
                run_steps((self.pipeline.record,), job)
            self.pipeline._finish(job)
        for future, error in failed.items():
            job = sent[future]
            if isinstance(error, KilledWorker):
                job.outcome, job.error = ERROR, "every worker that analysed it died (a crash or out of memory)"
                self.pipeline._finish(job)
            else:
                # The cluster's fault, not the file's: no row, so the next scan takes it again.
                logger.error(
                    "%s: the cluster task failed: %s", job.path, one_line(error) if error is not None else future.status
                )

    def _wait(self) -> set:
        from distributed import wait

        try:
            return wait(list(self.in_flight), timeout=_WAIT_SECONDS, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return set()

    def run(self) -> None:
        self._top_up()
        while self.in_flight:
            if self.pipeline.stop_event.is_set():
                # Not started or in hand: no row, so the next scan takes them (a tag already written is replaced).
                self.client.cancel(list(self.in_flight))
                self.in_flight.clear()
                return
            done = self._wait()
            if done:
                self._record_batch(done)
                self._top_up()


def analyse_on_cluster(address: str, pipeline: Pipeline, files: list[Path]) -> None:
    """Take ``files`` through ``pipeline`` (not started: its stages run here and on the workers of the
    Dask scheduler at ``address``) until all are done or its stop event is set."""
    client = _connect(address)
    try:
        try:
            client.register_plugin(AnalysisPlugin(pipeline.settings, pipeline.dry_run))
        except Exception as error:
            raise ClusterError(f"the Dask workers at {address} cannot analyse: {one_line(error)}") from None
        try:
            with client.as_current():  # distributed.wait finds the client through it
                _ClusterScan(client, pipeline, files).run()
        finally:
            try:
                client.unregister_worker_plugin(PLUGIN_NAME)  # the workers close their ExifTool
            except Exception as error:  # a cluster gone away has nothing left to close
                logger.warning("could not unregister the worker plugin: %s", one_line(error))
    finally:
        client.close()
