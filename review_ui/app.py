"""The Gradio review app: browse and filter the index, inspect an image, override its verdict.

``build_ui`` only builds the Blocks (importable and testable without a server); ``launch_options``
says how it must be served (accounts, the only folders it may serve, the keyboard script) and
``launch_ui`` does both. Every reviewer action is also a named API endpoint (``/search``,
``/override``, ``/override_bulk``, ``/undo``, ``/counts``) for ``gradio_client``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
from gradio import utils as gr_utils
from starlette.middleware import Middleware

from pixelperfect_daemon.config import Settings
from pixelperfect_daemon.labels import DEFECT_DISPLAY_NAMES, DEFECTS, VERDICT_DISPLAY_NAMES

from . import queries
from .auth import Credential, make_authenticator
from .logins import ClientAddressMiddleware, LoginGate
from .queries import ImageFilter, QueryError
from .served_files import ServedFileGuard, ServedFilePolicy
from .service import ReviewError, ReviewService, local_reviewer

log = logging.getLogger(__name__)

API_MAX_PAGE_SIZE = 500
# API rows are lists under a "columns" header, not dicts: gradio_client takes any dict with a
# string "path" for a file to download, and would replace each row by a downloaded copy.
API_COLUMNS = (
    "path", "verdict", "defect", "quality", "reviewed", "file_name", "folder",
    "model_verdict", "model_defect", "reviewed_by", "reviewed_at", "analyzed_at", "error",
)  # fmt: skip
VERDICT_CHOICES = [("Poor", "poor"), ("Good", "good"), ("Error", "error"), ("All", "all")]
REVIEWED_CHOICES = [("All", "all"), ("Not reviewed", "no"), ("Reviewed", "yes")]
SORT_CHOICES = [
    ("Quality, worst first", "quality_asc"),
    ("Quality, best first", "quality_desc"),
    ("Newest first", "date_desc"),
    ("Oldest first", "date_asc"),
    ("File name", "name"),
]
DEFECT_FILTER_CHOICES = [("All defects", "all")] + [(DEFECT_DISPLAY_NAMES[d], d) for d in DEFECTS]
DEFECT_OVERRIDE_CHOICES = [(DEFECT_DISPLAY_NAMES[d], d) for d in DEFECTS]
ALL_FOLDERS = "all"

SHORTCUTS_HELP = (
    "**Keys:** `g` Good · `p` Poor (with the defect chosen below) · `1`–`7` choose the defect · "
    "`u` undo · `←` `→` previous / next image"
)

# Document-level, so it works whatever has focus except a text field the reviewer is typing in.
KEYBOARD_HEAD = """
<script>
(() => {
  const BUTTONS = {g: "mark-good", p: "mark-poor", u: "undo", ArrowRight: "next-image", ArrowLeft: "prev-image"};
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const typing = target && (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(target.type)));
    if (typing) return;
    if (/^[1-7]$/.test(event.key)) {
      const choices = document.querySelectorAll("#override-defect input[type=radio]");
      const choice = choices[Number(event.key) - 1];
      if (choice) { event.preventDefault(); choice.click(); }
      return;
    }
    const id = BUTTONS[event.key];
    const button = id && document.getElementById(id);
    if (button && !button.disabled) { event.preventDefault(); button.click(); }
  });
})();
</script>
"""

CSS = """
#gallery .caption-label { font-size: 0.72rem; }
#status { min-height: 1.5em; }
#counts table { font-size: 0.8rem; margin: 0; }
#counts td, #counts th { padding: 2px 8px; }
#mark-good { background: #2f8f46; color: white; }
#mark-poor { background: #c0392b; color: white; }
"""


# -- pure helpers (unit-tested) ---------------------------------------------------------------


def _blank_to_none(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return None if value in ("", "all") else value
    return value


def build_filter(
    verdict=None, defect=None, quality_min=None, quality_max=None, reviewed=None,
    folder=None, date_from=None, date_to=None, name=None,
) -> ImageFilter:  # fmt: skip
    """An ImageFilter from UI/API values, where "" / "all" / None all mean "no filter"."""
    reviewed = _blank_to_none(reviewed)
    if isinstance(reviewed, str):
        reviewed = {"yes": True, "no": False, "true": True, "false": False}.get(reviewed.lower())
        if reviewed is None:
            raise QueryError("reviewed must be yes, no or all")
    return ImageFilter(
        verdict=_blank_to_none(verdict),
        defect=_blank_to_none(defect),
        quality_min=None if quality_min is None else float(quality_min),
        quality_max=None if quality_max is None else float(quality_max),
        reviewed=reviewed,
        folder=_blank_to_none(folder),
        date_from=_blank_to_none(date_from),
        date_to=_blank_to_none(date_to),
        name=_blank_to_none(name),
    )


def caption(summary: dict) -> str:
    """Short enough to read under a thumbnail: a Poor image is named by its defect."""
    if summary["defect"]:
        verdict = DEFECT_DISPLAY_NAMES[summary["defect"]]
    else:
        verdict = VERDICT_DISPLAY_NAMES.get(summary["verdict"], "Error")
    quality = "" if summary["quality"] is None else f" {summary['quality']:.2f}"
    mark = " ✓" if summary["reviewed"] else ""
    return f"{verdict}{quality}{mark} · {summary['file_name']}"


def counts_markdown(verdicts: dict[str, int], defects: dict[str, int]) -> str:
    lines = [
        f"**Poor** {verdicts['poor']:,} · **Good** {verdicts['good']:,} · **Error** {verdicts['error']:,}",
        "",
        "| defect | images |",
        "|---|---:|",
    ]
    lines += [f"| {DEFECT_DISPLAY_NAMES[key]} | {defects[key]:,} |" for key in DEFECTS]
    return "\n".join(lines)


def details_markdown(inspection) -> str:
    s = inspection.summary
    verdict = VERDICT_DISPLAY_NAMES.get(s["verdict"], "Error")
    defect = f" — {DEFECT_DISPLAY_NAMES[s['defect']]}" if s["defect"] else ""
    lines = [f"### {s['file_name']}", f"**{verdict}{defect}**"]
    tags_failed = s.get("status") == "tag_error"
    if tags_failed:  # analysed, but the verdict is not in the file: say what the model found
        model_defect = f" ({DEFECT_DISPLAY_NAMES[s['model_defect']]})" if s["model_defect"] else ""
        lines[1] = f"**Error: tags not written** · model said {VERDICT_DISPLAY_NAMES.get(s['model_verdict'])}{model_defect}"
    if s["reviewed"]:
        model = VERDICT_DISPLAY_NAMES.get(s["model_verdict"], "Error")
        model_defect = f" ({DEFECT_DISPLAY_NAMES[s['model_defect']]})" if s["model_defect"] else ""
        lines.append(f"reviewed by **{s['reviewed_by']}** at {s['reviewed_at']} · model said {model}{model_defect}")
    lines.append(
        f"quality **{'–' if s['quality'] is None else format(s['quality'], '.3f')}** · "
        f"model `{inspection.model_version or '–'}` · analysed {s['analyzed_at'] or '–'}"
    )
    if s.get("error"):
        lines.append(f"{'tags not written (retried at the next rescan)' if tags_failed else 'finding'}: {s['error']}")
    exif = inspection.exif or {}
    facts = [exif.get(k) for k in ("camera", "lens", "iso", "shutter", "aperture", "focal_length")]
    size = f"{inspection.size[0]}×{inspection.size[1]}" if inspection.size else None
    lines.append(" · ".join(f for f in [*facts, size] if f) or "no EXIF")
    lines.append(f"`{s['path']}`")
    return "\n\n".join(lines)


def scores_for_label(scores: dict[str, float] | None) -> dict[str, float] | None:
    if not scores:
        return None
    return {DEFECT_DISPLAY_NAMES[key]: value for key, value in scores.items()}


def neighbour(paths: list[str], current: str | None, step: int, fallback_index: int = 0) -> int | None:
    """Index of the image ``step`` (+1/-1) away from ``current`` in ``paths``; None past either end.

    When ``current`` has left the list (a review moved it out of the filter), the image now at its
    old position is the next one.
    """
    if not paths:
        return None
    if current in paths:
        index = paths.index(current) + step
    else:
        index = fallback_index if step > 0 else fallback_index - 1
    return index if 0 <= index < len(paths) else None


def api_table(summaries: list[dict]) -> dict:
    return {"columns": list(API_COLUMNS), "rows": [[s[c] for c in API_COLUMNS] for s in summaries]}


def reviewer_name(request: gr.Request | None) -> str:
    username = getattr(request, "username", None) if request is not None else None
    return username or local_reviewer()


# -- the app ----------------------------------------------------------------------------------


def build_ui(settings: Settings, service: ReviewService) -> gr.Blocks:
    """The review app for ``settings``; every read and write goes through ``service``."""
    page_size = settings.ui.page_size

    with gr.Blocks(title="PixelPerfect review", analytics_enabled=False, fill_width=True) as demo:
        page_paths = gr.State([])  # the paths shown on the gallery page, in order
        selected_path = gr.State(None)
        selected_index = gr.State(0)

        with gr.Row():
            gr.Markdown("## PixelPerfect review")
            whoami = gr.Markdown(elem_id="whoami")
        with gr.Tab("Review"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=240):
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
                    export_button = gr.Button("Export list as CSV", size="sm", elem_id="export-csv")
                    export_file = gr.File(label="CSV", visible=False, elem_id="export-file")
                with gr.Column(scale=3, min_width=480):
                    with gr.Row():
                        previous_page = gr.Button("◀ Page", size="sm", elem_id="previous-page", scale=0)
                        page_info = gr.Markdown(elem_id="page-info")
                        next_page = gr.Button("Page ▶", size="sm", elem_id="next-page", scale=0)
                        page = gr.Number(value=1, precision=0, minimum=1, label="Page", elem_id="page", scale=0,
                                         min_width=90)  # fmt: skip
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
                with gr.Column(scale=2, min_width=380):
                    preview = gr.Image(label="Selected image", type="filepath", interactive=False, height=380,
                                       elem_id="preview", buttons=["fullscreen"])  # fmt: skip
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
                    crop = gr.Image(label="100 % view", type="filepath", interactive=False, visible=False,
                                    elem_id="crop", buttons=["fullscreen"])  # fmt: skip
        with gr.Tab("Analyse an image"):
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

        filters = [verdict, defect, quality_min, quality_max, reviewed, folder, date_from, date_to, name]
        listing_outputs = [gallery, page_info, counts, page_paths, bulk, page]
        inspect_outputs = [preview, details, scores, crop, override_defect, selected_path, selected_index]

        # -- handlers --------------------------------------------------------------------

        def listing(filter_values, sort_value, page_number):
            """Everything that depends on the filter: the page of thumbnails, its paths, the counts."""
            try:
                image_filter = build_filter(*filter_values)
                result = service.search(image_filter, sort=sort_value, page=int(page_number or 1))
                verdict_counts, defect_counts = service.counts(image_filter)
            except (QueryError, ReviewError) as error:
                raise gr.Error(str(error), print_exception=False) from None
            summaries = [queries.row_to_summary(r) for r in result.rows]
            thumbs = service.thumbnails(result.rows)
            captions = [caption(s) for s in summaries]
            first = (result.page - 1) * page_size
            info = (
                f"**{result.total:,}** image{'' if result.total == 1 else 's'} · page {result.page} of {result.pages}"
                + (f" · {first + 1}–{first + len(summaries)}" if summaries else "")
            )
            return {
                gallery: [(str(t), c) for t, c in zip(thumbs, captions)],
                page_info: info,
                counts: counts_markdown(verdict_counts, defect_counts),
                page_paths: [s["path"] for s in summaries],
                bulk: gr.update(choices=list(zip(captions, [s["path"] for s in summaries])), value=[]),
                page: result.page,
            }

        def inspect(path: str | None, index: int):
            if not path:
                return {
                    preview: None, details: "Select an image in the gallery.", scores: None,
                    crop: gr.update(value=None, visible=False), selected_path: None, selected_index: 0,
                }  # fmt: skip
            try:
                found = service.inspect(path)
            except ReviewError as error:
                raise gr.Error(str(error), print_exception=False) from None
            kind = {"sharpest": "sharpest region", "flattest": "flattest region (noise shows most there)"}
            return {
                preview: str(found.preview),
                details: details_markdown(found),
                scores: scores_for_label(found.defect_scores),
                crop: gr.update(
                    value=str(found.crop) if found.crop else None,
                    visible=found.crop is not None,
                    label=f"100 % view of the {kind.get(found.crop_kind, '')}",
                ),
                override_defect: found.summary["defect"] or found.summary["model_defect"] or gr.update(),
                selected_path: path,
                selected_index: index,
            }

        def refresh(*values):
            *filter_values, sort_value, page_number = values
            return listing(filter_values, sort_value, page_number)

        def refresh_first_page(*values):
            *filter_values, sort_value, _ = values
            return listing(filter_values, sort_value, 1)

        def turn_page(step):
            def handler(*values):
                *filter_values, sort_value, page_number = values
                return listing(filter_values, sort_value, int(page_number or 1) + step)

            return handler

        def on_select(paths, event: gr.SelectData):
            index = event.index if isinstance(event.index, int) else 0
            return inspect(paths[index] if 0 <= index < len(paths) else None, index)

        def step_image(step):
            def handler(paths, current, index, *values):
                target = neighbour(paths, current, step, fallback_index=index)
                if target is not None:
                    return {**inspect(paths[target], target), status: ""}
                # Past the end of the page: carry on with the next (or previous) page.
                *filter_values, sort_value, page_number = values
                new_page = int(page_number or 1) + (1 if step > 0 else -1)
                if new_page < 1:
                    return {status: "First image."}
                listed = listing(filter_values, sort_value, new_page)
                if listed[page] != new_page or not listed[page_paths]:
                    return {status: "Last image."}
                new_paths = listed[page_paths]
                position = 0 if step > 0 else len(new_paths) - 1
                return {**listed, **inspect(new_paths[position], position), status: ""}

            return handler

        def decide(verdict_value: str):
            def handler(path, defect_value, request: gr.Request):
                if not path:
                    return {status: "Select an image first."}
                reviewer = reviewer_name(request)
                try:
                    (row,) = service.override(
                        [path], verdict=verdict_value, defect=defect_value if verdict_value == "poor" else None,
                        reviewer=reviewer,
                    )  # fmt: skip
                except ReviewError as error:
                    return {status: f"⚠ {error}"}
                label = VERDICT_DISPLAY_NAMES[row["verdict"]]
                defect_text = f" ({DEFECT_DISPLAY_NAMES[row['defect']]})" if row["defect"] else ""
                return {status: f"{row['file_name']} marked **{label}**{defect_text} by {reviewer}. `u` undoes."}

            return handler

        def decide_bulk(verdict_value: str):
            def handler(paths, defect_value, request: gr.Request):
                if not paths:
                    return {status: "Tick images in “Bulk review” first."}
                reviewer = reviewer_name(request)
                try:
                    rows = service.override(
                        list(paths), verdict=verdict_value, defect=defect_value if verdict_value == "poor" else None,
                        reviewer=reviewer,
                    )  # fmt: skip
                except ReviewError as error:
                    return {status: f"⚠ {error}"}
                return {status: f"{len(rows)} images marked **{VERDICT_DISPLAY_NAMES[verdict_value]}** by {reviewer}."}

            return handler

        def undo_last(request: gr.Request):
            try:
                rows = service.undo(reviewer_name(request))
            except ReviewError as error:
                return {status: f"⚠ {error}"}
            names = ", ".join(r["file_name"] for r in rows[:5]) + (" …" if len(rows) > 5 else "")
            return {status: f"Undone: {names}."}

        def reinspect(path, index):
            # Gradio reads an empty dict as one value: name an unchanged output instead.
            return inspect(path, index) if path else {selected_path: None}

        def export(*values):
            *filter_values, sort_value = values
            try:
                target = service.export_csv(build_filter(*filter_values), sort=sort_value)
            except (QueryError, ReviewError) as error:
                raise gr.Error(str(error), print_exception=False) from None
            return gr.update(value=str(target), visible=True)

        def on_load(request: gr.Request):
            folder_choices = [("All folders", ALL_FOLDERS)] + [(f, f) for f in service.folders()]
            return {
                whoami: f"Reviewer: **{reviewer_name(request)}**",
                folder: gr.update(choices=folder_choices),
            }

        def analyse(upload_path):
            if not upload_path:
                return {upload_verdict: "Choose a file first.", upload_preview: None, upload_scores: None}
            try:
                result = service.analyze_upload(Path(upload_path))
            except ReviewError as error:
                return {upload_verdict: f"⚠ {error}", upload_preview: None, upload_scores: None}
            if result.verdict == "error":
                text = f"**Error**: {result.error}"
            else:
                defect_text = f" — {DEFECT_DISPLAY_NAMES[result.defect]}" if result.defect else ""
                text = f"**{VERDICT_DISPLAY_NAMES[result.verdict]}{defect_text}** · quality {result.quality:.3f}"
                text += f" · model `{result.model_version}`" + (f"\n\nfinding: {result.error}" if result.error else "")
            return {
                upload_verdict: text,
                upload_preview: str(service.renders.preview(Path(upload_path))),
                upload_scores: scores_for_label(result.defect_scores),
            }

        # -- wiring (UI events stay out of the API; the API is the gr.api endpoints below) --

        private = {"api_visibility": "private"}
        listing_inputs = [*filters, sort, page]
        demo.load(on_load, None, [whoami, folder], **private).then(refresh, listing_inputs, listing_outputs, **private)
        gr.on(
            [verdict.change, defect.change, quality_min.release, quality_max.release, reviewed.change, folder.change,
             date_from.submit, date_from.blur, date_to.submit, date_to.blur, name.submit, name.blur, sort.change],
            refresh_first_page, listing_inputs, listing_outputs, **private,
        )  # fmt: skip
        page.submit(refresh, listing_inputs, listing_outputs, **private)
        previous_page.click(turn_page(-1), listing_inputs, listing_outputs, **private)
        next_page.click(turn_page(+1), listing_inputs, listing_outputs, **private)
        gallery.select(on_select, [page_paths], inspect_outputs, **private)
        stepping_outputs = [*listing_outputs, *inspect_outputs, status]
        stepping_inputs = [page_paths, selected_path, selected_index, *listing_inputs]
        prev_image.click(step_image(-1), stepping_inputs, stepping_outputs, **private)
        next_image.click(step_image(+1), stepping_inputs, stepping_outputs, **private)
        # After any decision: the list (counts, captions, membership) and the inspected image change.
        for trigger, handler, inputs in (
            (mark_good, decide("good"), [selected_path, override_defect]),
            (mark_poor, decide("poor"), [selected_path, override_defect]),
            (bulk_good, decide_bulk("good"), [bulk, override_defect]),
            (bulk_poor, decide_bulk("poor"), [bulk, override_defect]),
            (undo, undo_last, None),
        ):
            trigger.click(handler, inputs, [status], **private).then(
                refresh, listing_inputs, listing_outputs, **private
            ).then(reinspect, [selected_path, selected_index], inspect_outputs, **private)
        bulk_all.click(lambda paths: gr.update(value=list(paths)), [page_paths], [bulk], **private)
        bulk_none.click(lambda: gr.update(value=[]), None, [bulk], **private)
        export_button.click(export, [*filters, sort], [export_file], **private)
        analyse_button.click(analyse, [upload], [upload_verdict, upload_preview, upload_scores], **private)

        _register_api(service, page_size)
    return demo


def _register_api(service: ReviewService, page_size: int) -> None:
    """The API: typed functions, so gradio_client callers get named, optional parameters."""

    def api_error(error: Exception) -> gr.Error:
        return gr.Error(str(error), print_exception=False)

    def search(
        verdict: str | None = None,
        defect: str | None = None,
        quality_min: float | None = None,
        quality_max: float | None = None,
        reviewed: str | None = None,
        folder: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        name: str | None = None,
        sort: str = queries.DEFAULT_SORT,
        page: int = 1,
        page_size: int = page_size,
    ) -> dict:
        """One page of images matching every given filter (all optional).

        verdict: poor|good|error; defect: a defect key; reviewed: yes|no; dates YYYY-MM-DD (analysis
        date); sort: quality_asc|quality_desc|date_desc|date_asc|name. Returns
        {columns: [path, verdict, defect, quality, reviewed, ...], rows: [[...], ...], total, page, pages, page_size}.
        """
        try:
            image_filter = build_filter(verdict, defect, quality_min, quality_max, reviewed, folder, date_from,
                                        date_to, name)  # fmt: skip
            result = service.search(
                image_filter, sort=sort or queries.DEFAULT_SORT, page=int(page or 1),
                page_size=max(1, min(int(page_size or 1), API_MAX_PAGE_SIZE)),
            )  # fmt: skip
        except (QueryError, ReviewError, ValueError) as error:
            raise api_error(error) from None
        return {**result.to_dict(), **api_table([queries.row_to_summary(r) for r in result.rows])}

    def counts(
        verdict: str | None = None,
        quality_min: float | None = None,
        quality_max: float | None = None,
        reviewed: str | None = None,
        folder: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        name: str | None = None,
    ) -> dict:
        """Images per verdict and per defect under the given filters: {verdicts: {...}, defects: {...}}."""
        try:
            image_filter = build_filter(verdict, None, quality_min, quality_max, reviewed, folder, date_from,
                                        date_to, name)  # fmt: skip
            verdicts, defects = service.counts(image_filter)
        except (QueryError, ReviewError, ValueError) as error:
            raise api_error(error) from None
        return {"verdicts": verdicts, "defects": defects}

    def override(path: str, verdict: str, defect: str | None = None, request: gr.Request = None) -> dict:
        """Record a reviewer's verdict (good|poor) and defect key (for poor; null keeps the model's)
        for one indexed image, in the index and in the file's XMP. Returns {columns, rows: [the updated row]}."""
        try:
            rows = service.override([path], verdict=verdict, defect=_blank_to_none(defect),
                                    reviewer=reviewer_name(request))  # fmt: skip
        except ReviewError as error:
            raise api_error(error) from None
        return api_table(rows)

    def override_bulk(paths: list[str], verdict: str, defect: str | None = None, request: gr.Request = None) -> dict:
        """The same decision for several images at once (one undo step). Returns {columns, rows}."""
        try:
            rows = service.override(list(paths), verdict=verdict, defect=_blank_to_none(defect),
                                    reviewer=reviewer_name(request))  # fmt: skip
        except ReviewError as error:
            raise api_error(error) from None
        return api_table(rows)

    def undo(request: gr.Request = None) -> dict:
        """Take back the caller's last override (single or bulk). Returns {columns, rows} as restored."""
        try:
            rows = service.undo(reviewer_name(request))
        except ReviewError as error:
            raise api_error(error) from None
        return api_table(rows)

    for fn in (search, counts, override, override_bulk, undo):
        gr.api(fn, api_name=fn.__name__)


