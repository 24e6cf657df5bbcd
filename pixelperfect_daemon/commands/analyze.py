"""``pixelperfect analyze``: analyse files and folders, print verdicts."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
from tqdm import tqdm

from ..adaptation import analyzer_for
from ..common import path_to_text, valid_text
from ..config import Settings
from ..engine import Analyzer, ModelsNotFoundError
from ..files import iter_image_files
from ..result import AnalysisResult
from .options import config_option


def analyze_files(analyzer: Analyzer, files: list[Path], workers: int) -> Iterator[AnalysisResult]:
    """Analyse ``files`` on ``workers`` threads, yielding results in input order."""
    if workers <= 1:
        yield from map(analyzer.analyze_path, files)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analyze") as pool:
        # map() keeps order; decode and LiteRT release the GIL, so threads use both cores.
        yield from pool.map(analyzer.analyze_path, files)


def printable(result: AnalysisResult) -> AnalysisResult:
    """``result`` with text that prints as valid UTF-8: the path as ``common.path_to_text`` writes it
    (``caf\\xe9.jpg`` for a name that is not UTF-8), an undecodable byte quoted in the error as ``\\xHH``."""
    error = None if result.error is None else valid_text(result.error)
    return dataclasses.replace(result, path=path_to_text(result.path), error=error)


def _human_line(result: AnalysisResult) -> str:
    if result.verdict == "error":
        return f"ERROR  {result.path}: {result.error}"
    verdict = "POOR " if result.verdict == "poor" else "GOOD "
    defect = f" {result.defect}" if result.defect else ""
    note = f" ({result.error})" if result.error else ""
    return f"{verdict}  quality {result.quality:.2f}{defect}  {result.path}{note}"


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (the documented contract).")
@click.option("--workers", type=int, default=None, help="Parallel workers (default: [analysis] workers).")
@config_option
def analyze(paths: tuple[Path, ...], as_json: bool, workers: int | None, settings: Settings):
    """Analyse image files and folders (recursively) and print a verdict for each.

    Exit status: 0 when every file was analysed, 1 when some were errors, 2 on bad usage.

    \b
    Examples:
      pixelperfect analyze photo.jpg
      pixelperfect analyze --json ~/ingest/ > verdicts.jsonl
    """
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    try:
        analyzer = analyzer_for(settings)
    except ModelsNotFoundError as error:
        raise click.ClickException(str(error)) from None
    files = list(iter_image_files(paths))
    errors = 0
    progress = tqdm(total=len(files), unit="img", file=sys.stderr, disable=not sys.stderr.isatty())
    with progress:
        for result in analyze_files(analyzer, files, workers or settings.analysis.workers):
            errors += result.verdict == "error"
            result = printable(result)
            click.echo(result.to_json() if as_json else _human_line(result))
            progress.update()
    sys.exit(1 if errors else 0)
