"""TspDriver against a scripted fake device, all in virtual time."""

from __future__ import annotations

import itertools
import logging
import signal
from collections.abc import Iterator

import pytest

from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceRejectedError,
    ErrorCode,
    IdentityError,
    PortError,
    Report,
    Telemetry,
)
from drivers.clock import VirtualClock
from drivers.tsp.codec import (
    Ack,
    CommandValueError,
    DeviceState,
    Err,
    EventFrame,
    EventName,
    TelemetryFrame,
    encode_device_message,
)
from drivers.tsp.driver import TspDriver
from drivers.tsp.frame import Frame
from tests.tsp_fake_device import FakeTspDevice, Reply

SETTINGS = ChannelSettings(frequency_hz=80, pulse_width_us=200)


@pytest.fixture(autouse=True)
def _clean_exit_guard() -> Iterator[None]:
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def device(clock: VirtualClock) -> FakeTspDevice:
    return FakeTspDevice(clock)


class Reports:
    def __init__(self) -> None:
        self.items: list[Report] = []

    def __call__(self, report: Report) -> None:
        self.items.append(report)

    def events(self, kind: DeviceEventKind) -> list[DeviceEvent]:
        return [r for r in self.items if isinstance(r, DeviceEvent) and r.kind is kind]


def connect(device: FakeTspDevice, clock: VirtualClock) -> TspDriver:
    port = device.plug()
    return TspDriver.connect(port.as_serial(), clock, url="fake://tsp")


def running(device: FakeTspDevice, clock: VirtualClock, milliamps: float = 5.0) -> TspDriver:
    driver = connect(device, clock)
    driver.configure(1, SETTINGS)
    driver.start()
    driver.set_amplitude(1, milliamps)
    assert device.amplitudes[1] == milliamps
    return driver


# --------------------------------------------------------------------------- identity


