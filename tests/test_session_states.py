"""The session state machine in virtual time: every transition and every end reason, asserted on
what the simulator DELIVERED and on the stored log."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.base import ErrorCode
from drivers.safety import (
    CommsLost,
    DeviceRejected,
    EmergencyStop,
    LeadOff,
    OutputMismatch,
    Stopped,
    StopReason,
)
from tens_control.session import (
    BannerCleared,
    EndedUpdate,
    MessageUpdate,
    PreconditionError,
    SessionState,
    SessionStateError,
)
from tens_control.store.records import (
    AmplitudeChanged,
    EndReason,
    Rejected,
)
from tests.session_support import (
    Rig,
    limits,
    make_rig,
    prescription,
    wrapped_opener,
    zero_within,
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = make_rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def _running(rig: Rig, target: float = 6.0, minutes: float = 10.0) -> str:
    rig.c.connect("sim://tsp")
    rig.c.prepare("conventional", minutes)
    rig.c.start()
    session = rig.c.snapshot().session_id
    assert session is not None
    assert rig.c.set_target(1, target).accepted
    rig.advance(target / 2.0 + 1.0)  # 2 mA/s ramp
    assert rig.record.level_at(1, rig.clock.now()) == target
    return session


def _end_reason(rig: Rig, session: str) -> EndReason | None:
    return rig.store.session(session).end_reason


def test_every_transition_of_a_completed_session(rig: Rig) -> None:
    c = rig.c
    assert c.snapshot().state is SessionState.IDLE
    c.connect("sim://tsp")
    assert c.snapshot().state is SessionState.CONNECTED
    c.prepare("conventional", 1)
    assert c.snapshot().state is SessionState.READY
    assert c.snapshot().remaining_s == 60.0
    c.start()
    assert c.snapshot().state is SessionState.RUNNING
    session = c.snapshot().session_id
    assert session is not None
    assert rig.record.max_level() == 0.0  # S1: starts at zero
    assert c.set_target(1, 4.0).accepted
    rig.advance(30)
    c.pause()
    assert c.snapshot().state is SessionState.PAUSED
    c.resume()
    assert c.snapshot().state is SessionState.RUNNING
    rig.advance(31)
    snap = c.snapshot()
    assert snap.state is SessionState.ENDED
    assert snap.end_reason is EndReason.COMPLETED
    c.finish()
    assert c.snapshot().state is SessionState.CONNECTED
    assert rig.states() == [
        ("idle", "connected"),
        ("connected", "ready"),
        ("ready", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "ended"),
        ("ended", "connected"),
    ]
    assert rig.state_updates() == [
        SessionState.CONNECTED,
        SessionState.READY,
        SessionState.RUNNING,
        SessionState.PAUSED,
        SessionState.RUNNING,
        SessionState.ENDED,
        SessionState.CONNECTED,
    ]
    info = rig.store.session(session)
    assert info.end_reason is EndReason.COMPLETED
    assert info.minutes is not None
    assert info.minutes == pytest.approx(1.0 + 0.0, abs=0.05)
    # the device delivered nothing after the planned stimulation time (60 s + the pause)
    ended = next(e for e in rig.events(session) if e.kind == "session_ended")
    assert ended.mono_time is not None
    assert rig.record.max_between(1, ended.mono_time + 0.01, rig.clock.now()) == 0.0
    assert rig.record.max_level(1) == 4.0
    assert rig.record.max_level(2) == 0.0
    # the ramp: no step above 1 mA, never faster than 2 mA/s
    steps = [(t, a, b) for t, a, b in rig.record.steps(1) if b > a]
    assert all(b - a <= 1.0 + 1e-9 for _, a, b in steps)
    assert all(t2 - t1 >= 0.5 - 1e-6 for (t1, _, _), (t2, _, _) in itertools.pairwise(steps))
    assert rig.store.verify().ok


def test_every_amplitude_change_is_logged_before_it_is_acknowledged(rig: Rig) -> None:
    session = _running(rig, target=3.0)
    changes = [r for r in rig.records("amplitude_changed", session)]
    assert [(r.from_ma, r.to_ma) for r in changes if isinstance(r, AmplitudeChanged)] == [
        (0.0, 1.0),
        (1.0, 2.0),
        (2.0, 3.0),
    ]
    delivered = [d.ma for d in rig.record.changes(1) if d.ma > 0]
    assert delivered == [1.0, 2.0, 3.0]
    # every listener update arrived after its log record was committed
    seen: list[bool] = []

    def check(update: object) -> None:
        if isinstance(update, EndedUpdate):
            seen.append(rig.store.session(session).end_reason is not None)

    rig.c.add_listener(check)
    rig.c.stop()
    assert seen == [True]


def test_user_stop(rig: Rig) -> None:
    session = _running(rig)
    t = rig.clock.now()
    rig.c.stop()
    assert rig.c.snapshot().state is SessionState.ENDED
    assert _end_reason(rig, session) is EndReason.STOPPED_BY_USER
    rig.advance(0.1)
    assert zero_within(rig.record, t, 0.01)
    (stopped,) = [r for r in rig.records("stopped", session) if isinstance(r, Stopped)]
    assert stopped.reason is StopReason.USER


def test_emergency_stop_zero_within_50_ms_and_never_waits(rig: Rig) -> None:
    session = _running(rig, target=8.0)
    t = rig.clock.now()
    rig.c.emergency_stop()
    # it waited for nothing: no virtual time passed inside the call
    assert rig.clock.now() == t
    rig.advance(0.05)
    assert zero_within(rig.record, t, 0.05)
    assert rig.c.snapshot().state is SessionState.ENDED
    assert rig.c.snapshot().end_reason is EndReason.EMERGENCY_STOP
    assert _end_reason(rig, session) is EndReason.EMERGENCY_STOP
    assert [r for r in rig.records("emergency_stop", session) if isinstance(r, EmergencyStop)]
    # idempotent, and harmless without a session
    rig.c.emergency_stop()
    rig.c.finish()
    rig.c.emergency_stop()


def test_pause_zeroes_output_and_resume_starts_from_zero(rig: Rig) -> None:
    _running(rig, target=6.0)
    t = rig.clock.now()
    rig.c.pause()
    rig.advance(5)
    assert zero_within(rig.record, t, 0.01)
    assert rig.record.max_between(1, t + 0.01, rig.clock.now()) == 0.0
    refused = rig.c.increase(1)
    assert not refused.accepted
    assert refused.message is not None
    assert "resume" in refused.message
    t_resume = rig.clock.now()
    rig.c.resume()
    rig.advance(3)
    # S1: the previous 6 mA is not restored
    assert rig.record.max_between(1, t_resume, rig.clock.now()) == 0.0
    assert rig.c.snapshot().channel(1).target_ma == 0.0
    assert rig.c.increase(1).accepted
    rig.advance(1)
    first = next(d for d in rig.record.changes(1) if d.time >= t_resume and d.ma > 0)
    assert first.ma <= 1.0


def test_lead_off_pauses_with_instructions_and_resume_starts_from_zero(rig: Rig) -> None:
    session = _running(rig, target=6.0)
    t = rig.clock.now()
    rig.sim.inject("leadoff", channel=1)
    rig.advance(0.2)
    snap = rig.c.snapshot()
    assert snap.state is SessionState.PAUSED
    assert snap.paused_for_lead_off
    assert zero_within(rig.record, t, 0.1)
    banner = {m.key: m for m in snap.banners}["lead-off"]
    assert "channel 1" in banner.text
    assert "resume" in banner.text
    assert "pads" in banner.text  # says what to do
    faults = [r for r in rig.records("lead_off", session) if isinstance(r, LeadOff)]
    assert faults[0].channel == 1
    # while the electrode is still off, resume is refused (the alarm stays)
    with pytest.raises(SessionStateError, match="still off the skin"):
        rig.c.resume()
    assert rig.c.snapshot().state is SessionState.PAUSED
    assert "lead-off" in {m.key for m in rig.c.snapshot().banners}
    # the electrode goes back on (the device reports it); resume starts from 0
    rig.sim.inject("leadon", channel=1)
    rig.advance(0.2)
    t_resume = rig.clock.now()
    rig.c.resume()
    assert any(isinstance(u, BannerCleared) and u.key == "lead-off" for u in rig.updates)
    rig.advance(2)
    assert rig.c.snapshot().state is SessionState.RUNNING
    assert rig.record.max_between(1, t_resume, rig.clock.now()) == 0.0
    assert rig.c.increase(1).accepted
    rig.advance(1)
    assert 0.0 < rig.record.level_at(1, rig.clock.now()) <= 1.0
    assert rig.states()[-2:] == [("running", "paused"), ("paused", "running")]


def test_lead_off_not_resumed_ends_the_session_as_lead_off(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, lead_off_timeout_s=120.0)
    try:
        session = _running(rig)
        rig.sim.inject("leadoff", channel=2)
        rig.advance(119)
        assert rig.c.snapshot().state is SessionState.PAUSED
        rig.advance(2)
        assert rig.c.snapshot().state is SessionState.ENDED
        assert _end_reason(rig, session) is EndReason.LEAD_OFF
        assert rig.record.max_between(1, rig.clock.now() - 120, rig.clock.now()) == 0.0
    finally:
        rig.close()


def test_comms_lost_ends_the_session_and_the_device_zeroes_itself(rig: Rig) -> None:
    session = _running(rig, target=6.0)
    t = rig.clock.now()
    rig.sim.inject("disconnect")
    rig.advance(2.0)
    assert rig.c.snapshot().state is SessionState.ENDED
    assert _end_reason(rig, session) is EndReason.COMMS_LOST
    # the host cannot reach it: the device's own watchdog (1 s) zeroes the output
    assert zero_within(rig.record, t, 1.0 + 0.05)
    assert "comms-lost" in {m.key for m in rig.c.snapshot().banners}
    assert [r for r in rig.records("comms_lost", session) if isinstance(r, CommsLost)]
    # the device is gone: finishing goes back to idle, never to stimulation
    rig.c.finish()
    assert rig.c.snapshot().state is SessionState.IDLE
    with pytest.raises(SessionStateError):
        rig.c.prepare("conventional", 1)


def test_comms_lost_when_the_device_stops_answering(rig: Rig) -> None:
    session = _running(rig, target=4.0)
    t = rig.clock.now()
    rig.sim.inject("mute")
    rig.advance(2.5)
    assert _end_reason(rig, session) is EndReason.COMMS_LOST
    assert zero_within(rig.record, t, 1.0 + 0.05)


def test_device_fault(rig: Rig) -> None:
    session = _running(rig)
    t = rig.clock.now()
    rig.sim.inject("fault", code="overheat")
    rig.advance(0.1)
    assert _end_reason(rig, session) is EndReason.DEVICE_FAULT
    assert zero_within(rig.record, t, 0.01)
    reported = rig.records("device_event", session)
    assert reported, "the device's fault report is logged"
    ended = rig.c.snapshot().banners
    assert any("fault" in m.text for m in ended if m.key == "ended")


def test_device_reset_is_a_device_fault(rig: Rig) -> None:
    session = _running(rig)
    rig.sim.inject("reset")
    rig.advance(0.1)
    assert _end_reason(rig, session) is EndReason.DEVICE_FAULT


def test_stuck_output_is_an_output_mismatch(rig: Rig) -> None:
    session = _running(rig, target=8.0)
    rig.sim.inject("stuck", channel=1)
    t = rig.clock.now()
    assert rig.c.set_target(1, 2.0).accepted  # the stuck stage ignores the decrease
    rig.advance(1.0)
    assert _end_reason(rig, session) is EndReason.OUTPUT_MISMATCH
    assert zero_within(rig.record, t, 0.5)
    faults = [r for r in rig.records("output_mismatch", session) if isinstance(r, OutputMismatch)]
    assert any(f.channel == 1 for f in faults)


def test_output_jump_is_an_output_mismatch(rig: Rig) -> None:
    session = _running(rig, target=4.0)
    t = rig.clock.now()
    rig.sim.inject("jump", channel=1, value=5.0)
    rig.advance(1.0)
    assert _end_reason(rig, session) is EndReason.OUTPUT_MISMATCH
    assert zero_within(rig.record, t, 0.5)


def test_device_limit_disagreement_is_limit_reached(tmp_path: Path) -> None:
    # the device enforces 80 mA (generic-2ch) but claims 100 mA: the host's caps are wrong
    rig = make_rig(
        tmp_path,
        opener=wrapped_opener("sim://tsp?profile=generic-2ch", "tens-sim", limits=limits(100.0)),
    )
    try:
        rig.c.connect()
        rig.c.prepare("conventional", 10)
        rig.c.start()
        session = rig.c.snapshot().session_id
        assert session is not None
        assert rig.c.set_target(1, 90.0).accepted
        rig.advance(60)
        assert _end_reason(rig, session) is EndReason.LIMIT_REACHED
        assert rig.record.max_level(1) <= 80.0
        assert rig.record.level_at(1, rig.clock.now()) == 0.0
        bad = [r for r in rig.records("device_rejected", session) if isinstance(r, DeviceRejected)]
        assert any(r.code == ErrorCode.LIMIT.value for r in bad)
    finally:
        rig.close()


def test_channel_cap_refusal_names_the_limit_and_its_source(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, rx=prescription(max_amplitude_ma=5.0))
    try:
        session = _running(rig, target=5.0)
        result = rig.c.increase(1)
        assert not result.accepted
        assert result.limit_ma == 5.0
        assert result.source is not None
        assert result.source.value == "prescription"
        assert result.message is not None
        assert "5 mA" in result.message
        assert "prescription" in result.message
        assert any(
            isinstance(u, MessageUpdate) and u.message.text == result.message for u in rig.updates
        )
        too_high = rig.c.set_target(2, 12.0)
        assert not too_high.accepted
        rejected = [r for r in rig.records("rejected", session) if isinstance(r, Rejected)]
        assert len(rejected) == 2
        assert {r.source for r in rejected} == {"prescription"}
        rig.advance(10)
        assert rig.record.max_level() == 5.0
    finally:
        rig.close()


def test_preconditions_refused_before_anything_reaches_the_device(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, rx=prescription(programs=["acupuncture-like"], session_minutes=20))
    try:
        rig.c.connect("sim://tsp")
        with pytest.raises(PreconditionError) as error:
            rig.c.prepare("conventional", 10)
        assert error.value.check == "program"
        assert "not in the prescription" in str(error.value)
        with pytest.raises(PreconditionError) as error:
            rig.c.prepare("acupuncture-like", 25)
        assert error.value.check == "session length"
        assert "20-minute" in str(error.value)
        with pytest.raises(PreconditionError):
            rig.c.prepare("no-such-program", 10)
        assert rig.c.snapshot().state is SessionState.CONNECTED
        rejected = [r for r in rig.records("rejected") if isinstance(r, Rejected)]
        assert [r.parameter for r in rejected] == ["program", "session length", "program"]
        assert rig.sim.firmware.configured_channels() == []
        assert rig.c.available_programs()[0].name == "acupuncture-like"
    finally:
        rig.close()


def test_states_refuse_out_of_order_calls(rig: Rig) -> None:
    with pytest.raises(SessionStateError):
        rig.c.prepare("conventional", 1)
    with pytest.raises(SessionStateError):
        rig.c.start()
    rig.c.connect("sim://tsp")
    with pytest.raises(SessionStateError):
        rig.c.start()
    with pytest.raises(SessionStateError):
        rig.c.pause()
    with pytest.raises(SessionStateError):
        rig.c.finish()
    assert not rig.c.increase(1).accepted
    rig.c.prepare("conventional", 1)
    with pytest.raises(SessionStateError):
        rig.c.resume()
    rig.c.stop()  # harmless before a session
    assert rig.record.max_level() == 0.0


def test_close_stops_first(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    session = _running(rig, target=5.0)
    t = rig.clock.now()
    rig.c.close()
    assert zero_within(rig.record, t, 0.01)
    assert rig.store.session(session).end_reason is EndReason.STOPPED_BY_USER
    rig.c.close()  # idempotent
    rig.store.close()


def test_after_a_session_another_one_starts_from_zero(rig: Rig) -> None:
    rig.c.connect("sim://tsp")
    first = rig.run_session(target=3.0, minutes=0.5)
    assert _end_reason(rig, first) is EndReason.COMPLETED
    rig.c.finish()
    rig.c.prepare("burst", 0.5)
    rig.c.start()
    t = rig.clock.now()
    rig.advance(5)
    assert rig.record.max_between(1, t, rig.clock.now()) == 0.0
    second = rig.c.snapshot().session_id
    assert second is not None
    assert second != first


def test_a_rehastim_session_on_its_simulator(rig: Rig) -> None:
    view = rig.c.connect("sim://sciencemode2")
    assert view.profile_id == "rehastim2"
    assert "no measured output" in view.flags
    assert "no impedance" in view.flags
    snap = rig.c.prepare("conventional", 0.5)
    assert [ch.channel for ch in snap.channels if ch.active] == [1, 2]
    assert len(snap.channels) == 8
    rig.c.start()
    session = rig.c.snapshot().session_id
    assert session is not None
    assert rig.c.set_target(1, 5.0).accepted
    rig.advance(31)
    assert _end_reason(rig, session) is EndReason.COMPLETED
    assert rig.record.max_level(1) == 5.0
    assert rig.record.level_at(1, rig.clock.now()) == 0.0
    assert all(rig.record.max_level(ch) == 0.0 for ch in range(2, 9))


def test_a_stop_before_the_start_creates_no_session(rig: Rig) -> None:
    rig.c.connect("sim://tsp")
    rig.c.prepare("conventional", 1)
    rig.c.stop()
    assert rig.c.snapshot().state is SessionState.CONNECTED
    assert not any(isinstance(u, EndedUpdate) for u in rig.updates)
    rig.c.emergency_stop()
    assert rig.c.snapshot().state is SessionState.CONNECTED
    rig.c.prepare("conventional", 0.2)  # identifies the device again, every output 0
    rig.c.start()
    rig.advance(13)
    assert rig.store.sessions()[0].end_reason is EndReason.COMPLETED
    assert len(rig.store.sessions()) == 1
    assert rig.states()[:3] == [
        ("idle", "connected"),
        ("connected", "ready"),
        ("ready", "connected"),
    ]
