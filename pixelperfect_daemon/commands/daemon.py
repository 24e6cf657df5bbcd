"""``pixelperfect daemon``: watch the folders until stopped."""

from __future__ import annotations

import click

from ..config import Settings
from ..daemon import STARTUP_ERRORS, run_daemon
from .options import config_option


@click.command("daemon")
@config_option
@click.option("--dry-run", is_flag=True, help="Analyse and log; write no tags and no index rows.")
def daemon_command(settings: Settings, dry_run: bool) -> None:
    """Watch the [watch] folders: tag every complete image's XMP and record it in the index.

    \b
    Runs until SIGTERM or Ctrl-C; files added while it was down are found at start.
    Example:
      pixelperfect daemon --config config.toml
    """
    try:
        run_daemon(settings, dry_run=dry_run)
    except STARTUP_ERRORS as error:
        raise click.ClickException(str(error)) from None