def allowed_paths(settings: Settings) -> list[str]:
    """The only folder the server may serve files from: the render cache. Originals are never sent to
    the browser (only thumbnails, previews and crops the app rendered), so the watch folders, where
    strangers name and link files, are not in it."""
    return [str(Path(settings.ui.thumbnail_cache).resolve())]


def protected_files(settings: Settings) -> list[Path]:
    """Never served under any name: the index database (with its WAL files) and the config file."""
    database = Path(settings.index.database).resolve()
    paths = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    if settings.source is not None:
        paths.append(Path(settings.source).resolve())
    return paths


def blocked_paths(settings: Settings) -> list[str]:
    """Gradio's own by-name refusal of the protected files (the served-file guard also refuses them by inode)."""
    return [str(p) for p in protected_files(settings)]


def served_file_policy(settings: Settings) -> ServedFilePolicy:
    # Gradio's upload folder: the "Analyse an image" tab shows the reviewer's own upload back.
    return ServedFilePolicy(allowed_paths(settings), [gr_utils.get_upload_folder()], protected_files(settings))


def login_gate(credentials: dict[str, Credential]):
    """Gradio's ``auth=``: a coroutine doing throttled, logged password checks; None (no login) without accounts."""
    check = make_authenticator(credentials)
    return None if check is None else LoginGate(check).authenticate


