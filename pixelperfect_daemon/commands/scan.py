"""``pixelperfect scan``: analyse one backlog, then exit."""

from __future__ import annotations

from pathlib import Path

import click

from ..cluster_scan import ClusterError
from ..config import Settings
from ..daemon import STARTUP_ERRORS, scan_folder, summary_line
from .options import config_option


@click.command("scan")
@config_option
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Analyse and log; write no tags and no index rows.")
@click.option(
    "--retag", is_flag=True,
    help="Tag files analysed before again from the index, without analysing them (after a [metadata] change).",
)  # fmt: skip
@click.option(
    "--cluster",
    "address",
    metavar="ADDRESS",
    help="Run the analysis on the Dask scheduler at ADDRESS (tcp://host:8786); needs the cluster extra.",
)
def scan_command(settings: Settings, folder: Path, dry_run: bool, retag: bool, address: str | None) -> None:
    """Analyse the images under FOLDER once (tags + index, like the daemon), then exit.

    \b
    Example:
      pixelperfect scan --config config.toml /srv/photos/archive
      pixelperfect scan --retag /srv/photos/archive   # after switching a [metadata] flag on or off
      pixelperfect scan --config config.toml /srv/photos/archive --cluster tcp://scheduler:8786
    """
    try:
        stats = scan_folder(settings, folder, dry_run=dry_run, retag=retag, cluster=address)
    except (*STARTUP_ERRORS, ClusterError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{folder}: {summary_line(stats)}")
