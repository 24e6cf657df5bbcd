"""The features model the engine runs: the frozen backbone in int8, when that keeps the validation figures.

    python -m pixelperfect_daemon.training.quantize --pristine DIR --mos-csv CSV --models models/

(what ``pixelperfect train`` does at export, for the heads already in ``--models``; it rewrites
features.tflite, the model version in labels.json and metrics.json, and records the gate's figures).

1. **Only the taps a head reads.** The last tap (the 1280-channel head convolution) is read by no
   head: it is not computed, and its columns are zeros, so the heads' input keeps its layout.
2. **int8 by post-training quantisation**: weights per channel, activations per tensor, calibrated
   on the views of every fourth training photo. The pooling (each channel's spatial mean and
   standard deviation) stays float: a per-tensor int8 scale over all channels would drown the
   small ones. So does every layer whose int8 output errs by more than rounding alone would
   (``FLOAT_ERROR_LIMIT``, measured by TensorFlow Lite's quantisation debugger).
3. **A per-feature correction** ``a * feature + b`` (float), fitted by least squares on training
   samples (clean and damaged) against the float model: quantisation shifts the pooled statistics
   (it adds noise, so standard deviations grow), and the heads were trained on float features.
4. **The gate**: the int8 model ships only when, on the validation split through the engine, SRCC,
   the clear Good/Poor balanced accuracy and the defect top-1 drop by at most 0.005 against the float
   model (``validation_outputs.py``); otherwise the float model (step 1 only) ships.

Inputs and outputs stay float32, so the engine runs either file unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..loading import load_image
from ..views import make_views
from . import dataset

log = logging.getLogger(__name__)

EVERY_SOURCE = 4  # every fourth training photo calibrates the quantisation and fits the correction
BATCH = 16
# The tap no head reads (train.py: STAGE1_SKIPPED_TAPS, STAGE2_SKIPPED_TAPS, QUALITY_SKIPPED_TAPS).
UNREAD_TAPS = ("head",)
# Graph nodes kept float (by the names of their layers): the pooling into features, the zeros, the
# correction; the converter names the graph's output node after the call, so it is matched too.
_FLOAT_NODE_MARKERS = (
    "_mean_std",
    "pooled_features",
    "_not_computed",
    "features_correction",
    "StatefulPartitionedCall",
)
# A layer's int8 error (root mean square, in units of its quantisation step) above which it stays
# float: rounding alone gives 1/sqrt(12), 0.29; the limit is the TensorFlow Lite debugger guide's.
FLOAT_ERROR_LIMIT = 0.7
DEBUG_EVERY = 10  # every tenth calibration view measures the layers' errors


# ---------------------------------------------------------------- the model
def runtime_extractor(extractor, correction: tuple[np.ndarray, np.ndarray] | None = None):
    """``extractor`` (``backbone.build_feature_extractor``) with a fixed-size input, the taps no head
    reads as zeros (not computed), and ``correction`` (a, b) applied to the features."""
    import keras
    from keras import layers, ops

    from .backbone import DEFAULT_TAPS, TFLITE_INPUT_SHAPE, feature_dim

    class NotComputed(layers.Layer):
        def __init__(self, width: int, **kwargs):
            super().__init__(**kwargs)
            self.width = width

        def call(self, x):
            return ops.zeros((ops.shape(x)[0], self.width), dtype=x.dtype)

    class Correction(layers.Layer):
        def __init__(self, scale: np.ndarray, offset: np.ndarray, **kwargs):
            super().__init__(**kwargs)
            self.scale, self.offset = np.asarray(scale, np.float32), np.asarray(offset, np.float32)

        def call(self, x):
            return x * self.scale + self.offset

    computed = [tap for tap in DEFAULT_TAPS if tap not in UNREAD_TAPS]
    parts = []
    for tap in DEFAULT_TAPS:
        if tap in UNREAD_TAPS:
            anchor = extractor.get_layer(f"{computed[-1]}_mean_std").output  # any tensor with the batch size
            parts.append(NotComputed(feature_dim((tap,)), name=f"{tap}_not_computed")(anchor))
        else:
            parts.append(extractor.get_layer(f"{tap}_mean_std").output)
    features = layers.Concatenate(name="pooled_features")(parts)
    if correction is not None:
        features = Correction(*correction, name="features_correction")(features)
    # Model names appear in the graph's node names: none may contain a float marker.
    inner = keras.Model(extractor.inputs, features, name="lite0_taps")
    inputs = keras.Input(batch_shape=TFLITE_INPUT_SHAPE, dtype="float32", name=extractor.inputs[0].name)
    return keras.Model(inputs, inner(inputs, training=False), name="lite0_runtime")


def int8_tflite(model, representative: Sequence[np.ndarray]) -> bytes:
    """int8 where a kernel exists, except the pooling, the correction and the layers int8 would
    distort (``layers_beyond_rounding``), which stay float; float input and output."""
    import tensorflow as tf

    def converter():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([view[None]] for view in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter

    def debugger(floats: list[str]):
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter(),
            debug_dataset=lambda: ([view[None]] for view in representative[::DEBUG_EVERY]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=floats),
        )

    with contextlib.redirect_stdout(io.StringIO()):
        plain = converter().convert()
        floats = [name for name in _node_names(plain) if any(marker in name for marker in _FLOAT_NODE_MARKERS)]
        measured = debugger(floats)
        measured.run()
        statistics = io.StringIO()
        measured.layer_statistics_dump(statistics)
        statistics.seek(0)
        distorted = layers_beyond_rounding(list(csv.DictReader(statistics)))
        labels = [name.split(";")[0].split("/")[-2] if "/" in name else name for name in distorted]
        log.info("int8: %d layers stay float (error beyond rounding): %s", len(distorted), ", ".join(labels))
        return debugger(floats + distorted).get_nondebug_quantized_model()


def layers_beyond_rounding(statistics: list[dict[str, str]]) -> list[str]:
    """The layers (graph node names) of a ``QuantizationDebugger.layer_statistics_dump`` whose int8
    output's root mean square error exceeds ``FLOAT_ERROR_LIMIT`` quantisation steps."""
    return [
        row["tensor_name"]
        for row in statistics
        if float(row["scale"]) > 0
        and np.sqrt(float(row["mean_squared_error"])) / float(row["scale"]) > FLOAT_ERROR_LIMIT
    ]


