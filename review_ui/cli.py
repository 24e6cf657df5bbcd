"""``pixelperfect ui``: serve the review app on ``[ui] host``/``[ui] port``."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import click

from pixelperfect_daemon.commands.options import config_option
from pixelperfect_daemon.config import Settings

log = logging.getLogger(__name__)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # Gradio's launch() closes the server on it; then we close the rest


def prepare_gradio_environment(settings: Settings) -> None:
    """No phoning home, and Gradio's own upload/cache folder inside our cache, so that everything the
    server can hand out lives under the watch folders or ``[ui] thumbnail_cache``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(settings.ui.thumbnail_cache).resolve() / "gradio"))


def prompt_password_hash() -> str:
    """Ask for a password twice (hidden) and return its ``[ui] users`` value."""
    from .auth import AuthConfigError, hash_password

    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return hash_password(password)
    except AuthConfigError as error:
        raise click.ClickException(str(error)) from None


@click.command("hash-password")
def hash_password_command():
    """Prompt for a reviewer's password and print its salted [ui] users value (pbkdf2).

    \b
    Example, then paste the line into config.toml under [ui] users:
      pixelperfect hash-password               # alice = "pbkdf2:600000:..."
    """
    click.echo(prompt_password_hash())


@click.command("ui")
@click.option("--host", default=None, help="Override [ui] host (e.g. 0.0.0.0; needs [ui] users).")
@click.option("--port", type=int, default=None, help="Override [ui] port.")
@click.option(
    "--hash-password",
    "print_password_hash",
    is_flag=True,
    help="Same as `pixelperfect hash-password`: prompt for a password, print its [ui] users value, exit.",
)
@config_option
def ui_command(settings: Settings, host: str | None, port: int | None, print_password_hash: bool):
    """Review flagged images in a browser: filter, inspect, override (written to the index and XMP).

    \b
    Examples:
      pixelperfect ui --config config.toml
      pixelperfect hash-password               # for [ui] users: alice = "pbkdf2:..."
    """
    from .auth import AuthConfigError, check_serving_is_safe, load_credentials

    if print_password_hash:
        click.echo(prompt_password_hash())
        return
    if host is not None or port is not None:
        import dataclasses

        ui = dataclasses.replace(settings.ui, host=host or settings.ui.host, port=port or settings.ui.port)
        settings = dataclasses.replace(settings, ui=ui)
    try:
        credentials = load_credentials(settings.ui.users, source=settings.source)
        check_serving_is_safe(settings.ui.host, credentials)
    except AuthConfigError as error:
        raise click.ClickException(str(error)) from None

    prepare_gradio_environment(settings)
    # Gradio's own HTTP calls to itself are not events worth a log line.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Imported only now: Gradio takes seconds to import, the checks above must fail fast.
    from pixelperfect_daemon.index import ImageIndex, ImageIndexError
    from pixelperfect_daemon.metadata import MetadataWriter

    from .app import launch_ui
    from .service import ReviewService

    try:
        index = ImageIndex.from_settings(settings.index)
    except ImageIndexError as error:
        raise click.ClickException(str(error)) from None
    metadata = MetadataWriter(settings.metadata)
    service = ReviewService(settings, index=index, metadata=metadata)
    click.echo(f"PixelPerfect review UI on http://{settings.ui.host}:{settings.ui.port} (Ctrl+C stops it)")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # systemd's stop: shut down as cleanly as Ctrl+C
    try:
        launch_ui(settings, service, credentials)  # blocks until Ctrl+C
    except OSError as error:  # port in use, address not available
        raise click.ClickException(f"cannot serve on {settings.ui.host}:{settings.ui.port}: {error}") from None
    finally:
        service.close()
        metadata.close()
        index.close()
