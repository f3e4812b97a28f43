"""The store keeps every record type exactly, and answers the history and daily-limit queries."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from drivers.base import Telemetry
from drivers.clock import VirtualClock
from tens_control.store import (
    Actor,
    AdverseKind,
    AmplitudeChanged,
    CallerRecord,
    CommandSent,
    DeviceReported,
    DiaryKind,
    EndReason,
    Fault,
    HabituationPrompt,
    InvalidRecordError,
    Note,
    PainContext,
    PainSite,
    RatingTime,
    Rejected,
    ScreeningOverride,
    Severity,
    StateChanged,
    Store,
    StoreError,
    UnknownPatientError,
    UnknownSessionError,
)
from tests.store_support import DEVICE, PLAN, T0, open_virtual, run_session


def test_every_record_type_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    store = open_virtual(path, clock)
    store.ensure_patient()
    rating = store.add_pain_rating(
        6, RatingTime.BEFORE, PainSite.RESIDUAL_LIMB, context=PainContext.MOVEMENT, note="walking"
    )
    skipped = store.add_pain_rating(None, RatingTime.BEFORE, PainSite.PHANTOM)
    peg = store.add_peg(5, None, 7)
    diary = store.add_diary_entry(
        DiaryKind.KETAMINE_INFUSION,
        T0 - timedelta(days=2),
        end=T0 - timedelta(days=2) + timedelta(hours=4),
        notes="0.5 mg/kg over 4 h",
    )
    episode = store.add_diary_entry(
        DiaryKind.PAIN_EPISODE, T0 - timedelta(hours=5), nrs=8, pain=PainSite.PHANTOM
    )
    rx1 = store.save_prescription('version = 1\nprograms = ["conventional"]\n', author="Dr A")
    rx2 = store.save_prescription(
        'version = 2\nprograms = ["burst"]\n', author="Dr A", reason="try burst"
    )
    override = ScreeningOverride(question="epilepsy", who="Dr A", at=T0, why="controlled, reviewed")
    screening = store.save_screening(
        {"pacemaker": False, "epilepsy": True}, recorded_by="nurse B", overrides=[override]
    )
    sid = store.begin_session(PLAN, device=DEVICE)
    adverse = store.add_adverse_event(
        AdverseKind.SKIN_REDNESS, Severity.MILD, session=sid, notes="under pad 1"
    )
    events: list[CallerRecord] = [
        StateChanged(from_state="ready", to_state="running", reason="start key"),
        CommandSent(command="AMP", channel=1, args={"ma": 1.0}),
        AmplitudeChanged(
            time=0.0, channel=1, from_ma=0.0, to_ma=1.0, who=Actor.PATIENT, why="up key"
        ),
        Rejected(
            time=0.0,
            command="AMP",
            parameter="amplitude_ma",
            value=45.0,
            limit=40.0,
            source="prescription",
            message="45 mA is above the prescription cap of 40 mA",
        ),
        Fault(fault="lead_off", channel=2, detail="impedance 9000 ohm"),
        DeviceReported(time=0.0, event="battery_low", detail="15 %"),
        HabituationPrompt(response="still_strong"),
        Note(text="patient comment", data={"words": ["tingling", "fine"]}),
    ]
    for event in events:
        store.append_event(sid, event)
    writer = store.telemetry_writer(sid)
    samples = [
        Telemetry(1.0, 1, 1.0, 0.98, 512.5),
        Telemetry(1.0, 2, 0.0, None, None),
        Telemetry(1.1, 1, 1.5, 1.51, 498.0),
    ]
    for sample in samples:
        writer.add(sample)
    clock.advance(1.0)
    store.end_session(sid, EndReason.STOPPED_BY_USER, detail="stop key")
    after = store.add_pain_rating(0, RatingTime.AFTER, PainSite.RESIDUAL_LIMB, session=sid)
    store.close()

    store = Store.open(path, recover=False)
    assert store.pain_ratings() == [rating, skipped, after]
    assert store.pain_ratings()[1].nrs is None  # skipped stays missing, never 0
    assert store.peg_scores() == [peg]
    assert store.peg_scores()[0].score is None
    assert store.diary_entries() == [diary, episode]
    assert store.prescriptions() == [rx1, rx2]
    assert store.latest_prescription() == rx2
    assert (rx1.version, rx2.version) == (1, 2)
    assert store.latest_screening() == screening
    assert store.adverse_events() == [adverse]
    assert store.adverse_events(session=sid) == [adverse]
    logged = [e.record for e in store.events(session=sid) if e.kind in {ev.kind for ev in events}]
    assert logged == events
    assert store.telemetry(sid) == samples
    info = store.session(sid)
    assert info.plan == PLAN
    assert info.device == DEVICE
    assert info.simulator is True
    assert info.started_at == T0
    assert info.end_reason is EndReason.STOPPED_BY_USER
    assert info.ratings == (after,)
    assert store.devices() == [DEVICE]
    assert store.verify().ok
    store.close()


@pytest.mark.parametrize("bad", [11, -1, 5.5, "7", True])
def test_ratings_outside_0_to_10_or_not_whole_numbers_are_refused(
    tmp_path: Path, bad: object
) -> None:
    with open_virtual(tmp_path / "log.sqlite3") as store:
        store.ensure_patient()
        with pytest.raises(InvalidRecordError, match="nrs"):
            store.add_pain_rating(bad, RatingTime.BEFORE, PainSite.PHANTOM)  # type: ignore[arg-type]
        assert store.pain_ratings() == []


def test_invalid_records_name_the_field(tmp_path: Path) -> None:
    with open_virtual(tmp_path / "log.sqlite3") as store:
        store.ensure_patient()
        with pytest.raises(InvalidRecordError, match="end"):
            store.add_diary_entry(DiaryKind.PAIN_EPISODE, T0, end=T0 - timedelta(hours=1))
        with pytest.raises(InvalidRecordError, match="enjoyment"):
            store.add_peg(1, 12, 3)
        with pytest.raises(InvalidRecordError, match="pseudonym"):
            store.ensure_patient("Jane Doe")
        with pytest.raises(UnknownPatientError, match="nobody"):
            store.add_pain_rating(3, RatingTime.DIARY, PainSite.OTHER, patient="nobody")
        with pytest.raises(UnknownSessionError):
            store.add_pain_rating(3, RatingTime.AFTER, PainSite.OTHER, session="0" * 32)
        with pytest.raises(StoreError, match="written by the store itself"):
            store.append_event(None, PLAN)  # type: ignore[call-overload]


def test_sessions_history_with_before_and_after_ratings(tmp_path: Path) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        first = run_session(store, clock)
        clock.advance(3600)
        second = run_session(store, clock)
        history = store.sessions()
        assert [s.uid for s in history] == [first, second]
        # the "before" rating is taken before the session exists, so only "after" is linked
        assert history[0].rating(RatingTime.AFTER) is not None
        assert history[0].rating(RatingTime.AFTER).nrs == 4  # type: ignore[union-attr]
        assert history[0].rating(RatingTime.BEFORE) is None
        assert history[0].minutes == pytest.approx(4.0 / 60, abs=1e-6)
        assert store.last_session() is not None
        assert store.last_session().uid == second  # type: ignore[union-attr]
        since = T0 + timedelta(minutes=30)
        assert [s.uid for s in store.sessions(since=since)] == [second]
        assert [s.uid for s in store.sessions(until=since)] == [first]


def test_daily_counts_and_minutes_use_the_local_day(tmp_path: Path) -> None:
    clock = VirtualClock()
    # session 1 on 2025-03-03 at 23:30 UTC = 2025-03-04 00:30 in UTC+1
    late = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN, at=late)
        store.end_session(sid, EndReason.COMPLETED, at=late + timedelta(minutes=20))
        sid2 = store.begin_session(PLAN, at=late + timedelta(hours=2))
        store.end_session(sid2, EndReason.LEAD_OFF, at=late + timedelta(hours=2, minutes=5))
        utc_plus_1 = timezone(timedelta(hours=1))
        assert store.sessions_today(day=date(2025, 3, 3), tz=UTC) == 1
        assert store.sessions_today(day=date(2025, 3, 4), tz=UTC) == 1
        assert store.sessions_today(day=date(2025, 3, 4), tz=utc_plus_1) == 2
        assert store.minutes_today(day=date(2025, 3, 4), tz=utc_plus_1) == pytest.approx(25.0)
        assert store.minutes_today(day=date(2025, 3, 3), tz=UTC) == pytest.approx(20.0)


def test_an_unfinished_session_counts_up_to_now(tmp_path: Path) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        store.ensure_patient()
        store.begin_session(PLAN)
        clock.advance(600)
        assert store.minutes_today(day=T0.date(), tz=UTC) == pytest.approx(10.0)


def test_events_can_be_filtered_by_kind_and_time(tmp_path: Path) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        sid = run_session(store, clock)
        amps = store.events(kinds=["amplitude_changed"])
        assert [e.record for e in amps] == [
            AmplitudeChanged(
                time=0.0,
                channel=1,
                from_ma=float(i),
                to_ma=float(i + 1),
                who=Actor.PATIENT,
                why="up",
            )
            for i in range(4)
        ]
        assert all(e.session == sid for e in amps)
        assert store.events(since=T0 + timedelta(hours=1)) == []
        seqs = [e.seq for e in store.events()]
        assert seqs == sorted(seqs)


def test_the_default_patient_and_the_current_patient(tmp_path: Path) -> None:
    with open_virtual(tmp_path / "log.sqlite3") as store:
        assert store.current_patient() is None
        with pytest.raises(UnknownPatientError, match="no patients"):
            store.pick_patient()
        store.ensure_patient("p-42")
        assert store.pick_patient().pseudonym == "p-42"  # the only one
        store.ensure_patient()
        assert store.pick_patient().pseudonym == "patient-1"  # the configured default
        store.ensure_patient("p-43")
        assert store.pick_patient("p-43").pseudonym == "p-43"


def test_the_default_patient_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENS_CONTROL_PATIENT", "home-7")
    with open_virtual(tmp_path / "log.sqlite3") as store:
        assert store.ensure_patient().pseudonym == "home-7"
        assert store.default_patient == "home-7"


def test_two_threads_log_to_one_store_without_losing_or_forking_anything(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "log.sqlite3")
    try:
        store.ensure_patient()
        sid = store.begin_session(PLAN, device=DEVICE)
        writer = store.telemetry_writer(sid)
        errors: list[BaseException] = []

        def controller() -> None:
            try:
                for i in range(150):
                    store.append_event(
                        sid,
                        AmplitudeChanged(
                            time=0.0,
                            channel=1,
                            from_ma=i,
                            to_ma=i + 1,
                            who=Actor.SYSTEM,
                            why="ramp",
                        ),
                    )
                    writer.add(Telemetry(float(i), 1, float(i), float(i), 500.0))
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        def ui() -> None:
            try:
                for i in range(60):
                    store.add_pain_rating(i % 11, RatingTime.DURING, PainSite.PHANTOM, session=sid)
                    store.append_event(sid, Note(text=f"ui {i}"), safety=False)
                    store.sessions()
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=controller), threading.Thread(target=ui)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        store.end_session(sid, EndReason.COMPLETED)
        assert len(store.events(kinds=["amplitude_changed"])) == 150
        assert len(store.events(kinds=["note"])) == 60
        assert len(store.pain_ratings()) == 60
        assert len(store.telemetry(sid)) == 150
        report = store.verify()
        assert report.ok, report.summary()
        assert report.telemetry_rows == 150
    finally:
        store.close()


def test_a_read_snapshot_for_bulk_queries(tmp_path: Path) -> None:
    from sqlalchemy import func, select

    from tens_control.store import schema

    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        run_session(store, clock)
        with store.reading() as conn:
            n = conn.execute(select(func.count()).select_from(schema.telemetry)).scalar()
        assert n == 80
