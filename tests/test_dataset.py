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


def test_extra_damaged_rounds_leave_the_samples_stage1_learns_from_unchanged():
    from pixelperfect_daemon.labels import DEFECTS
    from pixelperfect_daemon.model.dataset import LEVELS, samples_from_pristine

    photo = skimage_data.astronaut()[::2, ::2]  # 256 x 256: quick to distort
    without = samples_from_pristine(photo, np.random.default_rng(7), clean_variants=1, extra_damaged_rounds=0)
    with_extra = samples_from_pristine(photo, np.random.default_rng(7), clean_variants=1, extra_damaged_rounds=1)
    first = len(without.defect)
    assert first == 1 + len(DEFECTS) * len(LEVELS) and len(with_extra.defect) == first + len(DEFECTS) * len(LEVELS)
    assert np.array_equal(with_extra.views[:first], without.views)
    assert with_extra.subtype[:first] == without.subtype
    assert not without.stage2_only.any()
    assert not with_extra.stage2_only[:first].any() and with_extra.stage2_only[first:].all()
    # The extra round is another draw of every class and level, not a copy of the first.
    assert sorted(with_extra.defect[first:].tolist()) == sorted(without.defect[1:].tolist())
    assert not np.array_equal(with_extra.views[first:], without.views[1:])
