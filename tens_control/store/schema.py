"""The database schema (SQLAlchemy Core), version :data:`SCHEMA_VERSION`.

Conventions: every table has an integer ``id`` (local to one database file) and, where a row
can travel between databases (export/import), a ``uid`` (32 hex digits) that identifies it
everywhere. Times are UTC ISO-8601 text of fixed width (``canonical.iso_utc``), so that text
order is time order. JSON columns hold canonical JSON text. Booleans are 0/1 integers.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from tens_control.store.records import FAULT_KINDS

SCHEMA_VERSION = 4
"""The schema this code writes. Older databases are migrated; newer ones are refused.
Version 2 added ``sessions.mean_amplitude_ma`` / ``max_amplitude_ma`` (derived from the log, see
``amplitude.py``) and the partial index ``ix_events_review_kinds``. Version 3 added the
``enrolments`` and ``anchors`` tables and the sessions' device odometer
(``odometer_sessions``, ``odometer_seconds``). Version 4 added the ``pgic_ratings`` table and
the governor's fault kinds to ``ix_events_review_kinds``."""

APP_ID = "tens-control"
"""Value of ``meta.app``: how a tens-control database is recognised."""

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Key/value facts about the database: ``app``, ``installation`` (this database's uid, the
origin of the chains it writes), ``created_at``."""

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", String(32), nullable=False),
    Column("description", Text, nullable=False),
)
"""One row per schema version applied; the current version is the largest."""

patients = Table(
    "patients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("pseudonym", String(64), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("protocol", String(64), nullable=False),
    Column("protocol_version", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("serial_number", String(200), nullable=False),
    Column("firmware", String(200), nullable=False),
    Column("info", Text, nullable=False),
    Column("is_simulator", Boolean, nullable=False),
    Column("first_seen", String(32), nullable=False),
    UniqueConstraint("protocol", "model", "serial_number", "firmware", name="uq_device"),
)
"""Devices seen; ``info`` is the canonical JSON of ``drivers.base.DeviceInfo``."""

chains = Table(
    "chains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("head_seq", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    UniqueConstraint("patient_id", "origin", name="uq_chain_patient_origin"),
)
"""One hash chain per (patient, database that wrote it). ``head_*`` is the last record."""

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=True),
    Column("program", String(200), nullable=False),
    Column("plan", Text, nullable=False),
    Column("planned_minutes", Float, nullable=False),
    Column("prescription_version", Integer, nullable=True),
    Column("simulator", Boolean, nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("started_mono", Float, nullable=True),
    Column("ended_at", String(32), nullable=True),
    Column("ended_mono", Float, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Column("mean_amplitude_ma", Float, nullable=True),
    Column("max_amplitude_ma", Float, nullable=True),
    Column("odometer_sessions", Integer, nullable=True),
    Column("odometer_seconds", Float, nullable=True),
    Index("ix_sessions_patient_started", "patient_id", "started_at"),
)
"""``plan`` is the canonical JSON of ``records.SessionPlan`` (program, per-channel settings,
electrode sites and areas, caps in force, planned minutes, prescription version).
``mean_amplitude_ma`` / ``max_amplitude_ma`` (version 2) are derived from the session's
``amplitude_changed`` events when it ends (``amplitude.py``): not hash-chained, not exported,
NULL while the session has no end; ``verify`` recomputes them from the log and reports any that
differ. ``odometer_*`` (version 3): the device's session counter and total stimulation seconds
as it reported them at the start (NULL when it reports none), mirrored by ``session_started``."""

REVIEW_EVENT_KINDS: tuple[str, ...] = (*sorted(FAULT_KINDS), "rejected")
"""The event kinds the review counts (faults of old and new logs, refused requests): the only
ones in the partial index ``ix_events_review_kinds`` (version 4: the governor's ``lead_off``,
``output_mismatch`` and ``comms_lost`` beside the old ``fault``)."""

REVIEW_KINDS_SQL = "kind IN (" + ", ".join(f"'{k}'" for k in REVIEW_EVENT_KINDS) + ")"
"""The partial index's condition. SQLite uses the index only for a query whose WHERE contains
this very term (on an unaliased ``events`` table, or ``e.``-prefixed as
:func:`review_kinds_sql` writes it)."""


def review_kinds_sql(alias: str = "") -> str:
    """The partial index's condition for a query naming the events table ``alias``."""
    return REVIEW_KINDS_SQL if not alias else f"{alias}.{REVIEW_KINDS_SQL}"


