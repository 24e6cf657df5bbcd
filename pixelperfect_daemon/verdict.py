"""The Good/Poor rule, one function for the engine and for training's measurements.

A photo is Poor when stage 1 says so (P(poor) at or above ``poor_threshold``) or when its quality
score, fitted to human opinion scores alone, is below ``poor_below_quality``: the score tells clearly
good from clearly poor authentic photos better than stage 1, which learns mostly from synthetic
damage (models/EXPERIMENTS.md, "The quality score in the verdict"). 0 turns the second test off.

A third line is measured, not learnt: a photo whose flattest parts show noise at or above
``poor_above_noise`` (``screen_noise.py``, in grey levels at screen size) is Poor, for Noise, when
the models call it Good: they learnt to forgive noise that people barely score down.
"""

from __future__ import annotations

import numpy as np

POOR_THRESHOLD = 0.5
POOR_BELOW_QUALITY = 0.35
POOR_ABOVE_NOISE = 3.5  # chosen on training photos by experiments/noise_line.py


def is_poor(
    p_poor, quality, poor_threshold: float = POOR_THRESHOLD, poor_below_quality: float = POOR_BELOW_QUALITY
) -> np.ndarray:
    """Poor (True) or Good for each (P(poor), quality score) pair; scalars give a 0-d array."""
    return (np.asarray(p_poor) >= poor_threshold) | (np.asarray(quality) < poor_below_quality)


def is_noisy(screen_noise: float, poor_above_noise: float = POOR_ABOVE_NOISE) -> bool:
    """True when the noise meter's reading is at or above the line (0 turns the test off; an
    unmeasured reading, NaN, never is)."""
    return poor_above_noise > 0 and screen_noise >= poor_above_noise
