"""Three daemon processes share one ingest folder and one PostgreSQL index; one is killed (SIGKILL)
twice and restarted. Every file must end with exactly one row and one set of PixelPerfect keywords,
its pixels unchanged: the claims hand each file to one daemon, and a killed daemon's claims to another
once claim_timeout has passed.

The daemons are `pixelperfect daemon` itself, with the real models, ExifTool and watchers.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from pixelperfect_daemon.index import ImageIndex
from tests.test_daemon_integration import (
    make_small_jpegs,
    pixelperfect_keyword_counts,
    wait_until,
    write_config,
)

FILES = 1000
CLAIM_TIMEOUT = 5.0


def pixel_digest(path: Path) -> str:
    return hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest()


def start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from pixelperfect_daemon.cli import main; main()", "daemon", "--config", str(config)],
        cwd=REPO_ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_three_daemons_one_killed_twice_tag_every_file_exactly_once(tmp_path, postgres_server):
    url = postgres_server.new_index_url()
    config = write_config(
        tmp_path,
        watch={"rescan_interval": 2.0},
        analysis={"workers": 1},
        index={"database": url, "claim_timeout": CLAIM_TIMEOUT},
    )
    ingest = tmp_path / "ingest"
    staging = tmp_path / "staging"
    staging.mkdir()
    originals = {p.name: pixel_digest(p) for p in make_small_jpegs(staging, FILES)}
    logs = [tmp_path / f"daemon{i}.log" for i in range(3)]
    with ImageIndex(url) as index:

        def rows() -> int:
            return index.count()

        daemons = [start(config, log) for log in logs]
        try:
            assert wait_until(lambda: all("daemon ready" in log.read_text() for log in logs), 60)
            for path in sorted(staging.iterdir()):
                path.rename(ingest / path.name)
            kills = 0
            for threshold in (FILES // 5, FILES // 2):
                assert wait_until(lambda threshold=threshold: rows() >= threshold, 90), logs[0].read_text()[-3000:]
                daemons[0].kill()  # SIGKILL: claims, temp files and all left as they are
                daemons[0].wait()
                kills += 1
                assert rows() < FILES, "everything was done before the kill: make the test harder"
                daemons[0] = start(config, logs[0])
            assert wait_until(lambda: rows() >= FILES and not index.claims(), 90), (
                f"{rows()} rows, claims {index.claims()[:5]}; " + logs[1].read_text()[-3000:]
            )
        finally:
            for daemon in daemons:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
            for daemon in daemons:
                try:
                    daemon.wait(60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
        all_rows = index.rows()

    assert kills == 2
    assert len(all_rows) == FILES and len({r["path"] for r in all_rows}) == FILES
    assert all(r["status"] == "ok" for r in all_rows), [r for r in all_rows if r["status"] != "ok"][:3]
    keywords = pixelperfect_keyword_counts(ingest)
    assert len(keywords) == FILES
    assert all(len(hierarchical) == 1 and flat == 1 for hierarchical, flat in keywords.values()), keywords
    assert {p.name: pixel_digest(p) for p in ingest.iterdir()} == originals  # no temp file left, no pixel changed
    # Each file tagged by one daemon; only those the killed daemon held when it died may be tagged twice.
    tagged = Counter(m for log in logs for m in re.findall(r"tagged (\S+):", log.read_text()))
    every_file = {str(ingest / name) for name in originals}
    assert set(tagged) <= every_file
    # A daemon killed after a file's row but before its log line leaves a tagged file unlogged: the row
    # and keyword checks above cover those; only files in hand at a kill may be missing here.
    unlogged = every_file - set(tagged)
    assert len(unlogged) <= 2 * 10, unlogged
    twice = [path for path, count in tagged.items() if count > 1]
    print(f"files tagged more than once (held by the killed daemon): {len(twice)}")
    assert len(twice) <= 2 * 10, twice
    all_text = "".join(log.read_text() for log in logs)
    assert "Traceback" not in all_text
