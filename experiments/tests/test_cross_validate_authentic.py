"""Cross-validation over the scored photos: every photo predicted once, by models that never saw
it or its mirror image. Unit tests: training is replaced by stand-ins that record what they saw."""

import numpy as np
import pytest

from experiments import cross_validate_authentic as cv
from pixelperfect_daemon.training import dataset, train

PHOTO, MIRRORED = 0, 1  # feature columns of the fake rows: which photo, and whether mirrored


def _rows(photos: list[int], mirrored: list[int], mos: list[float]) -> dict:
    n = len(photos)
    features = np.zeros((n, 4), dtype=np.float32)
    features[:, PHOTO], features[:, MIRRORED] = photos, mirrored
    mos = np.asarray(mos, dtype=np.float32)
    return {
        "features": features,
        "defect": np.full(n, -1),
        "level": np.zeros(n, int),
        "p_poor": (mos < 50).astype(np.float32),
        "quality": mos / 100,
        "quality_weight": np.ones(n, np.float32),
        "subtype": np.array(["authentic"] * n),
        "stage2_only": np.zeros(n, bool),
    }


def _data(train_photos: int = 6, val_photos: int = 4) -> dict:
    """Training photos as (own row, mirror image) pairs, validation photos as one row each; the
    photo number is 100 + index, so a synthetic row (photo 0) is told apart."""
    numbers = list(range(100, 100 + train_photos + val_photos))
    mos = [20.0 + 7 * i for i in range(len(numbers))]
    train_rows = _rows(
        [p for p in numbers[:train_photos] for _ in range(2)],
        [0, 1] * train_photos,
        [m for m in mos[:train_photos] for _ in range(2)],
    )
    val_rows = _rows(numbers[train_photos:], [0] * val_photos, mos[train_photos:])
    synthetic = _rows([0] * 4, [0] * 4, [20, 80, 20, 80])
    return {
        "authentic_train": train_rows,
        "authentic_val": val_rows,
        "authentic_train_groups": np.repeat(np.arange(train_photos) * 3, 2),  # any increasing ids
        "synthetic_train": synthetic,
        "synthetic_val": synthetic,
        "synthetic_train_groups": np.arange(4),
    }


class _ReadsColumn:
    """A stand-in model whose output is one feature column: the photo number or the mirror flag;
    shaped (N, 1) as a Keras model's, or (N,) as the ridge regression's."""

    def __init__(self, column: int, keras_shaped: bool):
        self.column, self.keras_shaped = column, keras_shaped

    def predict(self, features, verbose=0):
        column = np.asarray(features)[:, self.column].astype(np.float64)
        return column[:, None] if self.keras_shaped else column


def test_photo_folds_deal_each_photo_to_one_fold_evenly_and_reproducibly():
    folds = cv.photo_folds(23, 5, seed=0)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.sum() == 23 and sizes.max() - sizes.min() == 1
    assert set(folds) == set(range(5))
    np.testing.assert_array_equal(folds, cv.photo_folds(23, 5, seed=0))
    assert not np.array_equal(folds, cv.photo_folds(23, 5, seed=1))


def test_a_training_photo_and_its_mirror_image_are_one_photo():
    rows, photo_of_row = cv.scored_photos(_data(train_photos=3, val_photos=2))
    np.testing.assert_array_equal(photo_of_row, [0, 0, 1, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(rows["features"][:, PHOTO], [100, 100, 101, 101, 102, 102, 103, 104])


def test_no_fold_trains_on_a_photo_it_predicts_and_every_photo_is_predicted_once(monkeypatch):
    trained_on = []

    def fake_stage1(synthetic_train1, authentic_train, stage1_val, options):
        trained_on.append(set(authentic_train["features"][:, PHOTO].astype(int)))
        assert not (stage1_val["features"][:, PHOTO] >= 100).any(), "a scored photo stopped stage 1 early"
        return _ReadsColumn(MIRRORED, keras_shaped=True)  # logit 0 for a photo's own row, 1 for its mirror image

    def fake_quality(authentic_train, groups, synthetic_train1, synthetic_groups):
        assert set(authentic_train["features"][:, PHOTO].astype(int)) == trained_on[-1]
        return _ReadsColumn(PHOTO, keras_shaped=False)

    monkeypatch.setattr(train, "train_stage1", fake_stage1)
    monkeypatch.setattr(train, "fit_quality", fake_quality)
    held_out = cv.cross_validate(_data(), train.TrainOptions(out=None), folds=3)

    all_photos = set(range(100, 110))
    assert len(held_out.mos) == 10 and len(trained_on) == 3
    for fold, seen in enumerate(trained_on):
        predicted_here = {100 + i for i in np.flatnonzero(held_out.fold == fold)}
        assert predicted_here and not (seen & predicted_here)
        assert seen | predicted_here == all_photos
    # Each photo was predicted from its own row (logit 0), not its mirror image's.
    np.testing.assert_allclose(held_out.p_poor, 0.5)
    np.testing.assert_allclose(held_out.mos, [20.0 + 7 * i for i in range(10)], rtol=1e-6)


def test_measures_count_the_goals_groups_of_photos_with_the_verdict_rule():
    held_out = cv.HeldOutPredictions(
        mos=np.array([90.0, 70.0, 66.0, 55.0, 45.0, 35.0, 20.0]),
        p_poor=np.array([0.1, 0.6, 0.2, 0.7, 0.4, 0.9, 0.3]),
        quality=np.array([0.9, 0.7, 0.66, 0.5, 0.45, 0.3, 0.2]),  # the last below 0.35: Poor by the quality test
        fold=np.zeros(7, int),
    )
    m = cv.measures(held_out, poor_threshold=0.5, poor_below_quality=0.35)
    assert (m["clearly_good"], m["clearly_poor"]) == (3, 2)
    assert m["clearly_good_kept_good"] == pytest.approx(2 / 3)
    assert m["clearly_poor_flagged"] == pytest.approx(1.0)
    assert m["clear_balanced_accuracy"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["below_50_flagged"] == pytest.approx(2 / 3)
    assert m["srcc"] == pytest.approx(1.0)
    p_poor_alone = cv.measures(held_out, poor_threshold=0.5, poor_below_quality=0.0)
    assert p_poor_alone["clearly_poor_flagged"] == pytest.approx(1 / 2)
    assert p_poor_alone["below_50_flagged"] == pytest.approx(1 / 3)
    table = cv.report(held_out)
    assert "| all, P(poor) alone | 7 |" in table and "| all, the verdict | 7 |" in table


def test_the_fake_rows_have_every_field_training_merges():
    assert set(_rows([1], [0], [50.0])) == set(dataset.FEATURE_FIELDS)
