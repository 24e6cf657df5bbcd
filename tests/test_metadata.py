"""XMP verdict tags: pure keyword logic, then the real ExifTool writing and Exiv2 reading back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from pixelperfect_daemon.config import MetadataSettings
from pixelperfect_daemon.metadata import (
    EXIFTOOL_CONFIG,
    MetadataError,
    MetadataWriter,
    is_read_only,
    keyword_arguments,
    pixelperfect_keywords,
    sidecar_file_name,
    sidecar_path,
    without_deleting_absent_tags,
)
from tests.fixtures_images import make_dng, make_heic, make_jpeg, make_png, make_raw_like, make_tiff, make_webp

pillow_heif.register_heif_opener()

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
needs_exiv2 = pytest.mark.skipif(shutil.which("exiv2") is None, reason="exiv2 is not installed")

ANALYZED_AT = "2026-01-31T12:00:00Z"


# --- test images ------------------------------------------------------------------------------

SMALL = (64, 48)
_MAKERS = {
    ".jpg": lambda path, variant: make_jpeg(path, size=SMALL, variant=variant),
    ".png": lambda path, variant: make_png(path, size=SMALL, variant=variant),
    ".tif": lambda path, variant: make_tiff(path, size=SMALL, variant=variant),
    ".webp": lambda path, variant: make_webp(path, size=SMALL, variant=variant),
    ".heic": lambda path, variant: make_heic(path, size=SMALL, variant=variant),
    ".dng": lambda path, variant: make_dng(path, size=SMALL, preview_size=None, variant=variant),
    ".cr2": lambda path, variant: make_raw_like(path, ext=path.suffix, preview_size=SMALL, variant=variant),
}


def make_image(path: Path, seed: int = 0) -> Path:
    return _MAKERS[path.suffix.lower()](path, seed)


def decoded_pixels(path: Path) -> np.ndarray:
    """Decoded independently of the code under test (Pillow reads a DNG-tagged TIFF as a TIFF)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def exiftool_json(path: Path) -> dict:
    """What an independent ExifTool (without our config file) reads back."""
    output = subprocess.run(["exiftool", "-j", "-G1", str(path)], capture_output=True, text=True, check=True)
    return json.loads(output.stdout)[0]


def exiv2_values(path: Path) -> dict[str, str]:
    """Xmp key -> value as Exiv2 (the library digiKam and darktable use) reads them."""
    output = subprocess.run(["exiv2", "-PXkv", str(path)], capture_output=True, text=True)
    values = {}
    for line in output.stdout.splitlines():
        key, _, value = line.partition(" ")
        values[key] = value.strip()
    return values


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.fixture
def writer():
    with MetadataWriter(MetadataSettings()) as metadata_writer:
        yield metadata_writer


def write_poor_blur(writer: MetadataWriter, path: Path, **extra) -> Path:
    return writer.write_verdict(
        path, verdict="poor", defect="blur", quality=0.25, model_version="pp-1.0", analyzed_at=ANALYZED_AT, **extra
    )


def write_good(writer: MetadataWriter, path: Path, **extra) -> Path:
    return writer.write_verdict(
        path, verdict="good", defect=None, quality=0.9, model_version="pp-1.0", analyzed_at=ANALYZED_AT, **extra
    )


# --- pure functions ---------------------------------------------------------------------------


def test_sidecar_names_follow_lightroom_or_darktable():
    image = Path("/photos/IMG_0001.CR2")
    assert sidecar_file_name(image, "basename") == Path("/photos/IMG_0001.xmp")
    assert sidecar_file_name(image, "fullname") == Path("/photos/IMG_0001.CR2.xmp")


