"""A whole RehaStim 2 session over a pty to ``tens-sim --protocol sciencemode2`` (real time).

The simulator runs in its own process; every assertion about output is made on what it
delivered, from its ``--record`` file (times are the shared monotonic clock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers import exit_guard
from drivers.base import ChannelSettings, DeviceEvent, DeviceEventKind, Report
from drivers.clock import RealClock
from drivers.sciencemode2.driver import ScienceMode2Driver
from tests.sim_process import SimProcess, first_line, start_tens_sim

SM2 = ("--protocol", "sciencemode2", "--pty", "--seed", "5")
CONVENTIONAL = ChannelSettings(frequency_hz=100, pulse_width_us=200)
RAMP_MA = (1, 2, 3, 4, 5)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(tmp_path, *SM2, channels=8)


@pytest.fixture
def sim_estop(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(tmp_path, *SM2, "--fault", "estop@4", channels=8)


@pytest.fixture(autouse=True)
def _clean_exit_guard() -> Iterator[None]:
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_full_session_over_a_pty(sim: SimProcess) -> None:
    clock = RealClock()
    events: list[Report] = []
    try:
        driver = ScienceMode2Driver.open(sim.url, clock)
        driver.add_report_handler(events.append)
        try:
            info = driver.info
            assert (info.model, info.reports_current, info.reports_impedance) == (
                "RehaStim 2",
                False,
                False,
            )
            driver.configure(1, CONVENTIONAL)
            driver.configure(2, ChannelSettings(frequency_hz=50, pulse_width_us=250))
            driver.start()
            for ma in RAMP_MA:
                driver.set_amplitude(1, ma)
                time.sleep(0.2)
            time.sleep(2.0)  # the caller idles longer than the device watchdog: keep-alive
            assert driver.connected
            stop_sent = time.monotonic()
            driver.stop()
            stop_acked = time.monotonic()
        finally:
            driver.close()
        time.sleep(2.0)  # host gone: the device's watchdog expires, output must stay 0
        record = sim.delivered()
        assert [d.ma for d in record.changes(1)] == [*map(float, RAMP_MA), 0.0]
        assert all(after - before <= 1.0 for _, before, after in record.steps(1))
        assert record.max_level(2) == 0.0
        held = record.level_at(1, stop_sent - 0.01)
        assert held == 5.0  # still on after 2 s of caller silence
        zero = record.zero_at(1, stop_sent)
        assert zero is not None
        assert stop_sent <= zero <= stop_acked
        assert record.max_between(1, zero, time.monotonic()) == 0.0
        bad = [e for e in events if isinstance(e, DeviceEvent)]
        assert bad == []
    finally:
        clock.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_emergency_switch_over_a_pty_ends_output(sim_estop: SimProcess) -> None:
    clock = RealClock()
    events: list[Report] = []
    try:
        driver = ScienceMode2Driver.open(sim_estop.url, clock)
        driver.add_report_handler(events.append)
        try:
            driver.configure(1, CONVENTIONAL)
            driver.start()
            driver.set_amplitude(1, 1)
            driver.set_amplitude(1, 2)

            def pressed() -> bool:
                return any(
                    isinstance(e, DeviceEvent) and e.kind is DeviceEventKind.EMERGENCY_SWITCH
                    for e in events
                )

            _wait_for(pressed, 15.0)
            assert pressed()
            assert driver.amplitudes() == {1: 0}
        finally:
            driver.close()
        record = sim_estop.delivered()
        assert record.max_level(1) == 2.0
        assert record.level_at(1, time.monotonic()) == 0.0
    finally:
        clock.close()


HOST_SCRIPT = """
import sys, time
from drivers.base import ChannelSettings
from drivers.clock import RealClock
from drivers.sciencemode2.driver import ScienceMode2Driver
clock = RealClock()
driver = ScienceMode2Driver.open(sys.argv[1], clock)
driver.configure(1, ChannelSettings(frequency_hz=100, pulse_width_us=200))
driver.start()
driver.set_amplitude(1, 1)
driver.set_amplitude(1, 2)
print("running", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_killed_host_leaves_the_device_at_zero_within_its_watchdog(sim: SimProcess) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, sim.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first_line(host, 30.0) == "running"
        assert sim.delivered().level_at(1, time.monotonic()) == 2.0
        killed = time.monotonic()
        os.kill(host.pid, signal.SIGKILL)
        host.wait(timeout=10)
        _wait_for(lambda: sim.delivered().zero_at(1, killed) is not None, 10.0)
        zero = sim.delivered().zero_at(1, killed)
        assert zero is not None, "the device never zeroed its output"
        # 1.2 s watchdog after the host's last frame (sent before the kill); slack for a
        # loaded machine -- the bound that matters is that it happens at all, by itself
        assert zero - killed <= 1.2 + 1.0
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
