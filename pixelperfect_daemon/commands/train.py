"""``pixelperfect train``: build the two-stage models from photos."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from .options import config_option


@click.command()
@click.option(
    "--pristine",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of good photos to synthesise distortions from.",
)
@click.option(
    "--mos-csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Manifest CSV whose rows with a `mos` (0-100) are authentic photos for stage 1.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("models"),
    show_default=True,
    help="Where to write the models, labels.json and metrics.json.",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cache/pixelperfect-train"),
    show_default=True,
    help="Feature cache and checkpoints: a rerun resumes from here.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split, synthesis and training.")
@click.option("--epochs", type=int, default=None, help="Maximum epochs per head (early stopping decides).")
@click.option(
    "--quick", is_flag=True, help="A tiny run in minutes (a few photos; scikit-image samples when no --pristine)."
)
@click.option(
    "--prune-cache",
    is_flag=True,
    help="Delete the cached features in --work that this run does not use (other recipes, seeds or photos).",
)
@config_option
def train(pristine, mos_csv, out, work, seed, epochs, quick, prune_cache, settings):
    """Train the stage-1 (Good/Poor, quality) and stage-2 (defect) models.

    Needs the training extras (`pip install -e .[train]`). Reproducible for a seed; interrupted
    runs resume from the feature cache and checkpoints in --work.

    \b
    Examples:
      pixelperfect train --pristine ../shared/data/pristine --mos-csv ../shared/data/manifest.csv --out models/
      pixelperfect train --quick --out /tmp/quick-models
      pixelperfect train --pristine photos/ --out models/ --prune-cache   # and drop other recipes' features
    """
    try:
        from ..training.train import TrainOptions
        from ..training.train import train as run_training
    except ImportError as error:
        raise click.ClickException(f"training needs the train extras (pip install -e '.[train]'): {error}") from None
    options = TrainOptions(
        out=out,
        pristine=pristine,
        mos_csv=mos_csv,
        work=work,
        seed=seed,
        quick=quick,
        epochs=epochs,
        prune_cache=prune_cache,
    )
    try:
        metrics = run_training(
            options,
            progress_factory=lambda total: tqdm(
                total=total, unit="photo", desc="features", file=sys.stderr, disable=not sys.stderr.isatty()
            ),
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    summary = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    click.echo(json.dumps(summary, indent=2))
