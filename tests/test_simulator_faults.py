"""Seeded fault plans: parsing, scheduling, every fault kind, and determinism."""

from __future__ import annotations

import pytest
import serial

from drivers.base import ChannelSettings, DeviceEventKind, ErrorCode, FramingError
from drivers.tsp.codec import (
    PROTOCOL_MAJOR,
    Ack,
    Configure,
    Err,
    EventName,
    Hello,
    Ping,
    SetAmplitude,
    Start,
)
from simulator.faults import (
    FAULT_HELP,
    Direction,
    Fault,
    FaultKind,
    FaultPlan,
    FaultPlanError,
    parse_fault,
    parse_kinds,
)
from simulator.testing import RawTspHost

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)


def started(url: str = "sim://tsp?seed=5") -> RawTspHost:
    host = RawTspHost(url)
    host.command(Hello(PROTOCOL_MAJOR))
    host.command(Configure(1, CONVENTIONAL))
    host.command(Start())
    return host


# --------------------------------------------------------------------------- parsing


def test_a_compact_plan_parses_into_faults_in_time_order() -> None:
    plan = FaultPlan.parse("disconnect@60, leadoff@12.5:1,garble@30")
    assert plan.scheduled == (
        Fault(FaultKind.LEAD_OFF, 12.5, channel=1),
        Fault(FaultKind.GARBLE, 30.0, direction=Direction.DEVICE),
        Fault(FaultKind.DISCONNECT, 60.0),
    )
    assert plan.describe() == "leadoff@12.5:1,garble@30:device,disconnect@60"
    assert FaultPlan.parse(plan.describe()) == plan


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("jump@3:2:7.5", Fault(FaultKind.JUMP, 3.0, channel=2, value=7.5)),
        ("drift@1:2", Fault(FaultKind.DRIFT, 1.0, channel=2)),
        ("stuck@0", Fault(FaultKind.STUCK, 0.0, channel=1)),
        ("drop@4:host:3", Fault(FaultKind.DROP, 4.0, direction=Direction.HOST, count=3)),
        ("DUP@4", Fault(FaultKind.DUPLICATE, 4.0, direction=Direction.DEVICE)),
        ("late@2:250", Fault(FaultKind.LATE, 2.0, value=250.0)),
        ("mute@2", Fault(FaultKind.MUTE, 2.0)),
        ("fault@9:OVERCURRENT", Fault(FaultKind.INTERNAL, 9.0, code="OVERCURRENT")),
        ("reset@1", Fault(FaultKind.RESET, 1.0)),
    ],
)
def test_each_item_form_parses(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(fault.describe()) == fault


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zap@1", "unknown kind 'zap'"),
        ("leadoff", "give a time"),
        ("leadoff@soon", "time 'soon' is not a number"),
        ("leadoff@-1", "must be a number >= 0"),
        ("leadoff@1:0", "channel '0' must be a whole number >= 1"),
        ("reset@1:2", "reset takes at most 0 argument"),
        ("garble@1:sideways", "direction 'sideways'"),
        ("fault@1:bad code", "code"),
    ],
)
def test_a_malformed_item_names_itself_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(FaultPlanError, match=message) as caught:
        FaultPlan.parse(f"leadoff@1,{text}")
    assert repr(text) in str(caught.value) or text in str(caught.value)


def test_random_kinds_parse_and_the_help_lists_every_kind() -> None:
    assert parse_kinds("garble+drop,leadoff") == (
        FaultKind.GARBLE,
        FaultKind.DROP,
        FaultKind.LEAD_OFF,
    )
    with pytest.raises(FaultPlanError, match="unknown fault kind"):
        parse_kinds("garble+nope")
    for kind in FaultKind:
        assert f"{kind.value}@" in FAULT_HELP


def test_a_bad_plan_in_a_url_is_a_clear_serial_exception() -> None:
    with pytest.raises(serial.SerialException, match="unknown kind 'zap'"):
        RawTspHost("sim://tsp?faults=zap@1")


# --------------------------------------------------------------------------- device faults


