"""The safety governor on a RehaStim 2 (``sim://sciencemode2``), virtual time.

Every output assertion is on what the simulated device DELIVERED (its record).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

import simulator  # noqa: F401  (registers sim://)
from drivers import exit_guard
from drivers.base import ChannelSettings
from drivers.clock import VirtualClock
from drivers.limits import CapLayer, CapSource, get_profile
from drivers.safety import (
    GovernorEvent,
    GovernorState,
    SafetyEventKind,
    SafetyGovernor,
    StopReason,
)
from drivers.sciencemode2.driver import ScienceMode2Driver
from simulator.device import SimDevice
from simulator.faults import FaultKind
from simulator.protocol_sim import Serial as SimSerial

HZ100 = ChannelSettings(frequency_hz=100, pulse_width_us=200)
CAP = CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=20.0)


@pytest.fixture(autouse=True)
def _clean_exit_guard() -> Iterator[None]:
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


class Rig:
    def __init__(self, url: str = "sim://sciencemode2?seed=2") -> None:
        self.clock = VirtualClock()
        self.events: list[GovernorEvent] = []
        self.driver = ScienceMode2Driver.open(url, self.clock)
        port = self.driver.port
        assert isinstance(port, SimSerial)
        self.device: SimDevice = port.device
        self.gov = SafetyGovernor(
            self.driver,
            get_profile("rehastim2"),
            self.clock,
            on_event=self.events.append,
            layers=(CAP,),
            electrode_areas_cm2={1: 25.0, 2: 25.0},
        )

    def kinds(self) -> list[SafetyEventKind]:
        return [e.kind for e in self.events]

    def session(self, up_to: float = 0.0) -> None:
        self.gov.connect()
        self.gov.configure(1, HZ100)
        self.gov.configure(2, HZ100)
        self.gov.start(600)
        if up_to:
            self.gov.set_target(1, up_to)
            self.clock.wait_until(lambda: self.device.firmware.delivered(1) >= up_to, 60)
            assert self.device.firmware.delivered(1) == up_to

    def close(self) -> None:
        self.gov.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def test_connect_flags_no_readback_and_the_device_as_a_simulator(rig: Rig) -> None:
    info = rig.gov.connect()
    assert not info.reports_current
    assert not info.reports_impedance
    assert SafetyEventKind.NO_READBACK in rig.kinds()
    assert not rig.gov.readback
    connected = next(e for e in rig.events if e.kind is SafetyEventKind.CONNECTED)
    assert connected.simulator is True
    assert connected.protocol == "sciencemode2 1"


def test_ramp_stays_on_the_step_and_rate_and_under_the_cap(rig: Rig) -> None:
    rig.session(up_to=6.0)
    rig.gov.set_target(1, 20.0)
    rig.clock.advance(20.0)
    record = rig.device.record
    assert record.max_level(1) == 20.0
    steps = record.steps(1)
    assert all(after - before <= 1.0 for _, before, after in steps)
    rises = [t for t, before, after in steps if after > before]
    # 2 mA/s: one 1 mA step at most every 0.5 s
    assert all(b - a >= 0.5 - 1e-6 for a, b in itertools.pairwise(rises))
    assert record.max_level(2) == 0.0


def test_emergency_stop_is_zero_on_the_device_within_50_ms(rig: Rig) -> None:
    rig.session(up_to=5.0)
    pressed = rig.clock.now()
    rig.gov.emergency_stop()
    rig.clock.advance(0.05)
    zero = rig.device.record.all_zero_at(pressed)
    assert zero is not None
    assert zero - pressed <= 0.05
    assert rig.gov.end_reason is StopReason.EMERGENCY


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (FaultKind.EMERGENCY, StopReason.EMERGENCY_SWITCH),
        (FaultKind.INTERNAL, StopReason.DEVICE_FAULT),
        (FaultKind.RESET, StopReason.DEVICE_RESET),
    ],
)
def test_device_stops_end_the_session_with_the_right_reason(
    rig: Rig, fault: FaultKind, reason: StopReason
) -> None:
    rig.session(up_to=4.0)
    at = rig.clock.now()
    rig.device.inject(fault)
    rig.clock.advance(0.1)
    assert rig.gov.state is GovernorState.ENDED
    assert rig.gov.end_reason is reason
    assert rig.device.record.all_zero_at(at) == at
    rig.clock.advance(10.0)
    assert rig.device.record.max_any_between(at + 1e-6, rig.clock.now()) == 0.0


def test_a_silent_device_ends_the_session_as_comms_lost_within_a_second(rig: Rig) -> None:
    rig.session(up_to=4.0)
    at = rig.clock.now()
    rig.device.inject(FaultKind.MUTE)
    rig.clock.advance(2.0)
    assert rig.gov.end_reason is StopReason.COMMS_LOST
    stopped = next(e for e in rig.events if e.kind is SafetyEventKind.STOPPED)
    assert stopped.time - at <= 1.0 + 0.5 + 0.01  # next poll within 0.5 s, then 1 s
    assert rig.device.firmware.delivered(1) == 0.0


def test_electrode_error_zeroes_every_channel_on_the_device_within_100_ms(rig: Rig) -> None:
    rig.session(up_to=4.0)
    at = rig.clock.now()
    rig.device.inject(FaultKind.LEAD_OFF, channel=2)
    rig.clock.advance(0.1)
    assert rig.device.record.all_zero_at(at) == at
    rig.clock.advance(10.0)
    assert rig.device.record.max_any_between(at + 1e-6, rig.clock.now()) == 0.0


def test_electrode_error_pauses_the_session(rig: Rig) -> None:
    rig.session(up_to=4.0)
    rig.device.inject(FaultKind.LEAD_OFF, channel=2)
    rig.clock.advance(0.1)
    assert rig.gov.state is GovernorState.PAUSED
    rig.device.inject(FaultKind.LEAD_ON, channel=2)
    rig.gov.resume()
    assert rig.device.firmware.delivered(1) == 0.0
