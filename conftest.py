"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("PIXELPERFECT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MODELS_DIR = REPO_ROOT / "models"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real photos in ../shared/data; skips where a fresh clone has none."""
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained_models_dir() -> Path:
    """The committed models/ folder; these tests need the real trained models."""
    if not (MODELS_DIR / "stage1.tflite").is_file():
        pytest.skip("models/stage1.tflite is not built yet (run `pixelperfect train`)")
    return MODELS_DIR