def _node_names(model: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    return [interpreter._get_tensor_details(op["outputs"][0], 0)["name"] for op in interpreter._get_ops_details()]


def run_features(model: bytes, views: np.ndarray) -> np.ndarray:
    """The features of ``views`` (N, 224, 224, 3) through a LiteRT features model, as the engine runs it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for start in range(0, len(views), BATCH):
        batch = np.ascontiguousarray(views[start : start + BATCH], dtype=np.float32)
        interpreter.resize_tensor_input(entry["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], batch)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(exit_["index"]).copy())
    return np.concatenate(outputs)


def fit_correction(reference: np.ndarray, quantised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, ``a * quantised + b`` closest to ``reference`` (least squares); the slope is kept
    within [0.5, 2] so a column the quantisation flattened is not blown up."""
    reference, quantised = reference.astype(np.float64), quantised.astype(np.float64)
    q_mean, r_mean = quantised.mean(axis=0), reference.mean(axis=0)
    q_var = ((quantised - q_mean) ** 2).mean(axis=0)
    r_var = ((reference - r_mean) ** 2).mean(axis=0)
    covariance = ((quantised - q_mean) * (reference - r_mean)).mean(axis=0)
    slope = np.clip(covariance / np.maximum(q_var, 1e-6 * r_var + 1e-12), 0.5, 2.0)
    slope = np.where(q_var > 0, slope, 1.0)  # constant columns (the unread tap's zeros): a shift only
    return slope.astype(np.float32), (r_mean - slope * q_mean).astype(np.float32)


# ---------------------------------------------------------------- the photos
def calibration_sources(sources: list[dataset.SourceImage], seed: int) -> list[dataset.SourceImage]:
    """Every EVERY_SOURCE-th training photo (by path; a photo used twice, authentic and as pristine,
    counts once, as its last entry: ``train.gather_sources`` lists it as pristine last)."""
    splits = dataset.assign_splits(sources, seed)
    unique = {s.path: s for s in sources if splits[s.path] == "train"}
    return [unique[path] for path in sorted(unique)][::EVERY_SOURCE]


def representative_views(sources: list[dataset.SourceImage]) -> list[np.ndarray]:
    """Both views of each photo as it is: what the quantisation ranges are calibrated on."""
    views = [make_views(load_image(source.path).pixels) for source in sources]
    return [view.astype(np.float32) for pair in views for view in pair]


def correction_views(sources: list[dataset.SourceImage], seed: int) -> np.ndarray:
    """Views of training samples, clean and damaged (as stage 1 and 2 learn from them)."""
    views = []
    for source in sources:
        if source.kind == "authentic":
            views.append(make_views(load_image(source.path).pixels))
        else:
            samples = dataset.make_samples(source, "train", seed, dataset.CLEAN_VARIANTS, 0)
            views.extend(samples.views)
    return np.stack(views).reshape(-1, *views[0].shape[1:])


# ---------------------------------------------------------------- the gate
def gate(models_dir: Path, candidates: dict[str, bytes], pristine: Path, mos_csv: Path) -> dict[str, dict]:
    """The validation figures of each candidate features model beside the heads of ``models_dir``."""
    from .validation_outputs import engine_outputs, figures

    labels = json.loads((models_dir / "labels.json").read_text())
    results = {}
    for name, model in candidates.items():
        with tempfile.TemporaryDirectory(prefix="pixelperfect-gate-") as folder:
            folder = Path(folder)
            for file in ("stage1.tflite", "stage2.tflite", "labels.json"):
                shutil.copyfile(models_dir / file, folder / file)
            (folder / "features.tflite").write_bytes(model)
            outputs = engine_outputs(pristine, mos_csv, folder)
        results[name] = figures(outputs, labels["poor_threshold"], labels["poor_below_quality"])
    return results


def ship_features_model(
    models_dir: Path,
    extractor,
    sources: list[dataset.SourceImage],
    seed: int,
    pristine: Path,
    mos_csv: Path,
    say: Callable[[str], None] = log.info,
) -> dict:
    """Write ``models_dir/features.tflite`` (int8 if it passes the gate, else float) for the heads
    already there; return what was decided, for metrics.json."""
    from .litert_export import tflite_bytes, write_model_file
    from .validation_outputs import GATE_MARGIN, figures_table, gate_failures

    plain = runtime_extractor(extractor)
    float_model = tflite_bytes(plain)
    chosen_sources = calibration_sources(sources, seed)
    say(f"int8 features model: calibrating on the views of {len(chosen_sources)} training photos")
    representative = representative_views(chosen_sources)
    uncorrected = int8_tflite(plain, representative)
    views = correction_views(chosen_sources, seed)
    say(f"fitting the per-feature correction on {len(views)} views of training samples")
    correction = fit_correction(run_features(float_model, views), run_features(uncorrected, views))
    int8_model = int8_tflite(runtime_extractor(extractor, correction), representative)
    say("measuring both on the validation split through the engine")
    measured = gate(models_dir, {"float": float_model, "int8": int8_model}, pristine, mos_csv)
    failures = gate_failures(measured["float"], measured["int8"])
    chosen = "float32" if failures else "int8"
    say(figures_table(measured["float"], measured["int8"]))
    say(f"shipping the {chosen} features model" + (f" (int8 lost: {'; '.join(failures)})" if failures else ""))
    write_model_file(models_dir / "features.tflite", int8_model if chosen == "int8" else float_model)
    return {
        "features_model": chosen,
        "features_model_gate": {
            "margin": GATE_MARGIN,
            "calibration_photos": len(chosen_sources),
            "correction_views": int(len(views)),
            "float": measured["float"],
            "int8": measured["int8"],
            "int8_failures": failures,
        },
    }


def model_version_of(models_dir: Path, verdict_rule: dict, quick: bool, day: str) -> str:
    """The version names the three model files and the verdict rule (the date says when it was made)."""
    digest = hashlib.sha256(json.dumps(verdict_rule, sort_keys=True).encode())
    for name in ("features.tflite", "stage1.tflite", "stage2.tflite"):
        digest.update((models_dir / name).read_bytes())
    return f"pp-lite0-{day}-{digest.hexdigest()[:8]}" + ("-quick" if quick else "")


def main(argv: list[str] | None = None) -> None:
    import datetime as dt

    from .backbone import build_feature_extractor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="folder with the trained heads (and labels.json)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (its split)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .train import TrainOptions, gather_sources

    # The same sources as training's (the well-scored authentic photos also as pristine ones).
    sources = gather_sources(TrainOptions(out=args.models, pristine=args.pristine, mos_csv=args.mos_csv))
    report = ship_features_model(
        args.models, build_feature_extractor(), sources, args.seed, args.pristine, args.mos_csv, print
    )
    labels = json.loads((args.models / "labels.json").read_text())
    rule = {key: labels[key] for key in ("poor_threshold", "poor_below_quality")}
    version = model_version_of(args.models, rule, False, f"{dt.date.today():%Y%m%d}")
    labels.update(model_version=version, features_model=report["features_model"])
    (args.models / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    metrics_file = args.models / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        command = f"python -m pixelperfect_daemon.training.quantize --pristine {args.pristine} --mos-csv {args.mos_csv} --models {args.models} --seed {args.seed}"
        metrics.update(model_version=version, features_model_command=command, **report)
        metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"model version {version}")


if __name__ == "__main__":
    main()
