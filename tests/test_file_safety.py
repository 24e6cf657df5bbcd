"""Files from strangers (issue 22): a name never becomes an ExifTool argument, an original is replaced
only when it is the file analysed and nobody is writing it, ExifTool's memory is capped, a write is
counted only when ExifTool wrote, and every name is stored and printed losslessly.

Real ExifTool, SQLite, watchdog observer and models throughout; files are checked independently
(their bytes, Pillow's pixels, /proc), not through the code under test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from pixelperfect_daemon import file_replace
from pixelperfect_daemon.common import path_to_text, text_to_path
from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.daemon import scan_folder
from pixelperfect_daemon.exiftool_arguments import ExifToolPaths, cstr_line, option_argument
from pixelperfect_daemon.file_replace import FileIdentity, processes_writing, scratch_path_for
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.metadata import FileBusyError, MetadataError, MetadataWriter
from pixelperfect_daemon.watcher import IgnoreRules
from tests.fixtures_images import make_jpeg, make_png
from tests.hostile_files import (
    INJECTION_FOLDERS,
    hostile_layout,
    make_photo,
    make_random_content,
    pixels,
    random_hostile_folder,
    random_hostile_name,
    tagged_verdict,
    tree_digest,
)
from tests.test_daemon_integration import REAL_ENGINE, RunningDaemon, analyzer_under_test, wait_until, write_config

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
ANALYZED_AT = "2026-01-31T12:00:00Z"


def write_good(writer: MetadataWriter, path: Path, **options) -> Path:
    return writer.write_verdict(
        path, verdict="good", defect=None, quality=0.8, model_version="m-1", analyzed_at=ANALYZED_AT, **options
    )


@pytest.fixture
def writer():
    with MetadataWriter(MetadataSettings()) as writer:
        yield writer


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """ExifTool's working folder, where an injected ``touch PWNED`` would land."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def outside_files(tmp_path: Path) -> Path:
    """A folder outside the watch folder with a photo the injections aim at."""
    outside = tmp_path / "outside"
    make_photo(outside / "v.jpg", seed=99)
    return outside


def make_injection_files(ingest: Path, outside: Path) -> list[Path]:
    """For each injection folder: the outside file's absolute path recreated under it, so the name's
    last line is that outside path."""
    targets = []
    for number, folder in enumerate(INJECTION_FOLDERS):
        inner = os.fsencode(ingest) + b"/" + folder + os.fsencode(outside / "v.jpg")
        targets.append(make_photo(inner, seed=number))
    return targets


# --- unit: the argument lines ExifTool reads ------------------------------------------------------


def test_paths_as_text_round_trip_and_are_valid_utf8():
    for raw in [
        b"/a/caf\xe9.jpg",
        b"/a/b\\x.jpg",
        "/ok/été.jpg".encode(),
        b"/x\\xe9",
        b"/n\nl\r",
        b"/\xff\\\\",
        b"/plain/IMG_1.jpg",
    ]:
        text = path_to_text(os.fsdecode(raw))
        text.encode("utf-8")  # valid: SQLite and JSON take it
        assert os.fsencode(text_to_path(text)) == raw
    assert path_to_text("/plain/IMG_1.jpg") == "/plain/IMG_1.jpg"  # ordinary paths are their own text
    assert path_to_text(os.fsdecode(b"/caf\xe9.jpg")) == "/caf\\xe9.jpg"


def test_option_values_keep_line_breaks_and_spaces_or_are_refused():
    assert option_argument("-XMP-dc:Subject=plain") == b"-XMP-dc:Subject=plain"
    assert option_argument("-XMP-dc:Subject-= spaced") == b"#[CSTR]-XMP-dc:Subject-= spaced"
    assert option_argument("-XMP-dc:Subject-=a\nb") == b"#[CSTR]-XMP-dc:Subject-=a\\nb"
    with pytest.raises(ValueError):
        option_argument("-XMP-dc:Subject-=a\n$b")
    with pytest.raises(ValueError):
        option_argument("/not/an/option")
    assert cstr_line(b'/a\\b"c\n') == b'#[CSTR]/a\\\\b\\"c\\n'


