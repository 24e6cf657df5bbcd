"""Unit tests of training decisions in ``model/dataset.py`` and ``model/train.py`` (no backbone needed)."""

import numpy as np
from skimage import data as skimage_data

from pixelperfect_daemon.model.dataset import monochrome


def test_monochrome_is_grey_in_three_channels_and_keeps_the_brightness():
    photo = skimage_data.astronaut()
    grey = monochrome(photo)
    assert grey.shape == photo.shape and grey.dtype == np.uint8
    assert np.array_equal(grey[:, :, 0], grey[:, :, 1]) and np.array_equal(grey[:, :, 1], grey[:, :, 2])
    assert abs(float(grey.mean()) - float(photo.mean())) < 10


def test_a_head_resumes_only_the_run_it_was_checkpointed_in():
    from pixelperfect_daemon.model.train import _run_fingerprint

    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    y = np.arange(100) % 7
    same = _run_fingerprint(x, y, seed=0, epochs=80)
    assert _run_fingerprint(x.copy(), y.copy(), seed=0, epochs=80) == same
    assert _run_fingerprint(x + 1, y, seed=0, epochs=80) != same  # other features (e.g. new synthesis)
    assert _run_fingerprint(x, (y + 1) % 7, seed=0, epochs=80) != same  # other labels
    assert _run_fingerprint(x, y, seed=1, epochs=80) != same
