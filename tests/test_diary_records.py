"""The diary's versioned records: write, edit, delete, backdate; sleep, mood, medication and
the body map (tens_control.diary, records DiaryWritten/DiaryRevised/DiaryRetracted)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.clock import VirtualClock
from tens_control import diary
from tens_control.pain import BodyRegion
from tens_control.store import verify_bundle
from tens_control.store.records import DiaryItem, DiaryKind, PainSite
from tests.store_support import T0, open_virtual


def episode(**fields: object) -> DiaryItem:
    base: dict[str, object] = {
        "kind": DiaryKind.PAIN_EPISODE,
        "start": T0 - timedelta(hours=2),
        "written_at": T0,
        "pain": PainSite.PHANTOM,
        "nrs": 7,
        "regions": (BodyRegion.PHANTOM_DIGITS,),
        "notes": "burning toes",
    }
    return DiaryItem.model_validate(base | fields)


def test_an_edit_supersedes_and_a_delete_retracts_but_the_history_stays(tmp_path: Path) -> None:
    store = open_virtual(tmp_path / "log.sqlite3", VirtualClock())
    store.ensure_patient()
    first = diary.write(store, episode())
    other = diary.write(store, episode(start=T0 - timedelta(hours=1), nrs=3, notes="cramp"))
    edited = first.model_copy(
        update={"nrs": 5, "notes": "burning toes, less", "written_at": T0 + timedelta(hours=1)}
    )
    diary.revise(store, edited, reason="I misremembered")
    diary.retract(store, other.uid, T0 + timedelta(hours=2), reason="written twice")

    every = diary.histories(store)
    assert [h.uid for h in every] == [first.uid, other.uid]
    kept, gone = every
    assert kept.current.nrs == 5
    assert kept.edited
    assert not kept.retracted
    assert [v.nrs for v in kept.versions] == [7, 5]
    assert kept.reasons == ("I misremembered",)
    assert kept.first_written == T0
    assert gone.retracted
    assert gone.retracted_at == T0 + timedelta(hours=2)
    assert gone.retract_reason == "written twice"
    assert [h.uid for h in diary.current(store)] == [first.uid]

    # nothing was rewritten: the chain verifies, and a deleted entry cannot be edited
    assert store.verify().ok
    with pytest.raises(diary.DiaryError, match="deleted"):
        diary.revise(store, other.model_copy(update={"nrs": 1}))
    with pytest.raises(diary.DiaryError, match="kind"):
        diary.revise(store, first.model_copy(update={"kind": DiaryKind.OTHER}))


def test_backdating_keeps_both_times_and_is_limited_to_seven_days(tmp_path: Path) -> None:
    store = open_virtual(tmp_path / "log.sqlite3", VirtualClock())
    store.ensure_patient()
    six_days = diary.write(store, episode(start=T0 - timedelta(days=6)))
    (h,) = diary.histories(store)
    assert h.current.start == T0 - timedelta(days=6)
    assert h.current.written_at == T0
    with pytest.raises(diary.DiaryError, match="7 days"):
        diary.write(store, episode(start=T0 - timedelta(days=7, minutes=1)))
    with pytest.raises(diary.DiaryError, match="future"):
        diary.write(store, episode(start=T0 + timedelta(hours=1)))
    # an edit written later may keep, or move, the date within 7 days of the first writing
    later = T0 + timedelta(days=3)
    diary.revise(store, six_days.model_copy(update={"written_at": later, "nrs": 2}))
    with pytest.raises(diary.DiaryError, match="7 days"):
        diary.revise(
            store,
            six_days.model_copy(
                update={"written_at": later, "start": T0 - timedelta(days=7, hours=1)}
            ),
        )
    assert [h.current.nrs for h in diary.histories(store)] == [2]


def test_sleep_mood_and_medication_are_typed_records() -> None:
    sleep = DiaryItem(
        kind=DiaryKind.SLEEP, start=T0, written_at=T0, sleep_hours=6.5, sleep_quality=4
    )
    assert sleep.sleep_hours == 6.5
    dose = DiaryItem(
        kind=DiaryKind.MEDICATION_TAKEN,
        start=T0 - timedelta(hours=1),
        written_at=T0,
        medication="gabapentin",
        dose="300 mg",
    )
    assert dose.medication == "gabapentin"
    with pytest.raises(ValidationError, match="mood"):
        DiaryItem(kind=DiaryKind.MOOD, start=T0, written_at=T0)
    with pytest.raises(ValidationError, match="name"):
        DiaryItem(kind=DiaryKind.MEDICATION_TAKEN, start=T0, written_at=T0, dose="1 tablet")
    with pytest.raises(ValidationError, match="hours slept"):
        DiaryItem(kind=DiaryKind.SLEEP, start=T0, written_at=T0)
    with pytest.raises(ValidationError, match="do not belong"):
        DiaryItem(kind=DiaryKind.MOOD, start=T0, written_at=T0, mood=5, nrs=3)
    with pytest.raises(ValidationError, match="do not belong"):
        DiaryItem(
            kind=DiaryKind.SLEEP,
            start=T0,
            written_at=T0,
            sleep_quality=3,
            regions=(BodyRegion.STUMP_END,),
        )
    with pytest.raises(ValidationError):
        DiaryItem(kind=DiaryKind.SLEEP, start=T0, written_at=T0, sleep_hours=25)
    with pytest.raises(ValidationError):  # frozen, extra="forbid"
        DiaryItem.model_validate(
            {"kind": "mood", "start": T0, "written_at": T0, "mood": 5, "colour": "blue"}
        )


def test_old_table_entries_are_first_versions_and_can_be_edited(tmp_path: Path) -> None:
    store = open_virtual(tmp_path / "log.sqlite3", VirtualClock())
    store.ensure_patient()
    old = store.add_diary_entry(
        DiaryKind.PAIN_EPISODE, T0 - timedelta(hours=3), nrs=8, pain=PainSite.RESIDUAL_LIMB
    )
    (h,) = diary.histories(store)
    assert h.uid == old.uid
    assert h.current.nrs == 8
    assert h.current.written_at == T0
    revised = h.current.model_copy(
        update={"nrs": 6, "regions": (BodyRegion.STUMP_SCAR,), "written_at": T0}
    )
    diary.revise(store, revised)
    (h,) = diary.histories(store)
    assert h.current.regions == (BodyRegion.STUMP_SCAR,)
    assert h.edited


def test_the_versions_travel_in_an_export_bundle(tmp_path: Path) -> None:
    store = open_virtual(tmp_path / "a.sqlite3", VirtualClock())
    store.ensure_patient("p1")
    item = diary.write(store, episode(), patient="p1")
    diary.revise(store, item.model_copy(update={"nrs": 4}), patient="p1")
    bundle = store.export_patient("p1")
    assert verify_bundle(bundle).ok
    other = open_virtual(tmp_path / "b.sqlite3", VirtualClock())
    other.import_bundle(bundle)
    (h,) = diary.histories(other, "p1")
    assert [v.nrs for v in h.versions] == [7, 4]
