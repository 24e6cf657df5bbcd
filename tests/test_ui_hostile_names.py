"""Issue 22, finding 1, through the review UI: a reviewer's override of a file whose name or folder is
hostile (newlines, spaces, a leading '-', '=', '%', '$', non-UTF-8 bytes, 255 bytes) tags exactly that
file, through the served app's /override endpoint, and touches nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gradio_client import Client

from review_ui.auth import load_credentials
from tests.hostile_files import (
    INJECTION_FOLDERS,
    hostile_layout,
    make_photo,
    pixels,
    tagged_verdict,
    tree_digest,
)
from tests.ui_support import PASSWORD, add_analysed, password_spec, review_setup, served_app

pytestmark = pytest.mark.slow  # a served app and one ExifTool write per hostile name


def test_overrides_of_hostile_names_tag_exactly_those_files(tmp_path):
    setup = review_setup(tmp_path / "ui", users={"ann": password_spec(PASSWORD)}, page_size=500)
    watch = Path(setup.settings.watch.folders[0])
    outside = make_photo(tmp_path / "elsewhere" / "v.jpg", seed=99)  # what an injection would reach
    layout = hostile_layout() + [folder + os.fsencode(str(outside)) for folder in INJECTION_FOLDERS]
    hostile = []
    for seed, relative in enumerate(layout):
        path = Path(os.fsdecode(os.path.join(os.fsencode(watch), relative)))
        if len(os.fsencode(path.name)) > 255:
            continue  # an injection folder plus an absolute path may not fit one name; the rest do
        make_photo(path, seed=seed)
        add_analysed(setup.index, path, verdict="poor", defect="blur", quality=0.2)
        hostile.append(path)
    assert len(hostile) >= len(hostile_layout())  # every name of the layout, and the injections that fit
    before_pixels = {path: pixels(path) for path in hostile}
    outside_before = tree_digest(outside.parent)
    try:
        with served_app(setup.settings, setup.service, load_credentials(setup.settings.ui.users)) as url:
            client = Client(url, auth=("ann", PASSWORD), verbose=False)
            page = client.predict(verdict="poor", page_size=500, api_name="/search")
            stored = {row[0] for row in page["rows"]}
            for path in hostile:
                key = setup.index.get(path)["path"]  # the index's lossless text of the path
                assert key in stored, key
                result = client.predict(key, "good", None, api_name="/override")
                assert result["rows"][0][1] == "good", (path, result)
        for path in hostile:
            assert tagged_verdict(path) == "Good", path  # this very file, read without ExifTool
            assert (pixels(path) == before_pixels[path]).all(), path
            assert setup.index.get(path)["reviewed_verdict"] == "good"
        assert tree_digest(outside.parent) == outside_before  # nothing outside the watch folder changed
        assert not (Path.cwd() / "PWNED").exists() and not list(tmp_path.rglob("PWNED"))
    finally:
        setup.close()
