"""The parts of the review screen, each built on its own: filters, gallery, inspector (with the loupe), analyse tab.

Each builder lays out its components inside the current Blocks context and returns them in a
dataclass, so ``wiring`` can connect them without knowing the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pixelperfect_daemon.labels import DEFECTS

from .browser import SHORTCUTS_HELP
from .helpers import (
    ALL_FOLDERS,
    DEFECT_FILTER_CHOICES,
    DEFECT_OVERRIDE_CHOICES,
    REVIEWED_CHOICES,
    SORT_CHOICES,
    VERDICT_CHOICES,
)  # fmt: skip
from .loupe import EMPTY


@dataclass
class Filters:
    verdict: gr.Radio
    defect: gr.Dropdown
    counts: gr.Markdown
    quality_min: gr.Slider
    quality_max: gr.Slider
    reviewed: gr.Radio
    folder: gr.Dropdown
    date_from: gr.Textbox
    date_to: gr.Textbox
    name: gr.Textbox
    sort: gr.Dropdown
    export_button: gr.Button
    export_file: gr.File
    export_lightroom: gr.Button
    lightroom_file: gr.File
    lightroom_status: gr.Markdown
    copy_rejects: gr.Button
    move_rejects: gr.Button
    rejects_status: gr.Markdown

    @property
    def values(self) -> list:
        """The filter inputs in ``helpers.build_filter``'s order."""
        return [self.verdict, self.defect, self.quality_min, self.quality_max, self.reviewed, self.folder,
                self.date_from, self.date_to, self.name]  # fmt: skip


def build_filters() -> Filters:
    verdict = gr.Radio(VERDICT_CHOICES, value="poor", label="Verdict", elem_id="filter-verdict")
    defect = gr.Dropdown(DEFECT_FILTER_CHOICES, value="all", label="Defect", elem_id="filter-defect")
    counts = gr.Markdown(elem_id="counts")
    with gr.Row():
        quality_min = gr.Slider(0, 1, value=0, step=0.01, label="Quality from", elem_id="quality-min")
        quality_max = gr.Slider(0, 1, value=1, step=0.01, label="to", elem_id="quality-max")
    reviewed = gr.Radio(REVIEWED_CHOICES, value="all", label="Reviewed", elem_id="filter-reviewed")
    # Typing a path is allowed: the list names at most 500 folders.
    folder = gr.Dropdown([("All folders", ALL_FOLDERS)], value=ALL_FOLDERS, label="Folder",
                         allow_custom_value=True, elem_id="filter-folder")  # fmt: skip
    with gr.Row():
        date_from = gr.Textbox(label="Analysed from", placeholder="YYYY-MM-DD", elem_id="date-from")
        date_to = gr.Textbox(label="to", placeholder="YYYY-MM-DD", elem_id="date-to")
    name = gr.Textbox(label="File name contains", placeholder="e.g. IMG_12", elem_id="name-search")
    sort = gr.Dropdown(SORT_CHOICES, value="quality_asc", label="Sort", elem_id="sort")
    with gr.Row():
        export_button = gr.Button("Export list as CSV", size="sm", elem_id="export-csv")
        export_lightroom = gr.Button("Export for Lightroom", size="sm", elem_id="export-lightroom")
    export_file = gr.File(label="CSV", visible=False, elem_id="export-file")
    lightroom_file = gr.File(label="Lightroom keywords, smart collection, file list", visible=False,
                             elem_id="export-lightroom-file")  # fmt: skip
    lightroom_status = gr.Markdown(elem_id="export-lightroom-status")
    with gr.Row():
        copy_rejects = gr.Button("Copy rejects to folder", size="sm", elem_id="copy-rejects")
        move_rejects = gr.Button("Move rejects to folder", size="sm", elem_id="move-rejects")
    rejects_status = gr.Markdown(elem_id="rejects-status")
    return Filters(verdict, defect, counts, quality_min, quality_max, reviewed, folder, date_from, date_to, name,
                   sort, export_button, export_file, export_lightroom, lightroom_file, lightroom_status, copy_rejects,
                   move_rejects, rejects_status)  # fmt: skip


@dataclass
class Gallery:
    previous_page: gr.Button
    page_info: gr.Markdown
    next_page: gr.Button
    page: gr.Number
    gallery: gr.Gallery
    bulk: gr.CheckboxGroup
    bulk_all: gr.Button
    bulk_none: gr.Button
    bulk_good: gr.Button
    bulk_poor: gr.Button
    compare: gr.Button


def build_gallery() -> Gallery:
    with gr.Row():
        previous_page = gr.Button("◀ Page", size="sm", elem_id="previous-page", scale=0)
        page_info = gr.Markdown(elem_id="page-info")
        next_page = gr.Button("Page ▶", size="sm", elem_id="next-page", scale=0)
        page = gr.Number(value=1, precision=0, minimum=1, label="Page", elem_id="page", scale=0, min_width=90)
    gallery = gr.Gallery(
        label="Images", columns=6, height=720, object_fit="cover", allow_preview=False,
        interactive=False, elem_id="gallery", buttons=[],
    )  # fmt: skip
    with gr.Accordion("Bulk review of this page", open=False, elem_id="bulk"):
        bulk = gr.CheckboxGroup([], label="Selected images", elem_id="bulk-selection")
        with gr.Row():
            bulk_all = gr.Button("Select whole page", size="sm", elem_id="bulk-all")
            bulk_none = gr.Button("Clear selection", size="sm", elem_id="bulk-none")
            bulk_good = gr.Button("Mark selected Good", size="sm", elem_id="bulk-good")
            bulk_poor = gr.Button("Mark selected Poor", size="sm", elem_id="bulk-poor")
            compare = gr.Button("Compare ticked (2–4)", size="sm", elem_id="compare-ticked")
    return Gallery(previous_page, page_info, next_page, page, gallery, bulk, bulk_all, bulk_none, bulk_good, bulk_poor,
                   compare)  # fmt: skip


