"""`pixelperfect analyze` and the engine, with the real trained models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelperfect_daemon.cli import main
from pixelperfect_daemon.engine import Analyzer, ModelOutputs, ModelsNotFoundError, is_monochrome
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.views import make_views
from tests import fixtures_images as fx

DEMO_PHOTOS = Path(__file__).resolve().parent.parent / "pixelperfect_daemon" / "data" / "demo"
CONTRACT_KEYS = {"path", "verdict", "quality", "defect", "defect_scores", "model_version", "error", "screen_noise"}


def check_contract(record: dict) -> None:
    assert set(record) == CONTRACT_KEYS
    assert record["verdict"] in ("good", "poor", "error")
    assert isinstance(record["model_version"], str) and record["model_version"]
    assert record["screen_noise"] is None or record["screen_noise"] >= 0
    if record["verdict"] == "error":
        assert record["quality"] is None and record["defect"] is None and record["defect_scores"] is None
        assert record["screen_noise"] is None
        assert isinstance(record["error"], str) and "\n" not in record["error"] and record["error"]
        return
    assert 0.0 <= record["quality"] <= 1.0
    assert set(record["defect_scores"]) == set(DEFECTS)
    assert sum(record["defect_scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert all(0.0 <= v <= 1.0 for v in record["defect_scores"].values())
    if record["verdict"] == "poor":
        assert record["defect"] in DEFECTS
    else:
        assert record["defect"] is None


def run_analyze(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, ["analyze", "--json", *args])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines, result.output


@pytest.fixture(scope="module")
def analyzer(trained_models_dir):
    return Analyzer(trained_models_dir)


def test_missing_models_give_a_clear_error(tmp_path):
    with pytest.raises(ModelsNotFoundError, match="pixelperfect train"):
        Analyzer(tmp_path)


def test_models_trained_on_other_view_statistics_are_refused(trained_models_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models)
    card = json.loads((models / "labels.json").read_text())
    card["view_statistics"] = card["view_statistics"][:-1]
    (models / "labels.json").write_text(json.dumps(card))
    with pytest.raises(ModelsNotFoundError, match="other view statistics"):
        Analyzer(models)


def test_mixed_folder_yields_one_contract_line_per_file(trained_models_dir, tmp_path):
    folder = tmp_path / "shoot"
    (folder / "sub").mkdir(parents=True)
    fx.make_jpeg(folder / "good.jpg")
    fx.make_png(folder / "sub" / "photo.png")
    fx.make_tiff(folder / "photo.tif")
    fx.make_webp(folder / "photo.webp")
    fx.make_heic(folder / "photo.heic")
    fx.make_raw_like(folder / "IMG_0001.CR2")
    fx.make_truncated_jpeg(folder / "truncated.jpg")
    fx.make_zero_byte(folder / "empty.jpg")
    fx.make_text_file(folder / "notes.jpg")
    fx.make_png_bomb_header(folder / "bomb.png")
    blurred = cv2.GaussianBlur(fx.photo((640, 480)), (0, 0), 5)
    Image.fromarray(blurred).save(folder / "blurred.jpg", quality=92)

    code, records, output = run_analyze(str(folder))
    names = [Path(r["path"]).name for r in records]
    assert sorted(names) == sorted(p.name for p in folder.rglob("*") if p.is_file()), output
    for record in records:
        check_contract(record)
    by_name = {Path(r["path"]).name: r for r in records}
    assert code == 1  # some files were errors
    assert {n for n, r in by_name.items() if r["verdict"] == "error"} == {"empty.jpg", "notes.jpg", "bomb.png"}
    assert by_name["truncated.jpg"]["verdict"] == "poor"
    assert by_name["truncated.jpg"]["defect"] == "transmission_errors" and by_name["truncated.jpg"]["error"]
    assert "50000" in by_name["bomb.png"]["error"]
    assert "Traceback" not in output


def test_exit_status_zero_when_all_analysed_and_two_on_bad_usage(trained_models_dir, tmp_path):
    fx.make_jpeg(tmp_path / "a.jpg")
    code, records, _ = run_analyze(str(tmp_path / "a.jpg"))
    assert code == 0 and len(records) == 1
    code, _, output = run_analyze(str(tmp_path / "missing.jpg"))
    assert code == 2 and "no such file" in output


def test_human_output_without_json(trained_models_dir, tmp_path):
    fx.make_zero_byte(tmp_path / "empty.jpg")
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "empty.jpg")])
    assert result.exit_code == 1 and result.stdout.startswith("ERROR") and "empty.jpg" in result.stdout


def test_monochrome_views_are_recognised_whatever_the_storage(demo_photo):
    grey = cv2.cvtColor(demo_photo, cv2.COLOR_RGB2GRAY)
    assert is_monochrome(make_views(np.repeat(grey[:, :, None], 3, axis=2)))
    sepia = np.stack([grey, (grey * 0.85).astype(np.uint8), (grey * 0.6).astype(np.uint8)], axis=2)
    assert not is_monochrome(make_views(sepia))  # toned, not grey: it has a colour to get wrong
    assert not is_monochrome(make_views(demo_photo))


def test_a_black_and_white_photo_is_never_called_color_distortion(analyzer):
    outputs = ModelOutputs(
        p_poor=0.9, quality=0.2, defect_scores={k: (0.6 if k == "color_distortion" else 0.4 / 6) for k in DEFECTS}
    )
    colour = analyzer._result("a.jpg", outputs, None)
    grey = analyzer._result("a.jpg", outputs, None, monochrome=True)
    assert colour.defect == "color_distortion"
    assert grey.defect != "color_distortion" and grey.defect_scores["color_distortion"] == 0.0
    assert sum(grey.defect_scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_views_of_a_file_are_deterministic(analyzer, tmp_path):
    fx.make_jpeg(tmp_path / "a.jpg")
    assert analyzer.analyze_path(tmp_path / "a.jpg") == analyzer.analyze_path(tmp_path / "a.jpg")


# ---------------------------------------------------------------- behaviour of the real models
# Photos the models never saw in training (scikit-image samples shipped for the demo).


@pytest.fixture(scope="module")
def demo_photo():
    return np.asarray(Image.open(DEMO_PHOTOS / "chelsea.jpg").convert("RGB"))


def analyse_pixels(analyzer, tmp_path, pixels, name, **save):
    path = tmp_path / name
    Image.fromarray(pixels).save(path, **save)
    return analyzer.analyze_path(path)


def test_a_clean_photo_is_good(analyzer, tmp_path):
    for photo in sorted(DEMO_PHOTOS.glob("*.jpg")):
        shutil.copyfile(photo, tmp_path / photo.name)
        result = analyzer.analyze_path(tmp_path / photo.name)
        assert result.verdict == "good", (photo.name, result)


@pytest.mark.parametrize(
    "damage, defect",
    [
        (lambda p: cv2.GaussianBlur(p, (0, 0), 4), "blur"),
        (lambda p: np.clip(p + np.random.default_rng(0).normal(0, 30, p.shape), 0, 255).astype(np.uint8), "noise"),
        (lambda p: (255 * (p / 255.0) ** 3 * 0.3).astype(np.uint8), "luminance_contrast"),
    ],
    ids=["blur", "noise", "dark"],
)
def test_clearly_damaged_photos_are_poor_with_the_right_defect(analyzer, tmp_path, demo_photo, damage, defect):
    result = analyse_pixels(analyzer, tmp_path, damage(demo_photo), f"{defect}.png")
    assert (result.verdict, result.defect) == ("poor", defect), result
    assert result.quality < analyse_pixels(analyzer, tmp_path, demo_photo, "clean.png").quality


def test_heavy_jpeg_compression_is_found(analyzer, tmp_path, demo_photo):
    result = analyse_pixels(analyzer, tmp_path, demo_photo, "q3.jpg", quality=3)
    assert (result.verdict, result.defect) == ("poor", "compression"), result


def test_the_quality_regression_reads_no_content_tap(analyzer, demo_photo):
    """What a photo shows (the head and stage-7 taps) reaches the quality score only through
    P(poor): the shipped regression reads neither (train.QUALITY_SKIPPED_TAPS), but does read the
    lower taps."""
    from pixelperfect_daemon.engine import _run
    from pixelperfect_daemon.training.heads import QUALITY_POOR_PENALTY
    from pixelperfect_daemon.training.train import QUALITY_SKIPPED_TAPS, backbone_tap_columns
    from pixelperfect_daemon.views import VIEW_NAMES

    stage1 = analyzer._models()[1]
    features = analyzer.head_inputs_of(make_views(demo_photo)[None])

    def regression(inputs):  # quality = clip(ridge) * (1 - penalty * P(poor)), so the ridge part is:
        p_poor, quality = _run(stage1, inputs.astype(np.float32))[0]
        return quality / (1 - QUALITY_POOR_PENALTY * p_poor)

    def scaled(taps, factor=1.5):
        changed = features.copy()
        changed[:, backbone_tap_columns(taps, len(VIEW_NAMES))] *= factor
        return changed

    assert 0.05 < regression(features) < 0.95  # not clipped, so a change would show
    assert regression(scaled(QUALITY_SKIPPED_TAPS)) == pytest.approx(regression(features), abs=1e-4)
    assert abs(regression(scaled(("stage3",))) - regression(features)) > 1e-3


@pytest.mark.shared_data
def test_real_photos_end_to_end(trained_models_dir, shared_data):
    files = (
        sorted((shared_data / "real_dev" / "noise_RNI6").glob("*.png"))[:3]
        + sorted((shared_data / "clive_train").glob("*.png"))[:3]
    )
    code, records, output = run_analyze(*map(str, files))
    assert code == 0, output
    assert len(records) == len(files)
    for record in records:
        check_contract(record)


def test_a_low_quality_score_is_a_poor_verdict_whatever_p_poor_says(trained_models_dir):
    scores = {k: 1 / len(DEFECTS) for k in DEFECTS}
    analyzer = Analyzer(trained_models_dir, poor_threshold=0.5, poor_below_quality=0.35)
    assert (
        analyzer._result("a.jpg", ModelOutputs(p_poor=0.1, quality=0.3, defect_scores=scores), None).verdict == "poor"
    )
    assert (
        analyzer._result("a.jpg", ModelOutputs(p_poor=0.1, quality=0.4, defect_scores=scores), None).verdict == "good"
    )
    assert (
        analyzer._result("a.jpg", ModelOutputs(p_poor=0.6, quality=0.9, defect_scores=scores), None).verdict == "poor"
    )
    switched_off = Analyzer(trained_models_dir, poor_threshold=0.5, poor_below_quality=0.0)
    assert (
        switched_off._result("a.jpg", ModelOutputs(p_poor=0.1, quality=0.3, defect_scores=scores), None).verdict
        == "good"
    )


def test_the_quality_test_comes_from_the_model_card_and_is_off_for_models_without_one(trained_models_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models)
    card = json.loads((models / "labels.json").read_text())
    assert Analyzer(models).poor_below_quality == card["poor_below_quality"] > 0
    del card["poor_below_quality"]
    (models / "labels.json").write_text(json.dumps(card))
    assert Analyzer(models).poor_below_quality == 0.0


def test_noise_over_the_line_is_a_poor_verdict_for_noise(trained_models_dir):
    scores = {k: 1 / len(DEFECTS) for k in DEFECTS}
    blur_scores = {**{k: 0.0 for k in DEFECTS}, "blur": 1.0}
    analyzer = Analyzer(trained_models_dir, poor_above_noise=3.5)
    good = ModelOutputs(p_poor=0.1, quality=0.8, defect_scores=scores)
    blurred = ModelOutputs(p_poor=0.9, quality=0.2, defect_scores=blur_scores)

    def verdict(outputs, screen_noise, line_analyzer=analyzer):
        result = line_analyzer._result("a.jpg", outputs, None, screen_noise=screen_noise)
        return result.verdict, result.defect

    assert verdict(good, 3.5) == ("poor", "noise")
    assert analyzer._result("a.jpg", good, None, screen_noise=3.456).screen_noise == 3.46
    assert analyzer._result("a.jpg", good, None, screen_noise=float("nan")).screen_noise is None
    assert verdict(good, 3.4) == ("good", None)
    assert verdict(good, float("nan")) == ("good", None)
    assert verdict(blurred, 9.0) == ("poor", "blur")  # the models' own finding stands
    assert verdict(good, 9.0, Analyzer(trained_models_dir, poor_above_noise=0.0)) == ("good", None)


def test_moderate_white_noise_is_found_by_the_meter(analyzer, tmp_path, demo_photo):
    """White noise at PSNR 30 dB (sigma 8), which the models alone let through on this photo."""
    noisy = np.clip(
        np.round(demo_photo + np.random.default_rng(0).normal(0, 8, demo_photo.shape[:2])[:, :, None]), 0, 255
    )
    noisy = noisy.astype(np.uint8)
    models_alone = Analyzer(analyzer.models_dir, poor_above_noise=0.0)
    assert analyse_pixels(models_alone, tmp_path, noisy, "noisy.png").verdict == "good"
    result = analyse_pixels(analyzer, tmp_path, noisy, "noisy.png")
    assert (result.verdict, result.defect) == ("poor", "noise"), result
    assert analyse_pixels(analyzer, tmp_path, demo_photo, "clean.png").verdict == "good"
