"""The database file: recognising it without touching it, creating it owner-only, and the
SQLAlchemy engine with the connection settings every connection gets.

A file is inspected through a read-only SQLite connection (``mode=ro``) before anything may write
to it, so a file that is not a tens-control database, is damaged, or was written by a newer
version is refused with one clear message and left byte-for-byte as it was.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from tens_control.store import schema
from tens_control.store.errors import (
    DatabaseCorruptError,
    DatabaseMissingError,
    NotATensControlDatabaseError,
    StoreBusyError,
    StoreError,
)

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 10.0
"""How long a connection waits for another process's write transaction before failing."""

WRITE = {"tc_begin": "IMMEDIATE"}
"""Execution options of a connection that writes (takes SQLite's write lock at BEGIN, so that a
chain head read inside the transaction cannot change under it, even across processes)."""


def sidecar_paths(path: Path) -> list[Path]:
    """The files SQLite keeps next to the database in WAL mode."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def create_file(path: Path) -> None:
    """Create an empty database file readable by its owner only (directory 0700 if we create
    it). Fails if the file exists."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def tighten_permissions(path: Path) -> None:
    """Make the database and its WAL files owner-only (0600) if they are not already."""
    for file in (path, *sidecar_paths(path)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning("tightening permissions of %s from %o to 600", file, mode)
            os.chmod(file, 0o600)


def _readonly_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def describe_sqlite_error(path: Path, error: BaseException) -> StoreError:
    """Map a low-level SQLite error to one clear store error."""
    text = str(error)
    lowered = text.lower()
    if "not a database" in lowered or "file is encrypted" in lowered:
        return NotATensControlDatabaseError(
            f"{path} is not a tens-control database (not an SQLite file); the file was not "
            "changed. Check the --db path or TENS_CONTROL_DB"
        )
    if "malformed" in lowered or "corrupt" in lowered:
        return DatabaseCorruptError(
            f"{path} cannot be read ({text}); the file was not changed. Restore it from a "
            "backup, or move it aside and start a new database"
        )
    if "locked" in lowered or "busy" in lowered:
        return StoreBusyError(
            f"{path} is busy: another program holds it ({text}); try again, or close the other "
            "tens-control"
        )
    return StoreError(
        f"{path} could not be used ({text}); check the free disk space and the permissions of "
        "the file and its directory"
    )


def inspect_file(path: Path) -> int:
    """The schema version of the tens-control database at ``path``, read without modifying it.

    Raises :class:`DatabaseMissingError`, :class:`NotATensControlDatabaseError` or
    :class:`DatabaseCorruptError`.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DatabaseMissingError(
            f"there is no database at {path}; check the --db path or TENS_CONTROL_DB"
        ) from None
    if not path.is_file():
        raise NotATensControlDatabaseError(f"{path} is not a file; give the database file path")
    with path.open("rb") as fp:
        header = fp.read(100)
    if size == 0 or not header.startswith(SQLITE_MAGIC):
        raise NotATensControlDatabaseError(
            f"{path} is not a tens-control database (not an SQLite file); the file was not "
            "changed. Check the --db path or TENS_CONTROL_DB"
        )
    if len(header) < 100:
        raise DatabaseCorruptError(
            f"{path} is truncated (shorter than an SQLite header); the file was not changed. "
            "Restore it from a backup, or move it aside and start a new database"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]
    has_wal = any(p.exists() and p.stat().st_size > 0 for p in sidecar_paths(path)[:1])
    if header_valid and not has_wal and pages and size < pages * page_size:
        raise DatabaseCorruptError(
            f"{path} is truncated ({size} bytes, its header says {pages * page_size}); the file "
            "was not changed. Restore it from a backup, or move it aside and start a new database"
        )
    try:
        conn = sqlite3.connect(_readonly_uri(path), uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise describe_sqlite_error(path, error) from None
    try:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not {"meta", "schema_version"} <= names:
            raise NotATensControlDatabaseError(
                f"{path} is an SQLite database but not a tens-control database; the file was "
                "not changed. Check the --db path or TENS_CONTROL_DB"
            )
        app = conn.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
        if app is None or app[0] != schema.APP_ID:
            raise NotATensControlDatabaseError(
                f"{path} is an SQLite database of another program, not tens-control; the file "
                "was not changed"
            )
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        for name in sorted(names):
            if not name.startswith("sqlite_"):
                conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchall()
    except sqlite3.Error as error:
        raise describe_sqlite_error(path, error) from None
    finally:
        conn.close()
    if not isinstance(version, int):
        raise DatabaseCorruptError(
            f"{path} has no valid schema version; the file was not changed. Restore it from a "
            "backup"
        )
    return version


def make_read_only_engine(path: Path) -> Engine:
    """An engine whose connections are SQLite ``mode=ro`` and ``query_only``: any write, by any
    code path, fails instead of reaching the file."""
    uri = _readonly_uri(path)

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    engine = create_engine(
        "sqlite://", creator=connect, poolclass=QueuePool, pool_size=4, max_overflow=8
    )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def make_engine(path: Path) -> Engine:
    """An engine whose every connection uses WAL, ``synchronous=FULL`` (a commit is on disk
    before it returns), foreign keys, ``secure_delete`` (deleted data is overwritten) and a busy
    timeout; transactions are begun explicitly (``BEGIN``, or ``BEGIN IMMEDIATE`` for writers)."""
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        pool_size=4,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        raw: Any = dbapi_connection
        raw.isolation_level = None  # we emit BEGIN ourselves (pysqlite's implicit BEGIN is wrong)
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("tc_begin", "")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    return engine


def insert_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT added."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database did not report the new row's id")
    return int(key[0])
