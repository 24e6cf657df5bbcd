"""The review UI driven in headless Chromium: log in, filter, open an image, override it, undo.

The decision is then checked where it must land: the row in the SQLite index and the XMP tags in
the file, read back with ExifTool.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import zipfile
from urllib.parse import unquote

import pytest

from review_ui.auth import load_credentials
from tests.lua_reader import read_assignment
from tests.ui_support import CHROMIUM, PASSWORD, password_spec, review_setup, served_app

pytestmark = [
    pytest.mark.slow,  # Slow lane: a real Chromium per test (scripts/test.sh --fast leaves it out; CI runs it).
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    setup = review_setup(tmp_path_factory.mktemp("browser"), users={"ann": password_spec(PASSWORD)})
    with served_app(setup.settings, setup.service, load_credentials(setup.settings.ui.users)) as url:
        yield setup, url
    setup.close()


@pytest.fixture
def page(app, browser):
    _, url = app
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_label("username").fill("ann")
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#gallery img")
    yield page
    context.close()


def captions(page) -> list[str]:
    return page.locator("#gallery .caption-label").all_inner_texts()


def wait_for_captions(page, expected: list[str]) -> None:
    """Gallery updates are asynchronous: poll until the page shows exactly ``expected``."""
    page.wait_for_function(
        "expected => JSON.stringify([...document.querySelectorAll('#gallery .caption-label')]"
        ".map(e => e.innerText.split(' · ').pop())) === JSON.stringify(expected)",
        arg=expected,
    )


def review_row(setup, name: str) -> tuple:
    with sqlite3.connect(setup.settings.index.database) as conn:
        return conn.execute(
            "SELECT reviewed_verdict, reviewed_defect, reviewed_by FROM images WHERE path = ?",
            [str(setup.files[name])],
        ).fetchone()


def xmp(setup, name: str) -> dict:
    result = subprocess.run(
        ["exiftool", "-j", "-G1", str(setup.files[name])], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)[0]


def choose_defect_filter(page, display_name: str) -> None:
    page.locator("#filter-defect input").click()
    page.get_by_role("option", name=display_name, exact=True).click()


def test_log_in_filter_poor_blur_open_override_to_good_and_undo(app, page):
    setup, _ = app
    assert page.locator("#whoami").inner_text().strip() == "Reviewer: ann"

    # Filter: everything, then Poor, then Poor + Blur.
    page.locator("#filter-verdict label", has_text="All").click()
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg", "noisy.jpg", "sharp2.jpg", "sharp1.jpg"])
    page.locator("#filter-verdict label", has_text="Poor").click()
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"])
    choose_defect_filter(page, "Blur")
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg"])
    assert "2 images" in page.locator("#page-info").inner_text()
    # The grid shows cached thumbnails, never the originals.
    sources = page.locator("#gallery img").evaluate_all("images => images.map(i => i.src)")
    assert all(str(setup.settings.ui.thumbnail_cache) in s for s in sources)

    # Open the first image: details, probabilities and the loupe.
    page.locator("#gallery button.thumbnail-item").first.click()
    page.wait_for_function("document.querySelector('#details').innerText.includes('blurry1.jpg')")
    assert "Poor — Blur" in page.locator("#details").inner_text()
    # The loupe shows a full-resolution derivative from the render cache, never the original.
    loupe_source = page.locator("#loupe img.pp-loupe-image").get_attribute("src")
    assert str(setup.settings.ui.thumbnail_cache) in unquote(loupe_source)
    assert "Blur" in page.locator("#scores").inner_text()

    # Override to Good with the keyboard shortcut.
    page.locator("#details").click()  # focus the page, not a text field
    page.keyboard.press("g")
    page.wait_for_function("document.querySelector('#status').innerText.includes('marked Good')")
    assert review_row(setup, "blurry1.jpg") == ("good", None, "ann")
    tags = xmp(setup, "blurry1.jpg")
    assert tags["XMP-pixelperfect:Verdict"] == "Good" and tags["XMP-pixelperfect:ReviewedBy"] == "ann"
    assert tags["XMP-lr:HierarchicalSubject"] == "PixelPerfect|Good"
    # It no longer matches Poor + Blur, and the inspect panel shows the new verdict.
    wait_for_captions(page, ["blurry2.jpg"])
    page.wait_for_function("document.querySelector('#details').innerText.includes('reviewed by ann')")

    # Undo with its button: the index and the tags go back to the model's verdict.
    page.locator("#undo").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Undone')")
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg"])
    assert review_row(setup, "blurry1.jpg") == (None, None, None)
    tags = xmp(setup, "blurry1.jpg")
    assert tags["XMP-pixelperfect:Verdict"] == "Poor" and "XMP-pixelperfect:ReviewedBy" not in tags


def test_poor_with_a_chosen_defect_by_keys_and_next_image(app, page):
    setup, _ = app
    page.locator("#filter-verdict label", has_text="Good").click()
    wait_for_captions(page, ["sharp2.jpg", "sharp1.jpg"])
    page.locator("#gallery button.thumbnail-item").first.click()
    page.wait_for_function("document.querySelector('#details').innerText.includes('sharp2.jpg')")
    page.locator("#details").click()
    page.keyboard.press("ArrowRight")  # next image
    page.wait_for_function("document.querySelector('#details').innerText.includes('sharp1.jpg')")
    page.keyboard.press("4")  # the fourth defect: Luminance/Contrast
    page.keyboard.press("p")
    page.wait_for_function("document.querySelector('#status').innerText.includes('marked Poor')")
    assert review_row(setup, "sharp1.jpg") == ("poor", "luminance_contrast", "ann")
    assert xmp(setup, "sharp1.jpg")["XMP-lr:HierarchicalSubject"] == "PixelPerfect|Poor|Luminance/Contrast"
    page.keyboard.press("u")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Undone')")
    assert review_row(setup, "sharp1.jpg") == (None, None, None)


def test_bulk_review_of_a_page(app, page):
    setup, _ = app
    page.locator("#filter-verdict label", has_text="Good").click()
    wait_for_captions(page, ["sharp2.jpg", "sharp1.jpg"])
    page.locator("#bulk").get_by_text("Bulk review of this page").click()
    page.locator("#bulk-all").click()
    page.wait_for_function("document.querySelectorAll('#bulk-selection input:checked').length === 2")
    page.locator("#override-defect label", has_text="Noise").click()
    page.locator("#bulk-poor").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('2 images marked Poor')")
    assert review_row(setup, "sharp1.jpg") == ("poor", "noise", "ann")
    assert review_row(setup, "sharp2.jpg") == ("poor", "noise", "ann")
    wait_for_captions(page, [])  # neither is Good any more
    page.locator("#undo").click()
    wait_for_captions(page, ["sharp2.jpg", "sharp1.jpg"])
    assert review_row(setup, "sharp1.jpg") == review_row(setup, "sharp2.jpg") == (None, None, None)


def analyse_upload(page, file) -> str:
    page.get_by_role("tab", name="Analyse an image").click()
    page.locator("#upload input[type=file]").set_input_files(str(file))
    page.wait_for_selector("#upload a, #upload .file-preview", state="attached")
    page.locator("#analyse").click()
    # Every outcome of analysing says one of these; the progress timer shown meanwhile does not.
    page.wait_for_function("/⚠|quality|Error/.test(document.querySelector('#upload-verdict').innerText)")
    return page.locator("#upload-verdict").inner_text()


def test_analyse_tab_says_clearly_when_the_models_are_missing(app, page, tmp_path, monkeypatch):
    from pixelperfect_daemon.engine import Analyzer

    setup, _ = app
    monkeypatch.setattr(setup.service, "_analyzer", None)
    monkeypatch.setattr(setup.service, "_analyzer_factory", lambda: Analyzer(tmp_path / "no-models"))
    text = analyse_upload(page, setup.files["sharp1.jpg"])
    assert "analysis models are not available" in text and "stage1.tflite" in text


def test_analyse_tab_shows_a_verdict_without_indexing_the_upload(app, page, tmp_path, monkeypatch, trained_models_dir):
    from pixelperfect_daemon.engine import Analyzer
    from tests.ui_support import make_photo

    setup, _ = app
    monkeypatch.setattr(setup.service, "_analyzer", None)
    monkeypatch.setattr(setup.service, "_analyzer_factory", lambda: Analyzer(trained_models_dir))
    upload = make_photo(tmp_path / "upload-me.jpg", kind="blurred")
    text = analyse_upload(page, upload)
    assert re.search(r"(Good|Poor)( — [A-Za-z/ ]+)? · quality 0\.\d{3}", text), text
    page.wait_for_selector("#upload-preview img")
    assert setup.service.search().total == 5  # not added to the index


def test_export_the_filtered_list_as_csv(app, page):
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"])
    page.locator("#export-csv").click()
    link = page.locator("#export-file a").first
    link.wait_for()
    response = page.request.get(link.get_attribute("href"))
    assert response.ok
    lines = response.text().strip().splitlines()
    assert lines[0].startswith("path,file_name,folder,verdict,defect,quality,reviewed")
    assert [line.split(",")[1] for line in lines[1:]] == ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"]


def test_export_the_filter_for_lightroom(app, page):
    setup, _ = app
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"])
    choose_defect_filter(page, "Blur")
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg"])
    page.locator("#export-lightroom").click()
    link = page.locator("#export-lightroom-file a").first
    link.wait_for()
    response = page.request.get(link.get_attribute("href"))
    assert response.ok
    with zipfile.ZipFile(io.BytesIO(response.body())) as archive:
        assert archive.read("files.txt").decode().splitlines() == [
            str(setup.files["blurry1.jpg"]), str(setup.files["blurry2.jpg"])
        ]  # fmt: skip
        assert archive.read("PixelPerfect keywords.txt").decode() == "PixelPerfect\n\tPoor\n\t\tBlur\n"
        _, collection = read_assignment(archive.read("PixelPerfect Poor Blur.lrsmcol").decode())
        assert [collection["value"][i]["value"] for i in (1, 2, 3)] == ["PixelPerfect", "Poor", "Blur"]
    assert "keywords PixelPerfect › Poor › Blur" in page.locator("#export-lightroom-status").inner_text()


def test_copy_the_rejects_of_the_filter_into_the_reject_folder(app, page):
    setup, _ = app
    wait_for_captions(page, ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"])
    page.locator("#copy-rejects").click()
    page.wait_for_function("document.querySelector('#rejects-status').innerText.includes('Copied 3 Poor images')")
    rejects = setup.settings.ui.reject_folder
    assert sorted(p.name for p in rejects.iterdir()) == ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"]
    assert all(setup.files[name].is_file() for name in ("blurry1.jpg", "blurry2.jpg", "noisy.jpg"))
