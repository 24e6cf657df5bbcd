"""The noise meter (screen_noise.py) and the verdict's noise line."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pixelperfect_daemon.screen_noise import screen_noise_sigma
from pixelperfect_daemon.verdict import is_noisy


def with_noise(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, pixels.shape[:2])[:, :, None]
    return np.clip(np.round(pixels + noise), 0, 255).astype(np.uint8)


def smooth_scene(height=500, width=750) -> np.ndarray:
    """A sky-like gradient above a textured ground: flat parts and busy parts, no noise."""
    rows = np.linspace(90, 200, height, dtype=np.float32)[:, None]
    scene = np.repeat(np.repeat(rows, width, axis=1)[:, :, None], 3, axis=2)
    texture = np.random.default_rng(1).uniform(40, 200, (height // 2 // 6, width // 6, 3)).astype(np.float32)
    scene[height // 2 :] = cv2.resize(texture, (width, height - height // 2), interpolation=cv2.INTER_CUBIC)
    return np.clip(scene, 0, 255).astype(np.uint8)


def textured_all_over(height=500, width=750, low=30, high=220) -> np.ndarray:
    """Gravel: detail a few pixels across everywhere, no flat part, no noise."""
    stones = np.random.default_rng(2).uniform(low, high, (height // 3, width // 3)).astype(np.float32)
    grey = cv2.resize(stones, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize("sigma", [3.0, 6.0, 12.0])
def test_white_noise_reads_about_its_sigma(sigma):
    reading = screen_noise_sigma(with_noise(smooth_scene(), sigma))
    assert 0.8 * sigma <= reading <= 1.1 * sigma, reading


def test_a_clean_scene_reads_almost_nothing():
    assert screen_noise_sigma(smooth_scene()) < 0.5


def test_texture_everywhere_is_not_read_as_noise():
    assert screen_noise_sigma(textured_all_over()) < 1.0
    # while the same noise on a photo with flat parts is read
    assert screen_noise_sigma(with_noise(smooth_scene(), 6.0)) > 4.5


def test_clipped_blocks_are_left_out():
    """Noise near black is clipped away: an almost black frame has too little to measure."""
    dark = np.full((500, 750, 3), 2, np.uint8)
    dark[:40, :40] = 120  # fewer measurable blocks than the meter needs
    assert math.isnan(screen_noise_sigma(with_noise(dark, 1.0)))


def test_a_tiny_image_gives_no_reading():
    assert math.isnan(screen_noise_sigma(with_noise(np.full((40, 60, 3), 128, np.uint8), 8.0)))


def test_the_reading_changes_smoothly_with_the_pixels():
    """No cliff at the whiteness test: where noise and faint texture are about equal (the reading
    fades), copies with different noise read about the same."""
    faint_texture = textured_all_over(low=113, high=143)
    readings = [screen_noise_sigma(with_noise(faint_texture, 4.0, seed)) for seed in range(5)]
    assert all(0.5 < reading < 3.8 for reading in readings), readings  # faded, not full or none
    assert max(readings) - min(readings) < 1.0, readings


def test_the_noise_line():
    assert is_noisy(3.5, 3.5) and is_noisy(9.0, 3.5)
    assert not is_noisy(3.4, 3.5)
    assert not is_noisy(math.nan, 3.5)  # unmeasured is never noisy
    assert not is_noisy(50.0, 0.0)  # 0 turns the line off
