"""The grain added by the real-noise check has the strength and coarseness it is asked for."""

import numpy as np

from experiments.check_grain import add_grain

GREY = np.full((200, 300), 128, np.uint8)


def neighbour_correlation(grain: np.ndarray) -> float:
    return float(np.corrcoef(grain[:, :-1].ravel(), grain[:, 1:].ravel())[0, 1])


def test_grain_has_the_requested_strength_at_every_coarseness():
    for coarseness in (0.0, 1.0, 2.0):
        grain = add_grain(GREY, 10.0, coarseness, np.random.default_rng(0)).astype(float) - 128
        assert abs(grain.std() - 10.0) < 0.5, coarseness


def test_coarser_grain_is_correlated_between_neighbours():
    fine = add_grain(GREY, 10.0, 0.0, np.random.default_rng(0)).astype(float)
    coarse = add_grain(GREY, 10.0, 2.0, np.random.default_rng(0)).astype(float)
    assert abs(neighbour_correlation(fine)) < 0.05
    assert neighbour_correlation(coarse) > 0.8


def test_no_grain_leaves_the_photo_as_it_was_and_grain_is_reproducible():
    assert np.array_equal(add_grain(GREY, 0.0, 1.0, np.random.default_rng(0)), GREY)
    first = add_grain(GREY, 6.0, 1.0, np.random.default_rng(3))
    assert np.array_equal(first, add_grain(GREY, 6.0, 1.0, np.random.default_rng(3)))
