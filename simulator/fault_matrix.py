"""The single-fault matrix (DESIGN.md S14): one link fault at the worst moment of a safety command.

Every case runs the real driver of a protocol under the safety governor against the simulated
unit, on a virtual clock, with a 5 ms line each way (the line of issue 11's measurements). Both
channels are raised (10 mA and 6 mA, ramped), then one safety command is given -- emergency
stop, stop, pause, or one channel set to 0 -- with ONE fault of the link:

* a frame **dropped**, **garbled**, **duplicated** or **delayed** (300 ms), in either direction
  (``device``: a frame the host sends; ``host``: a frame the device sends);
* armed at one of three moments: **before** the command (it hits the command's own frame, or
  the command's acknowledgement), while the command's frames are **in flight** (they are hit on
  arrival), or while its **acknowledgement is in flight** (the device has already obeyed).

Each case is judged on the simulator's delivered record, never on what the host believes:
every channel the command zeroes is at 0 mA within :data:`DEADLINE_S` (S10's 50 ms) and stays
there (until the end of the case: nothing resumes by itself), the channel a set-to-0 leaves
alone keeps its level, and no channel ever rose by more than one ramp step (S2/S15).

``tests/test_single_fault.py`` runs the whole matrix; ``bench/campaign.py`` runs it too (its
"single fault" part), and ``bench/p1_estop.py`` measures the stop with one frame lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings, TensDriver
from drivers.clock import VirtualClock
from drivers.limits import get_profile
from drivers.safety import GovernorEvent, SafetyGovernor
from drivers.sciencemode2.driver import ScienceMode2Driver
from drivers.sciencemode4.driver import ScienceMode4Driver
from drivers.tsp.driver import TspDriver
from simulator.device import SimDevice
from simulator.faults import Direction, FaultKind

LATENCY_MS = 5.0
DEADLINE_S = 0.050
"""S10 and S14: stop, emergency stop, pause and set-to-0 reach 0 mA within 50 ms, also after
one lost or damaged frame."""
DELAY_MS = 300.0
LEVELS = {1: 10.0, 2: 6.0}
CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
AREAS = {1: 25.0, 2: 25.0}
WATCH_S = 3.0
"""How long each case watches the record after the command."""

COMMANDS = ("emergency_stop", "stop", "pause", "set_zero")
FAULTS: tuple[tuple[FaultKind, Direction], ...] = tuple(
    itertools.product(
        (FaultKind.DROP, FaultKind.GARBLE, FaultKind.DUPLICATE, FaultKind.LATE),
        (Direction.DEVICE, Direction.HOST),
    )
)
MOMENTS = ("before", "in_flight", "ack_in_flight")


@dataclass(frozen=True)
class Protocol:
    name: str
    url: str
    profile: str
    open: Callable[[str, VirtualClock], TensDriver]


PROTOCOLS: dict[str, Protocol] = {
    "tsp": Protocol(
        "tsp", f"sim://tsp?seed={{seed}}&latency_ms={LATENCY_MS:g}", "tens-sim", TspDriver.open
    ),
    "sciencemode2": Protocol(
        "sciencemode2",
        f"sim://sciencemode2?seed={{seed}}&latency_ms={LATENCY_MS:g}",
        "rehastim2",
        ScienceMode2Driver.open,
    ),
    "sciencemode4": Protocol(
        "sciencemode4",
        f"sim://sciencemode4?seed={{seed}}&latency_ms={LATENCY_MS:g}",
        "p24",
        ScienceMode4Driver.open,
    ),
}


@dataclass(frozen=True)
class Case:
    protocol: str
    command: str
    fault: FaultKind
    direction: Direction
    moment: str
    seed: int = 1

    @property
    def id(self) -> str:
        fault = f"{self.fault.value}-{self.direction.value}"
        return f"{self.protocol}-{self.command}-{fault}-{self.moment}"


@dataclass
class Outcome:
    case: Case
    time_to_zero_s: float | None = None
    """From the command to every channel it zeroes at 0 mA (None: never)."""
    violations: list[str] = field(default_factory=list)


def cases(protocols: tuple[str, ...] = tuple(PROTOCOLS), seed: int = 1) -> Iterator[Case]:
    for protocol, command, (fault, direction), moment in itertools.product(
        protocols, COMMANDS, FAULTS, MOMENTS
    ):
        yield Case(protocol, command, fault, direction, moment, seed)


def _device(driver: TensDriver) -> SimDevice:
    device = getattr(driver.port, "device", None)  # type: ignore[attr-defined]
    assert isinstance(device, SimDevice)
    return device


def _arm(device: SimDevice, case: Case) -> None:
    value = DELAY_MS if case.fault is FaultKind.LATE else None
    device.inject(case.fault, direction=case.direction, value=value)


def run_case(case: Case) -> Outcome:
    """One cell of the matrix; the outcome lists every rule the delivered record broke."""
    spec = PROTOCOLS[case.protocol]
    clock = VirtualClock()
    events: list[GovernorEvent] = []
    driver = spec.open(spec.url.format(seed=case.seed), clock)
    governor = SafetyGovernor(
        driver, get_profile(spec.profile), clock, on_event=events.append, electrode_areas_cm2=AREAS
    )
    outcome = Outcome(case)
    try:
        governor.connect()
        for channel in LEVELS:
            governor.configure(channel, CONVENTIONAL)
        governor.start(600.0)
        for channel, level in LEVELS.items():
            governor.set_target(channel, level)
        clock.advance(max(LEVELS.values()) / governor.ramp_rate_ma_per_s + 2.0)
        device = _device(driver)
        record = device.record
        for channel, level in LEVELS.items():
            if record.level_at(channel, clock.now()) != level:
                outcome.violations.append(f"setup: channel {channel} never reached {level} mA")
                return outcome
        line = LATENCY_MS / 1000.0
        if case.moment == "before":
            _arm(device, case)
        t0 = clock.now()
        if case.command == "emergency_stop":
            governor.emergency_stop()
        elif case.command == "stop":
            governor.stop()
        elif case.command == "pause":
            governor.pause()
        else:
            governor.set_target(1, 0.0)
        if case.moment == "in_flight":
            clock.advance(line / 2)  # the command's frames are on the wire
            _arm(device, case)
        elif case.moment == "ack_in_flight":
            clock.advance(line * 1.5)  # the device obeyed; its answer is on the wire
            _arm(device, case)
        clock.run_until(t0 + WATCH_S)
        _judge(outcome, record, t0, clock.now(), governor.ramp_step_ma)
    finally:
        governor.close()
    return outcome


def _judge(outcome: Outcome, record: object, t0: float, end: float, ramp_step: float) -> None:
    from simulator.firmware import DeliveredRecord

    assert isinstance(record, DeliveredRecord)
    case = outcome.case
    zeroed = (1,) if case.command == "set_zero" else tuple(LEVELS)
    latest = 0.0
    for channel in zeroed:
        zero = record.zero_at(channel, t0)
        if zero is None:
            outcome.violations.append(f"channel {channel} never reached 0 mA")
            outcome.time_to_zero_s = None
            return
        latest = max(latest, zero - t0)
        if record.max_between(channel, zero, end) > 0.0:
            outcome.violations.append(f"channel {channel} delivered again after its 0 mA")
    outcome.time_to_zero_s = latest
    if latest > DEADLINE_S + 1e-9:
        outcome.violations.append(
            f"0 mA after {latest * 1000:.1f} ms (deadline {DEADLINE_S * 1000:.0f} ms)"
        )
    if case.command == "set_zero":
        kept = record.level_at(2, end)
        if kept not in (LEVELS[2], 0.0):  # 0: the session may end (a delayed answer is a loss)
            outcome.violations.append(f"channel 2 changed to {kept} mA")
    for channel in LEVELS:
        for when, before, after in record.steps(channel):
            if after - before > ramp_step + 1e-9:
                outcome.violations.append(
                    f"channel {channel} rose {before:g} -> {after:g} mA at t={when:.3f} "
                    f"(more than one {ramp_step:g} mA step)"
                )


__all__ = [
    "COMMANDS",
    "DEADLINE_S",
    "FAULTS",
    "MOMENTS",
    "PROTOCOLS",
    "Case",
    "Outcome",
    "cases",
    "run_case",
]
