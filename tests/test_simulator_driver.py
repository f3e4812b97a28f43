"""The TSP driver against the simulator, three ways: in-process ``sim://`` (virtual time), a
``tens-sim`` subprocess on a pty and on TCP (real time). Every assertion about output is made
on what the simulated device delivered: its record, in-process or from ``tens-sim --record``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings, DeviceEvent, DeviceEventKind, Report
from drivers.clock import Clock, RealClock, VirtualClock
from drivers.tsp.driver import TspDriver
from simulator.faults import FaultKind
from simulator.firmware import DeliveredRecord
from simulator.protocol_sim import Serial as SimSerial
from simulator.testing import ramp_driver
from tests.sim_process import SimProcess, first_line, start_tens_sim

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
RAMP_MA = (1.0, 2.0, 3.0)
STEP_S = 0.55
"""One step at a time, each a little more than the device's 500 ms ramp interval apart (S15)."""


@dataclass
class Timeline:
    started: float
    stop_sent: float
    stop_acked: float


def scenario(driver: TspDriver, clock: Clock) -> Timeline:
    """Identify, configure, start, ramp a few mA, stop."""
    info = driver.identify()
    assert info.reported_simulator  # the device says so ...
    assert info.is_simulator is driver.url.startswith("sim://")  # ... only the URL decides (S17)
    driver.configure(1, CONVENTIONAL)
    driver.start()
    started = clock.now()
    for milliamps in RAMP_MA:
        driver.set_amplitude(1, milliamps)
        clock.sleep(STEP_S)
    stop_sent = clock.now()
    driver.stop()
    stop_acked = clock.now()
    return Timeline(started, stop_sent, stop_acked)


def check_delivered(record: DeliveredRecord, timeline: Timeline) -> None:
    """What the device delivered: the ramp, nothing more, and 0 once the stop was answered."""
    assert [d.ma for d in record.changes(1)] == [*RAMP_MA, 0.0]
    assert record.max_level(2) == 0.0
    assert record.max_between(1, 0.0, timeline.stop_acked) == max(RAMP_MA)
    zero = record.zero_at(1, timeline.stop_sent)
    assert zero is not None
    assert timeline.stop_sent <= zero <= timeline.stop_acked
    steps = record.steps(1)
    assert all(after - before <= 1.0 for _, before, after in steps)  # never above a 1 mA step


# --------------------------------------------------------------------------- in-process sim://


def test_scenario_over_sim_url_in_virtual_time() -> None:
    clock = VirtualClock()
    driver = TspDriver.open("sim://tsp?seed=2", clock)
    port = driver.port
    assert isinstance(port, SimSerial)
    device = port.device
    timeline = scenario(driver, clock)
    driver.close()
    check_delivered(device.record, timeline)
    assert timeline.stop_acked - timeline.stop_sent == pytest.approx(0.002)  # 1 ms each way
    clock.advance(5.0)  # nothing comes back after close
    assert device.record.max_between(1, timeline.stop_acked, clock.now()) == 0.0


def test_the_device_watchdog_zeroes_output_when_the_host_goes_silent() -> None:
    clock = VirtualClock()
    driver = TspDriver.open("sim://tsp?seed=3", clock)
    port = driver.port
    assert isinstance(port, SimSerial)
    device = port.device
    reports: list[Report] = []
    driver.add_report_handler(reports.append)
    driver.configure(1, CONVENTIONAL)
    driver.start()
    ramp_driver(driver, 1, 4.0)
    clock.sleep(2.0)  # the keep-alive holds the output on
    assert device.firmware.delivered(1) == 4.0
    # from now on nothing the host sends reaches the device: to the device, the host is silent
    device.inject(FaultKind.DROP, count=1_000_000)
    silent_from = clock.now()
    clock.sleep(3.0)
    zero = device.record.zero_at(1, silent_from)
    assert zero is not None
    assert zero - silent_from <= 1.0
    assert device.firmware.events[-1].kind is DeviceEventKind.WATCHDOG_TRIP
    assert device.record.max_between(1, zero, clock.now()) == 0.0
    lost = [
        r for r in reports if isinstance(r, DeviceEvent) and r.kind is DeviceEventKind.COMMS_LOST
    ]
    assert len(lost) == 1
    assert not driver.connected
    driver.close()


