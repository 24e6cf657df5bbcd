"""CPU time of the small-photo steps issue 27 made cheaper, earlier way against current, in one process.

    .venv/bin/python bench/small_photo_steps.py [--workdir /tmp/pixelperfect-bench] [--count 20] [--rounds 7]

On bench_engine.py's 500 x 500 JPEGs, in one thread with OpenCV in that thread (as `analyze` runs
them with several workers), each step is timed both ways, alternating, ``--rounds`` times; the
fastest round of each is reported (ms per file): the least disturbed by other work on a shared
machine. The earlier ways are ``tests/reference_computations.py`` and Pillow's decode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from pixelperfect_daemon import file_views, jpeg_dct, views  # noqa: E402
from pixelperfect_daemon.engine import is_monochrome  # noqa: E402
from pixelperfect_daemon.loading import load_jpeg, scan_jpeg_structure  # noqa: E402
from pixelperfect_daemon.view_statistics import view_statistics  # noqa: E402
from tests import reference_computations as reference  # noqa: E402


def earlier_views(data: bytes):
    """The views as the engine made them before: Pillow's decode, the box-filter detail search."""
    scan_jpeg_structure(data)  # the DCT route's check, repeated by load_jpeg
    image = load_jpeg(data, 250_000_000, None).image
    original = views.detail_origin_in
    views.detail_origin_in = reference.detail_origin_in
    try:
        return views.make_views(image)
    finally:
        views.detail_origin_in = original


def current_views(data: bytes):
    return file_views.jpeg_views(data, 250_000_000).views


def cpu_ms(function, items) -> float:
    started = time.thread_time()
    for item in items:
        function(item)
    return 1000 * (time.thread_time() - started) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pixelperfect-bench"))
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    jpeg_dct.keep_freed_memory_for_reuse()
    files = sorted((args.workdir / "500px").glob("*.jpg"))[: args.count]
    if not files:
        raise SystemExit(f"no benchmark files under {args.workdir}: run bench/bench_engine.py first")
    data = [path.read_bytes() for path in files]
    pairs = [current_views(d) for d in data]
    steps = {
        "decode + views": (earlier_views, current_views, data),
        "statistics (both views)": (
            lambda pair: [reference.view_statistics(v) for v in pair],
            lambda pair: [view_statistics(v) for v in pair],
            pairs,
        ),
        "greyness": (reference.is_monochrome, is_monochrome, pairs),
    }
    best = {name: [float("inf"), float("inf")] for name in steps}
    for _ in range(args.rounds):
        for name, (earlier, current, items) in steps.items():
            for column, function in enumerate((earlier, current)):
                best[name][column] = min(best[name][column], cpu_ms(function, items))
    print(f"CPU ms per 500 x 500 JPEG, one thread, fastest of {args.rounds} alternating rounds, {len(files)} files:\n")
    print("| step | earlier | current | saved |\n|---|---:|---:|---:|")
    for name, (earlier, current) in best.items():
        print(f"| {name} | {earlier:.2f} | {current:.2f} | {earlier - current:.2f} |")
    earlier, current = (sum(times[column] for times in best.values()) for column in (0, 1))
    print(f"| **these steps** | {earlier:.2f} | {current:.2f} | {earlier - current:.2f} |")


if __name__ == "__main__":
    main()
