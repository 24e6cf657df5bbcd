"""``pixelperfect index migrate``: move an index between a SQLite file and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import Settings
from ..index import ImageIndexError, migrate_index
from ..index_backends import describe, is_postgres_url
from .options import config_option


@click.group("index")
def index_group() -> None:
    """Work on the index database itself.

    \b
    Example:
      pixelperfect index migrate demo/pixelperfect.sqlite postgresql://pixelperfect@db/pixelperfect
    """


@index_group.command("migrate")
@click.argument("source")
@click.argument("target")
@config_option
def migrate_command(settings: Settings, source: str, target: str) -> None:
    """Copy every row of the index SOURCE (verdicts and reviews) into the empty index TARGET.

    \b
    Each is a SQLite file or a postgresql://user@host:port/db URL; the password comes from the
    variable named by [index] password_env (or PGPASSWORD). SOURCE is left untouched. Stop the
    daemons and UIs first, then point [index] database at TARGET.
    Examples:
      pixelperfect index migrate demo/pixelperfect.sqlite postgresql://pixelperfect@db/pixelperfect
      pixelperfect index migrate postgresql://pixelperfect@db/pixelperfect backup.sqlite
    """
    if not is_postgres_url(source) and not Path(source).is_file():
        raise click.ClickException(f"no such index: {source}")
    try:
        copied = migrate_index(source, target, password_env=settings.index.password_env)
    except ImageIndexError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"copied {copied} row(s) from {describe(source)} to {describe(target)}")
