"""The review screen's behaviour: what each event reads, does through the service, and updates.

UI events stay out of the API (``api_visibility="private"``); the API is ``app._register_api``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from pixelperfect_daemon.labels import DEFECT_DISPLAY_NAMES, VERDICT_DISPLAY_NAMES

from .. import queries
from ..queries import QueryError
from ..service import ReviewError, ReviewService
from .browser import NAVIGATION_DONE_JS, TOGGLE_HEAT_JS, TOGGLE_ZOOM_JS
from .helpers import (
    ALL_FOLDERS,
    build_filter,
    burst_label,
    caption,
    counts_markdown,
    details_markdown,
    frame_caption,
    lightroom_summary,
    listing_key,
    neighbour,
    pane_caption,
    rejects_summary,
    reviewer_name,
    scores_for_label,
)  # fmt: skip
from .loupe import EMPTY, loupe_html
from .parts import COMPARE_PANES, AnalyseTab, Bursts, Compare, Filters, Gallery, Inspector

PRIVATE = {"api_visibility": "private"}
# Capture times read per live tick: bounded so a tick stays cheap on a fresh index of thousands.
CAPTURE_TIMES_PER_TICK = 200


@dataclass
class Screen:
    """Every component of the screen, the per-session state, and the service behind them."""

    service: ReviewService
    page_size: int
    whoami: gr.Markdown
    filters: Filters
    gallery: Gallery
    inspector: Inspector
    analyse_tab: AnalyseTab
    compare: Compare
    bursts: Bursts
    tabs: gr.Tabs
    burst_list: gr.State  # the bursts found, as Burst.to_dict()
    compare_paths: gr.State  # the images in the compare panes, in order
    page_paths: gr.State  # the paths shown on the gallery page, in order
    selected_path: gr.State
    selected_index: gr.State
    listed_for: gr.State  # listing_key of the page shown
    stamp: gr.State  # the index's change stamp when the page was listed

    # -- listing -------------------------------------------------------------------------------

    @property
    def listing_inputs(self) -> list:
        return [*self.filters.values, self.filters.sort, self.gallery.page]

    @property
    def listing_outputs(self) -> list:
        g = self.gallery
        return [g.gallery, g.page_info, self.filters.counts, self.page_paths, g.bulk, g.page, self.listed_for,
                self.stamp]  # fmt: skip

    @property
    def inspect_outputs(self) -> list:
        i = self.inspector
        return [i.loupe, i.details, i.scores, i.override_defect, self.selected_path, self.selected_index]

    def listing(self, filter_values, sort_value, page_number) -> dict:
        """Everything that depends on the filter: the page of thumbnails, its paths, the counts."""
        service, g = self.service, self.gallery
        with ThreadPoolExecutor(max_workers=1) as background:
            try:
                stamp = list(service.change_stamp())
                image_filter = build_filter(*filter_values)
                result = service.search(image_filter, sort=sort_value, page=int(page_number or 1))
                # Cold thumbnails are decoded while the index counts: the page waits for the slower one only.
                rendering = background.submit(service.thumbnails, result.rows)
                verdict_counts, defect_counts = service.counts(image_filter)
            except (QueryError, ReviewError) as error:
                raise gr.Error(str(error), print_exception=False) from None
            thumbs = rendering.result()
        summaries = [queries.row_to_summary(r) for r in result.rows]
        captions = [caption(s) for s in summaries]
        first = (result.page - 1) * self.page_size
        info = (
            f"**{result.total:,}** image{'' if result.total == 1 else 's'} · page {result.page} of {result.pages}"
            + (f" · {first + 1}–{first + len(summaries)}" if summaries else "")
        )
        return {
            g.gallery: [(str(t), c) for t, c in zip(thumbs, captions)],
            g.page_info: info,
            self.filters.counts: counts_markdown(verdict_counts, defect_counts),
            self.page_paths: [s["path"] for s in summaries],
            g.bulk: gr.update(choices=list(zip(captions, [s["path"] for s in summaries])), value=[]),
            g.page: result.page,
            self.listed_for: listing_key(filter_values, sort_value, result.page),
            self.stamp: stamp,
        }

    def refresh(self, *values):
        *filter_values, sort_value, page_number = values
        return self.listing(filter_values, sort_value, page_number)

    def refresh_first_page(self, *values):
        *filter_values, sort_value, _ = values
        return self.listing(filter_values, sort_value, 1)

    def refresh_if_changed(self, listed_for, *values):
        """A text box lost focus: list again only if its text changed since the page was listed.

        Re-listing an unchanged page would replace the thumbnails under the reviewer's first click.
        """
        *filter_values, sort_value, _ = values
        if listed_for and listing_key(filter_values, sort_value, 1)[:-1] == list(listed_for)[:-1]:
            return {self.stamp: gr.skip()}
        return self.listing(filter_values, sort_value, 1)

    def turn_page(self, step: int):
        def handler(*values):
            *filter_values, sort_value, page_number = values
            return self.listing(filter_values, sort_value, int(page_number or 1) + step)

        return handler

    def live(self, stamp, selected, *values):
        """Timer tick: when anyone analysed or reviewed something, list the same page again."""
        self.service.fill_capture_times(CAPTURE_TIMES_PER_TICK)
        try:
            now = list(self.service.change_stamp())
        except (QueryError, ReviewError):
            return {self.stamp: gr.skip()}
        if stamp is not None and now == list(stamp):
            return {self.stamp: gr.skip()}
        *filter_values, sort_value, page_number = values
        listed = self.listing(filter_values, sort_value, page_number)
        # The bulk ticks and the inspected image stay as the reviewer left them.
        listed[self.gallery.bulk] = gr.skip()
        if selected:
            try:
                listed[self.inspector.details] = details_markdown(self.service.inspect(selected))
            except ReviewError:
                pass  # the image left the index: its panel stays until the reviewer moves on
        return listed

    # -- inspecting ----------------------------------------------------------------------------

    def inspect(self, path: str | None, index: int) -> dict:
        i = self.inspector
        if not path:
            return {i.loupe: EMPTY, i.details: "Select an image in the gallery.", i.scores: None,
                    self.selected_path: None, self.selected_index: 0}  # fmt: skip
        try:
            found = self.service.inspect(path)
            view = self.service.loupe(path)
        except ReviewError as error:
            raise gr.Error(str(error), print_exception=False) from None
        return {
            i.loupe: loupe_html(view),
            i.details: details_markdown(found),
            i.scores: scores_for_label(found.defect_scores),
            i.override_defect: found.summary["defect"] or found.summary["model_defect"] or gr.skip(),
            self.selected_path: path,
            self.selected_index: index,
        }

    def inspect_and_prefetch(self, paths: list, index: int) -> dict:
        """Inspect ``paths[index]``, and render the next image's loupe while the reviewer looks at it."""
        shown = self.inspect(paths[index] if 0 <= index < len(paths) else None, index)
        self.service.prefetch_loupe(paths[index + 1] if 0 <= index + 1 < len(paths) else None)
        return shown

    def on_select(self, paths, event: gr.SelectData):
        return self.inspect_and_prefetch(paths, event.index if isinstance(event.index, int) else 0)

    def step_image(self, step: int):
        def handler(paths, current, index, *values):
            status = self.inspector.status
            target = neighbour(paths, current, step, fallback_index=index)
            if target is not None:
                return {**self.inspect_and_prefetch(paths, target), status: ""}
            # Past the end of the page: carry on with the next (or previous) page.
            *filter_values, sort_value, page_number = values
            new_page = int(page_number or 1) + (1 if step > 0 else -1)
            if new_page < 1:
                return {status: "First image."}
            listed = self.listing(filter_values, sort_value, new_page)
            if listed[self.gallery.page] != new_page or not listed[self.page_paths]:
                return {status: "Last image."}
            new_paths = listed[self.page_paths]
            position = 0 if step > 0 else len(new_paths) - 1
            return {**listed, **self.inspect_and_prefetch(new_paths, position), status: ""}

        return handler

    def reinspect(self, path, index):
        # Gradio reads an empty dict as one value: name an unchanged output instead.
        return self.inspect(path, index) if path else {self.selected_path: None}

    # -- deciding ------------------------------------------------------------------------------

    def _override(self, paths, verdict_value, defect_value, request) -> tuple[list[dict] | None, str]:
        reviewer = reviewer_name(request)
        try:
            rows = self.service.override(
                list(paths), verdict=verdict_value, defect=defect_value if verdict_value == "poor" else None,
                reviewer=reviewer,
            )  # fmt: skip
        except ReviewError as error:
            return None, f"⚠ {error}"
        return rows, reviewer

    def decide(self, verdict_value: str):
        def handler(path, defect_value, request: gr.Request):
            status = self.inspector.status
            if not path:
                return {status: "Select an image first."}
            rows, reviewer = self._override([path], verdict_value, defect_value, request)
            if rows is None:
                return {status: reviewer}
            (row,) = rows
            label = VERDICT_DISPLAY_NAMES[row["verdict"]]
            defect_text = f" ({DEFECT_DISPLAY_NAMES[row['defect']]})" if row["defect"] else ""
            return {status: f"{row['file_name']} marked **{label}**{defect_text} by {reviewer}. `u` undoes."}

        return handler

    def decide_bulk(self, verdict_value: str):
        def handler(paths, defect_value, request: gr.Request):
            status = self.inspector.status
            if not paths:
                return {status: "Tick images in “Bulk review” first."}
            rows, reviewer = self._override(paths, verdict_value, defect_value, request)
            if rows is None:
                return {status: reviewer}
            return {status: f"{len(rows)} images marked **{VERDICT_DISPLAY_NAMES[verdict_value]}** by {reviewer}."}

        return handler

    def undo_last(self, request: gr.Request):
        status = self.inspector.status
        try:
            rows = self.service.undo(reviewer_name(request))
        except ReviewError as error:
            return {status: f"⚠ {error}"}
        names = ", ".join(r["file_name"] for r in rows[:5]) + (" …" if len(rows) > 5 else "")
        return {status: f"Undone: {names}."}

    # -- comparing -----------------------------------------------------------------------------

    @property
    def compare_outputs(self) -> list:
        c = self.compare
        return [*c.panes, *c.columns, *c.names, c.status, self.compare_paths, self.tabs]

    def open_compare(self, ticked):
        c = self.compare
        paths = list(dict.fromkeys(ticked or []))
        if not 2 <= len(paths) <= COMPARE_PANES:
            return {self.inspector.status: f"Tick 2 to {COMPARE_PANES} images to compare (ticked: {len(paths)})."}
        try:
            views = [self.service.loupe(p) for p in paths]
            summaries = [queries.row_to_summary(self.service.row(p)) for p in paths]
        except ReviewError as error:
            return {self.inspector.status: f"⚠ {error}"}
        updates = {c.status: "", self.compare_paths: paths, self.tabs: gr.Tabs(selected="compare")}
        for index in range(COMPARE_PANES):
            shown = index < len(paths)
            updates[c.panes[index]] = loupe_html(views[index], pane=index) if shown else EMPTY
            updates[c.columns[index]] = gr.Column(visible=shown)
            updates[c.names[index]] = pane_caption(summaries[index]) if shown else ""
        return updates

    def decide_pane(self, index: int, verdict_value: str):
        def handler(paths, request: gr.Request):
            c = self.compare
            if index >= len(paths or []):
                return {c.status: "No image in this pane."}
            rows, reviewer = self._override([paths[index]], verdict_value, None, request)
            if rows is None:
                return {c.status: reviewer}
            return {c.names[index]: pane_caption(rows[0]),
                    c.status: f"{rows[0]['file_name']} marked **{VERDICT_DISPLAY_NAMES[verdict_value]}** by {reviewer}."}  # fmt: skip

        return handler

    # -- bursts ---------------------------------------------------------------------------------

    def find_bursts(self, *filter_values):
        b = self.bursts
        try:
            found = [burst.to_dict() for burst in self.service.bursts(build_filter(*filter_values))]
        except (QueryError, ReviewError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        choices = [(burst_label(i, burst), i) for i, burst in enumerate(found)]
        shown = self.show_burst(found, 0 if found else None)
        return {**shown, self.burst_list: found, b.choice: gr.update(choices=choices, value=0 if found else None),
                b.status: f"{len(found)} burst{'' if len(found) == 1 else 's'} found."}  # fmt: skip

    def show_burst(self, found, number):
        b = self.bursts
        if number is None or not found or not 0 <= int(number) < len(found):
            return {b.frames: []}
        burst = found[int(number)]
        rows = [self.service.row(path) for path in burst["paths"]]
        thumbs = self.service.thumbnails(rows)
        captions = [frame_caption(queries.row_to_summary(r), burst["pick"]) for r in rows]
        return {b.frames: [(str(t), c) for t, c in zip(thumbs, captions)]}

    def accept_burst(self, found, number, request: gr.Request):
        b = self.bursts
        if number is None or not found or not 0 <= int(number) < len(found):
            return {b.status: "Find bursts and choose one first."}
        burst = found[int(number)]
        try:
            rows = self.service.cull_burst(burst["paths"], burst["pick"], reviewer=reviewer_name(request))
        except ReviewError as error:
            return {b.status: f"⚠ {error}"}
        following = int(number) + 1 if int(number) + 1 < len(found) else int(number)
        return {**self.show_burst(found, following), b.choice: following,
                b.status: f"Kept {rows[0]['file_name']}; {len(rows) - 1} rejected as duplicates. `u` undoes."}  # fmt: skip

    # -- the rest ------------------------------------------------------------------------------

    def export(self, *values):
        *filter_values, sort_value = values
        try:
            target = self.service.export_csv(build_filter(*filter_values), sort=sort_value)
        except (QueryError, ReviewError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        return gr.update(value=str(target), visible=True)

    def export_for_lightroom(self, *values):
        *filter_values, sort_value = values
        try:
            image_filter = build_filter(*filter_values)
            export = self.service.export_lightroom(image_filter, sort=sort_value)
        except (QueryError, ReviewError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        return gr.update(value=str(export.path), visible=True), lightroom_summary(export.plan)

    def export_rejects(self, move: bool):
        def handler(*filter_values):
            try:
                result = self.service.export_rejects(build_filter(*filter_values), move=move)
            except (QueryError, ReviewError) as error:
                return f"⚠ {error}"
            return rejects_summary(result, move=move)

        return handler

    def on_load(self, request: gr.Request):
        folder_choices = [("All folders", ALL_FOLDERS)] + [(f, f) for f in self.service.folders()]
        return {
            self.whoami: f"Reviewer: **{reviewer_name(request)}**",
            self.filters.folder: gr.update(choices=folder_choices),
        }

    def analyse(self, upload_path):
        a = self.analyse_tab
        if not upload_path:
            return {a.upload_verdict: "Choose a file first.", a.upload_preview: None, a.upload_scores: None}
        try:
            result = self.service.analyze_upload(Path(upload_path))
        except ReviewError as error:
            return {a.upload_verdict: f"⚠ {error}", a.upload_preview: None, a.upload_scores: None}
        if result.verdict == "error":
            text = f"**Error**: {result.error}"
        else:
            defect_text = f" — {DEFECT_DISPLAY_NAMES[result.defect]}" if result.defect else ""
            text = f"**{VERDICT_DISPLAY_NAMES[result.verdict]}{defect_text}** · quality {result.quality:.3f}"
            if result.screen_noise is not None:
                text += f" · noise at screen size {result.screen_noise:.1f}"
            text += f" · model `{result.model_version}`" + (f"\n\nfinding: {result.error}" if result.error else "")
        return {
            a.upload_verdict: text,
            a.upload_preview: str(self.service.renders.preview(Path(upload_path))),
            a.upload_scores: scores_for_label(result.defect_scores),
        }


def wire(demo: gr.Blocks, screen: Screen, refresh_seconds: float) -> None:
    """Connect every event of ``screen``."""
    s, f, g, i, a = screen, screen.filters, screen.gallery, screen.inspector, screen.analyse_tab
    listing_inputs, listing_outputs, inspect_outputs = s.listing_inputs, s.listing_outputs, s.inspect_outputs
    demo.load(s.on_load, None, [s.whoami, f.folder], **PRIVATE).then(s.refresh, listing_inputs, listing_outputs,
                                                                       **PRIVATE)  # fmt: skip
    gr.on(
        [f.verdict.change, f.defect.change, f.quality_min.release, f.quality_max.release, f.reviewed.change,
         f.folder.change, f.sort.change],
        s.refresh_first_page, listing_inputs, listing_outputs, **PRIVATE,
    )  # fmt: skip
    gr.on(
        [f.date_from.submit, f.date_from.blur, f.date_to.submit, f.date_to.blur, f.name.submit, f.name.blur],
        s.refresh_if_changed, [s.listed_for, *listing_inputs], listing_outputs, show_progress="hidden", **PRIVATE,
    )  # fmt: skip
    g.page.submit(s.refresh, listing_inputs, listing_outputs, **PRIVATE)
    g.previous_page.click(s.turn_page(-1), listing_inputs, listing_outputs, **PRIVATE)
    g.next_page.click(s.turn_page(+1), listing_inputs, listing_outputs, **PRIVATE)

    # Navigation tells the page when the new image is shown: keys typed meanwhile wait for it.
    g.gallery.select(s.on_select, [s.page_paths], inspect_outputs, **PRIVATE).then(None, js=NAVIGATION_DONE_JS)
    stepping_outputs = [*listing_outputs, *inspect_outputs, i.status]
    stepping_inputs = [s.page_paths, s.selected_path, s.selected_index, *listing_inputs]
    for button, step in ((i.prev_image, -1), (i.next_image, +1)):
        button.click(s.step_image(step), stepping_inputs, stepping_outputs, **PRIVATE).then(None, js=NAVIGATION_DONE_JS)

    # After any decision: the list (counts, captions, membership) and the inspected image change.
    for trigger, handler, inputs in (
        (i.mark_good, s.decide("good"), [s.selected_path, i.override_defect]),
        (i.mark_poor, s.decide("poor"), [s.selected_path, i.override_defect]),
        (g.bulk_good, s.decide_bulk("good"), [g.bulk, i.override_defect]),
        (g.bulk_poor, s.decide_bulk("poor"), [g.bulk, i.override_defect]),
        (i.undo, s.undo_last, None),
    ):
        trigger.click(handler, inputs, [i.status], **PRIVATE).then(
            s.refresh, listing_inputs, listing_outputs, **PRIVATE
        ).then(s.reinspect, [s.selected_path, s.selected_index], inspect_outputs, **PRIVATE)
    g.bulk_all.click(lambda paths: gr.update(value=list(paths)), [s.page_paths], [g.bulk], **PRIVATE)
    g.bulk_none.click(lambda: gr.update(value=[]), None, [g.bulk], **PRIVATE)
    f.export_button.click(s.export, [*f.values, f.sort], [f.export_file], **PRIVATE)
    f.export_lightroom.click(
        s.export_for_lightroom, [*f.values, f.sort], [f.lightroom_file, f.lightroom_status], **PRIVATE
    )
    f.copy_rejects.click(s.export_rejects(move=False), f.values, [f.rejects_status], **PRIVATE)
    f.move_rejects.click(s.export_rejects(move=True), f.values, [f.rejects_status], **PRIVATE).then(
        s.refresh, listing_inputs, listing_outputs, **PRIVATE
    )
    a.analyse_button.click(s.analyse, [a.upload], [a.upload_verdict, a.upload_preview, a.upload_scores], **PRIVATE)
    g.compare.click(s.open_compare, [g.bulk], [*s.compare_outputs, i.status], **PRIVATE)
    for index in range(COMPARE_PANES):
        for button, verdict in ((s.compare.goods[index], "good"), (s.compare.poors[index], "poor")):
            button.click(s.decide_pane(index, verdict), [s.compare_paths], [s.compare.names[index], s.compare.status],
                         **PRIVATE).then(s.refresh, listing_inputs, listing_outputs, **PRIVATE)  # fmt: skip
    b = s.bursts
    b.find.click(s.find_bursts, f.values, [s.burst_list, b.choice, b.frames, b.status], **PRIVATE)
    b.choice.input(s.show_burst, [s.burst_list, b.choice], [b.frames], **PRIVATE)
    b.accept.click(s.accept_burst, [s.burst_list, b.choice], [b.frames, b.choice, b.status], **PRIVATE).then(
        s.refresh, listing_inputs, listing_outputs, **PRIVATE
    )
    i.zoom.click(None, js=TOGGLE_ZOOM_JS)
    i.heat.click(None, js=TOGGLE_HEAT_JS)

    if refresh_seconds > 0:
        timer = gr.Timer(refresh_seconds)
        timer.tick(
            s.live, [s.stamp, s.selected_path, *listing_inputs], [*listing_outputs, i.details],
            show_progress="hidden", **PRIVATE,
        )  # fmt: skip
