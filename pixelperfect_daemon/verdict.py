"""The Good/Poor rule, one function for the engine and for training's measurements.

A photo is Poor when stage 1 says so (P(poor) at or above ``poor_threshold``) or when its quality
score, the estimate of the opinion score people would give it (0-1, MOS / 100), is below
``poor_below_quality``. Stage 1 learns mostly from synthetic damage; the quality score is fitted
to human scores alone and tells clearly good from clearly poor authentic photos better (area under
the ROC curve 0.979 against 0.94, cross-validated over the 587 scored photos). 0.35 lies below the
goal's "clearly poor" line (MOS 40), so it adds the photos people would score lowest; on the
cross-validated photos it raised the clear Good/Poor balanced accuracy from 0.848 to 0.879 and kept
as many clearly good photos Good (models/README.md). 0 turns the second test off.
"""

from __future__ import annotations

import numpy as np

POOR_THRESHOLD = 0.5
POOR_BELOW_QUALITY = 0.35


def is_poor(p_poor, quality, poor_threshold: float = POOR_THRESHOLD,
            poor_below_quality: float = POOR_BELOW_QUALITY) -> np.ndarray:
    """Poor (True) or Good for each (P(poor), quality score) pair; scalars give a 0-d array."""
    return (np.asarray(p_poor) >= poor_threshold) | (np.asarray(quality) < poor_below_quality)