events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("chain_id", Integer, ForeignKey("chains.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=True),
    Column("wall_time", String(32), nullable=False),
    Column("mono_time", Float, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("chain_id", "seq", name="uq_event_chain_seq"),
    Index("ix_events_session", "session_id"),
    Index("ix_events_chain_time", "chain_id", "wall_time"),
    Index(
        "ix_events_review_kinds",
        "chain_id",
        "wall_time",
        sqlite_where=text(REVIEW_KINDS_SQL),
        postgresql_where=text(REVIEW_KINDS_SQL),
    ),
)
"""``ix_events_review_kinds`` (version 2, its kinds widened in version 4) is partial: only faults
and refused requests, so that the review finds them without scanning every event, and SQLite
never picks it for other kinds (a plain index on ``kind`` made it choose that index for
``amplitude_changed``: 30x slower)."""

telemetry = Table(
    "telemetry",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=False),
    Column("segment", Integer, nullable=False),
    Column("t", Float, nullable=False),
    Column("channel", Integer, nullable=False),
    Column("set_ma", Float, nullable=False),
    Column("measured_ma", Float, nullable=True),
    Column("impedance_ohm", Float, nullable=True),
    Index("ix_telemetry_session_segment", "session_id", "segment"),
)
"""Read-back samples; ``t`` is the monotonic clock of the session (seconds), ``segment`` the
sealing unit (see ``records.TelemetrySealed``)."""

_NRS = "BETWEEN 0 AND 10"

pain_ratings = Table(
    "pain_ratings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=True),
    Column("at", String(32), nullable=False),
    Column("nrs", Integer, nullable=True),
    Column("timing", String(16), nullable=False),
    Column("pain", String(16), nullable=False),
    Column("context", String(16), nullable=False),
    Column("note", Text, nullable=False),
    CheckConstraint(f"nrs IS NULL OR nrs {_NRS}", name="ck_pain_nrs"),
    Index("ix_pain_patient_at", "patient_id", "at"),
    Index("ix_pain_session", "session_id"),
)

peg_scores = Table(
    "peg_scores",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("at", String(32), nullable=False),
    Column("pain", Integer, nullable=True),
    Column("enjoyment", Integer, nullable=True),
    Column("activity", Integer, nullable=True),
    Index("ix_peg_patient_at", "patient_id", "at"),
)

pgic_ratings = Table(
    "pgic_ratings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("at", String(32), nullable=False),
    Column("value", Integer, nullable=True),
    CheckConstraint("value IS NULL OR value BETWEEN 1 AND 7", name="ck_pgic_value"),
    Index("ix_pgic_patient_at", "patient_id", "at"),
)
"""Version 4: the Patient Global Impression of Change (1-7; NULL = asked and skipped)."""

diary_entries = Table(
    "diary_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("start", String(32), nullable=False),
    Column("end", String(32), nullable=True),
    Column("nrs", Integer, nullable=True),
    Column("pain", String(16), nullable=True),
    Column("notes", Text, nullable=False),
    Index("ix_diary_patient_start", "patient_id", "start"),
)

adverse_events = Table(
    "adverse_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=True),
    Column("at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("notes", Text, nullable=False),
    Index("ix_adverse_patient_at", "patient_id", "at"),
)

prescriptions = Table(
    "prescriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("toml", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("patient_id", "version", name="uq_prescription_version"),
)

screenings = Table(
    "screenings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("at", String(32), nullable=False),
    Column("answers", Text, nullable=False),
    Column("overrides", Text, nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("notes", Text, nullable=False),
    Index("ix_screening_patient_at", "patient_id", "at"),
)

enrolments = Table(
    "enrolments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("at", String(32), nullable=False),
    Column("clinic", String(200), nullable=False),
    Column("clinic_patient", String(64), nullable=False),
    Column("serial", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("replaced", Boolean, nullable=False),
    Index("ix_enrolment_patient_at", "patient_id", "at"),
)
"""Clinic enrolments pinned here (version 3); the latest one's keys are in force. ``text`` is the
signed enrolment file as received."""

anchors = Table(
    "anchors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False),
    Column("chain_uid", String(32), nullable=False),
    Column("head_seq", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("exported_at", String(32), nullable=False),
    Column("bundle_digest", String(64), nullable=False),
    Column("imported_at", String(32), nullable=False),
    Index("ix_anchor_patient_chain", "patient_id", "chain_uid"),
)
"""Clinic anchors (version 3): for every chain of every bundle imported, the head it had. A
later bundle whose chain does not extend that head is refused as a rewritten history. Written by
the importing database about what it received; never exported."""

RECORD_TABLES: tuple[Table, ...] = (
    pain_ratings,
    peg_scores,
    pgic_ratings,
    diary_entries,
    adverse_events,
    prescriptions,
    screenings,
    enrolments,
)
"""Tables whose every row is mirrored by a log record carrying a copy of it."""

PATIENT_TABLES: tuple[Table, ...] = (*RECORD_TABLES, anchors, sessions, chains)
"""Tables with a ``patient_id`` (deleted with the patient, together with events/telemetry)."""
