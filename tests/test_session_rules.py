"""Session preconditions and schedule: prescription and over-the-counter limits, daily limits,
the contraindication gate and its override, electrode sites, the habituation prompt, ratings,
crash recovery and the non-blocking emergency stop."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.clock import RealClock
from tens_control.pain import PainRatingError
from tens_control.prescription import PrescriptionError
from tens_control.screening import Question
from tens_control.screening import ScreeningOverride as Override
from tens_control.session import (
    EndedUpdate,
    HabituationDue,
    PreconditionError,
    SessionController,
    SessionState,
)
from tens_control.sites import DEFAULT_PAD, Site
from tens_control.store.records import (
    AmplitudeChanged,
    EndReason,
    HabituationPrompt,
    Note,
    PainSite,
    RatingTime,
    Rejected,
    ScreeningOverride,
)
from tens_control.store.store import Store
from tens_control.trust.check import InForce
from tests.session_support import START, make_rig, prescription, wrapped_opener, zero_within
from tests.trust_support import clinician, enrolment, pin

NOT_A_SIMULATOR = wrapped_opener("sim://tsp", is_simulator=False)


def _rejections(rig_records: Sequence[object]) -> list[Rejected]:
    return [r for r in rig_records if isinstance(r, Rejected)]


# --------------------------------------------------------------------------- over the counter


def test_over_the_counter_defaults_30_minutes_and_3_sessions_a_day(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        c = rig.c
        c.connect("sim://tsp")
        assert c.prescription.is_over_the_counter
        assert c.snapshot().prescription_version is None
        assert {p.name for p in c.available_programs()} >= {"conventional", "burst"}
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 31)
        assert error.value.check == "session length"
        assert "30-minute" in str(error.value)
        snap = c.prepare("conventional")
        assert snap.planned_s == 30 * 60.0
        c.stop()
        sessions = [rig.run_session(minutes=0.2) for _ in range(3)]
        c.finish()
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 0.2)
        assert error.value.check == "daily limit"
        assert "3 of 3" in str(error.value)
        refused = _rejections(rig.records("rejected"))
        assert refused[-1].parameter == "daily limit"
        plan = rig.store.session(sessions[0]).plan
        assert plan.prescription_version is None
        assert plan.channels[0].area_cm2 == DEFAULT_PAD.area_cm2
        notes = [r.text for r in rig.records("note", sessions[0]) if isinstance(r, Note)]
        assert any("over-the-counter" in n for n in notes)
        # the next day the limit is fresh
        c.disconnect()
        rig.advance(24 * 3600)
        c.connect("sim://tsp")
        c.prepare("conventional", 0.2)
    finally:
        rig.close()


# --------------------------------------------------------------------------- prescription


def test_prescribed_daily_minutes_and_minimum_gap(tmp_path: Path) -> None:
    rx = prescription(session_minutes=10, minutes_per_day=15, min_gap_minutes=30)
    rig = make_rig(tmp_path, rx=rx)
    try:
        c = rig.c
        c.connect("sim://tsp")
        assert c.snapshot().prescription_version == 1
        first = rig.run_session(minutes=10)
        c.finish()
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 5)
        assert error.value.check == "daily limit"
        assert "too soon" in str(error.value)
        rig.advance(30 * 60)
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 10)
        assert "only 5 of the 15 minutes" in str(error.value)
        c.prepare("conventional", 5)
        assert c.snapshot().state is SessionState.READY
        info = rig.store.session(first)
        assert info.plan.prescription_version == 1
        assert next(ch.site for ch in info.plan.channels).startswith("left residual limb")
        assert info.plan.channels[0].cap_ma == 40.0
    finally:
        rig.close()


def test_prescription_caps_and_pads_feed_the_governor(tmp_path: Path) -> None:
    rx = prescription(
        max_amplitude_ma=30.0,
        channels=[
            {"channel": 1, "site": "residual_limb", "pad": "5x5 cm", "max_amplitude_ma": 12.0},
        ],
    )
    rig = make_rig(tmp_path, rx=rx)
    try:
        c = rig.c
        c.connect("sim://tsp")
        snap = c.prepare("conventional", 5)
        assert [ch.channel for ch in snap.channels if ch.active] == [1]
        ch1 = snap.channel(1)
        assert ch1.cap_ma == 12.0
        assert ch1.cap_source.value == "prescription"
        c.start()
        assert not c.set_target(2, 1.0).accepted  # channel 2 is not prescribed
        assert c.set_target(1, 12.0).accepted
        assert not c.increase(1).accepted
        rig.advance(20)
        assert rig.record.max_level(1) == 12.0
        assert rig.record.max_level(2) == 0.0
    finally:
        rig.close()


def test_a_stored_prescription_with_a_refused_site_blocks_connecting(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        text = (
            'written_by = "Dr X"\nwritten_at = 2026-03-01T09:00:00Z\nreason = "test"\n'
            'programs = ["conventional"]\nsession_minutes = 20\n'
            '[[channels]]\nchannel = 1\nsite = "front_of_neck"\npad = "5x5 cm"\n'
        )
        rig.store.save_prescription(text, author="Dr X")
        with pytest.raises(PrescriptionError) as error:
            rig.c.connect("sim://tsp")
        assert "front of the neck" in str(error.value)
        assert rig.c.snapshot().state is SessionState.IDLE
    finally:
        rig.close()


def test_the_controller_refuses_a_refused_site_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(tmp_path, rx=prescription())
    try:
        rig.c.connect("sim://tsp")
        good = rig.c.prescription
        bad_channel = good.channels[0].model_copy(update={"site": Site.HEAD})
        bad = good.model_copy(update={"channels": (bad_channel, good.channels[1])})
        monkeypatch.setattr(rig.c, "_load_prescription", lambda: bad)
        # past the trust check too (it would refuse a prescription that is not the stored one)
        monkeypatch.setattr(
            "tens_control.session.check_before_session",
            lambda store, patient, rx, profile, now: InForce(rx, "self-managed"),
        )
        with pytest.raises(PreconditionError) as error:
            rig.c.prepare("conventional", 5)
        assert error.value.check == "electrode site"
        assert "head" in str(error.value)
        assert rig.sim.firmware.configured_channels() == []
    finally:
        rig.close()


# --------------------------------------------------------------------------- screening


def test_a_real_device_needs_the_screening(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, opener=NOT_A_SIMULATOR)
    try:
        c = rig.c
        c.connect()
        assert not c.snapshot().device.is_simulator  # type: ignore[union-attr]
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 1)
        assert error.value.check == "screening"
        assert "tens-control screening" in str(error.value)
        answers = {q.value: False for q in Question}
        answers[Question.ACTIVE_IMPLANT.value] = True
        rig.store.save_screening(answers, recorded_by="patient")
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 1)
        assert "pacemaker" in str(error.value)
        assert rig.sim.firmware.configured_channels() == []
        unsigned = Override(
            question=Question.ACTIVE_IMPLANT,
            who="Dr A. Cardiologist",
            at=datetime(2026, 3, 2, 7, 0, tzinfo=UTC),
            why="implant is MRI-safe spinal stimulator switched off; pads far from it",
        )
        # an override anyone could have typed does not unblock stimulation
        rig.store.save_screening(answers, recorded_by="patient", overrides=[_stored(unsigned)])
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 1)
        assert "not enrolled with a clinic" in str(error.value)
        # once enrolled, an override signed by a pinned key does
        key = clinician("Dr A. Cardiologist")
        pin(rig.store, enrolment(rig.c.patient, key))
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 1)
        assert "does not count: it is not signed" in str(error.value)
        signed_override = unsigned.signed(key, rig.c.patient, at=unsigned.at)
        rig.store.save_screening(
            answers, recorded_by="patient", overrides=[_stored(signed_override)]
        )
        session = rig.run_session(minutes=0.2)
        notes = [r.text for r in rig.records("note", session) if isinstance(r, Note)]
        assert any("Dr A. Cardiologist" in n for n in notes)
        plan = rig.store.session(session).plan
        assert plan.screening is not None
        assert rig.record.max_level(1) > 0  # the simulator delivered the session
        refused = [r.parameter for r in _rejections(rig.records("rejected"))]
        assert refused == ["screening"] * 4
    finally:
        rig.close()


def _stored(override: Override) -> ScreeningOverride:
    return ScreeningOverride.model_validate(override.model_dump(mode="json"))


def test_the_simulator_runs_without_screening_and_the_log_says_so(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.c.connect("sim://tsp")
        session = rig.run_session(minutes=0.2)
        notes = [r.text for r in rig.records("note", session) if isinstance(r, Note)]
        assert "simulator: running without contraindication screening" in notes
        assert rig.store.session(session).simulator
        banners = {m.key: m.text for m in rig.c.snapshot().banners}
        assert "no stimulation is delivered" in banners["simulator"]
    finally:
        rig.close()


# --------------------------------------------------------------------------- habituation


def test_habituation_prompts_on_stimulation_time_and_answers_are_logged(tmp_path: Path) -> None:
    rx = prescription(habituation_prompt=True, habituation_prompt_minutes=5)
    rig = make_rig(tmp_path, rx=rx)
    try:
        c = rig.c
        c.connect("sim://tsp")
        c.prepare("conventional", 18)
        c.start()
        t0 = rig.clock.now()
        session = c.snapshot().session_id
        assert c.set_target(1, 4.0).accepted
        rig.advance(5 * 60 + 1)
        assert c.snapshot().habituation_pending
        c.answer_habituation(True)
        rig.advance(60)
        c.pause()
        rig.advance(120)  # pauses do not count
        c.resume()
        rig.advance(5 * 60)
        assert c.snapshot().habituation_pending
        c.answer_habituation(False)
        assert c.increase(1).accepted
        rig.advance(18 * 60)
        assert c.snapshot().state is SessionState.ENDED
        due = [u for u in rig.updates if isinstance(u, HabituationDue)]
        assert [u.number for u in due] == [1, 2, 3]
        assert [round(u.time - t0) for u in due] == [300, 720, 1020]
        responses = [
            r.response
            for r in rig.records("habituation_prompt", session)
            if isinstance(r, HabituationPrompt)
        ]
        assert responses == [
            "asked",
            "yes: still strong but comfortable",
            "asked",
            "no: not strong enough any more",
            "asked",
            "no answer",
        ]
        adjusted = [
            r for r in rig.records("amplitude_changed", session) if isinstance(r, AmplitudeChanged)
        ]
        assert any("habituation adjustment" in r.why for r in adjusted)
    finally:
        rig.close()


def test_habituation_prompt_off(tmp_path: Path) -> None:
    rx = prescription(habituation_prompt=False, habituation_prompt_minutes=5)
    rig = make_rig(tmp_path, rx=rx)
    try:
        rig.c.connect("sim://tsp")
        session = rig.run_session(minutes=11)
        assert not any(isinstance(u, HabituationDue) for u in rig.updates)
        assert rig.records("habituation_prompt", session) == []
    finally:
        rig.close()


# --------------------------------------------------------------------------- ratings, notes


def test_ratings_link_to_the_session_and_bad_ratings_are_refused(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        c = rig.c
        c.connect("sim://tsp")
        for bad in (11, -1):
            with pytest.raises(PainRatingError):
                c.record_pain(bad)
        c.prepare("conventional", 0.2)
        c.record_pain(7, pain=PainSite.PHANTOM)
        c.record_pain(None, pain=PainSite.RESIDUAL_LIMB)  # skipped: missing, not 0
        c.start()
        session = c.snapshot().session_id
        assert session is not None
        rig.advance(13)
        c.record_pain(4, when=RatingTime.AFTER)
        c.add_note("tingling faded after 5 minutes")
        c.record_adverse_event("skin_redness", "mild", "under pad 1")
        info = rig.store.session(session)
        before = info.rating(RatingTime.BEFORE)
        assert before is not None
        assert before.nrs == 7
        missing = info.rating(RatingTime.BEFORE, PainSite.RESIDUAL_LIMB)
        assert missing is not None
        assert missing.nrs is None
        after = info.rating(RatingTime.AFTER)
        assert after is not None
        assert after.nrs == 4
        assert len(rig.store.pain_ratings()) == 3
        assert rig.store.adverse_events(session=session)[0].notes == "under pad 1"
        notes = [r.text for r in rig.records("note", session) if isinstance(r, Note)]
        assert "tingling faded after 5 minutes" in notes
    finally:
        rig.close()


# --------------------------------------------------------------------------- crash recovery


def test_an_unfinished_session_is_closed_as_host_crash_at_the_next_start(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.c.connect("sim://tsp")
    rig.c.prepare("conventional", 5)
    rig.c.start()
    session = rig.c.snapshot().session_id
    assert session is not None
    assert rig.c.set_target(1, 3.0).accepted
    rig.advance(3)
    # the host "dies": its database handle is gone and the cable is pulled, so nothing ends
    # the session and no STOP reaches the device; the device's own watchdog zeroes the output
    rig.store.close()
    t = rig.clock.now()
    port = rig.opened[-1].port
    assert port is not None
    port.close()
    rig.advance(1.5)
    assert zero_within(rig.record, t, 1.05)

    clock2 = rig.clock
    store2 = Store.open(tmp_path / "tens.sqlite3", clock=clock2, recover=False)
    try:
        controller = SessionController(store2, clock2)
        assert controller.recovered_sessions == (session,)
        assert store2.session(session).end_reason is EndReason.HOST_CRASH
        assert "recovered" in {m.key for m in controller.snapshot().banners}
        assert store2.integrity_check() == "ok"
        assert store2.verify().ok
        controller.close()
    finally:
        store2.close()


# --------------------------------------------------------------------------- real time


def test_emergency_stop_does_not_wait_for_the_log(tmp_path: Path) -> None:
    """Real clock, log on its own thread: while the database is held by someone else, an
    emergency stop still returns and the device goes to 0; the log catches up afterwards."""
    clock = RealClock()
    store = Store.open(tmp_path / "tens.sqlite3", clock=clock)
    controller = SessionController(store, clock)
    opened = []
    try:
        controller.connect("sim://tsp")
        opened.append(controller.device)
        controller.prepare("conventional", 1)
        controller.start()
        session = controller.snapshot().session_id
        assert session is not None
        assert controller.set_target(1, 1.0).accepted
        device = controller.device
        assert device is not None
        assert device.port is not None
        sim = device.port.device  # type: ignore[attr-defined]
        assert clock.wait_until(lambda: sim.record.level_at(1, clock.now()) == 1.0, 5.0)
        ended: list[EndedUpdate] = []
        controller.add_listener(lambda u: ended.append(u) if isinstance(u, EndedUpdate) else None)
        holding = threading.Event()
        release = threading.Event()

        def hold_database() -> None:
            with store._write_lock:
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold_database)
        holder.start()
        assert holding.wait(5)
        controller.emergency_stop()  # returns although no log record can be written now
        assert clock.wait_until(lambda: sim.record.level_at(1, clock.now()) == 0.0, 5.0)
        assert ended == []  # not acknowledged before it is logged
        release.set()
        holder.join(10)
        assert clock.wait_until(lambda: bool(ended), 10.0)
        assert ended[0].reason is EndReason.EMERGENCY_STOP
        assert store.session(session).end_reason is EndReason.EMERGENCY_STOP
    finally:
        controller.close()
        store.close()
        clock.close()


def test_snapshot_is_immutable_and_listener_errors_do_not_break_the_session(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    try:

        def broken(_update: object) -> None:
            raise RuntimeError("UI bug")

        rig.c.add_listener(broken)
        rig.c.connect("sim://tsp")
        snap = rig.c.snapshot()
        with pytest.raises(dataclasses.FrozenInstanceError):
            snap.state = SessionState.RUNNING  # type: ignore[misc]
        session = rig.run_session(minutes=0.2)
        assert rig.store.session(session).end_reason is EndReason.COMPLETED
        assert rig.clock.now() > 0
        assert START.tzinfo is not None
    finally:
        rig.close()
