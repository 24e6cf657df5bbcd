"""Where in the frame each defect's evidence is: a coarse grid of per-tile scores.

Every tile is measured with the engine's own view statistics (``view_statistics``), the same
readings the heads see for a whole view, and with two readings of its own that say where rather
than how much: detail missing against structure, cell by cell (blur), and level changes of colour
along whole rows (the bands a damaged stream decodes to). A tile is hot for a defect when its
reading for that defect stands out from the other tiles of the same photo (a robust z-score
against the median and spread over all tiles), so a photo that is uniformly soft or noisy shows
no single hot spot while damage confined to one region does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.view_statistics import STATISTIC_NAMES, view_statistics

COLUMNS = 8
MIN_TILE = 48
# The view statistics' filters need a few blocks of 8 pixels across.
MIN_SIDE = 16
# A z-score this far above the photo's median is as hot as the map shows (the hottest tile's, if higher).
FULL_SCALE_Z = 6.0
_AT = {name: i for i, name in enumerate(STATISTIC_NAMES)}


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


# Readings of one tile's view statistics, per defect key; larger means more evidence of that defect.
# Blur and transmission errors have readings of their own (missing_detail, colour_band_steps).
READINGS = {
    "noise": _noise,
    "color_distortion": _colour,
    "luminance_contrast": _luminance,
    "compression": _compression,
}

# Scales in preview pixels (the map is computed on a reduced decode): detail is what lies below
# about 2 pixels, structure what lies between 2 and 8; each is measured in cells of CELL pixels.
CELL = 16
_FINE_SIGMA, _COARSE_SIGMA = 2.0, 8.0
# The variance of rounding to 8 bits: the least detail a uint8 image shows even where it has none.
_QUANTISATION = 1.0 / (12 * 255**2)


def tile_means(values: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The mean of a 2-D map over each tile of a rows x columns grid (area-weighted at the edges)."""
    return cv2.resize(values.astype(np.float32), (columns, rows), interpolation=cv2.INTER_AREA).astype(np.float64)


def missing_detail(luma: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Per tile, how much weaker fine detail is than the structure around it: the mean over
    CELL-pixel cells of log(structure energy / detail energy).

    A sharp cell has detail in proportion to its structure; blur removes the detail first, so a
    blurred edge reads high while a flat sky (neither) and a noisy patch (detail only) read low.
    Taken cell by cell, a tile only partly blurred still shows it, and a tile's one sharp edge
    does not hide a blurred rest."""
    height, width = luma.shape
    cells = (max(1, width // CELL), max(1, height // CELL))
    smooth = cv2.GaussianBlur(luma, (0, 0), _FINE_SIGMA)
    detail = luma - smooth
    # The structure is measured at half size (cheaper): the smoothed image has nothing finer to lose.
    # pyrDown's own filter adds a Gaussian of about 1 pixel, hence the 1 taken from the variance.
    half = cv2.pyrDown(smooth)
    structure = half - cv2.GaussianBlur(half, (0, 0), math.sqrt(_COARSE_SIGMA**2 - _FINE_SIGMA**2 - 1.0) / 2)
    detail_energy = cv2.resize(detail * detail, cells, interpolation=cv2.INTER_AREA)
    structure_energy = cv2.resize(structure * structure, cells, interpolation=cv2.INTER_AREA)
    ratio = np.log(structure_energy + _QUANTISATION) - np.log(detail_energy + _QUANTISATION)
    return tile_means(ratio, rows, columns)


def colour_band_steps(pixels: np.ndarray, ys: list[int], xs: list[int]) -> np.ndarray:
    """Per tile, the largest change of colour between rows, averaged along the tile's width.

    A damaged stream decodes, from some row on, to a band of wrong colour: the whole row changes
    colour the same way, while natural colour edges are seldom level and uniform along a row and
    mostly cancel in the average. Luma is left out: it changes level at every horizon. The step is
    taken across two rows because a boundary in the full-size original can fall inside a preview row."""
    rows, columns = len(ys) - 1, len(xs) - 1
    steps = np.zeros((rows, columns))
    if pixels.shape[0] < 3:
        return steps
    # Each row's mean colour within each tile column (the step of the means is the mean step).
    sums = np.add.reduceat(pixels, xs[:-1], axis=1, dtype=np.int32)
    red, green, blue = np.moveaxis(sums / (255.0 * np.diff(xs)[None, :, None]), -1, 0)
    squared = 0.0
    for opponent in (red - green, 0.5 * (red + green) - blue):
        squared = squared + (opponent[2:] - opponent[:-2]) ** 2  # row y + 2 against row y
    along_rows = np.sqrt(squared)  # (height - 2) x columns
    for r in range(rows):
        band = along_rows[ys[r] : max(ys[r] + 1, min(ys[r + 1], len(along_rows)))]
        steps[r] = band.max(axis=0) if len(band) else 0.0
    return steps


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
    """Each value's excess over the median, in robust standard deviations, scaled into [0, 1]: by
    FULL_SCALE_Z, or by the largest excess where that is beyond it."""
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    # A floor on the spread: near-identical tiles must not turn rounding noise into a hot spot.
    spread = max(spread, 0.05 * (abs(median) + 1.0))
    z = (values - median) / spread
    # Clipping at full scale would tie several tiles at 1 and leave the hottest to the first of them.
    return np.clip(z / max(FULL_SCALE_Z, float(np.max(z))), 0.0, 1.0)


def compute_heatmap(pixels: np.ndarray, columns: int = COLUMNS) -> HeatMap:
    """The heat-map of an H x W x 3 uint8 RGB image (a reduced decode is enough)."""
    height, width = pixels.shape[:2]
    rows, columns = grid_shape(width, height, columns)
    if rows * columns == 1 or min(height, width) < MIN_SIDE:
        # One tile cannot stand out from others, and a sliver has no detail to measure: a cold map.
        return HeatMap(rows, columns, {key: [[0.0] * columns for _ in range(rows)] for key in DEFECTS})
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
    luma = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    readings["blur"] = missing_detail(luma, rows, columns)
    readings["transmission_errors"] = colour_band_steps(pixels, ys, xs)
    scores = {key: robust_heat(values.astype(np.float64)) for key, values in readings.items()}
    # "Other" has no reading of its own: the strongest evidence of anything.
    scores["other"] = np.max(np.stack(list(scores.values())), axis=0)
    return HeatMap(rows, columns, {key: np.round(scores[key], 3).tolist() for key in DEFECTS})
