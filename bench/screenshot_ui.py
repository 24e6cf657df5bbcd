"""Screenshots of the review UI with real photos, for the README and docs/review-ui.md.

Indexes a mix of real photos from ../shared/data (sharp and defocused pairs, low-light, noisy,
pristine) plus a made-up burst (shifted crops of one pristine photo, one of them blurred, with
fake EXIF capture times, written to a temporary folder) into a throw-away index, serves the app
on a free loopback port, opens it in headless Chromium and saves:

* ``review-ui.png``: the main screen, a blurred photo selected, its loupe fitted;
* ``review-ui-loupe-heatmap.png``: the same at 100 % with the heat-map overlay;
* ``review-ui-compare.png``: two photos side by side at 100 %, panes locked;
* ``review-ui-bursts.png``: the Bursts view with the suggested pick.

Verdicts come from the trained models when models/ has them; otherwise (``--labels manifest``, or
automatically while the models are not trained yet) from the data set's own labels in
manifest.csv, with the model version set to say so and no quality or probabilities.

The photos are only read: nothing in ../shared/data is tagged, copied or changed.

Usage: .venv/bin/python bench/screenshot_ui.py [--out-dir docs] [--labels auto|model|manifest]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import os
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
MANIFEST_MODEL_VERSION = "manifest-labels (models not trained yet)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pick_photos(data: Path, per_set: int) -> list[dict]:
    """A few of each kind of photo, in manifest order (deterministic)."""
    with (data / "manifest.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["expected_verdict"]]
    chosen, taken = [], {}
    for row in rows:
        key = (row["set"], row["expected_verdict"])
        if taken.get(key, 0) < per_set:
            taken[key] = taken.get(key, 0) + 1
            chosen.append(row)
    return chosen


class NoModelsYet:
    """Stands in for the analyzer while models/ is empty: the data set's own labels, clearly marked."""

    model_version = MANIFEST_MODEL_VERSION

    def __init__(self, labels: dict[str, dict]):
        self.labels = labels

    def analyze_path(self, path: Path):
        from pixelperfect_daemon.result import AnalysisResult

        row = self.labels[str(path)]
        verdict = row["expected_verdict"]
        return AnalysisResult(
            path=str(path), verdict=verdict, quality=None,
            defect=(row["expected_defect"] or None) if verdict == "poor" else None,
            defect_scores=None, model_version=self.model_version,
        )  # fmt: skip


def make_analyzer(settings, mode: str, labels: dict[str, dict]):
    if mode in ("auto", "model"):
        try:
            from pixelperfect_daemon.engine import Analyzer

            return Analyzer.from_settings(settings.analysis)
        except Exception as error:  # models not trained yet
            if mode == "model":
                raise SystemExit(f"cannot load the models: {error}") from None
            print(f"models not available ({error}); using the manifest's labels", file=sys.stderr)
    return NoModelsYet(labels)


def build_index(settings, photos: list[dict], data: Path, analyzer) -> None:
    from pixelperfect_daemon.index import ImageIndex
    from pixelperfect_daemon.loading import load_image

    index = ImageIndex(settings.index.database)
    start = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
    try:
        for number, row in enumerate(photos):
            path = (data / row["file"]).resolve()
            result = analyzer.analyze_path(path)
            width, height = load_image(path, min_side=16).original_size
            index.record_analysis(
                path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size,
                mtime=path.stat().st_mtime, result=result, tagged_file=None, width=width, height=height,
                analyzed_at=(start + dt.timedelta(minutes=number)).isoformat(timespec="seconds"),
            )  # fmt: skip
    finally:
        index.close()