def test_sidecar_path_is_none_for_embedded_formats_only_in_embedded_mode():
    embedded = MetadataSettings()
    assert sidecar_path(Path("/p/a.JPG"), embedded) is None
    assert sidecar_path(Path("/p/a.dng"), embedded) is None
    assert sidecar_path(Path("/p/a.heic"), embedded) is None
    assert sidecar_path(Path("/p/a.NEF"), embedded) == Path("/p/a.xmp")
    assert sidecar_path(Path("/p/a.bmp"), embedded) == Path("/p/a.xmp")
    assert sidecar_path(Path("/p/a.jpg"), MetadataSettings(mode="sidecar", sidecar_name="fullname")) == Path(
        "/p/a.jpg.xmp"
    )


def test_deletions_of_tags_the_file_does_not_hold_are_left_out_and_nothing_else():
    arguments = [
        "-XMP-pixelperfect:Verdict=Poor",
        "-XMP-pixelperfect:ReviewedBy=",  # absent: a no-op
        "-XMP-pixelperfect:ReviewReason=",  # present: deleted
        "-XMP-dc:Subject-=Poor",  # absent list: a no-op
        "-XMP-dc:Subject+=Poor",
        "-XMP-lr:HierarchicalSubject-=PixelPerfect|Good",  # present list: removed
        "-XMP-xmp:Rating=-1",
        "-XMP-xmp:Label-=Red",  # absent: a no-op
        "-XMP-pixelperfect:Note=a=b",
    ]
    existing = {
        "XMP-pixelperfect:ReviewReason": "Duplicate",
        "XMP-lr:HierarchicalSubject": ["PixelPerfect|Good", "Trips|Rome"],
        "XMP-pixelperfect:ReviewedAt": "",  # present though empty: its deletion stays
    }
    assert without_deleting_absent_tags(arguments, existing) == [
        "-XMP-pixelperfect:Verdict=Poor",
        "-XMP-pixelperfect:ReviewReason=",
        "-XMP-dc:Subject+=Poor",
        "-XMP-lr:HierarchicalSubject-=PixelPerfect|Good",
        "-XMP-xmp:Rating=-1",
        "-XMP-pixelperfect:Note=a=b",
    ]
    assert without_deleting_absent_tags(["-XMP-pixelperfect:ReviewedAt="], existing) == [
        "-XMP-pixelperfect:ReviewedAt="
    ]
    assert without_deleting_absent_tags(arguments, {}) == [
        "-XMP-pixelperfect:Verdict=Poor",
        "-XMP-dc:Subject+=Poor",
        "-XMP-xmp:Rating=-1",
        "-XMP-pixelperfect:Note=a=b",
    ]


def test_pixelperfect_keywords_are_a_lightroom_keyword_path():
    assert pixelperfect_keywords("poor", "color_distortion") == (
        ["PixelPerfect|Poor|Color Distortion"],
        ["PixelPerfect", "Poor", "Color Distortion"],
    )
    assert pixelperfect_keywords("good", None) == (["PixelPerfect|Good"], ["PixelPerfect", "Good"])
    assert pixelperfect_keywords("poor", None) == (["PixelPerfect|Poor"], ["PixelPerfect", "Poor"])


def test_a_review_reason_adds_a_child_of_the_defects_keyword_and_keeps_the_defects_own():
    assert pixelperfect_keywords("poor", "other", "duplicate") == (
        ["PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate"],
        ["PixelPerfect", "Poor", "Other", "Duplicate"],
    )
    assert pixelperfect_keywords("good", None, "duplicate") == (["PixelPerfect|Good"], ["PixelPerfect", "Good"])


def test_dropping_the_reason_removes_our_duplicate_keyword_and_keeps_the_users_duplicate():
    ours = ["PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate"]
    arguments = keyword_arguments(
        existing_hierarchical=[*ours, "Review|Duplicate"],
        existing_flat=["PixelPerfect", "Poor", "Other", "Duplicate", "Review"],
        previous_verdict="Poor",
        previous_defect="Other",
        new_hierarchical=["PixelPerfect|Good"],
        new_flat=["PixelPerfect", "Good"],
        previous_reason="Duplicate",
    )
    assert "-XMP-lr:HierarchicalSubject-=PixelPerfect|Poor|Other|Duplicate" in arguments
    assert "-XMP-dc:Subject-=Other" in arguments
    # The user's own keyword path Review|Duplicate makes the flat word theirs as well.
    assert not any(a.endswith("=Duplicate") or "Review" in a for a in arguments)
    alone = keyword_arguments(ours, ["PixelPerfect", "Poor", "Other", "Duplicate"], "Poor", "Other",
                              ["PixelPerfect|Poor|Other"], ["PixelPerfect", "Poor", "Other"], "Duplicate")  # fmt: skip
    assert "-XMP-dc:Subject-=Duplicate" in alone and "-XMP-dc:Subject-=Other" in alone


