"""The regressions are fitted and judged by photo, never on the photo they predict."""

import numpy as np

from experiments.quality_regressors import held_out_predictions, rbf_kernel_fitter, ridge_fitter
from pixelperfect_daemon.metrics import srcc


def photos(count=80, inputs=12, seed=0):
    """Two rows per photo (it and its mirror image, nearly the same inputs), a linear score."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(count, inputs))
    x = np.repeat(base, 2, axis=0) + rng.normal(scale=0.01, size=(2 * count, inputs))
    y = np.repeat(base @ rng.normal(size=inputs), 2) + rng.normal(scale=0.1, size=2 * count)
    return x, y, np.repeat(np.arange(count), 2)


def test_no_photo_is_predicted_by_a_fit_that_saw_it():
    x, y, photo = photos()
    seen = []

    def spying_fit(train_x, train_y, train_photo, test_x):
        test_photos = {int(p) for p in photo[[np.flatnonzero((x == row).all(1))[0] for row in test_x]]}
        assert not test_photos & set(train_photo.tolist())
        seen.extend(test_photos)
        return np.zeros(len(test_x))

    assert len(held_out_predictions(x, y, photo, spying_fit)) == 80  # one prediction per photo
    assert sorted(seen) == list(range(80))


def test_both_regressions_rank_a_linear_score():
    x, y, photo = photos()
    truth = y[::2]
    assert srcc(held_out_predictions(x, y, photo, ridge_fitter((0.1, 1.0, 10.0))), truth) > 0.9
    assert srcc(held_out_predictions(x, y, photo, rbf_kernel_fitter((0.05,), (0.01, 0.1))), truth) > 0.8
