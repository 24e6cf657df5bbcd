"""``pixelperfect eval``: the model card's metrics for a manifest."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click
from tqdm import tqdm

from ..engine import Analyzer, ModelsNotFoundError
from ..evaluation import evaluate_manifest, format_reports
from .options import config_option


@click.command("eval")
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns file, set, mos, expected_verdict, expected_defect (paths relative to it).",
)
@click.option("--set", "sets", multiple=True, help="Only these sets (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@config_option
def evaluate(manifest, sets, as_json, settings):
    """Print quality and defect metrics per set of a manifest, using the installed models.

    \b
    Examples:
      pixelperfect eval --manifest ../shared/data/manifest.csv
      pixelperfect eval --manifest ../shared/data/manifest.csv --set real_dev/noise_RNI6 --json
    """
    try:
        analyzer = Analyzer.from_settings(settings.analysis)
    except ModelsNotFoundError as error:
        raise click.ClickException(str(error)) from None
    with tqdm(unit="img", desc="eval", file=sys.stderr, disable=not sys.stderr.isatty()) as progress:
        reports = evaluate_manifest(manifest, analyzer.analyze_path, sets or None, progress.update)
    click.echo(f"model {analyzer.model_version}")
    click.echo(json.dumps([asdict(r) for r in reports], indent=2) if as_json else format_reports(reports))
