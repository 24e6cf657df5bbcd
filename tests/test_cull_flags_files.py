"""The native cull flags in real files: written by the real ExifTool, read back by an independent
ExifTool (without our config file) and by Exiv2 (digiKam's and darktable's metadata library), for
every kind of file a photographer keeps, with the user's own values restored exactly.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.metadata import MetadataWriter
from tests.fixtures_images import make_dng, make_heic, make_jpeg, make_png, make_raw_like, make_tiff

pillow_heif.register_heif_opener()

pytestmark = pytest.mark.skipif(
    shutil.which("exiftool") is None or shutil.which("exiv2") is None, reason="needs exiftool and exiv2"
)

SMALL = (64, 48)
ALL_FLAGS = dict(poor_color_label="Red", poor_reject_rating=True, pick_label=True, quality_stars=True)
# The user's own values, as their DAM wrote them.
USERS = {"Rating": "4", "Label": "Green", "PickLabel": "2"}
_XMP_KEYS = {"Rating": "Xmp.xmp.Rating", "Label": "Xmp.xmp.Label", "PickLabel": "Xmp.digiKam.PickLabel"}


def exiv2_version() -> tuple[int, ...]:
    output = subprocess.run(["exiv2", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"exiv2 (\d+)\.(\d+)", output)
    return tuple(int(part) for part in match.groups()) if match else (0, 0)


def exiv2_reads(path: Path) -> bool:
    """Exiv2 0.27 has no HEIF support (0.28 reads HEIC through its BMFF support)."""
    return path.suffix.lower() not in (".heic", ".heif") or exiv2_version() >= (0, 28)


def read_exiftool(path: Path) -> dict[str, str | None]:
    """The three fields and our memory, as an ExifTool without our config file reads them."""
    output = subprocess.run(
        ["exiftool", "-s3", "-f", "-n", "-XMP-xmp:Rating", "-XMP-xmp:Label", "-XMP-digiKam:PickLabel",
         "-XMP-pixelperfect:PreviousRating", "-XMP-pixelperfect:PreviousLabel", "-XMP-pixelperfect:PreviousPickLabel",
         "-XMP-pixelperfect:Verdict", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    names = ("Rating", "Label", "PickLabel", "PreviousRating", "PreviousLabel", "PreviousPickLabel", "Verdict")
    return {name: (None if value == "-" else value) for name, value in zip(names, output, strict=True)}


def read_exiv2(path: Path) -> dict[str, str]:
    """Xmp key -> value from ``exiv2 -px`` (key, type, count, value columns)."""
    output = subprocess.run(["exiv2", "-px", str(path)], capture_output=True, text=True).stdout
    values = {}
    for line in output.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3:
            values[parts[0]] = parts[3] if len(parts) == 4 else ""
    return values


def assert_fields(path: Path, expected: dict[str, str | None]) -> None:
    """Both tools read ``expected`` (None: the tag is absent) from ``path``."""
    by_exiftool = read_exiftool(path)
    assert {name: by_exiftool[name] for name in expected} == expected, path
    if exiv2_reads(path):
        by_exiv2 = read_exiv2(path)
        assert {name: by_exiv2.get(_XMP_KEYS[name]) for name in expected} == expected, path


def set_users_values(path: Path, values: dict[str, str]) -> None:
    """What the user's DAM did before PixelPerfect came along."""
    arguments = [f"-XMP-{'digiKam' if name == 'PickLabel' else 'xmp'}:{name}={value}" for name, value in values.items()]
    subprocess.run(["exiftool", "-q", "-overwrite_original", *arguments, str(path)], check=True)


def write_users_sidecar(sidecar: Path, values: dict[str, str]) -> None:
    """A sidecar as Lightroom or digiKam writes it for a RAW file."""
    sidecar.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:digiKam="http://www.digikam.org/ns/1.0/" '
        f'xmp:Rating="{values["Rating"]}" xmp:Label="{values["Label"]}" digiKam:PickLabel="{values["PickLabel"]}"/>'
        "</rdf:RDF></x:xmpmeta>",
        encoding="utf-8",
    )


def pixel_hash(path: Path) -> str:
    with Image.open(path) as image:
        return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


def tag(writer: MetadataWriter, path: Path, verdict: str, quality: float) -> Path:
    return writer.write_verdict(
        path, verdict=verdict, defect="blur" if verdict == "poor" else None, quality=quality,
        model_version="pp-1.0", analyzed_at="2026-01-31T12:00:00Z",
    )  # fmt: skip


MAKERS = {
    "jpeg": lambda folder: make_jpeg(folder / "IMG_0001.jpg", size=SMALL),
    "tiff": lambda folder: make_tiff(folder / "IMG_0002.tif", size=SMALL),
    "heic": lambda folder: make_heic(folder / "IMG_0003.heic", size=SMALL),
    "dng": lambda folder: make_dng(folder / "IMG_0004.dng", size=SMALL, preview_size=None),
}


# The fast lane keeps one case of each path (JPEG, a basename sidecar, read-only, touch); the rest are slow.
@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=[] if k == "jpeg" else [pytest.mark.slow]) for k in sorted(MAKERS)]
)
def test_embedded_flags_read_back_and_the_users_values_return(tmp_path, kind):
    image = MAKERS[kind](tmp_path)
    set_users_values(image, USERS)
    pixels = pixel_hash(image)
    with MetadataWriter(MetadataSettings(**ALL_FLAGS)) as writer:
        assert tag(writer, image, "poor", 0.2) == image
        assert_fields(image, {"Rating": "-1", "Label": "Red", "PickLabel": "1"})
        assert read_exiftool(image)["PreviousRating"] == "4" and read_exiftool(image)["PreviousLabel"] == "Green"
        tag(writer, image, "good", 0.9)
    assert_fields(image, USERS)
    assert read_exiftool(image)["PreviousRating"] is None  # the claim is gone with the flag
    assert pixel_hash(image) == pixels


