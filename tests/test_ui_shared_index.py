"""Two review UIs (two services, two served apps) on one PostgreSQL index: what a reviewer overrides
in one appears in the other, through the apps' HTTP API."""

from __future__ import annotations

import dataclasses

import pytest
from gradio_client import Client

from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.metadata import MetadataWriter
from review_ui.auth import load_credentials
from review_ui.service import ReviewService
from tests.ui_support import PASSWORD, password_spec, review_setup, served_app


@pytest.mark.slow
def test_an_override_in_one_ui_appears_in_the_other(tmp_path, postgres_server):
    url = postgres_server.new_index_url()
    users = {"ann": password_spec(PASSWORD), "bob": password_spec(PASSWORD)}
    first = review_setup(tmp_path, users=users, page_size=10)
    settings = dataclasses.replace(first.settings, index=dataclasses.replace(first.settings.index, database=url))
    # The rows the first setup recorded in its SQLite file, moved to the shared index.
    with ImageIndex(url) as shared, ImageIndex(first.settings.index.database) as local:
        shared.insert_rows(local.rows())
    services = []
    try:
        for _ in range(2):
            index, metadata = ImageIndex(url), MetadataWriter(settings.metadata)
            services.append((ReviewService(settings, index=index, metadata=metadata), index, metadata))
        credentials = load_credentials(settings.ui.users)
        with served_app(settings, services[0][0], credentials) as url_one, \
                served_app(settings, services[1][0], credentials) as url_two:  # fmt: skip
            ann, bob = Client(url_one, auth=("ann", PASSWORD), verbose=False), \
                Client(url_two, auth=("bob", PASSWORD), verbose=False)  # fmt: skip
            path = str(first.files["blurry1.jpg"])
            assert bob.predict(verdict="poor", defect="blur", api_name="/search")["total"] == 2
            ann.predict(path, "good", None, api_name="/override")
            seen_by_bob = bob.predict(reviewed=True, api_name="/search")
            rows = [dict(zip(seen_by_bob["columns"], row)) for row in seen_by_bob["rows"]]
            assert [(r["path"], r["verdict"], r["reviewed_by"]) for r in rows] == [(path, "good", "ann")]
            assert bob.predict(verdict="poor", defect="blur", api_name="/search")["total"] == 1
            ann.predict(api_name="/undo")
            assert bob.predict(reviewed=True, api_name="/search")["total"] == 0
    finally:
        for service, index, metadata in services:
            service.close()
            metadata.close()
            index.close()
        first.close()