def test_scheduled_faults_happen_at_their_time_after_power_on() -> None:
    host = started("sim://tsp?faults=leadoff@2:1,stuck@2.5:2&seed=1")
    host.command(SetAmplitude(1, 1.0))
    host.keep_alive(3.0)
    assert [(round(t, 6), f.kind) for t, f in host.device.faults_applied] == [
        (2.0, FaultKind.LEAD_OFF),
        (2.5, FaultKind.STUCK),
    ]
    assert host.device.record.zero_at(1, 1.0) == pytest.approx(2.0)
    (when, event), *_ = host.events()
    assert event.name is EventName.LEADOFF
    assert when >= 2.0


def test_jump_fault_shows_in_the_record_and_in_the_read_back() -> None:
    host = started("sim://tsp?faults=jump@1:1:4")
    host.command(SetAmplitude(1, 1.0))
    host.keep_alive(1.5)
    assert host.device.record.max_level(1) == 5.0
    latest = host.telemetry(1)[-1][1]
    assert latest.set_ma == 1.0
    assert latest.measured_ma is not None
    assert latest.measured_ma > 4.8


def test_drift_fault_ends_in_lead_off() -> None:
    host = started("sim://tsp?faults=drift@1:1:3")
    host.command(SetAmplitude(1, 1.0))
    host.keep_alive(5.0)
    impedances = [m.impedance_ohm for t, m in host.telemetry(1) if 1.0 < t < 4.0]
    assert any(z is not None and z > 5000 for z in impedances)
    assert host.device.record.zero_at(1, 1.0) == pytest.approx(4.0)
    assert [m.name for _, m in host.events()] == [EventName.LEADOFF]


def test_a_fault_on_a_channel_the_device_lacks_is_ignored() -> None:
    host = started("sim://tsp?faults=leadoff@0.5:9")
    host.keep_alive(1.0)
    assert not host.events()
    assert not host.device.firmware.is_lead_off(1)


# --------------------------------------------------------------------------- link faults


def test_garble_to_the_device_is_answered_err_crc_and_not_executed() -> None:
    host = started()
    host.device.inject(FaultKind.GARBLE)
    host.send(SetAmplitude(1, 20.0))
    host.clock.advance(0.05)
    errors = [m for _, m in host.replies() if isinstance(m, Err)]
    assert [m.code for m in errors] == [ErrorCode.CRC]
    assert host.device.record.max_level() == 0.0


def test_garble_to_the_host_spoils_exactly_one_frame() -> None:
    host = started()
    host.device.inject(FaultKind.GARBLE, direction="host")
    host.send(Ping())
    second = host.send(Ping())
    host.clock.advance(0.05)
    bad = [m for m in host.messages() if isinstance(m, FramingError)]
    assert len(bad) == 1
    assert host.reply(second) is not None


def test_drop_to_the_device_loses_the_command() -> None:
    host = started()
    host.device.inject(FaultKind.DROP, count=2)
    lost = [host.send(SetAmplitude(1, 2.0)), host.send(SetAmplitude(1, 4.0))]
    kept = host.send(Ping())
    host.clock.advance(0.05)
    assert all(host.reply(seq, timeout=0) is None for seq in lost)
    assert host.reply(kept, timeout=0) is not None
    assert len(host.device.record) == 0


def test_drop_to_the_host_loses_the_reply_but_the_command_ran() -> None:
    host = started()
    host.device.inject(FaultKind.DROP, direction=Direction.HOST)
    seq = host.send(SetAmplitude(1, 1.0))
    host.clock.advance(0.05)
    assert host.reply(seq, timeout=0) is None
    assert host.device.firmware.delivered(1) == 1.0


def test_duplicate_frames_both_ways() -> None:
    host = started()
    host.device.inject(FaultKind.DUPLICATE)  # the device receives the command twice
    seq = host.send(SetAmplitude(1, 1.0))
    host.clock.advance(0.05)
    assert [m.seq for _, m in host.replies()].count(seq) == 2
    assert [d.ma for d in host.device.record.changes(1)] == [1.0]  # executed once
    host.device.inject(FaultKind.DUPLICATE, direction="host")
    seq = host.send(Ping())
    host.clock.advance(0.05)
    assert [m.seq for _, m in host.replies()].count(seq) == 2


