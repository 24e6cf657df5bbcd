"""``pixelperfect learn``: adapt the verdicts to this library's reviewers (learning.py)."""

from __future__ import annotations

import click

from ..config import Settings
from ..engine import ModelsNotFoundError
from ..index import ImageIndexError
from ..learning import LearnError, learn_library, reset_library
from .options import config_option


@click.command("learn")
@config_option
@click.option("--dry-run", is_flag=True, help="Fit and print the before/after table; save nothing.")
@click.option("--reset", is_flag=True, help="Remove this library's adaptation: the shipped verdicts again.")
def learn_command(settings: Settings, dry_run: bool, reset: bool) -> None:
    """Learn this library's taste from its reviews, on top of the shipped models.

    Fits a small correction of the Good/Poor verdict to the reviewers' decisions in the index,
    checks it (cross-validated on the reviews, and on the shipped validation data) and saves it in
    [learn] folder only when it agrees with the reviewers more often and loses nothing that matters.
    analyze, scan, the daemon and the review UI then use it; their model version ends in +lib-<hash>.

    \b
    Examples:
      pixelperfect learn --config config.toml --dry-run
      pixelperfect learn --config config.toml
      pixelperfect learn --config config.toml --reset
    """
    if reset:
        if dry_run:
            raise click.UsageError("--reset and --dry-run do not go together")
        click.echo(reset_library(settings.learn_folder))
        return
    if not settings.index.database.is_file():
        raise click.ClickException(f"no index at {settings.index.database}: nothing has been reviewed yet")
    try:
        outcome = learn_library(settings, dry_run=dry_run)
    except (LearnError, ModelsNotFoundError, ImageIndexError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(outcome.reviews_line)
    click.echo(outcome.table)
    click.echo(outcome.reason if outcome.saved else f"not saved: {outcome.reason}")
