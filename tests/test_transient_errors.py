"""Failures that were not the file's fault are retried with back-off; a file's own failures are not.

Finding 8 of issue 22: disk full, a permission fixed later, a folder made writable again: error
rows stayed errors until the file changed. The tests cause the real thing:

* permissions: the real daemon (``pixelperfect daemon``) runs as the unprivileged user ``nobody``
  through ``setpriv`` (root, who runs the tests, passes every permission check), so a file with
  mode 000 and a folder it may not write are refused by the kernel, and then fixed;
* a full disk: the watch folder is a 1 MiB tmpfs filled up, then given room again (needs mount).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from pixelperfect_daemon.failures import is_transient, retry_delay
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.loading import ImageLoadError
from pixelperfect_daemon.metadata import MetadataError
from tests.fixtures_images import make_jpeg
from tests.test_daemon_integration import RunningDaemon, daemon_command, wait_until

NOBODY = 65534
needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")


def rows_by_name(database: Path) -> dict[str, dict]:
    if not database.exists():
        return {}
    with ImageIndex(database) as index:
        return {Path(row["path"]).name: row for row in index.db["images"].rows}


def pixelperfect_keywords(path: Path) -> str:
    return subprocess.run(["exiftool", "-s3", "-XMP-lr:HierarchicalSubject", str(path)],
                          capture_output=True, text=True).stdout  # fmt: skip


# --- the classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (PermissionError(errno.EACCES, "Permission denied"), True),
        (OSError(errno.EROFS, "Read-only file system"), True),
        (OSError(errno.EBUSY, "Device or resource busy"), True),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), False),
        (ImageLoadError("permission denied"), True),
        (ImageLoadError(f"cannot read the file: {os.strerror(errno.EIO)}"), True),
        (ImageLoadError("not a valid JPEG file: broken data stream"), False),
        (ImageLoadError("empty file (0 bytes)"), False),
        (MetadataError("cannot tag /w/a.jpg: Error: Error creating file: /w/a.jpg_exiftool_tmp - /w/a.jpg"), True),
        (MetadataError("cannot tag /w/a.jpg: Error: Error writing output file - /w/a.jpg"), True),
        (MetadataError("cannot tag /w/a.jpg: Error: Not a valid JPG (looks more like a PNG) - /w/a.jpg"), False),
        (ValueError("anything else"), False),
    ],
)
def test_a_files_own_faults_are_told_from_the_environments(error, transient):
    assert is_transient(error) is transient


def test_back_off_doubles_up_to_its_cap():
    assert [retry_delay(n, 60, 3600) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_the_index_lists_transient_errors_once_due_and_a_success_clears_them(tmp_path):
    from pixelperfect_daemon.result import AnalysisResult

    with ImageIndex(tmp_path / "index.sqlite") as index:
        index.record_error(tmp_path / "a.jpg", error="permission denied", analyzed_at="2026-01-01T00:00:00Z",
                           retry_after="2026-01-01T00:01:00Z", retries=1)  # fmt: skip
        index.record_error(tmp_path / "b.jpg", error="not an image", analyzed_at="2026-01-01T00:00:00Z")
        assert index.due_for_retry("2026-01-01T00:00:59Z") == []
        assert index.due_for_retry("2026-01-01T00:01:00Z") == [str(tmp_path / "a.jpg")]
        result = AnalysisResult(path=str(tmp_path / "a.jpg"), verdict="good", quality=0.9, defect=None,
                                defect_scores=None, model_version="m")  # fmt: skip
        row = index.record_analysis(tmp_path / "a.jpg", blake3="00", size=1, mtime=1.0, result=result,
                                    analyzed_at="2026-01-01T00:02:00Z", tagged_file=None)  # fmt: skip
        assert row["status"] == "ok" and row["retry_after"] is None and row["retries"] is None
        assert index.due_for_retry("2030-01-01T00:00:00Z") == []


@pytest.mark.parametrize("key", ["retry_seconds", "retry_max_seconds"])
def test_retry_settings_are_validated_naming_the_key(tmp_path, key):
    from pixelperfect_daemon.config import ConfigError, load_settings

    config = tmp_path / "config.toml"
    config.write_text(f"[watch]\n{key} = 0\n")
    with pytest.raises(ConfigError, match=rf"config.toml: \[watch\] {key} must be at least 1"):
        load_settings(config)


# --- permissions, with the real daemon as an unprivileged user --------------------------------


@pytest.fixture
def unprivileged_root():
    """A folder tree ``nobody`` can reach (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the daemon as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="pp-transient-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _owned_by_nobody(path: Path, mode: int) -> Path:
    os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


@pytest.mark.slow
@needs_exiftool
def test_permission_errors_fixed_later_are_retried_and_broken_files_are_not(unprivileged_root):
    base = unprivileged_root
    ingest, state = base / "ingest", base / "state"
    for folder in (ingest, state):
        folder.mkdir()
        _owned_by_nobody(folder, 0o755)
    # A folder the daemon may not write (tags go in through a temp file beside the photo) ...
    locked = ingest / "locked"
    locked.mkdir(mode=0o755)
    _owned_by_nobody(make_jpeg(locked / "in_locked_folder.jpg", size=(96, 96)), 0o644)
    # ... a photo it may not read (mode 000, owned by root) ...
    unreadable = make_jpeg(ingest / "unreadable.jpg", size=(96, 96), variant=1)
    unreadable.chmod(0o000)
    # ... and a file that is simply not an image: its own fault, never retried.
    broken = ingest / "broken.jpg"
    broken.write_bytes(b"this is not a picture at all " * 20)
    _owned_by_nobody(broken, 0o644)
    config = base / "config.toml"
    config.write_text(
        f'[watch]\nfolders = ["{ingest}"]\nstable_seconds = 0.3\nrescan_interval = 0\n'
        "retry_seconds = 1\nretry_max_seconds = 2\n"
        f'[analysis]\nworkers = 1\n[index]\ndatabase = "{state / "index.sqlite"}"\n'
    )
    config.chmod(0o644)
    log = base / "daemon.log"
    env = {**os.environ, "HOME": str(base), "PYTHONDONTWRITEBYTECODE": "1"}
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *daemon_command(config)]
    daemon = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    database = state / "index.sqlite"
    try:
        assert wait_until(lambda: len(rows_by_name(database)) == 3, 120), log.read_text()
        rows = rows_by_name(database)
        # Analysed but not taggable in its locked folder: its tags failed (tag_error), not its analysis.
        statuses = {name: row["status"] for name, row in rows.items()}
        assert statuses == {"in_locked_folder.jpg": "tag_error", "unreadable.jpg": "error", "broken.jpg": "error"}, rows
        assert rows["in_locked_folder.jpg"]["retry_after"] and rows["unreadable.jpg"]["retry_after"]
        assert rows["broken.jpg"]["retry_after"] is None  # the file's own fault
        broken_analysed_at = rows["broken.jpg"]["analyzed_at"]
        # Still failing: retried with back-off (1 s, then 2 s), each retry counted.
        assert wait_until(lambda: (rows_by_name(database)["unreadable.jpg"]["retries"] or 0) >= 2, 30), log.read_text()
        # The operator fixes the environment; the files themselves do not change.
        locked.chmod(0o777)
        unreadable.chmod(0o644)
        assert wait_until(
            lambda: all(
                rows_by_name(database)[n]["status"] == "ok" for n in ("in_locked_folder.jpg", "unreadable.jpg")
            ),
            60,
        ), log.read_text()
        time.sleep(3)  # long past the back-off: the broken file must still not be retried
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log.read_text()
    rows = rows_by_name(database)
    assert rows["in_locked_folder.jpg"]["retry_after"] is None and rows["unreadable.jpg"]["retries"] is None
    assert "PixelPerfect|" in pixelperfect_keywords(locked / "in_locked_folder.jpg")  # tagged in place
    # unreadable.jpg belongs to root and stays read-only for the daemon: its tags go to a sidecar.
    assert "PixelPerfect|" in pixelperfect_keywords(ingest / "unreadable.xmp")
    assert rows["broken.jpg"]["status"] == "error" and rows["broken.jpg"]["analyzed_at"] == broken_analysed_at
    text = log.read_text()
    assert "not the file's fault: retried after" in text


