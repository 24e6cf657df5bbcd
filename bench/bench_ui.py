"""Review-UI benchmark: a 100 000-row index, a filtered /search, and a gallery page in Chromium.

Builds a throw-away index of N rows (default 100 000) whose paths are hard links to a handful of
real photos (../shared/data/pristine where present, else generated JPEGs), so every row is a real
file with its own thumbnail, serves the app on a free loopback port and measures:

* **/search via gradio_client**: filtered (Poor + Blur + quality <= 0.5, page 3), unfiltered
  (first page), by file name (a substring: the one filter no index can serve), and /counts;
  median of several calls, end to end (HTTP + queue + SQL);
* **gallery page in Chromium**: from clicking a verdict filter to every thumbnail of the new page
  decoded and shown, cold (thumbnails generated on the way) and warm (cached); and the first
  load of the page.

The rows are inserted with one executemany into the schema ImageIndex creates (recording 100 000
analyses one by one would measure the index writer, not the UI).

Usage: .venv/bin/python bench/bench_ui.py [--rows 100000] [--repeat 7]
Prints a markdown table; the target is under 1 s for the filtered search and for a page render.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
FOLDERS = 100
DEFECTS_BY_FREQUENCY = ["blur", "noise", "luminance_contrast", "compression", "color_distortion", "other",
                        "transmission_errors"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def source_photos(work: Path, count: int = 12) -> list[Path]:
    photos = sorted((SHARED / "pristine").rglob("*.jpg"))[:count] if SHARED.is_dir() else []
    if photos:
        return photos
    from tests.fixtures_images import make_jpeg

    (work / "sources").mkdir(parents=True, exist_ok=True)
    return [make_jpeg(work / "sources" / f"{i}.jpg", size=(1600, 1067), variant=i) for i in range(4)]


def fill_index(database: Path, watch: Path, sources: list[Path], rows: int) -> None:
    from pixelperfect_daemon.index import ImageIndex
    from pixelperfect_daemon.labels import DEFECTS

    ImageIndex(database).close()  # the real schema and indexes
    rng = np.random.default_rng(0)
    poor = rng.random(rows) < 0.3
    defect_weights = np.array([0.35, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05])
    defects = rng.choice(DEFECTS_BY_FREQUENCY, rows, p=defect_weights)
    quality = np.where(poor, rng.beta(2, 5, rows), rng.beta(5, 2, rows))
    reviewed = rng.random(rows) < 0.02
    records = []
    for i in range(rows):
        folder = watch / f"shoot-{i % FOLDERS:03d}"
        path = folder / f"IMG_{i:06d}.jpg"
        if i < FOLDERS:
            folder.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], path)
        defect = str(defects[i]) if poor[i] else None
        scores = dict.fromkeys(DEFECTS, 0.05)
        if defect:
            scores[defect] = 0.7
        records.append((
            str(path), str(folder), path.name, "poor" if poor[i] else "good", defect, float(quality[i]),
            json.dumps(scores), "bench-1", "ok", f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00+00:00",
            "good" if reviewed[i] else None, "bench" if reviewed[i] else None, 6000, 4000,
        ))  # fmt: skip
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO images (path, folder, file_name, verdict, defect, quality, defect_scores, model_version, "
            "status, analyzed_at, reviewed_verdict, reviewed_by, width, height) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            records,
        )
        conn.execute("ANALYZE")


def timed(call, repeat: int) -> tuple[float, object]:
    result, times = None, []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_api(url: str, repeat: int, folder: Path) -> list[tuple[str, float, str]]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    cases = [
        ("/search Poor + Blur + quality ≤ 0.5, page 3",
         lambda: client.predict(verdict="poor", defect="blur", quality_max=0.5, page=3, api_name="/search")),
        ("/search, no filter (first page)", lambda: client.predict(api_name="/search")),
        ("/search by file name substring", lambda: client.predict(name="IMG_0424", api_name="/search")),
        ("/search Poor + folder + date range",
         lambda: client.predict(verdict="poor", folder=str(folder), date_from="2024-03-01",
                                date_to="2024-06-30", api_name="/search")),
        ("/counts Poor", lambda: client.predict(verdict="poor", api_name="/counts")),
    ]  # fmt: skip
    results = []
    for name, call in cases:
        call()  # warm the connection
        seconds, result = timed(call, repeat)
        detail = f"{result['total']:,} matches" if "total" in result else f"{sum(result['defects'].values()):,} Poor"
        results.append((name, seconds, detail))
    return results


def bench_gallery(url: str, page_size: int) -> list[tuple[str, float, str]]:
    from playwright.sync_api import sync_playwright

    all_loaded = (
        "n => { const imgs = [...document.querySelectorAll('#gallery img')];"
        " return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }"
    )
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1680, "height": 1050})
        page.set_default_timeout(120_000)
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function(all_loaded, arg=page_size)
        results.append(
            ("first load of the app (cold thumbnails)", time.perf_counter() - started, f"{page_size} thumbnails")
        )

        def switch(label: str) -> float:
            before = page.locator("#gallery img").first.get_attribute("src")
            started = time.perf_counter()
            page.locator("#filter-verdict label", has_text=label).click()
            page.wait_for_function(
                f"([n, before]) => (({all_loaded})(n)) && document.querySelector('#gallery img').src !== before",
                arg=[page_size, before],
            )
            return time.perf_counter() - started

        results.append(
            ("gallery page after a filter click, cold thumbnails", switch("Good"), f"{page_size} thumbnails")
        )
        switch("Poor")
        warm = [switch(label) for label in ("Good", "Poor", "Good", "Poor")]
        results.append(("gallery page after a filter click, cached thumbnails", statistics.median(warm),
                        f"{page_size} thumbnails"))  # fmt: skip
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

    from pixelperfect_daemon.config import settings_from_dict
    from pixelperfect_daemon.index import ImageIndex
    from pixelperfect_daemon.metadata import MetadataWriter
    from review_ui.app import launch_ui
    from review_ui.service import ReviewService

    with tempfile.TemporaryDirectory(prefix="pixelperfect-bench-ui-") as work:
        work = Path(work)
        settings = settings_from_dict(
            {"watch": {"folders": [str(work / "watch")]}, "index": {"database": str(work / "index.sqlite")},
             "ui": {"thumbnail_cache": str(work / "thumbnails")}},
            base_dir=work,
        )  # fmt: skip
        started = time.perf_counter()
        sources = source_photos(work)
        fill_index(settings.index.database, work / "watch", sources, args.rows)
        fill_seconds = time.perf_counter() - started
        index = ImageIndex(settings.index.database)
        metadata = MetadataWriter(settings.metadata)
        service = ReviewService(settings, index=index, metadata=metadata)
        demo, (_app, url, _share) = launch_ui(settings, service, {}, server_port=free_port(), prevent_thread_lock=True)
        try:
            api = bench_api(url.rstrip("/"), args.repeat, work / "watch" / "shoot-007")
            gallery = bench_gallery(url.rstrip("/"), settings.ui.page_size)
        finally:
            demo.close()
            service.close()
            index.close()

    print(f"\n{args.rows:,} rows (filled in {fill_seconds:.1f} s), {len(sources)} source photos, "
          f"page size {settings.ui.page_size}, {os.cpu_count()} CPU cores\n")  # fmt: skip
    print("| measurement | seconds | |")
    print("|---|---:|---|")
    for name, seconds, detail in [*api, *gallery]:
        print(f"| {name} | {seconds:.3f} | {detail} |")


if __name__ == "__main__":
    main()
