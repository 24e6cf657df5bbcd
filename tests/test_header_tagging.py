"""Tagging a JPEG through its header alone gives the very file ExifTool's whole-file write gives."""

from __future__ import annotations

import errno
import io
import os
import shutil
import struct
import subprocess
import threading

import pytest
from PIL import Image

from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.file_replace import FileIdentity, scratch_path_for
from pixelperfect_daemon.header_tagging import HeaderTagging, _copy_range
from pixelperfect_daemon.jpeg_segments import scan_start_without_xmp, xmp_segment_added
from pixelperfect_daemon.metadata import MetadataWriter
from tests.fixtures_images import make_jpeg, photo

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")

VERDICT = {
    "verdict": "poor",
    "defect": "blur",
    "quality": 0.3,
    "model_version": "pp-1",
    "analyzed_at": "2026-01-31T12:00:00Z",
}


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


XMP_SEGMENT = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x/>")


HEADER = (
    b"\xff\xd8"
    + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    + _segment(0xFE, b"a comment")
    + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
)
AFTER_JFIF = 2 + 18


# -- the check of ExifTool's new header (pure) ------------------------------------------------


def test_one_xmp_segment_inserted_between_segments_is_accepted():
    assert xmp_segment_added(HEADER, HEADER[:AFTER_JFIF] + XMP_SEGMENT + HEADER[AFTER_JFIF:])
    assert xmp_segment_added(HEADER, HEADER[:2] + XMP_SEGMENT + HEADER[2:])


@pytest.mark.parametrize(
    "after",
    [
        HEADER,  # nothing added
        HEADER[:AFTER_JFIF] + XMP_SEGMENT + HEADER[AFTER_JFIF:].replace(b"a comment", b"A comment"),  # another change
        HEADER[:AFTER_JFIF] + XMP_SEGMENT + XMP_SEGMENT + HEADER[AFTER_JFIF:],  # two
        HEADER[:AFTER_JFIF] + _segment(0xE1, b"Exif\x00\x00II*\x00") + HEADER[AFTER_JFIF:],  # not XMP
        HEADER[:AFTER_JFIF] + XMP_SEGMENT,  # the rest of the header lost
        HEADER[:AFTER_JFIF] + XMP_SEGMENT + HEADER[AFTER_JFIF:] + b"\x00",  # bytes after the start of scan
        HEADER[:AFTER_JFIF] + XMP_SEGMENT[:-1] + HEADER[AFTER_JFIF:],  # a segment whose length lies
    ],
)
def test_any_other_new_header_is_refused(after):
    assert not xmp_segment_added(HEADER, after)


def test_standalone_markers_in_a_header_are_walked_over():
    with_restart = HEADER[:AFTER_JFIF] + b"\xff\xd0" + HEADER[AFTER_JFIF:]
    assert xmp_segment_added(with_restart, with_restart[:AFTER_JFIF] + XMP_SEGMENT + with_restart[AFTER_JFIF:])
    assert scan_start_without_xmp(io.BytesIO(with_restart + b"\x00\xff\xd9")) == len(with_restart)


def test_the_scan_start_is_found_only_without_xmp():
    assert scan_start_without_xmp(io.BytesIO(HEADER + b"\x12\x34\xff\xd9")) == len(HEADER)
    with_xmp = HEADER[:AFTER_JFIF] + XMP_SEGMENT + HEADER[AFTER_JFIF:]
    assert scan_start_without_xmp(io.BytesIO(with_xmp)) is None
    assert scan_start_without_xmp(io.BytesIO(HEADER[:-3])) is None  # cut inside the start of scan's length