# --- a full disk, in process ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs as the watch folder; skips where mounting is not allowed."""
    mount_point = tmp_path / "ingest"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
@needs_exiftool
def test_a_write_refused_by_a_full_disk_is_retried_once_there_is_room(tmp_path, small_disk):
    photo = make_jpeg(tmp_path / "staging.jpg", size=(256, 256), variant=3)
    target = small_disk / "photo.jpg"
    shutil.copy(photo, target)
    filler = small_disk / "filler.bin"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte, unbuffered
        for chunk in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(descriptor, b"\0" * chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    finally:
        os.close(descriptor)
    original = target.read_bytes()
    with RunningDaemon(tmp_path, watch={"retry_seconds": 1, "retry_max_seconds": 1}) as daemon:
        daemon.wait_for_rows(1, 60)
        assert wait_until(lambda: daemon.rows() and daemon.rows()[0]["retry_after"], 30), daemon.rows()
        (row,) = daemon.rows()
        assert row["status"] == "tag_error" and "No space left on device" in row["error"], row  # analysed, not tagged
        assert target.read_bytes() == original  # a failed write never damages the original
        filler.unlink()  # room again (our own filler file; the photo is untouched)
        assert wait_until(lambda: daemon.rows()[0]["status"] == "ok", 30), daemon.rows()
    (row,) = daemon.rows()
    assert row["retry_after"] is None and "PixelPerfect|" in pixelperfect_keywords(target)
