"""The noise line is chosen from good training photos only, and the report reads the engine's meter."""

import math

import numpy as np

from experiments.noise_line import choose_line, good_training_readings, measure, report, share_over


def test_the_line_is_the_quantile_rounded_up_to_half_a_level():
    readings = np.array([0.0] * 98 + [3.2, 9.0, math.nan])
    assert choose_line(readings, 0.98) == 0.5  # the 0.98 quantile is 0.064
    assert choose_line(readings, 0.99) == 3.5  # 3.26, rounded up
    assert choose_line(np.array([1.0, 2.0]), 1.0) == 2.0


def test_unmeasured_readings_are_never_over_the_line():
    assert share_over([math.nan, 5.0, 2.0, 3.5], 3.5) == 0.5


def test_a_small_run_on_the_shared_photos(shared_data):
    sets = measure(shared_data, limit=6)
    assert set(sets) == {"train", "val"}
    good = good_training_readings(sets)
    assert len(good) >= 2 * len(sets["train"]["pristine files"])
    assert "CLIVE" in report(sets, 3.5)
    # Four of the first six pristine photos are in the validation split.
    assert np.nanmin(sets["val"]["white noise PSNR 26 dB"]) > np.nanmax(sets["val"]["pristine 768 x 512"])
