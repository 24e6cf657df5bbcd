"""The heads trained on top of the frozen backbone features, and their calibration.

* stage 1: the Poor logit is a weighted average of two kinds of classifier, three of each
  (trained from three seeds): one on the backbone features (all taps but the last, see
  train.STAGE1_SKIPPED_TAPS) and the measured statistics, one on the measured statistics alone.
  The second keeps more good photos Good and flags more damage than the first alone, and three
  seeds remove most of one seed's luck (EXPERIMENTS.md). A ridge regression gives the quality
  score: on a few hundred scored photos a closed-form linear fit ranks quality better than the
  classifier's hidden layer;
* stage 2: two kinds of classifier whose log-probabilities are averaged, three of each (trained
  from three seeds): one on the backbone features (the six lower taps, see
  train.STAGE2_SKIPPED_TAPS) and one on the measured view statistics (``view_statistics.py``).
  They err on different images (the backbone one on exposure and colour, the measured one on
  compression and transmission errors), so together they beat either (EXPERIMENTS.md). One
  classifier on both inputs does no better: the few statistics drown among the many features.

For export, ``calibrated_stage1``/``calibrated_stage2`` wrap the trained parts so that they output
probabilities with the fitted temperature folded in: the runtime needs no extra arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from ..labels import DEFECTS

# Small and strongly regularised: a few hundred photos and 8 256 features overfit easily
# (the validation split, by source photo, is what these were chosen on).
HIDDEN_UNITS = 128
DROPOUT = 0.6
L2 = 1e-3
# Stage 2 learns from three times as many samples as stage 1, so its backbone classifier is wider
# and less dropped out (EXPERIMENTS.md).
STAGE2_HIDDEN_UNITS = 256
STAGE2_DROPOUT = 0.5
# The stage-2 classifier on the 48 measured statistics: few inputs, so wider, deeper and less
# regularised (chosen with the line above, from (128, 128) with dropout 0.3).
MEASURED_HIDDEN_UNITS = (256, 256, 256)
MEASURED_DROPOUT = 0.2
MEASURED_L2 = 1e-4
# The measured classifiers' share in stage 2's averaged log-probabilities: an even split (other
# shares made no real difference; EXPERIMENTS.md).
MEASURED_WEIGHT = 0.5
# Each kind of stage-2 classifier is trained from this many seeds and their log-probabilities
# averaged: the average beats the luck of any one seed (EXPERIMENTS.md).
STAGE2_SEEDS = 3
# The measured classifiers' share in stage 1's averaged Poor logit: alone they are the weaker, and
# at an even split stage 1 flagged fewer clearly poor photos (EXPERIMENTS.md, "A second kind of
# stage-1 classifier").
STAGE1_MEASURED_WEIGHT = 0.25
# Each kind of stage-1 classifier is trained from this many seeds (seed, seed + 1, ...) and their
# logits averaged: one seed's figures vary by 2-4 points on the small authentic validation set.
STAGE1_SEEDS = 3
# Ridge strengths tried for the quality regression (chosen by cross-validation, grouped by photo).
RIDGE_ALPHAS = (300.0, 1000.0, 3000.0, 10000.0, 30000.0)
RIDGE_FOLDS = 5
# How much P(poor) lowers the quality score (see blended_quality); chosen on the validation split.
QUALITY_POOR_PENALTY = 0.5


def _trunk(
    inputs, mean: np.ndarray, variance: np.ndarray, name: str, units: int = HIDDEN_UNITS, dropout: float = DROPOUT
):
    x = layers.Normalization(mean=mean, variance=np.maximum(variance, 1e-6), name=f"{name}_standardise")(inputs)
    x = layers.Dropout(dropout, name=f"{name}_dropout_in")(x)
    x = layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.l2(L2), name=f"{name}_hidden")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout_hidden")(x)


def build_stage1_head(
    feature_dim: int,
    mean: np.ndarray,
    variance: np.ndarray,
    name: str = "stage1_head",
    columns: np.ndarray | None = None,
) -> keras.Model:
    """features -> the Poor logit, from the feature ``columns`` (all when None)."""
    inputs = keras.Input((feature_dim,), name="features")
    if columns is not None:
        mean, variance = mean[columns], variance[columns]
    x = _trunk(_select(inputs, columns), mean, variance, "stage1")
    logit = layers.Dense(1, name="poor_logit")(x)
    return keras.Model(inputs, logit, name=name)


def _select(inputs, columns: np.ndarray | None):
    return inputs if columns is None else ops.take(inputs, np.asarray(columns, dtype=np.int32), axis=1)


def reading_columns(head: keras.Model, feature_dim: int, columns: np.ndarray) -> keras.Model:
    """``head``, trained on the feature ``columns`` only, as a model of the whole feature vector."""
    inputs = keras.Input((feature_dim,), name="features")
    return keras.Model(inputs, head(_select(inputs, columns)), name=head.name)


def build_stage2_backbone_head(
    feature_dim: int,
    mean: np.ndarray,
    variance: np.ndarray,
    statistics_dim: int,
    name: str = "stage2_backbone_head",
    columns: np.ndarray | None = None,
) -> keras.Model:
    """features -> seven defect logits (order: labels.DEFECTS), from the backbone ``columns``
    (all backbone columns, the first ``feature_dim - statistics_dim``, when None)."""
    inputs = keras.Input((feature_dim,), name="features")
    if columns is None:
        backbone_columns = feature_dim - statistics_dim
        selected, mean, variance = inputs[:, :backbone_columns], mean[:backbone_columns], variance[:backbone_columns]
    else:
        selected, mean, variance = _select(inputs, columns), mean[columns], variance[columns]
    x = _trunk(selected, mean, variance, "stage2_backbone", units=STAGE2_HIDDEN_UNITS, dropout=STAGE2_DROPOUT)
    logits = layers.Dense(len(DEFECTS), name="stage2_backbone_logits")(x)
    return keras.Model(inputs, logits, name=name)


def _measured_trunk(inputs, mean: np.ndarray, variance: np.ndarray, statistics_dim: int, name: str):
    """The hidden layers of a classifier on the last ``statistics_dim`` columns (the view statistics)."""
    first = inputs.shape[1] - statistics_dim
    x = layers.Normalization(
        mean=mean[first:], variance=np.maximum(variance[first:], 1e-6), name=f"{name}_standardise"
    )(inputs[:, first:])
    for i, units in enumerate(MEASURED_HIDDEN_UNITS):
        x = layers.Dense(
            units, activation="relu", kernel_regularizer=keras.regularizers.l2(MEASURED_L2), name=f"{name}_hidden{i}"
        )(x)
        x = layers.Dropout(MEASURED_DROPOUT, name=f"{name}_dropout{i}")(x)
    return x


def build_stage1_measured_head(
    feature_dim: int, mean: np.ndarray, variance: np.ndarray, statistics_dim: int, name: str = "stage1_measured_head"
) -> keras.Model:
    """features -> the Poor logit, from the last ``statistics_dim`` columns (the view statistics)."""
    inputs = keras.Input((feature_dim,), name="features")
    x = _measured_trunk(inputs, mean, variance, statistics_dim, "stage1_measured")
    return keras.Model(inputs, layers.Dense(1, name="stage1_measured_logit")(x), name=name)


def combine_stage1(heads: list[keras.Model], measured_heads: list[keras.Model]) -> keras.Model:
    """features -> the Poor logit: ``heads``' mean logit and ``measured_heads``' mean logit,
    weighted by STAGE1_MEASURED_WEIGHT."""
    inputs = keras.Input(heads[0].input.shape[1:], name="features")

    def mean_logit(models):
        return sum(model(inputs) for model in models) / len(models)

    logit = (1 - STAGE1_MEASURED_WEIGHT) * mean_logit(heads) + STAGE1_MEASURED_WEIGHT * mean_logit(measured_heads)
    return keras.Model(inputs, logit, name="stage1_averaged")


def build_stage2_measured_head(
    feature_dim: int, mean: np.ndarray, variance: np.ndarray, statistics_dim: int, name: str = "stage2_measured_head"
) -> keras.Model:
    """features -> seven defect logits, from the last ``statistics_dim`` columns (the view statistics)."""
    inputs = keras.Input((feature_dim,), name="features")
    x = _measured_trunk(inputs, mean, variance, statistics_dim, "stage2_measured")
    logits = layers.Dense(len(DEFECTS), name="stage2_measured_logits")(x)
    return keras.Model(inputs, logits, name=name)


def combine_stage2(backbone_heads: list[keras.Model], measured_heads: list[keras.Model]) -> keras.Model:
    """features -> seven defect logits: ``backbone_heads``' mean log-probabilities and
    ``measured_heads``', weighted by MEASURED_WEIGHT."""
    inputs = keras.Input(backbone_heads[0].input.shape[1:], name="features")

    def mean_log_probabilities(models):
        return sum(ops.log_softmax(model(inputs), axis=-1) for model in models) / len(models)

    logits = (1 - MEASURED_WEIGHT) * mean_log_probabilities(backbone_heads) + MEASURED_WEIGHT * mean_log_probabilities(
        measured_heads
    )
    return keras.Model(inputs, logits, name="stage2_head")


