"""FHIR export: one patient's record as a FHIR R4B ``Bundle`` (collection).

Built with ``fhir.resources`` 8.x, sub-package ``R4B`` throughout (``DeviceUseStatement`` exists
in R4/R4B only; R5 renamed it ``DeviceUsage``). docs/review.md ("FHIR mapping") has the table of
every resource and code, with where each standard code was looked up. In short:

- ``Patient`` (the pseudonym only), a ``Device`` per stimulator;
- per session a ``Procedure`` (status, ``performedPeriod``, the device, the electrode site, the
  patient's notes as ``note``), a ``DeviceUseStatement`` derived from it, and ``Observation``\\ s
  of its mean and highest amplitude (UCUM ``mA``) and its stimulation time (UCUM ``min``),
  each ``partOf`` the Procedure;
- per pain rating an ``Observation`` (LOINC 72514-3, ``valueInteger`` 0–10, or no value and
  ``dataAbsentReason`` = ``asked-declined`` when skipped), which pain / posture / when as coded
  components, residual-limb pain with ``bodySite`` SNOMED CT 38033009 *Amputation stump*,
  phantom-limb pain also coded SNOMED CT 5771000119106 and ICD-10-CM G54.6, and a rating
  taken in a session ``partOf`` that session's Procedure;
- diary pain episodes (LOINC 72514-3 over an ``effectivePeriod``), PEG and PGIC
  ``Observation``\\ s, ``AdverseEvent``\\ s, other treatments as ``MedicationStatement``
  (medication change, ketamine infusion) or ``Procedure`` (physiotherapy, mirror therapy,
  other), and each prescription version as a ``DeviceRequest``;
- the ``CodeSystem``\\ s of our own codes, used only where no standard code was found.

Resources are identified by ``urn:uuid:`` full URLs derived (UUID 5) from the patient and record
ids, so the same log exports to the same bundle. :func:`bundle_json` parses the text back with
``fhir.resources`` and runs :func:`tens_control.review.fhir_check.check_bundle` (references
resolve, required bindings and status value sets, value or dataAbsentReason, UCUM units) before
it returns.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from tens_control.pain import BODY_REGION_WORDS
from tens_control.review.analytics import Zone, local_day, session_notes
from tens_control.review.comparison import ComparisonResult, PairResult, compare_data
from tens_control.review.model import (
    PAIN_LABELS,
    POSTURE_LABELS,
    PainKind,
    PatientData,
    RatingRow,
    SessionRow,
)
from tens_control.review.wording import counts_text, end_reason_text

FHIR_VERSION = "4.3.0"
"""FHIR R4B, the version of every resource in the bundle."""

# --- standard code systems (docs/review.md says where each code was looked up) ---------------
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
AE_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"

PAIN_CODE = "72514-3"
PAIN_DISPLAY = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
STUMP = ("38033009", "Amputation stump")
"""SNOMED CT body structure, the site of residual-limb (stump) pain."""
PHANTOM_SCT = ("5771000119106", "Phantom limb syndrome with pain")
"""SNOMED CT (US Edition) disorder: phantom-limb pain whichever limb; the International
Edition's codes name the limb (711057003 lower, 711058008 upper), which the log does not."""
PHANTOM_ICD = ("G54.6", "Phantom limb syndrome with pain")
PHYSIOTHERAPY = ("91251008", "Physical therapy procedure")

# --- our own code systems, for what no standard code was found for ---------------------------
CS_BASE = "urn:tens-control:fhir:CodeSystem:"
CS_COMPONENT = CS_BASE + "pain-rating-component"
CS_PAIN = CS_BASE + "pain-kind"
CS_POSTURE = CS_BASE + "posture"
CS_WHEN = CS_BASE + "rating-time"
CS_TENS = CS_BASE + "tens"
CS_PEG = CS_BASE + "peg"
CS_PGIC = CS_BASE + "pgic"
CS_TREATMENT = CS_BASE + "treatment"
CS_ADVERSE = CS_BASE + "adverse-event"
CS_COMPARISON = CS_BASE + "program-comparison"
CS_DIARY = CS_BASE + "diary"
CS_REGION = CS_BASE + "body-region"

