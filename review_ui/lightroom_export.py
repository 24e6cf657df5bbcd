"""What a Lightroom Classic user imports to find a review filter's images: keyword list, smart collection, file list.

Pure builders, text in and text out; ``ReviewService.export_lightroom`` packs them into a zip.

- **Keyword list** (Metadata > Import Keywords): UTF-8 text, one keyword per line, a child indented
  one tab deeper than its parent; ``[name]`` is a keyword not included on export, ``{name}`` a synonym
  of the keyword above it. The format as darktable reads and writes it (``dt_tag_import`` /
  ``dt_tag_export`` in darktable-org/darktable ``src/common/tags.c``).
- **Smart collection settings** (``.lrsmcol``; right-click a collection set > Import Smart Collection
  Settings): a Lua table ``s = { title, type = "LibrarySmartCollection", value = { {criteria, operation,
  value, value2}, ..., combine }, version = 0 }``. The shape follows files Lightroom exported (the
  "Adobe Lightroom Classic Library Smart Collections" page of the adnasa/post-processing-boilerplate
  wiki) and fdenivac/Lightroom-SQL-tools (``lrtools/lrsmartcoll.py``), which runs such files against a
  catalogue: ``keywords`` rules match keyword names (and every keyword below a match), ``words`` a
  whole word, and a value's words are matched one by one.
- **File list**: every matched path, one per line.

Lightroom sees the keywords the daemon writes (``PixelPerfect|Poor|Blur``) once it has read the
files' metadata; it cannot see the quality score, the review, the analysis date or the index's
folders, so those parts of a filter are named in the README instead, and the file list is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pixelperfect_daemon.labels import VERDICT_DISPLAY_NAMES, defect_display_name
from pixelperfect_daemon.metadata import KEYWORD_ROOT, pixelperfect_keywords

from .queries import ImageFilter

COLLECTION_TYPE = "LibrarySmartCollection"
# The keyword list's markers: a name starting or ending with one would be read as something else.
_KEYWORD_MARKERS_START = ("[", "{", "~", " ", ",", ";")
_KEYWORD_MARKERS_END = (",", ";", " ")


@dataclass(frozen=True)
class Rule:
    """One criterion of a smart collection, as Lightroom stores it."""

    criteria: str
    operation: str
    value: str
    value2: str = ""


@dataclass(frozen=True)
class CollectionPlan:
    """How much of a filter Lightroom can select: the rules, and the parts it cannot express."""

    title: str
    rules: tuple[Rule, ...]  # empty: Lightroom has nothing to select these images by
    not_expressed: tuple[str, ...]  # what the filter asks beyond the rules, with its values, for the README
    cannot_select: tuple[str, ...] = ()  # the same parts by name only ("quality", "folder"), for the screen


# -- keywords ---------------------------------------------------------------------------------


def keyword_paths(summaries: Iterable[dict]) -> list[str]:
    """The PixelPerfect keyword paths (``PixelPerfect|Poor|Blur``) the daemon writes for these images, sorted;
    images that could not be analysed carry none."""
    paths: set[str] = set()
    for summary in summaries:
        if summary["verdict"] in VERDICT_DISPLAY_NAMES:
            paths.update(pixelperfect_keywords(summary["verdict"], summary["defect"], summary.get("reason"))[0])
    return sorted(paths, key=lambda path: path.split("|"))


def check_keyword_name(name: str) -> str:
    """``name`` if one line of the keyword list can hold it unchanged, else ValueError."""
    if not name or any(c in name for c in "\t\r\n") or name.startswith(_KEYWORD_MARKERS_START) or (
        name.endswith(_KEYWORD_MARKERS_END)
    ):  # fmt: skip
        raise ValueError(f"{name!r} cannot be a line of a Lightroom keyword list")
    return name


def keyword_list_text(paths: Iterable[str]) -> str:
    """Lightroom's keyword import text for hierarchical keyword paths (``A|B|C``): each level once, tab-indented."""
    lines, written = [], set()
    for path in sorted(set(paths), key=lambda p: p.split("|")):
        levels = [check_keyword_name(name) for name in path.split("|")]
        for depth in range(len(levels)):
            if tuple(levels[: depth + 1]) not in written:
                written.add(tuple(levels[: depth + 1]))
                lines.append("\t" * depth + levels[depth])
    return "".join(line + "\n" for line in lines)


# -- the smart collection ---------------------------------------------------------------------


