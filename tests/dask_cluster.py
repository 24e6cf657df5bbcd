"""A real Dask cluster on loopback: a ``dask scheduler`` and ``dask worker`` processes of this venv.

Used by the cluster-scan test and bench/bench_cluster.py. Every process runs in its own session, so
a worker (its nanny and the worker process under it) can be killed as a whole, as a machine dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DASK = [sys.executable, "-m", "dask"]


class LocalDaskCluster:
    """``with LocalDaskCluster(folder, workers=2) as cluster: cluster.address``; every process is ended on exit."""

    def __init__(self, folder: Path, workers: int, *, threads_per_worker: int = 1, start_timeout: float = 60.0):
        self.folder = Path(folder)
        self.worker_count = workers
        self.threads_per_worker = threads_per_worker
        self.start_timeout = start_timeout
        self.scheduler_file = self.folder / "scheduler.json"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address: str | None = None

    def _popen(self, arguments: list[str], log_name: str) -> subprocess.Popen:
        # The workers import the project as the driver does: this checkout, this venv.
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        log = (self.folder / log_name).open("wb")
        return subprocess.Popen(
            DASK + arguments,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self) -> LocalDaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file.unlink(missing_ok=True)
        self.scheduler = self._popen(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            "scheduler.log",
        )
        deadline = time.monotonic() + self.start_timeout
        while not self.scheduler_file.exists():
            self._check_alive(self.scheduler, "scheduler.log", deadline)
            time.sleep(0.1)
        time.sleep(0.1)  # written in one go, but give the writer its close
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for number in range(self.worker_count):
            self.workers.append(
                self._popen(
                    [
                        "worker",
                        self.address,
                        "--nworkers",
                        "1",
                        "--nthreads",
                        str(self.threads_per_worker),
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--name",
                        f"worker-{number}",
                        "--local-directory",
                        str(self.folder / f"worker-{number}"),
                    ],
                    f"worker-{number}.log",
                )
            )
        self.wait_for_workers(self.worker_count, deadline)
        return self

    def _check_alive(self, process: subprocess.Popen, log_name: str, deadline: float) -> None:
        if process.poll() is not None:
            raise RuntimeError(f"dask process exited ({process.returncode}):\n{self.log(log_name)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Dask cluster did not start in {self.start_timeout} s:\n{self.log(log_name)}")

    def wait_for_workers(self, count: int, deadline: float) -> None:
        from distributed import Client

        with Client(self.address, timeout="20s", set_as_default=False) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < count:
                for number, worker in enumerate(self.workers):
                    self._check_alive(worker, f"worker-{number}.log", deadline)
                time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill_worker(self, number: int) -> None:
        """SIGKILL the worker's whole session (nanny and worker process), as a machine that dies."""
        worker = self.workers[number]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except ProcessLookupError:
                pass

    def __enter__(self) -> LocalDaskCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()
