"""Time tagging one file with ``MetadataWriter.write_verdict`` (ExifTool write + replacing the original).

    .venv/bin/python bench/bench_metadata_write.py                       # 40 writes of a real photo
    .venv/bin/python bench/bench_metadata_write.py --source IMG.jpg --count 100
    .venv/bin/python bench/bench_metadata_write.py --camera-like --exiv2  # a 24 MP JPEG; Exiv2 beside it

Each write goes to a fresh copy of ``--source`` (default: the largest JPEG under
$PIXELPERFECT_SHARED_DATA/pristine, or ../shared/data/pristine; ``--camera-like``: the 24 MP JPEG of
``bench_daemon.py``), so every one is a first tagging, as the daemon's are. Reports wall time and the
CPU time per write of this process and of ExifTool's, and the open-for-writing scan of /proc alone.

``--exiv2`` also tags fresh copies through python-exiv2 (``pip install exiv2``; not a dependency of
PixelPerfect) with the same PixelPerfect fields, the original replaced as ours is (a new file,
fsynced, renamed over it): Exiv2 rewriting a copy of the file, and Exiv2 rewriting the bytes in
memory. It measures what a switch of writer for embedded XMP would save; the rounds alternate.
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

TAGS = {
    "verdict": "poor",
    "defect": "blur",
    "quality": 0.3,
    "model_version": "bench",
    "analyzed_at": "2026-01-01T00:00:00Z",
}


def default_source() -> Path:
    shared = Path(os.environ.get("PIXELPERFECT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    pristine = shared / "pristine"
    photos = sorted(pristine.rglob("*.jp*g"), key=lambda p: p.stat().st_size)
    if not photos:
        raise SystemExit(f"no photos in {pristine}: pass --source")
    return photos[-1]


def camera_like_source(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_daemon import camera_like_jpeg

    path = folder / "camera_like.jpg"
    camera_like_jpeg(path, seed=1)
    return path


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (ExifTool), from /proc."""
    with open(f"/proc/{pid}/stat") as stat_file:
        fields = stat_file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_copies(source: Path, folder: Path, count: int, prefix: str) -> list[Path]:
    copies = []
    for number in range(count):
        copy = folder / f"{prefix}_{number:04}.jpg"
        shutil.copyfile(source, copy)
        copies.append(copy)
    return copies


def exiftool_round(writer, copies: list[Path]) -> tuple[list[float], float, float]:
    """Wall ms per write; CPU ms per write of this process and of ExifTool's."""
    exiftool_pid = writer._exiftool._process.pid
    times = []
    exiftool_before, own_before = process_cpu_seconds(exiftool_pid), time.process_time()
    for copy in copies:
        started = time.perf_counter()
        writer.write_verdict(copy, **TAGS)
        times.append((time.perf_counter() - started) * 1000)
    own = (time.process_time() - own_before) * 1000 / len(copies)
    exiftool = (process_cpu_seconds(exiftool_pid) - exiftool_before) * 1000 / len(copies)
    return times, own, exiftool


def _set_fields(image) -> None:
    xmp = image.xmpData()
    xmp["Xmp.pixelperfect.Verdict"] = "Poor"
    xmp["Xmp.pixelperfect.Defect"] = "Blur"
    xmp["Xmp.pixelperfect.Quality"] = f"{TAGS['quality']:.4f}"
    xmp["Xmp.pixelperfect.ModelVersion"] = TAGS["model_version"]
    xmp["Xmp.pixelperfect.AnalyzedAt"] = TAGS["analyzed_at"]
    xmp["Xmp.lr.hierarchicalSubject"] = "PixelPerfect|Poor|Blur"


def _fsync_and_rename(scratch: Path, copy: Path) -> None:
    descriptor = os.open(scratch, os.O_RDONLY)
    os.fsync(descriptor)
    os.close(descriptor)
    os.replace(scratch, copy)


