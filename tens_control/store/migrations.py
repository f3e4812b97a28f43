"""Schema versions: creating the current schema, and upgrading older databases step by step.

Steps:

- 1 -> 2: ``sessions.mean_amplitude_ma`` and ``max_amplitude_ma`` are added and filled in for
  every ended session from its ``amplitude_changed`` events (``amplitude.backfill``), and the
  partial index ``ix_events_review_kinds`` (faults and refused requests only) is created.
- 2 -> 3: the ``enrolments`` and ``anchors`` tables are created, and
  ``sessions.odometer_sessions`` / ``odometer_seconds`` are added (NULL: the device reported
  no odometer).
- 3 -> 4: the table ``pgic_ratings`` (Patient Global Impression of Change) is created, empty,
  and ``ix_events_review_kinds`` is recreated to hold the safety governor's fault kinds
  (``lead_off``, ``output_mismatch``, ``comms_lost``) beside the old ``fault`` records.

When the schema changes: bump ``schema.SCHEMA_VERSION``, change the tables in ``schema.py``, and
register here the step from the previous version, written in plain SQL against the *old* layout
(not with ``schema.py``'s tables, which describe the newest one). A step must never change a
hash-chained value (events, or a record's content), or ``verify`` fails.

Before migrating, the file is copied to ``<database>.schema-v<N>.bak`` (owner-only); all steps
run in one transaction, so a failing step leaves the database as it was.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, insert

from tens_control.store import amplitude, schema
from tens_control.store.canonical import iso_utc, new_uid
from tens_control.store.database import WRITE
from tens_control.store.errors import MigrationError

log = logging.getLogger(__name__)

Step = Callable[[Connection], None]


def _v1_to_v2(conn: Connection) -> None:
    """Add the sessions' derived amplitude figures (filled in from the log) and the partial
    index on the fault/rejection events."""
    conn.exec_driver_sql("ALTER TABLE sessions ADD COLUMN mean_amplitude_ma FLOAT")
    conn.exec_driver_sql("ALTER TABLE sessions ADD COLUMN max_amplitude_ma FLOAT")
    conn.exec_driver_sql(
        "CREATE INDEX ix_events_review_kinds ON events (chain_id, wall_time) "
        "WHERE kind IN ('fault', 'rejected')"
    )
    filled = amplitude.backfill(conn)
    log.info("schema 2: amplitude figures stored for %d ended session(s)", filled)


def _v2_to_v3(conn: Connection) -> None:
    """Add the enrolments and anchors tables and the sessions' device odometer columns."""
    conn.exec_driver_sql("ALTER TABLE sessions ADD COLUMN odometer_sessions INTEGER")
    conn.exec_driver_sql("ALTER TABLE sessions ADD COLUMN odometer_seconds FLOAT")
    conn.exec_driver_sql(
        "CREATE TABLE enrolments (id INTEGER NOT NULL, uid VARCHAR(32) NOT NULL, "
        "patient_id INTEGER NOT NULL, at VARCHAR(32) NOT NULL, clinic VARCHAR(200) NOT NULL, "
        "clinic_patient VARCHAR(64) NOT NULL, serial INTEGER NOT NULL, text TEXT NOT NULL, "
        "replaced BOOLEAN NOT NULL, PRIMARY KEY (id), UNIQUE (uid), "
        "FOREIGN KEY(patient_id) REFERENCES patients (id))"
    )
    conn.exec_driver_sql("CREATE INDEX ix_enrolment_patient_at ON enrolments (patient_id, at)")
    conn.exec_driver_sql(
        "CREATE TABLE anchors (id INTEGER NOT NULL, patient_id INTEGER NOT NULL, "
        "chain_uid VARCHAR(32) NOT NULL, head_seq INTEGER NOT NULL, head_hash VARCHAR(64) NOT "
        "NULL, exported_at VARCHAR(32) NOT NULL, bundle_digest VARCHAR(64) NOT NULL, "
        "imported_at VARCHAR(32) NOT NULL, PRIMARY KEY (id), "
        "FOREIGN KEY(patient_id) REFERENCES patients (id))"
    )
    conn.exec_driver_sql("CREATE INDEX ix_anchor_patient_chain ON anchors (patient_id, chain_uid)")


