"""How long does opening an image in the loupe at 100 % take? A 24-megapixel JPEG, cold cache.

Makes a 6000 x 4000 JPEG (a pristine photo from ../shared/data scaled up, else a generated one),
indexes it, and times ``ReviewService.loupe`` (full-resolution decode, the derivative JPEG written
to the render cache, the heat-map computed and cached) with an empty cache, then warm; and, in
headless Chromium, from pressing → to the loupe's image decoded at 100 % (cold, after z).

Usage: .venv/bin/python bench/bench_loupe.py [--repeat 5]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("PIXELPERFECT_SHARED_DATA", REPO.parent / "shared" / "data"))
SIZE = (6000, 4000)


def make_big_jpeg(path: Path, variant: int) -> Path:
    from PIL import Image, ImageOps

    photos = sorted((SHARED / "pristine").rglob("*.jpg"))
    if photos:
        image = Image.open(photos[variant % len(photos)]).convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
    else:
        from tests.ui_support import make_photo

        image = Image.open(make_photo(path.with_suffix(".src.jpg"), size=SIZE, seed=variant))
    path.parent.mkdir(parents=True, exist_ok=True)
    ImageOps.exif_transpose(image).save(path, format="JPEG", quality=92)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from pixelperfect_daemon.index import ImageIndex
    from pixelperfect_daemon.metadata import MetadataWriter
    from review_ui.service import ReviewService
    from tests.ui_support import add_analysed, make_settings

    with tempfile.TemporaryDirectory(prefix="pixelperfect-loupe-") as work:
        work = Path(work)
        settings = make_settings(work)
        index = ImageIndex(settings.index.database)
        # The browser walks files[0..repeat] (gallery order: worst quality first); the service times the rest.
        files = [make_big_jpeg(work / "watch" / f"big-{i:02d}.jpg", i) for i in range(2 * args.repeat + 1)]
        for number, path in enumerate(files):
            add_analysed(index, path, verdict="poor", defect="blur", quality=0.1 + number / 100)
        service = ReviewService(settings, index=index, metadata=MetadataWriter(settings.metadata))
        browser = browser_times(settings, service, files, args.repeat)
        cold, warm = [], []
        for path in files[args.repeat + 1 :]:
            started = time.perf_counter()
            service.loupe(str(path))
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            service.loupe(str(path))
            warm.append(time.perf_counter() - started)
        service.close()
        index.close()
        shutil.rmtree(work / "watch", ignore_errors=True)
    print(f"24 MP JPEG ({SIZE[0]} x {SIZE[1]}), {args.repeat} files, median (min-max):\n")
    print("| step | seconds |\n|---|---:|")
    for label, values in (("loupe, cold cache (decode + derivative + heat-map)", cold), ("loupe, warm cache", warm),
                          ("browser: → to the 100 % image shown, cold", browser)):  # fmt: skip
        if values:
            print(f"| {label} | {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f}) |")
    return 0


def browser_times(settings, service, files, repeat) -> list[float]:
    """From pressing → to the next image decoded and laid out at 100 % in the loupe (its cache cold)."""
    from playwright.sync_api import sync_playwright

    from tests.ui_support import CHROMIUM, CHROMIUM_ARGS, served_app

    if not CHROMIUM.exists():
        return []
    times = []
    with served_app(settings, service, {}) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#gallery img")
        page.locator("#gallery button.thumbnail-item").first.click()
        page.wait_for_selector(".pp-loupe[data-ready]")
        page.locator("#details").click()
        page.keyboard.press("z")  # 100 % from now on: each next image opens zoomed
        for number in range(1, repeat + 1):
            name = files[number].name
            started = time.perf_counter()
            page.locator("#next-image").click()
            page.wait_for_function(
                "name => { const p = document.querySelector('.pp-loupe.pp-zoomed[data-ready]');"
                " const i = p && p.querySelector('img'); return p && p.dataset.path.endsWith(name) && i.complete"
                " && i.naturalWidth > 0; }", arg=name, timeout=30_000,
            )  # fmt: skip
            times.append(time.perf_counter() - started)
        browser.close()
    return times


if __name__ == "__main__":
    raise SystemExit(main())
