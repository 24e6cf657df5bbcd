"""The features model the engine runs (``training/quantize.py``): the unread tap not computed, int8
with its pooling in float, the per-feature correction, and the shipped file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data as skimage_data
from skimage import transform as skimage_transform

from pixelperfect_daemon.training.backbone import (
    DEFAULT_TAPS,
    FEATURE_DIM,
    build_feature_extractor,
)
from pixelperfect_daemon.training.litert_export import tflite_bytes
from pixelperfect_daemon.training.quantize import (
    FLOAT_ERROR_LIMIT,
    UNREAD_TAPS,
    fit_correction,
    int8_tflite,
    layers_beyond_rounding,
    run_features,
    runtime_extractor,
)
from pixelperfect_daemon.training.train import (
    QUALITY_SKIPPED_TAPS,
    STAGE1_SKIPPED_TAPS,
    STAGE2_SKIPPED_TAPS,
    backbone_tap_columns,
)

READ_COLUMNS = np.setdiff1d(np.arange(FEATURE_DIM), backbone_tap_columns(UNREAD_TAPS, views=1))


def photos(size=(224, 224)) -> np.ndarray:
    names = ("chelsea", "coffee", "astronaut", "rocket")
    return np.stack(
        [
            skimage_transform.resize(getattr(skimage_data, n)(), size, anti_aliasing=True, preserve_range=True)
            for n in names
        ]
    ).astype(np.float32)


def test_the_unread_taps_are_those_no_head_reads():
    assert set(UNREAD_TAPS) == set(STAGE1_SKIPPED_TAPS) & set(STAGE2_SKIPPED_TAPS) & set(QUALITY_SKIPPED_TAPS)
    assert DEFAULT_TAPS[-len(UNREAD_TAPS) :] == UNREAD_TAPS  # the last ones: leaving them out saves their layers


def test_fit_correction_recovers_an_affine_distortion_and_shifts_constant_columns():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(4000, 6)) * [1, 2, 0.01, 5, 1, 1] + [0, 1, 0.02, -3, 4, 0]
    quantised = reference * [1.1, 0.9, 1.3, 1.0, 1.0, 0.0] + [0.2, -0.1, 0.001, 0.5, 0.0, 0.0]
    quantised[:, :5] += rng.normal(scale=0.01, size=(4000, 5)) * [1, 2, 0.01, 5, 1]
    slope, offset = fit_correction(reference, quantised)
    corrected = slope * quantised + offset
    error = np.abs(corrected - reference)[:, :5].mean(axis=0)
    assert np.all(error < 0.05 * reference[:, :5].std(axis=0))
    assert np.all(
        np.abs(quantised - reference)[:, :4].mean(axis=0) > 3 * error[:4]
    )  # the distorted ones were corrected
    assert slope[5] == 1.0 and np.isclose(offset[5], reference[:, 5].mean(), atol=1e-6)  # a constant column
    assert np.all((slope >= 0.5) & (slope <= 2.0))


def test_layers_whose_int8_error_exceeds_rounding_stay_float():
    def row(name, scale, rmse_in_steps):
        return {"tensor_name": name, "scale": str(scale), "mean_squared_error": str((rmse_in_steps * scale) ** 2)}

    statistics = [
        row("rounding only", 0.05, 12**-0.5),
        row("just under", 0.2, FLOAT_ERROR_LIMIT - 0.01),
        row("distorted", 0.2, FLOAT_ERROR_LIMIT + 0.01),
        row("stem", 0.02, 2.6),
        {"tensor_name": "no scale", "scale": "0", "mean_squared_error": "1"},
    ]
    assert layers_beyond_rounding(statistics) == ["distorted", "stem"]


@pytest.fixture(scope="module")
def random_extractor():
    """The backbone's architecture with random weights: the export's structure, without the download-free weights' cost."""
    return build_feature_extractor(weights=None)


def test_the_runtime_model_computes_only_the_read_taps_and_applies_the_correction(random_extractor):
    pixels = photos()
    expected = random_extractor(pixels, training=False).numpy()
    plain = run_features(tflite_bytes(runtime_extractor(random_extractor)), pixels)
    assert plain.shape == (4, FEATURE_DIM)
    np.testing.assert_allclose(plain[:, READ_COLUMNS], expected[:, READ_COLUMNS], rtol=1e-4, atol=1e-4)
    assert not plain[:, backbone_tap_columns(UNREAD_TAPS, views=1)].any()
    scale = np.linspace(0.5, 2.0, FEATURE_DIM).astype(np.float32)
    offset = np.linspace(-1.0, 1.0, FEATURE_DIM).astype(np.float32)
    corrected = run_features(tflite_bytes(runtime_extractor(random_extractor, (scale, offset))), pixels)
    np.testing.assert_allclose(corrected, plain * scale + offset, rtol=1e-5, atol=1e-5)


def test_int8_keeps_the_pooling_and_the_correction_in_float(random_extractor):
    from ai_edge_litert.interpreter import Interpreter

    pixels = photos()
    scale, offset = np.ones(FEATURE_DIM, np.float32), np.full(FEATURE_DIM, 0.125, np.float32)
    model = int8_tflite(runtime_extractor(random_extractor, (scale, offset)), list(pixels))
    interpreter = Interpreter(model_content=model)
    operations = interpreter._get_ops_details()
    output_types = {op["op_name"]: interpreter._get_tensor_details(op["outputs"][0], 0)["dtype"] for op in operations}
    assert output_types["CONV_2D"] == np.int8  # the backbone is quantised
    assert output_types["SQRT"] == output_types["MEAN"] == np.float32  # the pooling is not
    assert operations[-1]["op_name"] != "DEQUANTIZE"  # nor the correction after it
    features = run_features(model, pixels)
    assert np.all(features[:, backbone_tap_columns(UNREAD_TAPS, views=1)] == 0.125)  # exact: float
    reference = random_extractor(pixels, training=False).numpy()[:, READ_COLUMNS]
    assert np.corrcoef(features[:, READ_COLUMNS].ravel(), reference.ravel())[0, 1] > 0.99


def test_the_shipped_features_model_is_the_backbone_on_every_column_a_head_reads(trained_models_dir):
    """float32: the backbone's features exactly (those of the unread tap too, in files exported before
    it was left out); int8: near them, the unread tap's columns zero."""
    labels = json.loads((trained_models_dir / "labels.json").read_text())
    model = (trained_models_dir / "features.tflite").read_bytes()
    pixels = photos()
    features = run_features(model, pixels)
    assert features.shape == (4, FEATURE_DIM)
    reference = build_feature_extractor()(pixels, training=False).numpy()[:, READ_COLUMNS]
    error = np.abs(features[:, READ_COLUMNS] - reference) / (reference.std(axis=0) + 1e-3)
    if labels.get("features_model", "float32") == "int8":
        assert not features[:, backbone_tap_columns(UNREAD_TAPS, views=1)].any()
        assert len(model) < 5_000_000 and 0 < error.mean() < 0.3
    else:
        assert error.max() < 1e-3