def test_the_host_ends_on_comms_loss_when_the_device_goes_silent() -> None:
    clock = VirtualClock()
    driver = TspDriver.open("sim://tsp?seed=4", clock)
    port = driver.port
    assert isinstance(port, SimSerial)
    device = port.device
    reports: list[Report] = []
    driver.add_report_handler(reports.append)
    driver.configure(1, CONVENTIONAL)
    driver.start()
    ramp_driver(driver, 1, 6.0)
    device.inject(FaultKind.MUTE)  # the device still obeys but says nothing
    muted = clock.now()
    clock.sleep(3.0)
    lost = [
        r for r in reports if isinstance(r, DeviceEvent) and r.kind is DeviceEventKind.COMMS_LOST
    ]
    assert len(lost) == 1
    assert lost[0].time - muted <= 1.0
    assert not driver.connected
    # the host's best-effort STOP reached the device
    zero = device.record.zero_at(1, muted)
    assert zero is not None
    assert zero - muted <= 1.0 + 0.01
    driver.close()


def test_unplugging_the_port_is_a_comms_loss_and_the_device_zeroes_itself() -> None:
    clock = VirtualClock()
    driver = TspDriver.open("sim://tsp?seed=5", clock)
    port = driver.port
    assert isinstance(port, SimSerial)
    device = port.device
    reports: list[Report] = []
    driver.add_report_handler(reports.append)
    driver.configure(2, CONVENTIONAL)
    driver.start()
    ramp_driver(driver, 2, 5.0)
    device.inject(FaultKind.DISCONNECT)
    gone = clock.now()
    clock.sleep(2.0)
    assert any(isinstance(r, DeviceEvent) and r.kind is DeviceEventKind.COMMS_LOST for r in reports)
    zero = device.record.zero_at(2, gone)
    assert zero is not None
    assert zero - gone <= 1.0 + 0.01
    driver.close()


# --------------------------------------------------------------------------- tens-sim subprocess


@pytest.fixture
def sim_pty(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(tmp_path, "--pty", "--seed", "7")


@pytest.fixture
def sim_tcp(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(tmp_path, "--tcp", "127.0.0.1:0", "--seed", "7")


def _run_scenario_against(sim: SimProcess) -> None:
    clock = RealClock()
    try:
        driver = TspDriver.open(sim.url, clock)
        try:
            timeline = scenario(driver, clock)
        finally:
            driver.close()
        check_delivered(sim.delivered(), timeline)
    finally:
        clock.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_scenario_over_a_pty_to_tens_sim(sim_pty: SimProcess) -> None:
    assert sim_pty.url.startswith("/dev/")
    _run_scenario_against(sim_pty)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_scenario_over_tcp_to_tens_sim(sim_tcp: SimProcess) -> None:
    assert sim_tcp.url.startswith("socket://127.0.0.1:")
    _run_scenario_against(sim_tcp)


HOST_SCRIPT = """
import sys, time
from drivers.base import ChannelSettings
from drivers.clock import RealClock
from drivers.tsp.driver import TspDriver
clock = RealClock()
driver = TspDriver.open(sys.argv[1], clock)
driver.configure(1, ChannelSettings(frequency_hz=80, pulse_width_us=200))
driver.start()
driver.set_amplitude(1, 1.0)
time.sleep(0.6)
driver.set_amplitude(1, 2.0)
print("running", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_host_killed_mid_session_leaves_the_device_at_zero_within_its_watchdog(
    sim_pty: SimProcess,
) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, sim_pty.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first_line(host, 20.0) == "running"
        assert sim_pty.delivered().level_at(1, time.monotonic()) == 2.0
        killed = time.monotonic()
        os.kill(host.pid, signal.SIGKILL)
        host.wait(timeout=10)
        deadline = killed + 10.0
        while time.monotonic() < deadline:
            zero = sim_pty.delivered().zero_at(1, killed)
            if zero is not None:
                break
            time.sleep(0.05)
        assert zero is not None, "the device never zeroed its output"
        # 1 s watchdog after the last frame the host sent (which was before the kill);
        # generous slack for a loaded machine's scheduling, the bound that matters is above 0
        assert zero - killed <= 1.0 + 1.0
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