def test_every_hostile_path_names_exactly_its_file_for_exiftool(tmp_path):
    """ExifTool itself (in -stay_open's argument syntax) reads back each file's inode."""
    files = [make_photo(os.fsencode(tmp_path) + b"/" + relative, seed=i) for i, relative in enumerate(hostile_layout())]
    paths = ExifToolPaths()
    try:
        with paths.arguments(*files) as lines:
            argfile = b"\n".join([b"-j", b"-FileInodeNumber", *lines]) + b"\n"
            answer = subprocess.run(["exiftool", "-@", "-"], input=argfile, capture_output=True, timeout=60)
        links = os.listdir(paths._folder) if paths._folder else []
    finally:
        paths.close()
    assert answer.returncode == 0, answer.stderr
    inodes = [entry["FileInodeNumber"] for entry in json.loads(answer.stdout)]
    assert inodes == [os.stat(f).st_ino for f in files]
    assert links == []  # links made for unrepresentable names are removed after use


# --- the writer: names ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["embedded", "sidecar"])
def test_hostile_names_are_tagged_as_themselves_and_nothing_else_changes(tmp_path, cwd, mode):
    root = tmp_path / "ingest"
    outside = outside_files(tmp_path)
    before_outside = tree_digest(outside)
    files = [make_photo(os.fsencode(root) + b"/" + relative, seed=i) for i, relative in enumerate(hostile_layout())]
    files += make_injection_files(root, outside)
    twin, spaced = make_photo(root / "holiday.jpg", 1), make_photo(root / "holiday.jpg ", 2)
    twin_bytes = twin.read_bytes()
    originals = {f: pixels(f) for f in files + [spaced]}
    with MetadataWriter(MetadataSettings(mode=mode)) as writer:
        for path in files + [spaced]:
            target = write_good(writer, path)
            expected_target = path if mode == "embedded" else writer.target_for(path)
            assert target == expected_target
            assert tagged_verdict(target) == "Good", path
            assert (pixels(path) == originals[path]).all()
            if mode == "sidecar":
                assert target.parent == path.parent and target.exists()
    assert tree_digest(outside) == before_outside  # no injected -all=, -Directory=, no tags outside
    assert not (cwd / "PWNED").exists() and os.listdir(cwd) == []
    assert twin.read_bytes() == twin_bytes  # "holiday.jpg " was tagged as itself, never as its twin
    assert not (root / "holiday.xmp").exists()
    leftovers = [p for f in files for p in f.parent.iterdir() if p.name.startswith(".pixelperfect-")]
    assert leftovers == []


def test_255_byte_names_are_tagged(tmp_path, writer):
    path = make_photo(tmp_path / ("n" * 251 + ".jpg"), seed=3)
    assert len(os.fsencode(path.name)) == 255
    write_good(writer, path)
    assert tagged_verdict(path) == "Good"


# --- the writer: originals -----------------------------------------------------------------------


def python_on_file(code: str, path: Path) -> subprocess.Popen:
    """Another process running ``code`` (``sys`` and ``time`` imported) on ``path`` (``sys.argv[1]``),
    its printed lines readable from ``stdout``."""
    return subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; {code}", str(path)], stdout=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("leases", [True, False], ids=["read lease", "no lease: /proc"])
def test_a_file_open_for_writing_elsewhere_is_never_replaced(tmp_path, writer, monkeypatch, leases):
    if not leases:  # another user's file without CAP_LEASE, or a share: the writers are looked for in /proc
        monkeypatch.setattr(file_replace, "_take_read_lease", lambda fd, path: False)
    path = make_photo(tmp_path / "copying.jpg", seed=4)
    content = path.read_bytes()
    holder = python_on_file("f = open(sys.argv[1], 'r+b'); print('open', flush=True); time.sleep(60)", path)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert processes_writing(path) == [holder.pid]
        with pytest.raises(FileBusyError, match="open for writing"):
            write_good(writer, path, analysed=FileIdentity.of(path))
    finally:
        holder.kill()
        holder.wait()
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["copying.jpg"]
    write_good(writer, path, analysed=FileIdentity.of(path))  # once the writer is gone, it is tagged
    assert tagged_verdict(path) == "Good"


