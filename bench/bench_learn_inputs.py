"""What keeping the learn inputs in the index costs, against decoding reviewed files again on learn.

* **bytes per row**: the SQLite file of N analysed rows with and without the ``learn_inputs`` column
  filled (57 float32), and, for comparison, what the heads' full inputs would take (the backbone
  features and statistics of both views, 8 304 float32);
* **seconds per file**: ``Analyzer.analyze_path`` (decode + views + models), what ``learn`` pays
  for each reviewed row whose inputs are not kept, on each folder given (one thread);
* **seconds of learn itself**: fitting and checking an adaptation on N reviews.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_learn_inputs.py \
    --folder ../shared/data/clive_train --folder ../shared/data/pristine
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixelperfect_daemon.adaptation import LEARN_INPUTS
from pixelperfect_daemon.config import PACKAGE_MODELS_DIR
from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.files import iter_image_files
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.learning import Reviews, fit_adaptation, load_validation, validation_measures
from pixelperfect_daemon.result import AnalysisResult

HEAD_INPUTS = 8304


def index_bytes(rows: int, with_inputs: bool) -> int:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "index.sqlite"
        with ImageIndex(database) as index:
            for number in range(rows):
                scores = dict(zip(DEFECTS, rng.dirichlet(np.ones(len(DEFECTS))).round(6)))
                result = AnalysisResult(
                    path=f"/photos/IMG_{number:06d}.jpg",
                    verdict="good",
                    quality=0.7,
                    defect=None,
                    defect_scores=scores,
                    model_version="m",
                    learn_inputs=tuple(rng.random(len(LEARN_INPUTS))) if with_inputs else None,
                )
                index.record_analysis(
                    Path(result.path),
                    blake3=f"{number:064x}",
                    size=1000,
                    mtime=0.0,
                    result=result,
                    analyzed_at="2026-12-06T00:00:00Z",
                    tagged_file=None,
                )
            index.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return database.stat().st_size


def seconds_per_file(analyzer: Analyzer, folder: Path, count: int) -> tuple[float, int]:
    files = list(iter_image_files([folder]))[:count]
    analyzer.analyze_path(files[0])  # warm up the interpreters
    started = time.perf_counter()
    for path in files:
        analyzer.analyze_path(path)
    return (time.perf_counter() - started) / len(files), len(files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, action="append", required=True)
    parser.add_argument("--files", type=int, default=40, help="files timed per folder")
    parser.add_argument("--rows", type=int, default=5000, help="index rows for the size measurement")
    parser.add_argument(
        "--big",
        type=int,
        default=5,
        help="also time this many 24-megapixel JPEGs (made from the first folder's photos, enlarged)",
    )
    args = parser.parse_args(argv)
    analyzer = Analyzer(PACKAGE_MODELS_DIR)
    without, with_inputs = index_bytes(args.rows, False), index_bytes(args.rows, True)
    print("| measure | value |\n|---|---|")
    print(
        f"| index bytes per row, learn inputs kept (57 float32 = {4 * len(LEARN_INPUTS)} B of data) | "
        f"{(with_inputs - without) / args.rows:.0f} more than without ({without / args.rows:.0f} B a row) |"
    )
    print(f"| the heads' full inputs, for comparison ({HEAD_INPUTS} float32) | {4 * HEAD_INPUTS} B a row |")
    for folder in args.folder:
        seconds, count = seconds_per_file(analyzer, folder, args.files)
        print(
            f"| decoding and analysing a reviewed file again, {folder.name} ({count} files, one thread) | "
            f"{seconds:.3f} s a file |"
        )
    if args.big:
        with tempfile.TemporaryDirectory() as folder:
            for number, path in enumerate(list(iter_image_files([args.folder[0]]))[: args.big]):
                Image.open(path).convert("RGB").resize((6000, 4000), Image.BICUBIC).save(
                    Path(folder) / f"big{number}.jpg", quality=92
                )
            seconds, count = seconds_per_file(analyzer, Path(folder), args.big)
        print(
            f"| decoding and analysing a reviewed file again, 24-megapixel JPEGs ({count} files, one thread) | "
            f"{seconds:.3f} s a file |"
        )
    validation = load_validation(PACKAGE_MODELS_DIR, analyzer.model_version)
    rng = np.random.default_rng(0)
    for size in (100, 1000):
        rows = rng.integers(0, len(validation.synthetic_inputs), size)
        inputs = validation.synthetic_inputs[rows]
        reviews = Reviews(inputs=inputs, poor=rng.random(size) < inputs[:, 0], paths=[])
        started = time.perf_counter()
        adaptation, _ = fit_adaptation(reviews, validation, analyzer.model_version, 0.5, 0.35)
        if adaptation is not None:
            validation_measures(validation, adaptation.is_poor)
        seconds = time.perf_counter() - started
        print(f"| fitting (6 strengths x 5 folds) and checking on {size} reviews | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
