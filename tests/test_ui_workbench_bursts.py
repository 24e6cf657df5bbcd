"""Bursts: grouping, the API (gradio_client against the real app) and the Bursts view in Chromium; the heat-map API."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from review_ui.bursts import Frame, difference_hash, group_bursts, hash_distance
from review_ui.service import local_reviewer
from tests.ui_support import CHROMIUM, add_analysed, chromium, make_photo, review_setup, served_app


def timed_photo(path, source, shift: int, taken: str, subseconds: str = "0"):
    """A crop of ``source`` shifted by ``shift`` pixels, with EXIF DateTimeOriginal and sub-seconds."""
    with Image.open(source) as image:
        frame = image.crop((shift, shift // 2, shift + 560, shift // 2 + 420))
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = taken
        exif.get_ifd(0x8769)[37521] = subseconds
        frame.save(path, format="JPEG", quality=92, exif=exif)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("workbench-api")
    setup = review_setup(root)
    watch = root / "watch"
    scene = make_photo(root / "sources" / "scene.jpg", kind="sharp", seed=21)
    other = make_photo(root / "sources" / "other.jpg", kind="noisy", seed=5)
    plan = [  # name, source, shift, time, sub-seconds, quality
        ("burst-a.jpg", scene, 0, "2024:05:01 10:00:00", "0", 0.6),
        ("burst-b.jpg", scene, 8, "2024:05:01 10:00:00", "4", 0.9),
        ("burst-c.jpg", scene, 16, "2024:05:01 10:00:01", "0", 0.7),
        ("another-scene.jpg", other, 0, "2024:05:01 10:00:01", "5", 0.8),  # within the gap, but not alike
        ("later.jpg", scene, 0, "2024:05:01 10:05:00", "0", 0.8),
    ]
    for name, source, shift, taken, sub, quality in plan:
        setup.files[name] = timed_photo(watch / name, source, shift, taken, sub)
        add_analysed(setup.index, setup.files[name], verdict="good", quality=quality)
    with served_app(setup.settings, setup.service, {}) as url:
        yield setup, url
    setup.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[1], verbose=False)


def test_bursts_group_alike_frames_within_the_gap_and_pick_the_best(app, client):
    setup, _ = app
    (burst,) = client.predict(api_name="/bursts")["bursts"]
    names = [p.rsplit("/", 1)[-1] for p in burst["paths"]]
    assert names == ["burst-a.jpg", "burst-b.jpg", "burst-c.jpg"]
    assert burst["pick"] == str(setup.files["burst-b.jpg"])
    assert burst["first_captured_at"] == "2024-05-01T10:00:00"
    # A wider gap does not join the other scene (not alike) but a one-second gap still holds the burst.
    assert len(client.predict(gap_seconds=600, api_name="/bursts")["bursts"][0]["paths"]) in (3, 4)
    assert client.predict(gap_seconds=0.1, api_name="/bursts")["bursts"] == []


def test_culling_a_burst_keeps_the_pick_and_rejects_the_rest_as_duplicates(app, client):
    setup, _ = app
    (burst,) = client.predict(api_name="/bursts")["bursts"]
    result = client.predict(paths=burst["paths"], pick=burst["pick"], api_name="/cull_burst")
    verdicts = {row[0].rsplit("/", 1)[-1]: row[1:3] for row in result["rows"]}
    assert verdicts == {
        "burst-b.jpg": ["good", None],
        "burst-a.jpg": ["poor", "other"],
        "burst-c.jpg": ["poor", "other"],
    }
    with sqlite3.connect(setup.settings.index.database) as conn:
        reasons = dict(conn.execute("SELECT file_name, reviewed_reason FROM images WHERE file_name LIKE 'burst-%'"))
    assert reasons == {"burst-a.jpg": "duplicate", "burst-b.jpg": None, "burst-c.jpg": "duplicate"}
    client.predict(api_name="/undo")  # one step undoes the whole burst
    with sqlite3.connect(setup.settings.index.database) as conn:
        assert conn.execute("SELECT COUNT(*) FROM images WHERE reviewed_verdict IS NOT NULL").fetchone()[0] == 0
    with pytest.raises(AppError, match="pick must be one of"):
        client.predict(paths=burst["paths"][:2], pick=burst["paths"][2], api_name="/cull_burst")


def test_the_heatmap_endpoint_maps_every_defect(app, client):
    setup, _ = app
    heat = client.predict(path=str(setup.files["noisy.jpg"]), api_name="/heatmap")
    assert heat["rows"] >= 1 and heat["columns"] >= 1
    assert set(heat["scores"]) == set(heat["hottest"]) and "noise" in heat["scores"]
    grid = np.asarray(heat["scores"]["blur"])
    assert grid.shape == (heat["rows"], heat["columns"]) and 0.0 <= grid.min() and grid.max() <= 1.0
    with pytest.raises(AppError, match="not in the index"):
        client.predict(path="/nowhere.jpg", api_name="/heatmap")


def frame(name, seconds, phash, quality=0.5):
    return Frame(name, dt.datetime(2024, 5, 1, 10) + dt.timedelta(seconds=seconds), phash, quality)


def test_group_bursts_splits_on_time_and_on_look():
    alike, different = 0b1010, (1 << 64) - 1
    frames = [frame("a", 0, alike, 0.2), frame("b", 0.5, alike, 0.9), frame("c", 1.0, different, 0.1),
              frame("d", 1.4, different, 0.4), frame("e", 9.0, different)]  # fmt: skip
    bursts = group_bursts(frames, gap_seconds=2.0)
    assert [[f.path for f in b.frames] for b in bursts] == [["a", "b"], ["c", "d"]]
    assert bursts[0].pick.path == "b" and bursts[1].pick.path == "d"
    assert group_bursts(frames, gap_seconds=0.1) == []


def blobs(seed: int) -> Image.Image:
    """A photo-like scene: a few large soft shapes of different brightness."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    scene = np.full((480, 640), 90.0)
    for _ in range(6):
        cx, cy, r, level = rng.uniform(0, 640), rng.uniform(0, 480), rng.uniform(40, 160), rng.uniform(-80, 120)
        scene += level * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r**2))
    return Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8)).convert("RGB")


