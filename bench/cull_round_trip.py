"""The user's own rating and labels survive every cull flag, override and undo: a scripted round trip.

A folder of photos (JPEG, TIFF, DNG, PNG, HEIC, a RAW with a Lightroom sidecar, a read-only JPEG,
some without any user values) with the user's ratings, colour labels and pick labels is scanned
with every ``[metadata]`` flag on (real models, real ExifTool, real SQLite), then through the
review service the UI uses every verdict is overridden twice (to the other verdict and back) and
both overrides are undone; Poor images are finally reviewed Good. Checked at each step:

- wherever the verdict is Good, every user value is exactly as it was (absent stays absent);
- wherever it is Poor, the file remembers the user's values (``Previous*``) exactly;
- with every flag switched off and the folder re-tagged (``scan --retag``), every file holds
  exactly the user's values again;
- no decoded pixel changed (SHA-256 of the decoded RGB pixels).

Usage: .venv/bin/python bench/cull_round_trip.py [--workdir /tmp/pixelperfect-round-trip]
Prints one line per check and "round trip: OK" or the first difference found; exit status 1 on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pillow_heif  # noqa: E402

from pixelperfect_daemon.config import Settings  # noqa: E402
from pixelperfect_daemon.daemon import scan_folder  # noqa: E402
from pixelperfect_daemon.index import ImageIndex  # noqa: E402
from pixelperfect_daemon.metadata import MetadataWriter  # noqa: E402
from review_ui.service import ReviewService  # noqa: E402
from tests.fixtures_images import make_dng, make_heic, make_jpeg, make_png, make_raw_like, make_tiff  # noqa: E402

pillow_heif.register_heif_opener()

FIELDS = {"Rating": "XMP-xmp:Rating", "Label": "XMP-xmp:Label", "PickLabel": "XMP-digiKam:PickLabel"}
SIZE = (96, 64)
REVIEWER = "round-trip"


@dataclass(frozen=True)
class Photo:
    path: Path
    values_file: Path  # where its rating and labels live (the image, or its sidecar)
    users: dict[str, str | None]


def _set_values(path: Path, values: dict[str, str | None]) -> None:
    arguments = [f"-{FIELDS[name]}={value}" for name, value in values.items() if value is not None]
    if arguments:
        subprocess.run(["exiftool", "-q", "-overwrite_original", *arguments, str(path)], check=True)


def _write_sidecar(path: Path, values: dict[str, str | None]) -> None:
    attributes = " ".join(
        f'{FIELDS[name].replace("XMP-", "").replace(":", ":", 1)}="{value}"'
        for name, value in values.items() if value is not None
    )  # fmt: skip
    path.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'xmlns:digiKam="http://www.digikam.org/ns/1.0/" {attributes}/></rdf:RDF></x:xmpmeta>',
        encoding="utf-8",
    )


def make_library(folder: Path) -> list[Photo]:
    """Photos with the user's own values, in every kind of file the daemon tags."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    user_sets = [
        {"Rating": "4", "Label": "Green", "PickLabel": "3"},
        {"Rating": "1", "Label": "Blue", "PickLabel": None},
        {"Rating": None, "Label": "Yellow", "PickLabel": "2"},
        {"Rating": "0", "Label": None, "PickLabel": "0"},
        {"Rating": None, "Label": None, "PickLabel": None},
        {"Rating": "5", "Label": "Purple", "PickLabel": "1"},
    ]
    makers = [
        lambda p, v: make_jpeg(p.with_suffix(".jpg"), size=SIZE, variant=v),
        lambda p, v: make_tiff(p.with_suffix(".tif"), size=SIZE, variant=v),
        lambda p, v: make_dng(p.with_suffix(".dng"), size=SIZE, preview_size=None, variant=v),
        lambda p, v: make_png(p.with_suffix(".png"), size=SIZE, variant=v),
        lambda p, v: make_heic(p.with_suffix(".heic"), size=SIZE, variant=v),
    ]
    number = 0
    for make in makers:
        for users in user_sets[:3] if make is not makers[0] else user_sets:
            number += 1
            path = make(folder / f"IMG_{number:04d}", number)
            _set_values(path, users)
            photos.append(Photo(path, path, dict(users)))
    for users in user_sets[:2]:  # RAW with a Lightroom sidecar (user_sets[1]'s pick absent)
        number += 1
        raw = make_raw_like(folder / f"IMG_{number:04d}.CR2", ext=".CR2", preview_size=SIZE, variant=number)
        _write_sidecar(raw.with_suffix(".xmp"), users)
        photos.append(Photo(raw, raw.with_suffix(".xmp"), dict(users)))
    number += 1
    read_only = make_jpeg(folder / f"IMG_{number:04d}.jpg", size=SIZE, variant=number)
    _set_values(read_only, user_sets[0])
    read_only.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    # Read-only: the flags go into a sidecar that starts empty; its own values are the user's there.
    photos.append(Photo(read_only, read_only.with_suffix(".xmp"), dict.fromkeys(FIELDS)))
    return photos


