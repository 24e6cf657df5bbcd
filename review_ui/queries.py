"""Read-only SQL over the daemon's ``images`` table: filter, sort, page, count, export.

Every filter runs in the database (a SQLite file or PostgreSQL: the same SQL on both, through
``pixelperfect_daemon.index_backends``) and is written so the schema's indexes (verdict, defect,
quality, analyzed_at, folder, reviewed_verdict) can serve it; Python never scans the table.

The verdict people see is the reviewer's when there is one, else the model's: a reviewed row's
defect is the reviewer's defect (NULL for Good), never the model's. A row whose status is not "ok"
is an error: the file could not be analysed, or (status "tag_error") its tags could not be written.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from pixelperfect_daemon.index import IMAGE_COLUMNS
from pixelperfect_daemon.index_backends import IndexBackendError, open_backend
from pixelperfect_daemon.labels import DEFECTS

EFFECTIVE_VERDICT_SQL = "CASE WHEN status = 'ok' THEN COALESCE(reviewed_verdict, verdict, 'error') ELSE 'error' END"
ERROR_STATUSES = ("error", "tag_error")
EFFECTIVE_DEFECT_SQL = "CASE WHEN reviewed_verdict IS NOT NULL THEN reviewed_defect ELSE defect END"

VERDICT_FILTERS = ("poor", "good", "error")
# Each order ends in rowid so SQLite walks one index in order and stops after the page, instead
# of sorting every match (100x faster at 100 000 rows). Images without a quality (errors) come
# first when worst-first, last when best-first.
SORT_ORDERS = {
    "quality_asc": "quality ASC, rowid ASC",  # the reviewing order: worst first
    "quality_desc": "quality DESC, rowid DESC",
    "date_desc": "analyzed_at DESC, rowid DESC",
    "date_asc": "analyzed_at ASC, rowid ASC",
    "name": "file_name ASC, rowid ASC",
    # Photos without a recorded capture time ("" or not read yet) come last either way.
    "capture_asc": "COALESCE(NULLIF(captured_at, ''), '9999') ASC, rowid ASC",
    "capture_desc": "COALESCE(NULLIF(captured_at, ''), '0000') DESC, rowid DESC",
}
DEFAULT_SORT = "quality_asc"

# Every column of the index's table: index.py owns the list.
# Binary columns (what `pixelperfect learn` keeps) are not for the screen.
ROW_COLUMNS = tuple(column for column, kind in IMAGE_COLUMNS.items() if kind is not bytes)


class QueryError(ValueError):
    """A filter value is malformed (bad date, unknown defect, ...)."""


@dataclass(frozen=True)
class ImageFilter:
    """Every field optional: the empty filter matches every row."""

    verdict: str | None = None  # "poor" | "good" | "error"
    defect: str | None = None  # a key of labels.DEFECTS
    quality_min: float | None = None
    quality_max: float | None = None
    reviewed: bool | None = None
    folder: str | None = None  # this folder and its subfolders
    date_from: str | None = None  # YYYY-MM-DD, analysis date (UTC), inclusive
    date_to: str | None = None  # YYYY-MM-DD, inclusive
    name: str | None = None  # substring of the file name, case-insensitive

    def __post_init__(self):
        if self.verdict is not None and self.verdict not in VERDICT_FILTERS:
            raise QueryError(f"unknown verdict {self.verdict!r}; expected one of {', '.join(VERDICT_FILTERS)}")
        if self.defect is not None and self.defect not in DEFECTS:
            raise QueryError(f"unknown defect {self.defect!r}; expected one of {', '.join(DEFECTS)}")
        for bound in (self.quality_min, self.quality_max):
            if bound is not None and not (0.0 <= bound <= 1.0):
                raise QueryError(f"quality bounds must lie in [0, 1], got {bound!r}")
        for value in (self.date_from, self.date_to):
            if value is not None:
                parse_date(value)


@dataclass(frozen=True)
class SearchPage:
    rows: list[dict]
    total: int
    page: int  # 1-based, clamped to the pages that exist
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
            "page_size": self.page_size,
        }


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f"dates must be YYYY-MM-DD, got {text!r}") from None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def where_clause(image_filter: ImageFilter, *, include_defect: bool = True, like: str = "LIKE") -> tuple[str, list]:
    """The WHERE clause (without the keyword) and its parameters for ``image_filter``; ``like`` is the
    database's case-insensitive LIKE operator (the connection's ``case_insensitive_like``)."""
    terms: list[str] = []
    params: list = []
    f = image_filter
    if f.verdict == "error":
        terms.append(f"status IN ({', '.join('?' for _ in ERROR_STATUSES)})")
        params += ERROR_STATUSES
    elif f.verdict is not None:
        # Spelled out rather than COALESCE(...) = ? so the two single-column indexes serve it
        # ("status || ''": the status test filters, it must not steer SQLite's choice of index).
        terms.append("(status || '') = 'ok' AND (reviewed_verdict = ? OR (reviewed_verdict IS NULL AND verdict = ?))")
        params += [f.verdict, f.verdict]
    if include_defect and f.defect is not None:
        terms.append("(reviewed_defect = ? OR (reviewed_verdict IS NULL AND defect = ?))")
        params += [f.defect, f.defect]
    # The full range [0, 1] is no filter at all: it must not drop error rows (quality NULL).
    # "+quality" keeps SQLite from answering a (typically wide) quality range through the index,
    # one row lookup per match: a plain scan is 3x faster there; ordering still uses the index.
    if f.quality_min is not None and f.quality_min > 0.0:
        terms.append("+quality >= ?")
        params.append(f.quality_min)
    if f.quality_max is not None and f.quality_max < 1.0:
        terms.append("+quality <= ?")
        params.append(f.quality_max)
    if f.reviewed is True:
        terms.append("reviewed_verdict IS NOT NULL")
    elif f.reviewed is False:
        terms.append("reviewed_verdict IS NULL")
    if f.folder:
        folder = f.folder.rstrip("/") or "/"
        # A prefix range rather than LIKE, so the folder index serves it; "0" follows "/" in ASCII.
        prefix = folder if folder.endswith("/") else folder + "/"
        terms.append("(folder = ? OR (folder >= ? AND folder < ?))")
        params += [folder, prefix, prefix[:-1] + "0"]
    if f.date_from:
        terms.append("analyzed_at >= ?")
        params.append(parse_date(f.date_from).isoformat())
    if f.date_to:
        terms.append("analyzed_at < ?")
        params.append((parse_date(f.date_to) + dt.timedelta(days=1)).isoformat())
    if f.name and f.name.strip():
        terms.append(f"file_name {like} ? ESCAPE '\\'")
        params.append(f"%{_escape_like(f.name.strip())}%")
    return (" AND ".join(terms) if terms else "1 = 1"), params


def row_to_summary(row: dict) -> dict:
    """The public shape of one image: what /search and /override return."""
    row = dict(row)
    reviewed = row.get("reviewed_verdict") is not None
    if reviewed:
        verdict, defect = row["reviewed_verdict"], row.get("reviewed_defect")
    else:
        verdict, defect = (row.get("verdict") or "error"), row.get("defect")
    if row.get("status", "ok") in ERROR_STATUSES:
        verdict = "error"  # not analysed, or analysed but its tags are not in the file
    return {
        "path": row["path"],
        "file_name": row.get("file_name") or Path(row["path"]).name,
        "folder": row.get("folder") or str(Path(row["path"]).parent),
        "verdict": verdict,
        "defect": defect,
        "quality": row.get("quality"),
        "screen_noise": row.get("screen_noise"),
        "reviewed": reviewed,
        "model_verdict": row.get("verdict") or "error",
        "model_defect": row.get("defect"),
        "reviewed_by": row.get("reviewed_by"),
        "reviewed_at": row.get("reviewed_at"),
        "analyzed_at": row.get("analyzed_at"),
        "error": row.get("error"),
        "status": row.get("status"),
        "captured_at": row.get("captured_at") or None,
        "reason": row.get("reviewed_reason") if reviewed else None,
    }


def decode_defect_scores(row: dict) -> dict[str, float] | None:
    raw = row.get("defect_scores")
    if not raw:
        return None
    scores = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return {key: float(scores[key]) for key in DEFECTS if key in scores}


def search_images(
    conn,
    image_filter: ImageFilter = ImageFilter(),
    *,
    sort: str = DEFAULT_SORT,
    page: int = 1,
    page_size: int = 48,
) -> SearchPage:
    if sort not in SORT_ORDERS:
        raise QueryError(f"unknown sort {sort!r}; expected one of {', '.join(SORT_ORDERS)}")
    if page_size < 1:
        raise QueryError(f"page_size must be at least 1, got {page_size}")
    where, params = where_clause(image_filter, like=conn.case_insensitive_like)
    total = conn.execute(f"SELECT COUNT(*) FROM images WHERE {where}", params).fetchone()[0]
    pages = max(1, math.ceil(total / page_size))
    page = min(max(1, int(page)), pages)
    rows = conn.execute(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM images WHERE {where} "
        f"ORDER BY {conn.sort_order(SORT_ORDERS[sort])} LIMIT ? OFFSET ?",
        [*params, page_size, (page - 1) * page_size],
    ).fetchall()
    return SearchPage(rows=[dict(r) for r in rows], total=total, page=page, page_size=page_size)


def iter_matching(conn, image_filter: ImageFilter, *, sort: str = DEFAULT_SORT):
    """Every matching row, in order, without loading them all at once (for CSV export)."""
    if sort not in SORT_ORDERS:
        raise QueryError(f"unknown sort {sort!r}")
    where, params = where_clause(image_filter, like=conn.case_insensitive_like)
    cursor = conn.execute(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM images WHERE {where} ORDER BY {conn.sort_order(SORT_ORDERS[sort])}",
        params,
    )
    for row in cursor:
        yield dict(row)


def defect_counts(conn, image_filter: ImageFilter = ImageFilter()) -> dict[str, int]:
    """How many matching images carry each defect, ignoring the filter's own defect choice
    (so the counts say what picking another defect would show)."""
    where, params = where_clause(image_filter, include_defect=False, like=conn.case_insensitive_like)
    counts = dict.fromkeys(DEFECTS, 0)
    for defect, count in conn.execute(
        f"SELECT {EFFECTIVE_DEFECT_SQL} AS d, COUNT(*) FROM images "
        f"WHERE {where} AND {EFFECTIVE_DEFECT_SQL} IS NOT NULL GROUP BY d",
        params,
    ):
        if defect in counts:
            counts[defect] = count
    return counts


def verdict_counts(conn, image_filter: ImageFilter = ImageFilter()) -> dict[str, int]:
    """Matching images per effective verdict, ignoring the filter's verdict and defect choices."""
    where, params = where_clause(
        replace(image_filter, verdict=None), include_defect=False, like=conn.case_insensitive_like
    )
    counts = dict.fromkeys(VERDICT_FILTERS, 0)
    for verdict, count in conn.execute(
        f"SELECT {EFFECTIVE_VERDICT_SQL} AS v, COUNT(*) FROM images WHERE {where} GROUP BY v", params
    ):
        counts[verdict] = count
    return counts


