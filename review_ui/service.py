"""What a reviewer can do, independent of Gradio: search, inspect, override (one or many), undo, export, analyse.

An override lands in two places: the index (``reviewed_*`` columns, through ``ImageIndex``) and the
file's XMP (through the daemon's own ``MetadataWriter``). The index is written first: the daemon
re-tags a changed file from the index, so it must already know the review when it sees the file
change; if the XMP write then fails, the index row is put back as it was.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import io
import logging
import os
import stat
import tempfile
import threading
import uuid
import zipfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from pixelperfect_daemon.common import file_hash, text_to_path, utc_now
from pixelperfect_daemon.config import Settings
from pixelperfect_daemon.index import REVIEW_COLUMNS
from pixelperfect_daemon.labels import DEFECTS

from . import lightroom_export, queries
from .bursts import Burst, Frame, difference_hash, group_bursts
from .capture_time import read_capture_time
from .exif_summary import ExifReader
from .heatmap import HeatMap, compute_heatmap
from .queries import ImageFilter, IndexReader, SearchPage
from .rejects import RejectFolderError, carry, check_reject_folder, target_path
from .thumbnails import RenderCache

log = logging.getLogger(__name__)

UNDO_DEPTH = 50
# Burst grouping looks at this many images of a filter at most, oldest first.
MAX_BURST_IMAGES = 5000
CSV_COLUMNS = (
    "path", "file_name", "folder", "verdict", "defect", "quality", "reviewed",
    "model_verdict", "model_defect", "reviewed_by", "reviewed_at", "analyzed_at", "error",
)  # fmt: skip


class ReviewError(Exception):
    """A reviewer's request cannot be carried out; str() is a one-line reason to show them."""


def local_reviewer() -> str:
    """Who reviews when the UI runs without accounts (loopback only): the local OS user."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something meaningful
        return "local"


def csv_safe(value):
    """Spreadsheets run cells starting with = + - @ as formulas; a leading quote keeps them text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


@dataclass(frozen=True)
class Inspection:
    summary: dict
    defect_scores: dict[str, float] | None
    model_version: str | None
    size: tuple[int, int] | None
    exif: dict[str, str | None]


@dataclass(frozen=True)
class LoupeView:
    """What the loupe shows: a full-resolution derivative, where to centre it, and the heat-map."""

    path: str
    image: Path  # the derivative under the render cache, never the original
    size: tuple[int, int]  # of ``image``
    focus: tuple[float, float]  # (x, y) as fractions of the width and height
    defect: str | None  # whose evidence the focus and the heat-map show
    heatmap: HeatMap | None


@dataclass(frozen=True)
class LightroomExport:
    """The zip ``export_lightroom`` wrote, how many images it lists, and the smart collection's plan."""

    path: Path
    images: int
    plan: lightroom_export.CollectionPlan


@dataclass
class _UndoEntry:
    path: str
    previous_review: dict  # the reviewed_* columns before the action
    row: dict  # the row before the action (model verdict, quality ... for re-tagging)


@dataclass
class _Action:
    verdict: str
    entries: list[_UndoEntry] = field(default_factory=list)