CODE_SYSTEMS: dict[str, tuple[str, dict[str, str]]] = {
    CS_COMPONENT: (
        "What a pain rating's components say",
        {
            "pain-kind": "Which pain",
            "posture": "Rest or movement",
            "rating-time": "When rated",
            "body-region": "Where it hurt (body map)",
        },
    ),
    CS_PAIN: ("Which pain was rated", {k: v for k, v in PAIN_LABELS.items()}),
    CS_POSTURE: ("At rest or on movement", {k: v for k, v in POSTURE_LABELS.items()}),
    CS_WHEN: (
        "When a pain rating was taken",
        {
            "before": "before session",
            "during": "during session",
            "after": "after session",
            "plus_30_min": "30 min after session",
            "diary": "diary",
            "episode": "worst pain during a pain episode (diary)",
        },
    ),
    CS_TENS: (
        "TENS sessions and their figures",
        {
            "tens-session": "Transcutaneous electrical nerve stimulation (TENS) session at home",
            "tens-unit": "Transcutaneous electrical nerve stimulator (TENS unit)",
            "tens-prescription": "TENS prescription (programs, caps, schedule)",
            "mean-amplitude": "Time-weighted mean set amplitude while stimulating",
            "max-amplitude": "Highest set amplitude",
            "stimulation-time": "Stimulation time, session start to end",
            "phantom-limb": "The missing (phantom) limb",
        },
    ),
    CS_PEG: (
        "PEG: pain, enjoyment of life, general activity (last 7 days), 0-10",
        {
            "peg": "PEG score (mean of the three items)",
            "pain": "Average pain",
            "enjoyment": "Interference with enjoyment of life",
            "activity": "Interference with general activity",
        },
    ),
    CS_PGIC: (
        "Patient Global Impression of Change",
        {
            "pgic": "Patient Global Impression of Change",
            "1": "very much improved",
            "2": "much improved",
            "3": "minimally improved",
            "4": "no change",
            "5": "minimally worse",
            "6": "much worse",
            "7": "very much worse",
        },
    ),
    CS_TREATMENT: (
        "Other treatments from the diary",
        {
            "medication_change": "Medication change",
            "ketamine_infusion": "Ketamine infusion",
            "mirror_therapy": "Mirror therapy",
            "physiotherapy": "Physiotherapy",
            "other": "Other treatment",
            "medication_taken": "A dose of medicine taken",
        },
    ),
    CS_DIARY: (
        "Daily diary: sleep and mood",
        {
            "sleep-quality": "How well the patient slept, 0 (very poor) - 10 (very good)",
            "sleep-duration": "Hours slept last night",
            "mood": "Mood, 0 (very low) - 10 (very good)",
        },
    ),
    CS_REGION: (
        "Where it hurt: the diary's body map",
        {k.value: v for k, v in BODY_REGION_WORDS.items()},
    ),
    CS_ADVERSE: (
        "Adverse events of TENS",
        {
            "skin_redness": "Skin redness",
            "burn": "Burn",
            "headache": "Headache",
            "other": "Other adverse event",
        },
    ),
    CS_COMPARISON: (
        "N-of-1 comparison of TENS programs (blocks as the unit)",
        {
            "program-comparison": "Difference in mean daily pain between two TENS programs "
            "(NRS points less pain with the better one)",
            "better-program": "The program with less pain",
            "other-program": "The program it is compared with",
            "ci-low": "Lower end of the 95 % interval of the difference",
            "ci-high": "Upper end of the 95 % interval of the difference",
            "probability": "Posterior probability that the better program is better "
            "(normal model, flat priors)",
            "p-randomisation": "p value of the randomisation test over the block schedule",
            "cycles-done": "Finished block pairs (cycles) compared",
            "cycles-planned": "Block pairs (cycles) planned",
        },
    ),
}
"""Our code systems: url -> (title, code -> display). Exported as ``CodeSystem`` resources."""

ID_PSEUDONYM = "urn:tens-control:patient-pseudonym"
ID_DEVICE = "urn:tens-control:device-serial"
ID_SESSION = "urn:tens-control:session"
ID_RATING = "urn:tens-control:pain-rating"
ID_RECORD = "urn:tens-control:record"