def test_keyword_arguments_replace_ours_and_keep_the_users():
    arguments = keyword_arguments(
        existing_hierarchical=["PixelPerfect|Poor|Noise", "Places|Noise"],
        existing_flat=["PixelPerfect", "Poor", "Noise", "Places", "Holiday"],
        previous_verdict="Poor",
        previous_defect="Noise",
        new_hierarchical=["PixelPerfect|Good"],
        new_flat=["PixelPerfect", "Good"],
    )
    assert "-XMP-lr:HierarchicalSubject-=PixelPerfect|Poor|Noise" in arguments
    assert "-XMP-dc:Subject-=Poor" in arguments
    # "Noise" is also the user's own keyword (Places|Noise): it stays.
    assert "-XMP-dc:Subject-=Noise" not in arguments
    assert not any("Holiday" in a or "Places" in a for a in arguments)
    # Added once however often it is written: remove, then add.
    assert arguments[-6:] == [
        "-XMP-lr:HierarchicalSubject-=PixelPerfect|Good",
        "-XMP-lr:HierarchicalSubject+=PixelPerfect|Good",
        "-XMP-dc:Subject-=PixelPerfect",
        "-XMP-dc:Subject+=PixelPerfect",
        "-XMP-dc:Subject-=Good",
        "-XMP-dc:Subject+=Good",
    ]


def test_is_read_only_follows_the_write_bits(tmp_path):
    image = make_image(tmp_path / "a.jpg")
    assert not is_read_only(image)
    image.chmod(0o444)
    assert is_read_only(image)


# --- the real ExifTool ------------------------------------------------------------------------


@needs_exiftool
def test_config_file_ships_with_the_package():
    assert EXIFTOOL_CONFIG.is_file()
    assert "http://ns.pixelperfect.dev/1.0/" in EXIFTOOL_CONFIG.read_text()


@needs_exiftool
def test_poor_verdict_reads_back_with_exiftool(tmp_path, writer):
    image = make_image(tmp_path / "IMG_0001.jpg")
    assert write_poor_blur(writer, image) == image
    tags = exiftool_json(image)
    assert tags["XMP-pixelperfect:Verdict"] == "Poor"
    assert tags["XMP-pixelperfect:Defect"] == "Blur"
    assert float(tags["XMP-pixelperfect:Quality"]) == pytest.approx(0.25)
    assert str(tags["XMP-pixelperfect:ModelVersion"]) == "pp-1.0"
    assert as_list(tags["XMP-lr:HierarchicalSubject"]) == ["PixelPerfect|Poor|Blur"]
    assert as_list(tags["XMP-dc:Subject"]) == ["PixelPerfect", "Poor", "Blur"]
    assert "XMP-pixelperfect:ReviewedBy" not in tags

    read = writer.read_verdict(image)
    assert read["Verdict"] == "Poor" and read["Defect"] == "Blur" and read["Quality"] == pytest.approx(0.25)
    assert read["ModelVersion"] == "pp-1.0" and read["AnalyzedAt"] == ANALYZED_AT
    assert read["keywords"] == ["PixelPerfect|Poor|Blur"]
    assert read["file"] == image


