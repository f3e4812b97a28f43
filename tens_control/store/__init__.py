"""The session store: a log a clinician can trust (DESIGN.md §7, docs/data.md).

Typical use::

    store = Store.open()                      # $TENS_CONTROL_DB or the user data directory
    store.ensure_patient()                    # the default patient ("patient-1")
    sid = store.begin_session(plan, device=driver.info)      # committed before it returns
    store.append_event(sid, AmplitudeChanged(channel=1, from_ma=0, to_ma=1, who=Actor.PATIENT))
    writer = store.telemetry_writer(sid)      # driver.add_report_handler(writer.handle_report)
    store.end_session(sid, EndReason.COMPLETED)
    store.close()
"""

from tens_control.store.bundle import FORMAT, FORMAT_VERSION, verify_bundle
from tens_control.store.canonical import GENESIS_HASH, iso_utc, new_uid, parse_utc
from tens_control.store.errors import (
    BundleError,
    DatabaseCorruptError,
    DatabaseMissingError,
    InvalidRecordError,
    MigrationError,
    NewerSchemaError,
    NotATensControlDatabaseError,
    StoreBusyError,
    StoreClosedError,
    StoreError,
    UnknownPatientError,
    UnknownSessionError,
)
from tens_control.store.paths import (
    DEFAULT_PATIENT,
    ENV_DB,
    ENV_PATIENT,
    add_db_argument,
    add_patient_argument,
    default_db_path,
    resolve_db_path,
)
from tens_control.store.records import (
    Actor,
    AdverseEvent,
    AdverseKind,
    AmplitudeChanged,
    CallerRecord,
    ChannelPlan,
    CommandSent,
    DeviceReported,
    DiaryEntry,
    DiaryKind,
    EndReason,
    Fault,
    HabituationPrompt,
    LogRecord,
    Note,
    PainContext,
    PainRating,
    PainSite,
    PegScore,
    PgicRating,
    Prescription,
    RatingTime,
    Rejected,
    Screening,
    ScreeningOverride,
    SessionPlan,
    Severity,
    StateChanged,
)
from tens_control.store.schema import SCHEMA_VERSION
from tens_control.store.store import (
    DeleteResult,
    ImportResult,
    Patient,
    SessionInfo,
    Store,
    StoredEvent,
    virtual_wall_clock,
)
from tens_control.store.telemetry import TelemetryWriter
from tens_control.store.verify import Problem, VerifyReport

__all__ = [
    "DEFAULT_PATIENT",
    "ENV_DB",
    "ENV_PATIENT",
    "FORMAT",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "Actor",
    "AdverseEvent",
    "AdverseKind",
    "AmplitudeChanged",
    "BundleError",
    "CallerRecord",
    "ChannelPlan",
    "CommandSent",
    "DatabaseCorruptError",
    "DatabaseMissingError",
    "DeleteResult",
    "DeviceReported",
    "DiaryEntry",
    "DiaryKind",
    "EndReason",
    "Fault",
    "HabituationPrompt",
    "ImportResult",
    "InvalidRecordError",
    "LogRecord",
    "MigrationError",
    "NewerSchemaError",
    "NotATensControlDatabaseError",
    "Note",
    "PainContext",
    "PainRating",
    "PainSite",
    "Patient",
    "PegScore",
    "PgicRating",
    "Prescription",
    "Problem",
    "RatingTime",
    "Rejected",
    "Screening",
    "ScreeningOverride",
    "SessionInfo",
    "SessionPlan",
    "Severity",
    "StateChanged",
    "Store",
    "StoreBusyError",
    "StoreClosedError",
    "StoreError",
    "StoredEvent",
    "TelemetryWriter",
    "UnknownPatientError",
    "UnknownSessionError",
    "VerifyReport",
    "add_db_argument",
    "add_patient_argument",
    "default_db_path",
    "iso_utc",
    "new_uid",
    "parse_utc",
    "resolve_db_path",
    "verify_bundle",
    "virtual_wall_clock",
]
