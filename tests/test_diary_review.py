"""The diary in the clinician's outputs: the review rows show each entry's current state (edits
applied, deletions left out) with the history beside it, on both the per-patient path and the
patient list's SQL path; the figures (sleep, mood, medicines, how the diary was kept) are
hand-computed; CSV, FHIR (through the checker) and the report carry all of it."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from drivers.clock import VirtualClock
from tens_control import diary
from tens_control.pain import BodyRegion
from tens_control.review.analytics import aggregate, diary_figures
from tens_control.review.csv_export import csv_text
from tens_control.review.fhir_export import CS_DIARY, CS_REGION, bundle_json
from tens_control.review.report import build_report, render_html
from tens_control.review.source import load_aggregates, load_patient
from tens_control.store import Store
from tens_control.store.records import DiaryItem, DiaryKind, PainSite
from tests.store_support import T0, open_virtual

DAY = timedelta(days=1)
GENERATED = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def _item(kind: DiaryKind, start: datetime, written: datetime, **fields: object) -> DiaryItem:
    return DiaryItem.model_validate({"kind": kind, "start": start, "written_at": written, **fields})


def _diary(path: Path) -> tuple[Store, dict[str, DiaryItem]]:
    """A week of diary: two nights, two moods, three doses (two of one medicine, written in
    two spellings), a pain episode written two days later and then edited, one deleted."""
    store = open_virtual(path, VirtualClock())
    store.ensure_patient("P-1")
    w = {
        "sleep1": _item(
            DiaryKind.SLEEP, T0, T0, sleep_hours=6.0, sleep_quality=3, notes="woke at 4"
        ),
        "sleep2": _item(DiaryKind.SLEEP, T0 + DAY, T0 + DAY, sleep_hours=7.5, sleep_quality=6),
        "mood1": _item(DiaryKind.MOOD, T0, T0, mood=4),
        "mood2": _item(DiaryKind.MOOD, T0 + DAY, T0 + DAY, mood=7),
        "dose1": _item(DiaryKind.MEDICATION_TAKEN, T0, T0, medication="Gabapentin", dose="300 mg"),
        "dose2": _item(
            DiaryKind.MEDICATION_TAKEN, T0 + DAY, T0 + DAY, medication="gabapentin", dose="300 mg"
        ),
        "dose3": _item(DiaryKind.MEDICATION_TAKEN, T0 + DAY, T0 + DAY, medication="paracetamol"),
        "episode": _item(
            DiaryKind.PAIN_EPISODE,
            T0 + DAY,
            T0 + 3 * DAY,
            pain=PainSite.PHANTOM,
            nrs=8,
            regions=(BodyRegion.PHANTOM_DIGITS,),
        ),
        "gone": _item(DiaryKind.PAIN_EPISODE, T0 + DAY, T0 + DAY, pain=PainSite.OTHER, nrs=2),
    }
    for item in w.values():
        diary.write(store, item, patient="P-1")
    edited = w["episode"].model_copy(
        update={
            "nrs": 6,
            "regions": (BodyRegion.PHANTOM_DIGITS, BodyRegion.PHANTOM_HAND_FOOT),
            "written_at": T0 + 3 * DAY + timedelta(hours=1),
        }
    )
    diary.revise(store, edited, reason="it was less", patient="P-1")
    diary.retract(store, w["gone"].uid, T0 + 2 * DAY, reason="by mistake", patient="P-1")
    return store, w


def test_the_review_rows_are_the_current_state_with_the_history(tmp_path: Path) -> None:
    store, w = _diary(tmp_path / "log.sqlite3")
    data = load_patient(store, "P-1", tz=UTC, today=date(2025, 3, 9))
    (episode,) = data.episodes  # the deleted one is not there
    assert episode.id == w["episode"].uid
    assert episode.nrs == 6
    assert episode.regions == ("phantom_digits", "phantom_hand_foot")
    assert episode.edited
    assert episode.written == T0 + 3 * DAY + timedelta(hours=1)
    assert [d.kind for d in data.diary].count("sleep") == 2
    changes = [(c.change, c.id, c.reason) for c in data.diary_changes]
    assert changes == [
        ("deleted", w["gone"].uid, "by mistake"),
        ("edited", w["episode"].uid, "it was less"),
    ]
    edit = data.diary_changes[1]
    assert "8/10" in edit.was
    assert "6/10" in edit.now

    # the patient list's SQL path resolves the same state
    (agg,) = load_aggregates(store, ["P-1"], tz=UTC, today=date(2025, 3, 9))
    assert agg.episodes == aggregate(data, UTC).episodes


def test_diary_figures_are_hand_computed(tmp_path: Path) -> None:
    store, _ = _diary(tmp_path / "log.sqlite3")
    data = load_patient(store, "P-1", tz=UTC, today=date(2025, 3, 9))
    f = diary_figures(data, UTC, None, None)
    assert f.nights == 2
    assert f.mean_sleep_hours == (6.0 + 7.5) / 2
    assert f.mean_sleep_quality == (3 + 6) / 2
    assert f.moods == 2
    assert f.mean_mood == (4 + 7) / 2
    assert f.doses == {"gabapentin": 2, "paracetamol": 1}  # the same medicine, case folded
    assert f.backdated == 1  # the episode, written two days after it happened
    assert f.edited == 1
    assert f.deleted == 1
    # a period of the first day only
    first = diary_figures(data, UTC, date(2025, 3, 3), date(2025, 3, 3))
    assert (first.nights, first.moods, first.doses) == (1, 1, {"gabapentin": 1})
    assert first.mean_mood == 4


def test_csv_carries_every_diary_row_and_the_history(tmp_path: Path) -> None:
    store, w = _diary(tmp_path / "log.sqlite3")
    data = load_patient(store, "P-1", tz=UTC, today=date(2025, 3, 9))
    rows = list(csv.DictReader(io.StringIO(csv_text(data, UTC))))
    by_record: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_record.setdefault(r["record"], []).append(r)
    assert len(by_record["sleep"]) == 2
    assert by_record["sleep"][0]["sleep_hours"] == "6"
    assert by_record["sleep"][0]["sleep_quality"] == "3"
    assert [r["mood"] for r in by_record["mood"]] == ["4", "7"]
    assert {r["medication"] for r in by_record["medication_taken"]} == {
        "Gabapentin",
        "gabapentin",
        "paracetamol",
    }
    (ep,) = by_record["pain_episode"]
    assert ep["nrs"] == "6"
    assert ep["body_regions"] == "phantom_digits;phantom_hand_foot"
    assert ep["edited"] == "1"
    assert ep["time_utc"] == "2025-03-04T09:00:00Z"  # when it happened
    assert ep["written_utc"] == "2025-03-06T10:00:00Z"  # when it was written
    changes = {(r["change"], r["entry_id"]) for r in by_record["diary_change"]}
    assert changes == {("edited", w["episode"].uid), ("deleted", w["gone"].uid)}


def test_fhir_has_sleep_mood_doses_and_the_body_map_and_passes_the_checker(
    tmp_path: Path,
) -> None:
    store, w = _diary(tmp_path / "log.sqlite3")
    data = load_patient(store, "P-1", tz=UTC, today=date(2025, 3, 9))
    bundle = json.loads(bundle_json(data, tz=UTC, generated=GENERATED))  # runs the checker
    resources = [e["resource"] for e in bundle["entry"]]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    daily = [o for o in observations if o["code"]["coding"][0]["system"] == CS_DIARY]
    codes = sorted(o["code"]["coding"][0]["code"] for o in daily)
    assert codes == ["mood", "mood", "sleep-quality", "sleep-quality"]
    sleep = next(o for o in daily if o["valueInteger"] == 3)
    assert sleep["component"][0]["valueQuantity"] == {
        "value": 6.0,
        "unit": "h",
        "system": "http://unitsofmeasure.org",
        "code": "h",
    }
    episode = next(o for o in observations if o.get("effectivePeriod"))
    assert episode["status"] == "amended"
    assert episode["valueInteger"] == 6
    assert episode["issued"].startswith("2025-03-06T10:00:00")
    regions = [
        c["valueCodeableConcept"]["coding"][0]["code"]
        for c in episode["component"]
        if c["valueCodeableConcept"]["coding"][0]["system"] == CS_REGION
    ]
    assert regions == ["phantom_digits", "phantom_hand_foot"]
    assert any("was:" in n["text"] for n in episode["note"])
    doses = [r for r in resources if r["resourceType"] == "MedicationStatement"]
    assert sorted(d["medicationCodeableConcept"]["text"] for d in doses) == [
        "Gabapentin",
        "gabapentin",
        "paracetamol",
    ]
    assert all(
        "dosage" in d for d in doses if d["medicationCodeableConcept"]["text"] != "paracetamol"
    )
    # the deleted entry counts nowhere
    assert w["gone"].uid not in json.dumps(resources)


def test_the_report_shows_sleep_mood_and_the_diary_history(tmp_path: Path) -> None:
    store, _ = _diary(tmp_path / "log.sqlite3")
    data = load_patient(store, "P-1", tz=UTC, today=date(2025, 3, 9))
    report = build_report(data, tz=UTC, generated=GENERATED)
    html = render_html(report)
    assert "Sleep, mood" in html
    assert "mean 6.8 h, slept 4.5/10" in html
    assert "gabapentin ×2" in html
    lines, _ = report.diary_lines(limit=50)
    words = [(line.what, line.detail) for line in lines]
    assert (
        "diary entry deleted",
        "was 04 Mar 09:00 pain episode: 2/10 other (why: by mistake)",
    ) in words
    episode = next(d for w, d in words if w == "pain episode")
    assert "fingers/toes, hand/foot" in episode
    assert "written" in episode
    assert "edited" in episode
