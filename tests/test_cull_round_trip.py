"""The scripted round trip (bench/cull_round_trip.py) as a test: real models, ExifTool, SQLite and the
review service; every flag on, every verdict overridden twice and undone, then every flag off."""

from __future__ import annotations

import shutil

import pytest

from bench.cull_round_trip import RoundTrip, make_library

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed"),
]


def test_user_values_survive_flags_overrides_and_undo(tmp_path):
    photos = make_library(tmp_path / "photos")
    trip = RoundTrip(tmp_path / "photos", tmp_path / "index.sqlite", tmp_path / "cache")
    ok = trip.run(photos)
    assert trip.failures == [] and ok, "\n".join(trip.lines + trip.failures)
    assert any("overridden" in line for line in trip.lines)
    assert trip.lines[-1] == f"decoded pixels unchanged: {len(photos)}/{len(photos)}"