def test_while_a_file_is_checked_and_replaced_no_process_can_open_it_for_writing(tmp_path):
    path = make_photo(tmp_path / "photo.jpg", seed=6)
    fd = os.open(path, os.O_RDONLY)
    try:
        if not file_replace._take_read_lease(fd, path):
            pytest.skip(f"no file leases on {tmp_path}'s file system (the /proc look is tested above)")
    finally:
        os.close(fd)
    with file_replace.held_unwritten(path, FileIdentity.of(path)):
        opener = python_on_file(
            "print('opening', flush=True); open(sys.argv[1], 'r+b'); print('opened', flush=True)", path
        )
        assert opener.stdout.readline().strip() == "opening"
        time.sleep(0.5)
        assert opener.poll() is None  # its open waits for the lease, which the kernel asked us to give up
    assert opener.stdout.readline().strip() == "opened"  # released: it goes on at once
    assert opener.wait(10) == 0
    with path.open("ab"), pytest.raises(file_replace.ReplaceRefused, match="open for writing"):
        with file_replace.held_unwritten(path, FileIdentity.of(path)):
            pass
    before = FileIdentity.of(path)
    with path.open("ab") as growing:
        growing.write(b"more")
    with pytest.raises(file_replace.ReplaceRefused, match="changed since it was analysed"):
        with file_replace.held_unwritten(path, before):
            pass


def test_a_file_changed_since_analysis_is_never_replaced(tmp_path, writer):
    path = make_photo(tmp_path / "growing.jpg", seed=5)
    analysed = FileIdentity.of(path)
    with path.open("ab") as file:
        file.write(b"\0" * 100)  # the rest of a slow copy arrived after the analysis
    content = path.read_bytes()
    with pytest.raises(FileBusyError, match="changed since it was analysed"):
        write_good(writer, path, analysed=analysed)
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["growing.jpg"]


def test_permissions_are_kept_when_the_original_is_replaced(tmp_path, writer):
    path = make_photo(tmp_path / "shared.jpg", seed=6)
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    write_good(writer, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode and tagged_verdict(path) == "Good"


def test_a_write_interrupted_by_a_kill_does_not_block_the_next(tmp_path, writer):
    """A killed ExifTool leaves its half-written copy (ours, or ExifTool's own from earlier versions)."""
    path = make_photo(tmp_path / "a.jpg", seed=7)
    content = path.read_bytes()
    scratch_path_for(path).write_bytes(b"half a copy")  # seconds old: the restart is quick
    (tmp_path / "a.jpg_exiftool_tmp").write_bytes(b"half a copy from an earlier version")
    write_good(writer, path)
    assert tagged_verdict(path) == "Good" and path.read_bytes() != content
    assert not scratch_path_for(path).exists()


@pytest.mark.slow
def test_exiftool_killed_mid_write_leaves_the_original_and_the_next_write_works(tmp_path, writer):
    path = make_photo(tmp_path / "big.jpg", seed=8)
    with path.open("ab") as file:
        file.write(os.urandom(64 << 20))  # trailing data ExifTool copies: the write takes a while
    content_size = path.stat().st_size
    done = []
    thread = threading.Thread(target=lambda: done.append(_write_or_error(writer, path)))
    thread.start()
    scratch = scratch_path_for(path)
    assert wait_until(lambda: scratch.exists(), 20)
    os.killpg(writer._exiftool._process.pid, 9)  # SIGKILL, as an OOM killer or kill -9 would
    thread.join(60)
    assert path.stat().st_size == content_size and tagged_verdict(path) is None  # untouched
    write_good(writer, path)  # ExifTool restarts; the leftover copy is cleared
    assert tagged_verdict(path) == "Good" and not scratch.exists()


def _write_or_error(writer, path):
    try:
        return write_good(writer, path)
    except MetadataError as error:
        return error


# --- ExifTool's answer and its memory ------------------------------------------------------------


def test_an_unchanged_answer_is_a_failed_write(tmp_path):
    """ExifTool told to write only tags that already exist (-wm w) answers "unchanged": no tags, no ok."""
    wrapper = tmp_path / "exiftool-wm-w"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("exiftool")} "$@" -wm w\n')
    wrapper.chmod(0o755)
    path = make_photo(tmp_path / "a.jpg", seed=9)
    content = path.read_bytes()
    with MetadataWriter(MetadataSettings(), executable=str(wrapper)) as writer:
        with pytest.raises(MetadataError, match="did not write the tags"):
            write_good(writer, path)
    assert path.read_bytes() == content


