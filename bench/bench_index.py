"""Index benchmark: what one daemon's index stage costs per file on SQLite and on PostgreSQL.

For each backend, times N files through what the pipeline does per new file: ``claim`` (PostgreSQL
only; a no-op on SQLite), ``get`` (the second look after the claim), ``record_analysis`` and
``release``; then a filtered review-UI page (``search_images``) over the N rows. PostgreSQL is a
throw-away local cluster on a unix socket (tests/postgres_server.py), or ``--postgres-url`` for a
real server (the password from ``--password-env``).

Usage: .venv/bin/python bench/bench_index.py [--files 2000] [--postgres-url URL --password-env VAR]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixelperfect_daemon.index import ImageIndex  # noqa: E402
from pixelperfect_daemon.labels import DEFECTS  # noqa: E402
from pixelperfect_daemon.result import AnalysisResult  # noqa: E402
from review_ui.queries import ImageFilter, IndexReader, search_images  # noqa: E402

SCORES = {key: 1 / len(DEFECTS) for key in DEFECTS}


def per_file(database, files: int, password_env: str) -> tuple[float, float]:
    """(files per second through claim + get + record_analysis + release, median UI page seconds)."""
    result = AnalysisResult(
        path="x", verdict="poor", quality=0.2, defect="blur", defect_scores=SCORES, model_version="bench"
    )
    with ImageIndex(database, password_env=password_env) as index:
        started = time.perf_counter()
        for i in range(files):
            path = Path(f"/bench/{i % 40}/IMG_{i:06}.jpg")
            assert index.claim(path, "bench", timeout=60)
            index.get(path)
            index.record_analysis(
                path,
                blake3=f"{i:064x}",
                size=1000 + i,
                mtime=float(i),
                result=result,
                analyzed_at=f"2026-12-{1 + i % 28:02d}T00:00:00Z",
                tagged_file=path,
            )
            index.release(path, "bench")
        rate = files / (time.perf_counter() - started)
    reader = IndexReader(database, password_env=password_env).connection()
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        search_images(reader, ImageFilter(verdict="poor", defect="blur", folder="/bench/7"), page=2, page_size=48)
        timings.append(time.perf_counter() - started)
    reader.close()
    return rate, statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--password-env", default="")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(("SQLite file", *per_file(Path(folder) / "bench.sqlite", args.files, "")))
    if args.postgres_url:
        rows.append(("PostgreSQL", *per_file(args.postgres_url, args.files, args.password_env)))
    else:
        from tests.postgres_server import PostgresServer, find_binaries

        binaries = find_binaries()
        if binaries is None:
            sys.exit("no PostgreSQL binaries: pass --postgres-url or install postgresql")
        server = PostgresServer(binaries).start()
        try:
            rows.append(("PostgreSQL (local socket, fsync off)", *per_file(server.new_index_url(), args.files, "")))
        finally:
            server.stop()
    print(f"| index ({args.files} files) | files/s (claim + get + record + release) | filtered UI page (median) |")
    print("|---|---|---|")
    for name, rate, page in rows:
        print(f"| {name} | {rate:.0f} | {page * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