MEDICATIONS = frozenset({"medication_change", "ketamine_infusion"})
"""Treatments exported as MedicationStatement (the others as Procedure)."""

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:tens-control")


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def _when(moment: datetime) -> str:
    """FHIR dateTime in UTC to the second: ``2026-03-02T09:00:00Z`` (naive is read as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    if display is None:
        display = CODE_SYSTEMS[system][1][code]
    return {"system": system, "code": code, "display": display}


def _concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    out["text"] = text if text is not None else codings[0]["display"]
    return out


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 3), "unit": unit, "system": UCUM, "code": unit}


def _absent(code: str = "asked-declined") -> dict[str, Any]:
    names = {"asked-declined": "Asked But Declined", "unknown": "Unknown"}
    return _concept(_coding(DATA_ABSENT, code, names[code]))


SURVEY = [_concept(_coding(OBSERVATION_CATEGORY, "survey", "Survey"))]


def _component(item: str, system: str, code: str) -> dict[str, Any]:
    codings = [_coding(system, code)]
    if system == CS_PAIN and code == "phantom":
        codings += [_coding(SNOMED, *PHANTOM_SCT), _coding(ICD10CM, *PHANTOM_ICD)]
    return {
        "code": _concept(_coding(CS_COMPONENT, item)),
        "valueCodeableConcept": _concept(*codings),
    }


def _body_site(pain: PainKind) -> dict[str, Any] | None:
    if pain == "residual_limb":
        return _concept(_coding(SNOMED, *STUMP), text="residual limb (stump)")
    if pain == "phantom":
        return _concept(_coding(CS_TENS, "phantom-limb"))
    return None


def _session_status(s: SessionRow) -> tuple[str, str]:
    """(Procedure.status, DeviceUseStatement.status)."""
    if s.end is None:
        return "in-progress", "active"
    done = s.end_reason in (None, "completed")
    return ("completed", "completed") if done else ("stopped", "stopped")


def _period(start: datetime, end: datetime | None) -> dict[str, str]:
    """A Period; an end recorded before the start (a clock set back) is left out."""
    period = {"start": _when(start)}
    if end is not None and end >= start:
        period["end"] = _when(end)
    return period


def _days(start: date, end: date | None) -> dict[str, str]:
    out = {"start": start.isoformat()}
    if end is not None and end != start:
        out["end"] = end.isoformat()
    return out


def _comparison_observation(
    result: ComparisonResult, pair: PairResult, pid: str, subject: dict[str, Any]
) -> dict[str, Any]:
    """One pair of an N-of-1 program comparison: the difference as the value, its interval,
    probability, randomisation p and cycles as components, the verdict as the note."""
    plan = result.plan

    def part(code: str, **value: Any) -> dict[str, Any]:
        return {"code": _concept(_coding(CS_COMPARISON, code)), **value}

    def quantity(code: str, v: float | None, unit: str = "{score}") -> dict[str, Any]:
        if v is None:
            return part(code, dataAbsentReason=_absent("unknown"))
        return part(code, valueQuantity=_quantity(v, unit))

    pain, posture = result.key
    probability = None if pair.probability is None else pair.probability * 100
    return {
        "resourceType": "Observation",
        "id": _uid("comparison", pid, plan.start.isoformat(), pair.better, pair.other),
        "status": "final" if pair.cycles_done >= pair.cycles_planned else "preliminary",
        "code": _concept(
            _coding(CS_COMPARISON, "program-comparison"),
            text=f"{pair.better} vs {pair.other}: mean daily {PAIN_LABELS[pain]} "
            f"{POSTURE_LABELS[posture]}",
        ),
        "subject": subject,
        "effectivePeriod": _days(plan.start, plan.end),
        "valueQuantity": _quantity(pair.difference, "{score}"),
        "component": [
            part("better-program", valueString=pair.better),
            part("other-program", valueString=pair.other),
            quantity("ci-low", pair.ci_low),
            quantity("ci-high", pair.ci_high),
            quantity("probability", probability, "%"),
            quantity("p-randomisation", pair.p_randomisation, "1"),
            part("cycles-done", valueInteger=pair.cycles_done),
            part("cycles-planned", valueInteger=pair.cycles_planned),
        ],
        "note": [{"text": result.verdict}],
    }


def code_system_resources() -> list[dict[str, Any]]:
    """Our code systems as ``CodeSystem`` resources (complete, case-sensitive)."""
    out = []
    for url, (title, codes) in CODE_SYSTEMS.items():
        name = url.removeprefix(CS_BASE)
        out.append(
            {
                "resourceType": "CodeSystem",
                "id": _uid("codesystem", url),
                "url": url,
                "name": "".join(p.capitalize() for p in name.split("-")),
                "title": title,
                "status": "active",
                "content": "complete",
                "caseSensitive": True,
                "description": f"tens-control's own codes ({title}); see docs/review.md",
                "concept": [{"code": c, "display": d} for c, d in codes.items()],
            }
        )
    return out


def bundle_dict(
    data: PatientData, tz: Zone = None, generated: datetime | None = None
) -> dict[str, Any]:
    """The bundle as plain JSON-ready data (not yet checked; see :func:`bundle_json`)."""
    zone = tz
    lo, hi = data.period_from, data.period_to
    pid = data.patient.id
    who = data.patient.pseudonym

    def inside(moment: datetime) -> bool:
        day = local_day(moment, zone)
        return (lo is None or day >= lo) and (hi is None or day <= hi)

    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> str:
        url = f"urn:uuid:{resource['id']}"
        entries.append({"fullUrl": url, "resource": resource})
        return url

    def ident(system: str, value: str) -> list[dict[str, str]]:
        return [{"system": system, "value": f"{who}/{value}"}]

    patient_url = add(
        {
            "resourceType": "Patient",
            "id": _uid("patient", pid),
            "identifier": [{"system": ID_PSEUDONYM, "value": who}],
        }
    )
    subject = {"reference": patient_url, "display": who}
    tens_unit = _concept(_coding(CS_TENS, "tens-unit"))

    device_urls: dict[str, str] = {}
    for d in data.devices:
        resource: dict[str, Any] = {
            "resourceType": "Device",
            "id": _uid("device", pid, d.id),
            "identifier": [{"system": ID_DEVICE, "value": d.serial}],
            "deviceName": [{"name": d.model, "type": "model-name"}],
            "serialNumber": d.serial,
            "version": [{"value": d.firmware}],
            "type": tens_unit,
            "patient": {"reference": patient_url},
        }
        if d.manufacturer:
            resource["manufacturer"] = d.manufacturer
        if d.simulated:
            resource["note"] = [{"text": "simulated device: no stimulation was delivered"}]
        device_urls[d.id] = add(resource)

    def device_of(s: SessionRow) -> str:
        dev = device_urls.get(s.device_id or "")
        if dev is not None:
            return dev
        key = f"?{s.device_id or 'unknown'}"
        if key not in device_urls:
            device_urls[key] = add(
                {
                    "resourceType": "Device",
                    "id": _uid("device", pid, key),
                    "type": tens_unit,
                    "note": [{"text": "device not on record"}],
                    "patient": {"reference": patient_url},
                }
            )
        return device_urls[key]

    notes_of: dict[str, list[dict[str, str]]] = {}
    for n in session_notes(data, zone):
        if n.session_id is not None:
            notes_of.setdefault(n.session_id, []).append({"time": _when(n.at), "text": n.text})

    faults_of: dict[str, dict[str, int]] = {}
    for fault in data.events:
        if fault.kind == "fault" and fault.session_id is not None:
            counts = faults_of.setdefault(fault.session_id, {})
            counts[fault.code] = counts.get(fault.code, 0) + 1

    session_urls: dict[str, str] = {}
    sessions = sorted((s for s in data.sessions if inside(s.start)), key=lambda s: s.start)
    for s in sessions:
        dev = device_of(s)
        status, used = _session_status(s)
        procedure: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": _uid("procedure", pid, s.id),
            "identifier": ident(ID_SESSION, s.id),
            "status": status,
            "category": _concept(_coding(SNOMED, *PHYSIOTHERAPY)),
            "code": _concept(_coding(CS_TENS, "tens-session"), text="TENS session"),
            "subject": subject,
            "performedPeriod": _period(s.start, s.end),
            "focalDevice": [{"manipulated": {"reference": dev}}],
            "note": [
                {
                    "text": f"program {s.program or '–'}; ended: {end_reason_text(s.end_reason)}"
                    + (
                        f" (recorded end {_when(s.end)} is before the start)"
                        if s.end is not None and s.end < s.start
                        else ""
                    )
                    + (f"; faults {counts_text(faults_of[s.id])}" if s.id in faults_of else "")
                },
                *notes_of.get(s.id, []),
            ],
        }
        if s.end_reason not in (None, "completed"):
            procedure["statusReason"] = {"text": end_reason_text(s.end_reason)}
        if s.electrode_site:
            site = s.electrode_site.replace("_", " ")
            procedure["bodySite"] = [
                _concept(_coding(SNOMED, *STUMP), text=site)
                if s.electrode_site == "residual_limb"
                else {"text": site}
            ]
        url = session_urls[s.id] = add(procedure)
        statement: dict[str, Any] = {
            "resourceType": "DeviceUseStatement",
            "id": _uid("session", pid, s.id),
            "identifier": ident(ID_SESSION, s.id),
            "status": used,
            "subject": subject,
            "derivedFrom": [{"reference": url}],
            "device": {"reference": dev},
            "timingPeriod": _period(s.start, s.end),
            "recordedOn": _when(s.end or s.start),
        }
        if s.electrode_site:
            statement["bodySite"] = {"text": s.electrode_site.replace("_", " ")}
        add(statement)
        figures = [("stimulation-time", s.stim_minutes, "min")]
        if s.mean_amplitude_ma is not None:
            figures.append(("mean-amplitude", s.mean_amplitude_ma, "mA"))
        if s.max_amplitude_ma is not None:
            figures.append(("max-amplitude", s.max_amplitude_ma, "mA"))
        for code, value, unit in figures:
            add(
                {
                    "resourceType": "Observation",
                    "id": _uid("figure", pid, s.id, code),
                    "status": "final",
                    "code": _concept(_coding(CS_TENS, code)),
                    "subject": subject,
                    "partOf": [{"reference": url}],
                    "effectivePeriod": _period(s.start, s.end),
                    "device": {"reference": dev},
                    "valueQuantity": _quantity(value, unit),
                }
            )

    def pain_observation(
        rid: str,
        pain: PainKind,
        components: list[dict[str, Any]],
        value: int | None,
        absent: str = "asked-declined",
    ) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _uid("rating", pid, rid),
            "identifier": ident(ID_RATING, rid),
            "status": "final",
            "category": SURVEY,
            "code": _concept(_coding(LOINC, PAIN_CODE, PAIN_DISPLAY)),
            "subject": subject,
            "component": components,
        }
        site = _body_site(pain)
        if site is not None:
            obs["bodySite"] = site
        if value is None:
            obs["dataAbsentReason"] = _absent(absent)
        else:
            obs["valueInteger"] = value
        return obs

    ratings: list[RatingRow] = sorted((r for r in data.ratings if inside(r.at)), key=lambda r: r.at)
    for r in ratings:
        obs = pain_observation(
            r.id,
            r.pain,
            [
                _component("pain-kind", CS_PAIN, r.pain),
                _component("posture", CS_POSTURE, r.posture),
                _component("rating-time", CS_WHEN, r.when),
            ],
            r.value,
        )
        obs["effectiveDateTime"] = _when(r.at)
        if r.session_id is not None and r.session_id in session_urls:
            obs["partOf"] = [{"reference": session_urls[r.session_id]}]
        add(obs)

    edits: dict[str, list[str]] = {}
    for change in data.diary_changes:
        if change.change == "edited":
            edits.setdefault(change.id, []).append(f"edited {_when(change.at)}; was: {change.was}")

    def diary_notes(rid: str, note: str) -> list[dict[str, str]]:
        return [{"text": t} for t in ([note] if note else []) + edits.get(rid, [])]

    for e in sorted((e for e in data.episodes if inside(e.start)), key=lambda e: e.start):
        obs = pain_observation(
            e.id,
            e.pain,
            [
                _component("pain-kind", CS_PAIN, e.pain),
                _component("rating-time", CS_WHEN, "episode"),
                *(_component("body-region", CS_REGION, r) for r in e.regions),
            ],
            e.nrs,
            absent="unknown",
        )
        obs["effectivePeriod"] = _period(e.start, e.end)
        if e.written is not None:
            obs["issued"] = _when(e.written)
        if e.edited:
            obs["status"] = "amended"
        notes = diary_notes(e.id, e.note)
        if notes:
            obs["note"] = notes
        add(obs)

    for entry in sorted(
        (entry for entry in data.diary if inside(entry.at)), key=lambda entry: entry.at
    ):
        notes = diary_notes(entry.id, entry.note)
        if entry.kind == "medication_taken":
            dose_taken: dict[str, Any] = {
                "resourceType": "MedicationStatement",
                "id": _uid("treatment", pid, entry.id),
                "identifier": ident(ID_RECORD, entry.id),
                "status": "completed",
                "medicationCodeableConcept": _concept(
                    _coding(CS_TREATMENT, "medication_taken"), text=entry.medication
                ),
                "subject": subject,
                "effectiveDateTime": _when(entry.at),
                "dateAsserted": _when(entry.written),
            }
            if entry.dose:
                dose_taken["dosage"] = [{"text": entry.dose}]
            if notes:
                dose_taken["note"] = notes
            add(dose_taken)
            continue
        daily: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _uid("diary", pid, entry.id),
            "identifier": ident(ID_RECORD, entry.id),
            "status": "amended" if entry.edited else "final",
            "category": SURVEY,
            "code": _concept(
                _coding(CS_DIARY, "mood" if entry.kind == "mood" else "sleep-quality")
            ),
            "subject": subject,
            "effectiveDateTime": _when(entry.at),
            "issued": _when(entry.written),
        }
        answer = entry.mood if entry.kind == "mood" else entry.sleep_quality
        if answer is None:
            daily["dataAbsentReason"] = _absent()
        else:
            daily["valueInteger"] = answer
        if entry.kind == "sleep" and entry.sleep_hours is not None:
            daily["component"] = [
                {
                    "code": _concept(_coding(CS_DIARY, "sleep-duration")),
                    "valueQuantity": _quantity(entry.sleep_hours, "h"),
                }
            ]
        if notes:
            daily["note"] = notes
        add(daily)

    for g in sorted((g for g in data.pegs if inside(g.at)), key=lambda g: g.at):
        items: Mapping[str, int | None] = {
            "pain": g.pain,
            "enjoyment": g.enjoyment,
            "activity": g.activity,
        }
        parts = []
        for code, item in items.items():
            part: dict[str, Any] = {"code": _concept(_coding(CS_PEG, code))}
            if item is None:
                part["dataAbsentReason"] = _absent()
            else:
                part["valueInteger"] = item
            parts.append(part)
        peg: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _uid("peg", pid, g.id),
            "identifier": ident(ID_RECORD, g.id),
            "status": "final",
            "category": SURVEY,
            "code": _concept(_coding(CS_PEG, "peg")),
            "subject": subject,
            "effectiveDateTime": _when(g.at),
            "component": parts,
        }
        if g.score is None:
            peg["dataAbsentReason"] = _absent()
        else:
            peg["valueQuantity"] = {**_quantity(g.score, "{score}"), "unit": "score"}
        add(peg)

    for c in sorted((c for c in data.pgics if inside(c.at)), key=lambda c: c.at):
        pgic: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _uid("pgic", pid, c.id),
            "identifier": ident(ID_RECORD, c.id),
            "status": "final",
            "category": SURVEY,
            "code": _concept(_coding(CS_PGIC, "pgic")),
            "subject": subject,
            "effectiveDateTime": _when(c.at),
        }
        if c.value is None:
            pgic["dataAbsentReason"] = _absent()
        else:
            pgic["valueCodeableConcept"] = _concept(_coding(CS_PGIC, str(c.value)))
        add(pgic)

    for t in data.treatments:
        if (hi is not None and t.start > hi) or (lo is not None and (t.end or t.start) < lo):
            continue
        what = _concept(_coding(CS_TREATMENT, t.kind), text=t.description or None)
        if t.kind in MEDICATIONS:
            add(
                {
                    "resourceType": "MedicationStatement",
                    "id": _uid("treatment", pid, t.id),
                    "identifier": ident(ID_RECORD, t.id),
                    "status": "completed",
                    "medicationCodeableConcept": what,
                    "subject": subject,
                    "effectivePeriod": _days(t.start, t.end),
                    **({"note": [{"text": t.description}]} if t.description else {}),
                }
            )
            continue
        codings = [_coding(CS_TREATMENT, t.kind)]
        if t.kind == "physiotherapy":
            codings.append(_coding(SNOMED, *PHYSIOTHERAPY))
        add(
            {
                "resourceType": "Procedure",
                "id": _uid("treatment", pid, t.id),
                "identifier": ident(ID_RECORD, t.id),
                "status": "completed",
                "code": _concept(*codings, text=t.description or None),
                "subject": subject,
                "performedPeriod": _days(t.start, t.end),
            }
        )

    for a in sorted((a for a in data.adverse_events if inside(a.at)), key=lambda a: a.at):
        ae_kind = a.kind if a.kind in CODE_SYSTEMS[CS_ADVERSE][1] else "other"
        words = a.kind.replace("_", " ") + (f": {a.note}" if a.note else "")
        event: dict[str, Any] = {
            "resourceType": "AdverseEvent",
            "id": _uid("adverse", pid, a.id),
            "identifier": ident(ID_RECORD, a.id)[0],
            "actuality": "actual",
            "event": _concept(_coding(CS_ADVERSE, ae_kind), text=words),
            "subject": subject,
            "date": _when(a.at),
        }
        if a.severity in ("mild", "moderate", "severe"):
            event["severity"] = _concept(_coding(AE_SEVERITY, a.severity, a.severity.capitalize()))
        suspect = session_urls.get(a.session_id or "")
        if suspect is not None:
            event["suspectEntity"] = [{"instance": {"reference": suspect}}]
        add(event)

    rx_sorted = sorted(data.prescriptions, key=lambda p: p.valid_from)
    for i, p in enumerate(rx_sorted):
        pain, posture = p.headline
        repeat: dict[str, Any] = {
            "frequency": p.sessions_per_day,
            "period": 1,
            "periodUnit": "d",
            "duration": p.session_minutes,
            "durationUnit": "min",
        }
        add(
            {
                "resourceType": "DeviceRequest",
                "id": _uid("prescription", pid, str(i), _when(p.valid_from)),
                "status": "active" if i == len(rx_sorted) - 1 else "completed",
                "intent": "order",
                "codeCodeableConcept": _concept(_coding(CS_TENS, "tens-prescription")),
                "subject": subject,
                "authoredOn": _when(p.valid_from),
                "occurrenceTiming": {"repeat": repeat},
                "note": [
                    {
                        "text": (
                            f"{p.sessions_per_day} × {p.session_minutes:g} min a day"
                            + (
                                f", at most {p.minutes_per_day:g} min a day"
                                if p.minutes_per_day is not None
                                else ""
                            )
                            + f"; run-in {p.run_in_days} days; review headline: "
                            f"{PAIN_LABELS[pain]} {POSTURE_LABELS[posture]}"
                        )
                    }
                ],
            }
        )

    comparison = compare_data(data, zone)
    if comparison is not None:
        for pair in comparison.pairs:
            add(_comparison_observation(comparison, pair, pid, subject))

    for cs in code_system_resources():
        add(cs)

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
    """The bundle as FHIR JSON. The exact text returned is parsed back with ``fhir.resources``
    (a pydantic ``ValidationError`` if it were not R4B) and checked with
    :func:`~tens_control.review.fhir_check.check_bundle` (a ``FhirCheckError`` naming every
    problem) first."""
    from tens_control.review.fhir_check import check_bundle

    text = json.dumps(bundle_dict(data, tz, generated), ensure_ascii=False, indent=1)
    parse_bundle(text)
    check_bundle(json.loads(text))
    return text


def parse_bundle(text: str | bytes) -> Bundle:
    """Parse and validate FHIR JSON as an R4B ``Bundle`` (raises pydantic's ValidationError)."""
    return Bundle.model_validate_json(text)
