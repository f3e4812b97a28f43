"""The database file: recognising it without touching it, creating it owner-only, and the
SQLAlchemy engine with the connection settings every connection gets.

A file is inspected through a read-only SQLite connection (``mode=ro``) before anything may write
to it, so a file that is not a tens-control database, is damaged, or was written by a newer
version is refused with one clear message and left byte-for-byte as it was.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import CursorResult, Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from tens_control.store import schema
from tens_control.store.errors import (
    DatabaseCorruptError,
    DatabaseFolderMissingError,
    DatabaseMissingError,
    DatabaseNotWritableError,
    DiskFullError,
    NotATensControlDatabaseError,
    StoreBusyError,
    StoreError,
)

resource: ModuleType | None
try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

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
    it). Fails if the file exists; an OS error is raised as one clear :class:`StoreError`."""
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except FileExistsError:
        raise
    except OSError as error:
        raise describe_os_error(path, error) from None


def tighten_permissions(path: Path) -> None:
    """Make the database and its WAL files owner-only (0600) if they are not already (a file
    this user may not change is left as it is, with a warning)."""
    for file in (path, *sidecar_paths(path)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning("tightening permissions of %s from %o to 600", file, mode)
            try:
                os.chmod(file, 0o600)
            except OSError as error:
                log.warning("could not tighten the permissions of %s: %s", file, error.strerror)


# --------------------------------------------------------------------------- writable or not


def folder_refuses_writes(folder: Path) -> str | None:
    """Why this user cannot create files in ``folder`` (SQLite creates the database's ``-wal``,
    ``-shm`` and lock files beside it), in words; None if they can."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"the folder {folder} is on read-only media (a read-only file system)"
    except OSError:
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is read-only for this user"
    return None


def not_writable(path: Path, why: str) -> DatabaseNotWritableError:
    return DatabaseNotWritableError(
        f"cannot write the database {path}: {why}; nothing was written. Give a writable place "
        "with --db (or TENS_CONTROL_DB), or make it writable (reading commands -- verify, "
        "report, review, prescription show -- open it read-only)"
    )


def _file_in_the_way(path: Path) -> Path | None:
    """The first part of ``path``'s folder that exists but is not a folder, if any."""
    for part in reversed((path.parent, *path.parent.parents)):
        if part.exists() and not part.is_dir():
            return part
    return None


def check_writable(path: Path, *, make_folder: bool) -> None:
    """Before a command writes to ``path``: one clear error, and nothing created, when it
    cannot. ``make_folder``: the database's folder may be created (the default data folder);
    for a path the user gave (``--db``, ``$TENS_CONTROL_DB``) the folder must exist, so that a
    typo does not silently start a new, empty database somewhere."""
    folder = path.parent
    in_the_way = _file_in_the_way(path)
    if in_the_way is not None:
        raise not_writable(path, f"{in_the_way} is a file, not a folder")
    if path.exists():
        if not path.is_file():
            return  # inspect_file names it
        why = folder_refuses_writes(folder)
        if why is not None:
            raise not_writable(path, why)
        if not os.access(path, os.W_OK):
            raise not_writable(path, "the file is read-only for this user")
        return
    if not folder.is_dir():
        if not make_folder:
            raise DatabaseFolderMissingError(
                f"there is no folder {folder} for the database {path}; check the --db path "
                "or TENS_CONTROL_DB for a typo, or create the folder first (only the default "
                "data folder is created by itself)"
            )
        folder = next(p for p in folder.parents if p.is_dir())
    why = folder_refuses_writes(folder)
    if why is not None:
        raise not_writable(path, why)


def _size_limited() -> bool:
    """A finite file size limit (``ulimit -f``) is in force."""
    if resource is None:  # pragma: no cover - Windows
        return False
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return bool(soft != resource.RLIM_INFINITY)


def disk_full(path: Path) -> DiskFullError:
    limit = " or the file size limit (ulimit -f) was reached" if _size_limited() else ""
    return DiskFullError(
        f"cannot write the database {path}: the disk is full{limit}; everything written before "
        "is kept. Free some space, then start again"
    )


def _looks_full(path: Path) -> bool:
    """After an I/O error: is the disk (nearly) full, or a file size limit in force?"""
    if _size_limited():
        return True
    try:
        return shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        return False


def describe_os_error(path: Path, error: OSError) -> StoreError:
    """Map an operating-system error about the database's files to one clear store error."""
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return disk_full(path)
    if code == errno.EROFS:
        return not_writable(path, f"the folder {path.parent} is on read-only media")
    if code in (errno.EACCES, errno.EPERM):
        why = folder_refuses_writes(path.parent) or f"this user may not write {error.filename}"
        return not_writable(path, why)
    if code == errno.ENOTDIR:
        in_the_way = _file_in_the_way(path)
        return not_writable(path, f"{in_the_way or path.parent} is a file, not a folder")
    return StoreError(
        f"{path} could not be used ({error.strerror or error}); check the free disk space and "
        "the permissions of the file and its folder"
    )


def _readonly_uri(path: Path) -> str:
    """The URI of a read-only connection: ``mode=ro``; on read-only media (a folder nobody
    running us may write, with no ``-wal`` or ``-shm`` file beside the database, so no writer
    is active) also ``immutable=1``, because SQLite cannot create the ``-shm`` file a reader of
    a WAL database needs there."""
    uri = path.resolve().as_uri() + "?mode=ro"
    if folder_refuses_writes(path.parent) is not None and not any(
        p.exists() for p in sidecar_paths(path)
    ):
        uri += "&immutable=1"
    return uri


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
    if "disk is full" in lowered or ("disk i/o error" in lowered and _looks_full(path)):
        return disk_full(path)
    if "readonly database" in lowered or "unable to open database file" in lowered:
        why = folder_refuses_writes(path.parent)
        if why is not None and any(p.exists() for p in sidecar_paths(path)):
            return not_writable(
                path,
                f"{why}, and it has write-ahead files ({path.name}-wal, -shm) that only a "
                "writer can merge; to read it, copy the database with those files to a "
                "writable folder and open the copy",
            )
        if why is not None:
            return not_writable(path, why)
        if "readonly" in lowered:
            return not_writable(path, "the file is read-only for this user")
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
    try:
        with path.open("rb") as fp:
            header = fp.read(100)
    except PermissionError:
        raise StoreError(
            f"cannot read the database {path}: this user may not read it (it is readable by its "
            "owner only); run tens-control as the user who owns it"
        ) from None
    except OSError as error:
        raise describe_os_error(path, error) from None
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
