"""The two trained heads on top of the frozen backbone features, and their calibration.

Stage 1 outputs two logits (poor, quality); stage 2 outputs seven defect logits. For export,
``calibrated_stage1``/``calibrated_stage2`` wrap a trained head so that it outputs probabilities
with the fitted temperature folded in: the runtime needs no extra arithmetic.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ..labels import DEFECTS

# Small and strongly regularised: a few hundred photos and 8 256 features overfit easily
# (the validation split, by source photo, is what these were chosen on).
HIDDEN_UNITS = 128
DROPOUT = 0.6
L2 = 1e-3
# Quality errors are small numbers (MSE on a 0-1 scale); this balances them against the
# classification loss.
QUALITY_LOSS_SCALE = 10.0


def _trunk(inputs, mean: np.ndarray, variance: np.ndarray, name: str):
    x = layers.Normalization(mean=mean, variance=np.maximum(variance, 1e-6), name=f"{name}_standardise")(inputs)
    x = layers.Dropout(DROPOUT, name=f"{name}_dropout_in")(x)
    x = layers.Dense(HIDDEN_UNITS, activation="relu", kernel_regularizer=keras.regularizers.l2(L2), name=f"{name}_hidden")(x)
    return layers.Dropout(DROPOUT, name=f"{name}_dropout_hidden")(x)


def build_stage1_head(feature_dim: int, mean: np.ndarray, variance: np.ndarray) -> keras.Model:
    """features -> [poor logit, quality logit]."""
    inputs = keras.Input((feature_dim,), name="features")
    x = _trunk(inputs, mean, variance, "stage1")
    logits = layers.Dense(2, name="stage1_logits")(x)
    return keras.Model(inputs, logits, name="stage1_head")


def build_stage2_head(feature_dim: int, mean: np.ndarray, variance: np.ndarray) -> keras.Model:
    """features -> seven defect logits (order: labels.DEFECTS)."""
    inputs = keras.Input((feature_dim,), name="features")
    x = _trunk(inputs, mean, variance, "stage2")
    logits = layers.Dense(len(DEFECTS), name="stage2_logits")(x)
    return keras.Model(inputs, logits, name="stage2_head")


def stage1_targets(p_poor: np.ndarray, quality: np.ndarray, quality_weight: np.ndarray) -> np.ndarray:
    """Pack the stage-1 targets as (N, 4): poor target, poor weight, quality, quality weight.

    A NaN poor target (a level-1 distortion) gets weight 0: stage 1 does not learn from it.
    """
    poor_weight = (~np.isnan(p_poor)).astype(np.float32)
    return np.stack([np.nan_to_num(p_poor), poor_weight, quality, quality_weight], axis=1).astype(np.float32)


def stage1_loss(y_true, y_pred):
    poor_target, poor_weight, quality_target, quality_weight = (y_true[:, i] for i in range(4))
    poor_logit, quality_logit = y_pred[:, 0], y_pred[:, 1]
    bce = ops.maximum(poor_logit, 0) - poor_logit * poor_target + ops.log1p(ops.exp(-ops.abs(poor_logit)))
    squared_error = ops.square(ops.sigmoid(quality_logit) - quality_target)
    return bce * poor_weight + QUALITY_LOSS_SCALE * squared_error * quality_weight


class _Temperature(layers.Layer):
    """Divides logits by a fixed temperature (fitted after training)."""

    def __init__(self, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, logits):
        return logits / self.temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def calibrated_stage1(head: keras.Model, temperature: float) -> keras.Model:
    """features -> (N, 2): [P(poor), quality in 0..1]."""
    logits = head.output
    p_poor = layers.Activation("sigmoid", name="p_poor")(_Temperature(temperature, name="poor_temperature")(logits[:, :1]))
    quality = layers.Activation("sigmoid", name="quality")(logits[:, 1:])
    return keras.Model(head.input, layers.Concatenate(name="stage1")([p_poor, quality]), name="stage1")


def calibrated_stage2(head: keras.Model, temperature: float) -> keras.Model:
    """features -> (N, 7) defect probabilities."""
    scaled = _Temperature(temperature, name="defect_temperature")(head.output)
    return keras.Model(head.input, layers.Softmax(name="defect_probabilities")(scaled), name="stage2")


def fit_temperature(logits: np.ndarray, labels: np.ndarray, binary: bool) -> float:
    """The temperature minimising validation negative log-likelihood (a 1-D grid search is
    enough for one parameter and cannot diverge)."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 200)):
        nll = _nll(logits / t, labels, binary)
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def _nll(logits: np.ndarray, labels: np.ndarray, binary: bool) -> float:
    if binary:
        p = 1 / (1 + np.exp(-logits))
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))