def make_png_text_bomb(path: Path, megabytes: int) -> Path:
    """A tiny PNG with a zTXt chunk that inflates to ``megabytes`` MiB of zeros."""
    make_png(path, size=(16, 16))
    data = path.read_bytes()
    compressor = zlib.compressobj(9)
    text = b"".join(compressor.compress(b"\0" * (1 << 20)) for _ in range(megabytes)) + compressor.flush()
    body = b"Comment\0\0" + text
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    path.write_bytes(data[:-12] + chunk + data[-12:])  # before IEND
    return path


@pytest.mark.slow
def test_a_metadata_bomb_fails_that_file_and_exiftool_restarts(tmp_path):
    bomb = make_png_text_bomb(tmp_path / "bomb.png", megabytes=400)
    assert bomb.stat().st_size < 1 << 20
    content = bomb.read_bytes()
    normal = make_photo(tmp_path / "normal.jpg", seed=10)
    with MetadataWriter(MetadataSettings(exiftool_memory_mb=256)) as writer:
        started = time.monotonic()
        with pytest.raises(MetadataError, match="out of memory"):
            write_good(writer, bomb)
        assert time.monotonic() - started < 30
        write_good(writer, normal)  # the next file is tagged by a fresh ExifTool
    assert bomb.read_bytes() == content and tagged_verdict(normal) == "Good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png", "normal.jpg"]


# --- the daemon, scan and analyze with hostile names -----------------------------------------------


def _expected_images(root: Path) -> list[Path]:
    rules = IgnoreRules()
    found = []
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if not rules.ignores_folder(f)]
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink() and not rules.ignores(path.relative_to(root)):
                found.append(path)
    return found


def _rows_by_path(database: Path) -> dict[Path, list[dict]]:
    with ImageIndex(database) as index:
        rows = list(index.db["images"].rows)
    by_path: dict[Path, list[dict]] = {}
    for row in rows:
        by_path.setdefault(text_to_path(row["path"]), []).append(row)
    return by_path


def _place_hostile_photos(root: Path) -> list[Path]:
    return [make_photo(os.fsencode(root) + b"/" + relative, seed=i) for i, relative in enumerate(hostile_layout())]


@pytest.mark.slow
def test_daemon_tags_every_hostile_name_once_and_touches_nothing_outside(tmp_path, cwd):
    outside = outside_files(tmp_path)
    before_outside = tree_digest(outside)
    with RunningDaemon(tmp_path) as daemon:
        files = _place_hostile_photos(daemon.ingest) + make_injection_files(daemon.ingest, outside)
        originals = {f: pixels(f) for f in files}
        assert wait_until(lambda: len(daemon.rows()) >= len(files), 60), daemon.rows()
        time.sleep(1.0)  # nothing more may come
    rows = _rows_by_path(daemon.settings.index.database)
    assert sorted(rows) == sorted(files)
    for path in files:
        (row,) = rows[path]
        assert row["status"] == "ok", row
        assert text_to_path(row["tagged_file"]) == path and tagged_verdict(path) is not None
        assert (pixels(path) == originals[path]).all()
    assert tree_digest(outside) == before_outside
    assert not (cwd / "PWNED").exists()


@pytest.mark.slow
def test_scan_with_sidecars_tags_every_hostile_name(tmp_path, cwd):
    config = write_config(tmp_path, metadata={"mode": "sidecar", "sidecar_name": "fullname"})
    from pixelperfect_daemon.config import load_settings

    settings = load_settings(config)
    backlog = tmp_path / "backlog"
    files = [f for f in _place_hostile_photos(backlog) if len(os.fsencode(f.name)) <= 251]  # room for ".xmp"
    before = tree_digest(backlog)
    stats = scan_folder(settings, backlog, analyzer=analyzer_under_test(), progress=False)
    assert stats.outcomes["analysed"] == len(files), stats
    rows = _rows_by_path(settings.index.database)
    for path in files:
        (row,) = rows[path]
        sidecar = text_to_path(row["tagged_file"])
        assert row["status"] == "ok" and sidecar == path.with_name(path.name + ".xmp")
        assert tagged_verdict(sidecar) is not None
    after = tree_digest(backlog)
    assert {k: v for k, v in after.items() if not k.endswith(b".xmp")} == before  # originals untouched


