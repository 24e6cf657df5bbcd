"""Each stage's two heads read their own columns, and their outputs are averaged."""

import numpy as np
import pytest
from keras import ops

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.training.heads import (
    MEASURED_WEIGHT,
    STAGE1_MEASURED_WEIGHT,
    build_stage1_head,
    build_stage1_measured_head,
    build_stage2_backbone_head,
    build_stage2_measured_head,
    calibrated_stage2,
    combine_stage1,
    combine_stage2,
)

# Slow lane: trains Keras heads (scripts/test.sh --fast leaves it out; CI runs it).
pytestmark = pytest.mark.slow

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
    mean, variance = np.zeros(FEATURE_DIM), np.ones(FEATURE_DIM)
    backbone_heads = [
        build_stage2_backbone_head(FEATURE_DIM, mean, variance, STATISTICS_DIM, name=f"b{i}") for i in range(2)
    ]
    measured_heads = [
        build_stage2_measured_head(FEATURE_DIM, mean, variance, STATISTICS_DIM, name=f"m{i}") for i in range(3)
    ]
    x = features(1)

    def mean_log_probabilities(models):
        return np.mean(
            [ops.convert_to_numpy(ops.log_softmax(m.predict(x, verbose=0), axis=-1)) for m in models], axis=0
        )

    combined = combine_stage2(backbone_heads, measured_heads).predict(x, verbose=0)
    expected = (1 - MEASURED_WEIGHT) * mean_log_probabilities(
        backbone_heads
    ) + MEASURED_WEIGHT * mean_log_probabilities(measured_heads)
    np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-5)

    probabilities = calibrated_stage2(combine_stage2(backbone_heads, measured_heads), 1.5).predict(x, verbose=0)
    assert probabilities.shape == (5, len(DEFECTS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_stage2_backbone_head_reads_only_its_columns():
    mean, variance = np.zeros(FEATURE_DIM), np.ones(FEATURE_DIM)
    columns = np.array([0, 3, 7])
    head = build_stage2_backbone_head(FEATURE_DIM, mean, variance, STATISTICS_DIM, columns=columns)
    x = features(2)
    elsewhere, inside = x.copy(), x.copy()
    elsewhere[:, np.setdiff1d(np.arange(FEATURE_DIM), columns)] += 5.0
    inside[:, columns] += 5.0

    np.testing.assert_allclose(head.predict(x, verbose=0), head.predict(elsewhere, verbose=0))
    assert not np.allclose(head.predict(x, verbose=0), head.predict(inside, verbose=0))


def test_head_input_columns_leave_out_the_named_statistics_of_every_view():
    from pixelperfect_daemon.training.train import head_input_columns
    from pixelperfect_daemon.view_statistics import STATISTIC_NAMES, STATISTICS_PER_VIEW

    backbone_dim = 10
    feature_dim = backbone_dim + 2 * STATISTICS_PER_VIEW
    left_out = ("chroma_row_streaks", "chroma_column_streaks")
    columns = head_input_columns(feature_dim, 2, without=left_out)

    assert len(columns) == feature_dim - 2 * len(left_out)
    assert list(columns[:backbone_dim]) == list(range(backbone_dim))
    statistic_names = [STATISTIC_NAMES[(c - backbone_dim) % STATISTICS_PER_VIEW] for c in columns[backbone_dim:]]
    assert not set(left_out) & set(statistic_names)
    assert statistic_names.count("flat_blocks") == 2


def test_selected_columns_are_c_ordered_so_their_statistics_match_a_fresh_array():
    from pixelperfect_daemon.training.heads import select_columns

    x = np.random.default_rng(0).normal(size=(300, 40)).astype(np.float32)
    columns = np.arange(0, 40, 2)
    selected = select_columns(x, columns)

    assert selected.flags.c_contiguous
    fresh = np.array(x[:, columns].tolist(), dtype=np.float32)  # built row by row: C order
    np.testing.assert_array_equal(selected.mean(axis=0), fresh.mean(axis=0))
    np.testing.assert_array_equal(selected.var(axis=0), fresh.var(axis=0))


def test_a_head_reading_columns_sees_only_those_columns():
    import keras

    from pixelperfect_daemon.training.heads import reading_columns

    columns = np.array([0, 2, 3])
    inner_inputs = keras.Input((len(columns),))
    inner = keras.Model(inner_inputs, keras.layers.Dense(1, kernel_initializer="ones")(inner_inputs))
    wrapped = reading_columns(inner, FEATURE_DIM, columns)
    x = features()
    changed = x.copy()
    changed[:, 1] += 5.0  # a column the head does not read

    np.testing.assert_allclose(wrapped.predict(x, verbose=0), inner.predict(x[:, columns], verbose=0), rtol=1e-6)
    np.testing.assert_allclose(wrapped.predict(changed, verbose=0), wrapped.predict(x, verbose=0))


def test_stage1_measured_head_reads_only_the_statistics():
    mean, variance = np.zeros(FEATURE_DIM), np.ones(FEATURE_DIM)
    measured_head = build_stage1_measured_head(FEATURE_DIM, mean, variance, STATISTICS_DIM)
    x = features(2)
    other_backbone, other_statistics = x.copy(), x.copy()
    other_backbone[:, :BACKBONE_DIM] += 5.0
    other_statistics[:, BACKBONE_DIM:] += 5.0
    assert measured_head.predict(x, verbose=0).shape == (5, 1)
    np.testing.assert_allclose(measured_head.predict(x, verbose=0), measured_head.predict(other_backbone, verbose=0))
    assert not np.allclose(measured_head.predict(x, verbose=0), measured_head.predict(other_statistics, verbose=0))


def test_stage1_head_reads_only_its_columns_standardised_by_their_own_statistics():
    columns = np.array([0, 1, 5, BACKBONE_DIM, FEATURE_DIM - 1])  # some backbone columns and statistics
    mean, variance = np.arange(FEATURE_DIM, dtype=float), np.full(FEATURE_DIM, 4.0)
    head = build_stage1_head(FEATURE_DIM, mean, variance, columns=columns)
    x = features(3)
    unread, read = x.copy(), x.copy()
    unread[:, np.setdiff1d(np.arange(FEATURE_DIM), columns)] += 5.0
    read[:, columns[2]] += 5.0

    assert head.predict(x, verbose=0).shape == (5, 1)
    np.testing.assert_allclose(head.predict(unread, verbose=0), head.predict(x, verbose=0))
    assert not np.allclose(head.predict(read, verbose=0), head.predict(x, verbose=0))
    standardise = head.get_layer("stage1_standardise")
    np.testing.assert_allclose(np.ravel(standardise.mean), mean[columns])


def test_stage1_averages_each_kind_of_head_then_weights_the_two_kinds():
    mean, variance = np.zeros(FEATURE_DIM), np.ones(FEATURE_DIM)
    heads1 = [build_stage1_head(FEATURE_DIM, mean, variance, name=f"head{i}") for i in range(2)]
    measured = [
        build_stage1_measured_head(FEATURE_DIM, mean, variance, STATISTICS_DIM, name=f"measured{i}") for i in range(3)
    ]
    x = features(3)
    head_mean = np.mean([head.predict(x, verbose=0) for head in heads1], axis=0)
    measured_mean = np.mean([head.predict(x, verbose=0) for head in measured], axis=0)
    expected = (1 - STAGE1_MEASURED_WEIGHT) * head_mean + STAGE1_MEASURED_WEIGHT * measured_mean
    np.testing.assert_allclose(combine_stage1(heads1, measured).predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
