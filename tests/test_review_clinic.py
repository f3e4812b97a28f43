"""The hand-computed clinic (tests/fixtures/review_clinic.py) in every output: the JSON
figures, the HTML and PDF report (page 1 carries what a clinician must see without turning the
page), the CSV, the patient list (from the store, through its SQL path) and the FHIR bundle.

Every number below is worked out by hand from the fixture's docstrings (the comments show the
sums); none is read back from the code under test. All patients are reviewed on day 90 (Sunday
31 May 2026) in Europe/Berlin.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from tens_control.review.model import PatientData
from tens_control.review.report import render
from tens_control.review.source import load_summaries
from tens_control.review.wording import status_line
from tens_control.store import Store
from tests.fixtures import review_clinic as clinic
from tests.fixtures.review_data import on
from tests.fixtures.review_store import open_store, populate

ZONE = clinic.ZONE
GENERATED = datetime(2026, 5, 31, 8, 0, tzinfo=UTC)
TODAY = on(clinic.TODAY)


def _doc(data: PatientData) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(render(data, "json", tz=ZONE, generated=GENERATED))
    return out


def _point(doc: dict[str, Any], week: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        t for t in doc["summary"]["primary"]["time_points"] if t["week"] == week
    ]
    assert len(found) == 1
    return found[0]


def _page1_html(data: PatientData) -> str:
    page = render(data, "html", tz=ZONE, generated=GENERATED).decode()
    return page[: page.index('<section class="page2">')]


def _text(s: str) -> str:
    return " ".join(s.split())


def _pdf_pages(data: PatientData) -> list[str]:
    reader = PdfReader(io.BytesIO(render(data, "pdf", tz=ZONE, generated=GENERATED)))
    assert 1 <= len(reader.pages) <= 2
    return [_text(page.extract_text()) for page in reader.pages]


def _csv(data: PatientData) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(render(data, "csv", tz=ZONE).decode())))


def _fhir(data: PatientData) -> list[dict[str, Any]]:
    doc = json.loads(render(data, "fhir", tz=ZONE, generated=GENERATED))
    return [e["resource"] for e in doc["entry"]]


def _of(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == kind]


# --- the figures (JSON) ---------------------------------------------------------------------


def test_dropout_is_a_non_responder_with_its_last_use_and_real_adherence() -> None:
    doc = _doc(clinic.dropout())
    s = doc["summary"]
    # the period runs to today, not to the last day with data (day 20)
    assert (s["period_start"], s["period_end"]) == ("2026-02-23", "2026-05-31")
    # last session day 20 (22 Mar) 18:00; last rating its after rating, 18:35
    assert (s["last_session_day"], s["days_since_session"]) == ("2026-03-22", 70)
    assert (s["last_rating_day"], s["days_since_rating"]) == ("2026-03-22", 70)
    a = s["adherence"]
    # days 0..89 (today has no session yet: not counted): 90 days × 2 = 180 prescribed, 42 done
    assert (a["first_day"], a["last_day"], a["days"]) == ("2026-03-02", "2026-05-30", 90)
    assert (a["sessions_done"], a["sessions_prescribed"]) == (42, 180)
    assert a["sessions_pct"] == pytest.approx(42 / 180 * 100)
    assert a["minutes_pct"] == pytest.approx(42 * 30 / (180 * 30) * 100)
    assert a["days_without_session"] == 90 - 21
    b = s["primary"]["baseline"]
    assert (b["kind"], b["mean"], b["rated_days"], b["start"], b["end"]) == (
        "run_in",
        7.0,
        7,
        "2026-02-23",
        "2026-03-01",
    )
    # weeks 4, 8, 12 (days 21-27, 49-55, 77-83) have no ratings: non-responders, not "no data"
    for week in (4, 8, 12):
        tp = _point(doc, week)
        assert tp["status"] == "missing"
        assert tp["rated_days"] == 0
        assert (tp["responder_30"], tp["responder_50"], tp["responder_points"]) == (
            False,
            False,
            False,
        )
    # week 3 alone would have said −57 %: the weekly means are still there
    weeks = s["primary"]["weeks"]
    assert [w["mean"] for w in weeks[:4]] == [6.0, 5.0, 3.0, None]
    (change,) = s["session_change"]
    assert (change["sessions"], change["mean_change"]) == (42, -2.0)


def test_skipped_ratings_are_missing_and_a_thin_week_is_a_non_responder() -> None:
    doc = _doc(clinic.skips())
    s = doc["summary"]
    # 7 run-in ratings (3 skipped) + 34 sessions rated before and after (5 + 5 skipped)
    assert (s["ratings"], s["ratings_missing"]) == (7 + 68, 3 + 5 + 5)
    b = s["primary"]["baseline"]
    assert (b["kind"], b["rated_days"], b["mean"]) == ("run_in", 4, 6.0)
    tp = _point(doc, 4)  # days 77-83: two days rated 4 (a third less pain), five skipped
    assert (tp["status"], tp["rated_days"], tp["mean"]) == ("missing", 2, None)
    assert tp["responder_30"] is False
    assert _point(doc, 8)["status"] == "due"
    assert _point(doc, 8)["responder_30"] is None
    a = s["adherence"]
    assert (a["days"], a["sessions_done"], a["sessions_pct"]) == (34, 34, 100.0)
    (change,) = s["session_change"]
    assert (change["sessions"], change["mean_change"]) == (34 - 5, -1.0)


def test_a_single_rating_gives_no_baseline_and_a_non_responder() -> None:
    doc = _doc(clinic.single())
    s = doc["summary"]
    assert (s["ratings"], s["ratings_missing"]) == (1, 0)
    assert (s["last_rating_day"], s["days_since_rating"]) == ("2026-05-01", 30)
    b = s["primary"]["baseline"]
    assert (b["kind"], b["mean"], b["run_in_rated_days"], b["rated_days"]) == ("none", None, 1, 0)
    tp = _point(doc, 4)  # days 82-88, ended before today
    assert tp["status"] == "no_baseline"
    assert (tp["responder_30"], tp["responder_50"], tp["responder_points"]) == (
        False,
        False,
        False,
    )
    assert s["adherence"]["sessions_done"] == s["adherence"]["sessions_prescribed"] == 29


def test_sessions_across_midnight_and_summer_time_count_on_their_start_day() -> None:
    doc = _doc(clinic.berlin())
    s = doc["summary"]
    a = s["adherence"]
    # days 20..89 (22 Mar – 30 May), two sessions each: the 00:40 session on 29 Mar (still
    # 28 Mar in UTC) counts on 29 Mar, the 23:50 ones on the day they start; today (31 May)
    # holds only the end of yesterday's session and its after rating, and is not a day
    # without a session
    assert (a["first_day"], a["last_day"], a["days"]) == ("2026-03-22", "2026-05-30", 70)
    assert (a["sessions_done"], a["sessions_prescribed"], a["days_without_session"]) == (
        140,
        140,
        0,
    )
    assert {d["sessions"] for d in a["daily"]} == {2}
    assert a["today_counted"] is False
    assert s["stim_minutes"] == pytest.approx(140 * 30)
    assert (s["last_session_day"], s["days_since_session"]) == ("2026-05-30", 1)
    assert (s["last_rating_day"], s["days_since_rating"]) == ("2026-05-31", 0)
    (change,) = s["session_change"]
    assert (change["sessions"], change["mean_change"]) == (140, -2.0)  # 00:21 ratings paired
    assert s["primary"]["baseline"]["mean"] == 6.0
    for week in (4, 8):  # 4 vs 6: −2 points (a points responder, exactly), −33 %
        tp = _point(doc, week)
        assert (tp["mean"], tp["change_points"]) == (4.0, -2.0)
        assert tp["pct_change"] == pytest.approx(-100 / 3)
        assert (tp["responder_30"], tp["responder_50"], tp["responder_points"]) == (
            True,
            False,
            True,
        )
    assert _point(doc, 12)["status"] == "due"
    assert s["primary"]["latest"]["week"] == 10  # (89 − 20 + 1) // 7 complete weeks


def test_the_headline_is_the_prescribed_series_and_every_series_has_its_figures() -> None:
    doc = _doc(clinic.two_series())
    s = doc["summary"]
    assert s["headline"] == ["phantom", "rest"]
    phantom, residual = s["outcomes"]
    assert (phantom["pain"], phantom["headline"]) == ("phantom", True)
    assert (residual["pain"], residual["headline"]) == ("residual_limb", False)
    assert (phantom["baseline"]["mean"], phantom["baseline"]["rated_days"]) == (8.0, 4)
    assert (residual["baseline"]["mean"], residual["baseline"]["rated_days"]) == (4.0, 7)
    (p4,) = [t for t in phantom["time_points"] if t["week"] == 4]
    (r4,) = [t for t in residual["time_points"] if t["week"] == 4]
    assert (p4["mean"], p4["pct_change"], p4["band"], p4["responder_50"]) == (
        4.0,
        -50.0,
        "substantial",
        True,
    )
    assert (r4["mean"], r4["pct_change"], r4["responder_30"]) == (5.0, 25.0, False)


def test_a_low_baseline_is_flagged_and_the_points_say_what_the_percent_does_not() -> None:
    doc = _doc(clinic.low_baseline())
    b = doc["summary"]["primary"]["baseline"]
    assert (b["mean"], b["low"]) == (2.0, True)
    tp = _point(doc, 4)
    assert (tp["mean"], tp["change_points"], tp["pct_change"], tp["band"]) == (
        1.0,
        -1.0,
        -50.0,
        "substantial",
    )
    assert (tp["responder_30"], tp["responder_50"], tp["responder_points"]) == (
        True,
        True,
        False,
    )


def test_a_concurrent_infusion_is_flagged_beside_the_figure_and_the_diary_reaches_json() -> None:
    doc = _doc(clinic.ketamine())
    s = doc["summary"]
    tp = _point(doc, 4)  # days 81-87: 3 vs 7
    assert (tp["mean"], tp["change_points"]) == (3.0, -4.0)
    assert tp["pct_change"] == pytest.approx(-400 / 7)
    assert (tp["responder_30"], tp["responder_50"], tp["responder_points"]) == (True, True, True)
    # the infusion (days 66-68) is between the baseline (53-59) and the end of week 4; the
    # mirror therapy (days 30-40) is before the run-in
    assert [(t["kind"], t["start"], t["end"]) for t in tp["concurrent"]] == [
        ("ketamine_infusion", "2026-05-07", "2026-05-09")
    ]
    assert [t["kind"] for t in s["treatments"]] == ["mirror_therapy", "ketamine_infusion"]
    peg = s["peg"]
    assert (peg["count"], peg["first_before_treatment"]) == (2, True)
    assert peg["first"]["score"] == pytest.approx(19 / 3)
    assert peg["latest"]["score"] == pytest.approx(10 / 3)
    assert peg["change"] == pytest.approx(-3.0)
    pgic = s["pgic"]
    assert (pgic["latest"]["value"], pgic["latest"]["label"], pgic["improved"]) == (
        2,
        "much improved",
        True,
    )
    assert [(e["day"], e["nrs"], e["note"]) for e in s["episodes"]] == [
        ("2026-05-03", 8, "woke up with it"),
        ("2026-05-16", 6, ""),
    ]
    assert [n["text"] for n in doc["session_notes"]] == [
        "felt relaxed afterwards",
        "pads slipped",
    ]
    assert [(a["kind"], a["day"]) for a in s["adverse_events"]] == [("skin_redness", "2026-05-11")]


# --- page 1 of the report (HTML and PDF) ------------------------------------------------------

PAGE1 = {
    clinic.dropout: [
        "last session 22 Mar 2026 (70 days ago)",
        "no session for 70 days",
        "23 % of prescribed sessions (42 of 180 over 90 days",
        "69 days without a session",
        "18–24 May 2026: 0 of 7 days rated (a mean needs 3): non-responder (intention to treat)",
        "week 12: non-responder",
    ],
    clinic.skips: [
        "6.0/10: run-in 20–26 Apr 2026 (4 of 7 days rated)",
        "18–24 May 2026: 2 of 7 days rated (a mean needs 3): non-responder",
        "13 of 75 (left out of every mean, never counted as 0)",
    ],
    clinic.single: [
        "not enough data: needs ≥ 3 rated days in the run-in",
        "23–29 May 2026: no baseline: non-responder (intention to treat)",
        "last pain rating 1 May 2026 (30 days ago)",
    ],
    clinic.berlin: [
        "100 % of prescribed sessions (140 of 140 over 70 days, 22 Mar – 30 May 2026",
        "0 days without a session",
        "4.0 (−2.0 points, −33 %), 12–18 Apr 2026: ≥ 30 %: yes · ≥ 50 %: no · ≥ 2 points: yes",
    ],
    clinic.two_series: [
        "4.0 (−4.0 points, −50 %), 22–28 May 2026: ≥ 30 %: yes · ≥ 50 %: yes",
        "residual-limb pain at rest: baseline 4.0, week 4 5.0 (+1.0 points, +25 %)",
    ],
    clinic.low_baseline: [
        "2.0/10: run-in 24–30 Apr 2026 (7 of 7 days rated); ⚠ low baseline (below 4/10)",
        "1.0 (−1.0 points, −50 %), 22–28 May 2026: ≥ 30 %: yes · ≥ 50 %: yes · ≥ 2 points: no",
    ],
    clinic.ketamine: [
        "3.0 (−4.0 points, −57 %), 22–28 May 2026",
        "⚠ other treatment since the baseline: ketamine infusion 7–9 May 2026",
        "PEG 6.3 (before treatment, 30 Apr 2026) → 3.3 (28 May 2026, −3.0; 2 answers)",
        "PGIC 28 May 2026: much improved (2 of 7",
        "2 pain episodes (worst 8/10), latest 16 May 2026; 2 session notes",
        "skin redness (mild) on 11 May 2026",
    ],
}


@pytest.mark.parametrize("make", clinic.CLINIC, ids=lambda m: m.__name__)
def test_page_1_says_it_in_html_and_pdf(make: Any) -> None:
    data = make()
    html_page1 = _text(_page1_html(data).replace("&#x27;", "'"))
    pdf_page1 = _pdf_pages(data)[0]
    for fact in PAGE1[make]:
        assert _text(fact) in html_page1, fact
        assert _text(fact) in pdf_page1, fact


def test_the_diary_and_notes_are_on_page_2() -> None:
    data = clinic.ketamine()
    page = render(data, "html", tz=ZONE, generated=GENERATED).decode()
    page2 = page[page.index('<section class="page2">') :]
    pdf2 = _pdf_pages(data)[1]
    for text in (
        "woke up with it",
        "felt relaxed afterwards",
        "pads slipped",
        "much improved (2 of 7)",
        "ketamine 0.5 mg/kg over 4 h, 3 days",
        "mirror therapy 15 min daily",
        "red under pad 2",
    ):
        assert text in page2, text
        assert text in pdf2, text


# --- CSV ------------------------------------------------------------------------------------


def test_csv_has_every_record_of_the_diary() -> None:
    rows = _csv(clinic.ketamine())
    kinds = Counter(r["record"] for r in rows)
    assert kinds == {
        "session": 30,
        "rating": 7 + 60,
        "pain_episode": 2,
        "session_note": 2,
        "peg": 2,
        "pgic": 1,
        "treatment": 2,
        "adverse_event": 1,
    }
    (infusion,) = [r for r in rows if r["kind"] == "ketamine_infusion"]
    assert (infusion["date"], infusion["end_date"], infusion["time_utc"]) == (
        "2026-05-07",
        "2026-05-09",
        "",
    )
    (pgic,) = [r for r in rows if r["record"] == "pgic"]
    assert (pgic["pgic"], pgic["pgic_label"], pgic["date"]) == ("2", "much improved", "2026-05-28")
    pegs = [r for r in rows if r["record"] == "peg"]
    assert [(p["peg_pain"], p["peg_score"]) for p in pegs] == [("7", "6.333"), ("4", "3.333")]
    notes = [r for r in rows if r["record"] == "session_note"]
    assert [n["text"] for n in notes] == ["felt relaxed afterwards", "pads slipped"]
    sessions = {r["session_id"] for r in rows if r["record"] == "session"}
    assert all(n["session_id"] in sessions for n in notes)
    (episode,) = [r for r in rows if r["record"] == "pain_episode" and r["nrs"] == "8"]
    assert (episode["text"], episode["pain"], episode["end_utc"]) == (
        "woke up with it",
        "phantom",
        "2026-05-03T15:40:00Z",
    )
    (adverse,) = [r for r in rows if r["record"] == "adverse_event"]
    assert (adverse["kind"], adverse["severity"], adverse["text"]) == (
        "skin_redness",
        "mild",
        "red under pad 2",
    )
    times = [r["time_utc"] for r in rows if r["time_utc"]]
    assert times == sorted(times)


def test_csv_days_are_local_days() -> None:
    rows = _csv(clinic.berlin())
    # 29 Mar 00:40 in Berlin (winter time) is 28 Mar 23:40 UTC
    (early,) = [
        r for r in rows if r["record"] == "session" and r["time_utc"].startswith("2026-03-28T23:40")
    ]
    assert early["date"] == "2026-03-29"
    skipped = [r for r in _csv(clinic.skips()) if r["missing"] == "1"]
    assert len(skipped) == 13
    assert {r["nrs"] for r in skipped} == {""}


# --- the patient list (from the store, SQL path) ----------------------------------------------

STATUS = {
    "P-DROPOUT": "P-DROPOUT · last session 22 Mar (70 days ago) · adherence 23 % · week 12: "
    "non-responder (0 of 7 days rated) · ⚠ stopped?",
    "P-SKIPS": "P-SKIPS · last session 30 May (yesterday) · adherence 100 % · week 4: "
    "non-responder (2 of 7 days rated)",
    "P-SINGLE": "P-SINGLE · last session 30 May (yesterday) · adherence 100 % · week 4: "
    "non-responder (no baseline)",
    "P-BERLIN": "P-BERLIN · last session 30 May (yesterday) · adherence 100 % · week 8: −33 % "
    "(≥ 30 %, ≥ 2 points)",
    "P-TWO": "P-TWO · last session 30 May (yesterday) · adherence 100 % · week 4: −50 % "
    "(≥ 30 %, ≥ 50 %, ≥ 2 points)",
    "P-LOW": "P-LOW · last session 30 May (yesterday) · adherence 100 % · week 4: −50 % "
    "(≥ 30 %, ≥ 50 %) · ⚠ low baseline 2.0",
    "P-KETAMINE": "P-KETAMINE · last session 30 May (yesterday) · adherence 100 % · week 4: "
    "−57 % (≥ 30 %, ≥ 50 %, ≥ 2 points) · ⚠ other treatment: ketamine infusion 7–9 May 2026, "
    "1 adverse event",
}


@pytest.fixture(scope="module")
def clinic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clinic") / "clinic.sqlite3"
    with open_store(path, "P-DROPOUT") as store:
        for data in clinic.clinic():
            populate(store, data)
    return path


def test_the_patient_list_says_it_from_the_store(clinic_db: Path) -> None:
    from tens_control.ui.review.data import PatientStatus

    with Store.open(clinic_db, read_only=True) as store:
        summaries = load_summaries(store, tz=ZONE, today=TODAY)
    assert {s.pseudonym: status_line(s) for s in summaries} == STATUS
    status = {s.pseudonym: PatientStatus(s) for s in summaries}
    assert status["P-DROPOUT"].responder_30 is False  # intention to treat, never "no data"
    assert status["P-DROPOUT"].stopped
    assert status["P-SINGLE"].responder_30 is False
    assert status["P-LOW"].low_baseline
    assert status["P-LOW"].responder_points is False
    assert status["P-KETAMINE"].concurrent
    assert status["P-TWO"].pain_pct == -50.0


# --- FHIR -----------------------------------------------------------------------------------


def test_fhir_bundle_of_the_ketamine_patient() -> None:
    resources = _fhir(clinic.ketamine())
    procedures = _of(resources, "Procedure")
    sessions = [p for p in procedures if p["code"]["coding"][0]["code"] == "tens-session"]
    assert len(sessions) == 30
    (mirror,) = [p for p in procedures if p["code"]["coding"][0]["code"] == "mirror_therapy"]
    assert mirror["performedPeriod"] == {"start": "2026-04-01", "end": "2026-04-11"}
    (infusion,) = _of(resources, "MedicationStatement")
    assert infusion["effectivePeriod"] == {"start": "2026-05-07", "end": "2026-05-09"}
    assert infusion["medicationCodeableConcept"]["coding"][0]["code"] == "ketamine_infusion"
    noted = [n["text"] for p in sessions for n in p["note"][1:]]
    assert noted == ["felt relaxed afterwards", "pads slipped"]
    observations = _of(resources, "Observation")
    pain = [o for o in observations if o["code"]["coding"][0]["code"] == "72514-3"]
    assert len(pain) == 67 + 2  # ratings and diary pain episodes
    episodes = [o for o in pain if "effectivePeriod" in o]
    assert [(o["valueInteger"], o["effectivePeriod"]["start"]) for o in episodes] == [
        (8, "2026-05-03T15:00:00Z"),
        (6, "2026-05-16T15:00:00Z"),
    ]
    session_urls = {f"urn:uuid:{p['id']}" for p in sessions}
    linked = [o for o in pain if "partOf" in o]
    assert len(linked) == 60
    assert all(o["partOf"][0]["reference"] in session_urls for o in linked)
    figures = [
        o
        for o in observations
        if "valueQuantity" in o
        and o["code"]["coding"][0]["code"]
        in ("mean-amplitude", "max-amplitude", "stimulation-time")
    ]
    units = Counter((o["code"]["coding"][0]["code"], o["valueQuantity"]["code"]) for o in figures)
    assert units == {
        ("stimulation-time", "min"): 30,
        ("mean-amplitude", "mA"): 30,
        ("max-amplitude", "mA"): 30,
    }
    assert {o["valueQuantity"]["system"] for o in figures} == {"http://unitsofmeasure.org"}
    (pgic,) = [o for o in observations if o["code"]["coding"][0]["code"] == "pgic"]
    assert pgic["valueCodeableConcept"]["coding"][0]["code"] == "2"
    pegs = [o for o in observations if o["code"]["coding"][0]["code"] == "peg"]
    assert [o["valueQuantity"]["value"] for o in pegs] == [6.333, 3.333]
    (event,) = _of(resources, "AdverseEvent")
    assert (event["actuality"], event["severity"]["coding"][0]["code"]) == ("actual", "mild")
    (rx,) = _of(resources, "DeviceRequest")
    assert rx["occurrenceTiming"]["repeat"] == {
        "frequency": 1,
        "period": 1,
        "periodUnit": "d",
        "duration": 30.0,
        "durationUnit": "min",
    }


def test_fhir_pain_series_carry_standard_codes() -> None:
    resources = _fhir(clinic.two_series())
    pain = [o for o in _of(resources, "Observation") if o["code"]["coding"][0]["code"] == "72514-3"]
    residual = [
        o for o in pain if o.get("bodySite", {}).get("coding", [{}])[0].get("code") == "38033009"
    ]
    assert len(residual) == 7 + 60  # run-in and before/after
    assert all(o["bodySite"]["coding"][0]["system"] == "http://snomed.info/sct" for o in residual)
    phantom = [o for o in pain if o not in residual]
    assert len(phantom) == 4 + 60
    for o in phantom:
        kind = o["component"][0]["valueCodeableConcept"]["coding"]
        assert {
            "system": "http://snomed.info/sct",
            "code": "5771000119106",
            "display": "Phantom limb syndrome with pain",
        } in kind
        assert {
            "system": "http://hl7.org/fhir/sid/icd-10-cm",
            "code": "G54.6",
            "display": "Phantom limb syndrome with pain",
        } in kind


def test_fhir_skipped_ratings_have_no_value() -> None:
    pain = [
        o
        for o in _of(_fhir(clinic.skips()), "Observation")
        if o["code"]["coding"][0]["code"] == "72514-3"
    ]
    absent = [o for o in pain if "dataAbsentReason" in o]
    assert len(absent) == 13
    assert not [o for o in absent if "valueInteger" in o]


def test_every_output_is_made_for_every_patient() -> None:
    """Every format renders for every fixture patient (the FHIR bundle passes the checker)."""
    for make in clinic.CLINIC:
        data = make()
        for fmt in ("json", "html", "csv", "fhir"):
            assert render(data, fmt, tz=ZONE, generated=GENERATED)
        assert len(_pdf_pages(data)) == 2
