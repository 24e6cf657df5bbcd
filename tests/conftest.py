"""Fixtures of the tests/ folder: every index test runs against a SQLite file and a real PostgreSQL; the UI's
browser tests share one headless Chromium per module."""

from __future__ import annotations

import pytest

from tests.postgres_server import PostgresServer, find_binaries
from tests.ui_support import chromium


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away PostgreSQL cluster for the whole session (a temp folder, a unix socket)."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    server = PostgresServer(binaries).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_database(request, tmp_path):
    """Where an index lives: a SQLite file path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "db" / "pixelperfect.sqlite"
    return request.getfixturevalue("postgres_server").new_index_url()


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's /usr/bin/chromium) for one test module's pages."""
    with chromium() as browser:
        yield browser