@dataclass(frozen=True)
class RidgeQuality:
    """quality = ((features - mean) / scale) . weights + bias, fitted to MOS / 100."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float
    columns: np.ndarray | None = None  # the feature columns read (all when None)

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = features if self.columns is None else select_columns(features, self.columns)
        return ((features - self.mean) / self.scale) @ self.weights + self.bias


def _ridge_solve(z: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights of ridge regression on centred targets, in the dual form (few rows, many columns)."""
    dual = np.linalg.solve(z @ z.T + alpha * np.eye(len(z)), y - y.mean())
    return z.T @ dual


def select_columns(features: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``features[:, columns]`` in C order. Fancy indexing returns a Fortran-ordered array, whose
    column means and variances round differently in the last bits; the standardising layers bake
    those in, and training then drifts from the run on the full array."""
    return np.ascontiguousarray(features[:, columns])


def fit_ridge_quality(
    features: np.ndarray,
    quality: np.ndarray,
    groups: np.ndarray,
    columns: np.ndarray | None = None,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
) -> RidgeQuality:
    """Ridge regression with its strength chosen by cross-validated Spearman correlation; folds
    are by ``groups`` (the source photo), so a photo and its mirror image never straddle folds."""
    from ..metrics import srcc

    x = (features if columns is None else select_columns(features, columns)).astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    fold_of = np.unique(groups, return_inverse=True)[1] % RIDGE_FOLDS
    best_alpha, best_score = alphas[0], -np.inf
    for alpha in alphas:
        predicted = np.empty(len(z))
        for fold in range(RIDGE_FOLDS):
            held_out = fold_of == fold
            weights = _ridge_solve(z[~held_out], quality[~held_out], alpha)
            predicted[held_out] = z[held_out] @ weights + quality[~held_out].mean()
        score = srcc(predicted, quality)
        if score > best_score:
            best_alpha, best_score = alpha, score
    weights = _ridge_solve(z, quality, best_alpha)
    return RidgeQuality(
        mean=mean, scale=scale, weights=weights, bias=float(quality.mean()), alpha=best_alpha, columns=columns
    )


class _Temperature(layers.Layer):
    """Divides logits by a fixed temperature (fitted after training)."""

    def __init__(self, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, logits):
        return logits / self.temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def blended_quality(ridge_quality, p_poor):
    """The quality score: the ridge regression's opinion-score estimate, lowered by P(poor).

    Fitted to crowd opinions alone, the regression forgives synthetic damage; scaling by
    (1 - QUALITY_POOR_PENALTY * P(poor)) keeps its ranking of authentic photos and ranks synthetic
    damage by level far better (EXPERIMENTS.md)."""
    return ops.clip(ridge_quality, 0.0, 1.0) * (1.0 - QUALITY_POOR_PENALTY * p_poor)


def calibrated_stage1(head: keras.Model, temperature: float, ridge: RidgeQuality) -> keras.Model:
    """features -> (N, 2): [P(poor), quality in 0..1]."""
    p_poor = layers.Activation("sigmoid", name="p_poor")(
        _Temperature(temperature, name="poor_temperature")(head.output)
    )
    standardised = layers.Normalization(mean=ridge.mean, variance=ridge.scale**2, name="quality_standardise")(
        _select(head.input, ridge.columns)
    )
    quality_layer = layers.Dense(1, name="quality_ridge")
    ridge_quality = quality_layer(standardised)
    quality_layer.set_weights([ridge.weights[:, None].astype(np.float32), np.array([ridge.bias], np.float32)])
    quality = _BlendedQuality(name="quality")([ridge_quality, p_poor])
    return keras.Model(head.input, layers.Concatenate(name="stage1")([p_poor, quality]), name="stage1")


class _BlendedQuality(layers.Layer):
    def call(self, inputs):
        return blended_quality(*inputs)


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
