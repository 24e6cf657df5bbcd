"""Writing Keras models as LiteRT flatbuffers (float32), whole or not at all.

Apart from ``backbone.py`` because that module's source is part of the feature cache's key
(``dataset.code_version``): how a model is written out decides nothing a cached sample holds.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import keras

from .backbone import TFLITE_INPUT_SHAPE


def tflite_bytes(model: keras.Model, input_shape=TFLITE_INPUT_SHAPE) -> bytes:
    """Convert a one-input ``model`` to a float32 LiteRT flatbuffer with input ``input_shape``.

    The batch dimension may be None (resize the interpreter's input before allocating). Works for
    any such model, e.g. the heads on feature vectors with ``input_shape=(None, FEATURE_DIM)``.
    """
    import tensorflow as tf

    # Re-wrap with the requested input shape: converting the (None, None, None, 3) model directly
    # would leave LiteRT dynamic spatial shapes to resolve at run time. (A tf.function concrete
    # function is no shortcut: with Keras 3 variables its weights are not frozen in, outputs NaN.)
    # Keep the model's input name (e.g. "pixels"), which becomes the LiteRT input's name.
    name = model.inputs[0].name if getattr(model, "inputs", None) else "inputs"
    inputs = keras.Input(batch_shape=tuple(input_shape), dtype="float32", name=name)
    fixed = keras.Model(inputs, model(inputs, training=False), name=model.name)
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    # The converter goes through a temporary SavedModel and prints every captured variable.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def export_tflite(model: keras.Model, path: str | Path, input_shape=TFLITE_INPUT_SHAPE) -> Path:
    """Write ``model`` as a .tflite file (see ``tflite_bytes``) and return its path."""
    return write_model_file(path, tflite_bytes(model, input_shape))


def write_model_file(path: str | Path, model: bytes) -> Path:
    """Write a LiteRT flatbuffer to ``path`` whole or not at all, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    temporary.write_bytes(model)
    temporary.replace(path)  # never leave a half-written model where the engine would load it
    return path
