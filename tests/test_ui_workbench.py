"""The reviewer's workbench in headless Chromium: loupe at 100 %, heat-map, keys during navigation,
live refresh, the first click after typing a name.

Pixels are compared with the original decoded by the daemon's own loader; decisions are checked in
the SQLite index.
"""

from __future__ import annotations

import io
import os
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.loading import load_image
from review_ui.service import local_reviewer
from tests.ui_support import CHROMIUM, add_analysed, make_photo, review_setup, served_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]
TIMEOUT_MS = 20_000
BIG = (2400, 1600)


def make_damaged_photo(path, size=BIG):
    """A textured photo whose top-left quarter is blurred: the heat-map must point there."""
    rng = np.random.default_rng(7)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 6, (height, width))
    pixels = np.clip(np.stack([base, base * 0.9, base * 0.8], axis=-1), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    corner = image.crop((0, 0, width // 4, height // 4)).filter(ImageFilter.GaussianBlur(5))
    image.paste(corner, (0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=92)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("workbench")
    setup = review_setup(root)
    big = make_damaged_photo(root / "watch" / "big-blur.jpg")
    add_analysed(setup.index, big, verdict="poor", defect="blur", quality=0.01)
    setup.files["big-blur.jpg"] = big
    second = make_photo(root / "watch" / "big-sharp.jpg", kind="sharp", size=BIG, seed=3)
    add_analysed(setup.index, second, verdict="good", quality=0.95)
    setup.files["big-sharp.jpg"] = second
    with served_app(setup.settings, setup.service, {}) as url:
        yield setup, url
    setup.close()


def open_page(browser, url):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#gallery img")
    return context, page


@pytest.fixture
def page(app, browser):
    context, page = open_page(browser, app[1])
    yield page
    context.close()


def captions(page) -> list[str]:
    return [t.split(" · ").pop() for t in page.locator("#gallery .caption-label").all_inner_texts()]


def open_image(page, name: str) -> None:
    page.locator("#gallery button.thumbnail-item", has_text=name).click()
    page.wait_for_function(f"document.querySelector('#details').innerText.includes({name!r})")
    page.wait_for_selector(f".pp-loupe[data-ready][data-path$={name!r}]", state="attached")


def screenshot(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=np.int16)


def review_row(setup, name: str) -> tuple:
    with sqlite3.connect(setup.settings.index.database) as conn:
        return conn.execute("SELECT reviewed_verdict, reviewed_defect FROM images WHERE path = ?",
                            [str(setup.files[name])]).fetchone()  # fmt: skip


def test_loupe_at_100_percent_shows_the_decoded_pixels_centred_on_the_flagged_region(app, page):
    setup, _ = app
    open_image(page, "big-blur.jpg")
    page.locator("#details").click()
    page.keyboard.press("z")
    page.wait_for_selector(".pp-loupe.pp-zoomed")
    loupe = page.locator("#loupe .pp-loupe")
    geometry = loupe.evaluate(
        "p => { const i = p.querySelector('img'); return {left: p.scrollLeft, top: p.scrollTop, w: p.clientWidth,"
        " h: p.clientHeight, natural: i.naturalWidth, shown: i.getBoundingClientRect().width} }"
    )
    assert geometry["natural"] == BIG[0] and geometry["shown"] == BIG[0]  # one image pixel per screen pixel
    # Opened on the blurred top-left quarter, where the heat-map's hottest blur tile lies.
    centre_x, centre_y = geometry["left"] + geometry["w"] / 2, geometry["top"] + geometry["h"] / 2
    assert centre_x < BIG[0] / 4 + BIG[0] / 8 and centre_y < BIG[1] / 4 + BIG[1] / 6, geometry

    # Screen pixels inside the pane against the decoded original at the image's on-screen offset.
    rects = loupe.evaluate(
        "p => { const r = p.getBoundingClientRect(), i = p.querySelector('img').getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom, i.left, i.top] }"
    )
    x0, y0, x1, y1 = int(np.ceil(rects[0])), int(np.ceil(rects[1])), int(rects[2]), int(rects[3])
    image_left, image_top = round(rects[4]), round(rects[5])
    decoded = np.asarray(load_image(setup.files["big-blur.jpg"]).image, dtype=np.int16)
    padded = np.pad(decoded, ((1, 1), (1, 1), (0, 0)), mode="edge")

    def view(dx: int, dy: int) -> np.ndarray:
        """The decoded original as the pane should show it, moved (dx, dy) pixels."""
        top, left = y0 - image_top + 1 + dy, x0 - image_left + 1 + dx
        return padded[top : top + y1 - y0, left : left + x1 - x0]

    # The layout's fractional position and the renderer's pixel snapping may disagree by a pixel, and a
    # renderer may draw at a fractional offset: the views a pixel or half a pixel off count too.
    offsets = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    candidates = {offset: view(*offset) for offset in offsets}
    candidates.update({(dx / 2, dy / 2): (view(0, 0) + view(dx, dy)) / 2 for dx, dy in offsets if dx or dy})
    # Chromium may show the fit view's scaled decode for a few frames before the full one: the pixels
    # must arrive, within seconds.
    deadline = time.monotonic() + 10
    while True:
        shot = screenshot(page)[y0:y1, x0:x1]
        assert shot.shape == view(0, 0).shape and shot.shape[0] > 400
        errors = {offset: np.abs(shot - candidate).mean() for offset, candidate in candidates.items()}
        best = min(errors, key=errors.get)
        if errors[best] < 3.0 or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    error = errors[best]
    assert error < 3.0, f"screen differs from the decoded original by {error:.2f} levels on average (at {best})"
    # The comparison can fail: the same view two pixels further off differs far more.
    assert np.abs(shot - view(round(best[0]) + 2, round(best[1]) + 2)).mean() > 3 * error
    left = geometry["left"]

    # Panning by keys moves the view; z again fits the whole image.
    page.keyboard.press("ArrowRight")
    page.wait_for_function("left => document.querySelector('.pp-loupe').scrollLeft > left", arg=left)
    page.keyboard.press("z")
    page.wait_for_selector(".pp-loupe:not(.pp-zoomed)")
    assert loupe.evaluate("p => p.querySelector('img').getBoundingClientRect().width") < BIG[0]


def test_heatmap_overlay_toggles_and_its_hottest_tile_is_the_damaged_corner(app, page):
    setup, _ = app
    open_image(page, "big-blur.jpg")
    heat = setup.service.heatmap(str(setup.files["big-blur.jpg"]))
    overlay = page.locator("#loupe .pp-heatmap")
    assert not overlay.is_visible()
    page.locator("#loupe-heat").click()
    overlay.wait_for(state="visible")
    scores = overlay.locator(".pp-heat-cell").evaluate_all("cells => cells.map(c => Number(c.dataset.score))")
    assert len(scores) == heat.rows * heat.columns
    row, column = divmod(int(np.argmax(scores)), heat.columns)
    assert row < heat.rows / 4 + 1 and column < heat.columns / 4 + 1, (row, column)
    page.keyboard.press("h")
    overlay.wait_for(state="hidden")


def test_a_defect_key_right_after_next_image_applies_to_the_next_image(app, page, monkeypatch):
    setup, _ = app
    # The next image takes a moment to arrive, as a cold 24 MP file does: the keys come first.
    slow_loupe = setup.service.loupe

    def loupe(path):
        time.sleep(0.8)
        return slow_loupe(path)

    monkeypatch.setattr(setup.service, "loupe", loupe)
    open_image(page, "blurry1.jpg")
    page.locator("#details").click()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("6")
    page.keyboard.press("p")
    page.wait_for_function("document.querySelector('#status').innerText.includes('marked Poor')")
    assert review_row(setup, "blurry2.jpg") == ("poor", DEFECTS[5])
    assert review_row(setup, "blurry1.jpg") == (None, None)
    page.keyboard.press("u")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Undone')")
    assert review_row(setup, "blurry2.jpg") == (None, None)


def test_the_first_click_after_enter_in_the_name_box_opens_the_image(app, page):
    page.locator("#filter-verdict label", has_text="All").click()
    page.wait_for_function("document.querySelectorAll('#gallery .caption-label').length === 7")
    page.locator("#name-search textarea, #name-search input").first.fill("sharp")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#gallery .caption-label').length === 3")
    page.locator("#gallery button.thumbnail-item").nth(1).click()
    page.wait_for_function("document.querySelector('#details').innerText.includes('sharp1.jpg')", timeout=5_000)


def test_captions_show_the_name_and_quality_and_sort_by_capture_time(app, page):
    setup, _ = app
    with Image.open(setup.files["big-blur.jpg"]) as image:
        assert "exif" not in image.info  # no capture time: sorted last
    page.locator("#filter-verdict label", has_text="Poor").click()
    page.wait_for_function("document.querySelectorAll('#gallery .caption-label').length === 4")
    texts = page.locator("#gallery .caption-label").all_inner_texts()
    assert texts[0] == "Blur 0.01 · big-blur.jpg"
    # Captions wrap rather than being cut off: the whole text fits in its box.
    fits = page.locator("#gallery .caption-label").evaluate_all(
        "labels => labels.every(l => l.scrollWidth <= l.clientWidth + 1)"
    )
    assert fits


def test_a_new_analysis_appears_within_five_seconds_without_a_click(tmp_path, browser):
    setup = review_setup(tmp_path)
    # Enough photos for the gallery to scroll: the refresh must keep the reviewer's place.
    for number in range(36):
        copy = tmp_path / "watch" / f"more-{number:02d}.jpg"
        os.link(setup.files["sharp1.jpg"], copy)
        add_analysed(setup.index, copy, verdict="poor", defect="noise", quality=0.5 + number / 100)
    try:
        with served_app(setup.settings, setup.service, {}) as url:
            context, page = open_page(browser, url)
            page.locator("#gallery button.thumbnail-item").first.click()
            page.wait_for_function("document.querySelector('#details').innerText.includes('blurry1.jpg')")
            scroller = page.locator("#gallery .grid-wrap")
            scroller.evaluate("el => { el.scrollTop = 120; }")
            assert scroller.evaluate("el => el.scrollTop") == 120
            before = captions(page)
            dropped = make_photo(tmp_path / "watch" / "dropped.jpg", kind="blurred", seed=11)
            started = time.monotonic()
            add_analysed(setup.index, dropped, verdict="poor", defect="blur", quality=0.05)  # as the daemon does
            page.wait_for_function(
                "[...document.querySelectorAll('#gallery .caption-label')].some(l => l.innerText.includes('dropped.jpg'))",
                timeout=5_000,
            )
            assert time.monotonic() - started < 5.0
            assert captions(page) == ["dropped.jpg", *before]
            # The reviewer's selection and place in the gallery survive the refresh.
            assert "blurry1.jpg" in page.locator("#details").inner_text()
            page.wait_for_timeout(300)
            assert scroller.evaluate("el => el.scrollTop") == 120
            context.close()
    finally:
        setup.close()


def test_compare_panes_zoom_and_pan_together_and_take_a_verdict_each(app, page):
    setup, _ = app
    page.locator("#bulk").get_by_text("Bulk review of this page").click()
    page.locator("#filter-verdict label", has_text="All").click()
    page.wait_for_function("document.querySelectorAll('#bulk-selection label').length === 7")
    for name in ("big-blur.jpg", "big-sharp.jpg"):
        page.locator("#bulk-selection label", has_text=name).click()
    page.locator("#compare-ticked").click()
    page.wait_for_selector("#compare-pane-1 .pp-loupe[data-ready]")
    panes = page.locator("#compare-panes .pp-loupe")
    assert panes.count() == 2
    panes.nth(0).click()  # a click zooms every pane to 100 % on the point clicked
    page.wait_for_function("document.querySelectorAll('#compare-panes .pp-loupe.pp-zoomed').length === 2")
    box = panes.nth(0).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 90, box["y"] + box["height"] / 2 - 40, steps=5)
    page.mouse.up()
    positions = panes.evaluate_all("ps => ps.map(p => [p.scrollLeft, p.scrollTop])")
    assert positions[0] == positions[1] and positions[0] != [0, 0], positions  # the same size: the same view
    page.locator("#compare-good-1").click()
    page.wait_for_function("document.querySelector('#compare-status').innerText.includes('marked Good')")
    assert review_row(setup, "big-sharp.jpg") == ("good", None) and review_row(setup, "big-blur.jpg") == (None, None)
    setup.service.undo(local_reviewer())
    page.keyboard.press("z")  # back to fit for the other tests' page
