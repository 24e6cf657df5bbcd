"""The SQLite index: one row per image file in the table ``images``.

The model's columns (verdict, defect, quality, ...) and the reviewer's columns (reviewed_*) are
written by different methods, so an analysis can never overwrite a human review. The verdict
people see is ``COALESCE(reviewed_verdict, verdict)``. WAL mode lets the daemon write while the
review UI reads (and records reviews) from another process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import sqlite_utils

from .labels import DEFECTS
from .result import AnalysisResult

TABLE = "images"
SCHEMA_VERSION = 3
REVIEW_COLUMNS = ("reviewed_verdict", "reviewed_defect", "reviewed_by", "reviewed_at", "reviewed_reason")
# Why a reviewer rejected a frame beyond its defect: a burst's other frames are "duplicate".
REVIEW_REASONS = ("duplicate",)
# Busy writers (daemon + UI) wait for each other instead of failing.
_BUSY_TIMEOUT_SECONDS = 30.0


class ImageIndexError(Exception):
    """The index cannot do what was asked (unknown path, bad value, newer schema)."""


def _create_schema_v1(db: sqlite_utils.Database) -> None:
    db[TABLE].create(
        {
            "path": str,  # absolute
            "folder": str,  # absolute parent folder
            "file_name": str,
            "sha256": str,  # of the file as it is on disk after tagging
            "size": int,
            "mtime": float,
            "width": int,
            "height": int,
            "verdict": str,  # good | poor | NULL (errors)
            "defect": str,  # key of labels.DEFECTS | NULL
            "quality": float,
            "defect_scores": str,  # JSON object
            "model_version": str,
            "status": str,  # ok | error
            "error": str,
            "analyzed_at": str,  # ISO 8601 UTC
            "tagged_file": str,  # the image itself or its .xmp sidecar
            "reviewed_verdict": str,
            "reviewed_defect": str,
            "reviewed_by": str,
            "reviewed_at": str,
        },
        pk="path",
        not_null={"folder", "file_name", "status"},
        if_not_exists=True,
    )
    for column in ("verdict", "defect", "quality", "analyzed_at", "folder", "reviewed_verdict", "sha256"):
        db[TABLE].create_index([column], if_not_exists=True)


def _index_size(db: sqlite_utils.Database) -> None:
    # A new file is hashed only when a row of the same size lost its file (a possible move).
    db[TABLE].create_index(["size"], if_not_exists=True)


def _capture_time_and_review_stamp(db: sqlite_utils.Database) -> None:
    # captured_at: EXIF DateTimeOriginal (+ sub-seconds) as ISO text, "" when the file has none;
    # NULL until read. Sorting and burst grouping use it; reviewed_at makes the UI's change stamp cheap.
    # reviewed_reason: one of REVIEW_REASONS beside the reviewer's defect (NULL: the defect says it all).
    for column in ("captured_at", "reviewed_reason"):
        if column not in db[TABLE].columns_dict:
            db[TABLE].add_column(column, str)
    for column in ("captured_at", "reviewed_at"):
        db[TABLE].create_index([column], if_not_exists=True)


# MIGRATIONS[n] brings a version-n database to version n + 1; append, never edit.
MIGRATIONS = [_create_schema_v1, _index_size, _capture_time_and_review_stamp]


def normalise_path(path: Path | str) -> str:
    """The key a file is stored under: absolute, normalised, symlinks not resolved."""
    return os.path.abspath(os.fspath(path))


class ImageIndex:
    def __init__(self, database: Path):
        database = Path(database)
        database.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(database), timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        self.db = sqlite_utils.Database(connection)
        self.database = database
        # One connection shared by the pipeline's threads, one statement at a time.
        self._lock = threading.RLock()
        self.db.enable_wal()
        # Safe in WAL mode against a crashed process; a power cut may lose the last rows, which
        # only means those files are analysed again.
        connection.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            connection = self.db.conn
            # IMMEDIATE: two processes starting at once must not both migrate.
            connection.execute("BEGIN IMMEDIATE")
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version > len(MIGRATIONS):
                    raise ImageIndexError(
                        f"{self.database} has schema version {version}, newer than this PixelPerfect "
                        f"understands ({len(MIGRATIONS)}); upgrade PixelPerfect"
                    )
                for step in MIGRATIONS[version:]:
                    step(self.db)
                connection.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self.db.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> "ImageIndex":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def get(self, path: Path) -> dict | None:
        with self._lock:
            rows = list(self.db[TABLE].rows_where("path = ?", [normalise_path(path)]))
        return rows[0] if rows else None

    def find_by_sha256(self, sha256: str) -> list[dict]:
        with self._lock:
            return list(self.db[TABLE].rows_where("sha256 = ?", [sha256], order_by="path"))

    def find_by_size(self, size: int) -> list[dict]:
        """Analysed rows of files of ``size`` bytes (a moved file keeps its size)."""
        with self._lock:
            return list(self.db[TABLE].rows_where("size = ? AND status = 'ok'", [size], order_by="path"))

    def count(self, where: str | None = None, where_args: list | None = None) -> int:
        with self._lock:
            return self.db[TABLE].count_where(where or "1", where_args or [])

    def stat_snapshot(self) -> dict[str, tuple[int | None, float | None]]:
        """{path: (size, mtime)} of every row: lets a rescan skip known files without hashing."""
        with self._lock:
            cursor = self.db.conn.execute(f"SELECT path, size, mtime FROM {TABLE}")
            return {path: (size, mtime) for path, size, mtime in cursor}

    # -- the model's columns ----------------------------------------------------------------

    def _upsert(self, path: Path, values: dict) -> dict:
        key = normalise_path(path)
        record = {"path": key, "folder": os.path.dirname(key), "file_name": os.path.basename(key), **values}
        with self._lock:
            # upsert updates only the columns given: the reviewed_* columns are never in them.
            with self.db.conn:
                self.db[TABLE].upsert(record, pk="path", alter=False)
            return self.get(key)

    def record_analysis(
        self,
        path: Path,
        *,
        sha256: str,
        size: int,
        mtime: float,
        result: AnalysisResult,
        analyzed_at: str,
        tagged_file: Path | None,
        width: int | None = None,
        height: int | None = None,
        error: str | None = None,
    ) -> dict:
        """Insert or update the model's columns; never touches the reviewed_* columns.

        ``error`` marks an otherwise analysed file as failed (e.g. its tags could not be written).
        """
        failed = result.verdict == "error" or error is not None
        return self._upsert(
            path,
            {
                "sha256": sha256,
                "size": size,
                "mtime": mtime,
                "width": width,
                "height": height,
                "verdict": None if result.verdict == "error" else result.verdict,
                "defect": result.defect,
                "quality": result.quality,
                "defect_scores": None if result.defect_scores is None else json.dumps(result.defect_scores),
                "model_version": result.model_version,
                "status": "error" if failed else "ok",
                "error": error if error is not None else result.error,
                "analyzed_at": analyzed_at,
                "tagged_file": None if tagged_file is None else normalise_path(tagged_file),
                "captured_at": None,  # new content: its capture time is read again
            },
        )

    def record_error(
        self,
        path: Path,
        *,
        error: str,
        analyzed_at: str,
        model_version: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        mtime: float | None = None,
    ) -> dict:
        """A file that could not be analysed at all (vanished, unreadable): status 'error'."""
        return self._upsert(
            path,
            {
                "sha256": sha256,
                "size": size,
                "mtime": mtime,
                "verdict": None,
                "defect": None,
                "quality": None,
                "defect_scores": None,
                "model_version": model_version,
                "status": "error",
                "error": error,
                "analyzed_at": analyzed_at,
                "tagged_file": None,
            },
        )

    def record_stat(self, path: Path, *, size: int, mtime: float, sha256: str | None = None) -> None:
        """The file on disk changed without needing a new analysis: touched (same content), or its
        tags rewritten (pass the new ``sha256``, or the daemon would analyse it again)."""
        with self._lock, self.db.conn:
            self.db.conn.execute(
                f"UPDATE {TABLE} SET size = ?, mtime = ?, sha256 = COALESCE(?, sha256) WHERE path = ?",
                (size, mtime, sha256, normalise_path(path)),
            )

    def record_move(self, old_path: Path, new_path: Path) -> None:
        """The file at ``old_path`` now lives at ``new_path``: its row (and review) follows it."""
        old_key, new_key = normalise_path(old_path), normalise_path(new_path)
        if old_key == new_key:
            return
        with self._lock, self.db.conn:
            if self.get(old_key) is None:
                raise ImageIndexError(f"cannot record a move from {old_key}: no row for it")
            # A row at the destination describes a file the move replaced.
            self.db.conn.execute(f"DELETE FROM {TABLE} WHERE path = ?", (new_key,))
            self.db.conn.execute(
                f"UPDATE {TABLE} SET path = ?, folder = ?, file_name = ?, "
                "tagged_file = CASE WHEN tagged_file = ? THEN ? ELSE tagged_file END WHERE path = ?",
                (new_key, os.path.dirname(new_key), os.path.basename(new_key), old_key, new_key, old_key),
            )

    def set_tagged_file(self, path: Path, tagged_file: Path | None) -> None:
        with self._lock, self.db.conn:
            self.db.conn.execute(
                f"UPDATE {TABLE} SET tagged_file = ? WHERE path = ?",
                (None if tagged_file is None else normalise_path(tagged_file), normalise_path(path)),
            )

    def paths_without_capture_time(self, limit: int) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.conn.execute(
                f"SELECT path FROM {TABLE} WHERE captured_at IS NULL LIMIT ?", (limit,)
            )]  # fmt: skip

    def record_capture_times(self, captured: dict[str, str]) -> None:
        """``captured`` maps a path to its ISO capture time, or "" when the file records none."""
        with self._lock, self.db.conn:
            self.db.conn.executemany(
                f"UPDATE {TABLE} SET captured_at = ? WHERE path = ?",
                [(value, normalise_path(path)) for path, value in captured.items()],
            )

    # -- the reviewer's columns -------------------------------------------------------------

    def _set_review(self, path: Path, values: dict) -> dict:
        key = normalise_path(path)
        with self._lock, self.db.conn:
            cursor = self.db.conn.execute(
                f"UPDATE {TABLE} SET {', '.join(f'{c} = ?' for c in REVIEW_COLUMNS)} WHERE path = ?",
                (*(values.get(c) for c in REVIEW_COLUMNS), key),
            )
            if cursor.rowcount == 0:
                raise ImageIndexError(f"cannot review {key}: it is not in the index")
        return self.get(key)

    def record_review(
        self, path: Path, *, verdict: str, defect: str | None, reviewed_by: str, reviewed_at: str,
        reason: str | None = None,
    ) -> dict:  # fmt: skip
        if verdict not in ("good", "poor"):
            raise ImageIndexError(f"a review verdict must be good or poor, got {verdict!r}")
        if verdict == "good" and defect is not None:
            raise ImageIndexError("a good review verdict carries no defect")
        if defect is not None and defect not in DEFECTS:
            raise ImageIndexError(f"unknown defect {defect!r}; expected one of {', '.join(DEFECTS)}")
        if reason is not None and (verdict != "poor" or reason not in REVIEW_REASONS):
            raise ImageIndexError(f"a review reason must be one of {', '.join(REVIEW_REASONS)}, for Poor only")
        return self._set_review(
            path,
            {
                "reviewed_verdict": verdict,
                "reviewed_defect": defect,
                "reviewed_by": reviewed_by,
                "reviewed_at": reviewed_at,
                "reviewed_reason": reason,
            },
        )

    def clear_review(self, path: Path, previous: dict | None = None) -> dict:
        """Undo: restore the reviewed_* values of ``previous`` (a row as it was), or NULLs."""
        previous = previous or {}
        return self._set_review(path, {c: previous.get(c) for c in REVIEW_COLUMNS})
