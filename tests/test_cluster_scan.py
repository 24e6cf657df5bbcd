"""``pixelperfect scan --cluster``: a real ``dask scheduler`` and ``dask worker`` processes on loopback,
the real models, ExifTool and SQLite; one worker SIGKILLed mid-run."""

from __future__ import annotations

import copy
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from pixelperfect_daemon.cluster_scan import AnalysisPlugin
from pixelperfect_daemon.common import file_hash
from pixelperfect_daemon.config import load_settings
from pixelperfect_daemon.daemon import load_analyzer
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.pipeline import Job, Pipeline
from tests.dask_cluster import LocalDaskCluster
from tests.test_daemon_integration import make_small_jpegs, pixelperfect_keyword_counts, write_config

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")

CLI = [sys.executable, "-c", "from pixelperfect_daemon.cli import main; main()"]
FILE_COUNT = 120


def pixels_of(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.glob("*.jpg"))}


def test_a_retried_task_after_its_tags_were_written_tags_once_and_describes_the_file_as_it_is(
    tmp_path, trained_models_dir
):
    settings = load_settings(write_config(tmp_path))
    (image,) = make_small_jpegs(settings.watch.folders[0], 1)
    with ImageIndex(settings.index.database) as index:
        driver = Pipeline(settings, load_analyzer(settings), writer=None, index=index, stop=threading.Event())
        sent = Job(path=image)
        driver.identify(sent)
    plugin = AnalysisPlugin(settings)
    plugin.setup()
    try:
        # The first attempt tags the file, then its worker dies before the result reaches the driver;
        # Dask sends the same job again to another worker.
        first = plugin.analyse(copy.deepcopy(sent))
        assert first.outcome is None and first.tagged_file == image
        retry = plugin.analyse(copy.deepcopy(sent))
    finally:
        plugin.teardown()
    assert retry.outcome is None, retry.error  # not "changed": the change was our own tags
    st = os.stat(image)
    assert (retry.size, retry.mtime, retry.hashes) == (st.st_size, st.st_mtime, {"blake3": file_hash(image)})
    hierarchical, flat = pixelperfect_keyword_counts(image.parent)[image.name]
    assert len(hierarchical) == 1 and flat == 1


def wait_for_rows(database: Path, count: int, timeout: float, scan: subprocess.Popen) -> int:
    """Rows in the index once it has ``count`` (read-only: the scan is the one writer)."""
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline and scan.poll() is None:
        try:
            connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
            try:
                rows = connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            finally:
                connection.close()
        except sqlite3.OperationalError:  # not created yet
            rows = 0
        if rows >= count:
            return rows
        time.sleep(0.05)
    return rows


@pytest.mark.slow
def test_scan_on_a_dask_cluster_survives_a_killed_worker_with_every_file_once(tmp_path, trained_models_dir):
    config = write_config(tmp_path)
    settings = load_settings(config)
    ingest = settings.watch.folders[0]
    make_small_jpegs(ingest, FILE_COUNT)
    before = pixels_of(ingest)
    with LocalDaskCluster(tmp_path / "cluster", workers=2) as cluster:
        scan = subprocess.Popen(
            CLI + ["scan", "--config", str(config), str(ingest), "--cluster", cluster.address],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            rows_at_kill = wait_for_rows(settings.index.database, FILE_COUNT // 5, timeout=60, scan=scan)
            assert scan.poll() is None, scan.communicate()
            cluster.kill_worker(0)
            stdout, stderr = scan.communicate(timeout=120)
        finally:
            if scan.poll() is None:
                scan.kill()
        worker_log = cluster.log("worker-0.log")
    assert scan.returncode == 0, stderr
    assert FILE_COUNT // 5 <= rows_at_kill < FILE_COUNT, "the worker was not killed mid-run"
    assert "pixelperfect-analysis" in worker_log  # the killed worker had joined the work
    assert f"{FILE_COUNT} analysed, 0 unchanged, 0 moved, 0 error(s)" in stdout

    with ImageIndex(settings.index.database) as index:
        rows = list(index.db["images"].rows)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(before)  # every file exactly one row
    assert all(r["status"] == "ok" and r["verdict"] in ("good", "poor") for r in rows)
    for row in rows:  # each row describes the file as it is now: the next scan finds it unchanged
        st = os.stat(row["path"])
        assert (row["size"], row["mtime"], row["blake3"]) == (st.st_size, st.st_mtime, file_hash(row["path"]))
    keywords = pixelperfect_keyword_counts(ingest)
    assert sorted(keywords) == sorted(before)
    assert all(len(hierarchical) == 1 and flat == 1 for hierarchical, flat in keywords.values()), keywords
    after = pixels_of(ingest)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert not list(ingest.glob("*_exiftool_tmp"))


def test_scan_with_a_bad_cluster_address_is_a_one_line_error_and_tags_nothing(tmp_path):
    from click.testing import CliRunner

    from pixelperfect_daemon.commands.scan import scan_command

    config = write_config(tmp_path)
    make_small_jpegs(tmp_path / "ingest", 2)
    result = CliRunner().invoke(
        scan_command, ["--config", str(config), str(tmp_path / "ingest"), "--cluster", "bogus://scheduler:8786"]
    )
    assert result.exit_code == 1
    assert "'bogus://scheduler:8786' is not a Dask scheduler address" in result.output
    assert pixelperfect_keyword_counts(tmp_path / "ingest") == {
        name: ([], 0) for name in ("IMG_0000_poor.jpg", "IMG_0001.jpg")
    }
