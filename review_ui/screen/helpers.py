"""Pure helpers of the review screen: filter values, captions, markdown, stepping, API tables (unit-tested)."""

from __future__ import annotations

import gradio as gr

from pixelperfect_daemon.labels import DEFECT_DISPLAY_NAMES, DEFECTS, VERDICT_DISPLAY_NAMES

from ..lightroom_export import CollectionPlan
from ..queries import ImageFilter, QueryError
from ..service import local_reviewer

API_MAX_PAGE_SIZE = 500
# API rows are lists under a "columns" header, not dicts: gradio_client takes any dict with a
# string "path" for a file to download, and would replace each row by a downloaded copy.
API_COLUMNS = (
    "path", "verdict", "defect", "quality", "reviewed", "file_name", "folder",
    "model_verdict", "model_defect", "reviewed_by", "reviewed_at", "analyzed_at", "error", "captured_at", "reason",
)  # fmt: skip
VERDICT_CHOICES = [("Poor", "poor"), ("Good", "good"), ("Error", "error"), ("All", "all")]
REVIEWED_CHOICES = [("All", "all"), ("Not reviewed", "no"), ("Reviewed", "yes")]
SORT_CHOICES = [
    ("Quality, worst first", "quality_asc"),
    ("Quality, best first", "quality_desc"),
    ("Taken, newest first", "capture_desc"),
    ("Taken, oldest first", "capture_asc"),
    ("Analysed, newest first", "date_desc"),
    ("Analysed, oldest first", "date_asc"),
    ("File name", "name"),
]
DEFECT_FILTER_CHOICES = [("All defects", "all")] + [(DEFECT_DISPLAY_NAMES[d], d) for d in DEFECTS]
DEFECT_OVERRIDE_CHOICES = [(DEFECT_DISPLAY_NAMES[d], d) for d in DEFECTS]
ALL_FOLDERS = "all"


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
        lines[1] = (
            f"**Error: tags not written** · model said {VERDICT_DISPLAY_NAMES.get(s['model_verdict'])}{model_defect}"
        )
    if s["reviewed"]:
        model = VERDICT_DISPLAY_NAMES.get(s["model_verdict"], "Error")
        model_defect = f" ({DEFECT_DISPLAY_NAMES[s['model_defect']]})" if s["model_defect"] else ""
        lines.append(f"reviewed by **{s['reviewed_by']}** at {s['reviewed_at']} · model said {model}{model_defect}")
    noise = "" if s.get("screen_noise") is None else f"noise at screen size **{s['screen_noise']:.1f}** · "
    lines.append(
        f"quality **{'–' if s['quality'] is None else format(s['quality'], '.3f')}** · {noise}"
        f"model `{inspection.model_version or '–'}` · analysed {s['analyzed_at'] or '–'}"
    )
    if s.get("error"):
        lines.append(f"{'tags not written (retried at the next rescan)' if tags_failed else 'finding'}: {s['error']}")
    exif = inspection.exif or {}
    facts = [exif.get(k) for k in ("camera", "lens", "iso", "shutter", "aperture", "focal_length")]
    size = f"{inspection.size[0]}×{inspection.size[1]}" if inspection.size else None
    lines.append(" · ".join(f for f in [*facts, size] if f) or "no EXIF")
    if s.get("captured_at"):
        lines.append(f"taken {s['captured_at'].replace('T', ' ')}")
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
    return {"columns": list(API_COLUMNS), "rows": [[s.get(c) for c in API_COLUMNS] for s in summaries]}


def reviewer_name(request: gr.Request | None) -> str:
    username = getattr(request, "username", None) if request is not None else None
    return username or local_reviewer()


def listing_key(filter_values, sort_value, page_number) -> list:
    """What a gallery page was listed for: a text box losing focus with this unchanged lists nothing."""
    return [*(None if v is None else str(v).strip() for v in filter_values), sort_value, int(page_number or 1)]


def pane_caption(summary: dict) -> str:
    """The name and verdict above a compare pane."""
    return f"**{summary['file_name']}** · {caption(summary).rsplit(' · ', 1)[0]}"


def burst_label(number: int, burst: dict) -> str:
    """How a burst is listed: its number, size and the time of its first frame."""
    return f"{number + 1}. {len(burst['paths'])} frames · {burst['first_captured_at'].replace('T', ' ')[:19]}"


def frame_caption(summary: dict, pick: str) -> str:
    return ("★ pick · " if summary["path"] == pick else "") + caption(summary)


def lightroom_summary(plan: CollectionPlan) -> str:
    """What the Lightroom export's smart collection selects, and the filter parts it cannot (named, never quoted)."""
    if not plan.rules:
        text = "No smart collection: images PixelPerfect could not analyse carry no keyword."
    else:
        text = "Smart collection: keywords " + " › ".join(rule.value for rule in plan.rules) + "."
    parts = [part for part in plan.cannot_select if part != "not analysed"]
    if parts:
        text += f" Lightroom cannot select by {', '.join(parts)}: it may show more images."
    return text + " `files.txt` in the zip lists exactly this filter's images; README.txt says how to import."


def rejects_summary(result: dict, *, move: bool) -> str:
    """What a copy or move of the rejects did, in one line (and the first failures)."""
    verb = "Moved" if move else "Copied"
    text = f"{verb} {len(result['done'])} Poor image{'' if len(result['done']) == 1 else 's'} to `{result['folder']}`."
    if result["failures"]:
        text += f" ⚠ not done: {'; '.join(result['failures'][:3])}" + (" …" if len(result["failures"]) > 3 else "")
    return text