@needs_exiftool
@needs_exiv2
def test_tags_read_back_with_exiv2(tmp_path, writer):
    image = make_image(tmp_path / "IMG_0002.jpg")
    writer.write_verdict(
        image,
        verdict="poor",
        defect="luminance_contrast",
        quality=0.125,
        model_version="pp-1.0",
        analyzed_at=ANALYZED_AT,
        reviewed_by="ann",
        reviewed_at="2026-02-01T08:00:00Z",
    )
    values = exiv2_values(image)
    assert values["Xmp.pixelperfect.Verdict"] == "Poor"
    assert values["Xmp.pixelperfect.Defect"] == "Luminance/Contrast"
    assert float(values["Xmp.pixelperfect.Quality"]) == pytest.approx(0.125)
    assert values["Xmp.pixelperfect.ModelVersion"] == "pp-1.0"
    assert values["Xmp.pixelperfect.AnalyzedAt"] == ANALYZED_AT
    assert values["Xmp.pixelperfect.ReviewedBy"] == "ann"
    assert values["Xmp.lr.hierarchicalSubject"] == "PixelPerfect|Poor|Luminance/Contrast"
    assert values["Xmp.dc.subject"] == "PixelPerfect, Poor, Luminance/Contrast"
    raw_packet = subprocess.run(["exiv2", "-pX", str(image)], capture_output=True, text=True).stdout
    assert "xmlns:pixelperfect='http://ns.pixelperfect.dev/1.0/'" in raw_packet
    assert "Xmp.pixelperfect.ReviewReason" not in values


@needs_exiftool
@needs_exiv2
def test_review_reason_reads_back_with_exiv2(tmp_path, writer):
    image = make_image(tmp_path / "IMG_0003.jpg")
    writer.write_verdict(image, verdict="poor", defect="other", quality=0.5, model_version="pp-1.0",
                         analyzed_at=ANALYZED_AT, reviewed_by="ann", reason="duplicate")  # fmt: skip
    values = exiv2_values(image)
    assert values["Xmp.pixelperfect.ReviewReason"] == "Duplicate"
    assert values["Xmp.pixelperfect.Defect"] == "Other"
    assert values["Xmp.lr.hierarchicalSubject"] == "PixelPerfect|Poor|Other, PixelPerfect|Poor|Other|Duplicate"
    assert values["Xmp.dc.subject"] == "PixelPerfect, Poor, Other, Duplicate"


@needs_exiftool
def test_rewrite_replaces_our_keywords_and_keeps_the_users(tmp_path, writer):
    image = make_image(tmp_path / "a.jpg")
    subprocess.run(
        [
            "exiftool",
            "-overwrite_original",
            "-XMP-lr:HierarchicalSubject+=Places|Paris",
            "-XMP-dc:Subject+=Places",
            "-XMP-dc:Subject+=Paris",
            "-XMP-dc:Subject+=Poor",
            "-XMP-xmp:Rating=4",
            "-XMP-xmp:Label=Blue",
            str(image),
        ],
        check=True,
        capture_output=True,
    )
    write_poor_blur(writer, image)
    write_poor_blur(writer, image)  # repeated (a crash between tags and row): no duplicates
    write_good(writer, image)
    read = writer.read_verdict(image)
    assert read["Verdict"] == "Good" and read["Defect"] is None
    assert sorted(read["keywords"]) == ["PixelPerfect|Good", "Places|Paris"]
    assert sorted(read["subject"]) == ["Good", "Paris", "PixelPerfect", "Places"]
    assert (read["Rating"], read["Label"]) == ("4", "Blue")