def _v3_to_v4(conn: Connection) -> None:
    """Add the PGIC table (a new record type: nothing to fill in), and let the review's partial
    index hold the safety governor's fault kinds too (the old ``fault`` records stay in it)."""
    conn.exec_driver_sql(
        "CREATE TABLE pgic_ratings (id INTEGER NOT NULL PRIMARY KEY, uid VARCHAR(32) NOT NULL "
        "UNIQUE, patient_id INTEGER NOT NULL REFERENCES patients (id), at VARCHAR(32) NOT NULL, "
        "value INTEGER, CONSTRAINT ck_pgic_value CHECK (value IS NULL OR value BETWEEN 1 AND 7))"
    )
    conn.exec_driver_sql("CREATE INDEX ix_pgic_patient_at ON pgic_ratings (patient_id, at)")
    conn.exec_driver_sql("DROP INDEX ix_events_review_kinds")
    conn.exec_driver_sql(
        "CREATE INDEX ix_events_review_kinds ON events (chain_id, wall_time) "
        "WHERE kind IN ('comms_lost', 'fault', 'lead_off', 'output_mismatch', 'rejected')"
    )


STEPS: dict[int, tuple[str, Step]] = {
    1: ("session amplitude figures stored; partial index on fault/rejection events", _v1_to_v2),
    2: ("clinic enrolments, clinic anchors, device odometer of each session", _v2_to_v3),
    3: (
        "PGIC ratings (Patient Global Impression of Change); the governor's fault kinds in the "
        "partial index",
        _v3_to_v4,
    ),
}
"""from_version -> (description, step upgrading a database from that version to the next)."""


def create_schema(conn: Connection) -> None:
    """Create the current schema in an empty database (inside the caller's transaction)."""
    schema.metadata.create_all(conn)
    now = iso_utc(datetime.now(UTC))
    conn.execute(
        insert(schema.meta),
        [
            {"key": "app", "value": schema.APP_ID},
            {"key": "installation", "value": new_uid()},
            {"key": "created_at", "value": now},
        ],
    )
    conn.execute(
        insert(schema.schema_version),
        {"version": schema.SCHEMA_VERSION, "applied_at": now, "description": "created"},
    )


def backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.schema-v{version}.bak")


def _backup(path: Path, version: int) -> Path:
    target = backup_path(path, version)
    if target.exists():
        target = target.with_name(f"{target.name}.{datetime.now(UTC):%Y%m%dT%H%M%S}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    source = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
    os.chmod(target, 0o600)
    return target


def migrate(engine: Engine, path: Path, from_version: int) -> Path | None:
    """Upgrade the database from ``from_version`` to ``schema.SCHEMA_VERSION``.

    Returns the backup file, or None if nothing was to be done.
    """
    target = schema.SCHEMA_VERSION
    if from_version >= target:
        return None
    missing = [v for v in range(from_version, target) if v not in STEPS]
    if missing:
        raise MigrationError(
            f"{path} has schema version {from_version} and this tens-control cannot upgrade it "
            f"(no step from version {missing[0]}); the database was not changed"
        )
    backup = _backup(path, from_version)
    log.info("migrating %s from schema %d to %d (backup %s)", path, from_version, target, backup)
    try:
        with engine.connect() as conn:
            conn.execution_options(**WRITE)
            with conn.begin():
                for version in range(from_version, target):
                    description, step = STEPS[version]
                    step(conn)
                    conn.execute(
                        insert(schema.schema_version),
                        {
                            "version": version + 1,
                            "applied_at": iso_utc(datetime.now(UTC)),
                            "description": description,
                        },
                    )
    except Exception as error:
        raise MigrationError(
            f"upgrading {path} from schema version {from_version} failed ({error}); the "
            f"database was not changed (a copy is in {backup})"
        ) from error
    return backup