def iter_captured(conn, image_filter: ImageFilter, *, limit: int):
    """Matching rows that have a capture time, oldest first (for burst grouping)."""
    where, params = where_clause(image_filter)
    cursor = conn.execute(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM images WHERE {where} AND captured_at IS NOT NULL "
        "AND captured_at <> '' ORDER BY captured_at ASC LIMIT ?",
        [*params, limit],
    )
    for row in cursor:
        yield dict(row)


def change_stamp(conn) -> tuple:
    """Changes whenever an image is added, re-analysed, removed, reviewed or un-reviewed.

    Each part is answered from an index (no table scan), so the UI can poll it every few seconds.
    """
    row = conn.execute(
        "SELECT COUNT(*), MAX(analyzed_at), MAX(reviewed_at), COUNT(reviewed_verdict) FROM images"
    ).fetchone()
    return tuple(row)


def folders(conn, limit: int = 500) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT folder FROM images ORDER BY folder LIMIT ?", [limit])]


def get_row(conn, path: str) -> dict | None:
    row = conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM images WHERE path = ?", [path]).fetchone()
    return None if row is None else dict(row)


class IndexReader:
    """Read-only connections to the index (a SQLite file or PostgreSQL), one per thread."""

    def __init__(self, database: Path | str, *, password_env: str = ""):
        self.database = database
        self.password_env = password_env
        self._local = threading.local()

    def connection(self):
        """The calling thread's read-only backend (``execute``, ``case_insensitive_like``)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = open_backend(self.database, password_env=self.password_env, read_only=True)
            except IndexBackendError as error:
                raise QueryError(str(error)) from None
            self._local.conn = conn
        return conn