def launch_options(settings: Settings, credentials: dict[str, Credential]) -> dict:
    """The keyword arguments for ``Blocks.launch``; the security rules live here, in one place."""
    return {
        "server_name": settings.ui.host,
        "server_port": settings.ui.port,
        "auth": login_gate(credentials),
        "auth_message": "PixelPerfect review: sign in with your reviewer account.",
        "allowed_paths": allowed_paths(settings),
        "blocked_paths": blocked_paths(settings),
        "app_kwargs": {"middleware": [
            Middleware(ServedFileGuard, policy=served_file_policy(settings)), Middleware(ClientAddressMiddleware),
        ]},
        "head": KEYBOARD_HEAD,
        "css": CSS,
        "ssr_mode": False,
        "enable_monitoring": False,
        "run_history": False,
        "mcp_server": False,
        "footer_links": ["api"],
        "show_error": True,
        "quiet": True,
    }


def launch_ui(settings: Settings, service: ReviewService, credentials: dict[str, Credential], **overrides):
    """Build and serve the app; returns what ``Blocks.launch`` returns (app, local URL, share URL)."""
    # Thumbnails are served in place rather than copied into Gradio's cache for every page shown.
    gr.set_static_paths([str(Path(settings.ui.thumbnail_cache).resolve())])
    Path(settings.ui.thumbnail_cache).mkdir(parents=True, exist_ok=True)
    demo = build_ui(settings, service)
    demo.queue(default_concurrency_limit=4)
    return demo, demo.launch(**{**launch_options(settings, credentials), **overrides})
