"""Stateful property test: random driver commands and link/device faults on ``sim://tsp``.

Whatever happens, on the simulator's delivered record:
* a stop that the device acknowledged left every output at 0;
* after a reconnect every output is 0 until the host raises it again;
* nothing above the device's limit is ever delivered;
and the driver only ever raises :class:`~drivers.base.DriverError`, and reports comms loss at
most once per connection.
"""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import simulator  # noqa: F401  (registers sim://)
from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    DeviceEvent,
    DeviceEventKind,
    DriverError,
    Report,
)
from drivers.clock import VirtualClock
from drivers.tsp.driver import TspDriver
from simulator.device import SimDevice
from simulator.protocol_sim import Serial as SimSerial

SETTINGS = ChannelSettings(frequency_hz=80, pulse_width_us=200)
FAULTS = ["garble", "drop", "dup", "late", "leadoff", "reset", "mute", "disconnect"]


class DriverOnSim(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.driver = TspDriver.open("sim://tsp?seed=7", self.clock)
        port = self.driver.port
        assert isinstance(port, SimSerial)
        self.device: SimDevice = port.device
        self.lost_events = 0
        self.connections = 1
        self.driver.add_report_handler(self._on_report)
        self.max_ma = 100.0

    def _on_report(self, report: Report) -> None:
        if isinstance(report, DeviceEvent) and report.kind is DeviceEventKind.COMMS_LOST:
            self.lost_events += 1

    def _level(self) -> float:
        return max(self.device.record.levels_at(self.clock.now()).values())

    # ---- commands
    @rule(channel=st.integers(1, 2))
    def configure(self, channel: int) -> None:
        with contextlib.suppress(DriverError):
            self.driver.configure(channel, SETTINGS)

    @rule()
    def start(self) -> None:
        with contextlib.suppress(DriverError):
            self.driver.start()

    @rule(channel=st.integers(1, 2), steps=st.integers(0, 220))
    def amplitude(self, channel: int, steps: int) -> None:
        with contextlib.suppress(DriverError):
            self.driver.set_amplitude(channel, steps * 0.5)

    @rule()
    def stop(self) -> None:
        was_connected = self.driver.connected
        try:
            self.driver.wait(self.driver.request_stop())
        except DriverError:
            return
        assert was_connected
        assert self._level() == 0

    @rule(seconds=st.sampled_from([0.05, 0.3, 0.9, 2.5]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(kind=st.sampled_from(FAULTS), direction=st.sampled_from(["device", "host"]))
    def fault(self, kind: str, direction: str) -> None:
        if kind in ("garble", "drop", "dup"):
            self.device.inject(kind, direction=direction)
        elif kind == "mute":
            self.device.inject(kind, value=1.5)
        elif kind == "leadoff":
            self.device.inject(kind, channel=1)
        else:
            self.device.inject(kind)

    @precondition(lambda self: not self.driver.connected)
    @rule()
    def reconnect(self) -> None:
        self.device.inject("reconnect")
        self.connections += 1  # an attempt that fails may report comms lost once too
        try:
            self.driver.reconnect()
        except DriverError:
            return
        assert self._level() == 0

    # ---- invariants
    @invariant()
    def never_above_the_device_limit(self) -> None:
        assert self.device.record.max_level() <= self.max_ma

    @invariant()
    def comms_lost_at_most_once_per_connection(self) -> None:
        assert self.lost_events <= self.connections

    def teardown(self) -> None:
        self.driver.close()
        exit_guard.unregister(self.driver)
        self.device.inject("reconnect")
        self.clock.advance(2.0)
        # closed: the host's STOP or, if it could not get through, the device's watchdog
        assert self._level() == 0


TestDriverOnSim = DriverOnSim.TestCase
TestDriverOnSim.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, derandomize=True
)