def read_values(paths: list[Path]) -> dict[Path, dict[str, str | None]]:
    """Rating, Label, PickLabel and the remembered Previous* values of each file, as an independent
    ExifTool reads them (one ExifTool run for all: each start costs a good part of a second)."""
    names = [*FIELDS, *(f"Previous{name}" for name in FIELDS)]
    tags = [*(tag.split(":")[1] for tag in FIELDS.values()), *names[len(FIELDS) :]]
    values = {path: dict.fromkeys(names) for path in paths}
    existing = [path for path in paths if path.exists()]
    if not existing:
        return values
    requested = [
        *(f"-{tag}" for tag in FIELDS.values()),
        *(f"-XMP-pixelperfect:{name}" for name in names[len(FIELDS) :]),
    ]
    output = subprocess.run(
        ["exiftool", "-j", "-n", *requested, *map(str, existing)], capture_output=True, text=True, check=True
    ).stdout
    for found in json.loads(output, parse_int=str, parse_float=str):
        values[Path(found["SourceFile"])] = {
            name: None if found.get(tag) is None else str(found[tag]) for name, tag in zip(names, tags)
        }
    return values


def pixel_hash(path: Path) -> str:
    from pixelperfect_daemon.loading import load_image

    if path.suffix.lower() == ".cr2":
        return hashlib.sha256(path.read_bytes()).hexdigest()  # never written: its bytes are its pixels
    if path.suffix.lower() == ".dng":
        return hashlib.sha256(load_image(path).pixels.tobytes()).hexdigest()
    with Image.open(path) as image:
        return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


def _is_fill_in(name: str, value: str | None) -> bool:
    """What a Good image gets where the user set nothing: quality stars, digiKam's "accepted"."""
    return (name == "Rating" and value in ("1", "2", "3", "4", "5")) or (name == "PickLabel" and value == "3")


