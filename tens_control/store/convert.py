"""Clinical records <-> table rows. Rows hold local ids; records hold uids (portable)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table

from tens_control.store import schema
from tens_control.store.canonical import canonical_json, iso_utc
from tens_control.store.records import (
    AdverseEvent,
    DiaryEntry,
    Enrolment,
    PainRating,
    PegScore,
    PgicRating,
    Prescription,
    Screening,
)

ClinicalRecord = (
    PainRating
    | PegScore
    | PgicRating
    | DiaryEntry
    | AdverseEvent
    | Prescription
    | Screening
    | Enrolment
)

TABLE_OF: dict[type[Any], Table] = {
    PainRating: schema.pain_ratings,
    PegScore: schema.peg_scores,
    PgicRating: schema.pgic_ratings,
    DiaryEntry: schema.diary_entries,
    AdverseEvent: schema.adverse_events,
    Prescription: schema.prescriptions,
    Screening: schema.screenings,
    Enrolment: schema.enrolments,
}
"""Record class -> table."""

MODEL_OF: dict[str, type[ClinicalRecord]] = {t.name: cls for cls, t in TABLE_OF.items()}
"""Table name -> record class."""


def _opt_iso(value: Any) -> str | None:
    return None if value is None else iso_utc(value)


def to_row(record: ClinicalRecord, patient_id: int, session_id: int | None) -> dict[str, Any]:
    """The row for ``record`` (``session_id`` is the local id of ``record.session``, if any)."""
    base: dict[str, Any] = {"uid": record.uid, "patient_id": patient_id}
    if isinstance(record, PainRating):
        return base | {
            "session_id": session_id,
            "at": iso_utc(record.at),
            "nrs": record.nrs,
            "timing": record.when.value,
            "pain": record.pain.value,
            "context": record.context.value,
            "note": record.note,
        }
    if isinstance(record, PegScore):
        return base | {
            "at": iso_utc(record.at),
            "pain": record.pain,
            "enjoyment": record.enjoyment,
            "activity": record.activity,
        }
    if isinstance(record, PgicRating):
        return base | {"at": iso_utc(record.at), "value": record.value}
    if isinstance(record, DiaryEntry):
        return base | {
            "kind": record.kind.value,
            "start": iso_utc(record.start),
            "end": _opt_iso(record.end),
            "nrs": record.nrs,
            "pain": None if record.pain is None else record.pain.value,
            "notes": record.notes,
        }
    if isinstance(record, AdverseEvent):
        return base | {
            "session_id": session_id,
            "at": iso_utc(record.at),
            "kind": record.kind.value,
            "severity": record.severity.value,
            "notes": record.notes,
        }
    if isinstance(record, Prescription):
        return base | {
            "version": record.version,
            "toml": record.toml,
            "author": record.author,
            "reason": record.reason,
            "created_at": iso_utc(record.created_at),
        }
    if isinstance(record, Enrolment):
        return base | {
            "at": iso_utc(record.at),
            "clinic": record.clinic,
            "clinic_patient": record.patient,
            "serial": record.serial,
            "text": record.text,
            "replaced": record.replaced,
        }
    dumped = record.model_dump(mode="json")
    return base | {
        "at": iso_utc(record.at),
        "answers": canonical_json(dumped["answers"]),
        "overrides": canonical_json(dumped["overrides"]),
        "recorded_by": record.recorded_by,
        "notes": record.notes,
    }


def record_data(table: str, row: Mapping[Any, Any], session_uid: str | None) -> dict[str, Any]:
    """The record fields of a row, as validation input for the table's record class."""
    if table == "pain_ratings":
        return {
            "uid": row["uid"],
            "at": row["at"],
            "nrs": row["nrs"],
            "when": row["timing"],
            "pain": row["pain"],
            "context": row["context"],
            "session": session_uid,
            "note": row["note"],
        }
    if table == "peg_scores":
        keys: tuple[str, ...] = ("uid", "at", "pain", "enjoyment", "activity")
        return {k: row[k] for k in keys}
    if table == "pgic_ratings":
        return {k: row[k] for k in ("uid", "at", "value")}
    if table == "diary_entries":
        keys = ("uid", "kind", "start", "end", "nrs", "pain", "notes")
        return {k: row[k] for k in keys}
    if table == "adverse_events":
        keys = ("uid", "at", "kind", "severity", "notes")
        return {k: row[k] for k in keys} | {"session": session_uid}
    if table == "prescriptions":
        keys = ("uid", "version", "toml", "author", "reason", "created_at")
        return {k: row[k] for k in keys}
    if table == "enrolments":
        return {
            "uid": row["uid"],
            "at": row["at"],
            "clinic": row["clinic"],
            "patient": row["clinic_patient"],
            "serial": row["serial"],
            "text": row["text"],
            "replaced": row["replaced"],
        }
    if table == "screenings":
        return {
            "uid": row["uid"],
            "at": row["at"],
            "answers": json.loads(row["answers"]),
            "overrides": json.loads(row["overrides"]),
            "recorded_by": row["recorded_by"],
            "notes": row["notes"],
        }
    raise KeyError(table)


def from_row(table: str, row: Mapping[Any, Any], session_uid: str | None) -> ClinicalRecord:
    """The record a row holds (raises ``ValidationError``/``ValueError`` if it is unreadable)."""
    return MODEL_OF[table].model_validate(record_data(table, row, session_uid))


def has_session(table: Table) -> bool:
    return "session_id" in table.c
