"""CPU time per file of each pipeline stage, and of ExifTool, on the daemon benchmark's files.

    .venv/bin/python bench/pipeline_stage_cpu.py            # 100 files from bench_daemon.py's cache
    .venv/bin/python bench/pipeline_stage_cpu.py --count 50 --metadata-mode sidecar

Runs the real pipeline (analyser, ExifTool, SQLite index; no watcher, so no stability wait) in this
process on hard links to ``--workdir/source`` (made by ``bench/bench_daemon.py``) and prints each
stage's thread CPU time per file: where the daemon's CPU per image goes beyond ``analyze``'s
(decode and analyse). Everything it writes is under ``--workdir/stage-cpu``, recreated each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from pixelperfect_daemon import pipeline
from pixelperfect_daemon.config import load_settings
from pixelperfect_daemon.daemon import load_analyzer
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.metadata import MetadataWriter

STAGE_STEPS = ("identify", "decode", "analyse", "write_metadata", "record")
HASHING = "  of which the content hash (BLAKE3) of the file"


def measure_thread_cpu(counter: Counter, lock: threading.Lock) -> None:
    """Wrap each pipeline step (and the file hash) to add its thread CPU time to ``counter``."""

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    counter[name] += time.thread_time() - started

        wrapper.__name__ = function.__name__
        return wrapper

    for step in STAGE_STEPS:
        setattr(pipeline.Pipeline, step, timed(step, getattr(pipeline.Pipeline, step)))
    pipeline.file_hash = timed(HASHING, pipeline.file_hash)


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pixelperfect-bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--metadata-mode", choices=("embedded", "sidecar"), default="embedded")
    args = parser.parse_args()

    sources = sorted((args.workdir / "source").glob("*.jpg"))[: args.count]
    if len(sources) < args.count:
        raise SystemExit(f"only {len(sources)} files in {args.workdir / 'source'}: run bench/bench_daemon.py first")
    run = args.workdir / "stage-cpu"
    shutil.rmtree(run, ignore_errors=True)  # this script's own scratch folder
    (run / "ingest").mkdir(parents=True)
    for source in sources:
        os.link(source, run / "ingest" / source.name)  # ExifTool replaces the link, never the source
    config = run / "config.toml"
    config.write_text(
        f'[analysis]\nworkers = {args.workers}\n[metadata]\nmode = "{args.metadata_mode}"\n'
        f'[index]\ndatabase = "{run / "index.sqlite"}"\n'
    )
    settings = load_settings(config)

    cpu, lock = Counter(), threading.Lock()
    measure_thread_cpu(cpu, lock)
    analyzer = load_analyzer(settings)
    writer, index = MetadataWriter(settings.metadata), ImageIndex(settings.index.database)
    this_process = psutil.Process()
    writer.version()  # starts ExifTool, this process's one child running it
    (exiftool_process,) = [
        child for child in this_process.children(recursive=True) if "exiftool" in " ".join(child.cmdline())
    ]
    exiftool_before, process_before, started = (
        process_cpu(exiftool_process),
        process_cpu(this_process),
        time.monotonic(),
    )
    stages = pipeline.Pipeline(settings, analyzer, writer=writer, index=index, stop=threading.Event())
    stages.start()
    for source in sources:
        stages.submit(run / "ingest" / source.name)
    stages.close_input()
    stages.join()
    wall = time.monotonic() - started
    exiftool_cpu = process_cpu(exiftool_process) - exiftool_before
    process_total = process_cpu(this_process) - process_before
    writer.close()
    index.close()

    count = len(sources)
    print(
        f"{count} files, {args.workers} workers, tags {args.metadata_mode}: {wall:.1f} s, {dict(stages.stats.outcomes)}"
    )
    print("| CPU per file | ms |\n|---|---:|")
    for name in (*STAGE_STEPS[:4], HASHING, STAGE_STEPS[4]):
        print(f"| {name.strip()} | {1000 * cpu[name] / count:.1f} |")
    print(f"| ExifTool process | {1000 * exiftool_cpu / count:.1f} |")
    print(f"| this process, all threads | {1000 * process_total / count:.1f} |")


if __name__ == "__main__":
    main()
