"""Open the session store read-only, so that the clinician review cannot change the log.

The store (:class:`tens_control.store.Store`) has no read-only mode yet: :meth:`Store.open`
may migrate an older schema, recover unfinished sessions and checkpoint the write-ahead log
when it closes. Review needs none of that, so :func:`open_read_only` checks the file the way
the store does (without writing), then builds a :class:`Store` on an engine whose every
connection is SQLite's ``mode=ro``: any write, by any code path, fails with "attempt to write a
readonly database" instead of reaching the file.

SQLite may still create the empty ``-wal`` and ``-shm`` side files of a WAL database (a
read-only reader needs the shared-memory index); the database file itself is never written.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from drivers.clock import VirtualClock
from tens_control.store import NewerSchemaError, Store, StoreError, resolve_db_path, schema
from tens_control.store.database import BUSY_TIMEOUT_S, describe_sqlite_error, inspect_file
from tens_control.store.lock import LivenessLock
from tens_control.store.paths import DEFAULT_PATIENT


class OlderSchemaError(StoreError):
    """The database needs an upgrade, which the read-only review does not do."""


def read_only_engine(path: Path) -> Engine:
    """An engine whose connections are ``mode=ro`` (a write raises), with the store's
    explicit-``BEGIN`` transaction handling."""
    uri = path.resolve().as_uri() + "?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        conn.isolation_level = None  # transactions begin explicitly (below), as in the store
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    engine = create_engine(
        "sqlite://", creator=connect, poolclass=QueuePool, pool_size=4, max_overflow=8
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def open_read_only(path: str | os.PathLike[str] | None = None) -> Store:
    """The store at ``path`` (``None``: ``$TENS_CONTROL_DB`` or the user data directory),
    opened read-only. Raises a :class:`~tens_control.store.StoreError` with one clear message
    when there is no database, it is not one, it is damaged, or its schema is not this
    version's."""
    db_path = resolve_db_path(path)
    version = inspect_file(db_path)  # read-only; raises DatabaseMissingError and friends
    if version > schema.SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{db_path} was written by a newer tens-control (schema version {version}; this "
            f"version understands up to {schema.SCHEMA_VERSION}); the file was not changed. "
            "Upgrade tens-control to review it"
        )
    if version < schema.SCHEMA_VERSION:
        raise OlderSchemaError(
            f"{db_path} was written by an older tens-control (schema version {version}); review "
            "opens it read-only and does not upgrade it. Run `tens-control verify --db "
            f"{db_path}` once to upgrade it, then review it"
        )
    engine = read_only_engine(db_path)
    try:
        with engine.connect() as conn, conn.begin():
            installation = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "installation")
            ).scalar_one()
    except DBAPIError as error:
        engine.dispose()
        raise describe_sqlite_error(db_path, error.orig or error) from None
    except BaseException:
        engine.dispose()
        raise
    clock = VirtualClock()  # nothing is ever written, so no batch deadline is ever set
    return Store(
        path=db_path,
        engine=engine,
        installation=str(installation),
        clock=clock,
        wall=lambda: datetime.now(UTC),
        default_patient=DEFAULT_PATIENT,
        liveness=LivenessLock(db_path),  # never taken: it is only used by writers
        flush_interval_s=1.0,
        background_flush=False,
        batch_rows=1,
        seal_interval_s=1.0,
        seal_rows=1,
    )
