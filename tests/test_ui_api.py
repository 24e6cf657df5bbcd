"""The review UI's named endpoints through gradio_client, against the real app on a free port."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import zipfile

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError

from review_ui.auth import load_credentials
from tests.ui_support import PASSWORD, password_spec, review_setup, served_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    setup = review_setup(tmp_path_factory.mktemp("api"), users={"ann": password_spec(PASSWORD)}, page_size=3)
    with served_app(setup.settings, setup.service, load_credentials(setup.settings.ui.users)) as url:
        yield setup, url
    setup.close()


@pytest.fixture(scope="module")
def client(app):
    _, url = app
    return Client(url, auth=("ann", PASSWORD), verbose=False)


def rows_of(result: dict) -> list[dict]:
    return [dict(zip(result["columns"], row)) for row in result["rows"]]


def test_the_api_names_its_endpoints(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/search", "/override", "/override_bulk", "/undo", "/counts"} <= set(endpoints)
    # Every /search parameter is optional.
    assert all(p["parameter_has_default"] for p in endpoints["/search"]["parameters"])


def test_search_without_arguments_lists_the_first_page(client):
    result = client.predict(api_name="/search")
    assert (result["total"], result["page"], result["pages"], result["page_size"]) == (5, 1, 2, 3)
    rows = rows_of(result)
    assert [r["file_name"] for r in rows] == ["blurry1.jpg", "blurry2.jpg", "noisy.jpg"]  # worst first
    first = rows[0]
    assert {"path", "verdict", "defect", "quality", "reviewed"} <= set(first)
    assert first["path"].endswith("/watch/blurry1.jpg") and first["path"].startswith("/")
    assert (first["verdict"], first["defect"], first["quality"], first["reviewed"]) == ("poor", "blur", 0.1, False)


def test_search_filters_by_keyword(client):
    blur = rows_of(client.predict(verdict="poor", defect="blur", api_name="/search"))
    assert [r["file_name"] for r in blur] == ["blurry1.jpg", "blurry2.jpg"]
    good = client.predict(verdict="good", sort="quality_desc", api_name="/search")
    assert [r["file_name"] for r in rows_of(good)] == ["sharp1.jpg", "sharp2.jpg"]
    second_page = client.predict(page=2, api_name="/search")
    assert [r["file_name"] for r in rows_of(second_page)] == ["sharp2.jpg", "sharp1.jpg"]
    assert client.predict(name="NOISY", api_name="/search")["total"] == 1
    assert client.predict(quality_min=0.15, quality_max=0.5, api_name="/search")["total"] == 2


def test_search_rejects_bad_filters_with_a_message(client):
    with pytest.raises(AppError, match="unknown verdict 'meh'"):
        client.predict(verdict="meh", api_name="/search")
    with pytest.raises(AppError, match="YYYY-MM-DD"):
        client.predict(date_from="yesterday", api_name="/search")


def test_counts(client):
    counts = client.predict(api_name="/counts")
    assert counts["verdicts"] == {"poor": 3, "good": 2, "error": 0}
    assert counts["defects"]["blur"] == 2 and counts["defects"]["noise"] == 1


def test_override_writes_index_and_xmp_as_the_logged_in_reviewer_and_undo_takes_it_back(app, client):
    setup, _ = app
    path = str(setup.files["blurry2.jpg"])
    result = client.predict(path, "good", None, api_name="/override")
    (row,) = rows_of(result)
    assert (row["path"], row["verdict"], row["defect"], row["reviewed"], row["reviewed_by"]) == (
        path,
        "good",
        None,
        True,
        "ann",
    )
    with sqlite3.connect(setup.settings.index.database) as conn:
        stored = conn.execute("SELECT reviewed_verdict, reviewed_by FROM images WHERE path = ?", [path]).fetchone()
    assert stored == ("good", "ann")
    tags = json.loads(
        subprocess.run(["exiftool", "-j", "-G1", path], capture_output=True, text=True, check=True).stdout
    )[0]
    assert (tags["XMP-pixelperfect:Verdict"], tags["XMP-pixelperfect:ReviewedBy"]) == ("Good", "ann")
    # The filtered list follows the review at once.
    assert client.predict(verdict="poor", defect="blur", api_name="/search")["total"] == 1

    (restored,) = rows_of(client.predict(api_name="/undo"))
    assert (restored["path"], restored["verdict"], restored["reviewed"]) == (path, "poor", False)
    assert client.predict(verdict="poor", defect="blur", api_name="/search")["total"] == 2


def test_override_to_poor_with_a_defect_key_and_bulk(app, client):
    setup, _ = app
    sharp = [str(setup.files["sharp1.jpg"]), str(setup.files["sharp2.jpg"])]
    (row,) = rows_of(client.predict(sharp[0], "poor", "luminance_contrast", api_name="/override"))
    assert (row["verdict"], row["defect"]) == ("poor", "luminance_contrast")
    client.predict(api_name="/undo")
    rows = rows_of(client.predict(sharp, "poor", "noise", api_name="/override_bulk"))
    assert [(r["verdict"], r["defect"]) for r in rows] == [("poor", "noise"), ("poor", "noise")]
    restored = rows_of(client.predict(api_name="/undo"))  # one step undoes the whole bulk action
    assert [r["verdict"] for r in restored] == ["good", "good"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("/etc/passwd", "good", None), "not in the index"),
        (("{watch}/../../../etc/passwd", "good", None), "not in the index"),
        (("{watch}/blurry1.jpg", "excellent", None), "verdict must be good or poor"),
        (("{watch}/blurry1.jpg", "poor", "Blurry"), "unknown defect"),
    ],
)
def test_override_refuses_bad_requests(app, client, arguments, message):
    setup, _ = app
    watch = setup.files["blurry1.jpg"].parent
    path, verdict, defect = arguments
    with pytest.raises(AppError, match=message):
        client.predict(path.format(watch=watch), verdict, defect, api_name="/override")
    assert rows_of(client.predict(name="blurry1", api_name="/search"))[0]["reviewed"] is False


def test_the_api_needs_a_login(app):
    _, url = app
    with pytest.raises(AuthenticationError, match="Please login"):
        Client(url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("ann", "wrong"), verbose=False)
    # Nor can a raw HTTP call reach an endpoint around the client.
    response = httpx.post(f"{url}/gradio_api/call/search", json={"data": []})
    assert response.status_code == 401
    response = httpx.post(f"{url}/gradio_api/call/export_lightroom", json={"data": []})
    assert response.status_code == 401


def test_export_lightroom_hands_over_the_zip_and_says_what_lightroom_cannot_select(client):
    result = client.predict(verdict="poor", defect="blur", quality_max=0.15, api_name="/export_lightroom")
    assert (result["images"], result["keywords"]) == (1, ["PixelPerfect", "Poor", "Blur"])
    assert result["not_in_lightroom"] == ["quality 0.00 to 0.15 (XMP-pixelperfect:Quality is not searchable)"]
    with zipfile.ZipFile(result["file"]) as archive:  # downloaded by the client
        assert archive.read("files.txt").decode().endswith("/blurry1.jpg\n")
        assert archive.read("PixelPerfect keywords.txt").decode() == "PixelPerfect\n\tPoor\n\t\tBlur\n"
        assert "PixelPerfect Poor Blur.lrsmcol" in archive.namelist()
    with pytest.raises(AppError, match="unknown defect"):
        client.predict(defect="Blurry", api_name="/export_lightroom")