@pytest.mark.skipif(not REAL_ENGINE, reason="models/stage1.tflite is not built yet")
def test_analyze_json_prints_every_hostile_name_losslessly(tmp_path):
    config = write_config(tmp_path)
    folder = tmp_path / "photos"
    files = _place_hostile_photos(folder)
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pixelperfect_daemon.cli import main; main()",
            "analyze",
            "--json",
            "--config",
            str(config),
            str(folder),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=300,
    )
    assert output.returncode == 0, output.stderr.decode(errors="replace")
    lines = output.stdout.decode("utf-8").split("\n")  # strict: valid UTF-8; one object per line
    results = [json.loads(line) for line in lines if line]
    assert sorted(text_to_path(r["path"]) for r in results) == sorted(files)
    assert all(r["verdict"] in ("good", "poor") for r in results)


@pytest.mark.slow
def test_a_slow_writer_never_loses_the_original(tmp_path):
    """Written 64 KiB at a time with pauses long enough for an analysis, the file kept open throughout."""
    source = make_jpeg(tmp_path / "source.jpg", size=(1200, 900), quality=95)
    data = source.read_bytes()
    with RunningDaemon(tmp_path) as daemon:
        target = daemon.ingest / "slow.jpg"
        with target.open("wb") as file:
            for start in range(0, len(data), 64 << 10):
                file.write(data[start : start + (64 << 10)])
                file.flush()
                time.sleep(2.5)  # stable_seconds is 0.3: the file looks complete, and is analysed, after every chunk
        assert wait_until(lambda: any(r["status"] == "ok" for r in daemon.rows()), 30), daemon.rows()
        time.sleep(1.0)
    assert (pixels(target) == pixels(source)).all()  # every byte the writer wrote is there
    (row,) = daemon.rows()
    assert row["status"] == "ok" and tagged_verdict(target) is not None


# --- fuzz ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ENGINE, reason="models/stage1.tflite is not built yet")
def test_fuzz_hostile_names_and_contents_into_a_running_daemon(tmp_path, cwd):
    rng = random.Random(22)
    outside = outside_files(tmp_path)
    make_photo(outside / "other.png", seed=98)
    before_outside = tree_digest(outside)
    started = time.monotonic()
    with RunningDaemon(tmp_path) as daemon:
        ingest = os.fsencode(daemon.ingest)
        folders = [ingest] + [ingest + b"/" + random_hostile_folder(rng) for _ in range(12)]
        kinds: dict[Path, str] = {}
        for number in range(300):
            path = rng.choice(folders) + b"/" + random_hostile_name(rng)
            if Path(os.fsdecode(path)) in kinds:
                continue
            kinds[Path(os.fsdecode(path))] = make_random_content(path, rng, number)
        kinds.update({f: "jpeg" for f in make_injection_files(daemon.ingest, outside)})
        os.symlink(outside / "v.jpg", daemon.ingest / "link.jpg")  # never followed, never a row
        expected = _expected_images(daemon.ingest)
        assert len(expected) > 250  # a few may be ignored by design ("~$x.jpg" is a temp-file name)
        originals = {f: pixels(f) for f in expected if kinds[f] in ("jpeg", "png")}
        assert wait_until(lambda: len(daemon.rows()) >= len(expected), 45), (len(daemon.rows()), len(expected))
        time.sleep(1.0)
    assert time.monotonic() - started < 60
    rows = _rows_by_path(daemon.settings.index.database)
    assert sorted(rows) == sorted(expected)  # exactly the regular image files, each once
    assert all(len(found) == 1 for found in rows.values())
    for path, (row,) in rows.items():
        if kinds[path] in ("jpeg", "png"):
            assert row["status"] == "ok", row
            assert tagged_verdict(text_to_path(row["tagged_file"])) is not None, path
            assert (pixels(path) == originals[path]).all(), path
        elif kinds[path] == "garbage":
            assert row["status"] == "error" and row["error"], row
    assert tree_digest(outside) == before_outside
    assert not (cwd / "PWNED").exists()
    assert not [p for p in daemon.ingest.rglob("*") if p.name.startswith(".pixelperfect-")]


def test_exiftool_memory_cap_is_validated_with_file_section_and_key(tmp_path):
    from pixelperfect_daemon.config import ConfigError, load_settings

    config = tmp_path / "config.toml"
    config.write_text("[metadata]\nexiftool_memory_mb = 10\n")
    with pytest.raises(ConfigError, match=r"config.toml: \[metadata\] exiftool_memory_mb must be at least 256"):
        load_settings(config)