def test_connect_identifies_and_stops(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = connect(device, clock)
    assert device.verbs() == ["HELLO", "STOP", "STOP"]  # S14: a stop goes out twice
    info = driver.info
    assert (info.model, info.serial_number, info.channels) == ("FAKE-2", "F-0001", 2)
    assert info.limits is not None
    assert info.limits.max_amplitude_ma == 80
    assert driver.connected
    assert driver in exit_guard.registered()
    driver.close()
    assert driver not in exit_guard.registered()


def test_version_refusal_is_an_identity_error(device: FakeTspDevice, clock: VirtualClock) -> None:
    device.script["HELLO"] = lambda f: [encode_device_message(Err(f.seq, ErrorCode.VERSION, "1"))]
    port = device.plug()
    with pytest.raises(IdentityError, match="does not speak TSP/2"):
        TspDriver.connect(port.as_serial(), clock, url="fake://tsp")
    assert not port.is_open


def test_a_silent_port_is_an_identity_error_naming_the_port(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    device.silent = True
    port = device.plug()
    with pytest.raises(IdentityError, match=r"no TSP answer from fake://tsp"):
        TspDriver.connect(port.as_serial(), clock, url="fake://tsp")
    assert clock.now() == pytest.approx(1.0)
    assert not port.is_open


# --------------------------------------------------------------------------- acks


def test_pipelined_commands_are_matched_by_seq_even_out_of_order(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = connect(device, clock)
    held: list[Frame] = []

    def hold_cfg(frame: Frame) -> Reply:
        held.append(frame)
        return []  # answer later, after the next command

    def amp_then_cfg(frame: Frame) -> Reply:
        return [
            encode_device_message(Err(frame.seq, ErrorCode.STATE, "not running")),
            encode_device_message(Ack(held[0].seq)),
            encode_device_message(Ack(held[0].seq)),  # a duplicate is ignored
        ]

    device.script["CFG"] = hold_cfg
    device.script["AMP"] = amp_then_cfg
    cfg = driver.request_configure(1, SETTINGS)
    amp = driver.request_amplitude(1, 3)
    driver.wait(cfg)
    with pytest.raises(DeviceRejectedError) as info:
        driver.wait(amp)
    assert info.value.code is ErrorCode.STATE
    assert info.value.command == "AMP 1 3"
    assert driver.connected


def test_rejected_commands_raise_typed_errors(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = connect(device, clock)
    with pytest.raises(DeviceRejectedError) as info:
        driver.set_amplitude(1, 5)
    assert info.value.code is ErrorCode.STATE
    driver.configure(1, SETTINGS)
    driver.start()
    with pytest.raises(DeviceRejectedError, match="limit error") as info:
        driver.set_amplitude(1, 90)
    assert info.value.code is ErrorCode.LIMIT
    assert info.value.detail == "maxma=80"
    assert device.amplitudes[1] == 0
    assert driver.connected


def test_values_the_wire_cannot_carry_write_nothing(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = connect(device, clock)
    port = device.port
    assert port is not None
    before = port.written
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(CommandValueError):
            driver.request_amplitude(1, bad)
    with pytest.raises(CommandValueError, match="channels 1-2"):
        driver.request_amplitude(3, 1)
    assert port.written == before


def test_ack_timeout_is_comms_lost_once_then_requests_refused(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.script["AMP"] = lambda f: []  # never answered; PINGs still are
    start = clock.now()
    with pytest.raises(CommsLostError, match="no acknowledgement for AMP 1 6"):
        driver.set_amplitude(1, 6)
    assert clock.now() == pytest.approx(start + 1.0, abs=0.01)
    lost = reports.events(DeviceEventKind.COMMS_LOST)
    assert len(lost) == 1
    assert not driver.connected
    # the host stops on comms loss (best effort) ...
    clock.advance(0.1)
    assert device.verbs()[-1] == "STOP"
    assert device.output_ma() == 0
    # ... and refuses to go on by itself
    with pytest.raises(CommsLostError, match="reconnect"):
        driver.request_amplitude(1, 1)
    clock.advance(5)
    assert len(reports.events(DeviceEventKind.COMMS_LOST)) == 1
    driver.close()


def test_err_crc_is_retransmitted_with_the_same_bytes(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = connect(device, clock)
    damaged = [0]

    def flaky(frame: Frame) -> Reply:
        if damaged[0] < 2:
            damaged[0] += 1
            return [encode_device_message(Err(frame.seq, ErrorCode.CRC))]
        return None

    device.script["CFG"] = flaky
    driver.configure(1, SETTINGS)
    cfgs = [r.frame for r in device.received if r.frame.verb == "CFG"]
    assert len(cfgs) == 3
    assert len({f.encode() for f in cfgs}) == 1
    assert driver.connected


def test_err_crc_with_unreadable_seq_resends_the_oldest_command(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = connect(device, clock)
    once = [True]

    def garbled(frame: Frame) -> Reply:
        if once[0]:
            once[0] = False
            return [encode_device_message(Err(0, ErrorCode.CRC))]
        return None

    device.script["CFG"] = garbled
    driver.configure(2, SETTINGS)
    assert [r.frame.args[0] for r in device.received if r.frame.verb == "CFG"] == ["2", "2"]


def test_third_err_crc_is_comms_lost(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = connect(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.script["CFG"] = lambda f: [encode_device_message(Err(f.seq, ErrorCode.CRC))]
    with pytest.raises(CommsLostError, match="unreliable"):
        driver.configure(1, SETTINGS)
    assert device.verbs().count("CFG") == 3
    assert len(reports.events(DeviceEventKind.COMMS_LOST)) == 1


# --------------------------------------------------------------------------- keep-alive


def _ping_times(device: FakeTspDevice) -> list[float]:
    port = device.port
    assert port is not None
    return [t for t, data in port.writes if b" PING*" in data]


def test_keepalive_runs_on_the_clock_at_a_third_of_the_watchdog(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = connect(device, clock)
    port = device.port
    assert port is not None
    last_command = port.writes[-1][0]
    clock.advance(2.0)
    pings = _ping_times(device)
    assert len(pings) == 6
    expected = [last_command + k / 3 for k in range(1, 7)]
    assert pings == pytest.approx(expected, abs=1e-6)
    # a command resets the interval: the next PING comes a third of a second after it
    clock.advance(0.1)
    sent = clock.now()
    driver.configure(1, SETTINGS)
    clock.advance(1.0)
    after = [t for t in _ping_times(device) if t > sent]
    assert after[0] == pytest.approx(sent + 1 / 3, abs=1e-6)
    # the device never saw a gap longer than a third of its watchdog
    times = [t for t, _ in port.writes]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 1 / 3 + 1e-6
    assert driver.connected
    driver.close()


def test_keepalive_follows_the_watchdog_the_device_reports(clock: VirtualClock) -> None:
    device = FakeTspDevice(clock, watchdog_ms=300)
    driver = connect(device, clock)
    assert driver.keepalive_interval_s == pytest.approx(0.1)
    before = len(_ping_times(device))
    clock.advance(1.0)
    assert len(_ping_times(device)) - before == 10
    driver.close()


def test_device_silence_is_comms_lost_within_one_second(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    clock.advance(0.5)
    device.silent = True
    silent_from = clock.now()
    clock.advance(3.0)
    (lost,) = reports.events(DeviceEventKind.COMMS_LOST)
    assert silent_from < lost.time <= silent_from + 1.0 + 1e-6
    assert not driver.connected
    assert device.verbs()[-1] == "STOP"


def test_device_telemetry_alone_keeps_the_host_watchdog_fed_but_acks_are_still_needed(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.script["PING"] = lambda f: []  # the device stops acknowledging keep-alives
    for _ in range(20):
        device.send(encode_device_message(TelemetryFrame(device.next_seq(), 1, 5, 5, 900)))
        clock.advance(0.1)
    (lost,) = reports.events(DeviceEventKind.COMMS_LOST)
    assert "no acknowledgement for PING" in lost.detail


# --------------------------------------------------------------------------- reports


def test_telemetry_and_events_reach_the_handlers(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.send(encode_device_message(TelemetryFrame(7, 1, 5, 4.9, 1100)))
    device.send(encode_device_message(EventFrame(8, EventName.LEADOFF, channel=2)))
    device.send(encode_device_message(EventFrame(9, EventName.BATLOW, battery_pct=12)))
    device.send(b"garbage\n10 EVT NEWTHING*0000\n")
    device.send(encode_device_message(EventFrame(11, EventName.WDT)))
    clock.advance(0.01)
    tel = [r for r in reports.items if isinstance(r, Telemetry)]
    assert [(t.channel, t.set_ma, t.measured_ma, t.impedance_ohm) for t in tel] == [
        (1, 5, 4.9, 1100)
    ]
    kinds = [r.kind for r in reports.items if isinstance(r, DeviceEvent)]
    assert kinds == [
        DeviceEventKind.LEAD_OFF,
        DeviceEventKind.BATTERY_LOW,
        DeviceEventKind.WATCHDOG_TRIP,
    ]
    assert driver.framing_errors == 2
    assert driver.connected


def test_the_devices_own_emergency_switch_is_reported_as_such(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    """TSP says ``EVT FAULT estop``; the engine reports EMERGENCY_SWITCH (the governor knows no
    TSP codes)."""
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.send(encode_device_message(EventFrame(8, EventName.FAULT, code="estop")))
    device.send(encode_device_message(EventFrame(9, EventName.FAULT, code="OVERCURRENT")))
    clock.advance(0.01)
    kinds = [r.kind for r in reports.items if isinstance(r, DeviceEvent)]
    assert kinds == [DeviceEventKind.EMERGENCY_SWITCH, DeviceEventKind.FAULT]
    driver.close()


def test_a_failing_report_handler_does_not_break_the_driver(
    device: FakeTspDevice, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    driver = running(device, clock)

    def broken(report: Report) -> None:
        raise ValueError("bug in a handler")

    good = Reports()
    driver.add_report_handler(broken)
    driver.add_report_handler(good)
    device.send(encode_device_message(TelemetryFrame(1, 1, 5, 5, None)))
    clock.advance(2.0)
    assert len(good.items) == 1
    assert driver.connected
    assert "report handler failed" in caplog.text


def test_status(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = running(device, clock, 7.5)
    status = driver.status()
    assert status.state is DeviceState.RUNNING
    assert status.battery_pct == 90
    assert status.amplitudes_ma == {1: 7.5, 2: 0}


# --------------------------------------------------------------------------- unplug


def test_unplug_is_comms_lost_without_traceback(
    device: FakeTspDevice, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    caplog.set_level(logging.DEBUG)
    device.unplug()
    clock.advance(0.05)
    (lost,) = reports.events(DeviceEventKind.COMMS_LOST)
    assert "port read failed" in lost.detail
    assert not driver.connected
    with pytest.raises(CommsLostError):
        driver.set_amplitude(1, 1)
    stop = driver.request_stop()  # never raises
    assert isinstance(stop.error, CommsLostError)
    driver.close()
    driver.close()
    assert all(record.exc_info is None for record in caplog.records)


def test_unplug_during_a_write_is_comms_lost(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = running(device, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    port = device.port
    assert port is not None
    port.broken = True
    with pytest.raises(CommsLostError, match="AMP 1 6 not confirmed"):
        driver.set_amplitude(1, 6)
    assert len(reports.events(DeviceEventKind.COMMS_LOST)) == 1


# --------------------------------------------------------------------------- stop on exit


def test_request_stop_writes_before_returning(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = running(device, clock)
    port = device.port
    assert port is not None
    before = len(port.writes)
    driver.request_stop()
    assert len(port.writes) == before + 1
    assert port.writes[-1][1].startswith(b"\n")  # ends any partial line first
    assert b" STOP*" in port.writes[-1][1]
    assert port.writes[-1][0] == clock.now()


def test_context_manager_exit_stops_then_closes(device: FakeTspDevice, clock: VirtualClock) -> None:
    with running(device, clock, 10) as driver:
        assert device.output_ma() == 10
    assert device.verbs()[-1] == "STOP"
    assert device.output_ma() == 0
    port = device.port
    assert port is not None
    assert not port.is_open
    assert not driver.connected
    driver.close()  # idempotent


def test_exception_inside_the_context_manager_stops(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    with pytest.raises(ZeroDivisionError), running(device, clock, 10):
        _ = 1 / 0
    assert device.verbs()[-1] == "STOP"
    assert device.output_ma() == 0


def test_close_never_raises_and_is_idempotent_even_if_the_device_is_silent(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = running(device, clock)
    device.silent = True
    start = clock.now()
    driver.close()
    assert clock.now() - start <= driver.close_wait_s + 1e-9
    driver.close()
    assert device.verbs()[-1] == "STOP"  # written even though not acknowledged


def test_exit_guard_stops_every_driver_before_closing_any(clock: VirtualClock) -> None:
    journal: list[str] = []
    first = FakeTspDevice(clock, name="first", journal=journal)
    second = FakeTspDevice(clock, name="second", journal=journal)
    a = running(first, clock, 5)
    b = running(second, clock, 6)
    assert {id(d) for d in exit_guard.registered()} >= {id(a), id(b)}
    mark = len(journal)
    exit_guard.stop_all()
    for device in (first, second):
        assert device.verbs()[-1] == "STOP"
        assert device.output_ma() == 0
        port = device.port
        assert port is not None
        assert not port.is_open
    after = journal[mark:]
    first_close = after.index("first close")
    assert any(e.startswith("first write") and "STOP" in e for e in after[:first_close])
    assert any(e.startswith("second write") and "STOP" in e for e in after[:first_close])
    assert exit_guard.registered() == []


def test_sigterm_stops_the_device_and_exits(device: FakeTspDevice, clock: VirtualClock) -> None:
    exit_guard.uninstall()
    previous = signal.getsignal(signal.SIGTERM)
    exit_guard.install()
    try:
        driver = running(device, clock, 8)
        with pytest.raises(SystemExit) as info:
            signal.raise_signal(signal.SIGTERM)
        assert info.value.code == 128 + signal.SIGTERM
        assert device.verbs()[-1] == "STOP"
        assert device.output_ma() == 0
        assert not driver.connected
    finally:
        exit_guard.uninstall()
        assert signal.getsignal(signal.SIGTERM) == previous


def test_sigterm_chains_to_the_previous_handler(device: FakeTspDevice, clock: VirtualClock) -> None:
    seen: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    exit_guard.uninstall()
    try:
        exit_guard.install()
        exit_guard.install()  # twice is harmless: one stop, one chained call
        running(device, clock, 4)
        signal.raise_signal(signal.SIGTERM)
        assert seen == [signal.SIGTERM]
        assert device.verbs()[:2] == ["HELLO", "STOP"]
        assert "STOP" in device.verbs()[2:]  # the guard's
        assert device.output_ma() == 0
    finally:
        exit_guard.uninstall()
        signal.signal(signal.SIGTERM, original)


# --------------------------------------------------------------------------- reconnect


def test_reconnect_identifies_stops_and_never_resumes(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = running(device, clock, 12)
    reports = Reports()
    driver.add_report_handler(reports)
    device.unplug()
    clock.advance(0.1)
    assert reports.events(DeviceEventKind.COMMS_LOST)
    # the device is plugged back in while it still has a configuration (a quick replug)
    device.running = True
    device.amplitudes[1] = 12
    mark = len(device.received)
    info = driver.reconnect(device.plug().as_serial())
    assert info.model == "FAKE-2"
    assert driver.connected
    assert [r.frame.verb for r in device.received[mark:]] == ["HELLO", "STOP", "STOP"]
    assert device.output_ma() == 0
    clock.advance(5.0)
    assert set(device.verbs()[mark:]) <= {"HELLO", "STOP", "PING"}
    assert device.output_ma() == 0
    assert driver in exit_guard.registered()
    driver.close()


def test_reconnect_to_a_port_that_cannot_open_is_a_clear_error(
    device: FakeTspDevice, clock: VirtualClock
) -> None:
    driver = connect(device, clock)
    device.unplug()
    clock.advance(0.1)
    with pytest.raises(PortError, match="fake://tsp"):
        driver.reconnect()  # re-opens the URL it was opened with
    assert not driver.connected
    driver.close()


def test_host_seq_wraps_to_1_never_0(device: FakeTspDevice, clock: VirtualClock) -> None:
    driver = connect(device, clock)
    driver.tsp._next_seq = 65534  # white-box: jump to the end of the range
    for _ in range(3):
        driver.request_ping()
    clock.advance(0.1)
    assert [r.frame.seq for r in device.received[-3:]] == [65534, 65535, 1]
    assert driver.connected
    driver.close()