@pytest.mark.parametrize(
    "naming, sidecar_name",
    [("basename", "IMG_0005.xmp"), pytest.param("fullname", "IMG_0005.CR2.xmp", marks=pytest.mark.slow)],
)
def test_raw_sidecar_flags_read_back_and_the_users_values_return(tmp_path, naming, sidecar_name):
    raw = make_raw_like(tmp_path / "IMG_0005.CR2", ext=".CR2", preview_size=SMALL)
    sidecar = tmp_path / sidecar_name
    write_users_sidecar(sidecar, USERS)
    raw_bytes = raw.read_bytes()
    with MetadataWriter(MetadataSettings(sidecar_name=naming, **ALL_FLAGS)) as writer:
        assert tag(writer, raw, "poor", 0.2) == sidecar
        assert_fields(sidecar, {"Rating": "-1", "Label": "Red", "PickLabel": "1"})
        tag(writer, raw, "good", 0.9)
    assert_fields(sidecar, USERS)
    assert raw.read_bytes() == raw_bytes


@pytest.mark.slow
def test_raw_without_a_sidecar_gets_flags_and_loses_them_again(tmp_path):
    raw = make_raw_like(tmp_path / "IMG_0006.NEF", ext=".NEF", preview_size=SMALL)
    with MetadataWriter(MetadataSettings(sidecar_name="fullname", **ALL_FLAGS)) as writer:
        sidecar = tag(writer, raw, "poor", 0.2)
        assert sidecar == tmp_path / "IMG_0006.NEF.xmp"
        assert_fields(sidecar, {"Rating": "-1", "Label": "Red", "PickLabel": "1"})
        tag(writer, raw, "good", 0.65)
    # No prior rating: quality stars (0.65: 4) fill in, no label, digiKam's "accepted".
    assert_fields(sidecar, {"Rating": "4", "Label": None, "PickLabel": "3"})


def test_read_only_file_keeps_its_own_values_and_gets_a_sidecar(tmp_path):
    image = make_jpeg(tmp_path / "IMG_0007.jpg", size=SMALL)
    set_users_values(image, USERS)
    image.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    before = image.read_bytes()
    try:
        with MetadataWriter(MetadataSettings(**ALL_FLAGS)) as writer:
            sidecar = tag(writer, image, "poor", 0.2)
            assert sidecar == tmp_path / "IMG_0007.xmp"
            assert_fields(sidecar, {"Rating": "-1", "Label": "Red", "PickLabel": "1"})
            tag(writer, image, "good", 0.2)
        # The sidecar had no values of its own: quality stars (0.2: 1 star) and "accepted" fill in, no label.
        assert_fields(sidecar, {"Rating": "1", "Label": None, "PickLabel": "3"})
    finally:
        image.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert image.read_bytes() == before
    assert_fields(image, USERS)


@pytest.mark.slow
def test_png_named_jpg_gets_a_sidecar_that_both_tools_read(tmp_path):
    misnamed = make_png(tmp_path / "tmp.png", size=SMALL).rename(tmp_path / "IMG_0008.jpg")
    before = misnamed.read_bytes()
    with MetadataWriter(MetadataSettings(**ALL_FLAGS)) as writer:
        assert tag(writer, misnamed, "poor", 0.2) == tmp_path / "IMG_0008.xmp"
    assert_fields(tmp_path / "IMG_0008.xmp", {"Rating": "-1", "Label": "Red", "PickLabel": "1"})
    assert misnamed.read_bytes() == before


@pytest.mark.slow
def test_user_edit_between_our_writes_is_kept(tmp_path):
    image = make_jpeg(tmp_path / "IMG_0009.jpg", size=SMALL)
    set_users_values(image, USERS)
    with MetadataWriter(MetadataSettings(**ALL_FLAGS)) as writer:
        tag(writer, image, "poor", 0.2)
        set_users_values(image, {"Rating": "5"})  # the photographer disagrees in Lightroom
        tag(writer, image, "good", 0.9)
        assert_fields(image, {"Rating": "5", "Label": "Green", "PickLabel": "2"})
        tag(writer, image, "poor", 0.2)  # flagged again: their 5 stars stay
        assert_fields(image, {"Rating": "5", "Label": "Red", "PickLabel": "1"})
        tag(writer, image, "good", 0.9)
    assert_fields(image, {"Rating": "5", "Label": "Green", "PickLabel": "2"})


def test_touch_on_change_sets_the_mtime_only_when_the_tags_changed(tmp_path):
    image = make_jpeg(tmp_path / "IMG_0010.jpg", size=SMALL)
    os.utime(image, (1_000_000_000, 1_000_000_000))
    with MetadataWriter(MetadataSettings(touch_on_change=True, poor_reject_rating=True)) as writer:
        tag(writer, image, "poor", 0.2)
        touched = image.stat().st_mtime
        assert touched > 1_000_000_000 + 86400
        os.utime(image, (1_000_000_000, 1_000_000_000))
        tag(writer, image, "poor", 0.2)  # the same tags again: ExifTool leaves the file unchanged
        assert image.stat().st_mtime == 1_000_000_000
    with MetadataWriter(MetadataSettings(poor_reject_rating=True)) as writer:
        tag(writer, image, "good", 0.9)  # without the setting ExifTool keeps the mtime (-P)
        assert image.stat().st_mtime == 1_000_000_000
