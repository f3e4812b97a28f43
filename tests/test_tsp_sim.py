"""TspDriver against the in-process simulator (``sim://tsp``), in virtual time.

Safety assertions are made on what the simulator DELIVERED (its record), not on what the
driver believes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import simulator  # noqa: F401  (registers sim://)
from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceRejectedError,
    ErrorCode,
    Report,
    Telemetry,
)
from drivers.clock import RealClock, VirtualClock
from drivers.tsp.codec import CommandValueError, DeviceState
from drivers.tsp.driver import TspDriver
from simulator.device import SimDevice
from simulator.protocol_sim import Serial as SimSerial
from simulator.testing import ramp_driver

SETTINGS = ChannelSettings(frequency_hz=80, pulse_width_us=200)


@pytest.fixture(autouse=True)
def _clean_exit_guard() -> Iterator[None]:
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


class Reports:
    def __init__(self) -> None:
        self.items: list[Report] = []

    def __call__(self, report: Report) -> None:
        self.items.append(report)

    def events(self, kind: DeviceEventKind) -> list[DeviceEvent]:
        return [r for r in self.items if isinstance(r, DeviceEvent) and r.kind is kind]

    def telemetry(self) -> list[Telemetry]:
        return [r for r in self.items if isinstance(r, Telemetry)]


def sim_device(driver: TspDriver) -> SimDevice:
    port = driver.port
    assert isinstance(port, SimSerial)
    return port.device


def open_running(clock: VirtualClock, url: str = "sim://tsp?seed=1") -> tuple[TspDriver, SimDevice]:
    driver = TspDriver.open(url, clock)
    driver.configure(1, SETTINGS)
    driver.start()
    for ma in (1, 2, 3, 4):
        driver.set_amplitude(1, ma)
        clock.advance(0.5)
    return driver, sim_device(driver)


def test_identify_over_sim(clock: VirtualClock) -> None:
    with TspDriver.open("sim://tsp?seed=1", clock) as driver:
        info = driver.info
        assert info.is_simulator  # the built-in sim:// URL
        assert info.protocol == "TSP"
        assert info.limits is not None
        assert info.limits.max_amplitude_ma == 100
        assert driver.watchdog_ms == 1000


def test_session_delivers_what_was_asked_and_stops_on_exit(clock: VirtualClock) -> None:
    reports = Reports()
    with TspDriver.open("sim://tsp?seed=1", clock) as driver:
        driver.add_report_handler(reports)
        device = sim_device(driver)
        driver.configure(1, SETTINGS)
        driver.start()
        ramp_driver(driver, 1, 5)
        t_set = clock.now()
        clock.advance(10.0)
        assert device.record.level_at(1, clock.now()) == 5
        assert device.record.max_level() == 5
        assert driver.status().state is DeviceState.RUNNING
        end = clock.now()
    assert device.record.all_zero_at(end) is not None
    assert device.record.level_at(1, clock.now()) == 0
    # telemetry: both channels at >= 10 Hz while running
    tel = [t for t in reports.telemetry() if t_set + 1 <= t.time <= t_set + 9]
    for channel in (1, 2):
        assert len([t for t in tel if t.channel == channel]) >= 79
    assert all(t.set_ma == 5 for t in tel if t.channel == 1)
    # the keep-alive kept it running for 10 s without any command from the caller
    assert not reports.events(DeviceEventKind.WATCHDOG_TRIP)
    assert not reports.events(DeviceEventKind.COMMS_LOST)


def test_device_limits_are_refused_and_never_delivered(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    with pytest.raises(DeviceRejectedError) as info:
        driver.set_amplitude(1, 100.5)
    assert info.value.code is ErrorCode.LIMIT
    with pytest.raises(DeviceRejectedError) as info:
        driver.set_amplitude(1, 4.25)
    assert info.value.code is ErrorCode.LIMIT
    with pytest.raises(DeviceRejectedError) as info:
        driver.configure(2, ChannelSettings(frequency_hz=200, pulse_width_us=200))
    assert info.value.code is ErrorCode.LIMIT
    assert device.record.max_level() == 4
    assert driver.connected
    driver.close()


def test_a_value_the_wire_cannot_carry_writes_no_byte(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    frames_in = device.frames_in
    with pytest.raises(CommandValueError):
        driver.request_amplitude(1, -2)
    with pytest.raises(CommandValueError):
        driver.request_amplitude(7, 2)
    assert device.frames_in == frames_in
    driver.close()


def test_garbled_commands_are_retransmitted(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    device.inject("garble", direction="device", count=2)
    driver.set_amplitude(1, 5)
    assert device.record.level_at(1, clock.now()) == 5
    assert driver.connected
    driver.close()


def test_device_silence_ends_in_comms_lost_and_stop(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.inject("mute")  # the device stops talking but still listens
    muted = clock.now()
    clock.advance(3.0)
    (lost,) = reports.events(DeviceEventKind.COMMS_LOST)
    assert lost.time <= muted + 1.0 + 1e-6
    zero = device.record.all_zero_at(muted)
    assert zero is not None
    assert zero <= muted + 1.0 + 0.01  # the host's STOP (the device still listens)
    with pytest.raises(CommsLostError):
        driver.set_amplitude(1, 1)
    driver.close()


def test_unplug_is_comms_lost_and_the_device_watchdog_zeroes(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.inject("disconnect")
    gone = clock.now()
    clock.advance(2.0)
    assert len(reports.events(DeviceEventKind.COMMS_LOST)) == 1
    assert not driver.connected
    zero = device.record.all_zero_at(gone)
    assert zero is not None
    assert zero <= gone + 1.0 + 0.01
    driver.close()


def test_reconnect_after_unplug_never_resumes(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    device.inject("disconnect")
    clock.advance(0.2)
    assert not driver.connected
    device.inject("reconnect")
    reconnected_at = clock.now()
    info = driver.reconnect()
    assert info.is_simulator
    assert driver.connected
    assert sim_device(driver) is device
    # a quick replug: the device was still delivering; reconnect's STOP zeroed it at once
    assert device.record.level_at(1, reconnected_at) == 4
    zero = device.record.all_zero_at(reconnected_at)
    assert zero is not None
    assert zero <= reconnected_at + 0.1
    clock.advance(30.0)
    assert device.record.max_any_between(zero, clock.now()) == 0
    # and the host may start again, from zero
    driver.configure(1, SETTINGS)
    driver.start()
    assert device.record.level_at(1, clock.now()) == 0
    driver.close()


def test_lead_off_and_reset_events_reach_the_host(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device.inject("leadoff", channel=1)
    clock.advance(0.1)
    (lead_off,) = reports.events(DeviceEventKind.LEAD_OFF)
    assert lead_off.channel == 1
    assert device.record.level_at(1, lead_off.time) == 0
    device.inject("reset")
    clock.advance(0.1)
    assert reports.events(DeviceEventKind.DEVICE_RESET)
    assert driver.connected
    driver.close()


def test_exit_guard_stops_the_simulator(clock: VirtualClock) -> None:
    driver, device = open_running(clock)
    assert device.record.level_at(1, clock.now()) == 4
    exit_guard.stop_all()
    assert device.record.level_at(1, clock.now()) == 0
    assert not driver.connected


def test_real_time_reader_thread_and_unplug() -> None:
    """The same driver on a RealClock: reader thread, clock thread, unplug mid-session."""
    clock = RealClock()
    try:
        reports = Reports()
        driver = TspDriver.open("sim://tsp?seed=4", clock)
        driver.add_report_handler(reports)
        device = sim_device(driver)
        driver.configure(1, SETTINGS)
        driver.start()
        driver.set_amplitude(1, 1)
        assert clock.wait_until(lambda: len(reports.telemetry()) >= 4, 5.0)
        device.inject("disconnect")
        assert clock.wait_until(lambda: bool(reports.events(DeviceEventKind.COMMS_LOST)), 5.0)
        assert not driver.connected
        driver.close()
        # the device's own watchdog zeroes the output (nothing reaches it any more)
        assert clock.wait_until(lambda: device.record.level_at(1, clock.now()) == 0, 5.0)
        assert len(reports.events(DeviceEventKind.COMMS_LOST)) == 1
    finally:
        clock.close()