def make_burst(data: Path, folder: Path) -> list[Path]:
    """Four frames of one pristine photo as a hand-held burst: drifting crops, the third one soft."""
    from PIL import Image, ImageFilter

    source = sorted((data / "pristine").rglob("*.jpg"))[0]
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    with Image.open(source) as image:
        image = image.convert("RGB")
        width, height = image.size
        for number in range(4):
            shift = number * width // 60
            frame = image.crop((shift, shift // 2, shift + width * 9 // 10, shift // 2 + height * 9 // 10))
            if number == 2:
                frame = frame.filter(ImageFilter.GaussianBlur(3))
            exif = Image.Exif()
            exif.get_ifd(0x8769)[36867] = "2024:05:01 09:30:00"
            exif.get_ifd(0x8769)[37521] = str(number * 3)
            path = folder / f"burst-{number + 1}.jpg"
            frame.save(path, format="JPEG", quality=92, exif=exif)
            frames.append(path)
    return frames


def capture(url: str, out_dir: Path, pick_name: str | None) -> None:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1680, "height": 1450}, device_scale_factor=1)
        page.goto(url)
        page.wait_for_selector("#gallery img")
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 6")
        thumbs = page.locator("#gallery button.thumbnail-item")
        index = 0
        if pick_name:
            captions = page.locator("#gallery .caption-label").all_inner_texts()
            index = next((i for i, c in enumerate(captions) if c.endswith(f"· {pick_name}")), 0)
        thumbs.nth(index).click()
        page.wait_for_selector(".pp-loupe[data-ready]")
        page.wait_for_timeout(800)  # let the loupe's image finish painting
        page.screenshot(path=str(out_dir / "review-ui.png"), full_page=False)

        page.locator("#details").click()
        page.keyboard.press("z")
        page.keyboard.press("h")
        page.wait_for_timeout(800)
        page.locator("#loupe").screenshot(path=str(out_dir / "review-ui-loupe-heatmap.png"))
        page.keyboard.press("h")
        page.keyboard.press("z")

        # Compare two frames of the made-up burst: the sharp first one and the soft third one.
        page.locator("#filter-verdict label", has_text="All").click()
        page.locator("#bulk").get_by_text("Bulk review of this page").click()
        page.wait_for_function("[...document.querySelectorAll('#bulk-selection label')].some(l => "
                               "l.textContent.includes('burst-3.jpg'))")  # fmt: skip
        for name in ("burst-1.jpg", "burst-3.jpg"):
            page.locator("#bulk-selection label", has_text=name).click()
        page.locator("#compare-ticked").click()
        page.wait_for_selector("#compare-pane-1 .pp-loupe[data-ready]")
        page.locator("#compare-panes .pp-loupe").first.click()
        page.wait_for_timeout(800)
        page.locator("#compare-panes").screenshot(path=str(out_dir / "review-ui-compare.png"))
        page.keyboard.press("z")

        page.get_by_role("tab", name="Bursts").click()
        page.locator("#find-bursts").click()
        page.wait_for_function("document.querySelector('#burst-status').innerText.includes('found')", timeout=120_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(out_dir / "review-ui-bursts.png"), full_page=False, clip={"x": 0, "y": 0, "width": 1680,
                        "height": 760})  # fmt: skip
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--labels", choices=("auto", "model", "manifest"), default="auto")
    parser.add_argument("--per-set", type=int, default=8)
    args = parser.parse_args()
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"no real photos at {args.data}")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

    from pixelperfect_daemon.config import settings_from_dict
    from pixelperfect_daemon.metadata import MetadataWriter
    from review_ui.app import launch_ui
    from review_ui.service import ReviewService

    with tempfile.TemporaryDirectory(prefix="pixelperfect-screenshot-") as work:
        work = Path(work)
        settings = settings_from_dict(
            {"watch": {"folders": [str(args.data.resolve()), str(work / "bursts")]},
             "index": {"database": str(work / "index.sqlite")},
             "ui": {"thumbnail_cache": str(work / "thumbnails"), "page_size": 24}},
            base_dir=REPO,
        )  # fmt: skip
        photos = pick_photos(args.data, args.per_set)
        burst = make_burst(args.data, work / "bursts")
        photos += [{"file": str(p), "set": "burst", "expected_verdict": "good", "expected_defect": ""} for p in burst]
        labels = {str((args.data / r["file"]).resolve()): r for r in photos}
        analyzer = make_analyzer(settings, args.labels, labels)
        build_index(settings, photos, args.data, analyzer)
        from pixelperfect_daemon.index import ImageIndex

        index = ImageIndex(settings.index.database)
        metadata = MetadataWriter(settings.metadata)  # never called: the screenshot reviews nothing
        service = ReviewService(settings, index=index, metadata=metadata)
        demo, (_app, url, _share) = launch_ui(settings, service, {}, server_port=free_port(), prevent_thread_lock=True)
        try:
            blurred = next((Path(r["file"]).name for r in photos if r["expected_defect"] == "blur"), None)
            capture(url, args.out_dir, blurred)
        finally:
            demo.close()
            service.close()
            index.close()
    print(f"wrote the screenshots to {args.out_dir} ({len(photos)} photos, labels: {analyzer.model_version})")


if __name__ == "__main__":
    main()
