"""CPU time per file of each step of `analyze`, on bench_engine.py's files, in one thread.

    .venv/bin/python bench/engine_stage_cpu.py [--workdir /tmp/pixelperfect-bench] [--count 12] [--rounds 3]

Steps (thread CPU time, median over ``--rounds`` passes, ms per file):

* entropy decode: libjpeg-turbo reading the coefficients with no filter (alone, for reference:
  the DCT route's next two rows include it);
* read + structural scan: reading the file and ``loading.scan_jpeg_structure`` (damage check);
* DCT route, coefficients: the route's decode minus the two rows below it (entropy decode plus
  the custom filter's gathering of coefficients);
* reduced copy from coefficients / region decode (inverse DCT, upsampling, colour of the crop);
* views: the detail search and the overview resize (or, on the full-decode route, all of
  ``views.views_and_reduced_copy``);
* noise meter: ``screen_noise.screen_noise_sigma`` on the reduced copy;
* full decode: at full resolution (what the route replaces; for small files the route): TurboJPEG
  for small clean JPEGs, Pillow for the rest;
* features, statistics, heads: the LiteRT backbone on both views, the views' statistics, the two heads.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pixelperfect_daemon import file_views, jpeg_dct, views  # noqa: E402
from pixelperfect_daemon.engine import Analyzer, _run  # noqa: E402
from pixelperfect_daemon.view_statistics import statistics_of_views  # noqa: E402

STEPS = (
    "entropy decode (reference)",
    "read + structural scan",
    "DCT route: coefficients",
    "DCT route: reduced copy",
    "DCT route: region decode",
    "views (search, overview)",
    "noise meter",
    "full decode (other files)",
    "features",
    "statistics",
    "heads",
)


def timed(counter: Counter, name: str, function):
    def wrapper(*args, **kwargs):
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            counter[name] += time.thread_time() - started

    return wrapper


def entropy_decode_only(data: bytes) -> None:
    library = jpeg_dct._turbojpeg()
    transforms = (jpeg_dct._Transform * 1)()
    transforms[0].options = jpeg_dct._TJXOPT_NOOUTPUT
    buffers, sizes = (ctypes.c_void_p * 1)(), (ctypes.c_ulong * 1)()
    handle = library.tjInitTransform()
    library.tjTransform(handle, data, len(data), 1, buffers, sizes, transforms, 0)
    library.tjDestroy(handle)


def one_pass(analyzer: Analyzer, files: list[Path]) -> Counter:
    cpu = Counter()
    patched = {
        (jpeg_dct, "_reduced_image"): "DCT route: reduced copy",
        (jpeg_dct, "_region_pixels"): "DCT route: region decode",
        (jpeg_dct, "decode_reduced_and_region"): "route",
        (file_views, "_search_copy"): "views: search",
        (file_views, "detail_origin_in"): "views: search",
        (file_views, "overview_view"): "views: overview",
        (file_views, "views_and_reduced_copy"): "views: overview",
        (file_views, "screen_noise_sigma"): "noise meter",
        (file_views, "read_all"): "read + structural scan",
        (file_views, "scan_jpeg_structure"): "read + structural scan",
        (file_views, "load_image"): "full decode (other files)",
        (file_views, "load_jpeg"): "full decode (other files)",
        (jpeg_dct, "decode_whole"): "full decode (other files)",
    }
    originals = {key: getattr(*key) for key in patched}
    for (module, name), step in patched.items():
        setattr(module, name, timed(cpu, step, originals[(module, name)]))
    try:
        features_model, stage1_model, stage2_model = analyzer._models()
        for path in files:
            timed(cpu, STEPS[0], entropy_decode_only)(path.read_bytes())
            pairs = file_views.load_views(path).views[None]
            flat = pairs.reshape(-1, views.VIEW_SIZE, views.VIEW_SIZE, 3).astype(np.float32)
            features = timed(cpu, "features", _run)(features_model, flat)
            stats = timed(cpu, "statistics", statistics_of_views)(pairs)
            inputs = np.concatenate([features.reshape(1, -1), stats], axis=1)
            timed(cpu, "heads", lambda inputs=inputs: (_run(stage1_model, inputs), _run(stage2_model, inputs)))()
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)
    # The route's own time, less what ran inside it and has its own row (the search runs inside it).
    inside = cpu["DCT route: reduced copy"] + cpu["DCT route: region decode"] + cpu["views: search"]
    cpu["DCT route: coefficients"] = max(0.0, cpu.pop("route", 0.0) - inside)
    cpu["views (search, overview)"] = cpu.pop("views: search", 0.0) + cpu.pop("views: overview", 0.0)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pixelperfect-bench"))
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # OpenCV in the calling thread, so that thread time sees all of its work.
    cv2.setNumThreads(1)
    analyzer = Analyzer(REPO / "models")
    kinds = {
        "24 MP JPEG": sorted((args.workdir / "24mp").glob("*.jpg"))[: args.count],
        "500x500 JPEG": sorted((args.workdir / "500px").glob("*.jpg"))[: args.count],
    }
    if not all(kinds.values()):
        raise SystemExit(f"no benchmark files under {args.workdir}: run bench/bench_engine.py first")
    one_pass(analyzer, kinds["500x500 JPEG"][:2])  # warm up the interpreters
    results = {name: [one_pass(analyzer, files) for _ in range(args.rounds)] for name, files in kinds.items()}
    print(f"CPU ms per file, one thread, median of {args.rounds} passes (model {analyzer.model_version}):\n")
    print("| step | " + " | ".join(kinds) + " |\n|---|" + "---:|" * len(kinds))
    for step in STEPS:
        cells = [statistics.median(1000 * r[step] / len(kinds[name]) for r in results[name]) for name in kinds]
        print(f"| {step} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    totals = [
        statistics.median(
            1000 * sum(v for k, v in r.items() if k != STEPS[0]) / len(kinds[name]) for r in results[name]
        )
        for name in kinds
    ]
    print("| **total (without the reference row)** | " + " | ".join(f"{t:.1f}" for t in totals) + " |")


if __name__ == "__main__":
    main()
