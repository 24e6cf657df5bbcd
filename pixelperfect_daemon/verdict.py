"""The Good/Poor rule, one function for the engine and for training's measurements.

A photo is Poor when stage 1 says so (P(poor) at or above ``poor_threshold``) or when its quality
score, fitted to human opinion scores alone, is below ``poor_below_quality``: the score tells clearly
good from clearly poor authentic photos better than stage 1, which learns mostly from synthetic
damage (models/EXPERIMENTS.md, "The quality score in the verdict"). 0 turns the second test off.
"""

from __future__ import annotations

import numpy as np

POOR_THRESHOLD = 0.5
POOR_BELOW_QUALITY = 0.35


def is_poor(
    p_poor, quality, poor_threshold: float = POOR_THRESHOLD, poor_below_quality: float = POOR_BELOW_QUALITY
) -> np.ndarray:
    """Poor (True) or Good for each (P(poor), quality score) pair; scalars give a 0-d array."""
    return (np.asarray(p_poor) >= poor_threshold) | (np.asarray(quality) < poor_below_quality)
