"""`pixelperfect train --quick` from a fresh clone: trains a tiny model on scikit-image's bundled
photos, exports it, and the engine and `pixelperfect eval` run on it."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelperfect_daemon.cli import main
from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.model.train import TRAINING_PACKAGES
from pixelperfect_daemon.view_statistics import STATISTIC_NAMES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_models(tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    out = work / "models"
    result = CliRunner().invoke(main, ["train", "--quick", "--out", str(out), "--work", str(work / "cache"), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_quick_training_writes_every_artifact(quick_models):
    for name in ("features.tflite", "stage1.tflite", "stage2.tflite", "labels.json", "metrics.json", "confusion_matrix.png"):
        assert (quick_models / name).stat().st_size > 0, name
    labels = json.loads((quick_models / "labels.json").read_text())
    assert labels["defects"] == list(DEFECTS) and labels["model_version"].endswith("-quick")
    assert labels["view_statistics"] == list(STATISTIC_NAMES)
    metrics = json.loads((quick_models / "metrics.json").read_text())
    assert 0 <= metrics["stage2_val_top1"] <= 1 and metrics["stage1_temperature"] > 0
    # Stage 2 is measured per sub-type: "<defect>/<sub-type>" for every defect class.
    measured_defects = {name.split("/")[0] for name in metrics["stage2_val_per_subtype_accuracy"]}
    assert measured_defects == set(DEFECTS)
    # Flagged Poor with the right defect needs the right defect: never above stage 2's top-1.
    assert 0 <= metrics["classic_flagged_with_right_defect"] <= metrics["stage2_val_top1_classic"]
    # The environment is recorded: retrained elsewhere, numbers can only be compared knowing it.
    assert set(metrics["packages"]) == set(TRAINING_PACKAGES) and metrics["packages"]["numpy"] == np.__version__


def test_engine_runs_the_quick_models(quick_models, tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(photo)
    result = Analyzer(quick_models).analyze_path(photo)
    assert result.verdict in ("good", "poor") and 0 <= result.quality <= 1
    assert sum(result.defect_scores.values()) == pytest.approx(1, abs=1e-4)


def test_eval_command_on_the_quick_models(quick_models, tmp_path):
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,set,mos,expected_verdict,expected_defect\ngrey.png,tiny,50,poor,other\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[analysis]\nmodels_dir = "{quick_models}"\n')
    result = CliRunner().invoke(main, ["eval", "--manifest", str(manifest), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "tiny: 1 files, 0 errors" in result.output and "defect_top1_accuracy" in result.output