def plan_collection(image_filter: ImageFilter) -> CollectionPlan:
    """The keyword rules that select ``image_filter``'s images in Lightroom, and what they leave out."""
    f = image_filter
    words = [KEYWORD_ROOT]
    if f.verdict == "error":
        words = []  # nothing was written into these files
    elif f.verdict is not None:
        words.append(VERDICT_DISPLAY_NAMES[f.verdict])
    if f.defect is not None and words:
        if f.verdict is None:
            words.append(VERDICT_DISPLAY_NAMES["poor"])  # only a Poor image has a defect
        words.append(defect_display_name(f.defect))
    rules = tuple(Rule("keywords", "words", word) for word in words)
    parts, details = [], []

    def cannot_select(part: str, detail: str) -> None:
        parts.append(part)
        details.append(detail)

    if not rules:
        cannot_select("not analysed", "images PixelPerfect could not analyse carry no PixelPerfect keyword")
    if (f.quality_min is not None and f.quality_min > 0.0) or (f.quality_max is not None and f.quality_max < 1.0):
        low, high = f.quality_min or 0.0, 1.0 if f.quality_max is None else f.quality_max
        cannot_select("quality", f"quality {low:.2f} to {high:.2f} (XMP-pixelperfect:Quality is not searchable)")
    if f.reviewed is not None:
        cannot_select("reviewed", "reviewed" if f.reviewed else "not reviewed")
    if f.folder is not None:
        cannot_select("folder", f"folder {f.folder} (Lightroom's folders may be named otherwise)")
    if f.date_from is not None or f.date_to is not None:
        cannot_select("analysis dates", f"analysed from {f.date_from or 'the start'} to {f.date_to or 'today'} "
                                        "(Lightroom knows capture dates, not analysis dates)")  # fmt: skip
    if f.name is not None:
        cannot_select("file name", f"file name contains {f.name} (Lightroom may have renamed files on import)")
    title = " ".join(words[:1] + [w.replace("/", "-") for w in words[1:]]) or KEYWORD_ROOT
    return CollectionPlan(title, rules, tuple(details), tuple(parts))


def lua_string(text: str) -> str:
    """``text`` as a double-quoted Lua 5.1 string literal (Lightroom's Lua): printable characters as they
    are, every other byte of its UTF-8 as a three-digit ``\\ddd`` escape, so no name breaks the table."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and not "\ud800" <= char <= "\udfff":
            out.append(char)
        else:
            out.extend(f"\\{byte:03d}" for byte in char.encode("utf-8", "surrogateescape"))
    out.append('"')
    return "".join(out)


def smart_collection_text(plan: CollectionPlan, collection_id: str, combine: str = "intersect") -> str:
    """The ``.lrsmcol`` file of ``plan``: its rules joined by ``combine`` ("intersect": all must match)."""
    if not plan.rules:
        raise ValueError("a smart collection needs at least one rule")
    lines = ["s = {", f"\tid = {lua_string(collection_id)},", f"\tinternalName = {lua_string(plan.title)},",
             f"\ttitle = {lua_string(plan.title)},", f"\ttype = {lua_string(COLLECTION_TYPE)},", "\tvalue = {"]  # fmt: skip
    for rule in plan.rules:
        lines += ["\t\t{"]
        lines += [
            f"\t\t\t{key} = {lua_string(getattr(rule, key))}," for key in ("criteria", "operation", "value", "value2")
        ]
        lines += ["\t\t},"]
    lines += [f"\t\tcombine = {lua_string(combine)},", "\t},", "\tversion = 0,", "}"]
    return "\n".join(lines) + "\n"


# -- the file list ----------------------------------------------------------------------------


def file_list_text(paths: Iterable[str]) -> str:
    """One indexed path per line, in the index's own text (``common.path_to_text``: ``\\\\`` a backslash,
    ``\\xHH`` a byte that is not UTF-8); a line break inside a name is written ``\\x0a`` / ``\\x0d`` the
    same way, so ``common.text_to_path`` gives every file back."""
    return "".join(path.replace("\n", "\\x0a").replace("\r", "\\x0d") + "\n" for path in paths)


# -- the README -------------------------------------------------------------------------------


def readme_text(plan: CollectionPlan, *, images: int, keywords_file: str, collection_file: str | None,
                files_file: str, csv_file: str) -> str:  # fmt: skip
    """What is in the export and how to import it, and which parts of the filter Lightroom cannot select by."""
    rules = " and ".join(f'keywords contain the word "{rule.value}"' for rule in plan.rules)
    lines = [
        f"PixelPerfect export for Lightroom Classic: {images} image(s).",
        "",
        f"{keywords_file}: Metadata > Import Keywords adds the PixelPerfect keyword tree these images carry.",
        "Then select the images in the Library and Metadata > Read Metadata from Files, so Lightroom sees the",
        "keywords PixelPerfect wrote into them (or their .xmp sidecars).",
    ]
    if collection_file is not None:
        lines += [f"{collection_file}: right-click a collection set > Import Smart Collection Settings.",
                  f"It selects images whose {rules}."]  # fmt: skip
    lines += [
        f"{files_file}: every image's path, one per line (the exact list).",
        f"{csv_file}: the same list with verdicts.",
    ]
    if plan.not_expressed:
        lines += ["", "Lightroom cannot select by these parts of the filter, so the smart collection may hold more:"]
        lines += [f"- {one_line}" for one_line in (" ".join(part.split()) for part in plan.not_expressed)]
        lines += [f"Use {files_file} for exactly the filter's images."]
    return "\n".join(lines) + "\n"
