"""The index beyond one process: claims on PostgreSQL, one writer on SQLite, a full disk, a deleted
index file, two review UIs on one database, and moving an index between SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from click.testing import CliRunner

from pixelperfect_daemon.cli import main
from pixelperfect_daemon.index import ImageIndex, ImageIndexError, ImageIndexWriteError
from pixelperfect_daemon.metadata import MetadataWriter
from pixelperfect_daemon.pipeline import ANALYSED, CLAIMED, Pipeline
from review_ui.queries import ImageFilter, IndexReader, search_images
from tests.fixtures_images import make_jpeg
from tests.test_index import good, poor_blur, record
from tests.test_pipeline import SMALL, FakeAnalyzer, settings_for

# -- claims: several daemons on one PostgreSQL index -----------------------------------------------


@pytest.fixture
def shared_url(postgres_server):
    return postgres_server.new_index_url()


def test_a_claim_is_held_until_released_or_timed_out(shared_url, tmp_path):
    path = tmp_path / "a.jpg"
    with ImageIndex(shared_url) as first, ImageIndex(shared_url) as second:
        assert first.is_shared
        assert first.claim(path, "daemon-a", timeout=60)
        assert first.claim(path, "daemon-a", timeout=60)  # its own claim again: still its
        assert not second.claim(path, "daemon-b", timeout=60)
        first.release(path, "daemon-a")
        assert second.claim(path, "daemon-b", timeout=60)
        # daemon-b is killed: no heartbeat; after the timeout daemon-a takes the file over.
        assert not first.claim(path, "daemon-a", timeout=60)
        time.sleep(0.3)
        assert first.claim(path, "daemon-a", timeout=0.2)
        assert [c["owner"] for c in first.claims()] == ["daemon-a"]
        time.sleep(0.3)
        first.heartbeat("daemon-a", timeout=60)  # a live daemon keeps its claim past the timeout
        assert not second.claim(path, "daemon-b", timeout=0.2)
        # A killed daemon's claims on files it finished are cleared by the others' heartbeats.
        assert second.claim(tmp_path / "b.jpg", "daemon-b", timeout=60)
        time.sleep(0.3)
        first.heartbeat("daemon-a", timeout=0.2)
        assert [c["path"] for c in first.claims()] == [str(path)]


def test_only_one_of_racing_daemons_gets_each_file(shared_url, tmp_path):
    paths = [tmp_path / f"{i}.jpg" for i in range(200)]
    winners: dict[str, list] = {}

    def claim_all(owner):
        with ImageIndex(shared_url) as index:
            winners[owner] = [p for p in paths if index.claim(p, owner, timeout=60)]

    threads = [threading.Thread(target=claim_all, args=(f"d{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [p for won in winners.values() for p in won]
    assert sorted(claimed) == sorted(paths)  # every file once, none twice


def test_the_pipeline_skips_a_file_another_daemon_holds(shared_url, tmp_path):
    settings = settings_for(tmp_path)
    settings = settings.__class__(**{**settings.__dict__, "index": settings.index.__class__(database=shared_url)})
    photos = tmp_path / "photos"
    photos.mkdir()
    held, free = make_jpeg(photos / "held.jpg", size=SMALL), make_jpeg(photos / "free.jpg", size=SMALL)
    with ImageIndex(shared_url) as other, ImageIndex(shared_url) as index, MetadataWriter(settings.metadata) as writer:
        assert other.claim(held, "another-daemon", timeout=60)
        pipeline = Pipeline(settings, FakeAnalyzer(), writer=writer, index=index, stop=threading.Event())
        pipeline.start()
        pipeline.submit(held)
        pipeline.submit(free)
        pipeline.close_input()
        assert pipeline.join(timeout=60)
        assert pipeline.stats.outcomes == {ANALYSED: 1, CLAIMED: 1}
        assert index.get(held) is None and index.get(free)["status"] == "ok"
        assert [c["owner"] for c in index.claims()] == ["another-daemon"]  # its own claim released


# -- issue 22 finding 9: one daemon per SQLite index ---------------------------------------------


def test_a_second_writer_of_a_sqlite_index_is_refused(tmp_path):
    database = tmp_path / "index.sqlite"
    with ImageIndex(database) as first, ImageIndex(database) as second:
        first.acquire_writer_lock()
        refusal = rf"in use by another PixelPerfect daemon or scan \(process {os.getpid()}\)"
        with pytest.raises(ImageIndexError, match=refusal):
            second.acquire_writer_lock()
    with ImageIndex(database) as third:  # the first one closed: the lock is free again
        third.acquire_writer_lock()


def test_a_second_daemon_on_one_sqlite_index_stops_with_a_clear_message(tmp_path):
    from pixelperfect_daemon.daemon import STARTUP_ERRORS, run_daemon
    from tests.test_daemon_integration import NameAnalyzer, RunningDaemon

    with RunningDaemon(tmp_path) as daemon:
        stop = threading.Event()
        timer = threading.Timer(10, stop.set)  # a second daemon that did start would run until then
        timer.start()
        try:
            with pytest.raises(STARTUP_ERRORS, match="in use by another PixelPerfect daemon"):
                run_daemon(daemon.settings, analyzer=NameAnalyzer(), stop=stop)
        finally:
            timer.cancel()


# -- issue 22 finding 13: the index file deleted under a running daemon --------------------------


def test_deleting_the_index_stops_the_daemon_loudly(tmp_path, caplog):
    from pixelperfect_daemon.daemon import DaemonError
    from tests.test_daemon_integration import RunningDaemon

    daemon = RunningDaemon(tmp_path)
    daemon.thread.start()
    try:
        deadline = time.monotonic() + 30
        while not daemon.settings.index.database.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        with caplog.at_level(logging.ERROR):
            daemon.settings.index.database.unlink()
            daemon.thread.join(30)
    finally:
        daemon.stop.set()
        daemon.thread.join(30)
    assert not daemon.thread.is_alive(), "the daemon went on writing into a deleted index"
    assert len(daemon.errors) == 1 and isinstance(daemon.errors[0], DaemonError)
    assert "was deleted while in use" in str(daemon.errors[0])
    assert any("deleted while in use" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_a_write_to_a_deleted_index_raises(tmp_path):
    database = tmp_path / "index.sqlite"
    with ImageIndex(database) as index:
        database.unlink()
        with pytest.raises(ImageIndexError, match="deleted while in use"):
            record(index, tmp_path / "a.jpg")


# -- issue 22 finding 3: a full disk never drops a row silently ---------------------------------


def _fill_to_the_brim(index) -> None:
    """Cap the SQLite file at its size and fill the table's and indexes' pages, as a full disk would."""
    conn = index.backend.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 4}")
    for i in range(100_000):
        try:
            conn.execute(
                "INSERT INTO images (path, folder, file_name, status) VALUES (?, '/f', ?, 'ok')",
                (f"/f/{i:06}", f"{i:06}"),
            )
        except Exception:
            # Not a page to spare: even a scratch table (sqlite-utils' probe) cannot be created.
            conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
            return
    raise AssertionError("the capped database never filled up")


def test_a_full_disk_raises_instead_of_dropping_the_row(tmp_path):
    """The first write of a process meets a full disk: sqlite-utils' upsert probed ON CONFLICT support
    then, cached the failed probe, and dropped every later row silently (INSERT OR IGNORE)."""
    with ImageIndex(tmp_path / "index.sqlite") as index:
        _fill_to_the_brim(index)
        with pytest.raises(ImageIndexWriteError, match="database or disk is full"):
            record(index, tmp_path / ("a" * 100) / "full.jpg")
        with pytest.raises(ImageIndexWriteError, match="database or disk is full"):
            record(index, tmp_path / ("a" * 100) / "full.jpg")  # still raises, never a cached silent no-op
        index.backend.conn.execute("PRAGMA max_page_count = 1073741823")
        assert record(index, tmp_path / ("a" * 100) / "full.jpg")["status"] == "ok"


def test_the_pipeline_logs_and_retries_a_row_the_full_disk_refused(tmp_path, caplog, monkeypatch):
    import pixelperfect_daemon.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "_WRITE_RETRY_SECONDS", 0.1)
    settings = settings_for(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = make_jpeg(photos / ("long-name-" * 20 + ".jpg"), size=SMALL)
    analyzer = FakeAnalyzer()
    with ImageIndex(settings.index.database) as index, MetadataWriter(settings.metadata) as writer:
        _fill_to_the_brim(index)
        pipeline = Pipeline(settings, analyzer, writer=writer, index=index, stop=threading.Event())
        with caplog.at_level(logging.ERROR):
            pipeline.start()
            pipeline.submit(photo)
            pipeline.close_input()
            deadline = time.monotonic() + 30
            while not any("retrying" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert index.get(photo) is None
            index.backend.conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
            assert pipeline.join(timeout=60)
        assert pipeline.stats.outcomes == {ANALYSED: 1}
        row = index.get(photo)
        assert row is not None and row["status"] == "ok" and row["blake3"] is not None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("database or disk is full" in r.getMessage() for r in errors)
    assert analyzer.calls == [photo]  # analysed and tagged once: no re-tag loop


# -- two review UIs on one PostgreSQL index -------------------------------------------------------


def test_an_override_in_one_ui_appears_in_another(shared_url, tmp_path):
    path = tmp_path / "a.jpg"
    with ImageIndex(shared_url) as daemon:
        record(daemon, path, result=poor_blur(path))
    with ImageIndex(shared_url) as ui_one, ImageIndex(shared_url) as ui_two:
        reader_two = IndexReader(shared_url).connection()
        assert search_images(reader_two, ImageFilter(verdict="poor")).total == 1
        ui_one.record_review(path, verdict="good", defect=None, reviewed_by="ann", reviewed_at="2026-01-01T00:00:00Z")
        assert search_images(reader_two, ImageFilter(verdict="poor")).total == 0
        assert search_images(reader_two, ImageFilter(reviewed=True)).rows[0]["reviewed_by"] == "ann"
        assert ui_two.get(path)["reviewed_verdict"] == "good"


# -- pixelperfect index migrate -------------------------------------------------------------------


def test_migrate_moves_an_index_into_postgresql_and_back_with_reviews(shared_url, tmp_path):
    source, back = tmp_path / "source.sqlite", tmp_path / "back.sqlite"
    with ImageIndex(source) as index:
        for i in range(30):
            record(index, tmp_path / f"{i:02}.jpg", result=poor_blur() if i % 2 else good(), blake3=f"h{i}")
        index.record_review(tmp_path / "03.jpg", verdict="good", defect=None, reviewed_by="ann", reviewed_at="t1")
        index.record_error(tmp_path / "broken.jpg", error="decode: truncated", analyzed_at="t2")
        original = index.rows()
    runner = CliRunner()
    result = runner.invoke(main, ["index", "migrate", str(source), shared_url])
    assert result.exit_code == 0, result.output
    assert "copied 31 row(s)" in result.output
    with ImageIndex(shared_url) as migrated:
        assert migrated.rows() == original
        assert search_images(IndexReader(shared_url).connection(), ImageFilter(reviewed=True)).total == 1
    result = runner.invoke(main, ["index", "migrate", shared_url, str(back)])
    assert result.exit_code == 0, result.output
    with ImageIndex(back) as returned:
        assert returned.rows() == original
    # Never into an index that has rows: that would mix two histories.
    result = runner.invoke(main, ["index", "migrate", str(source), str(back)])
    assert result.exit_code != 0 and "already has 31 row(s)" in result.output
    result = runner.invoke(main, ["index", "migrate", str(tmp_path / "missing.sqlite"), str(back)])
    assert result.exit_code != 0 and "no such index" in result.output


def test_a_lost_postgresql_connection_fails_one_write_loudly_and_the_retry_reconnects(
    shared_url, postgres_server, tmp_path
):
    with ImageIndex(shared_url) as index:
        record(index, tmp_path / "a.jpg")
        postgres_server.execute("SELECT pg_terminate_backend(%s)", (index.backend.conn.info.backend_pid,))
        with pytest.raises(ImageIndexWriteError, match="cannot write to the index"):
            record(index, tmp_path / "b.jpg")
        assert record(index, tmp_path / "b.jpg")["status"] == "ok"  # what the pipeline's retry does
        assert index.count() == 2


# -- the password comes from the environment ------------------------------------------------------


def test_the_password_comes_from_the_variable_password_env_names(postgres_server, monkeypatch):
    role = f"reviewer_{os.getpid()}"
    postgres_server.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right horse battery'")
    postgres_server.execute(f"CREATE SCHEMA AUTHORIZATION {role}")  # its tables go to its own schema
    url = postgres_server.url(user=role)
    monkeypatch.setenv("PP_TEST_DB_PASSWORD", "right horse battery")
    with ImageIndex(url, password_env="PP_TEST_DB_PASSWORD") as index:
        assert index.count() >= 0
        assert str(index).startswith(f"postgresql://{role}@") and "battery" not in str(index)
    monkeypatch.setenv("PP_TEST_DB_PASSWORD", "wrong")
    with pytest.raises(ImageIndexError, match="password authentication failed") as refused:
        ImageIndex(url, password_env="PP_TEST_DB_PASSWORD")
    assert "wrong" not in str(refused.value)
    monkeypatch.delenv("PP_TEST_DB_PASSWORD")
    with pytest.raises(ImageIndexError, match="password_env names PP_TEST_DB_PASSWORD, but that environment variable"):
        ImageIndex(url, password_env="PP_TEST_DB_PASSWORD")