@needs_exiftool
def test_review_reason_is_written_then_removed_and_the_users_duplicate_keywords_stay(tmp_path, writer):
    image = make_image(tmp_path / "a.jpg")
    subprocess.run(
        ["exiftool", "-overwrite_original", "-XMP-lr:HierarchicalSubject+=Duplicate",
         "-XMP-lr:HierarchicalSubject+=Review|Duplicate", "-XMP-dc:Subject+=Duplicate", "-XMP-dc:Subject+=Review",
         str(image)],
        check=True, capture_output=True,
    )  # fmt: skip
    duplicate = dict(verdict="poor", defect="other", quality=0.5, model_version="pp-1.0", analyzed_at=ANALYZED_AT)
    writer.write_verdict(image, **duplicate, reviewed_by="ann", reason="duplicate")
    writer.write_verdict(image, **duplicate, reviewed_by="ann", reason="duplicate")  # repeated: no duplicates
    tags = exiftool_json(image)  # without our config file
    assert tags["XMP-pixelperfect:ReviewReason"] == "Duplicate"
    assert sorted(as_list(tags["XMP-lr:HierarchicalSubject"])) == [
        "Duplicate", "PixelPerfect|Poor|Other", "PixelPerfect|Poor|Other|Duplicate", "Review|Duplicate",
    ]  # fmt: skip
    assert sorted(as_list(tags["XMP-dc:Subject"])) == ["Duplicate", "Other", "PixelPerfect", "Poor", "Review"]
    read = writer.read_verdict(image)
    assert (read["Verdict"], read["Defect"], read["ReviewReason"]) == ("Poor", "Other", "Duplicate")

    writer.write_verdict(image, **duplicate, reviewed_by="bob")  # still Other, no longer a duplicate
    read = writer.read_verdict(image)
    assert (read["Defect"], read["ReviewReason"]) == ("Other", None)
    assert sorted(read["keywords"]) == ["Duplicate", "PixelPerfect|Poor|Other", "Review|Duplicate"]

    writer.write_verdict(image, **duplicate, reason="duplicate")
    write_good(writer, image)
    read = writer.read_verdict(image)
    assert (read["Verdict"], read["ReviewReason"]) == ("Good", None)
    assert sorted(read["keywords"]) == ["Duplicate", "PixelPerfect|Good", "Review|Duplicate"]
    assert sorted(read["subject"]) == ["Duplicate", "Good", "PixelPerfect", "Review"]
    assert "XMP-pixelperfect:ReviewReason" not in exiftool_json(image)


@needs_exiftool
def test_poor_label_and_reject_rating_when_configured(tmp_path):
    image = make_image(tmp_path / "a.jpg")
    with MetadataWriter(MetadataSettings(poor_color_label="Red", poor_reject_rating=True)) as writer:
        write_poor_blur(writer, image)
        assert (writer.read_verdict(image)["Label"], writer.read_verdict(image)["Rating"]) == ("Red", "-1")
        write_good(writer, image)
        assert (writer.read_verdict(image)["Label"], writer.read_verdict(image)["Rating"]) == (None, None)


@needs_exiftool
@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.tif", "a.webp", "a.heic", "a.dng"])
def test_embedded_write_leaves_the_pixels_identical(tmp_path, writer, name):
    image = make_image(tmp_path / name)
    image.chmod(0o640)
    os.utime(image, (1_700_000_000, 1_700_000_000))
    before = decoded_pixels(image)
    assert write_poor_blur(writer, image) == image
    assert np.array_equal(decoded_pixels(image), before)
    assert image.stat().st_mtime == 1_700_000_000  # DAMs sort by it: kept
    assert writer.read_verdict(image)["Verdict"] == "Poor"
    assert image.stat().st_mode & 0o777 == 0o640
    assert not sidecar_file_name(image, "basename").exists()
    assert list(tmp_path.iterdir()) == [image]  # no backup copy, no temp file left


@needs_exiftool
@pytest.mark.parametrize("naming, sidecar_name", [("basename", "IMG_0001.xmp"), ("fullname", "IMG_0001.CR2.xmp")])
def test_raw_gets_a_sidecar_and_is_never_modified(tmp_path, naming, sidecar_name):
    raw = make_image(tmp_path / "IMG_0001.CR2")
    before = raw.read_bytes()
    with MetadataWriter(MetadataSettings(sidecar_name=naming)) as writer:
        written = write_poor_blur(writer, raw)
        assert written == tmp_path / sidecar_name
        assert writer.read_verdict(raw)["Verdict"] == "Poor"
    assert raw.read_bytes() == before
    assert exiftool_json(written)["XMP-pixelperfect:Defect"] == "Blur"