class RoundTrip:
    def __init__(self, folder: Path, index_path: Path, cache: Path):
        base = Settings()
        flags = dict(poor_color_label="Red", poor_reject_rating=True, pick_label=True, quality_stars=True,
                     touch_on_change=True)  # fmt: skip
        self.settings = dataclasses.replace(
            base,
            watch=dataclasses.replace(base.watch, folders=(folder,)),
            analysis=dataclasses.replace(base.analysis, workers=2),
            metadata=dataclasses.replace(base.metadata, **flags),
            index=dataclasses.replace(base.index, database=index_path),
            ui=dataclasses.replace(base.ui, thumbnail_cache=cache),
        )
        self.folder = folder
        self.failures: list[str] = []
        self.lines: list[str] = []

    def check(self, what: str, photos: list[Photo], verdicts: dict[Path, str]) -> None:
        """Good: the user's values exactly (fill-ins only where they had none); Poor: remembered exactly."""
        wrong = []
        read = read_values([photo.values_file for photo in photos])
        for photo in photos:
            found = read[photo.values_file]
            for name in FIELDS:
                users, now, remembered = photo.users[name], found[name], found[f"Previous{name}"]
                if verdicts[photo.path] == "good":
                    ok = now == users or (users in (None, "0") and _is_fill_in(name, now))
                else:  # the flag is set; the user's value is what the file remembers (or still there)
                    ok = now == users or remembered == users
                if not ok:
                    wrong.append(f"{photo.path.name} ({verdicts[photo.path]}) {name}: user {users!r}, "
                                 f"file {now!r}, remembered {remembered!r}")  # fmt: skip
        self.lines.append(f"{what}: {len(photos) - len({w.split(' ')[0] for w in wrong})}/{len(photos)} "
                          "files keep the user's values")  # fmt: skip
        self.failures += [f"{what}: {w}" for w in wrong]

    def run(self, photos: list[Photo], analyzer=None) -> bool:
        pixels = {photo.path: pixel_hash(photo.path) for photo in photos}
        stats = scan_folder(self.settings, self.folder, analyzer=analyzer, progress=False)
        self.lines.append(f"scan with every flag on: {dict(stats.outcomes)}")
        index = ImageIndex(self.settings.index.database)
        metadata = MetadataWriter(self.settings.metadata)
        service = ReviewService(self.settings, index=index, metadata=metadata)
        try:
            model = {photo.path: index.get(photo.path)["verdict"] for photo in photos}
            counts = {v: list(model.values()).count(v) for v in ("good", "poor")}
            self.lines.append(f"model verdicts: {counts['good']} Good, {counts['poor']} Poor")
            self.check("after the scan", photos, model)
            for original in ("good", "poor"):
                paths = [str(p.path) for p in photos if model[p.path] == original]
                if not paths:
                    continue
                other = "poor" if original == "good" else "good"
                service.override(paths, verdict=other, defect="blur" if other == "poor" else None, reviewer=REVIEWER)
                self.check(f"{original} overridden {other}", photos, {**model, **{Path(p): other for p in paths}})
                service.override(paths, verdict=original, defect="noise" if original == "poor" else None,
                                 reviewer=REVIEWER)  # fmt: skip
                self.check(f"{original} overridden back {original}", photos, model)
                service.undo(REVIEWER)
                self.check(f"{original}: second override undone", photos, {**model, **{Path(p): other for p in paths}})
                service.undo(REVIEWER)
                self.check(f"{original}: first override undone", photos, model)
            poor = [str(p.path) for p in photos if model[p.path] == "poor"]
            if poor:
                service.override(poor, verdict="good", defect=None, reviewer=REVIEWER)
            final = {photo.path: "good" for photo in photos}
            self.check("every image finally Good", photos, final)
            read = read_values([photo.values_file for photo in photos])
            exact = [p for p in photos if {n: read[p.values_file][n] for n in FIELDS} != p.users]
            self.lines.append(
                f"finally Good, exact user values (no fill-in compared): {len(photos) - len(exact)}"
                f"/{len(photos)} (the rest carry quality stars or 'accepted' where the user had none)"
            )
        finally:
            service.close()
            metadata.close()
            index.close()
        # Every flag off, the folder re-tagged: the user's values and nothing else.
        off = dataclasses.replace(self.settings.metadata, poor_color_label="", poor_reject_rating=False,
                                  pick_label=False, quality_stars=False)  # fmt: skip
        self.settings = dataclasses.replace(self.settings, metadata=off)
        stats = scan_folder(self.settings, self.folder, analyzer=analyzer, progress=False, retag=True)
        self.lines.append(f"flags off, re-tagged: {dict(stats.outcomes)}")
        read = read_values([photo.values_file for photo in photos])
        restored = [p for p in photos if {n: read[p.values_file][n] for n in FIELDS} != p.users]
        self.lines.append(
            f"flags off: {len(photos) - len(restored)}/{len(photos)} files hold exactly the user's values"
        )
        self.failures += [f"flags off: {p.path.name}: {read[p.values_file]} != {p.users}" for p in restored]
        changed = [p.path.name for p in photos if pixel_hash(p.path) != pixels[p.path]]
        self.lines.append(f"decoded pixels unchanged: {len(photos) - len(changed)}/{len(photos)}")
        self.failures += [f"pixels changed: {name}" for name in changed]
        return not self.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temp folder)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pixelperfect-round-trip-"))
    if args.workdir and workdir.exists():
        shutil.rmtree(workdir)
    photos = make_library(workdir / "photos")
    trip = RoundTrip(workdir / "photos", workdir / "index.sqlite", workdir / "cache")
    ok = trip.run(photos)
    print(f"{len(photos)} photos in {workdir / 'photos'}")
    for line in trip.lines:
        print(line)
    for failure in trip.failures:
        print("DIFFERENCE:", failure)
    print("round trip: OK" if ok else "round trip: FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