class ReviewService:
    def __init__(
        self,
        settings: Settings,
        *,
        index,  # pixelperfect_daemon.index.ImageIndex
        metadata,  # pixelperfect_daemon.metadata.MetadataWriter
        analyzer_factory: Callable[[], object] | None = None,
        renders: RenderCache | None = None,
        exif: ExifReader | None = None,
        clock: Callable[[], str] = utc_now,
    ):
        self.settings = settings
        self.page_size = settings.ui.page_size
        self.index = index
        self.metadata = metadata
        self.reader = IndexReader(settings.index.database, password_env=settings.index.password_env)
        self.renders = renders or RenderCache(settings.ui.thumbnail_cache, max_pixels=settings.analysis.max_pixels)
        self._watch_roots = tuple(Path(os.path.realpath(folder)) for folder in settings.watch.folders)
        self.exif = exif or ExifReader()
        self._clock = clock
        self._analyzer_factory = analyzer_factory or self._default_analyzer_factory
        self._analyzer = None
        self._analyzer_lock = threading.Lock()
        # One writer at a time: ImageIndex and the undo stacks are shared by every session.
        self._write_lock = threading.Lock()
        # pyexiftool's process dies with the thread that started it (PR_SET_PDEATHSIG) and Gradio's
        # worker threads come and go: all tagging runs on this one long-lived thread.
        self._tagging = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-tagging")
        self._undo: dict[str, deque[_Action]] = {}
        self._hashes: dict[Path, int] = {}  # perceptual hash by thumbnail (named by the file's identity)
        # Renders the loupe of the image a reviewer will probably open next, while they look at this one.
        self._prefetching = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loupe-prefetch")

    # -- reading ---------------------------------------------------------------------------

    def search(
        self, image_filter: ImageFilter = ImageFilter(), *, sort: str = queries.DEFAULT_SORT,
        page: int = 1, page_size: int | None = None,
    ) -> SearchPage:  # fmt: skip
        return queries.search_images(
            self.reader.connection(), image_filter, sort=sort, page=page, page_size=page_size or self.page_size
        )

    def counts(self, image_filter: ImageFilter = ImageFilter()) -> tuple[dict[str, int], dict[str, int]]:
        conn = self.reader.connection()
        return queries.verdict_counts(conn, image_filter), queries.defect_counts(conn, image_filter)

    def folders(self) -> list[str]:
        return queries.folders(self.reader.connection())

    def row(self, path: str) -> dict:
        """The index row of ``path``; only indexed images can be looked at or reviewed."""
        if not isinstance(path, str) or not path.strip():
            raise ReviewError("no image given")
        row = queries.get_row(self.reader.connection(), path)
        if row is None:
            raise ReviewError(f"not in the index: {path}")
        return row

    def original(self, path: str) -> Path | None:
        """The indexed file at ``path`` when it may be rendered: still a regular file (not a link) whose
        real location is inside a watch folder; None for anything a stranger turned into a link since."""
        original = text_to_path(path)
        try:
            if not stat.S_ISREG(os.lstat(original).st_mode):
                return None
        except OSError:
            return original  # gone: the render cache shows its "missing" tile
        real = Path(os.path.realpath(original))
        return original if any(real.is_relative_to(root) for root in self._watch_roots) else None

    def thumbnails(self, rows: list[dict]) -> list[Path]:
        originals = [self.original(r["path"]) for r in rows]
        rendered = iter(self.renders.thumbnails([p for p in originals if p is not None]))
        return [next(rendered) if p is not None else self.renders.placeholder("not shown") for p in originals]

    def inspect(self, path: str) -> Inspection:
        row = self.row(path)
        summary = queries.row_to_summary(row)
        original = self.original(row["path"])
        return Inspection(
            summary=summary,
            defect_scores=queries.decode_defect_scores(row),
            model_version=row.get("model_version"),
            size=(row["width"], row["height"]) if row.get("width") and row.get("height") else None,
            exif=self.exif.read(original) if original is not None and original.exists() else {},
        )

    def heatmap(self, path: str) -> HeatMap | None:
        """Per-tile evidence of every defect (computed on first request, then cached); None when unreadable."""
        return self._loupe_renders(path)[1]

    def _loupe_renders(self, path: str) -> tuple[Path, HeatMap | None]:
        original = self.original(self.row(path)["path"])
        if original is None:  # turned into a link since: never rendered
            return self.renders.placeholder("not shown"), None
        image, data = self.renders.loupe_renders(original, lambda pixels: compute_heatmap(pixels).to_dict())
        return image, None if data is None else HeatMap.from_dict(data)

    def loupe(self, path: str) -> LoupeView:
        """The loupe of an indexed image, centred on the hottest tile of the defect it is flagged for."""
        summary = queries.row_to_summary(self.row(path))
        image, heat = self._loupe_renders(path)
        with Image.open(image) as opened:
            size = opened.size
        defect = summary["defect"] or summary["model_defect"]
        focus = heat.hottest_centre(defect) if heat and defect else (0.5, 0.5)
        return LoupeView(summary["path"], image, size, focus, defect, heat)

    def prefetch_loupe(self, path: str | None) -> None:
        """Render ``path``'s loupe in the background (cached for when it is opened); None does nothing."""
        if path:
            self._prefetching.submit(self._prefetch, path)

    def _prefetch(self, path: str) -> None:
        try:
            self._loupe_renders(path)
        except Exception as error:  # a prefetch only warms the cache; opening the image reports errors
            log.debug("prefetching the loupe of %s: %s", path, error)

    def change_stamp(self) -> tuple:
        """Cheap to ask every few seconds; differs after any analysis or review by anyone."""
        return queries.change_stamp(self.reader.connection())

    def fill_capture_times(self, limit: int = 200) -> int:
        """Read the capture time of up to ``limit`` images that lack one; returns how many were read."""
        paths = self.index.paths_without_capture_time(limit)
        if not paths:
            return 0
        originals = {p: self.original(p) for p in paths}
        captured = {
            p: read_capture_time(o, self.exif) if o is not None and o.exists() else "" for p, o in originals.items()
        }
        with self._write_lock:
            self.index.record_capture_times(captured)
        return len(captured)

    def _phash(self, path: Path) -> int:
        thumbnail = self.renders.thumbnail(path)
        if thumbnail not in self._hashes:
            with Image.open(thumbnail) as image:
                self._hashes[thumbnail] = difference_hash(image)
        return self._hashes[thumbnail]

    def bursts(self, image_filter: ImageFilter = ImageFilter(), *, gap_seconds: float | None = None) -> list[Burst]:
        """The filter's images taken in bursts (capture time within the gap, and alike), oldest first."""
        gap = self.settings.ui.burst_gap_seconds if gap_seconds is None else float(gap_seconds)
        while self.fill_capture_times(500):  # grouping needs every capture time
            pass
        frames = []
        for row in queries.iter_captured(self.reader.connection(), image_filter, limit=MAX_BURST_IMAGES):
            original = self.original(row["path"])
            if original is not None and original.exists():
                frames.append(Frame(row["path"], dt.datetime.fromisoformat(row["captured_at"]), self._phash(original),
                                    row.get("quality")))  # fmt: skip
        return group_bursts(frames, gap)

    def cull_burst(self, paths: list[str], pick: str, *, reviewer: str) -> list[dict]:
        """Keep ``pick`` (Good) and reject the other frames as Poor, defect Other, reason "duplicate"; one undo step."""
        if pick not in paths:
            raise ReviewError("the pick must be one of the burst's frames")
        decisions = [(pick, "good", None, None)] + [(p, "poor", "other", "duplicate") for p in paths if p != pick]
        return self.decide(decisions, reviewer=reviewer)

    def export_rejects(self, image_filter: ImageFilter = ImageFilter(), *, move: bool) -> dict:
        """Copy (or move) every Poor image the filter matches, with its sidecars, into ``[ui] reject_folder``.

        A move keeps the index consistent: the row (and review) follows the file, the sidecar it was
        tagged in is recorded, and the daemon, which never watches the reject folder, leaves it alone.
        Returns {folder, done: [[old, new], ...], failures: [...]}.
        """
        watch = [Path(f) for f in self.settings.watch.folders]
        try:
            folder = check_reject_folder(self.settings.ui.reject_folder, watch)
        except RejectFolderError as error:
            raise ReviewError(str(error)) from None
        rows = list(queries.iter_matching(self.reader.connection(), replace(image_filter, verdict="poor")))
        done, failures = [], []
        with self._write_lock:
            for row in rows:
                source = text_to_path(row["path"])
                if source.is_relative_to(folder):
                    continue  # moved there already
                if self.original(row["path"]) is None or not source.is_file():  # a link is never carried
                    failures.append(f"{source.name}: not found or not a regular file in a watch folder")
                    continue
                try:
                    carried = carry(source, target_path(source, watch, folder), move=move)
                except OSError as error:
                    failures.append(f"{source.name}: {error.strerror or error}")
                    continue
                if move:
                    self.index.record_move(source, carried.target)
                    tagged = row.get("tagged_file")
                    moved_sidecar = next((new for old, new, _ in carried.sidecars if str(old) == tagged), None)
                    if moved_sidecar is not None:
                        self.index.set_tagged_file(carried.target, moved_sidecar)
                log.info("%s %s to %s", "moved" if move else "copied", source, carried.target)
                done.append([str(source), str(carried.target)])
        return {"folder": str(folder), "done": done, "failures": failures}

    def _export_target(self, kind: str, suffix: str) -> Path:
        """A new, uniquely named file under the cache's exports/ folder."""
        folder = self.renders.cache_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        handle_fd, name = tempfile.mkstemp(
            dir=folder, prefix=f"pixelperfect{kind}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-", suffix=suffix
        )
        os.close(handle_fd)
        return Path(name)

    @staticmethod
    def _write_csv(handle, summaries) -> None:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for summary in summaries:
            writer.writerow({key: csv_safe(value) for key, value in summary.items()})

    def _matching_summaries(self, image_filter: ImageFilter, sort: str):
        return (queries.row_to_summary(row) for row in queries.iter_matching(self.reader.connection(), image_filter,
                                                                              sort=sort))  # fmt: skip

    def export_csv(self, image_filter: ImageFilter, *, sort: str = queries.DEFAULT_SORT) -> Path:
        """Every image the filter matches (not just the page shown), as CSV under the cache's exports/."""
        target = self._export_target("", ".csv")
        with target.open("w", newline="", encoding="utf-8") as handle:
            self._write_csv(handle, self._matching_summaries(image_filter, sort))
        return target

    def export_lightroom(self, image_filter: ImageFilter, *, sort: str = queries.DEFAULT_SORT) -> LightroomExport:
        """Every image the filter matches, for Lightroom Classic: a zip under the cache's exports/ holding the
        keyword list, a smart collection (when Lightroom can select them by keyword), the file list, the CSV
        and a README naming what Lightroom cannot select by (``lightroom_export``)."""
        summaries = list(self._matching_summaries(image_filter, sort))
        plan = lightroom_export.plan_collection(image_filter)
        names = {"keywords_file": "PixelPerfect keywords.txt", "files_file": "files.txt", "csv_file": "pixelperfect.csv",
                 "collection_file": f"{plan.title}.lrsmcol" if plan.rules else None}  # fmt: skip
        table = io.StringIO(newline="")
        self._write_csv(table, summaries)
        target = self._export_target("-lightroom", ".zip")
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("README.txt", lightroom_export.readme_text(plan, images=len(summaries), **names))
            archive.writestr(names["keywords_file"],
                             lightroom_export.keyword_list_text(lightroom_export.keyword_paths(summaries)))  # fmt: skip
            if plan.rules:
                archive.writestr(
                    names["collection_file"], lightroom_export.smart_collection_text(plan, str(uuid.uuid4()))
                )
            archive.writestr(names["files_file"], lightroom_export.file_list_text(s["path"] for s in summaries))
            archive.writestr(names["csv_file"], table.getvalue())
        return LightroomExport(target, len(summaries), plan)

    # -- overriding ------------------------------------------------------------------------

    @staticmethod
    def _check_decision(verdict: str, defect: str | None, row: dict) -> str | None:
        """The defect to record, or ReviewError when the decision is inconsistent."""
        if verdict not in ("good", "poor"):
            raise ReviewError(f"verdict must be good or poor, got {verdict!r}")
        if defect is not None and defect not in DEFECTS:
            raise ReviewError(f"unknown defect {defect!r}; expected one of {', '.join(DEFECTS)} or none")
        if verdict == "good":
            if defect is not None:
                raise ReviewError("a Good verdict has no defect")
            return None
        # Poor without a defect keeps the one already shown (the model's, usually).
        defect = defect or queries.row_to_summary(row)["defect"]
        if defect is None:
            raise ReviewError(f"say which defect makes {Path(row['path']).name} Poor")
        return defect

    def override(self, paths: list[str], *, verdict: str, defect: str | None, reviewer: str) -> list[dict]:
        """Record one reviewer decision for ``paths``; one undoable action. Returns the updated rows."""
        return self.decide([(path, verdict, defect, None) for path in dict.fromkeys(paths or [])], reviewer=reviewer)

    def decide(self, decisions: list[tuple[str, str, str | None, str | None]], *, reviewer: str) -> list[dict]:
        """Record (path, verdict, defect, reason) decisions as one undoable action; returns the updated rows.

        ``reason`` is stored beside the defect in the index and the tags (e.g. "duplicate" for a burst's
        rejected frames: ReviewReason and the keyword PixelPerfect|Poor|Other|Duplicate); the defect
        stays one of the seven, so the JSON contract does not change.
        """
        if not decisions:
            raise ReviewError("no image selected")
        rows = [self.row(path) for path, *_ in decisions]
        for row in rows:
            if row.get("status") == "error" or row.get("verdict") is None:
                raise ReviewError(
                    f"{Path(row['path']).name} could not be analysed ({row.get('error') or 'error'}); "
                    "only analysed images can be reviewed"
                )
        checked = [(row, verdict, self._check_decision(verdict, defect, row), reason)
                   for row, (_, verdict, defect, reason) in zip(rows, decisions)]  # fmt: skip
        action = _Action(verdict=decisions[0][1])
        updated, failures = [], []
        with self._write_lock:
            for row, verdict, row_defect, reason in checked:
                reviewed_at = self._clock()
                previous = {column: row.get(column) for column in REVIEW_COLUMNS}
                self.index.record_review(text_to_path(row["path"]), verdict=verdict, defect=row_defect, reviewed_by=reviewer,
                                         reviewed_at=reviewed_at, reason=reason)  # fmt: skip
                try:
                    self._tag(row, verdict=verdict, defect=row_defect, reviewed_by=reviewer, reviewed_at=reviewed_at,
                              reason=reason)  # fmt: skip
                except Exception as error:  # MetadataError; the index must not claim what the file lacks
                    self.index.clear_review(text_to_path(row["path"]), previous)
                    log.warning("review of %s not saved: %s", row["path"], error)
                    failures.append(f"{Path(row['path']).name}: {error}")
                    continue
                log.info(
                    "%s reviewed %s as %s%s", reviewer, row["path"], verdict, f" ({row_defect})" if row_defect else ""
                )
                action.entries.append(_UndoEntry(row["path"], previous, row))
                updated.append(queries.row_to_summary(self.row(row["path"])))
            if action.entries:
                self._undo.setdefault(reviewer, deque(maxlen=UNDO_DEPTH)).append(action)
        if failures:
            saved = f"{len(updated)} saved; " if updated else ""
            raise ReviewError(f"{saved}not saved: {'; '.join(failures)}")
        return updated

    def _tag(
        self, row: dict, *, verdict: str, defect: str | None, reviewed_by: str | None, reviewed_at: str | None,
        reason: str | None = None,
    ):  # fmt: skip
        cull_flags: dict = {}
        written = self._tagging.submit(
            self.metadata.write_verdict,
            text_to_path(row["path"]),
            verdict=verdict,
            defect=defect,
            quality=row.get("quality"),
            model_version=row.get("model_version") or "",
            analyzed_at=row.get("analyzed_at") or "",
            reviewed_by=reviewed_by,
            reviewed_at=reviewed_at,
            reason=reason,
            remember=cull_flags,
        ).result()
        image = text_to_path(row["path"])
        self.index.record_tags_written(image, cull_flags)
        if Path(written) == image:
            # Tags inside the image change its bytes: record the new hash, or the daemon would
            # take the file for new content and analyse it again.
            stat = image.stat()
            self.index.record_stat(image, size=stat.st_size, mtime=stat.st_mtime, blake3=file_hash(image))
        return written

    def undo(self, reviewer: str) -> list[dict]:
        """Take back ``reviewer``'s last action: the index and the tags return to what they were."""
        with self._write_lock:
            stack = self._undo.get(reviewer)
            if not stack:
                raise ReviewError("nothing to undo")
            action = stack.pop()
            restored, failures = [], []
            for entry in reversed(action.entries):
                before = entry.previous_review
                path = Path(entry.path)
                self.index.clear_review(path, before)
                try:
                    if before.get("reviewed_verdict"):
                        self._tag(
                            entry.row, verdict=before["reviewed_verdict"], defect=before.get("reviewed_defect"),
                            reviewed_by=before.get("reviewed_by"), reviewed_at=before.get("reviewed_at"),
                            reason=before.get("reviewed_reason"),
                        )  # fmt: skip
                    else:  # back to the model's own verdict, without a reviewer
                        self._tag(entry.row, verdict=entry.row["verdict"], defect=entry.row.get("defect"),
                                  reviewed_by=None, reviewed_at=None)  # fmt: skip
                except Exception as error:
                    log.warning("undo of %s: index restored, tags not: %s", entry.path, error)
                    failures.append(f"{path.name}: {error}")
                log.info("%s undid the review of %s", reviewer, entry.path)
                restored.append(queries.row_to_summary(self.row(entry.path)))
        if failures:
            raise ReviewError(f"undone in the index, but tags not restored: {'; '.join(failures)}")
        return list(reversed(restored))

    def can_undo(self, reviewer: str) -> bool:
        return bool(self._undo.get(reviewer))

    # -- analysing an upload ---------------------------------------------------------------

    def _default_analyzer_factory(self):
        from pixelperfect_daemon.adaptation import analyzer_for

        return analyzer_for(self.settings)

    def analyzer(self):
        """Loaded on first use, so the UI starts (and browses) without the models."""
        with self._analyzer_lock:
            if self._analyzer is None:
                try:
                    self._analyzer = self._analyzer_factory()
                except Exception as error:  # ModelsNotFoundError, a broken model file ...
                    raise ReviewError(f"the analysis models are not available: {error}") from None
            return self._analyzer

    def analyze_upload(self, path: Path):
        """The verdict of a file that is not (and will not be) in the index."""
        return self.analyzer().analyze_path(Path(path))

    def close(self) -> None:
        """Stop the helper threads; the metadata writer's ExifTool process, which lives on the
        tagging thread, is closed with it (the writer restarts one if used again)."""
        self._prefetching.shutdown(cancel_futures=True)
        self.exif.close()
        self._tagging.submit(self.metadata.close).result()
        self._tagging.shutdown()
