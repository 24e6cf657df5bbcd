"""The two databases the index can live in: a SQLite file (the default, no server) or PostgreSQL.

Each backend offers the same small surface to ``index.py`` and the review UI's queries: run a
statement written with ``?`` placeholders, get rows that work as tuples and as dicts, run a
transaction, and edit the schema. Everything that differs between the two (placeholders, DDL types,
how the schema version is stored, case-insensitive LIKE, locks) is decided here and nowhere else.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit

import sqlite_utils

# Busy writers (daemon + UI) wait for each other instead of failing.
_BUSY_TIMEOUT_SECONDS = 30.0
_POSTGRES_SCHEMES = ("postgresql", "postgres")
# One key for every PixelPerfect process migrating the same PostgreSQL database.
_MIGRATION_LOCK_KEY = 0x50495845  # "PIXE"


class IndexBackendError(Exception):
    """The database cannot be reached or used (bad URL, missing password, file gone)."""


def is_postgres_url(database: Path | str) -> bool:
    return isinstance(database, str) and urlsplit(database).scheme in _POSTGRES_SCHEMES


def describe(database: Path | str) -> str:
    """The database for log lines and errors: never with a password."""
    if not is_postgres_url(database):
        return str(database)
    parts = urlsplit(database)
    host = parts.hostname or "local socket"
    return f"postgresql://{parts.username or ''}@{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class Row(tuple):
    """A result row usable as a tuple (``row[0]``) and as a mapping (``row["path"]``, ``dict(row)``)."""

    def __new__(cls, names: tuple[str, ...], values):
        row = super().__new__(cls, values)
        row._names = names
        return row

    def keys(self):
        return self._names

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)


# Python types of the columns to each database's type.
_SQLITE_TYPES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bytes: "BLOB"}
# Text compares byte-wise (COLLATE "C") as in SQLite: the folder filter's prefix ranges rely on it.
_POSTGRES_TYPES = {str: 'TEXT COLLATE "C"', int: "BIGINT", float: "DOUBLE PRECISION", bytes: "BYTEA"}


class SQLiteBackend:
    """A SQLite file in WAL mode, through sqlite-utils; one connection shared by the caller's threads."""

    name = "sqlite"
    case_insensitive_like = "LIKE"  # SQLite's LIKE ignores ASCII case already

    @staticmethod
    def sort_order(order: str) -> str:
        """``order`` (an ORDER BY list) with NULLs sorting as the smallest values: SQLite's own rule."""
        return order

    def __init__(self, database: Path, *, read_only: bool = False):
        self.database = Path(database)
        self.read_only = read_only
        if read_only:
            if not self.database.is_file():
                raise IndexBackendError(f"index database not found: {self.database}")
            connection = sqlite3.connect(
                f"{self.database.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0, check_same_thread=False
            )
        else:
            self.database.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(self.database), timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        connection.row_factory = _sqlite_row
        # Statements are committed by transaction(); everything else autocommits.
        connection.isolation_level = None
        self.conn = connection
        self.db = sqlite_utils.Database(connection)
        self._identity = self._file_identity()
        if not read_only:
            self.db.enable_wal()
            # Safe in WAL mode against a crashed process; a power cut may lose the last rows, which
            # only means those files are analysed again.
            connection.execute("PRAGMA synchronous = NORMAL")

    def _file_identity(self) -> tuple[int, int]:
        st = os.stat(self.database)
        return st.st_dev, st.st_ino

    def reconnect_if_broken(self) -> None:
        """A SQLite file needs no reconnecting."""

    def check_file(self) -> None:
        """Raise when the database file was deleted or replaced under us: rows would go nowhere."""
        try:
            identity = self._file_identity()
        except FileNotFoundError:
            raise IndexBackendError(f"the index database {self.database} was deleted while in use") from None
        if identity != self._identity:
            raise IndexBackendError(f"the index database {self.database} was replaced by another file while in use")

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows) -> None:
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self, *, immediate: bool = False):
        self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): keep the original error.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def atomic(self, statements: int):
        """Around ``statements`` writing statements: one IMMEDIATE transaction (writers queue up at BEGIN)."""
        return self.transaction(immediate=True)

    @contextmanager
    def migration(self):
        """A transaction that only one process at a time may be in; yields the stored schema version."""
        with self.transaction(immediate=True):
            yield self.conn.execute("PRAGMA user_version").fetchone()[0]

    def set_schema_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def create_table(self, table: str, columns: dict[str, type], *, pk: str, not_null: set[str]) -> None:
        self.db[table].create(columns, pk=pk, not_null=not_null, if_not_exists=True)

    def add_column(self, table: str, column: str, kind: type) -> None:
        self.db[table].add_column(column, kind)

    def create_index(self, table: str, columns: list[str]) -> None:
        self.db[table].create_index(columns, if_not_exists=True)

    def column_names(self, table: str) -> list[str]:
        return [c.name for c in self.db[table].columns]

    def has_table(self, table: str) -> bool:
        return self.db[table].exists()

    def close(self) -> None:
        self.conn.close()


def _sqlite_row(cursor: sqlite3.Cursor, values: tuple) -> Row:
    return Row(tuple(d[0] for d in cursor.description), values)


def _postgres_row_factory(cursor):
    names = tuple(c.name for c in cursor.description) if cursor.description else ()
    return lambda values: Row(names, values)


