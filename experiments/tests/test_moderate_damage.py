"""The moderate damage is made at the strengths the model card's table names."""

import numpy as np
import pytest

from experiments.learning_curve import reviewer
from experiments.moderate_damage import (
    Undecodable,
    error_free_decode,
    fast_fading,
    mean_luma,
    very_dark,
    white_noise,
    working_copy,
    worst_block_psnr,
)


@pytest.fixture(scope="module")
def photo(shared_data):
    return working_copy(sorted((shared_data / "pristine").rglob("*.jpg"))[0])


def psnr(damaged, original):
    return 10 * np.log10(255**2 / np.mean((damaged.astype(float) - original) ** 2))


def test_working_copies_are_768_by_512(photo):
    assert photo.shape in ((512, 768, 3), (768, 512, 3))


@pytest.mark.parametrize("target", [33.0, 30.0, 26.0])
def test_white_noise_has_the_psnr_asked_for(photo, target):
    assert abs(psnr(white_noise(photo, target, np.random.default_rng(0)), photo) - target) < 0.5


@pytest.mark.parametrize("target", [0.12, 0.07])
def test_very_dark_photos_have_the_mean_luma_asked_for(photo, target):
    assert abs(mean_luma(very_dark(photo, target, np.random.default_rng(0))) - target) < 0.01


def faded_psnr(photo, bit_error_rate, seed):
    """PSNR of a faded copy; 0 when OpenJPEG refuses the damaged stream (the worst damage)."""
    try:
        return psnr(fast_fading(photo, bit_error_rate, np.random.default_rng(seed)), photo)
    except Undecodable:
        return 0.0


def test_fast_fading_damages_more_at_higher_bit_error_rates(photo):
    mild = [faded_psnr(photo, 1e-5, seed) for seed in range(5)]
    strong = [faded_psnr(photo, 1e-4, seed) for seed in range(5)]
    assert np.median(strong) < np.median(mild) and max(mild) > 25
    assert faded_psnr(photo, 1e-5, 3) == faded_psnr(photo, 1e-5, 3)  # reproducible


def test_the_error_free_stream_is_the_faded_rows_reference(photo):
    reference = error_free_decode(photo)
    assert worst_block_psnr(fast_fading(photo, 0.0, np.random.default_rng(0)), reference) > 100
    assert worst_block_psnr(reference, photo) < psnr(reference, photo)  # the worst tile, not the mean


def test_the_worst_block_shows_local_damage():
    image = np.full((64, 96, 3), 128, np.uint8)
    damaged = image.copy()
    damaged[32:64, 32:64] = 138  # one 32 x 32 tile off by 10 grey levels
    assert abs(worst_block_psnr(damaged, image) - 10 * np.log10(255**2 / 100)) < 1e-6
    assert psnr(damaged, image) > worst_block_psnr(damaged, image) + 7


def test_simulated_reviewers():
    mos, luma = np.array([30, 52, 60, 30]), np.array([0.5, 0.5, 0.5, 0.1])
    shipped = np.array([True, False, False, True])
    assert reviewer("strict", mos, luma, shipped, 0.25).tolist() == [True, True, False, True]
    assert reviewer("night", mos, luma, shipped, 0.25).tolist() == [True, False, False, False]
    assert reviewer("night-models", mos, luma, shipped, 0.25).tolist() == [True, False, False, False]
