"""Single-fault safety (DESIGN.md S14-S17), asserted on what the simulator delivered.

The matrix: every link fault (drop, garble, duplicate, delay) x both directions x every safety
command (emergency stop, stop, pause, a channel to 0) x three moments (before the frame, while
it is in flight, while its acknowledgement is in flight) x every protocol (TSP, the RehaStim 2's
ScienceMode2, the P24's ScienceMode4), on a 5 ms line
(``simulator/fault_matrix.py``). Then the cases issue 11 measured on the old code, one by one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import simulator  # noqa: F401 - registers sim://
from drivers import exit_guard
from drivers.base import ChannelSettings, IdentityError
from drivers.clock import VirtualClock
from drivers.limits import get_profile
from drivers.safety import (
    GovernorEvent,
    GovernorState,
    GovernorStateError,
    LeadOff,
    SafetyGovernor,
)
from drivers.tsp.driver import TspDriver
from simulator.fault_matrix import DEADLINE_S, Case, cases, run_case
from simulator.protocol_sim import Serial as SimSerial
from tests.sim_process import start_tens_sim

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
MATRIX = list(cases())


@pytest.fixture(autouse=True)
def _clean_exit_guard() -> Iterator[None]:
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


def test_the_matrix_covers_every_fault_command_moment_and_protocol() -> None:
    assert len(MATRIX) == 3 * 4 * 8 * 3
    assert {c.protocol for c in MATRIX} == {"tsp", "sciencemode2", "sciencemode4"}


@pytest.mark.parametrize("case", MATRIX, ids=[c.id for c in MATRIX])
def test_one_fault_at_the_worst_moment_still_zeroes_within_50_ms(case: Case) -> None:
    outcome = run_case(case)
    assert outcome.violations == []
    assert outcome.time_to_zero_s is not None
    assert outcome.time_to_zero_s <= DEADLINE_S


# --------------------------------------------------------------------------- issue 11's cases


def _running(url: str, events: list[GovernorEvent]) -> tuple[VirtualClock, SafetyGovernor]:
    clock = VirtualClock()
    driver = TspDriver.open(url, clock)
    governor = SafetyGovernor(
        driver,
        get_profile("tens-sim"),
        clock,
        on_event=events.append,
        electrode_areas_cm2={1: 25.0, 2: 25.0},
    )
    governor.connect()
    governor.configure(1, CONVENTIONAL)
    governor.start(600.0)
    return clock, governor


def _device(governor: SafetyGovernor) -> object:
    port = governor.driver.port  # type: ignore[attr-defined]
    assert isinstance(port, SimSerial)
    return port.device


def test_a_lost_lead_off_event_cannot_make_the_current_jump() -> None:
    """Issue 11: at 20 mA one device->host frame is lost (the lead-off event), the lead comes
    back, the host raises to 30: on the old code the device jumped 0 -> 21 mA in one step."""
    events: list[GovernorEvent] = []
    clock, governor = _running("sim://tsp?seed=2&latency_ms=5", events)
    device = _device(governor)
    governor.set_target(1, 20.0)
    clock.advance(12.0)
    record = device.record  # type: ignore[attr-defined]
    assert record.level_at(1, clock.now()) == 20.0
    device.inject("drop", direction="host")  # type: ignore[attr-defined]
    device.inject("leadoff", channel=1)  # type: ignore[attr-defined]
    off = clock.now()
    clock.advance(0.03)
    device.inject("leadon", channel=1)  # type: ignore[attr-defined]
    # back within one telemetry period: the telemetry still says LEADOFF (the channel was cut
    # and not set again), so the host paused within one period although the event was lost
    clock.advance(0.1)
    assert any(isinstance(e, LeadOff) and e.time <= off + 0.11 for e in events)
    assert governor.state is GovernorState.PAUSED
    clock.advance(0.3)
    with pytest.raises(GovernorStateError):  # paused: a raise is refused outright
        governor.set_target(1, 30.0)
    governor.resume()
    governor.set_target(1, 30.0)
    clock.advance(3.0)
    steps = [after - before for _, before, after in record.steps(1)]
    assert max(steps) <= 1.0  # S2/S15 on the device's side, whatever the host believed
    assert record.level_at(1, clock.now()) <= 6.0  # from 0 again, at 2 mA/s
    governor.close()


def test_the_device_refuses_a_jump_even_from_a_host_that_believes_otherwise() -> None:
    """S15 on its own: a host that skips its ramp gets ERR RAMP, and the session ends."""
    events: list[GovernorEvent] = []
    clock, governor = _running("sim://tsp?seed=3", events)
    record = _device(governor).record  # type: ignore[attr-defined]
    reply = governor.driver.request_amplitude(1, 21.0)  # past the governor, as a bug would
    clock.advance(0.1)
    assert reply.error is not None
    assert "ramp" in str(reply.error)
    assert record.max_level(1) == 0.0
    governor.close()


def test_a_device_whose_watchdog_is_too_long_is_refused() -> None:
    """S17: `tens-sim --wdms 600000` kept 6 mA on for 20+ s after the host was killed."""
    clock = VirtualClock()
    with pytest.raises(IdentityError, match=r"600000 ms watchdog.*1500 ms"):
        TspDriver.open("sim://tsp?wdms=600000", clock)
    assert exit_guard.registered() == []


def test_claims_are_not_authority_a_simulator_on_a_pty_is_a_real_device(tmp_path: Path) -> None:
    """S17: a device that says sim=1 over a real pty still needs the screening (only the
    built-in sim:// URL skips it) and is not shown as a simulator."""
    for sim in start_tens_sim(tmp_path, "--pty", "--seed", "4"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tens_control",
                "run",
                "--db",
                str(tmp_path / "db.sqlite3"),
                "--device",
                sim.url,
                "--program",
                "conventional",
                "--minutes",
                "0.05",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        delivered = sim.delivered()
    assert done.returncode != 0
    assert "screening" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert delivered.max_level() == 0.0


def test_a_killed_host_with_a_long_device_watchdog_is_refused_before_any_output(
    tmp_path: Path,
) -> None:
    """S17 end to end: `tens-control run` against `tens-sim --pty --wdms 600000` refuses with
    one clear line, and nothing is delivered."""
    for sim in start_tens_sim(tmp_path, "--pty", "--wdms", "600000"):
        screening = subprocess.run(
            [
                sys.executable,
                "-m",
                "tens_control",
                "screening",
                "--none",
                "--db",
                str(tmp_path / "db.sqlite3"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert screening.returncode == 0, screening.stderr
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tens_control",
                "run",
                "--db",
                str(tmp_path / "db.sqlite3"),
                "--device",
                sim.url,
                "--program",
                "conventional",
                "--minutes",
                "0.05",
                "--target-ma",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        delivered = sim.delivered()
    assert done.returncode != 0
    assert "watchdog" in done.stderr
    assert "Traceback" not in done.stderr
    assert delivered.max_level() == 0.0
