"""``pixelperfect eval``: the model card's metrics for any manifest, per set.

The manifest has the columns of ``../shared/data/manifest.csv``: ``file`` (relative to the
manifest), ``set``, ``mos`` (0-100, may be empty), ``expected_verdict`` and ``expected_defect``
(may be empty). Each file is analysed once, through the same engine the daemon uses.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metrics import balanced_accuracy, plcc, srcc
from .result import AnalysisResult

# "Clearly good" and "clearly poor" authentic photos, as the issue defines them.
MOS_CLEARLY_GOOD = 65.0
MOS_CLEARLY_POOR = 40.0


def clearly_good_and_poor(mos) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the clearly good and the clearly poor photos among these scores."""
    mos = np.asarray(mos, dtype=float)
    return mos >= MOS_CLEARLY_GOOD, mos <= MOS_CLEARLY_POOR


def clear_balanced_accuracy(mos, flagged) -> float:
    """The goal's balanced accuracy separating clearly good from clearly poor photos, where
    ``flagged`` holds each photo's Poor verdict; photos in between are left out."""
    good, poor = clearly_good_and_poor(mos)
    clear = good | poor
    return balanced_accuracy(poor[clear], np.asarray(flagged)[clear])


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    set: str
    mos: float | None
    expected_verdict: str | None
    expected_defect: str | None


@dataclass
class SetReport:
    name: str
    files: int = 0
    errors: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_manifest(manifest: Path) -> list[ManifestRow]:
    rows = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                ManifestRow(
                    path=manifest.parent / row["file"],
                    set=row.get("set") or "(none)",
                    mos=float(row["mos"]) if row.get("mos") else None,
                    expected_verdict=row.get("expected_verdict") or None,
                    expected_defect=row.get("expected_defect") or None,
                )
            )
    return rows


def _labelled_rows(rows: list[ManifestRow], report: SetReport) -> list[ManifestRow]:
    """Rows with an expected verdict; a file listed with conflicting labels is left out and reported."""
    labels = defaultdict(set)
    for row in rows:
        if row.expected_verdict:
            labels[row.path].add((row.expected_verdict, row.expected_defect))
    conflicting = {path for path, seen in labels.items() if len(seen) > 1}
    if conflicting:
        report.warnings.append(
            f"{len(conflicting)} file(s) listed with conflicting labels were left out of the verdict metrics "
            f"(e.g. {sorted(conflicting)[0].name})"
        )
    kept, seen_paths = [], set()
    for row in rows:
        if row.expected_verdict and row.path not in conflicting and row.path not in seen_paths:
            kept.append(row)
            seen_paths.add(row.path)
    return kept


def report_for_set(name: str, rows: list[ManifestRow], results: dict[Path, AnalysisResult]) -> SetReport:
    report = SetReport(name=name, files=len({r.path for r in rows}))
    report.errors = sum(results[p].verdict == "error" for p in {r.path for r in rows})
    ok = [r for r in rows if results[r.path].verdict != "error"]

    scored = [r for r in ok if r.mos is not None]
    if scored:
        quality = [results[r.path].quality for r in scored]
        mos = [r.mos for r in scored]
        report.metrics["srcc_quality_vs_mos"] = srcc(quality, mos)
        report.metrics["plcc_quality_vs_mos"] = plcc(quality, mos)
        clearly_good, clearly_poor = clearly_good_and_poor(mos)
        if (clearly_good | clearly_poor).any():
            flagged = [results[r.path].verdict == "poor" for r in scored]
            report.metrics["balanced_accuracy_clear_good_vs_poor"] = clear_balanced_accuracy(mos, flagged)
            report.counts["clearly_good"] = int(clearly_good.sum())
            report.counts["clearly_poor"] = int(clearly_poor.sum())

    labelled = _labelled_rows(ok, report)
    good = [r for r in labelled if r.expected_verdict == "good"]
    poor = [r for r in labelled if r.expected_verdict == "poor"]
    if good:
        report.metrics["good_kept_good"] = float(np.mean([results[r.path].verdict == "good" for r in good]))
        report.counts["expected_good"] = len(good)
    if poor:
        report.metrics["poor_flagged_poor"] = float(np.mean([results[r.path].verdict == "poor" for r in poor]))
        report.counts["expected_poor"] = len(poor)
        with_defect = [r for r in poor if r.expected_defect]
        if with_defect:
            top1 = [results[r.path].most_likely_defect == r.expected_defect for r in with_defect]
            flagged_right = [
                results[r.path].verdict == "poor" and results[r.path].defect == r.expected_defect for r in with_defect
            ]
            report.metrics["defect_top1_accuracy"] = float(np.mean(top1))
            report.metrics["flagged_poor_with_right_defect"] = float(np.mean(flagged_right))
    if good and poor:
        truth = [r.expected_verdict == "poor" for r in good + poor]
        predicted = [results[r.path].verdict == "poor" for r in good + poor]
        report.metrics["balanced_accuracy_verdict"] = balanced_accuracy(truth, predicted)
    return report


def evaluate_manifest(
    manifest: Path,
    analyze: Callable[[Path], AnalysisResult],
    sets: Iterable[str] | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> list[SetReport]:
    rows = read_manifest(manifest)
    if sets:
        wanted = set(sets)
        rows = [r for r in rows if r.set in wanted]
    results: dict[Path, AnalysisResult] = {}
    for path in dict.fromkeys(r.path for r in rows):  # each file once, in manifest order
        results[path] = analyze(path)
        progress(1)
    by_set = defaultdict(list)
    for row in rows:
        by_set[row.set].append(row)
    return [report_for_set(name, set_rows, results) for name, set_rows in by_set.items()]


def format_reports(reports: list[SetReport]) -> str:
    lines = []
    for report in reports:
        lines.append(f"{report.name}: {report.files} files, {report.errors} errors")
        for key, value in report.metrics.items():
            lines.append(f"  {key:40s} {value:.3f}")
        for key, value in report.counts.items():
            lines.append(f"  {key:40s} {value}")
        for warning in report.warnings:
            lines.append(f"  warning: {warning}")
    return "\n".join(lines)
