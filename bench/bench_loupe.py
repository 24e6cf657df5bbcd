"""How long does opening an image in the loupe at 100 % take? 24-megapixel JPEGs.

Makes 6000 x 4000 JPEGs (pristine photos from ../shared/data scaled up, else generated ones),
indexes them, and times ``ReviewService.loupe`` (full-resolution decode, the derivative JPEG
written to the render cache, the heat-map computed and cached) with an empty cache, then warm;
and, in headless Chromium at 100 %, from the click or key to the loupe's image decoded and shown:
a thumbnail clicked (its loupe not rendered yet) and → (the next image, rendered in the background
while the reviewer looked at the previous one for a second).

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
        # The browser opens files[0 : 2 * repeat] (and prefetches the next one); the service times the rest.
        files = [make_big_jpeg(work / "watch" / f"big-{i:02d}.jpg", i) for i in range(3 * args.repeat + 1)]
        for number, path in enumerate(files):
            add_analysed(index, path, verdict="poor", defect="blur", quality=0.1 + number / 100)
        service = ReviewService(settings, index=index, metadata=MetadataWriter(settings.metadata))
        clicked, stepped = browser_times(settings, service, files, args.repeat)
        cold, warm = [], []
        for path in files[2 * args.repeat + 1 :]:
            started = time.perf_counter()
            service.loupe(str(path))
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            service.loupe(str(path))
            warm.append(time.perf_counter() - started)
        service.close()
        index.close()
        shutil.rmtree(work / "watch", ignore_errors=True)
    print(f"24 MP JPEGs ({SIZE[0]} x {SIZE[1]}), {args.repeat} of each, median (min-max); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:\n")  # fmt: skip
    print("| step | seconds |\n|---|---:|")
    for label, values in (("service: loupe, cold cache (decode + derivative + heat-map)", cold),
                          ("service: loupe, warm cache", warm),
                          ("browser: thumbnail clicked to the 100 % image shown (cold)", clicked),
                          ("browser: → to the 100 % image shown (rendered in the background)", stepped)):  # fmt: skip
        if values:
            print(f"| {label} | {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f}) |")
    return 0


SHOWN_JS = (
    "name => { const p = document.querySelector('.pp-loupe.pp-zoomed[data-ready]');"
    " const i = p && p.querySelector('img'); return !!p && p.dataset.path.endsWith(name) && i.complete"
    " && i.naturalWidth > 0; }"
)


def browser_times(settings, service, files, repeat) -> tuple[list[float], list[float]]:
    """Seconds to the 100 % image shown: after clicking a thumbnail (cold), and after → (prefetched)."""
    from playwright.sync_api import sync_playwright

    from tests.ui_support import CHROMIUM, CHROMIUM_ARGS, served_app

    if not CHROMIUM.exists():
        return [], []
    clicked, stepped = [], []
    with served_app(settings, service, {}) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#gallery img")
        page.evaluate("() => window.ppLoupe.toggleZoom()")  # 100 % from now on: each image opens zoomed
        for number in range(0, 2 * repeat, 2):
            # The gallery lists worst quality first, which is the order the files were made in.
            started = time.perf_counter()
            page.locator("#gallery button.thumbnail-item").nth(number).click()
            page.wait_for_function(SHOWN_JS, arg=files[number].name, timeout=60_000)
            clicked.append(time.perf_counter() - started)
            time.sleep(1.0)  # the reviewer looks at the image; the next one renders meanwhile
            started = time.perf_counter()
            page.locator("#next-image").click()
            page.wait_for_function(SHOWN_JS, arg=files[number + 1].name, timeout=60_000)
            stepped.append(time.perf_counter() - started)
        browser.close()
    return clicked, stepped


if __name__ == "__main__":
    raise SystemExit(main())
