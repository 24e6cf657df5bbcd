"""Time tagging one file with ``MetadataWriter.write_verdict`` (ExifTool write + replacing the original).

    .venv/bin/python bench/bench_metadata_write.py                       # 40 writes of a real photo
    .venv/bin/python bench/bench_metadata_write.py --source IMG.jpg --count 100

Each write goes to a fresh copy of ``--source`` (default: the largest JPEG under
$PIXELPERFECT_SHARED_DATA/pristine, or ../shared/data/pristine),
so every one is a first tagging, as the daemon's are. Also times the open-for-writing scan of /proc
alone, which the replacement runs twice per write. Prints the median and 90th percentile in ms.
Runs against whichever ``pixelperfect_daemon`` is importable (run it from another checkout to compare).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.getcwd())


def default_source() -> Path:
    shared = Path(os.environ.get("PIXELPERFECT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    pristine = shared / "pristine"
    photos = sorted(pristine.rglob("*.jp*g"), key=lambda p: p.stat().st_size)
    if not photos:
        raise SystemExit(f"no photos in {pristine}: pass --source")
    return photos[-1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None, help="the photo to tag (copied for every write)")
    parser.add_argument("--count", type=int, default=40, help="how many writes (default 40)")
    arguments = parser.parse_args()
    source = arguments.source or default_source()

    import pixelperfect_daemon
    from pixelperfect_daemon.config import MetadataSettings
    from pixelperfect_daemon.metadata import MetadataWriter

    folder = Path(tempfile.mkdtemp(prefix="pp-bench-write-"))
    copies = []
    for number in range(arguments.count):
        copy = folder / f"IMG_{number:04}.jpg"
        shutil.copyfile(source, copy)
        copies.append(copy)
    times = []
    with MetadataWriter(MetadataSettings()) as writer:
        writer.version()  # ExifTool started before timing
        for copy in copies:
            started = time.perf_counter()
            writer.write_verdict(
                copy,
                verdict="poor",
                defect="blur",
                quality=0.3,
                model_version="bench",
                analyzed_at="2026-01-01T00:00:00Z",
            )
            times.append((time.perf_counter() - started) * 1000)
    scan_times = []
    try:
        from pixelperfect_daemon.file_replace import processes_writing
    except ImportError:
        processes_writing = None
    if processes_writing is not None:
        for copy in copies:
            started = time.perf_counter()
            processes_writing(copy)
            scan_times.append((time.perf_counter() - started) * 1000)
    shutil.rmtree(folder)
    print(f"code: {Path(pixelperfect_daemon.__file__).parent.parent}")
    print(
        f"source: {source.name}, {source.stat().st_size / 1e6:.1f} MB; {arguments.count} writes; "
        f"{len(os.listdir('/proc'))} /proc entries"
    )
    print("| what | median ms | p90 ms |")
    print("|---|---|---|")
    print(f"| write_verdict | {statistics.median(times):.1f} | {percentile(times, 0.9):.1f} |")
    if scan_times:
        print(
            f"| open-for-writing scan (/proc) | {statistics.median(scan_times):.1f} | {percentile(scan_times, 0.9):.1f} |"
        )


if __name__ == "__main__":
    main()
