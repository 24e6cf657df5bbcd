"""Options shared by several subcommands."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from ..config import ConfigError, Settings, load_settings


def config_option(command):
    """Add ``--config FILE`` (default ./config.toml) and pass the loaded ``settings`` instead."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Settings file (default: ./config.toml, or built-in defaults when it is absent).",
    )
    @functools.wraps(command)
    def wrapper(*args, config_path: Path | None, **kwargs):
        try:
            settings = load_settings(config_path)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        configure_logging(settings)
        return command(*args, settings=settings, **kwargs)

    return wrapper


def configure_logging(settings: Settings) -> None:
    """One line per event, with time, level and logger name; the path is in each message."""
    logging.basicConfig(
        level=getattr(logging, settings.logging.level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
