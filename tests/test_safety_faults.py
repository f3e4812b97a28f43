"""Fault campaign: every simulator fault at seeded random moments of a running session.

Each case runs governor + real driver + simulated unit in virtual time, injects one fault
and checks, on the SIMULATOR'S DELIVERED RECORD, that output is 0 within the fault's deadline
and that the governor reports the right reason and event (S7 <= 100 ms, S8 <= 1 s plus the
time the next frame is due, S9 within two readings, S10 <= 50 ms). Faults a session should
survive (a duplicated frame, a low battery) must leave the output exactly as it was.
After each case the general invariants of ``test_safety_stateful`` are checked as well.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drivers import exit_guard
from drivers.safety import GovernorState, SafetyEventKind, StopReason
from simulator.faults import Direction, FaultKind
from tests.test_safety_stateful import (
    COMMS_DEADLINE_S,
    CONVENTIONAL,
    LEAD_OFF_DEADLINE_S,
    MARGIN_S,
    PROTOCOLS,
    READBACK_DEADLINE_S,
    STOP_DEADLINE_S,
    Harness,
    SimProtocol,
)


@pytest.fixture(autouse=True)
def _no_leftover_drivers() -> Iterator[None]:
    """A failing case must not leave drivers in the exit guard (they would STOP at exit)."""
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


SEEDS = (11, 23, 42)


@dataclass(frozen=True)
class Case:
    """One fault and what must follow it."""

    kind: FaultKind
    reasons: frozenset[StopReason]
    """Allowed ways the session stops or pauses; empty: it must go on untouched."""
    event: SafetyEventKind | None = None
    """An event the governor must report."""
    pause: bool = False
    """The session pauses (lead-off) rather than ends."""
    may_survive: bool = False
    """A link fault that may hit a frame nobody waits for (telemetry): going on is fine."""
    direction: Direction | None = None
    value: float | None = None

    @property
    def id(self) -> str:
        extra = f"-{self.direction.value}" if self.direction else ""
        return f"{self.kind.value}{extra}"

    def deadline(self, protocol: SimProtocol) -> float:
        kind = self.kind
        if kind in (FaultKind.STUCK, FaultKind.JUMP):
            return READBACK_DEADLINE_S
        if kind is FaultKind.DRIFT:
            return (self.value or 0.0) + LEAD_OFF_DEADLINE_S
        if kind is FaultKind.BATTERY_LOW:
            return max(LEAD_OFF_DEADLINE_S, protocol.battery_report_s + MARGIN_S)
        if kind in (FaultKind.MUTE, FaultKind.LATE):
            return protocol.silence_deadline_s
        if kind is FaultKind.DISCONNECT:
            return max(protocol.silence_deadline_s, protocol.device_watchdog_s)
        if kind in (FaultKind.DROP, FaultKind.GARBLE):
            return protocol.keepalive_s + COMMS_DEADLINE_S
        return LEAD_OFF_DEADLINE_S


COMMS = frozenset({StopReason.COMMS_LOST})
CASES: tuple[Case, ...] = (
    Case(
        FaultKind.LEAD_OFF,
        frozenset({StopReason.LEAD_OFF}),
        SafetyEventKind.LEAD_OFF,
        pause=True,
    ),
    Case(
        FaultKind.DRIFT,
        frozenset({StopReason.LEAD_OFF}),
        SafetyEventKind.LEAD_OFF,
        pause=True,
        value=2.0,
    ),
    Case(FaultKind.STUCK, frozenset({StopReason.OUTPUT_MISMATCH}), SafetyEventKind.OUTPUT_MISMATCH),
    Case(
        FaultKind.JUMP,
        frozenset({StopReason.OUTPUT_MISMATCH}),
        SafetyEventKind.OUTPUT_MISMATCH,
        value=5.0,
    ),
    Case(FaultKind.RESET, frozenset({StopReason.DEVICE_RESET}), SafetyEventKind.DEVICE_EVENT),
    Case(FaultKind.INTERNAL, frozenset({StopReason.DEVICE_FAULT}), SafetyEventKind.DEVICE_EVENT),
    Case(
        FaultKind.EMERGENCY,
        frozenset({StopReason.EMERGENCY_SWITCH}),
        SafetyEventKind.DEVICE_EVENT,
    ),
    Case(FaultKind.BATTERY_LOW, frozenset(), SafetyEventKind.DEVICE_EVENT),
    Case(FaultKind.LEAD_ON, frozenset()),
    Case(FaultKind.GARBLE, COMMS, may_survive=True, direction=Direction.DEVICE),
    Case(FaultKind.GARBLE, COMMS, may_survive=True, direction=Direction.HOST),
    Case(FaultKind.DROP, COMMS, SafetyEventKind.COMMS_LOST, direction=Direction.DEVICE),
    Case(FaultKind.DROP, COMMS, may_survive=True, direction=Direction.HOST),
    Case(FaultKind.DUPLICATE, frozenset(), direction=Direction.DEVICE),
    Case(FaultKind.DUPLICATE, frozenset(), direction=Direction.HOST),
    Case(FaultKind.LATE, COMMS, SafetyEventKind.COMMS_LOST, value=1500.0),
    Case(FaultKind.MUTE, COMMS, SafetyEventKind.COMMS_LOST),
    Case(FaultKind.DISCONNECT, COMMS, SafetyEventKind.COMMS_LOST),
)


def _params() -> list[object]:
    params: list[object] = []
    for name, protocol in sorted(PROTOCOLS.items()):
        for case in CASES:
            marks = [] if case.kind in protocol.faults else [pytest.mark.skip("not simulated")]
            for seed in SEEDS:
                params.append(
                    pytest.param(protocol, case, seed, id=f"{name}-{case.id}-{seed}", marks=marks)
                )
    return params


def _outputs(h: Harness) -> dict[int, float]:
    fw = h.device.firmware
    return {ch: fw.delivered(ch) for ch in range(1, h.protocol.channels + 1)}


@pytest.mark.parametrize(("protocol", "case", "seed"), _params())
def test_every_fault_ends_at_zero_within_its_deadline_with_the_right_reason(
    protocol: SimProtocol, case: Case, seed: int
) -> None:
    rng = random.Random(f"{case.id}:{seed}")
    h = Harness(protocol, seed, {1: 25.0, 2: 25.0})
    h.session(CONVENTIONAL, duration_s=600)
    # a device that sees a lead-off only above some current: the fault comes at a settled
    # level it can see (below it, see test_sciencemode4_sim: the documented residual risk)
    lead_off = case.kind in (FaultKind.LEAD_OFF, FaultKind.DRIFT) and protocol.lead_off_min_ma
    level1 = float(rng.choice([v for v in (6, 10, 20, 30) if v >= (lead_off or 0)]))
    level2 = float(rng.choice([0, 2, 4]))
    h.gov.set_target(1, level1)
    if level2:
        h.gov.set_target(2, level2)
    steady = case.kind in (FaultKind.STUCK, FaultKind.JUMP) or not case.reasons or bool(lead_off)
    if steady:  # a read-back fault shows only against a settled output
        h.clock.advance(level1 / h.gov.ramp_rate_ma_per_s + 1.0 + rng.uniform(0, 2))
        assert _outputs(h)[1] == level1
    else:  # any moment, often in the middle of the ramp
        h.clock.advance(rng.uniform(0.2, level1 / h.gov.ramp_rate_ma_per_s + 2.0))
    before = _outputs(h)
    at = h.clock.now()
    h.inject(case.kind, channel=1, value=case.value, direction=case.direction)
    if case.kind is FaultKind.STUCK:
        h.gov.set_target(1, level1 - 5.0)  # the stuck output stage ignores this decrease
    may_survive = case.may_survive or (
        case.kind is FaultKind.DROP
        and case.direction is Direction.DEVICE
        and protocol.resends_lost_commands
    )
    deadline = case.deadline(protocol)
    h.clock.run_until(at + deadline + MARGIN_S)

    stops = [
        e
        for e in h.events
        if e.time >= at and e.kind in (SafetyEventKind.PAUSED, SafetyEventKind.STOPPED)
    ]
    if not case.reasons:
        assert stops == [], f"{case.id}: the session should go on, got {stops[0]}"
        assert h.gov.state is GovernorState.RUNNING
        h.clock.advance(2.0)
        assert _outputs(h) == {1: level1, 2: level2}
    elif may_survive and not stops:
        assert h.gov.state is GovernorState.RUNNING
        h.clock.advance(2.0)
        survived = h.gov.state is GovernorState.RUNNING
        if survived:  # the fault hit a frame nobody was waiting for
            assert _outputs(h)[1] >= before[1]
    else:
        assert stops, f"{case.id} at t={at:.3f}: no stop or pause within {deadline:.3f} s"
        first = stops[0]
        assert first.time <= at + deadline + MARGIN_S
        assert first.reason in case.reasons, f"{case.id}: stopped as {first.reason}"
        if case.pause:
            assert first.kind is SafetyEventKind.PAUSED
        outputs = h.device.record.levels_at(at + deadline + MARGIN_S)
        assert all(v == 0.0 for v in outputs.values()), f"{case.id}: output {outputs} too late"
    if case.event is not None and (stops or not may_survive):
        assert any(e.kind is case.event and e.time >= at for e in h.events), (
            f"{case.id}: no {case.event.value} event"
        )
    h.clock.advance(3.0)
    h.check_all(set())
    h.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    "protocol", [PROTOCOLS[name] for name in sorted(PROTOCOLS)], ids=sorted(PROTOCOLS)
)
def test_emergency_stop_at_random_moments_zeroes_within_50_ms(
    protocol: SimProtocol, seed: int
) -> None:
    rng = random.Random(seed)
    h = Harness(protocol, seed, {1: 25.0, 2: 25.0})
    h.session(CONVENTIONAL, duration_s=600)
    h.gov.set_target(1, float(rng.choice([10, 20, 30])))
    h.gov.set_target(2, float(rng.choice([2, 4, 8])))
    h.clock.advance(rng.uniform(0.5, 20.0))
    assert h.device.record.max_any_between(0, h.clock.now()) > 0
    at = h.clock.now()
    h.gov.emergency_stop()
    h.clock.run_until(at + STOP_DEADLINE_S)
    zero_at = h.device.record.all_zero_at(at)
    assert zero_at is not None
    assert zero_at - at <= STOP_DEADLINE_S
    assert h.gov.end_reason is StopReason.EMERGENCY
    h.clock.advance(5.0)
    assert h.device.record.max_any_between(at + STOP_DEADLINE_S, h.clock.now()) == 0.0
    h.check_all(set())
    h.close()