def test_difference_hash_is_close_for_a_shifted_frame_and_far_for_another_scene():
    scene, other = blobs(1), blobs(2)
    first, shifted = scene.crop((0, 0, 576, 432)), scene.crop((13, 6, 589, 438))  # drifted by 2 %
    assert hash_distance(difference_hash(first), difference_hash(shifted)) <= 12
    assert hash_distance(difference_hash(first), difference_hash(other.crop((0, 0, 576, 432)))) > 20


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")
def test_the_burst_view_marks_the_pick_and_one_key_culls_the_burst(app):
    setup, url = app
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_selector("#gallery")
        page.locator("#filter-verdict label", has_text="All").click()
        page.get_by_role("tab", name="Bursts").click()
        page.locator("#find-bursts").click()
        page.wait_for_function("document.querySelector('#burst-status').innerText.includes('1 burst found')")
        labels = page.locator("#burst-frames .caption-label").all_inner_texts()
        assert [label.startswith("★ pick") for label in labels] == [False, True, False]
        assert "burst-b.jpg" in labels[1]
        page.locator("#burst-status").click()
        page.keyboard.press("a")
        page.wait_for_function("document.querySelector('#burst-status').innerText.includes('rejected as duplicates')")
    with sqlite3.connect(setup.settings.index.database) as conn:
        rows = dict(conn.execute("SELECT file_name, reviewed_verdict || '/' || COALESCE(reviewed_reason, '-') "
                                 "FROM images WHERE file_name LIKE 'burst-%'"))  # fmt: skip
    assert rows == {"burst-a.jpg": "poor/duplicate", "burst-b.jpg": "good/-", "burst-c.jpg": "poor/duplicate"}
    setup.service.undo(local_reviewer())
