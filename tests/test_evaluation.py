from pathlib import Path

import pytest

from pixelperfect_daemon.evaluation import evaluate_manifest, format_reports
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.result import AnalysisResult

HEADER = "file,set,group,mos,mos_std,expected_verdict,expected_defect,source,licence\n"


def result(path, verdict, quality, defect=None, top=None):
    scores = {key: 0.0 for key in DEFECTS}
    scores[top or defect or "other"] = 1.0
    return AnalysisResult(str(path), verdict, quality, defect if verdict == "poor" else None, scores, "test")


def test_metrics_per_set_from_a_manifest(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        HEADER
        + "a.png,clive,,80,,,,,\nb.png,clive,,30,,,,,\nc.png,clive,,70,,,,,\nd.png,clive,,20,,,,,\n"
        + "e.jpg,dev,,,,good,,,\nf.jpg,dev,,,,poor,blur,,\ng.jpg,dev,,,,poor,noise,,\n"
    )
    answers = {
        "a.png": result("a", "good", 0.8),
        "b.png": result("b", "poor", 0.3, "blur"),
        "c.png": result("c", "good", 0.6),
        "d.png": result("d", "good", 0.25),  # a miss
        "e.jpg": result("e", "good", 0.9),
        "f.jpg": result("f", "poor", 0.2, "blur"),
        "g.jpg": result("g", "good", 0.5, top="noise"),  # right defect, not flagged
    }
    reports = {r.name: r for r in evaluate_manifest(manifest, lambda p: answers[Path(p).name])}

    clive = reports["clive"]
    assert clive.metrics["srcc_quality_vs_mos"] == pytest.approx(1.0)
    assert clive.metrics["balanced_accuracy_clear_good_vs_poor"] == pytest.approx(0.75)
    dev = reports["dev"]
    assert dev.metrics["good_kept_good"] == 1.0
    assert dev.metrics["poor_flagged_poor"] == 0.5
    assert dev.metrics["defect_top1_accuracy"] == 1.0
    assert dev.metrics["flagged_poor_with_right_defect"] == 0.5
    assert "dev: 3 files, 0 errors" in format_reports(list(reports.values()))


def test_a_file_listed_with_conflicting_labels_is_left_out_and_reported(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(HEADER + "x.jpg,pairs,,,,good,,,\nx.jpg,pairs,,,,poor,blur,,\ny.jpg,pairs,,,,poor,blur,,\n")
    calls = []

    def analyze(path):
        calls.append(Path(path).name)
        return result(path, "poor", 0.2, "blur")

    (report,) = evaluate_manifest(manifest, analyze)
    assert calls == ["x.jpg", "y.jpg"]  # each file analysed once
    assert report.counts == {"expected_poor": 1}
    assert "conflicting labels" in report.warnings[0]


def test_errors_are_counted_not_scored(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(HEADER + "bad.jpg,s,,,,good,,,\n")
    (report,) = evaluate_manifest(manifest, lambda p: AnalysisResult.failed(str(p), "not an image", "test"))
    assert report.errors == 1 and "good_kept_good" not in report.metrics


def test_most_likely_defect_is_the_top_score_good_or_poor_and_none_for_errors(tmp_path):
    assert result(tmp_path / "a.jpg", "good", 0.8, top="noise").most_likely_defect == "noise"
    assert result(tmp_path / "b.jpg", "poor", 0.2, defect="blur", top="blur").most_likely_defect == "blur"
    assert AnalysisResult.failed("c.jpg", "not an image", "test").most_likely_defect is None
