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
from pixelperfect_daemon.training.train import TRAINING_PACKAGES, TrainOptions, gather_sources, report_stale_cache
from pixelperfect_daemon.verdict import POOR_BELOW_QUALITY, POOR_THRESHOLD
from pixelperfect_daemon.view_statistics import STATISTIC_NAMES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_models(tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    out = work / "models"
    # Features of another recipe, seed or photo, as an earlier run would have left them.
    (work / "cache" / "features").mkdir(parents=True)
    (work / "cache" / "features" / "other-recipe-0123456789abcdef0123.npz").write_bytes(b"stale")
    result = CliRunner().invoke(
        main, ["train", "--quick", "--out", str(out), "--work", str(work / "cache"), "--epochs", "3", "--prune-cache"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_quick_training_writes_every_artifact(quick_models):
    for name in (
        "features.tflite",
        "stage1.tflite",
        "stage2.tflite",
        "labels.json",
        "metrics.json",
        "confusion_matrix.png",
    ):
        assert (quick_models / name).stat().st_size > 0, name
    labels = json.loads((quick_models / "labels.json").read_text())
    assert labels["defects"] == list(DEFECTS) and labels["model_version"].endswith("-quick")
    assert labels["view_statistics"] == list(STATISTIC_NAMES)
    # The verdict rule travels with the models (the engine reads it from labels.json).
    assert (labels["poor_threshold"], labels["poor_below_quality"]) == (POOR_THRESHOLD, POOR_BELOW_QUALITY)
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


def test_prune_cache_deletes_only_features_the_run_does_not_use(quick_models):
    cache = quick_models.parent / "cache"
    features = cache / "features"
    assert not (features / "other-recipe-0123456789abcdef0123.npz").exists()  # pruned by the fixture's run
    in_use = sorted(features.glob("*.npz"))
    assert in_use  # the run's own features were kept

    stale = features / "another-recipe-0123456789abcdef0123.npz"
    stale.write_bytes(b"stale")
    options = TrainOptions(out=quick_models, work=cache, quick=True)
    assert report_stale_cache(options, gather_sources(options)) == [stale]
    assert stale.exists()  # reported only: deleting needs --prune-cache
    options = TrainOptions(out=quick_models, work=cache, quick=True, prune_cache=True)
    assert report_stale_cache(options, gather_sources(options)) == [stale]
    assert not stale.exists() and sorted(features.glob("*.npz")) == in_use