@dataclass
class Inspector:
    loupe: gr.HTML
    zoom: gr.Button
    heat: gr.Button
    details: gr.Markdown
    override_defect: gr.Radio
    mark_good: gr.Button
    mark_poor: gr.Button
    undo: gr.Button
    prev_image: gr.Button
    next_image: gr.Button
    status: gr.Markdown
    scores: gr.Label


def build_inspector() -> Inspector:
    loupe = gr.HTML(EMPTY, elem_id="loupe")
    with gr.Row():
        zoom = gr.Button("Fit / 100 % (z)", size="sm", elem_id="loupe-zoom")
        heat = gr.Button("Heat-map (h)", size="sm", elem_id="loupe-heat")
    details = gr.Markdown("Select an image in the gallery.", elem_id="details")
    override_defect = gr.Radio(DEFECT_OVERRIDE_CHOICES, value="blur", label="Defect (for Poor)",
                               elem_id="override-defect")  # fmt: skip
    with gr.Row():
        mark_good = gr.Button("Good (g)", elem_id="mark-good")
        mark_poor = gr.Button("Poor (p)", elem_id="mark-poor")
        undo = gr.Button("Undo (u)", elem_id="undo")
    with gr.Row():
        prev_image = gr.Button("◀ Previous (←)", size="sm", elem_id="prev-image")
        next_image = gr.Button("Next (→) ▶", size="sm", elem_id="next-image")
    status = gr.Markdown(elem_id="status")
    gr.Markdown(SHORTCUTS_HELP)
    scores = gr.Label(label="Defect probabilities", num_top_classes=len(DEFECTS), show_heading=False,
                      elem_id="scores")  # fmt: skip
    return Inspector(loupe, zoom, heat, details, override_defect, mark_good, mark_poor, undo, prev_image, next_image,
                     status, scores)  # fmt: skip


COMPARE_PANES = 4


@dataclass
class Compare:
    panes: list[gr.HTML]
    columns: list[gr.Column]
    names: list[gr.Markdown]
    goods: list[gr.Button]
    poors: list[gr.Button]
    status: gr.Markdown


def build_compare() -> Compare:
    gr.Markdown("Tick 2–4 images under “Bulk review” and press **Compare ticked**. Zoom (click or `z`) "
                "and pan (drag or arrows) move every pane together.")  # fmt: skip
    panes, columns, names, goods, poors = [], [], [], [], []
    with gr.Row(elem_id="compare-panes", equal_height=False):
        for index in range(COMPARE_PANES):
            with gr.Column(visible=False, min_width=200) as column:
                names.append(gr.Markdown(elem_id=f"compare-name-{index}"))
                panes.append(gr.HTML(EMPTY, elem_id=f"compare-pane-{index}"))
                with gr.Row():
                    goods.append(gr.Button("Good", size="sm", elem_id=f"compare-good-{index}"))
                    poors.append(gr.Button("Poor", size="sm", elem_id=f"compare-poor-{index}"))
            columns.append(column)
    status = gr.Markdown(elem_id="compare-status")
    return Compare(panes, columns, names, goods, poors, status)


@dataclass
class Bursts:
    find: gr.Button
    choice: gr.Dropdown
    frames: gr.Gallery
    accept: gr.Button
    status: gr.Markdown


def build_bursts(gap_seconds: float) -> Bursts:
    gr.Markdown(f"Photos of the current filter taken at most {gap_seconds:g} s apart that look alike. The "
                "best-quality frame is the suggested pick (★); **a** keeps it as Good and rejects the others as "
                "Poor, reason *duplicate* (defect Other).")  # fmt: skip
    with gr.Row():
        find = gr.Button("Find bursts in the current filter", size="sm", elem_id="find-bursts", scale=0)
        choice = gr.Dropdown([], label="Burst", elem_id="burst-choice", scale=1)
    frames = gr.Gallery(label="Frames", columns=5, height=420, object_fit="contain", allow_preview=False,
                        interactive=False, elem_id="burst-frames", buttons=[])  # fmt: skip
    accept = gr.Button("Keep the pick, reject the rest as duplicates (a)", elem_id="burst-accept")
    status = gr.Markdown(elem_id="burst-status")
    return Bursts(find, choice, frames, accept, status)


@dataclass
class AnalyseTab:
    upload: gr.File
    analyse_button: gr.Button
    upload_preview: gr.Image
    upload_verdict: gr.Markdown
    upload_scores: gr.Label


def build_analyse_tab() -> AnalyseTab:
    gr.Markdown("Upload a photo to see its verdict. It is not added to the index and no file is tagged.")
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Image file", elem_id="upload")
            analyse_button = gr.Button("Analyse", variant="primary", elem_id="analyse")
        with gr.Column():
            upload_preview = gr.Image(label="Preview", type="filepath", interactive=False, elem_id="upload-preview")
            upload_verdict = gr.Markdown(elem_id="upload-verdict")
            upload_scores = gr.Label(label="Defect probabilities", num_top_classes=len(DEFECTS),
                                     elem_id="upload-scores")  # fmt: skip
    return AnalyseTab(upload, analyse_button, upload_preview, upload_verdict, upload_scores)
