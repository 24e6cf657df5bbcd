"""``pixelperfect demo``: the main job on the embedded default, in one command."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from ..config import Settings
from .options import config_option

DEMO_PHOTOS = Path(__file__).resolve().parent.parent / "data" / "demo"


def _save(pixels: np.ndarray, path: Path, **options) -> None:
    Image.fromarray(pixels).save(path, **options)


def seed_demo_folder(folder: Path) -> list[Path]:
    """Fill an EMPTY folder with the demo photos and damaged copies of them; never touches a
    folder that already holds files."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return []
    written = []
    for photo in sorted(DEMO_PHOTOS.glob("*.jpg")):
        target = folder / photo.name
        shutil.copyfile(photo, target)
        written.append(target)
    chelsea = np.asarray(Image.open(DEMO_PHOTOS / "chelsea.jpg").convert("RGB"))
    coffee = np.asarray(Image.open(DEMO_PHOTOS / "coffee.jpg").convert("RGB"))
    astronaut = np.asarray(Image.open(DEMO_PHOTOS / "astronaut.jpg").convert("RGB"))
    rng = np.random.default_rng(0)
    damaged = {
        "chelsea_out_of_focus.jpg": cv2.GaussianBlur(chelsea, (0, 0), 4),
        "coffee_noisy.jpg": np.clip(coffee + rng.normal(0, 28, coffee.shape), 0, 255).astype(np.uint8),
        "astronaut_underexposed.jpg": (255 * (astronaut / 255.0) ** 3.0 * 0.35).astype(np.uint8),
    }
    for name, pixels in damaged.items():
        _save(pixels, folder / name, quality=92)
        written.append(folder / name)
    _save(coffee, folder / "coffee_overcompressed.jpg", quality=4)
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, "JPEG", quality=92)
    (folder / "astronaut_truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "not_a_photo.jpg").write_text("this is a text file with a .jpg name\n")
    written += [folder / "coffee_overcompressed.jpg", folder / "astronaut_truncated.jpg", folder / "not_a_photo.jpg"]
    return written


@click.command()
@click.option("--no-seed", is_flag=True, help="Do not put demo photos into an empty watch folder.")
@config_option
def demo(no_seed: bool, settings: Settings):
    """Run the daemon and the review UI together on the settings (by default the demo folder).

    An empty first watch folder is seeded with sample photos and damaged copies of them. Drop
    more photos into it and watch them appear in the UI. Ctrl+C stops both.

    \b
    Examples:
      pixelperfect demo
      pixelperfect demo --config my.toml --no-seed
    """
    ingest = settings.watch.folders[0]
    if not no_seed:
        seeded = seed_demo_folder(ingest)
        if seeded:
            click.echo(f"seeded {ingest} with {len(seeded)} demo files")
    config_args = ["--config", str(settings.source)] if settings.source else []
    command = [sys.executable, "-c", "from pixelperfect_daemon.cli import main; main()"]
    # Own sessions: Ctrl+C reaches only this process, which then stops each child once, cleanly
    # (a second signal would make the daemon drop the files in hand).
    daemon = subprocess.Popen([*command, "daemon", *config_args], start_new_session=True)
    ui = subprocess.Popen([*command, "ui", *config_args], start_new_session=True)
    click.echo(
        f"watching {', '.join(map(str, settings.watch.folders))}; review UI on http://{settings.ui.host}:{settings.ui.port}"
    )

    def stop(*_):
        for process in (ui, daemon):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while daemon.poll() is None and ui.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for process in (ui, daemon):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    stopped = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    if daemon.returncode not in stopped or ui.returncode not in stopped:
        raise click.ClickException(f"stopped: daemon exit {daemon.returncode}, ui exit {ui.returncode}")
