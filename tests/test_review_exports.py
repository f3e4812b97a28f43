"""CSV and FHIR exports: the CSV header is the documented table, skipped ratings stay empty,
and every FHIR bundle parses back with fhir.resources (R4B) with the right codes."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir.resources.R4B.deviceusestatement import DeviceUseStatement
from fhir.resources.R4B.observation import Observation

from tens_control.review.csv_export import HEADER, csv_text
from tens_control.review.fhir_export import (
    CS_PAIN,
    CS_POSTURE,
    CS_WHEN,
    SESSION_EXTENSION,
    bundle_json,
    parse_bundle,
)
from tens_control.review.report import render
from tests.fixtures.review_data import Builder, on, sample_patient

DOCS = Path(__file__).resolve().parent.parent / "docs" / "review.md"
GENERATED = datetime(2026, 4, 13, 9, 0, tzinfo=UTC)


def _documented_columns(section: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(section)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        m = re.match(r"^\|\s*`([a-z_0-9]+)`\s*\|", line)
        if m:
            rows.append(m.group(1))
    return rows


def _small() -> Builder:
    b = Builder("P-7").prescribe()
    b.session(0, before=6, after=3, plus_30=4)
    b.session(1, before=None, after=2, end_reason="lead_off")
    b.rate(1, 5, "diary", "residual_limb", "movement")
    b.event(1, "fault", "LEADOFF")
    return b


def test_csv_header_matches_the_documented_table() -> None:
    assert _documented_columns("## CSV columns") == list(HEADER)
    first = csv_text(_small().build(), UTC).splitlines()[0]
    assert first.split(",") == list(HEADER)


def test_csv_has_one_row_per_session_and_per_rating() -> None:
    data = _small().build()
    rows = list(csv.DictReader(io.StringIO(csv_text(data, UTC))))
    assert [r["record"] for r in rows].count("session") == 2
    assert [r["record"] for r in rows].count("rating") == len(data.ratings) == 6
    times = [r["time_utc"] for r in rows]
    assert times == sorted(times)
    skipped = [r for r in rows if r["record"] == "rating" and r["missing"] == "1"]
    assert len(skipped) == 1
    assert skipped[0]["nrs"] == ""  # never 0
    assert skipped[0]["when"] == "before"
    s2 = next(r for r in rows if r["record"] == "session" and r["end_reason"] == "lead_off")
    assert s2["stim_minutes"] == "30"
    assert s2["mean_amplitude_ma"] == "20"
    assert s2["date"] == on(1).isoformat()
    assert s2["time_utc"] == "2026-03-03T09:00:00Z"
    assert s2["device"] == "TENS-SIM SIM-0001"
    diary = next(r for r in rows if r["when"] == "diary")
    assert (diary["pain"], diary["posture"], diary["nrs"], diary["session_id"]) == (
        "residual_limb",
        "movement",
        "5",
        "",
    )


def test_csv_respects_the_period() -> None:
    data = _small().build(period_from=on(1), period_to=on(1))
    rows = list(csv.DictReader(io.StringIO(csv_text(data, UTC))))
    assert {r["date"] for r in rows} == {on(1).isoformat()}


def _resources(text: str, kind: str) -> list[dict[str, Any]]:
    doc = json.loads(text)
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == kind]


def test_fhir_bundle_round_trips_with_the_right_codes() -> None:
    data = sample_patient()
    text = bundle_json(data, tz=UTC, generated=GENERATED)
    bundle = parse_bundle(text)
    assert bundle.type == "collection"
    assert bundle.entry is not None
    resources = [e.resource for e in bundle.entry if e.resource is not None]
    assert len(resources) == len(bundle.entry)
    kinds = [r.get_resource_type() for r in resources]
    assert kinds.count("Patient") == 1
    assert kinds.count("Device") == 1
    assert kinds.count("Observation") == len(data.ratings)
    assert kinds.count("DeviceUseStatement") == len(data.sessions)
    # the parsed models are R4B classes, and serialise back to the same resources
    assert sum(isinstance(r, Observation) for r in resources) == len(data.ratings)
    assert sum(isinstance(r, DeviceUseStatement) for r in resources) == len(data.sessions)
    again = json.loads(bundle.model_dump_json(exclude_none=True))
    assert again == json.loads(text)


def test_fhir_observations() -> None:
    data = _small().build()
    text = bundle_json(data, tz=UTC, generated=GENERATED)
    obs = _resources(text, "Observation")
    assert len(obs) == 6
    for o in obs:
        assert o["status"] == "final"
        assert o["category"][0]["coding"][0]["code"] == "survey"
        (coding,) = o["code"]["coding"]
        assert (coding["system"], coding["code"]) == ("http://loinc.org", "72514-3")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", o["effectiveDateTime"])
        comp = {
            c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0]
            for c in o["component"]
        }
        assert comp["pain-kind"]["system"] == CS_PAIN
        assert comp["posture"]["system"] == CS_POSTURE
        assert comp["rating-time"]["system"] == CS_WHEN
    values = sorted(o["valueInteger"] for o in obs if "valueInteger" in o)
    assert values == [2, 3, 4, 5, 6]
    (skipped,) = [o for o in obs if "valueInteger" not in o]
    assert skipped["dataAbsentReason"]["coding"][0]["code"] == "asked-declined"
    diary = next(o for o in obs if o.get("valueInteger") == 5)
    comp = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0]["code"]
        for c in diary["component"]
    }
    assert comp == {"pain-kind": "residual_limb", "posture": "movement", "rating-time": "diary"}
    assert "extension" not in diary
    urls = {e["fullUrl"] for e in json.loads(text)["entry"]}
    for o in obs:
        assert o["subject"]["reference"] in urls
        for ext in o.get("extension", []):
            assert ext["url"] == SESSION_EXTENSION
            assert ext["valueReference"]["reference"] in urls


def test_fhir_sessions_patient_and_device() -> None:
    text = bundle_json(_small().build(), tz=UTC, generated=GENERATED)
    (patient,) = _resources(text, "Patient")
    assert patient["identifier"] == [
        {"system": "urn:tens-control:patient-pseudonym", "value": "P-7"}
    ]
    assert set(patient) == {"resourceType", "id", "identifier"}  # pseudonym only
    (device,) = _resources(text, "Device")
    assert device["serialNumber"] == "SIM-0001"
    assert device["deviceName"] == [{"name": "TENS-SIM", "type": "model-name"}]
    assert device["version"] == [{"value": "1.2.0"}]
    statements = _resources(text, "DeviceUseStatement")
    assert [s["status"] for s in statements] == ["completed", "stopped"]
    assert statements[0]["timingPeriod"] == {
        "start": "2026-03-02T09:00:00Z",
        "end": "2026-03-02T09:30:00Z",
    }
    assert all(s["device"]["reference"].startswith("urn:uuid:") for s in statements)


def test_fhir_export_is_reproducible() -> None:
    a = bundle_json(_small().build(), tz=UTC, generated=GENERATED)
    b = render(_small().build(), "fhir", tz=UTC, generated=GENERATED).decode()
    assert a == b
