import numpy as np
import pytest

from pixelperfect_daemon.metrics import (
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    plcc,
    rankdata,
    srcc,
)


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_srcc_is_rank_based_and_plcc_is_linear():
    x = np.arange(10.0)
    assert srcc(x, x**3) == pytest.approx(1.0)
    assert plcc(x, x**3) < 0.95
    assert srcc(x, -x) == pytest.approx(-1.0)


def test_balanced_accuracy_weights_classes_equally():
    truth = [1] * 90 + [0] * 10
    always_one = [1] * 100
    assert balanced_accuracy(truth, always_one) == pytest.approx(0.5)


def test_confusion_matrix_counts():
    assert confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist() == [[1, 0], [1, 1]]


def test_ece_zero_when_calibrated_and_positive_when_overconfident():
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)
    assert expected_calibration_error([0.99] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.49)
