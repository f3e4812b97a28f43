"""The simulator's TSP/2 front-end, driven by a bare host in virtual time (docs/protocol.md)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import ChannelSettings, ErrorCode, FramingError
from drivers.tsp.codec import (
    PROTOCOL_MAJOR,
    Ack,
    ChannelState,
    Configure,
    DeviceState,
    Err,
    EventName,
    Hello,
    Ping,
    SetAmplitude,
    Start,
    Status,
    Stop,
    parse_hello_ack,
    parse_status_ack,
)
from drivers.tsp.frame import encode_frame
from simulator.testing import RawTspHost

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)


def started(url: str = "sim://tsp?seed=3") -> RawTspHost:
    host = RawTspHost(url)
    assert isinstance(host.command(Hello(PROTOCOL_MAJOR)), Ack)
    assert isinstance(host.command(Configure(1, CONVENTIONAL)), Ack)
    assert isinstance(host.command(Start()), Ack)
    return host


def test_hello_reports_the_profile_identity_and_limits_as_a_simulator() -> None:
    host = RawTspHost("sim://tsp?seed=42&wdms=800")
    reply = host.command(Hello(PROTOCOL_MAJOR))
    assert isinstance(reply, Ack)
    hello = parse_hello_ack(reply)
    info = hello.info
    assert (hello.major, hello.watchdog_ms) == (2, 800)
    assert (info.model, info.serial_number, info.channels) == ("TENS-SIM", "SIM000042", 2)
    assert info.reported_simulator  # it says so; only a sim:// URL makes the host believe it
    assert not info.is_simulator
    assert info.reports_current
    assert info.reports_impedance
    assert info.limits is not None
    assert (info.limits.max_amplitude_ma, info.limits.amplitude_step_ma) == (100.0, 0.5)
    assert (info.limits.min_pulse_width_us, info.limits.max_pulse_width_us) == (50, 400)
    assert (info.limits.ramp_step_ma, info.limits.ramp_interval_ms) == (1.0, 500.0)
    assert (info.odometer_sessions, info.odometer_stimulation_s) == (0, 0.0)


def test_hello_for_another_major_version_is_err_version() -> None:
    host = RawTspHost()
    reply = host.command(Hello(1))
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.VERSION
    assert reply.detail == "2"  # the majors it speaks


def test_another_profile_changes_the_identity() -> None:
    host = RawTspHost("sim://tsp?profile=generic-2ch")
    reply = host.command(Hello(PROTOCOL_MAJOR))
    assert isinstance(reply, Ack)
    info = parse_hello_ack(reply).info
    assert info.model == "HOME-2"
    assert info.limits is not None
    assert info.limits.max_amplitude_ma == 80.0


def test_every_command_is_answered_in_order_with_the_same_seq() -> None:
    host = started()
    seqs = [host.send(SetAmplitude(1, 1.0)), host.send(SetAmplitude(1, 2.0)), host.send(Ping())]
    host.clock.advance(0.05)
    replies = [m.seq for _, m in host.replies()][-3:]
    assert replies == seqs


def test_amplitude_refusals_carry_the_right_code_and_change_nothing() -> None:
    host = started()
    host.ramp_to(1, 10.0)
    for command, code in [
        (SetAmplitude(1, 100.5), ErrorCode.LIMIT),
        (SetAmplitude(1, 10.2), ErrorCode.LIMIT),
        (SetAmplitude(3, 1.0), ErrorCode.PARAMETER),
        (SetAmplitude(2, 1.0), ErrorCode.STATE),  # channel 2 not configured
    ]:
        reply = host.command(command)
        assert isinstance(reply, Err), command
        assert reply.code is code, command
    assert host.device.record.max_level() == 10.0
    assert host.device.firmware.delivered(1) == 10.0


def test_amp_while_idle_and_start_without_configuration_are_err_state() -> None:
    host = RawTspHost()
    reply = host.command(Start())
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.STATE
    host.command(Configure(1, CONVENTIONAL))
    reply = host.command(SetAmplitude(1, 1.0))
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.STATE
    assert len(host.device.record) == 0


def test_cfg_outside_the_hard_limits_is_err_limit() -> None:
    host = RawTspHost()
    reply = host.command(Configure(1, ChannelSettings(frequency_hz=200, pulse_width_us=200)))
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.LIMIT
    assert host.device.firmware.settings(1) is None


def test_stop_is_always_acknowledged_and_zeroes_every_output() -> None:
    host = started()
    host.ramp_to(1, 20.0)
    assert isinstance(host.command(Stop()), Ack)
    assert isinstance(host.command(Stop()), Ack)
    now = host.clock.now()
    assert host.device.record.levels_at(now) == {1: 0.0, 2: 0.0}


def test_status_reports_state_battery_and_set_amplitudes() -> None:
    host = started("sim://tsp?battery=55")
    host.ramp_to(1, 12.5)
    reply = host.command(Status())
    assert isinstance(reply, Ack)
    status = parse_status_ack(reply)
    assert status.state is DeviceState.RUNNING
    assert status.battery_pct == 55
    assert status.amplitudes_ma == {1: 12.5, 2: 0.0}


def test_a_damaged_line_is_answered_err_crc_and_not_executed() -> None:
    host = started()
    good = encode_frame(7, "AMP", ("1", "1"))
    bad = good.replace(b"AMP 1 1", b"AMP 1 9")  # same checksum, different content
    host.send_raw(bad)
    reply = host.reply(7)
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.CRC
    assert host.device.firmware.delivered(1) == 0.0
    host.send_raw(good)
    host.clock.advance(0.05)
    assert host.device.firmware.delivered(1) == 1.0


def test_unknown_verbs_and_bad_arguments() -> None:
    host = RawTspHost()
    host.send_raw(encode_frame(5, "ZAP", ()))
    reply = host.reply(5)
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.UNKNOWN_COMMAND
    host.send_raw(encode_frame(6, "AMP", ("1",)))
    reply = host.reply(6)
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.PARAMETER


def test_a_repeat_of_any_of_the_last_16_commands_is_answered_again_never_executed() -> None:
    """TSP/2 §7: at most once. A host that resends a command whose answer was lost, after newer
    commands, gets the old answer; the device does not go back to the old value."""
    host = started()
    host.ramp_to(1, 2.0)
    old = encode_frame(50, "AMP", ("1", "3"))
    host.send_raw(old)
    host.clock.advance(0.6)
    host.command(SetAmplitude(1, 1.0))  # a newer command lowers channel 1
    for _ in range(3):
        host.send_raw(old)  # the old one again (its answer was lost): never re-applied
    host.clock.advance(0.05)
    assert [m.seq for _, m in host.replies()].count(50) == 4
    changes = [d.ma for d in host.device.record.changes(1)]
    assert changes == [1.0, 2.0, 3.0, 1.0]
    # HELLO starts a new host: its numbers start again, the cache is forgotten
    host.command(Hello(PROTOCOL_MAJOR))
    host.send_raw(old)
    host.clock.advance(0.05)
    answer = [m for _, m in host.replies() if m.seq == 50][-1]
    assert isinstance(answer, Err)  # executed now: two steps above 1 mA is refused
    assert answer.code is ErrorCode.RAMP


def test_the_device_ramps_whatever_the_host_asks() -> None:
    """S15: at most one ramp step above what the channel delivers, one interval apart."""
    host = started()
    reply = host.command(SetAmplitude(1, 21.0))
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.RAMP
    assert isinstance(host.command(SetAmplitude(1, 1.0)), Ack)
    reply = host.command(SetAmplitude(1, 2.0))  # too soon after the last increase
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.RAMP
    host.clock.advance(0.5)
    assert isinstance(host.command(SetAmplitude(1, 2.0)), Ack)
    assert isinstance(host.command(SetAmplitude(1, 0.5)), Ack)  # decreases: at once, always
    steps = host.device.record.steps(1)
    assert max(after - before for _, before, after in steps) <= 1.0


def test_after_lead_off_a_channel_can_only_be_raised_again_from_zero() -> None:
    """The case of issue 11: at 20 mA the lead-off event is lost, the lead comes back, the host
    (believing 20 mA) raises to 21: the device refuses the jump from 0."""
    host = started()
    host.ramp_to(1, 20.0)
    host.device.inject("drop", direction="host")  # the EVT LEADOFF never reaches the host
    host.device.inject("leadoff", channel=1)
    host.keep_alive(0.3)
    host.device.inject("leadon", channel=1)
    host.keep_alive(0.6)
    reply = host.command(SetAmplitude(1, 21.0))
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.RAMP
    assert host.device.firmware.delivered(1) == 0.0
    # and the telemetry had said so all along, whether or not the event arrived
    states = [m.state for _, m in host.telemetry(1)]
    assert ChannelState.LEADOFF in states


def test_telemetry_runs_at_ten_hertz_for_every_channel_in_every_state() -> None:
    host = started()
    host.ramp_to(1, 10.0)
    t0 = host.clock.now()
    host.keep_alive(2.0)
    host.command(Stop())
    t1 = host.clock.now()
    host.keep_alive(1.0)
    for channel in (1, 2):
        samples = [t for t, _ in host.telemetry(channel) if t0 <= t <= t1]
        assert 19 <= len(samples) <= 21
        gaps = [b - a for a, b in itertools.pairwise(samples)]
        assert max(gaps) <= 0.1 + 1e-9
    after = [m for t, m in host.telemetry() if t > t1 + 0.01]
    assert after  # S15: telemetry goes on while idle, saying so
    assert {m.state for m in after} == {ChannelState.IDLE}
    assert {m.state for t, m in host.telemetry(1) if t0 <= t <= t1} == {ChannelState.RUN}
    latest = [m for t, m in host.telemetry(1) if t <= t1][-1]
    assert latest.set_ma == 10.0
    assert latest.measured_ma is not None
    assert abs(latest.measured_ma - 10.0) <= 0.2
    assert latest.impedance_ohm is not None
    assert 800 <= latest.impedance_ohm <= 1500
    idle = [m for t, m in host.telemetry(2) if t <= t1][-1]
    assert (idle.set_ma, idle.measured_ma) == (0.0, 0.0)


def test_the_watchdog_zeroes_output_and_sends_evt_wdt_when_the_host_goes_silent() -> None:
    host = started()
    host.ramp_to(1, 3.0)
    host.keep_alive(3.0)
    silent_from = max(t for t, _ in host.replies())  # the device got the last PING before this
    host.clock.advance(3.0)
    record = host.device.record
    zero = record.all_zero_at(silent_from)
    assert zero is not None
    assert zero - silent_from <= 1.0
    events = host.events()
    assert [m.name for _, m in events] == [EventName.WDT]
    assert events[0][0] >= zero
    status = host.command(Status())
    assert isinstance(status, Ack)
    assert parse_status_ack(status).state is DeviceState.IDLE


def test_lead_off_is_reported_after_the_channel_is_already_at_zero() -> None:
    host = started()
    host.ramp_to(1, 3.0)
    host.device.inject("leadoff", channel=1)
    injected = host.clock.now()
    host.clock.advance(0.05)
    (when, event), *_ = host.events()
    assert (event.name, event.channel) == (EventName.LEADOFF, 1)
    assert host.device.record.zero_at(1, injected) == injected <= when


@pytest.mark.parametrize(
    ("fault", "name", "code"),
    [
        ("reset", EventName.RESET, None),
        ("fault", EventName.FAULT, "HW"),
        ("estop", EventName.FAULT, "estop"),
        ("batlow", EventName.BATLOW, None),
    ],
)
def test_device_events_become_evt_frames(fault: str, name: EventName, code: str | None) -> None:
    host = started()
    host.device.inject(fault, code="HW" if fault == "fault" else None)
    host.clock.advance(0.05)
    events = [m for _, m in host.events()]
    assert [e.name for e in events] == [name]
    if code is not None:
        assert events[0].code == code
    if name is EventName.BATLOW:
        assert events[0].battery_pct == 15


def test_after_a_reset_the_device_counts_its_frames_from_zero_and_is_unconfigured() -> None:
    host = started()
    host.keep_alive(0.5)
    host.device.inject("reset")
    host.clock.advance(0.05)
    (_, event), *_ = host.events()
    assert event.seq == 0
    reply = host.command(SetAmplitude(1, 1.0))
    assert isinstance(reply, Err)
    assert reply.code is ErrorCode.STATE
    assert isinstance(host.command(Configure(1, CONVENTIONAL)), Ack)


def test_garbage_from_the_host_never_changes_the_output() -> None:
    host = started()
    host.send_raw(b"\x00\xff garbage 1 AMP 1 50*0000\n\n\r\n7 AMP 1 50\n" + b"x" * 400 + b"\n")
    host.clock.advance(0.1)
    assert host.device.record.max_level() == 0.0
    errors = [m for _, m in host.replies()[-3:]]
    assert [m.code for m in errors if isinstance(m, Err)] == [ErrorCode.CRC] * 3
    assert not any(isinstance(m, FramingError) for m in host.messages())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_from_the_host_never_deliver_anything(chunks: list[bytes]) -> None:
    host = started()
    for chunk in chunks:
        host.send_raw(chunk)
    host.clock.advance(0.2)
    assert host.device.record.max_level() == 0.0
    assert all(isinstance(m, Ack | Err) for _, m in host.replies())