def exiv2_round(copies: list[Path], in_memory: bool) -> tuple[list[float], float]:
    """The same fields through Exiv2, fsynced and renamed over the original. Either Exiv2 rewrites a
    copy of the file (as ExifTool's ``-o`` does), or it rewrites the bytes in memory and we write them."""
    import exiv2

    times = []
    own_before = time.process_time()
    for copy in copies:
        started = time.perf_counter()
        scratch = copy.with_name(copy.name + ".exiv2-scratch")
        if in_memory:
            image = exiv2.ImageFactory.open(copy.read_bytes())
        else:
            shutil.copyfile(copy, scratch)
            image = exiv2.ImageFactory.open(str(scratch))
        image.readMetadata()
        _set_fields(image)
        image.writeMetadata()
        if in_memory:
            written = image.io()
            with open(scratch, "xb") as scratch_file:
                scratch_file.write(written.mmap())
            written.munmap()
        del image  # closes the file
        _fsync_and_rename(scratch, copy)
        times.append((time.perf_counter() - started) * 1000)
    return times, (time.process_time() - own_before) * 1000 / len(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None, help="the photo to tag (copied for every write)")
    parser.add_argument("--camera-like", action="store_true", help="tag bench_daemon.py's 24 MP JPEG")
    parser.add_argument("--count", type=int, default=40, help="how many writes per round (default 40)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the medians are over all writes")
    parser.add_argument("--exiv2", action="store_true", help="compare with python-exiv2 (pip install exiv2)")
    arguments = parser.parse_args()

    import pixelperfect_daemon
    from pixelperfect_daemon.config import MetadataSettings
    from pixelperfect_daemon.metadata import MetadataWriter

    folder = Path(tempfile.mkdtemp(prefix="pp-bench-write-"))
    source = arguments.source or (camera_like_source(folder) if arguments.camera_like else default_source())
    source_mb = source.stat().st_size / 1e6
    if arguments.exiv2:
        import exiv2

        exiv2.XmpProperties.registerNs("http://ns.pixelperfect.dev/1.0/", "pixelperfect")
    exiftool_times, exiftool_own, exiftool_cpu = [], [], []
    exiv2_times = {False: [], True: []}
    exiv2_cpu = {False: [], True: []}
    with MetadataWriter(MetadataSettings()) as writer:
        writer.version()  # ExifTool started before timing
        for round_number in range(arguments.rounds):
            copies = fresh_copies(source, folder, arguments.count, f"exiftool{round_number}")
            times, own, exiftool = exiftool_round(writer, copies)
            exiftool_times += times
            exiftool_own.append(own)
            exiftool_cpu.append(exiftool)
            for in_memory in (False, True) if arguments.exiv2 else ():
                copies = fresh_copies(source, folder, arguments.count, f"exiv2{in_memory:d}{round_number}")
                times, own = exiv2_round(copies, in_memory)
                exiv2_times[in_memory] += times
                exiv2_cpu[in_memory].append(own)
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
        f"source: {source.name}, {source_mb:.1f} MB; {arguments.rounds} x {arguments.count} writes; "
        f"{len(os.listdir('/proc'))} /proc entries"
    )
    print("| what | wall ms, median | wall ms, p90 | CPU ms per write (each round) |")
    print("|---|---|---|---|")
    rounds = " / ".join(f"{own:.1f} + {exiftool:.1f}" for own, exiftool in zip(exiftool_own, exiftool_cpu))
    print(
        f"| write_verdict (this process + ExifTool) | {statistics.median(exiftool_times):.1f} "
        f"| {percentile(exiftool_times, 0.9):.1f} | {rounds} |"
    )
    for in_memory, what in ((False, "Exiv2 rewrites a copy"), (True, "Exiv2 rewrites it in memory")):
        if exiv2_times[in_memory]:
            times, cpu = exiv2_times[in_memory], exiv2_cpu[in_memory]
            print(
                f"| {what}; fsync, rename | {statistics.median(times):.1f} | {percentile(times, 0.9):.1f} "
                f"| {' / '.join(f'{value:.1f}' for value in cpu)} |"
            )
    if scan_times:
        print(
            f"| open-for-writing scan (/proc) | {statistics.median(scan_times):.1f} "
            f"| {percentile(scan_times, 0.9):.1f} | |"
        )


if __name__ == "__main__":
    main()