def _to_postgres_placeholders(sql: str) -> str:
    # PixelPerfect's SQL has no "?" or "%" inside literals, so a plain replacement is exact.
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresBackend:
    """A PostgreSQL database reached by URL; the password comes from an environment variable."""

    name = "postgresql"
    case_insensitive_like = "ILIKE"

    @staticmethod
    def sort_order(order: str) -> str:
        """``order`` with NULLs as the smallest values, as in SQLite (PostgreSQL's default is the largest)."""
        terms = []
        for term in order.split(","):
            term = term.strip()
            if term.split()[0] == "rowid":  # never NULL: PostgreSQL's default matches the indexes' rowid key
                terms.append(term)
            else:
                terms.append(term + (" NULLS LAST" if term.upper().endswith(" DESC") else " NULLS FIRST"))
        return ", ".join(terms)

    def __init__(self, url: str, *, password_env: str = "", read_only: bool = False):
        import psycopg

        self.database = url
        self.read_only = read_only
        self._psycopg = psycopg
        parameters = {"autocommit": True, "row_factory": _postgres_row_factory, "connect_timeout": 10}
        if password_env:
            password = os.environ.get(password_env)
            if password is None:
                raise IndexBackendError(
                    f"[index] password_env names {password_env}, but that environment variable is not set"
                )
            parameters["password"] = password
        self._parameters = parameters
        try:
            self.conn = self._connect()
        except psycopg.Error as error:
            raise IndexBackendError(f"cannot connect to {describe(url)}: {' '.join(str(error).split())}") from None

    def _connect(self):
        connection = self._psycopg.connect(self.database, **self._parameters)
        if self.read_only:  # the review UI's reads: any write through this connection is refused
            connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return connection

    def reconnect_if_broken(self) -> None:
        """After a failed statement: a lost connection (server restarted) is opened afresh for the next try."""
        if not (self.conn.broken or self.conn.closed):
            return
        try:
            self.conn = self._connect()
        except self._psycopg.Error:
            pass  # still away: the caller's next try fails and comes back here

    def check_file(self) -> None:
        """A server database cannot be deleted from under us unnoticed: the connection fails loudly."""

    def execute(self, sql: str, params=()):
        return self.conn.execute(_to_postgres_placeholders(sql), tuple(params))

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_to_postgres_placeholders(sql), list(rows))

    @contextmanager
    def transaction(self, *, immediate: bool = False):
        with self.conn.transaction():
            yield

    def atomic(self, statements: int):
        """One statement is atomic by itself in autocommit mode: no BEGIN/COMMIT round trips for it."""
        return nullcontext() if statements == 1 else self.transaction()

    @contextmanager
    def migration(self):
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            self.conn.execute("CREATE TABLE IF NOT EXISTS pixelperfect_schema (version INTEGER NOT NULL)")
            row = self.conn.execute("SELECT version FROM pixelperfect_schema").fetchone()
            if row is None:
                self.conn.execute("INSERT INTO pixelperfect_schema (version) VALUES (0)")
            yield 0 if row is None else row[0]

    def set_schema_version(self, version: int) -> None:
        self.conn.execute("UPDATE pixelperfect_schema SET version = %s", (int(version),))

    def schema_version(self) -> int:
        row = self.conn.execute("SELECT version FROM pixelperfect_schema").fetchone()
        return 0 if row is None else row[0]

    def create_table(self, table: str, columns: dict[str, type], *, pk: str, not_null: set[str]) -> None:
        definitions = [
            f"{name} {_POSTGRES_TYPES[kind]}{' NOT NULL' if name in not_null else ''}"
            f"{' PRIMARY KEY' if name == pk else ''}"
            for name, kind in columns.items()
        ]
        # rowid: insertion order, as SQLite's implicit rowid; the UI's sort orders end in it.
        definitions.append("rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(definitions)})")

    def add_column(self, table: str, column: str, kind: type) -> None:
        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {_POSTGRES_TYPES[kind]}")

    def create_index(self, table: str, columns: list[str]) -> None:
        # With rowid appended and NULLs first, an index serves the UI's "ORDER BY column, rowid" (see
        # sort_order) in either direction without sorting.
        keys = ", ".join(f"{c} NULLS FIRST" for c in columns)
        self.conn.execute(f"CREATE INDEX IF NOT EXISTS idx_{table}_{'_'.join(columns)} ON {table} ({keys}, rowid)")

    def column_names(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = "
            "current_schema() AND column_name <> 'rowid' ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [r[0] for r in rows]

    def has_table(self, table: str) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        return row[0] is not None

    def close(self) -> None:
        self.conn.close()


def open_backend(database: Path | str, *, password_env: str = "", read_only: bool = False):
    """The backend for ``[index] database``: a PostgreSQL URL or a SQLite file path."""
    if is_postgres_url(database):
        return PostgresBackend(str(database), password_env=password_env, read_only=read_only)
    return SQLiteBackend(Path(database), read_only=read_only)


class WriterLock:
    """An exclusive lock file beside a SQLite index: one daemon (or scan) writes it at a time."""

    def __init__(self, database: Path):
        self.path = Path(str(database) + ".lock")
        self._handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise IndexBackendError(
                f"the index {self.path.with_suffix('')} is in use by another PixelPerfect daemon or scan "
                f"(process {holder}); a SQLite index takes one writer at a time: stop the other one, or use "
                f"a PostgreSQL [index] database to run several daemons"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the lock; the file stays (deleting it would race)
            self._handle = None
