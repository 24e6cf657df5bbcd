"""The Gradio review app: browse and filter the index, inspect an image, override its verdict.

``build_ui`` only builds the Blocks (importable and testable without a server); ``launch_options``
says how it must be served (accounts, the only folders it may serve, the keyboard script) and
``launch_ui`` does both. Every reviewer action is also a named API endpoint (``/search``,
``/override``, ``/override_bulk``, ``/undo``, ``/counts``, ``/heatmap``, ``/bursts``, ``/cull_burst``,
``/export_rejects``, ``/export_lightroom``) for
``gradio_client``. The screen itself lives in ``screen/``: its parts, their wiring, the browser script
and the pure helpers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
from gradio import utils as gr_utils
from starlette.middleware import Middleware

from pixelperfect_daemon.config import Settings

from . import queries
from .auth import Credential, make_authenticator
from .logins import ClientAddressMiddleware, LoginGate
from .queries import QueryError
from .screen import browser
from .screen.helpers import (  # noqa: F401  (the screen's helpers, importable from here as before)
    API_COLUMNS,
    API_MAX_PAGE_SIZE,
    _blank_to_none,
    api_table,
    build_filter,
    caption,
    counts_markdown,
    details_markdown,
    neighbour,
    reviewer_name,
    scores_for_label,
)
from .screen.parts import build_analyse_tab, build_bursts, build_compare, build_filters, build_gallery, build_inspector
from .screen.wiring import Screen, wire
from .served_files import ServedFileGuard, ServedFilePolicy
from .service import ReviewError, ReviewService

log = logging.getLogger(__name__)

KEYBOARD_HEAD = browser.HEAD
CSS = browser.CSS


def build_ui(settings: Settings, service: ReviewService) -> gr.Blocks:
    """The review app for ``settings``; every read and write goes through ``service``."""
    with gr.Blocks(title="PixelPerfect review", analytics_enabled=False, fill_width=True) as demo:
        states = {name: gr.State(value) for name, value in
                  (("page_paths", []), ("selected_path", None), ("selected_index", 0), ("listed_for", None),
                   ("stamp", None), ("compare_paths", []), ("burst_list", []))}  # fmt: skip
        with gr.Row():
            gr.Markdown("## PixelPerfect review")
            whoami = gr.Markdown(elem_id="whoami")
        with gr.Tabs(selected="review", elem_id="tabs") as tabs:
            with gr.Tab("Review", id="review"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=240):
                        filters = build_filters()
                    with gr.Column(scale=3, min_width=480):
                        gallery = build_gallery()
                    with gr.Column(scale=2, min_width=380):
                        inspector = build_inspector()
            with gr.Tab("Compare", id="compare"):
                compare = build_compare()
            with gr.Tab("Bursts", id="bursts"):
                bursts = build_bursts(settings.ui.burst_gap_seconds)
            with gr.Tab("Analyse an image", id="analyse"):
                analyse_tab = build_analyse_tab()
        screen = Screen(service, settings.ui.page_size, whoami, filters, gallery, inspector, analyse_tab, compare, bursts, tabs,
                        **states)  # fmt: skip
        wire(demo, screen, settings.ui.refresh_seconds)
        _register_api(service, settings.ui.page_size)
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

    def heatmap(path: str) -> dict:
        """Where each defect's evidence is in the image: {rows, columns, scores: {defect: rows x columns
        in [0, 1]}, hottest: {defect: [row, column]}} (computed on first request, then cached)."""
        try:
            heat = service.heatmap(path)
        except ReviewError as error:
            raise api_error(error) from None
        if heat is None:
            raise api_error(ReviewError(f"cannot read {Path(path).name} to map its defects"))
        return {**heat.to_dict(), "hottest": {key: list(heat.hottest(key)) for key in heat.scores}}

    def bursts(
        verdict: str | None = None,
        defect: str | None = None,
        reviewed: str | None = None,
        folder: str | None = None,
        name: str | None = None,
        gap_seconds: float | None = None,
    ) -> dict:
        """Bursts among the images matching the filters: frames taken within gap_seconds (default: the config's)
        that look alike. Returns {bursts: [{paths, pick, first_captured_at, last_captured_at}, ...]}."""
        try:
            image_filter = build_filter(verdict, defect, None, None, reviewed, folder, None, None, name)
            found = service.bursts(image_filter, gap_seconds=gap_seconds)
        except (QueryError, ReviewError, ValueError) as error:
            raise api_error(error) from None
        return {"bursts": [burst.to_dict() for burst in found]}

    def cull_burst(paths: list[str], pick: str, request: gr.Request = None) -> dict:
        """Keep ``pick`` as Good and mark the other frames Poor (defect Other, reason duplicate); one undo step."""
        try:
            rows = service.cull_burst(list(paths), pick, reviewer=reviewer_name(request))
        except ReviewError as error:
            raise api_error(error) from None
        return api_table(rows)

    def export_rejects(
        move: bool = False,
        defect: str | None = None,
        reviewed: str | None = None,
        folder: str | None = None,
        name: str | None = None,
    ) -> dict:
        """Copy (move=false) or move every Poor image matching the filters, with its sidecars, into [ui]
        reject_folder; a move keeps the index and reviews with the files. Returns {folder, done: [[old, new]],
        failures}."""
        try:
            image_filter = build_filter("poor", defect, None, None, reviewed, folder, None, None, name)
            return service.export_rejects(image_filter, move=bool(move))
        except (QueryError, ReviewError, ValueError) as error:
            raise api_error(error) from None

    def export_lightroom(
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
    ) -> dict:
        """Every image matching the /search filters, for Lightroom Classic: {file: a zip (keyword list, smart
        collection .lrsmcol, files.txt, CSV, README), images, keywords: [the collection's keyword words],
        not_in_lightroom: [filter parts Lightroom cannot select by; files.txt is exact]}."""
        try:
            image_filter = build_filter(verdict, defect, quality_min, quality_max, reviewed, folder, date_from,
                                        date_to, name)  # fmt: skip
            export = service.export_lightroom(image_filter, sort=sort or queries.DEFAULT_SORT)
        except (QueryError, ReviewError, ValueError) as error:
            raise api_error(error) from None
        return {"file": {"path": str(export.path), "meta": {"_type": "gradio.FileData"}}, "images": export.images,
                "keywords": [rule.value for rule in export.plan.rules],
                "not_in_lightroom": list(export.plan.not_expressed)}  # fmt: skip

    for fn in (search, counts, override, override_bulk, undo, heatmap, bursts, cull_burst, export_rejects,
               export_lightroom):  # fmt: skip
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
        "app_kwargs": {
            "middleware": [
                Middleware(ServedFileGuard, policy=served_file_policy(settings)),
                Middleware(ClientAddressMiddleware),
            ]
        },
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
