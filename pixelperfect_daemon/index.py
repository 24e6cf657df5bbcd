"""The index: one row per image file in the table ``images``, in a SQLite file or PostgreSQL.

The model's columns (verdict, defect, quality, ...) and the reviewer's columns (reviewed_*) are
written by different methods, so an analysis can never overwrite a human review. The verdict
people see is ``COALESCE(reviewed_verdict, verdict)``. SQLite (the default) runs in WAL mode so the
daemon writes while the review UI reads; one daemon per SQLite index (``WriterLock``). With
PostgreSQL several daemons share the index and each file is claimed by one of them (``claim``).
The table's columns are declared once, by ``MIGRATIONS``; ``IMAGE_COLUMNS`` is what they add up to.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .adaptation import pack
from .common import path_to_text, valid_text
from .cull_flags import INDEX_COLUMNS as CULL_FLAG_FIELD_COLUMNS
from .cull_flags import USER_OWNED_COLUMN
from .index_backends import IndexBackendError, WriterLock, describe, is_postgres_url, open_backend
from .labels import DEFECTS, REASON_DISPLAY_NAMES
from .result import AnalysisResult

TABLE = "images"
CLAIMS_TABLE = "claims"
REVIEW_COLUMNS = ("reviewed_verdict", "reviewed_defect", "reviewed_by", "reviewed_at", "reviewed_reason")
# Why a reviewer rejected a frame beyond its defect: a burst's other frames are "duplicate".
REVIEW_REASONS = tuple(REASON_DISPLAY_NAMES)
# A copy of the cull-flag memory kept in the file's XMP (cull_flags.py): what PixelPerfect wrote into
# the user's rating/labels and the user's value before (NULL with written set: the user had none).
CULL_FLAG_COLUMNS = (*(c for pair in CULL_FLAG_FIELD_COLUMNS.values() for c in pair), USER_OWNED_COLUMN)
# status: "ok", "error" (could not be analysed), or TAG_ERROR (analysed, but its tags could not be
# written: retried at the next rescan).
TAG_ERROR = "tag_error"


class ImageIndexError(Exception):
    """The index cannot do what was asked (unknown path, bad value, newer schema)."""


class ImageIndexWriteError(ImageIndexError):
    """A write failed (disk full, server gone): nothing was recorded; the caller may retry."""


class ImageIndexGoneError(ImageIndexError):
    """The SQLite file was deleted or replaced while in use: no write can land anywhere useful."""


# -- the schema: declared once, as the steps that build it ---------------------------------------


@dataclass(frozen=True)
class CreateTable:
    table: str
    columns: dict[str, type]
    pk: str
    not_null: frozenset[str] = frozenset()
    indexes: tuple[str, ...] = ()

    def apply(self, backend) -> None:
        backend.create_table(self.table, self.columns, pk=self.pk, not_null=set(self.not_null))
        for column in self.indexes:
            backend.create_index(self.table, [column])


@dataclass(frozen=True)
class AddColumn:
    table: str
    column: str
    kind: type
    indexed: bool = False

    def apply(self, backend) -> None:
        backend.add_column(self.table, self.column, self.kind)
        if self.indexed:
            backend.create_index(self.table, [self.column])


@dataclass(frozen=True)
class CreateIndex:
    table: str
    column: str

    def apply(self, backend) -> None:
        backend.create_index(self.table, [self.column])


# MIGRATIONS[n] brings a version-n database to version n + 1; append, never edit. A new column of
# ``images`` is one more ``AddColumn(TABLE, "name", type)`` at the end: IMAGE_COLUMNS follows.
MIGRATIONS = [
    CreateTable(
        TABLE,
        {
            "path": str,  # absolute
            "folder": str,  # absolute parent folder
            "file_name": str,
            "sha256": str,  # rows written before the blake3 column: the same, as SHA-256 (NULL once blake3 is set)
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
        not_null=frozenset({"folder", "file_name", "status"}),
        indexes=("verdict", "defect", "quality", "analyzed_at", "folder", "reviewed_verdict", "sha256"),
    ),
    # A new file is hashed only when a row of the same size lost its file (a possible move).
    CreateIndex(TABLE, "size"),
    # Several daemons on one PostgreSQL index: who is analysing which file, and since when (server clock).
    CreateTable(
        CLAIMS_TABLE,
        {"path": str, "owner": str, "heartbeat": float},
        pk="path",
        not_null=frozenset({"owner", "heartbeat"}),
        indexes=("owner",),
    ),
    # What PixelPerfect wrote into the user's rating and labels, and their values before (cull_flags.py).
    *(AddColumn(TABLE, column, str) for column in CULL_FLAG_COLUMNS),
    CreateIndex(TABLE, "status"),  # the UI's error filter
    # An error the environment caused (disk full, permissions) is retried after ``retry_after``
    # (ISO 8601 UTC); NULL for a file's own errors, which stay until the file changes.
    AddColumn(TABLE, "retry_after", str, indexed=True),
    AddColumn(TABLE, "retries", int),
    # What `pixelperfect learn` learns from (adaptation.LEARN_INPUTS as float32), so reviewed files
    # need not be decoded again; NULL for rows analysed before this column existed.
    AddColumn(TABLE, "learn_inputs", bytes),
    # EXIF DateTimeOriginal (+ sub-seconds) as ISO text, "" when the file has none, NULL until read:
    # sorting and burst grouping use it.
    AddColumn(TABLE, "captured_at", str, indexed=True),
    # One of REVIEW_REASONS beside the reviewer's defect (NULL: the defect says it all).
    AddColumn(TABLE, "reviewed_reason", str),
    CreateIndex(TABLE, "reviewed_at"),  # keeps the UI's change stamp cheap
    # The noise meter's reading (screen_noise.py), NULL where unmeasured or analysed before it existed.
    AddColumn(TABLE, "screen_noise", float),
    # BLAKE3 of the file as it is on disk after tagging (unchanged files, moves); a third of SHA-256's CPU.
    AddColumn(TABLE, "blake3", str, indexed=True),
]


def columns_of(table: str, steps=None) -> dict[str, type]:
    """The columns ``table`` has once every migration step has run, in order."""
    columns: dict[str, type] = {}
    for step in MIGRATIONS if steps is None else steps:
        if isinstance(step, CreateTable) and step.table == table:
            columns.update(step.columns)
        elif isinstance(step, AddColumn) and step.table == table:
            columns[step.column] = step.kind
    return columns


IMAGE_COLUMNS: dict[str, type] = columns_of(TABLE)
SCHEMA_VERSION = len(MIGRATIONS)


def normalise_path(path: Path | str) -> str:
    """The key a file is stored under: absolute, normalised, symlinks not resolved, as lossless text
    (``common.path_to_text``; ``common.text_to_path`` turns a row's path back into the file's)."""
    return path_to_text(os.path.abspath(os.fspath(path)))


def _database_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # psycopg is needed only for a PostgreSQL index
        pass
    return tuple(errors)


_DATABASE_ERRORS = _database_errors()


_COLUMN_LIST = ", ".join(IMAGE_COLUMNS)


class ImageIndex:
    def __init__(self, database: Path | str, *, password_env: str = ""):
        self.database = database if is_postgres_url(database) else Path(database)
        self.password_env = password_env
        try:
            self.backend = open_backend(self.database, password_env=password_env)
        except IndexBackendError as error:
            raise ImageIndexError(str(error)) from None
        # One connection shared by the pipeline's threads, one statement at a time.
        self._lock = threading.RLock()
        self._writer_lock: WriterLock | None = None
        self._migrate()

    @classmethod
    def from_settings(cls, index_settings) -> ImageIndex:
        return cls(index_settings.database, password_env=index_settings.password_env)

    @property
    def is_shared(self) -> bool:
        """True for a server database several daemons may write at once (they claim files)."""
        return self.backend.name == "postgresql"

    @property
    def db(self):
        """The sqlite-utils Database of a SQLite index (for tests and tools); None for PostgreSQL."""
        return getattr(self.backend, "db", None)

    def __str__(self) -> str:
        return describe(self.database)

    def _migrate(self) -> None:
        with self._lock:
            try:
                with self.backend.migration() as version:
                    if version > len(MIGRATIONS):
                        raise ImageIndexError(
                            f"{self} has schema version {version}, newer than this PixelPerfect "
                            f"understands ({len(MIGRATIONS)}); upgrade PixelPerfect"
                        )
                    for step in MIGRATIONS[version:]:
                        step.apply(self.backend)
                    self.backend.set_schema_version(len(MIGRATIONS))
            except _DATABASE_ERRORS as error:
                raise ImageIndexError(f"cannot prepare the index {self}: {' '.join(str(error).split())}") from None

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self.backend.schema_version()

    def column_names(self, table: str = TABLE) -> list[str]:
        with self._lock:
            return self.backend.column_names(table)

    def acquire_writer_lock(self) -> None:
        """Make this process the index's only writer (SQLite); PostgreSQL shares it by claims instead."""
        if self.is_shared or self._writer_lock is not None:
            return
        lock = WriterLock(self.database)
        try:
            lock.acquire()
        except IndexBackendError as error:
            raise ImageIndexError(str(error)) from None
        self._writer_lock = lock

    def check_still_there(self) -> None:
        """Raise ImageIndexGoneError when the SQLite file was deleted or replaced while open."""
        try:
            self.backend.check_file()
        except IndexBackendError as error:
            raise ImageIndexGoneError(str(error)) from None

    def close(self) -> None:
        with self._lock:
            self.backend.close()
            if self._writer_lock is not None:
                self._writer_lock.release()
                self._writer_lock = None

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- running statements -------------------------------------------------------------------

    def _query(self, sql: str, params=()) -> list[dict]:
        with self._lock:
            try:
                return [dict(row) for row in self.backend.execute(sql, params).fetchall()]
            except _DATABASE_ERRORS as error:
                self.backend.reconnect_if_broken()
                raise ImageIndexError(f"cannot read the index {self}: {' '.join(str(error).split())}") from None

    def _write(self, statements) -> list:
        """Run ``[(sql, params), ...]`` in one transaction; returns each statement's rowcount.

        Any failure raises ImageIndexWriteError (never a silent no-op), and nothing is written.
        """
        with self._lock:
            self.check_still_there()
            try:
                with self.backend.atomic(len(statements)):
                    return [self.backend.execute(sql, params).rowcount for sql, params in statements]
            except _DATABASE_ERRORS as error:
                self.backend.reconnect_if_broken()
                raise ImageIndexWriteError(
                    f"cannot write to the index {self}: {' '.join(str(error).split())}"
                ) from None

    def _write_returning(self, sql: str, params) -> list[dict]:
        """One writing statement with a RETURNING clause: its rows, or ImageIndexWriteError."""
        with self._lock:
            self.check_still_there()
            try:
                with self.backend.atomic(1):
                    return [dict(row) for row in self.backend.execute(sql, params).fetchall()]
            except _DATABASE_ERRORS as error:
                self.backend.reconnect_if_broken()
                message = " ".join(str(error).split())
                raise ImageIndexWriteError(f"cannot write to the index {self}: {message}") from None

    # -- reading ----------------------------------------------------------------------------

    def get(self, path: Path) -> dict | None:
        rows = self._query(f"SELECT {_COLUMN_LIST} FROM {TABLE} WHERE path = ?", [normalise_path(path)])
        return rows[0] if rows else None

    def rows(self) -> list[dict]:
        """Every row, in insertion order (for tests and the migration)."""
        return self._query(f"SELECT {_COLUMN_LIST} FROM {TABLE} ORDER BY rowid")

    def find_by_blake3(self, blake3: str) -> list[dict]:
        return self._query(f"SELECT {_COLUMN_LIST} FROM {TABLE} WHERE blake3 = ? ORDER BY path", [blake3])

    def find_by_size(self, size: int) -> list[dict]:
        """Analysed rows of files of ``size`` bytes (a moved file keeps its size)."""
        return self._query(f"SELECT {_COLUMN_LIST} FROM {TABLE} WHERE size = ? AND status = 'ok' ORDER BY path", [size])

    def count(self, where: str | None = None, where_args: list | None = None) -> int:
        rows = self._query(f"SELECT COUNT(*) AS n FROM {TABLE} WHERE {where or '1 = 1'}", where_args or [])
        return rows[0]["n"]

    def due_for_retry(self, now: str) -> list[str]:
        """Paths of error rows whose cause was the environment and whose back-off ended by ``now``."""
        rows = self._query(
            f"SELECT path FROM {TABLE} WHERE status IN ('error', ?) AND retry_after IS NOT NULL AND retry_after <= ? "
            "ORDER BY retry_after",
            [TAG_ERROR, now],
        )
        return [r["path"] for r in rows]

    def stat_snapshot(self) -> dict[str, tuple[int | None, float | None]]:
        """{path: (size, mtime)} of every row: lets a rescan skip known files without hashing.

        Rows whose tags could not be written are left out: a rescan retries them."""
        rows = self._query(f"SELECT path, size, mtime FROM {TABLE} WHERE status != ?", [TAG_ERROR])
        return {r["path"]: (r["size"], r["mtime"]) for r in rows}

    # -- the model's columns ----------------------------------------------------------------

    def _upsert(self, path: Path, values: dict) -> dict:
        key = normalise_path(path)
        record = {"path": key, "folder": os.path.dirname(key), "file_name": os.path.basename(key), **values}
        columns = list(record)
        # Updates only the columns given: the reviewed_* columns are never in them. Written out
        # rather than sqlite-utils' upsert, which can fall back to a silent INSERT OR IGNORE.
        sql = (
            f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT (path) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in columns if c != 'path')} "
            f"RETURNING {_COLUMN_LIST}"
        )
        rows = self._write_returning(sql, [record[c] for c in columns])
        if not rows:  # cannot happen unless the database lies: never pass it over silently
            raise ImageIndexWriteError(f"the index {self} did not keep the row of {key}")
        return rows[0]

    def record_analysis(
        self,
        path: Path,
        *,
        blake3: str | None,
        size: int,
        mtime: float,
        result: AnalysisResult,
        analyzed_at: str,
        tagged_file: Path | None,
        width: int | None = None,
        height: int | None = None,
        error: str | None = None,
        tags_failed: bool = False,
        retry_after: str | None = None,
        retries: int | None = None,
    ) -> dict:
        """Insert or update the model's columns; never touches the reviewed_* columns.

        ``error`` marks an otherwise analysed file as failed; ``tags_failed``: because its tags
        could not be written (status TAG_ERROR, retried at the next rescan); ``retry_after`` (with
        the count of ``retries``) marks that failure as the environment's.
        """
        failed = result.verdict == "error" or error is not None
        status = TAG_ERROR if tags_failed and result.verdict != "error" else ("error" if failed else "ok")
        return self._upsert(
            path,
            {
                "blake3": blake3,
                "sha256": None,  # a row from before blake3 keeps no stale second hash
                "size": size,
                "mtime": mtime,
                "width": width,
                "height": height,
                "verdict": None if result.verdict == "error" else result.verdict,
                "defect": result.defect,
                "quality": result.quality,
                "defect_scores": None if result.defect_scores is None else json.dumps(result.defect_scores),
                "model_version": result.model_version,
                "status": status,
                "error": valid_text(error) if error is not None else result.error and valid_text(result.error),
                "analyzed_at": analyzed_at,
                "tagged_file": None if tagged_file is None else normalise_path(tagged_file),
                "retry_after": retry_after if failed else None,
                "retries": retries if failed else None,
                "learn_inputs": None if result.learn_inputs is None else pack(result.learn_inputs),
                "screen_noise": result.screen_noise,
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
        blake3: str | None = None,
        size: int | None = None,
        mtime: float | None = None,
        retry_after: str | None = None,
        retries: int | None = None,
    ) -> dict:
        """A file that could not be analysed at all (vanished, unreadable): status 'error'; with
        ``retry_after`` when the cause was the environment (retried then)."""
        return self._upsert(
            path,
            {
                "blake3": blake3,
                "sha256": None,
                "size": size,
                "mtime": mtime,
                "verdict": None,
                "defect": None,
                "quality": None,
                "defect_scores": None,
                "model_version": model_version,
                "status": "error",
                "error": valid_text(error),
                "analyzed_at": analyzed_at,
                "tagged_file": None,
                "retry_after": retry_after,
                "retries": retries,
                "learn_inputs": None,
            },
        )

    def record_stat(self, path: Path, *, size: int, mtime: float, blake3: str | None = None) -> None:
        """The file on disk changed without needing a new analysis: touched (same content), or its
        tags rewritten (pass the new ``blake3``, or the daemon would analyse it again)."""
        if blake3 is None:
            update, values = "size = ?, mtime = ?", (size, mtime)
        else:
            update, values = "size = ?, mtime = ?, blake3 = ?, sha256 = NULL", (size, mtime, blake3)
        self._write([(f"UPDATE {TABLE} SET {update} WHERE path = ?", (*values, normalise_path(path)))])

    def record_move(self, old_path: Path, new_path: Path) -> None:
        """The file at ``old_path`` now lives at ``new_path``: its row (and review) follows it."""
        old_key, new_key = normalise_path(old_path), normalise_path(new_path)
        if old_key == new_key:
            return
        with self._lock:
            if self.get(old_key) is None:
                raise ImageIndexError(f"cannot record a move from {old_key}: no row for it")
            self._write(
                [
                    # A row at the destination describes a file the move replaced.
                    (f"DELETE FROM {TABLE} WHERE path = ?", (new_key,)),
                    (
                        f"UPDATE {TABLE} SET path = ?, folder = ?, file_name = ?, "
                        "tagged_file = CASE WHEN tagged_file = ? THEN ? ELSE tagged_file END WHERE path = ?",
                        (new_key, os.path.dirname(new_key), os.path.basename(new_key), old_key, new_key, old_key),
                    ),
                ]
            )

    def record_tags_written(self, path: Path, cull_flags: dict) -> None:
        """The file's tags were just written: keep the cull-flag memory written with them
        (``cull_flags.index_values``), and a tag_error status is over."""
        values = {column: cull_flags.get(column) for column in CULL_FLAG_COLUMNS}
        self._write(
            [
                (
                    f"UPDATE {TABLE} SET {', '.join(f'{c} = ?' for c in values)}, "
                    f"status = CASE WHEN status = ? THEN 'ok' ELSE status END, "
                    f"error = CASE WHEN status = ? THEN NULL ELSE error END WHERE path = ?",
                    (*values.values(), TAG_ERROR, TAG_ERROR, normalise_path(path)),
                )
            ]
        )

    def set_tagged_file(self, path: Path, tagged_file: Path | None) -> None:
        self._write(
            [
                (
                    f"UPDATE {TABLE} SET tagged_file = ? WHERE path = ?",
                    (None if tagged_file is None else normalise_path(tagged_file), normalise_path(path)),
                )
            ]
        )

    def reviewed_rows(self) -> list[dict]:
        """Every analysed row a reviewer decided, oldest review first (what `pixelperfect learn` reads)."""
        return self._query(
            f"SELECT {_COLUMN_LIST} FROM {TABLE} WHERE reviewed_verdict IS NOT NULL AND status = 'ok' "
            "ORDER BY reviewed_at, path"
        )

    def set_learn_inputs(self, path: Path, inputs) -> None:
        """Keep what a file's analysis produced for learning, found again by decoding it."""
        self._write([(f"UPDATE {TABLE} SET learn_inputs = ? WHERE path = ?", (pack(inputs), normalise_path(path)))])

    def unreviewed_rows_with_learn_inputs(self) -> list[dict]:
        """Analysed rows no reviewer decided, with what an adaptation needs to decide them anew."""
        return self._query(
            f"SELECT {_COLUMN_LIST} FROM {TABLE} "
            "WHERE reviewed_verdict IS NULL AND status = 'ok' AND learn_inputs IS NOT NULL ORDER BY path"
        )

    def set_model_verdict(self, path: Path, *, verdict: str, defect: str | None, model_version: str) -> None:
        """A relearnt adaptation changed an unreviewed file's verdict (the scores stay as analysed)."""
        self._write(
            [
                (
                    f"UPDATE {TABLE} SET verdict = ?, defect = ?, model_version = ? "
                    "WHERE path = ? AND reviewed_verdict IS NULL",
                    (verdict, defect, model_version, normalise_path(path)),
                )
            ]
        )

    def paths_without_capture_time(self, limit: int) -> list[str]:
        rows = self._query(f"SELECT path FROM {TABLE} WHERE captured_at IS NULL LIMIT ?", [limit])
        return [r["path"] for r in rows]

    def record_capture_times(self, captured: dict[str, str]) -> None:
        """``captured`` maps a path to its ISO capture time, or "" when the file records none."""
        self._write(
            [
                (f"UPDATE {TABLE} SET captured_at = ? WHERE path = ?", (value, normalise_path(path)))
                for path, value in captured.items()
            ]
        )

    # -- the reviewer's columns -------------------------------------------------------------

    def _set_review(self, path: Path, values: dict) -> dict:
        key = normalise_path(path)
        (updated,) = self._write(
            [
                (
                    f"UPDATE {TABLE} SET {', '.join(f'{c} = ?' for c in REVIEW_COLUMNS)} WHERE path = ?",
                    (*(values.get(c) for c in REVIEW_COLUMNS), key),
                )
            ]
        )
        if updated == 0:
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

    # -- claims: several daemons on one PostgreSQL index ----------------------------------------

    def claim(self, path: Path, owner: str, timeout: float) -> bool:
        """True when ``owner`` may analyse ``path`` now: nobody holds it, ``owner`` does already, or the
        holder's heartbeat is older than ``timeout`` seconds (a daemon killed mid-file). A SQLite index
        has one writer (``acquire_writer_lock``), so every claim succeeds there."""
        if not self.is_shared:
            return True
        rows = self._write_returning(
            f"INSERT INTO {CLAIMS_TABLE} (path, owner, heartbeat) VALUES (?, ?, {_SERVER_EPOCH}) "
            f"ON CONFLICT (path) DO UPDATE SET owner = excluded.owner, heartbeat = excluded.heartbeat "
            f"WHERE {CLAIMS_TABLE}.owner = excluded.owner OR {CLAIMS_TABLE}.heartbeat < excluded.heartbeat - ? "
            "RETURNING owner",
            (normalise_path(path), owner, float(timeout)),
        )
        return bool(rows)

    def heartbeat(self, owner: str, timeout: float) -> None:
        """Keep ``owner``'s claims alive (the server's clock, so machines need not agree on time), and
        drop claims nobody renewed for ``timeout`` seconds: a killed daemon's, on files finished or not
        (an unfinished one is claimed afresh by the next daemon that sees it)."""
        if self.is_shared:
            self._write(
                [
                    (f"UPDATE {CLAIMS_TABLE} SET heartbeat = {_SERVER_EPOCH} WHERE owner = ?", (owner,)),
                    (f"DELETE FROM {CLAIMS_TABLE} WHERE heartbeat < {_SERVER_EPOCH} - ?", (float(timeout),)),
                ]
            )

    def release(self, path: Path, owner: str) -> None:
        if self.is_shared:
            self._write([(f"DELETE FROM {CLAIMS_TABLE} WHERE path = ? AND owner = ?", (normalise_path(path), owner))])

    def claims(self) -> list[dict]:
        return self._query(f"SELECT path, owner, heartbeat FROM {CLAIMS_TABLE} ORDER BY path")

    # -- copying a whole index (``pixelperfect index migrate``) --------------------------------

    def insert_rows(self, rows: list[dict]) -> None:
        """Append complete rows (every column, reviews included) in one transaction."""
        if not rows:
            return
        columns = [c for c in IMAGE_COLUMNS if c in rows[0]]
        sql = f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        self._write([(sql, [row[c] for c in columns]) for row in rows])


# Seconds since the epoch by the database server's clock (claims are PostgreSQL-only).
_SERVER_EPOCH = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"


def migrate_index(source: Path | str, target: Path | str, *, password_env: str = "", batch: int = 1000) -> int:
    """Copy every row (model and review columns) of the index ``source`` into the empty index ``target``;
    SQLite to PostgreSQL or back. Returns the number of rows copied. ``source`` is left as it was."""
    if str(source) == str(target):
        raise ImageIndexError("source and target are the same index")
    with (
        ImageIndex(source, password_env=password_env) as origin,
        ImageIndex(target, password_env=password_env) as destination,
    ):
        if destination.count():
            raise ImageIndexError(
                f"the target index {destination} already has {destination.count()} row(s); migrate into an empty index"
            )
        rows = origin.rows()
        for start in range(0, len(rows), batch):
            destination.insert_rows(rows[start : start + batch])
        copied = destination.count()
        if copied != len(rows):
            raise ImageIndexWriteError(f"copied {copied} of {len(rows)} rows into {destination}")
        return copied
