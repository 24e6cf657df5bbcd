"""Helpers for the review-UI tests: real image files, a real index, a served app on a free port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from pixelperfect_daemon.common import file_hash
from pixelperfect_daemon.config import Settings, settings_from_dict
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.result import AnalysisResult

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def make_photo(path: Path, *, kind: str = "sharp", size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """A JPEG with real structure: sharp edges, or the same blurred, or with heavy noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = (np.sin(x / 9.0 + seed) * np.cos(y / 13.0) * 60 + 128).astype(np.float32)
    base[(x // 40 + y // 40) % 2 == 0] += 50  # hard checkerboard edges
    pixels = np.clip(np.stack([base, base * 0.9, base * 0.8], axis=-1), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if kind == "blurred":
        image = image.filter(ImageFilter.GaussianBlur(6))
    elif kind == "noisy":
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 40, (height, width, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=92)
    return path


def defect_scores(top: str | None) -> dict[str, float]:
    """Seven probabilities summing to 1, peaked at ``top``."""
    if top is None:
        return {key: round(1 / len(DEFECTS), 6) for key in DEFECTS}
    rest = 0.3 / (len(DEFECTS) - 1)
    return {key: (0.7 if key == top else rest) for key in DEFECTS}


def add_analysed(
    index, path: Path, *, verdict: str, defect: str | None = None, quality: float = 0.5,
    analyzed_at: str = "2024-05-01T10:00:00+00:00", model_version: str = "test-1",
) -> dict:  # fmt: skip
    """Record a real file in the index the way the daemon does, with a real AnalysisResult."""
    stat = Path(path).stat()
    result = AnalysisResult(
        path=str(path), verdict=verdict, quality=quality, defect=defect,
        defect_scores=defect_scores(defect), model_version=model_version,
    )  # fmt: skip
    with Image.open(path) as image:
        width, height = image.size
    return index.record_analysis(
        Path(path), blake3=file_hash(path), size=stat.st_size, mtime=stat.st_mtime,
        result=result, analyzed_at=analyzed_at, tagged_file=None, width=width, height=height,
    )  # fmt: skip


def make_settings(tmp_path: Path, *, users: dict[str, str] | None = None, host: str = "127.0.0.1",
                  port: int = 7860, page_size: int = 48) -> Settings:  # fmt: skip
    return settings_from_dict(
        {
            "watch": {"folders": [str(tmp_path / "watch")]},
            "index": {"database": str(tmp_path / "state" / "index.sqlite")},
            "ui": {
                "host": host,
                "port": port,
                "users": users or {},
                "page_size": page_size,
                "thumbnail_cache": str(tmp_path / "state" / "thumbnails"),
            },  # fmt: skip
        },
        base_dir=tmp_path,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def password_spec(password: str) -> str:
    """A ``[ui] users`` entry for ``password``: salted PBKDF2 at the fewest rounds accepted (fast tests)."""
    from review_ui.auth import MIN_PBKDF2_ITERATIONS, hash_password

    return hash_password(password, iterations=MIN_PBKDF2_ITERATIONS)


@contextlib.contextmanager
def served_app(settings: Settings, service, credentials: dict):
    """The real app on a free loopback port, launched exactly as ``pixelperfect ui`` does it."""
    from review_ui.app import launch_ui

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo, (_app, url, _share) = launch_ui(settings, service, credentials, server_port=free_port(),
                                          prevent_thread_lock=True)  # fmt: skip
    try:
        yield url.rstrip("/")
    finally:
        demo.close()
        time.sleep(0.1)  # let uvicorn release the port before the next test binds one


@contextlib.contextmanager
def chromium():
    """Headless Chromium from the system (never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


PASSWORD = "review-pass"


@dataclasses.dataclass
class ReviewSetup:
    """A watch folder of real JPEGs, their index rows, and the service over them."""

    settings: Settings
    index: object
    metadata: object
    service: object
    files: dict[str, Path]

    def close(self) -> None:
        self.service.close()
        self.metadata.close()
        self.index.close()


def review_setup(
    root: Path, *, users: dict[str, str] | None = None, page_size: int = 48, **settings_overrides
) -> ReviewSetup:
    """Five analysed photos: two Poor/Blur, one Poor/Noise, two Good."""
    from pixelperfect_daemon.index import ImageIndex
    from pixelperfect_daemon.metadata import MetadataWriter
    from review_ui.service import ReviewService

    settings = make_settings(root, users=users, page_size=page_size)
    if settings_overrides:
        settings = dataclasses.replace(settings, **settings_overrides)
    watch = root / "watch"
    index = ImageIndex(settings.index.database)
    plan = [
        ("blurry1.jpg", "blurred", "poor", "blur", 0.10),
        ("blurry2.jpg", "blurred", "poor", "blur", 0.20),
        ("noisy.jpg", "noisy", "poor", "noise", 0.30),
        ("sharp1.jpg", "sharp", "good", None, 0.90),
        ("sharp2.jpg", "sharp", "good", None, 0.80),
    ]
    files = {}
    for seed, (name, kind, verdict, defect, quality) in enumerate(plan):
        files[name] = make_photo(watch / name, kind=kind, seed=seed)
        add_analysed(index, files[name], verdict=verdict, defect=defect, quality=quality)
    metadata = MetadataWriter(settings.metadata)
    service = ReviewService(settings, index=index, metadata=metadata)
    return ReviewSetup(settings, index, metadata, service, files)
