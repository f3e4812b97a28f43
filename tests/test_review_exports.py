"""CSV and FHIR exports: the CSV header is the documented table and skipped ratings stay empty;
every FHIR bundle parses back with fhir.resources (R4B), uses the standard codes where one was
found, links ratings to their session's Procedure, and passes the checker
(tens_control/review/fhir_check.py) — which catches what fhir.resources lets through."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.deviceusestatement import DeviceUseStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure

from tens_control.review.csv_export import HEADER, csv_text
from tens_control.review.fhir_check import (
    FhirCheckError,
    bundle_problems,
    check_bundle,
    sctid_ok,
)
from tens_control.review.fhir_export import (
    CODE_SYSTEMS,
    CS_PAIN,
    CS_POSTURE,
    CS_WHEN,
    bundle_dict,
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


def test_fhir_bundle_round_trips_with_the_right_resources() -> None:
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
    n_sessions = len(data.sessions)
    # sessions and two treatments (mirror therapy as a Procedure, the medication change as a
    # MedicationStatement)
    assert kinds.count("Procedure") == n_sessions + 1
    assert kinds.count("MedicationStatement") == 1
    assert kinds.count("DeviceUseStatement") == n_sessions
    assert kinds.count("AdverseEvent") == 1
    assert kinds.count("DeviceRequest") == 1
    assert kinds.count("CodeSystem") == len(CODE_SYSTEMS)
    figures = sum(1 for s in data.sessions for v in (s.mean_amplitude_ma, s.max_amplitude_ma) if v)
    observations = len(data.ratings) + len(data.episodes) + len(data.pegs) + len(data.pgics)
    assert kinds.count("Observation") == observations + n_sessions + figures
    assert sum(isinstance(r, DeviceUseStatement) for r in resources) == n_sessions
    assert sum(isinstance(r, Procedure) for r in resources) == n_sessions + 1
    assert sum(isinstance(r, Observation) for r in resources) == kinds.count("Observation")
    again = json.loads(bundle.model_dump_json(exclude_none=True))
    assert again == json.loads(text)


def test_fhir_observations() -> None:
    data = _small().build()
    text = bundle_json(data, tz=UTC, generated=GENERATED)
    pain = [
        o for o in _resources(text, "Observation") if o["code"]["coding"][0]["code"] == "72514-3"
    ]
    assert len(pain) == 6
    for o in pain:
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
    values = sorted(o["valueInteger"] for o in pain if "valueInteger" in o)
    assert values == [2, 3, 4, 5, 6]
    (skipped,) = [o for o in pain if "valueInteger" not in o]
    assert skipped["dataAbsentReason"]["coding"][0]["code"] == "asked-declined"
    diary = next(o for o in pain if o.get("valueInteger") == 5)
    comp = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0]["code"]
        for c in diary["component"]
    }
    assert comp == {"pain-kind": "residual_limb", "posture": "movement", "rating-time": "diary"}
    assert diary["bodySite"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "38033009",
        "display": "Amputation stump",
    }
    assert "partOf" not in diary
    procedures = {f"urn:uuid:{p['id']}" for p in _resources(text, "Procedure")}
    linked = [o for o in pain if "partOf" in o]
    assert len(linked) == 5  # every before, after and +30 min rating of the two sessions
    assert all(o["partOf"][0]["reference"] in procedures for o in linked)
    assert not [o for o in pain if "extension" in o]  # no private link extension any more


def test_fhir_sessions_are_procedures_with_ucum_figures() -> None:
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
    procedures = _resources(text, "Procedure")
    assert [p["status"] for p in procedures] == ["completed", "stopped"]
    assert procedures[0]["performedPeriod"] == {
        "start": "2026-03-02T09:00:00Z",
        "end": "2026-03-02T09:30:00Z",
    }
    assert procedures[1]["statusReason"] == {"text": "electrode off"}
    assert procedures[0]["bodySite"][0]["coding"][0]["code"] == "38033009"
    assert procedures[0]["focalDevice"][0]["manipulated"]["reference"].startswith("urn:uuid:")
    statements = _resources(text, "DeviceUseStatement")
    assert [s["status"] for s in statements] == ["completed", "stopped"]
    assert [s["derivedFrom"][0]["reference"] for s in statements] == [
        f"urn:uuid:{p['id']}" for p in procedures
    ]
    figures = [
        o
        for o in _resources(text, "Observation")
        if o["code"]["coding"][0]["system"].endswith(":tens")
    ]
    by_code = {(o["code"]["coding"][0]["code"], o["partOf"][0]["reference"]): o for o in figures}
    first = f"urn:uuid:{procedures[0]['id']}"
    assert by_code[("stimulation-time", first)]["valueQuantity"] == {
        "value": 30.0,
        "unit": "min",
        "system": "http://unitsofmeasure.org",
        "code": "min",
    }
    assert by_code[("mean-amplitude", first)]["valueQuantity"]["value"] == 20.0
    assert by_code[("max-amplitude", first)]["valueQuantity"]["code"] == "mA"


def test_fhir_export_is_reproducible() -> None:
    a = bundle_json(_small().build(), tz=UTC, generated=GENERATED)
    b = render(_small().build(), "fhir", tz=UTC, generated=GENERATED).decode()
    assert a == b


def test_a_session_whose_end_is_before_its_start_still_exports() -> None:
    b = _small()
    s = b.sessions[0]
    b.sessions[0] = type(s)(
        **{**{k: getattr(s, k) for k in s.__dataclass_fields__}, "end": s.start.replace(hour=8)}
    )
    text = bundle_json(b.build(), tz=UTC, generated=GENERATED)
    first = _resources(text, "Procedure")[0]
    assert first["performedPeriod"] == {"start": "2026-03-02T09:00:00Z"}
    assert "before the start" in first["note"][0]["text"]


# --- the checker: what fhir.resources lets through --------------------------------------------


def _bundle() -> dict[str, Any]:
    return bundle_dict(_small().build(), tz=UTC, generated=GENERATED)


def _first(bundle: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def test_an_exported_bundle_has_no_problem() -> None:
    assert bundle_problems(_bundle()) == []
    assert bundle_problems(bundle_dict(sample_patient(), tz=UTC, generated=GENERATED)) == []


def _broken(change: Any) -> tuple[dict[str, Any], list[str]]:
    bundle = copy.deepcopy(_bundle())
    change(bundle)
    Bundle.model_validate(bundle)  # fhir.resources accepts it
    return bundle, bundle_problems(bundle)


def test_a_status_outside_its_value_set_is_caught() -> None:
    def bogus(b: dict[str, Any]) -> None:
        _first(b, "Observation")["status"] = "bogus"

    bundle, problems = _broken(bogus)
    assert len(problems) == 1
    assert "status 'bogus' is not in the required value set" in problems[0]
    with pytest.raises(FhirCheckError, match="bogus"):
        check_bundle(bundle)


def test_a_value_with_a_data_absent_reason_is_caught() -> None:
    def both(b: dict[str, Any]) -> None:
        obs = next(
            e["resource"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and "dataAbsentReason" in e["resource"]
        )
        obs["valueInteger"] = 0

    _, problems = _broken(both)
    assert problems == [problems[0]]
    assert "has both valueInteger and dataAbsentReason (obs-6)" in problems[0]


def test_an_observation_without_value_or_reason_is_caught() -> None:
    def neither(b: dict[str, Any]) -> None:
        obs = next(
            e["resource"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation" and "valueInteger" in e["resource"]
        )
        del obs["valueInteger"]

    _, problems = _broken(neither)
    assert any("neither a value nor a dataAbsentReason" in p for p in problems)


def test_a_dangling_reference_is_caught() -> None:
    def dangling(b: dict[str, Any]) -> None:
        _first(b, "Procedure")["subject"] = {
            "reference": "urn:uuid:00000000-0000-0000-0000-000000000000"
        }

    _, problems = _broken(dangling)
    assert len(problems) == 1
    assert "does not resolve inside the bundle" in problems[0]


def test_a_reference_to_the_wrong_kind_of_resource_is_caught() -> None:
    def wrong(b: dict[str, Any]) -> None:
        obs = next(
            e["resource"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation" and "partOf" in e["resource"]
        )
        obs["partOf"][0]["reference"] = _first(b, "Patient") and next(
            e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Device"
        )

    _, problems = _broken(wrong)
    assert any("partOf.reference points to a Device" in p for p in problems)


def test_codes_are_checked() -> None:
    def codes(b: dict[str, Any]) -> None:
        obs = next(
            e["resource"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation" and "component" in e["resource"]
        )
        obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "elbow"
        site = next(
            e["resource"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and e["resource"].get("bodySite", {}).get("coding", [{}])[0].get("code") == "38033009"
        )
        site["bodySite"]["coding"][0]["code"] = "38033008"  # a typo: the check digit fails

    _, problems = _broken(codes)
    assert any("'elbow' is not defined in urn:tens-control" in p for p in problems)
    assert any("'38033008' is not a SNOMED CT identifier" in p for p in problems)


def test_units_and_severities_are_checked() -> None:
    def units(b: dict[str, Any]) -> None:
        fig = next(
            e["resource"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]
        )
        fig["valueQuantity"]["code"] = "milliamps"

    _, problems = _broken(units)
    assert any("is not a UCUM quantity" in p for p in problems)


def test_snomed_check_digits() -> None:
    for code in ("38033009", "91251008", "22253000", "5771000119106", "711057003", "711058008"):
        assert sctid_ok(code)
    for code in ("38033008", "1234", "0123456", "abc12345"):
        assert not sctid_ok(code)
