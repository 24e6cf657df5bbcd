"""Benchmark ``pixelperfect scan --cluster`` (1 and 2 local Dask workers) against plain ``scan`` on the same files.

    .venv/bin/python bench/bench_cluster.py                # 40 camera-like 24-megapixel JPEGs, 2 rounds
    .venv/bin/python bench/bench_cluster.py --count 20 --runs 1

Every mode scans a fresh copy of the same files (hard links: ExifTool's rename-over-original leaves
the cached sources untouched) into a fresh SQLite index, through the real CLI:

- ``scan k``: plain ``pixelperfect scan`` with ``[analysis] workers = k`` (k analysis threads);
- ``cluster k``: ``pixelperfect scan --cluster`` on a real ``dask scheduler`` with k ``dask worker``
  processes of one thread each (loopback), started before the timing.

Throughput is taken between the first and the last index row, so start-up (imports, loading the
models, connecting) is left out and reported apart; efficiency is ``cluster k`` over ``scan k`` (the
same number of analysis threads). The modes alternate round by round (a shared machine's speed
drifts) and the table shows each mode's median. On a machine others load too, images/s follows
their load (the table gives the load average); the CPU time per image (the scan, its ExifTool,
and for a cluster the scheduler and workers with theirs, start-up included) does not, so the
efficiency is given both ways. A plain ``scan`` over one worker also gives the
per-image CPU time (the scan process and its ExifTool, less a scan of an empty folder) and the
bytes read and written per image (``read()``/``write()`` calls, page cache included); a
24-megapixel DNG gives the bytes read to decode a RAW (its preview) and to hash it. docs/scaling.md
uses these.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]

from bench_daemon import CLI, cpu_seconds, ensure_sources, row_count, write_config  # noqa: E402

from tests.dask_cluster import LocalDaskCluster  # noqa: E402


class RowTimes(threading.Thread):
    """When the index got its first and its last row (polled every 20 ms)."""

    def __init__(self, database: Path, count: int):
        super().__init__(daemon=True)
        self.database, self.count = database, count
        self.first = self.last = None
        self.running = True

    def run(self):
        while self.running:
            rows = row_count(self.database)
            now = time.monotonic()
            if rows and self.first is None:
                self.first, self.first_rows = now, rows
            if rows >= self.count:
                self.last = now
                return
            time.sleep(0.02)


class IoCounters(threading.Thread):
    """Bytes a process and its children (ExifTool) passed through read() and write(), sampled every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.last: dict[int, tuple[int, int]] = {}
        self.running = True

    def run(self):
        import psutil

        while self.running:
            try:
                processes = [self.process, *self.process.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    io = process.io_counters()
                except psutil.NoSuchProcess:
                    continue
                self.last[process.pid] = (io.read_chars, io.write_chars)
            time.sleep(0.1)

    @property
    def totals(self) -> tuple[int, int]:
        return sum(r for r, _ in self.last.values()), sum(w for _, w in self.last.values())


def fresh_run(workdir: Path, sources: list[Path], workers: int) -> tuple[Path, Path, Path]:
    """(config, ingest folder, index) of a fresh copy of ``sources``."""
    run = workdir / "run"
    shutil.rmtree(run, ignore_errors=True)  # the previous run's scratch folder, never user data
    ingest = run / "ingest"
    ingest.mkdir(parents=True)
    for source in sources:
        os.link(source, ingest / source.name)
    return write_config(run, workers, stable_seconds=0.5), ingest, run / "index.sqlite"


def cluster_cpu_seconds(cluster: LocalDaskCluster | None) -> float:
    """CPU time of the scheduler, the workers and their ExifTool processes so far."""
    if cluster is None:
        return 0.0
    return sum(sum(cpu_seconds(process.pid)) for process in [cluster.scheduler, *cluster.workers])


def time_scan(
    workdir: Path, sources: list[Path], workers: int, cluster: LocalDaskCluster | None, measure_io: bool = False
) -> dict:
    """One scan through the CLI; the CPU figure adds the cluster's processes to the driver's."""
    address = None if cluster is None else cluster.address
    config, ingest, database = fresh_run(workdir, sources, workers)
    command = [*CLI, "scan", "--config", str(config), str(ingest)]
    if address is not None:
        command += ["--cluster", address]
    rows = RowTimes(database, len(sources))
    rows.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster_before = cluster_cpu_seconds(cluster)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    scan = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    io = IoCounters(scan.pid) if measure_io else None
    if io is not None:
        io.start()
    stdout, _ = scan.communicate()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster_cpu = cluster_cpu_seconds(cluster) - cluster_before
    rows.running = False
    rows.join(1)
    if io is not None:
        io.running = False
        io.join(1)
    if scan.returncode != 0 or f"{len(sources)} analysed" not in stdout:
        raise RuntimeError(f"scan failed: {stdout}")
    result = {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + cluster_cpu,
        "start_s": (rows.first or started) - started,
        "load_average": (load_before + os.getloadavg()[0]) / 2,
    }
    if rows.first is not None and rows.last is not None and rows.last > rows.first:
        # Rows after the first one, over the time they took: the steady rate.
        result["images_per_s"] = (len(sources) - rows.first_rows) / (rows.last - rows.first)
    if io is not None:
        result["read_bytes"], result["write_bytes"] = io.totals
    return result


def time_empty_scan(workdir: Path, cluster: LocalDaskCluster | None = None) -> dict:
    """A scan of an empty folder: the start-up CPU and I/O (imports, models; on a cluster, the workers'
    plugin set-up too) that the per-image figures leave out."""
    config, ingest, _ = fresh_run(workdir, [], 1)
    command = [*CLI, "scan", "--config", str(config), str(ingest)]
    if cluster is not None:
        command += ["--cluster", cluster.address]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster_before = cluster_cpu_seconds(cluster)
    scan = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    io = IoCounters(scan.pid)
    io.start()
    if scan.wait() != 0:
        raise RuntimeError("scan of an empty folder failed")
    io.running = False
    io.join(1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    read_bytes, write_bytes = io.totals
    return {
        "cpu_s": (after.ru_utime - before.ru_utime)
        + (after.ru_stime - before.ru_stime)
        + cluster_cpu_seconds(cluster)
        - cluster_before,
        "read_bytes": read_bytes,
        "write_bytes": write_bytes,
    }


def raw_bytes_read(workdir: Path) -> dict:
    """Bytes read() to decode a 24-megapixel DNG (its embedded preview) and to hash it (the whole file)."""
    import psutil

    from pixelperfect_daemon.common import file_hash
    from pixelperfect_daemon.loading import load_image
    from tests.fixtures_images import make_dng

    dng = workdir / "raw" / "mosaic-6000x4000.dng"
    if not dng.exists():
        dng.parent.mkdir(parents=True, exist_ok=True)
        make_dng(dng, size=(6000, 4000), preview_size=(1620, 1080))
    process = psutil.Process()
    start = process.io_counters().read_chars
    load_image(dng)
    decoded = process.io_counters().read_chars
    file_hash(dng)
    hashed = process.io_counters().read_chars
    return {"file_bytes": dng.stat().st_size, "decode_read_bytes": decoded - start, "hash_read_bytes": hashed - decoded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="how many 24-megapixel JPEGs (default 40)")
    parser.add_argument("--runs", type=int, default=2, help="rounds over every mode (default 2)")
    parser.add_argument("--workdir", default="/tmp/pixelperfect-bench-cluster", help="cache and scratch folder")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    sources = ensure_sources(workdir / "source", [f"DSC_{i:04}.jpg" for i in range(args.count)], first_seed=0)
    mean_size = statistics.mean(p.stat().st_size for p in sources)

    results: dict[str, list[dict]] = {}
    cluster_start: dict[int, list[float]] = {1: [], 2: []}
    empty = time_empty_scan(workdir)

    def measure(round_number: int, mode: str, workers: int, cluster: LocalDaskCluster | None) -> None:
        print(f"round {round_number + 1}: {mode}", file=sys.stderr, flush=True)
        fixed = time_empty_scan(workdir, cluster)
        result = time_scan(workdir, sources, workers, cluster, measure_io=mode == "scan 1")
        result["cpu_per_image_s"] = (result["cpu_s"] - fixed["cpu_s"]) / len(sources)
        results.setdefault(mode, []).append(result)

    for round_number in range(args.runs):
        for workers in (1, 2):
            measure(round_number, f"scan {workers}", workers, None)
            started = time.monotonic()
            with LocalDaskCluster(workdir / "cluster", workers) as cluster:
                cluster_start[workers].append(time.monotonic() - started)
                measure(round_number, f"cluster {workers}", workers, cluster)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    print(
        f"\n{args.count} camera-like 24-megapixel JPEGs (mean {mean_size / 1e6:.1f} MB), {os.cpu_count()} CPU cores, "
        f"median of {args.runs} round(s)\n"
    )
    print(
        "| mode | images/s (first to last row) | efficiency vs scan (images/s) | CPU s per image, all "
        "| CPU s per image, start-up left out | efficiency vs scan (CPU) | start-up to first row (s) | wall (s) "
        "| load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("scan 1", "cluster 1", "scan 2", "cluster 2"):
        workers = int(mode[-1])
        rate, cpu, marginal = (
            median(mode, "images_per_s"),
            median(mode, "cpu_s") / args.count,
            median(mode, "cpu_per_image_s"),
        )
        rate_efficiency = cpu_efficiency = ""
        if mode.startswith("cluster"):
            rate_efficiency = f"{rate / median(f'scan {workers}', 'images_per_s'):.0%}"
            cpu_efficiency = f"{median(f'scan {workers}', 'cpu_per_image_s') / marginal:.0%}"
        print(
            f"| {mode} | {rate:.2f} | {rate_efficiency} | {cpu:.3f} | {marginal:.3f} | {cpu_efficiency} "
            f"| {median(mode, 'start_s'):.1f} | {median(mode, 'wall_s'):.1f} | {median(mode, 'load_average'):.1f} |"
        )
    print(
        f"\nscaling 1 → 2 cluster workers: {median('cluster 2', 'images_per_s') / median('cluster 1', 'images_per_s'):.2f}x; "
        f"plain scan 1 → 2 threads: {median('scan 2', 'images_per_s') / median('scan 1', 'images_per_s'):.2f}x"
    )
    print(
        f"cluster start-up (scheduler + workers up): 1 worker {statistics.median(cluster_start[1]):.1f} s, "
        f"2 workers {statistics.median(cluster_start[2]):.1f} s"
    )
    cpu_per_image = (median("scan 1", "cpu_s") - empty["cpu_s"]) / args.count
    read_per_image = (median("scan 1", "read_bytes") - empty["read_bytes"]) / args.count
    write_per_image = (median("scan 1", "write_bytes") - empty["write_bytes"]) / args.count
    print(
        f"per image (plain scan, 1 worker; a scan of an empty folder left out): CPU {cpu_per_image:.3f} s "
        f"(scan + ExifTool), read() {read_per_image / 1e6:.1f} MB, write() {write_per_image / 1e6:.1f} MB, "
        f"file {mean_size / 1e6:.1f} MB"
    )
    raw = raw_bytes_read(workdir)
    print(
        f"a 24-megapixel DNG of {raw['file_bytes'] / 1e6:.1f} MB: decoding its preview read() "
        f"{raw['decode_read_bytes'] / 1e6:.2f} MB, hashing it {raw['hash_read_bytes'] / 1e6:.1f} MB"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "results": results,
                    "cluster_start_s": cluster_start,
                    "empty_scan": empty,
                    "mean_file_bytes": mean_size,
                    "raw": raw,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
