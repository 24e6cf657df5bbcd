"""Where in the frame each defect's evidence is: a coarse grid of per-tile scores.

Every tile is measured with the engine's own view statistics (``view_statistics``), the same
readings the heads see for a whole view. A tile is hot for a defect when its reading for that
defect stands out from the other tiles of the same photo (a robust z-score against the median
and spread over all tiles), so a photo that is uniformly soft or noisy shows no single hot spot
while damage confined to one region does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.view_statistics import STATISTIC_NAMES, view_statistics

COLUMNS = 8
MIN_TILE = 48
# A z-score this far above the photo's median is as hot as the map shows.
FULL_SCALE_Z = 6.0
_AT = {name: i for i, name in enumerate(STATISTIC_NAMES)}


def _blur(s: np.ndarray) -> float:
    # Fine detail lost against the tile's own contrast: flat sky is not blur, a soft edge is.
    return -(s[_AT["log_sharpness"]] - 2.0 * math.log(s[_AT["luma_std"]] + 0.02))


def _noise(s: np.ndarray) -> float:
    return max(s[_AT["log_noise_sigma"]], s[_AT["log_chroma_noise_sigma"]])


def _streaks(s: np.ndarray) -> float:
    return max(s[_AT[n]] for n in ("row_streaks", "column_streaks", "chroma_row_streaks", "chroma_column_streaks"))


def _colour(s: np.ndarray) -> float:
    return max(s[_AT["chroma_row_streaks"]], s[_AT["chroma_column_streaks"]], s[_AT["colourfulness"]] * 4.0)


def _luminance(s: np.ndarray) -> float:
    return s[_AT["crushed_fraction"]] + s[_AT["blown_fraction"]] - s[_AT["luma_std"]]


def _compression(s: np.ndarray) -> float:
    return s[_AT["blockiness"]] + s[_AT["flat_blocks"]]


def _transmission(s: np.ndarray) -> float:
    # A damaged stream decodes to bands of wrong colour (luma alone also jumps at every horizon).
    colour_bands = max(s[_AT["chroma_row_streaks"]], s[_AT["chroma_column_streaks"]])
    return max(colour_bands, s[_AT["impulses"]] * 50.0, s[_AT["flat_blocks"]] * 4.0)


# One reading per defect key of labels.DEFECTS; larger means more evidence of that defect.
READINGS = {
    "blur": _blur,
    "noise": _noise,
    "color_distortion": _colour,
    "luminance_contrast": _luminance,
    "compression": _compression,
    "transmission_errors": _transmission,
}


@dataclass(frozen=True)
class HeatMap:
    rows: int
    columns: int
    scores: dict[str, list[list[float]]]  # defect key -> rows x columns, each in [0, 1]

    def hottest(self, defect: str) -> tuple[int, int]:
        """(row, column) of the tile with the most evidence of ``defect``."""
        grid = np.asarray(self.scores[defect])
        row, column = np.unravel_index(int(np.argmax(grid)), grid.shape)
        return int(row), int(column)

    def hottest_centre(self, defect: str) -> tuple[float, float]:
        """The hottest tile's centre as fractions (x, y) of the width and height."""
        row, column = self.hottest(defect)
        return (column + 0.5) / self.columns, (row + 0.5) / self.rows

    def to_dict(self) -> dict:
        return {"rows": self.rows, "columns": self.columns, "scores": self.scores}

    @classmethod
    def from_dict(cls, data: dict) -> HeatMap:
        return cls(rows=int(data["rows"]), columns=int(data["columns"]), scores=data["scores"])


def grid_shape(width: int, height: int, columns: int = COLUMNS) -> tuple[int, int]:
    """(rows, columns) of roughly square tiles, each at least MIN_TILE pixels a side."""
    columns = max(1, min(columns, width // MIN_TILE))
    rows = max(1, min(round(columns * height / max(width, 1)), height // MIN_TILE))
    return rows, columns


def tile_edges(length: int, count: int) -> list[int]:
    return [round(i * length / count) for i in range(count + 1)]


def robust_heat(values: np.ndarray) -> np.ndarray:
    """Each value's excess over the median, in robust standard deviations, scaled into [0, 1]."""
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    # A floor on the spread: near-identical tiles must not turn rounding noise into a hot spot.
    spread = max(spread, 0.05 * (abs(median) + 1.0))
    return np.clip((values - median) / spread / FULL_SCALE_Z, 0.0, 1.0)


def compute_heatmap(pixels: np.ndarray, columns: int = COLUMNS) -> HeatMap:
    """The heat-map of an H x W x 3 uint8 RGB image (a reduced decode is enough)."""
    height, width = pixels.shape[:2]
    rows, columns = grid_shape(width, height, columns)
    ys, xs = tile_edges(height, rows), tile_edges(width, columns)
    statistics = np.array(
        [
            [
                view_statistics(np.ascontiguousarray(pixels[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]))
                for c in range(columns)
            ]
            for r in range(rows)
        ]
    )
    readings = {key: np.vectorize(lambda r, c, f=f: f(statistics[r, c]))(*np.indices((rows, columns)))
                for key, f in READINGS.items()}  # fmt: skip
    scores = {key: robust_heat(values.astype(np.float64)) for key, values in readings.items()}
    # "Other" has no reading of its own: the strongest evidence of anything.
    scores["other"] = np.max(np.stack(list(scores.values())), axis=0)
    return HeatMap(rows, columns, {key: np.round(scores[key], 3).tolist() for key in DEFECTS})
