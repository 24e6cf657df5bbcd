"""The loupe's HTML: the full-resolution derivative, its focus point and the heat-map grid.

The browser script (``browser.py``) gives it behaviour: fit / 100 % toggle, pan by drag and keys,
the heat-map toggle and the locked panes of the compare view. This module only renders markup.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote

EMPTY = '<div class="pp-loupe pp-empty">Select an image in the gallery.</div>'
# Tiles below this score stay clear, so the overlay marks where the evidence is, not everywhere.
HEAT_FLOOR = 0.15


def file_url(path: Path | str) -> str:
    """The URL Gradio serves a file of the render cache under (relative to the app's root)."""
    return "gradio_api/file=" + quote(str(path), safe="/")


def heat_cells(scores: list[list[float]]) -> str:
    cells = []
    for row in scores:
        for value in row:
            alpha = 0.0 if value < HEAT_FLOOR else round(0.15 + 0.55 * float(value), 3)
            cells.append(f'<div class="pp-heat-cell" data-score="{float(value):.3f}" '
                         f'style="background: rgba(255, 40, 0, {alpha})"></div>')  # fmt: skip
    return "".join(cells)


def loupe_html(view, *, pane: int = 0) -> str:
    """Markup of one loupe pane for a ``service.LoupeView``."""
    width, height = view.size
    focus_x, focus_y = view.focus
    heat = ""
    if view.heatmap is not None and view.defect:
        grid = view.heatmap
        heat = (
            f'<div class="pp-heatmap" data-defect="{escape(view.defect)}" style="grid-template-columns: '
            f'repeat({grid.columns}, 1fr); grid-template-rows: repeat({grid.rows}, 1fr)">'
            f"{heat_cells(grid.scores[view.defect])}</div>"
        )
    return (
        f'<div class="pp-loupe" data-pane="{pane}" data-width="{width}" data-height="{height}" '
        f'data-focus-x="{focus_x:.4f}" data-focus-y="{focus_y:.4f}" data-path="{escape(view.path)}">'
        f'<div class="pp-loupe-canvas" style="width: {width}px; height: {height}px">'
        f'<img class="pp-loupe-image" src="{escape(file_url(view.image))}" width="{width}" height="{height}" '
        f'alt="{escape(Path(view.path).name)}" draggable="false">{heat}</div></div>'
    )
