"""Telling a JPEG without XMP from its header, and the ExifTool read that saves."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from PIL import Image

from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.jpeg_segments import jpeg_may_hold_xmp
from pixelperfect_daemon.metadata import MetadataWriter
from tests.fixtures_images import make_jpeg, make_png

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")

XMP_PACKET = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>'
)


def test_jpeg_with_exif_but_no_xmp_holds_none(tmp_path):
    assert not jpeg_may_hold_xmp(make_jpeg(tmp_path / "a.jpg", exif_orientation=6))
    assert not jpeg_may_hold_xmp(make_jpeg(tmp_path / "b.jpg", progressive=True))


def test_jpeg_with_an_xmp_segment_may_hold_xmp(tmp_path):
    path = tmp_path / "a.jpg"
    Image.new("RGB", (32, 32), (90, 120, 150)).save(path, "JPEG", xmp=XMP_PACKET)
    assert jpeg_may_hold_xmp(path)


def test_fill_bytes_before_a_marker_are_skipped(tmp_path):
    plain = make_jpeg(tmp_path / "a.jpg").read_bytes()
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(plain[:2] + b"\xff\xff" + plain[2:])  # 0xFF fill bytes before the first marker
    assert not jpeg_may_hold_xmp(padded)


@pytest.mark.parametrize(
    "content",
    [
        b"",  # zero bytes
        b"\xff\xd8",  # only the start-of-image marker
        b"\xff\xd8\xff\xe0\x00",  # cut inside a length
        b"\xff\xd8\xff\xe1\x00\x01",  # a length too short to be one
        b"\xff\xd8\x00\x00\x00\x00",  # not a marker where one must be
        b"\xff\xd8\xff\xed\x00\x04ab",  # a Photoshop APP13 block, which may embed XMP
    ],
)
def test_anything_unsure_may_hold_xmp(tmp_path, content):
    path = tmp_path / "odd.jpg"
    path.write_bytes(content)
    assert jpeg_may_hold_xmp(path)


def test_other_formats_and_missing_files_may_hold_xmp(tmp_path):
    assert jpeg_may_hold_xmp(make_png(tmp_path / "a.png"))
    assert jpeg_may_hold_xmp(tmp_path / "missing.jpg")


@needs_exiftool
def test_after_our_write_the_jpeg_holds_xmp_and_is_read(tmp_path):
    image = make_jpeg(tmp_path / "a.jpg")
    with MetadataWriter(MetadataSettings()) as writer:
        writer.write_verdict(
            image, verdict="poor", defect="noise", quality=0.3, model_version="pp-1", analyzed_at="2026-01-31T12:00:00Z"
        )
        assert jpeg_may_hold_xmp(image)
        assert writer.read_verdict(image)["Defect"] == "Noise"


@needs_exiftool
def test_the_users_xmp_keywords_are_still_kept(tmp_path):
    image = tmp_path / "a.jpg"
    Image.new("RGB", (32, 32), (90, 120, 150)).save(image, "JPEG")
    subprocess.run(
        ["exiftool", "-overwrite_original", "-XMP-dc:Subject+=Holiday", "-XMP-xmp:Rating=4", str(image)],
        check=True,
        capture_output=True,
    )
    with MetadataWriter(MetadataSettings()) as writer:
        writer.write_verdict(
            image, verdict="good", defect=None, quality=0.9, model_version="pp-1", analyzed_at="2026-01-31T12:00:00Z"
        )
        read = writer.read_verdict(image)
    assert sorted(read["subject"]) == ["Good", "Holiday", "PixelPerfect"]
    assert read["Rating"] == "4"