@needs_exiftool
def test_sidecar_mode_never_modifies_the_original(tmp_path):
    image = make_image(tmp_path / "a.jpg")
    before = image.read_bytes()
    with MetadataWriter(MetadataSettings(mode="sidecar", sidecar_name="fullname")) as writer:
        assert write_good(writer, image) == tmp_path / "a.jpg.xmp"
        assert writer.read_verdict(image)["keywords"] == ["PixelPerfect|Good"]
    assert image.read_bytes() == before


@needs_exiftool
def test_read_only_image_gets_a_sidecar(tmp_path, writer, caplog):
    image = make_image(tmp_path / "a.jpg")
    image.chmod(0o444)
    before = image.read_bytes()
    with caplog.at_level("INFO"):
        written = write_poor_blur(writer, image)
    assert written == tmp_path / "a.xmp"
    assert image.read_bytes() == before and image.stat().st_mode & 0o777 == 0o444
    assert "read-only" in caplog.text
    assert writer.read_verdict(image)["Verdict"] == "Poor"


@needs_exiftool
def test_failed_write_leaves_the_original_as_it_was(tmp_path, writer):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    before = broken.read_bytes()
    with pytest.raises(MetadataError) as raised:
        write_poor_blur(writer, broken)
    assert "\n" not in str(raised.value) and "broken.jpg" in str(raised.value)
    assert broken.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg"]
    # The process survives a failure: the next file is written.
    assert write_good(writer, make_image(tmp_path / "ok.jpg"))


@needs_exiftool
def test_vanished_file_is_a_metadata_error(tmp_path, writer):
    with pytest.raises(MetadataError, match="vanished"):
        write_good(writer, tmp_path / "gone.jpg")
    assert not (tmp_path / "gone.xmp").exists()


@needs_exiftool
def test_bad_verdict_is_refused(tmp_path, writer):
    with pytest.raises(MetadataError, match="unknown review reason"):
        write_poor_blur(writer, make_image(tmp_path / "r.jpg"), reason="Duplicate")
    with pytest.raises(MetadataError, match="good or poor"):
        writer.write_verdict(
            make_image(tmp_path / "a.jpg"),
            verdict="error",
            defect=None,
            quality=None,
            model_version="m",
            analyzed_at=ANALYZED_AT,
        )


@needs_exiftool
def test_stale_exiftool_temp_file_from_a_killed_write_does_not_block(tmp_path, writer):
    image = make_image(tmp_path / "a.jpg")
    stale = tmp_path / "a.jpg_exiftool_tmp"
    stale.write_bytes(b"half a copy")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    write_good(writer, image)
    assert writer.read_verdict(image)["Verdict"] == "Good"
    assert not stale.exists()


@needs_exiftool
def test_one_process_serves_many_threads(tmp_path, writer):
    images = [make_image(tmp_path / f"{i}.jpg", seed=i) for i in range(8)]
    errors = []

    def tag(image, verdict):
        try:
            if verdict == "poor":
                write_poor_blur(writer, image)
            else:
                write_good(writer, image)
        except Exception as error:  # collected: an assert in a thread would be lost
            errors.append(error)

    threads = [threading.Thread(target=tag, args=(im, "poor" if i % 2 else "good")) for i, im in enumerate(images)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [writer.read_verdict(im)["Verdict"] for im in images] == ["Good", "Poor"] * 4


@needs_exiftool
def test_dead_exiftool_process_is_restarted(tmp_path, writer):
    image = make_image(tmp_path / "a.jpg")
    write_good(writer, image)
    writer._exiftool._process.kill()
    writer._exiftool._process.wait()
    with pytest.warns(UserWarning, match="died"):  # pyexiftool notices the dead process
        write_poor_blur(writer, image)
    assert writer.read_verdict(image)["Verdict"] == "Poor"
