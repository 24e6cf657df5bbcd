"""An int8 features model by post-training quantisation, to be measured before it may replace
models/features.tflite (it ships only if the model card's measures drop by at most 0.005).

    python -m pixelperfect_daemon.training.quantize --photos ../shared/data --out /tmp/features-int8.tflite

The backbone is rebuilt from the same ImageNet weights as ``pixelperfect train`` uses (the float
features.tflite is this model exported unquantised). The representative set is the two views
(``views.make_views``, as the engine sees them) of every ``--every``-th photo under ``--photos``
in sorted order, so the same command gives the same file. Inputs and outputs stay float32, so the
engine runs the file unchanged; operations without an int8 kernel stay float.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np

from ..loading import ImageLoadError, load_image
from ..views import make_views
from .backbone import TFLITE_INPUT_SHAPE, build_feature_extractor

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def representative_views(photos: Path, every: int) -> list[np.ndarray]:
    """(1, 224, 224, 3) float32 views of every ``every``-th photo under ``photos``, in sorted order."""
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)[::every]
    batches = []
    for path in files:
        try:
            views = make_views(load_image(path).image)
        except ImageLoadError:
            continue
        batches.extend(view[None].astype(np.float32) for view in views)
    return batches


def int8_features_tflite(batches: list[np.ndarray]) -> bytes:
    import keras
    import tensorflow as tf

    extractor = build_feature_extractor()
    # A free batch dimension, as the float export: the engine runs both views in one call.
    inputs = keras.Input(batch_shape=TFLITE_INPUT_SHAPE, dtype="float32", name=extractor.inputs[0].name)
    fixed = keras.Model(inputs, extractor(inputs, training=False), name=extractor.name)
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([batch] for batch in batches)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="folder of photos for the representative set")
    parser.add_argument("--every", type=int, default=8, help="take every N-th photo in sorted order")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    batches = representative_views(args.photos, args.every)
    print(f"representative set: {len(batches)} views")
    args.out.write_bytes(int8_features_tflite(batches))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