def test_a_source_shorter_than_expected_is_not_copied_whole(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(b"x" * 100)
    with open(source, "rb") as s, open(target, "wb") as t:
        assert _copy_range(s.fileno(), t.fileno(), 10, 90)
        assert not _copy_range(s.fileno(), t.fileno(), 10, 91)


def test_the_copy_goes_through_memory_where_the_kernel_cannot_copy(tmp_path, monkeypatch):
    def no_kernel_copy(*arguments):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", no_kernel_copy)
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with open(source, "rb") as s, open(target, "wb") as t:
        assert _copy_range(s.fileno(), t.fileno(), 5, source.stat().st_size - 5)
    assert target.read_bytes() == source.read_bytes()[5:]


# -- HeaderTagging with a stand-in for ExifTool -------------------------------------------------


def test_a_fifo_in_the_photos_place_is_not_opened_for_long(tmp_path):
    image = _jpeg(tmp_path)
    identity = FileIdentity.of(image)
    image.rename(tmp_path / "moved.jpg")
    os.mkfifo(image)  # nobody will ever write to it: a blocking open would wait forever
    tagging = HeaderTagging()
    results = []
    thread = threading.Thread(
        target=lambda: results.append(tagging.tag(image, identity, scratch_path_for(image), lambda h, t: True)),
        daemon=True,
    )
    try:
        thread.start()
        thread.join(10)
        if thread.is_alive():
            os.close(os.open(image, os.O_WRONLY | os.O_NONBLOCK))  # a writer releases the blocked open
            thread.join(10)
            pytest.fail("opening the FIFO blocked")
    finally:
        tagging.close()
    assert results == [False]


def _jpeg(tmp_path, name="a.jpg"):
    return make_jpeg(tmp_path / name, exif_orientation=6)


def test_a_new_header_with_more_changed_is_not_used_and_nothing_is_written(tmp_path):
    image = _jpeg(tmp_path)
    original = image.read_bytes()
    scratch = scratch_path_for(image)

    def run_changing_the_exif(header, tagged):
        data = header.read_bytes()
        start = data.index(b"Exif")
        tagged.write_bytes(data[:2] + XMP_SEGMENT + data[2:start] + b"exif" + data[start + 4 :])
        return True

    tagging = HeaderTagging()
    try:
        assert not tagging.tag(image, FileIdentity.of(image), scratch, run_changing_the_exif)
    finally:
        tagging.close()
    assert not scratch.exists()
    assert image.read_bytes() == original


def test_exiftool_failing_on_the_header_or_a_changed_file_writes_nothing(tmp_path):
    image = _jpeg(tmp_path)
    scratch = scratch_path_for(image)
    calls = []
    tagging = HeaderTagging()
    try:
        assert not tagging.tag(image, FileIdentity.of(image), scratch, lambda header, tagged: calls.append(1) or False)
        assert calls == [1]
        earlier = FileIdentity.of(image)
        os.utime(image, ns=(0, earlier.mtime_ns + 1_000_000))
        assert not tagging.tag(image, earlier, scratch, lambda header, tagged: calls.append(2) or True)
        assert calls == [1]  # ExifTool not even asked
    finally:
        tagging.close()
    assert not scratch.exists()


@pytest.mark.parametrize("ending", [b"trailer data", b"\xff\xd9" + b"SEFT"])
def test_a_file_with_bytes_after_its_image_is_left_to_exiftool(tmp_path, ending):
    image = _jpeg(tmp_path)
    image.write_bytes(image.read_bytes() + ending)
    tagging = HeaderTagging()
    try:
        assert not tagging.tag(image, FileIdentity.of(image), scratch_path_for(image), lambda h, t: True)
    finally:
        tagging.close()


# -- the writer: the same file either way, on the JPEGs cameras and editors make ----------------


def _write_both_ways(folder, sources, monkeypatch) -> list[tuple[bytes, bytes, bool]]:
    """Per source: (ExifTool's whole-file write, the write through the header alone, whether it was used)."""
    written = {False: [], True: []}  # per way of writing: (bytes, header alone used), in the order of sources
    for alone in (False, True):
        with MetadataWriter(MetadataSettings()) as writer:
            writer.tag_headers_alone = alone
            used = []
            tag = writer._header_tagging.tag

            def recorded_tag(*arguments, tag=tag, used=used):
                used.append(tag(*arguments))
                return used[-1]

            monkeypatch.setattr(writer._header_tagging, "tag", recorded_tag)
            for number, source in enumerate(sources):
                copy = folder / f"{'alone' if alone else 'whole'}-{number}{source.suffix}"
                shutil.copy2(source, copy)
                copy.chmod(0o644)  # the shared photos are read-only: they would get a sidecar
                used.clear()
                writer.write_verdict(copy, **VERDICT)
                if used == [True]:
                    assert os.stat(copy).st_mtime_ns == os.stat(source).st_mtime_ns  # ExifTool's -P keeps it
                written[alone].append((copy.read_bytes(), used == [True]))
                copy.unlink()
    return [(whole, alone, used) for (whole, _), (alone, used) in zip(written[False], written[True])]


def _icc_jpeg(path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(photo((96, 64))).save(path, "JPEG", icc_profile=icc, comment=b"made by a test")
    return path


JPEGS = {
    "baseline": lambda p: make_jpeg(p),
    "exif": lambda p: make_jpeg(p, exif_orientation=6),
    "progressive": lambda p: make_jpeg(p, progressive=True),
    "restart markers": lambda p: make_jpeg(p, restart_marker_rows=1),
    "icc and comment": _icc_jpeg,
    "cmyk": lambda p: Image.fromarray(photo((64, 48))).convert("CMYK").save(p, "JPEG") or p,
    "grey 4:4:4": lambda p: Image.fromarray(photo((64, 48))).convert("L").save(p, "JPEG", subsampling=0) or p,
}


@needs_exiftool
@pytest.mark.parametrize("kind", sorted(JPEGS))
def test_tagging_the_header_alone_gives_exiftools_own_file(tmp_path, kind, monkeypatch):
    source = JPEGS[kind](tmp_path / "source.jpg")
    ((whole, alone, used),) = _write_both_ways(tmp_path, [source], monkeypatch)
    assert used
    assert alone == whole


@needs_exiftool
def test_a_jpeg_with_xmp_is_written_whole(tmp_path, monkeypatch):
    source = make_jpeg(tmp_path / "source.jpg")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-xmp:Rating=4", str(source)], check=True)
    ((whole, alone, used),) = _write_both_ways(tmp_path, [source], monkeypatch)
    assert not used
    assert alone == whole


@needs_exiftool
def test_every_shared_jpeg_gets_exiftools_own_file(tmp_path, shared_data, monkeypatch):
    jpegs = sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert jpegs
    results = _write_both_ways(tmp_path, jpegs, monkeypatch)
    assert [source for source, (_, _, used) in zip(jpegs, results) if not used] == []
    assert [source for source, (whole, alone, _) in zip(jpegs, results) if alone != whole] == []


@needs_exiftool
def test_without_a_private_folder_exiftool_writes_the_whole_file(tmp_path, monkeypatch):
    image = make_jpeg(tmp_path / "a.jpg")

    def no_temporary_folder(*arguments, **keywords):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pixelperfect_daemon.header_tagging.tempfile.mkdtemp", no_temporary_folder)
    with MetadataWriter(MetadataSettings()) as writer:
        writer.write_verdict(image, **VERDICT)
        assert writer.read_verdict(image)["Defect"] == "Blur"


@needs_exiftool
def test_no_copy_of_a_header_outlives_its_write(tmp_path):
    image = make_jpeg(tmp_path / "a.jpg", exif_orientation=6)  # the EXIF could be a GPS position
    with MetadataWriter(MetadataSettings()) as writer:
        writer.write_verdict(image, **VERDICT)
        folder = writer._header_tagging._folder
        assert folder is not None and list(folder.iterdir()) == []
    assert not folder.exists()
