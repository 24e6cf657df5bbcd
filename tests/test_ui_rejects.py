"""Copying and moving the rejects of a filter: real files, sidecars, the real index."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from review_ui.queries import ImageFilter
from review_ui.rejects import target_path
from review_ui.service import ReviewError
from tests.ui_support import add_analysed, make_photo, review_setup

POOR = ("blurry1.jpg", "blurry2.jpg", "noisy.jpg")


@pytest.fixture
def setup(tmp_path):
    setup = review_setup(tmp_path)
    # The user's own Lightroom sidecar beside one reject: it must travel with the photo.
    (tmp_path / "watch" / "blurry1.xmp").write_text("<x:xmpmeta>user keywords</x:xmpmeta>")
    yield setup
    setup.close()


def index_rows(setup) -> dict:
    with sqlite3.connect(setup.settings.index.database) as conn:
        return {r[0]: r[1:] for r in conn.execute("SELECT file_name, path, tagged_file, reviewed_verdict FROM images")}


def test_copy_puts_every_reject_and_its_sidecar_in_the_folder_and_changes_nothing_else(setup, tmp_path):
    before = {name: setup.files[name].read_bytes() for name in setup.files}
    rows_before = index_rows(setup)
    result = setup.service.export_rejects(ImageFilter(), move=False)
    rejects = tmp_path / "demo" / "rejects"
    assert result["folder"] == str(rejects) and result["failures"] == []
    assert sorted(p.name for p in rejects.iterdir()) == sorted([*POOR, "blurry1.xmp"])
    assert (rejects / "blurry1.xmp").read_text() == "<x:xmpmeta>user keywords</x:xmpmeta>"
    assert {name: setup.files[name].read_bytes() for name in setup.files} == before
    assert (rejects / "noisy.jpg").read_bytes() == before["noisy.jpg"]
    assert index_rows(setup) == rows_before  # copies are not indexed
    # A second copy never overwrites the first.
    setup.service.export_rejects(ImageFilter(defect="noise"), move=False)
    assert (rejects / "noisy (2).jpg").read_bytes() == before["noisy.jpg"]


def test_move_keeps_the_index_reviews_and_sidecars_with_the_files(setup, tmp_path):
    setup.service.override([str(setup.files["noisy.jpg"])], verdict="poor", defect="other", reviewer="ann")
    result = setup.service.export_rejects(ImageFilter(), move=True)
    rejects = tmp_path / "demo" / "rejects"
    assert len(result["done"]) == 3 and result["failures"] == []
    rows = index_rows(setup)
    for name in POOR:
        assert not setup.files[name].exists() and (rejects / name).is_file()
        assert rows[name][0] == str(rejects / name)
    assert rows["noisy.jpg"][2] == "poor"  # the review moved with the file
    assert not (tmp_path / "watch" / "blurry1.xmp").exists() and (rejects / "blurry1.xmp").is_file()
    assert rows["sharp1.jpg"][0] == str(setup.files["sharp1.jpg"])  # Good photos stay
    # Nothing is moved twice: the rejects already in the folder stay where they are.
    assert setup.service.export_rejects(ImageFilter(), move=True)["done"] == []
    assert sorted(p.name for p in rejects.iterdir()) == sorted([*POOR, "blurry1.xmp"])


def test_a_sidecar_shared_with_a_raw_of_the_same_name_is_copied_not_moved(setup, tmp_path):
    watch = tmp_path / "watch"
    pair = make_photo(watch / "pair.jpg", kind="blurred")
    (watch / "pair.cr2").write_bytes(b"raw bytes")
    (watch / "pair.xmp").write_text("describes the raw too")
    add_analysed(setup.index, pair, verdict="poor", defect="blur", quality=0.05)
    setup.service.export_rejects(ImageFilter(name="pair"), move=True)
    rejects = tmp_path / "demo" / "rejects"
    assert (rejects / "pair.jpg").is_file() and (rejects / "pair.xmp").read_text() == "describes the raw too"
    assert (watch / "pair.xmp").read_text() == "describes the raw too" and (watch / "pair.cr2").is_file()


def test_the_reject_folder_must_lie_outside_the_watch_folders(setup, tmp_path):
    ui = dataclasses.replace(setup.settings.ui, reject_folder=tmp_path / "watch" / "rejects")
    setup.service.settings = dataclasses.replace(setup.settings, ui=ui)
    with pytest.raises(ReviewError, match=r"\[ui\] reject_folder .* lies inside the watch folder"):
        setup.service.export_rejects(ImageFilter(), move=False)
    assert not (tmp_path / "watch" / "rejects").exists()


def test_targets_keep_the_shoot_folders_and_find_a_free_name(tmp_path):
    watch, rejects = tmp_path / "watch", tmp_path / "rejects"
    source = watch / "2024" / "shoot" / "IMG_1.jpg"
    assert target_path(source, [watch], rejects) == rejects / "2024" / "shoot" / "IMG_1.jpg"
    (rejects / "2024" / "shoot").mkdir(parents=True)
    (rejects / "2024" / "shoot" / "IMG_1.xmp").write_text("taken by another photo's sidecar")
    assert target_path(source, [watch], rejects) == rejects / "2024" / "shoot" / "IMG_1 (2).jpg"
    assert target_path(tmp_path / "elsewhere" / "a.jpg", [watch], rejects) == rejects / "a.jpg"


def test_the_api_moves_the_rejects_of_a_filter(tmp_path):
    from gradio_client import Client

    from tests.ui_support import served_app

    setup = review_setup(tmp_path)
    try:
        with served_app(setup.settings, setup.service, {}) as url:
            result = Client(url, verbose=False).predict(move=True, defect="noise", api_name="/export_rejects")
        rejects = tmp_path / "demo" / "rejects"
        assert result["done"] == [[str(setup.files["noisy.jpg"]), str(rejects / "noisy.jpg")]]
        assert index_rows(setup)["noisy.jpg"][0] == str(rejects / "noisy.jpg")
    finally:
        setup.close()