def test_a_late_answer_holds_back_everything_behind_it() -> None:
    host = started("sim://tsp?latency_ms=2")
    host.device.inject(FaultKind.LATE, value=700)
    sent = host.clock.now()
    first = host.send(Ping())
    second = host.send(Ping())
    host.clock.advance(1.0)
    times = {m.seq: t for t, m in host.replies() if m.seq in (first, second)}
    assert times[first] == pytest.approx(sent + 0.002 + 0.002 + 0.7)
    assert times[second] >= times[first]
    assert host.device.firmware.state.value == "RUNNING"  # the device itself was fed in time


def test_mute_silences_the_device_but_it_still_obeys() -> None:
    host = started()
    host.command(SetAmplitude(1, 1.0))
    host.device.inject(FaultKind.MUTE, value=2.0)
    host.send(SetAmplitude(1, 0.0))
    heard_before = len(host.received)
    host.keep_alive(1.5)
    assert len(host.received) == heard_before
    assert host.device.firmware.delivered(1) == 0.0
    host.keep_alive(1.0)
    assert len(host.received) > heard_before


def test_disconnect_makes_the_port_raise_and_the_device_watchdog_zeroes_output() -> None:
    host = started()
    host.command(SetAmplitude(1, 1.0))
    host.device.inject(FaultKind.DISCONNECT)
    gone = host.clock.now()
    with pytest.raises(serial.SerialException):
        host.port.write(b"1 PING*0000\n")
    with pytest.raises(serial.SerialException):
        host.port.read(1)
    with pytest.raises(serial.SerialException):
        _ = host.port.in_waiting
    host.clock.advance(0.01)
    assert host.lost is not None  # the reader was woken and saw the port vanish
    host.clock.advance(2.0)
    assert host.device.record.zero_at(1, gone) == pytest.approx(gone + 1.0, abs=0.01)
    assert host.device.firmware.events[-1].kind is DeviceEventKind.WATCHDOG_TRIP
    host.port.close()
    with pytest.raises(serial.SerialException, match="unplugged"):
        host.port.open()
    host.device.inject(FaultKind.RECONNECT)
    host.port.open()
    assert isinstance(host.command(Ping()), Ack)
    assert host.device.firmware.delivered(1) == 0.0  # nothing resumes by itself


def test_a_timed_disconnect_comes_back_by_itself() -> None:
    host = started("sim://tsp?faults=disconnect@1:2")
    host.keep_alive(0.9)
    host.clock.advance(0.5)
    assert host.device.disconnected
    host.clock.advance(2.0)
    assert not host.device.disconnected


# --------------------------------------------------------------------------- random faults


def _random_run(seed: int) -> list[tuple[float, Fault]]:
    host = started(f"sim://tsp?seed={seed}&fault_rate=0.5&fault_kinds=garble+drop+leadoff+jump")
    host.command(SetAmplitude(1, 1.0))
    host.keep_alive(60.0)
    return host.device.faults_applied


def test_random_faults_are_drawn_from_the_seed() -> None:
    first = _random_run(11)
    assert first == _random_run(11)
    assert first != _random_run(12)
    assert 10 <= len(first) <= 60  # about 30 expected in 60 s at 0.5/s
    assert {f.kind for _, f in first} <= {
        FaultKind.GARBLE,
        FaultKind.DROP,
        FaultKind.LEAD_OFF,
        FaultKind.JUMP,
    }


def test_faults_do_not_disturb_the_other_random_streams() -> None:
    plain = started("sim://tsp?seed=9")
    faulty = started("sim://tsp?seed=9&faults=garble@0.5:host,dup@0.7:host")
    for host in (plain, faulty):
        host.command(SetAmplitude(1, 1.0))
        host.keep_alive(2.0)
    readings = [[m.impedance_ohm for _, m in h.telemetry(2)][-5:] for h in (plain, faulty)]
    assert readings[0] == readings[1]
