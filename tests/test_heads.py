"""Stage 2's two heads each read their own columns, and their log-probabilities are averaged."""

import numpy as np
from keras import ops

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.model.heads import (
    MEASURED_WEIGHT,
    build_stage2_backbone_head,
    build_stage2_measured_head,
    calibrated_stage2,
    combine_stage2,
)

BACKBONE_DIM, STATISTICS_DIM = 12, 4
FEATURE_DIM = BACKBONE_DIM + STATISTICS_DIM


def heads():
    mean, variance = np.zeros(FEATURE_DIM), np.ones(FEATURE_DIM)
    return (
        build_stage2_backbone_head(FEATURE_DIM, mean, variance, STATISTICS_DIM),
        build_stage2_measured_head(FEATURE_DIM, mean, variance, STATISTICS_DIM),
    )


def features(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(5, FEATURE_DIM)).astype(np.float32)


def test_each_head_reads_only_its_own_columns():
    backbone_head, measured_head = heads()
    x = features()
    other_statistics, other_backbone = x.copy(), x.copy()
    other_statistics[:, BACKBONE_DIM:] += 5.0
    other_backbone[:, :BACKBONE_DIM] += 5.0

    np.testing.assert_allclose(backbone_head.predict(x, verbose=0), backbone_head.predict(other_statistics, verbose=0))
    np.testing.assert_allclose(measured_head.predict(x, verbose=0), measured_head.predict(other_backbone, verbose=0))
    assert not np.allclose(backbone_head.predict(x, verbose=0), backbone_head.predict(other_backbone, verbose=0))
    assert not np.allclose(measured_head.predict(x, verbose=0), measured_head.predict(other_statistics, verbose=0))


def test_stage2_averages_the_heads_log_probabilities():
    backbone_head, measured_head = heads()
    x = features(1)
    combined = combine_stage2(backbone_head, measured_head).predict(x, verbose=0)
    expected = (1 - MEASURED_WEIGHT) * ops.convert_to_numpy(
        ops.log_softmax(backbone_head.predict(x, verbose=0), axis=-1)
    ) + MEASURED_WEIGHT * ops.convert_to_numpy(ops.log_softmax(measured_head.predict(x, verbose=0), axis=-1))
    np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-5)

    probabilities = calibrated_stage2(combine_stage2(backbone_head, measured_head), 1.5).predict(x, verbose=0)
    assert probabilities.shape == (5, len(DEFECTS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
