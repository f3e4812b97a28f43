"""FHIR export: one patient's sessions and pain ratings as a FHIR R4B ``Bundle`` (collection).

Built with ``fhir.resources`` 8.x, sub-package ``R4B`` throughout (``DeviceUseStatement`` exists
in R4/R4B only; R5 renamed it ``DeviceUsage``). The bundle holds:

- one ``Patient`` with the pseudonym as its only identifier (no name, no birth date);
- one ``Device`` per stimulator (model, serial number, firmware, manufacturer);
- one ``Observation`` per pain rating: status ``final``, category ``survey``, code LOINC 72514-3,
  ``valueInteger`` 0–10, ``effectiveDateTime``, and three coded components — which pain, rest or
  movement, and when relative to a session. A skipped rating carries no value but
  ``dataAbsentReason`` = ``asked-declined`` (so "skipped" is never read as 0);
- one ``DeviceUseStatement`` per session, with ``timingPeriod`` (start, end), the device, the
  electrode site and a note with program, minutes, amplitude and end reason. A rating taken in a
  session points to its statement with the extension :data:`SESSION_EXTENSION`.

Resources are identified by ``urn:uuid:`` full URLs derived (UUID 5) from the patient and record
ids, so the same log exports to the same bundle. The bundle is validated by parsing it back
with ``fhir.resources`` before it is returned.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from tens_control.review.analytics import Zone, local_day
from tens_control.review.model import (
    PAIN_LABELS,
    POSTURE_LABELS,
    WHEN_LABELS,
    PatientData,
    SessionRow,
)
from tens_control.review.wording import end_reason_text

FHIR_VERSION = "4.3.0"
"""FHIR R4B, the version of every resource in the bundle."""
LOINC = "http://loinc.org"
PAIN_CODE = "72514-3"
PAIN_DISPLAY = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

# local code systems and identifier systems of tens-control (documented in docs/review.md)
CS_COMPONENT = "urn:tens-control:fhir:CodeSystem:pain-rating-component"
CS_PAIN = "urn:tens-control:fhir:CodeSystem:pain-kind"
CS_POSTURE = "urn:tens-control:fhir:CodeSystem:posture"
CS_WHEN = "urn:tens-control:fhir:CodeSystem:rating-time"
SESSION_EXTENSION = "urn:tens-control:fhir:StructureDefinition:session"
ID_PSEUDONYM = "urn:tens-control:patient-pseudonym"
ID_DEVICE = "urn:tens-control:device-serial"
ID_SESSION = "urn:tens-control:session"
ID_RATING = "urn:tens-control:pain-rating"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:tens-control")


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def _when(moment: datetime) -> str:
    """FHIR dateTime in UTC to the second: ``2026-03-02T09:00:00Z`` (naive is read as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _component(item: str, item_display: str, system: str, code: str, display: str) -> Any:
    return {
        "code": _coding(CS_COMPONENT, item, item_display),
        "valueCodeableConcept": _coding(system, code, display),
    }


def _session_note(s: SessionRow) -> str:
    parts = []
    if s.program:
        parts.append(f"program {s.program}")
    parts.append(f"{s.stim_minutes:.1f} min of stimulation")
    if s.mean_amplitude_ma is not None:
        amp = f"mean amplitude {s.mean_amplitude_ma:g} mA"
        if s.max_amplitude_ma is not None:
            amp += f" (max {s.max_amplitude_ma:g} mA)"
        parts.append(amp)
    parts.append(f"ended: {end_reason_text(s.end_reason)}")
    return "; ".join(parts)


def _session_status(s: SessionRow) -> str:
    if s.end is None:
        return "active"
    return "completed" if s.end_reason in (None, "completed") else "stopped"


def bundle_dict(
    data: PatientData, tz: Zone = None, generated: datetime | None = None
) -> dict[str, Any]:
    """The bundle as plain JSON-ready data (not yet validated; see :func:`build_bundle`)."""
    zone = tz
    lo, hi = data.period_from, data.period_to
    pid = data.patient.id

    def inside(moment: datetime) -> bool:
        day = local_day(moment, zone)
        return (lo is None or day >= lo) and (hi is None or day <= hi)

    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> str:
        url = f"urn:uuid:{resource['id']}"
        entries.append({"fullUrl": url, "resource": resource})
        return url

    patient_url = add(
        {
            "resourceType": "Patient",
            "id": _uid("patient", pid),
            "identifier": [{"system": ID_PSEUDONYM, "value": data.patient.pseudonym}],
        }
    )
    subject = {"reference": patient_url, "display": data.patient.pseudonym}

    device_urls: dict[str, str] = {}
    for d in data.devices:
        resource: dict[str, Any] = {
            "resourceType": "Device",
            "id": _uid("device", pid, d.id),
            "identifier": [{"system": ID_DEVICE, "value": d.serial}],
            "deviceName": [{"name": d.model, "type": "model-name"}],
            "serialNumber": d.serial,
            "version": [{"value": d.firmware}],
            "type": {"text": "transcutaneous electrical nerve stimulator (TENS)"},
            "patient": {"reference": patient_url},
        }
        if d.manufacturer:
            resource["manufacturer"] = d.manufacturer
        if d.simulated:
            resource["note"] = [{"text": "simulated device: no stimulation was delivered"}]
        device_urls[d.id] = add(resource)

    session_urls: dict[str, str] = {}
    sessions = sorted((s for s in data.sessions if inside(s.start)), key=lambda s: s.start)
    for s in sessions:
        dev = device_urls.get(s.device_id or "")
        if dev is None:  # DeviceUseStatement.device is required
            key = s.device_id or "unknown"
            dev = device_urls.get(f"?{key}")
            if dev is None:
                dev = add(
                    {
                        "resourceType": "Device",
                        "id": _uid("device", pid, f"?{key}"),
                        "type": {"text": "transcutaneous electrical nerve stimulator (TENS)"},
                        "note": [{"text": "device not on record"}],
                        "patient": {"reference": patient_url},
                    }
                )
                device_urls[f"?{key}"] = dev
        period = {"start": _when(s.start)}
        if s.end is not None:
            period["end"] = _when(s.end)
        statement: dict[str, Any] = {
            "resourceType": "DeviceUseStatement",
            "id": _uid("session", pid, s.id),
            "identifier": [{"system": ID_SESSION, "value": f"{data.patient.pseudonym}/{s.id}"}],
            "status": _session_status(s),
            "subject": subject,
            "device": {"reference": dev},
            "timingPeriod": period,
            "recordedOn": _when(s.end or s.start),
            "note": [{"text": _session_note(s)}],
        }
        if s.electrode_site:
            statement["bodySite"] = {"text": s.electrode_site.replace("_", " ")}
        session_urls[s.id] = add(statement)

    ratings = sorted((r for r in data.ratings if inside(r.at)), key=lambda r: r.at)
    for r in ratings:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _uid("rating", pid, r.id),
            "identifier": [{"system": ID_RATING, "value": f"{data.patient.pseudonym}/{r.id}"}],
            "status": "final",
            "category": [
                {
                    "coding": [
                        {"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}
                    ]
                }
            ],
            "code": _coding(LOINC, PAIN_CODE, PAIN_DISPLAY),
            "subject": subject,
            "effectiveDateTime": _when(r.at),
            "component": [
                _component("pain-kind", "Which pain", CS_PAIN, r.pain, PAIN_LABELS[r.pain]),
                _component(
                    "posture", "Rest or movement", CS_POSTURE, r.posture, POSTURE_LABELS[r.posture]
                ),
                _component("rating-time", "When rated", CS_WHEN, r.when, WHEN_LABELS[r.when]),
            ],
        }
        if r.value is None:
            obs["dataAbsentReason"] = _coding(DATA_ABSENT, "asked-declined", "Asked But Declined")
        else:
            obs["valueInteger"] = r.value
        if r.session_id is not None and r.session_id in session_urls:
            obs["extension"] = [
                {
                    "url": SESSION_EXTENSION,
                    "valueReference": {"reference": session_urls[r.session_id]},
                }
            ]
        add(obs)

    stamp = generated if generated is not None else datetime.now(UTC)
    return {
        "resourceType": "Bundle",
        "id": _uid("bundle", pid, str(lo), str(hi)),
        "meta": {"tag": [{"system": "urn:tens-control", "code": f"fhir-{FHIR_VERSION}"}]},
        "type": "collection",
        "timestamp": _when(stamp),
        "entry": entries,
    }


def build_bundle(data: PatientData, tz: Zone = None, generated: datetime | None = None) -> Bundle:
    """The bundle as a validated ``fhir.resources.R4B`` model."""
    return Bundle.model_validate(bundle_dict(data, tz, generated))


def bundle_json(data: PatientData, tz: Zone = None, generated: datetime | None = None) -> str:
    """The bundle as FHIR JSON. The exact text returned is parsed back and validated with
    ``fhir.resources`` first (a pydantic ``ValidationError`` if it were not valid FHIR R4B)."""
    text = json.dumps(bundle_dict(data, tz, generated), ensure_ascii=False, indent=1)
    parse_bundle(text)
    return text


def parse_bundle(text: str | bytes) -> Bundle:
    """Parse and validate FHIR JSON as an R4B ``Bundle`` (raises pydantic's ValidationError)."""
    return Bundle.model_validate_json(text)
