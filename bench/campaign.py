"""The reliability campaign (DESIGN.md §11): faults, crashes and bad input, with a verdict.

Four parts, every one seeded (``--seed``), every check made on what the simulated device
DELIVERED (its record) and on the stored log, never on what the host believes:

0. **Single fault.** The matrix of ``simulator/fault_matrix.py`` (DESIGN.md S14): one frame
   dropped, garbled, duplicated or delayed, either way, before / in flight / while the
   acknowledgement is in flight, at each safety command (emergency stop, stop, pause, a channel
   to 0), every protocol (TSP, ScienceMode2, ScienceMode4), a 5 ms line: every zeroed channel
   at 0 mA within 50 ms and staying there, no rise above one ramp step.
1. **Faults.** Every fault kind of the simulator (``simulator.faults.FaultKind``) x random
   injection moments x every protocol (``sim://tsp``, ``sim://sciencemode2`` and
   ``sim://sciencemode4``), each run in virtual time through the ``SafetyGovernor`` on the real
   driver, and again through the whole ``SessionController`` with its SQLite store. A running
   session ramps channel 1 to 10 mA and channel 2 to 8 mA (on the P24, which sees an electrode
   come off only from 15 mA, to 20 and 16 mA) under a 40 mA prescription cap; the fault comes at
   a random moment. Each scenario must end with every output at 0 within the fault's deadline
   (S7 100 ms, S8
   1-2.5 s, S9 350 ms, device faults at once), stay at 0 afterwards, never exceed the cap
   (a device's own amplitude jump may last until read-back stops it), and end with the right
   reason in the log (see :data:`EXPECT`).
2. **Crashes.** ``tens-control run`` against ``tens-sim --pty`` in real time, SIGKILLed at a
   random moment mid-session: the device must zero its output within its watchdog (1 s; the
   emulated P24's 2 s keep-alive timeout, the documented S17 exception) plus scheduling slack,
   the database must pass ``PRAGMA integrity_check``, the next start must close the session as
   host crash, and every safety event the run reported as committed
   (``--print-log``) must still be in the database.
3. **Bad input.** Random and mutated bytes into every decoder (TSP frames and messages,
   ScienceMode2 and ScienceMode4 frames and payloads) and into every file format the program
   reads (device profiles, prescriptions, the settings file, exported bundles): only each
   reader's own clear
   error type may come out, and random bytes sent to the simulated device never make it
   deliver current.

It prints a table -- scenarios run, faults injected, violations, events lost -- and exits 1 if
there is any violation or lost event. ``--quick`` is the bounded budget CI runs
(``tests/test_campaign.py``). Run: ``python bench/campaign.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import benchlib

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings, FramingError
from drivers.clock import VirtualClock
from drivers.limits import CapLayer, CapSource
from drivers.safety import (
    GovernorEvent,
    GovernorState,
    SafetyEventKind,
    SafetyGovernor,
    StopReason,
)
from simulator import fault_matrix
from simulator.device import SimDevice
from simulator.faults import Direction, FaultKind
from simulator.firmware import DeliveredRecord
from tens_control.device import OpenedDevice, open_device
from tens_control.prescription import Prescription, dump_prescription, prescription_from_dict
from tens_control.session import END_REASON_FOR_STOP, SessionController, SessionState
from tens_control.store import Store
from tens_control.store.records import EndReason
from tens_control.store.store import virtual_wall_clock
from tens_control.trust.demo import enrol_and_prescribe

PROTOCOLS = ("tsp", "sciencemode2", "sciencemode4")
CAP_MA = 40.0
TARGETS = {1: 10.0, 2: 8.0}
TARGETS_FOR = {"sciencemode4": {1: 20.0, 2: 16.0}}
"""Where a device sees a lead-off only above a current (the P24: 15 mA), the session goes
there, so that detection is exercised; LEAD_OFF_MIN_MA says which must then pause."""
LEAD_OFF_MIN_MA = {"sciencemode4": 15.0}
SESSION_S = 90.0
CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
EPS = 1e-6
MARGIN_S = 0.01
"""The simulated line's latency (1 ms each way) and scheduling, with room to spare."""
STUCK_DECREASE_AFTER_S = 1.0
"""A stuck output shows only when the host lowers it: the scenario lowers channel 1 then."""
JUMP_LASTS_S = 0.35
"""S9: a device's own amplitude jump may last two 10 Hz readings and the STOP (DESIGN §4)."""

DRIFT_S = 20.0
"""A drifting contact reaches lead-off within this time; then S7's 100 ms apply (+ one 10 Hz
reading)."""
PAUSED_LEAD_OFF = "paused:lead_off"
COMPLETED = StopReason.DURATION.value


@dataclass(frozen=True)
class Expect:
    """What must happen after a fault: one of ``outcomes`` (a governor end reason, or
    ``paused:lead_off``), and if it stopped or paused, every output 0 within ``deadline_s``."""

    outcomes: frozenset[str]
    deadline_s: float


def _e(deadline: float, *outcomes: str) -> Expect:
    return Expect(frozenset(outcomes), deadline)


LINK_LOST = (COMPLETED, StopReason.COMMS_LOST.value)
EXPECT: dict[str, dict[FaultKind, Expect]] = {
    "tsp": {
        FaultKind.LEAD_OFF: _e(0.1, PAUSED_LEAD_OFF),
        FaultKind.LEAD_ON: _e(0.05, COMPLETED),
        FaultKind.DRIFT: _e(DRIFT_S + 0.2, PAUSED_LEAD_OFF),  # contact fails within DRIFT_S
        FaultKind.STUCK: _e(JUMP_LASTS_S, StopReason.OUTPUT_MISMATCH.value),
        FaultKind.JUMP: _e(JUMP_LASTS_S, StopReason.OUTPUT_MISMATCH.value),
        FaultKind.RESET: _e(0.05, StopReason.DEVICE_RESET.value),
        FaultKind.INTERNAL: _e(0.05, StopReason.DEVICE_FAULT.value),
        FaultKind.EMERGENCY: _e(0.05, StopReason.EMERGENCY_SWITCH.value),
        FaultKind.BATTERY_LOW: _e(0.05, COMPLETED),
        FaultKind.GARBLE: _e(2.5, *LINK_LOST),
        FaultKind.DROP: _e(2.5, *LINK_LOST),
        FaultKind.DUPLICATE: _e(2.5, *LINK_LOST),
        FaultKind.LATE: _e(2.5, *LINK_LOST),
        FaultKind.MUTE: _e(2.5, StopReason.COMMS_LOST.value),
        FaultKind.DISCONNECT: _e(1.5, StopReason.COMMS_LOST.value),
        FaultKind.RECONNECT: _e(0.05, COMPLETED),
    },
}
"""Expected outcome per protocol and fault kind (filled for sciencemode2 below)."""

_SM2 = dict(EXPECT["tsp"])
_SM2.update(
    {
        # the RehaStim 2 reports no measured current: a stuck or jumping output stage cannot
        # be seen by the host (flagged "no read-back" at connect); the check that remains is
        # the cap and the zero at the end
        FaultKind.STUCK: _e(0.05, COMPLETED),
        FaultKind.JUMP: _e(0.05, COMPLETED),
        # no impedance reports: an electrode error is the device's own stop (every channel)
        FaultKind.LEAD_OFF: _e(0.1, PAUSED_LEAD_OFF, StopReason.DEVICE_FAULT.value),
        FaultKind.DRIFT: _e(DRIFT_S + 0.2, PAUSED_LEAD_OFF, StopReason.DEVICE_FAULT.value),
        FaultKind.RESET: _e(1.5, StopReason.DEVICE_RESET.value, StopReason.COMMS_LOST.value),
    }
)
EXPECT["sciencemode2"] = _SM2

_SM4 = dict(EXPECT["tsp"])
_SM4.update(
    {
        # the P24 reports no measured current either (flagged "no read-back" at connect)
        FaultKind.STUCK: _e(0.05, COMPLETED),
        FaultKind.JUMP: _e(0.05, COMPLETED),
        # an electrode is seen off only from 15 mA: earlier in the ramp it goes unnoticed (no
        # current flows while it is off; LEAD_OFF_MIN_MA checks that a visible one pauses)
        FaultKind.LEAD_OFF: _e(0.1, PAUSED_LEAD_OFF, COMPLETED),
        FaultKind.DRIFT: _e(DRIFT_S + 0.2, PAUSED_LEAD_OFF, COMPLETED),
        # ScienceMode4 has no emergency-switch message: the emulator sends General_Error
        FaultKind.EMERGENCY: _e(0.05, StopReason.DEVICE_FAULT.value),
        FaultKind.RESET: _e(0.1, StopReason.DEVICE_RESET.value),
        # unplugged: only the device's own 2 s keep-alive timeout can stop it
        FaultKind.DISCONNECT: _e(2.1, StopReason.COMMS_LOST.value),
    }
)
EXPECT["sciencemode4"] = _SM4


@dataclass
class Tally:
    """One line of the campaign table."""

    part: str
    scenarios: int = 0
    faults: int = 0
    violations: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    """Failures of scenarios listed in :data:`KNOWN_GAPS` (reported, not counted)."""
    events_lost: int = 0
    seconds: float = 0.0

    def add(self, name: str, problems: list[str], gap: str | None) -> None:
        lines = [f"{name}: {p}" for p in problems]
        if gap is None:
            self.violations += lines
        else:
            self.known += [f"{line} [known gap: {gap}]" for line in lines]


# ============================================================================ 0. single fault


def run_single_fault(seed: int, seeds: int) -> Tally:
    """The single-fault matrix (``simulator/fault_matrix.py``, S14): every link fault x both
    directions x every safety command x three moments x every protocol, ``seeds`` times."""
    tally = Tally("single fault (S14)")
    started = time.perf_counter()
    worst = 0.0
    for n in range(seeds):
        for case in fault_matrix.cases(seed=seed + n):
            outcome = fault_matrix.run_case(case)
            tally.scenarios += 1
            tally.faults += 1
            tally.add(case.id, outcome.violations, None)
            worst = max(worst, outcome.time_to_zero_s or 0.0)
    tally.seconds = time.perf_counter() - started
    tally.part += f": worst {worst * 1000:.0f} ms to 0"
    return tally


# ============================================================================ 1. faults


@dataclass
class Scenario:
    protocol: str
    kind: FaultKind
    moment: float
    """Seconds after the start of stimulation."""
    seed: int
    direction: Direction = Direction.DEVICE

    @property
    def name(self) -> str:
        extra = f":{self.direction.value}" if self.kind in _DIRECTED else ""
        return f"{self.protocol}/{self.kind.value}{extra}@{self.moment:.2f}s seed={self.seed}"


_DIRECTED = frozenset({FaultKind.GARBLE, FaultKind.DROP, FaultKind.DUPLICATE})


def scenarios(seed: int, moments: int) -> list[Scenario]:
    rng = random.Random(f"{seed}:campaign:faults")
    out: list[Scenario] = []
    for protocol in PROTOCOLS:
        for kind in FaultKind:
            for _ in range(moments):
                latest = 40.0 if kind is FaultKind.DRIFT else SESSION_S - 10.0
                out.append(
                    Scenario(
                        protocol,
                        kind,
                        round(rng.uniform(6.0, latest), 3),
                        rng.randrange(1 << 30),
                        rng.choice((Direction.DEVICE, Direction.HOST)),
                    )
                )
    return out


def _inject(device: SimDevice, sc: Scenario) -> None:
    if sc.kind in _DIRECTED:
        device.inject(sc.kind, direction=sc.direction)
    elif sc.kind is FaultKind.DRIFT:
        device.inject(sc.kind, channel=1, value=DRIFT_S)
    else:
        device.inject(sc.kind, channel=1)


def _sim_device(opened: OpenedDevice) -> SimDevice:
    device = getattr(opened.port, "device", None)
    if not isinstance(device, SimDevice):
        raise RuntimeError("the campaign needs the in-process simulator")
    return device


def check_record(
    sc: Scenario,
    record: DeliveredRecord,
    outcome: str,
    injected: float,
    reacted: float | None,
    end: float,
) -> list[str]:
    """The delivered record against the expectations of ``sc``. ``reacted``: when the host's
    stop/pause happened (None if it never stopped before the end)."""
    problems: list[str] = []
    expect = EXPECT[sc.protocol][sc.kind]
    if outcome not in expect.outcomes:
        problems.append(f"ended as {outcome}, expected one of {sorted(expect.outcomes)}")
    # never above the cap, except a device's own jump until read-back stops it
    for ch in (1, 2):
        for t, _before, after in record.steps(ch):
            if after <= CAP_MA + EPS:
                continue
            if sc.kind is FaultKind.JUMP and injected - EPS <= t <= injected + JUMP_LASTS_S:
                continue
            problems.append(f"channel {ch} delivered {after} mA at {t:.3f} s, above the cap")
    if outcome != COMPLETED:
        start = injected
        if sc.kind is FaultKind.STUCK:
            start = injected + STUCK_DECREASE_AFTER_S
        zero = record.all_zero_at(start)
        limit = expect.deadline_s + MARGIN_S
        if zero is None or zero - start > limit:
            late = "never" if zero is None else f"after {zero - start:.3f} s"
            problems.append(f"output not 0 within {limit:.3f} s of the fault ({late})")
        elif record.max_any_between(zero + EPS, end) > 0.0:
            problems.append("output rose again after the stop")
    if reacted is not None and outcome != StopReason.COMMS_LOST.value:
        # (after a comms loss the host's STOP may not arrive: the device's watchdog zeroes it,
        # within the fault's deadline checked above)
        zero = record.all_zero_at(reacted)
        if zero is None or zero - reacted > 0.05 + MARGIN_S:
            problems.append("output not 0 within 50 ms of the host's stop")
    final = record.levels_at(end)
    if any(level > 0.0 for level in final.values()):
        problems.append(f"output at the end of the scenario: {final}")
    return problems


def governor_scenario(sc: Scenario) -> list[str]:
    """One fault through the SafetyGovernor on the real driver, in virtual time."""
    clock = VirtualClock()
    opened = open_device(f"sim://{sc.protocol}?seed={sc.seed}", clock)
    device = _sim_device(opened)
    events: list[GovernorEvent] = []
    gov = SafetyGovernor(
        opened.driver,
        opened.profile,
        clock,
        on_event=events.append,
        layers=(CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=CAP_MA),),
        electrode_areas_cm2={1: 25.0, 2: 25.0},
    )
    try:
        gov.connect()
        for ch in TARGETS:
            gov.configure(ch, CONVENTIONAL)
        gov.start(SESSION_S)
        began = clock.now()
        for ch, ma in TARGETS_FOR.get(sc.protocol, TARGETS).items():
            gov.set_target(ch, ma)
        clock.run_until(began + sc.moment)
        injected = clock.now()
        _inject(device, sc)
        if sc.kind is FaultKind.STUCK:
            clock.run_until(injected + STUCK_DECREASE_AFTER_S)
            if gov.state is GovernorState.RUNNING:
                gov.set_target(1, 4.0)
        clock.run_until(began + SESSION_S + 2.0)
        reacted: float | None = None
        outcome = "running"
        for e in events:
            if e.time < injected - EPS:
                continue
            if e.kind is SafetyEventKind.PAUSED and e.reason is StopReason.LEAD_OFF:
                outcome, reacted = PAUSED_LEAD_OFF, e.time
                break
            if e.kind is SafetyEventKind.STOPPED and e.reason is not None:
                outcome, reacted = e.reason.value, e.time
                break
        if outcome == PAUSED_LEAD_OFF:
            gov.stop()
        end = clock.now() + 0.1
        clock.run_until(end)
        return check_record(sc, device.record, outcome, injected, reacted, end) + _visible(
            sc, device, outcome
        )
    finally:
        gov.close()


def _visible(sc: Scenario, device: SimDevice, outcome: str) -> list[str]:
    """On a device that sees a lead-off only above a current: one it could see must pause."""
    limit = LEAD_OFF_MIN_MA.get(sc.protocol)
    if limit is None or sc.kind not in (FaultKind.LEAD_OFF, FaultKind.DRIFT):
        return []
    for event in device.firmware.events:
        if event.kind.value == "lead_off":
            level = device.record.level_at(event.channel or 1, event.time - EPS)
            if level >= limit and outcome != PAUSED_LEAD_OFF:
                return [f"a lead-off at {level} mA (visible from {limit} mA) ended as {outcome}"]
    return []


def _prescription() -> Prescription:
    return prescription_from_dict(
        {
            "written_by": "Dr A. Example",
            "written_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            "reason": "reliability campaign",
            "programs": ["conventional"],
            "max_amplitude_ma": CAP_MA,
            "session_minutes": 60,
            "sessions_per_day": 24,
            "habituation_prompt": False,
            "channels": [
                {"channel": 1, "site": "residual_limb", "side": "left", "pad": "5x5 cm"},
                {"channel": 2, "site": "transected_nerve", "side": "left", "pad": "5x5 cm"},
            ],
        }
    )


END_FOR_OUTCOME: dict[str, EndReason] = {
    **{reason.value: end for reason, end in END_REASON_FOR_STOP.items()},
    PAUSED_LEAD_OFF: EndReason.LEAD_OFF,
}


def controller_scenario(sc: Scenario, workdir: Path) -> tuple[list[str], int]:
    """One fault through the SessionController and its store. Returns problems and the number
    of safety events the controller reported committed that the database no longer has."""
    clock = VirtualClock()
    wall = virtual_wall_clock(clock, START)
    path = workdir / f"{sc.protocol}-{sc.kind.value}-{sc.seed}.sqlite3"
    store = Store.open(path, clock=clock, wall=wall)
    committed: list[str] = []
    problems: list[str] = []
    try:
        enrol_and_prescribe(store, _prescription())  # a demo clinic signs it
        controller = SessionController(
            store,
            clock,
            wall=wall,
            lead_off_timeout_s=20.0,
            on_logged=lambda e: committed.append(e.hash),
        )
        try:
            controller.connect(f"sim://{sc.protocol}?seed={sc.seed}")
            opened = controller.device
            assert opened is not None
            device = _sim_device(opened)
            controller.prepare("conventional", SESSION_S / 60.0)
            controller.start()
            session = controller.snapshot().session_id
            assert session is not None
            began = clock.now()
            for ch, ma in TARGETS_FOR.get(sc.protocol, TARGETS).items():
                controller.set_target(ch, ma)
            clock.run_until(began + sc.moment)
            injected = clock.now()
            _inject(device, sc)
            if sc.kind is FaultKind.STUCK:
                clock.run_until(injected + STUCK_DECREASE_AFTER_S)
                if controller.state is SessionState.RUNNING:
                    controller.set_target(1, 4.0)
            clock.run_until(began + SESSION_S + 25.0)
            if controller.state is not SessionState.ENDED:
                problems.append(f"the session did not end (state {controller.state.value})")
                controller.stop()
            end = clock.now() + 0.1
            clock.run_until(end)
            info = store.session(session)
            expect = EXPECT[sc.protocol][sc.kind]
            allowed = {END_FOR_OUTCOME[o] for o in expect.outcomes}
            if info.end_reason not in allowed:
                problems.append(
                    f"logged end reason {info.end_reason}, expected one of "
                    f"{sorted(r.value for r in allowed)}"
                )
            outcome = COMPLETED if info.end_reason is EndReason.COMPLETED else "stopped"
            for p in check_record(sc, device.record, outcome, injected, None, end):
                if not p.startswith("ended as"):
                    problems.append(p)
            controller.finish()
        finally:
            controller.close()
        stored = {e.hash for e in store.events(store.default_patient)}
        lost = sum(1 for h in committed if h not in stored)
        report = store.verify()
        if not report.ok:
            problems.append(f"the log does not verify: {report.problems[:1]}")
    finally:
        store.close()
    return problems, lost


def run_faults(
    seed: int, moments: int, controller_kinds: frozenset[FaultKind] | None, workdir: Path
) -> list[Tally]:
    """Every scenario through the governor; through the controller too for
    ``controller_kinds`` (None: every kind)."""
    gov = Tally("faults: governor + driver + simulator")
    ctl = Tally("faults: session controller + store")
    for sc in scenarios(seed, moments):
        gap = KNOWN_GAPS.get((sc.protocol, sc.kind))
        started = time.perf_counter()
        try:
            problems = governor_scenario(sc)
        except Exception as error:  # a crash of the stack under a fault is a violation
            problems = [f"raised {type(error).__name__}: {error}"]
        gov.scenarios += 1
        gov.faults += 1
        gov.add(sc.name, problems, gap)
        gov.seconds += time.perf_counter() - started
        if controller_kinds is not None and sc.kind not in controller_kinds:
            continue
        started = time.perf_counter()
        try:
            problems, lost = controller_scenario(sc, workdir)
        except Exception as error:
            problems, lost = [f"raised {type(error).__name__}: {error}"], 0
        ctl.scenarios += 1
        ctl.faults += 1
        ctl.events_lost += lost
        ctl.add(sc.name, problems, gap)
        ctl.seconds += time.perf_counter() - started
    return [gov, ctl]


# ============================================================================ 2. crashes

WATCHDOG_S = 1.0
WATCHDOG_S_FOR = {"sciencemode4": 2.0}
"""The emulated P24 stops 2 s after its last keep-alive (the S17 exception, docs/safety.md)."""
KILL_SLACK_S = 1.0
"""Scheduling slack of two busy processes on a loaded machine, beyond the 1 s watchdog."""


def _read_line(stream: Any, timeout: float) -> str:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return str(stream.readline())


def _stimulating(line: str) -> bool:
    for part in line.split():
        if part.startswith("ch1_ma="):
            try:
                return float(part.removeprefix("ch1_ma=")) > 0.0
            except ValueError:
                return False
    return False


def kill_scenario(
    index: int,
    rng: random.Random,
    sim: benchlib.SimProcess,
    workdir: Path,
    protocol: str = "tsp",
) -> tuple[list[str], int]:
    """SIGKILL one ``tens-control run`` mid-session; returns (problems, events lost)."""
    import os
    import signal
    import subprocess

    from simulator.cli import load_record

    db = workdir / f"kill-{protocol}-{index}.sqlite3"
    watchdog = WATCHDOG_S_FOR.get(protocol, WATCHDOG_S)
    env = dict(os.environ)
    env["TENS_CONTROL_CONFIG"] = str(workdir / f"config-{protocol}-{index}.toml")
    env.pop("TENS_CONTROL_DB", None)
    env.pop("TENS_CONTROL_PATIENT", None)
    # a simulator on a pty is a real device to the host (S17): the patient screens first
    subprocess.run(
        [sys.executable, "-m", "tens_control", "screening", "--none", "--db", str(db)],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tens_control",
            "run",
            "--db",
            str(db),
            "--device",
            sim.url,
            "--protocol",
            protocol,
            "--program",
            "conventional",
            "--minutes",
            "5",
            "--target-ma",
            "4",
            "--print-log",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    problems: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            line = _read_line(process.stdout, max(0.0, deadline - time.monotonic()))
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if _stimulating(line):
                break
        else:
            line = ""
        if not lines or not _stimulating(lines[-1]):
            process.kill()
            process.wait(10)
            return [f"kill {index}: the run never started stimulating ({lines[-3:]})"], 0
        time.sleep(rng.uniform(0.0, 2.5))
        killed = time.monotonic()
        process.kill()  # SIGKILL: no stop, no close, no atexit
        process.wait(10)
        lines += process.stdout.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    if process.returncode != -signal.SIGKILL:
        problems.append(f"kill {index}: the run exited with {process.returncode} before the kill")
    # the device zeroes its own output within its watchdog
    zero = None
    until = time.monotonic() + watchdog + 10.0
    while time.monotonic() < until:
        zero = load_record(sim.record, 8).all_zero_at(killed)
        if zero is not None:
            break
        time.sleep(0.05)
    if zero is None or zero - killed > watchdog + KILL_SLACK_S:
        late = "never" if zero is None else f"after {zero - killed:.3f} s"
        problems.append(f"kill {index}: the device did not zero within its watchdog ({late})")
    committed = {
        part.removeprefix("hash=")
        for line in lines
        if line.startswith("logged ")
        for part in line.split()
        if part.startswith("hash=")
    }
    conn = sqlite3.connect(db)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    if check != [("ok",)]:
        problems.append(f"kill {index}: PRAGMA integrity_check says {check[:3]}")
    with Store.open(db, create=False, recover=False) as store:
        stored = {e.hash for e in store.events(store.default_patient)}
        lost = len(committed - stored)
        open_sessions = [s.uid for s in store.sessions() if s.end_reason is None]
        controller = SessionController(store, store.clock)
        try:
            recovered = controller.recovered_sessions
        finally:
            controller.close()
        if tuple(open_sessions) != recovered or len(recovered) != 1:
            problems.append(
                f"kill {index}: recovery closed {recovered}, open sessions were {open_sessions}"
            )
        for uid in recovered:
            if store.session(uid).end_reason is not EndReason.HOST_CRASH:
                problems.append(f"kill {index}: session {uid} not closed as host crash")
        report = store.verify()
        if not report.ok:
            problems.append(f"kill {index}: the log does not verify: {report.problems[:1]}")
    if lost:
        problems.append(f"kill {index}: {lost} committed safety event(s) missing")
    return problems, lost


def run_kills(count: int, seed: int, workdir: Path, protocol: str = "tsp") -> Tally:
    where = "pty" if protocol == "tsp" else f"{protocol} pty"
    tally = Tally(f"crashes: SIGKILL tens-control run ({where})")
    if count <= 0:
        return tally
    started = time.perf_counter()
    rng = random.Random(f"{seed}:campaign:kills:{protocol}")
    args = ("--pty", "--seed", str(seed), "--protocol", protocol)
    with benchlib.SimProcess(workdir, *args, name=f"kills-{protocol}") as sim:
        for index in range(count):
            try:
                problems, lost = kill_scenario(index, rng, sim, workdir, protocol)
            except Exception as error:
                problems, lost = [f"kill {index}: raised {type(error).__name__}: {error}"], 0
            tally.scenarios += 1
            tally.faults += 1
            tally.events_lost += lost
            tally.violations += problems
    tally.seconds = time.perf_counter() - started
    return tally


# ============================================================================ 3. bad input

ALLOWED: dict[str, tuple[type[BaseException], ...]] = {}


def _noise(rng: random.Random, alphabet: bytes | None = None) -> bytes:
    size = rng.choice((0, 1, 3, 16, 64, 200, 1000))
    if alphabet is not None and rng.random() < 0.7:
        return bytes(rng.choice(alphabet) for _ in range(size))
    return rng.randbytes(size)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        op = rng.random()
        pos = rng.randrange(len(out) + 1)
        if op < 0.5 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op < 0.75:
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif out:
            del out[pos : pos + rng.randint(1, 16)]
    return bytes(out)


def _try(
    tally: Tally, what: str, allowed: tuple[type[BaseException], ...], job: Callable[[], object]
) -> None:
    tally.scenarios += 1
    try:
        job()
    except allowed:
        pass
    except Exception as error:
        kind = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
        line = f"{what}: raised {kind}: {error}"[:300]
        gap = KNOWN_INPUT_GAPS.get((what.split(" ", 1)[0], kind))
        if gap is None:
            tally.violations.append(line)
        else:
            tally.known.append(f"{line} [known gap: {gap}]")


TSP_ALPHABET = b"0123456789 ACKERTSTOPHELLOCFGAMPINGSTATUSEVTLEADOFF.-*ABCDEF\n\r"
SM2_ALPHABET = bytes((0xF0, 0x0F, 0x81, 0x55, 0x00, 0x01, 0x02, 0x11, 0x12, 0x05))
SM4_ALPHABET = bytes((0xF0, 0x0F, 0x81, 0x55, 0x00, 0x04, 0x20, 0x22, 0x24, 0x1E, 0x59, 0x75))


def fuzz_decoders(tally: Tally, rng: random.Random, rounds: int) -> None:
    from drivers.sciencemode2 import codec as sm2_codec
    from drivers.sciencemode2.frame import FrameDecoder as Sm2Decoder
    from drivers.sciencemode2.frame import RawFrame
    from drivers.sciencemode4 import codec as sm4_codec
    from drivers.sciencemode4.frame import FrameDecoder as Sm4Decoder
    from drivers.sciencemode4.frame import RawFrame as Sm4Frame
    from drivers.tsp.codec import decode_command, decode_device_message
    from drivers.tsp.frame import Frame, FrameDecoder

    tsp = FrameDecoder()
    sm2 = Sm2Decoder()
    sm4 = Sm4Decoder()

    def tsp_round(data: bytes) -> None:
        for item in tsp.feed(data):
            if isinstance(item, Frame):
                with contextlib.suppress(FramingError):
                    decode_device_message(item)
                with contextlib.suppress(FramingError):
                    decode_command(item)
            elif not isinstance(item, FramingError):
                raise TypeError(f"decoder produced {type(item).__name__}")

    def sm2_round(data: bytes) -> None:
        for item in sm2.feed(data):
            if isinstance(item, RawFrame):
                with contextlib.suppress(FramingError):
                    sm2_codec.from_frame(item)
            elif not isinstance(item, FramingError):
                raise TypeError(f"decoder produced {type(item).__name__}")

    def sm4_round(data: bytes) -> None:
        for item in sm4.feed(data):
            if isinstance(item, Sm4Frame):
                with contextlib.suppress(FramingError):
                    sm4_codec.from_frame(item)
            elif not isinstance(item, FramingError):
                raise TypeError(f"decoder produced {type(item).__name__}")

    for _ in range(rounds):
        data = _noise(rng, SM4_ALPHABET)
        _try(
            tally,
            f"ScienceMode4 decoder on {data[:40].hex()}",
            (FramingError,),
            partial(sm4_round, data),
        )
        data = _noise(rng, TSP_ALPHABET)
        _try(tally, f"TSP decoder on {data[:40]!r}", (FramingError,), partial(tsp_round, data))
        data = _noise(rng, SM2_ALPHABET)
        _try(
            tally,
            f"ScienceMode2 decoder on {data[:40].hex()}",
            (FramingError,),
            partial(sm2_round, data),
        )


def fuzz_device(tally: Tally, rng: random.Random, rounds: int) -> None:
    """Random bytes written to the simulated device never make it deliver current."""
    import serial

    for protocol, alphabet in (
        ("tsp", TSP_ALPHABET),
        ("sciencemode2", SM2_ALPHABET),
        ("sciencemode4", SM4_ALPHABET),
    ):
        clock = VirtualClock()
        port = serial.serial_for_url(
            f"sim://{protocol}?seed={rng.randrange(1 << 30)}", do_not_open=True
        )
        port.use_clock(clock)  # type: ignore[attr-defined]
        port.open()
        device = port.device  # type: ignore[attr-defined]
        try:
            for _ in range(rounds):
                port.write(_noise(rng, alphabet))
                clock.advance(0.05)
                tally.scenarios += 1
            if device.record.max_level() > 0.0:
                tally.violations.append(
                    f"random bytes made the {protocol} simulator deliver "
                    f"{device.record.max_level()} mA"
                )
        finally:
            port.close()


def _valid_bundle(workdir: Path) -> bytes:
    """A small real export: one session with telemetry and ratings, in virtual time."""
    clock = VirtualClock()
    wall = virtual_wall_clock(clock, START)
    with Store.open(workdir / "bundle-source.sqlite3", clock=clock, wall=wall) as store:
        enrol_and_prescribe(store, _prescription())
        controller = SessionController(store, clock, wall=wall)
        try:
            controller.connect("sim://tsp?seed=5")
            controller.prepare("conventional", 0.5)
            controller.start()
            controller.set_target(1, 3.0)
            clock.advance(31.0)
            controller.finish()
        finally:
            controller.close()
        bundle = store.export_patient()
    return json.dumps(bundle, indent=1).encode("utf-8")


def fuzz_files(
    tally: Tally, rng: random.Random, rounds: int, bundle_rounds: int, workdir: Path
) -> None:
    from drivers.limits import ProfileError, load_profile
    from tens_control.commands.import_bundle import read_bundle
    from tens_control.config import ConfigError, load_config
    from tens_control.errors import TensControlError
    from tens_control.prescription import PrescriptionError, load_prescription
    from tens_control.store.bundle import verify_bundle

    profiles = sorted((benchlib.REPO_DIR / "drivers" / "profiles").glob("*.toml"))
    seeds = {
        "profile": [p.read_bytes() for p in profiles],
        "prescription": [dump_prescription(_prescription()).encode("utf-8")],
        "config": [b'device = "sim://tsp"\nprotocol = "tsp"\n', b""],
    }
    target = workdir / "fuzzed"
    readers: dict[str, tuple[tuple[type[BaseException], ...], Callable[[Path], object]]] = {
        "profile": ((ProfileError,), load_profile),
        "prescription": ((PrescriptionError,), load_prescription),
        "config": ((ConfigError,), load_config),
    }
    for _ in range(rounds):
        for kind, (allowed, reader) in readers.items():
            base = rng.choice(seeds[kind])
            data = _noise(rng) if rng.random() < 0.2 else _mutate(rng, base)
            target.write_bytes(data)
            _try(tally, f"{kind} file {data[:60]!r}", allowed, partial(reader, target))

    bundle = _valid_bundle(workdir)
    parsed = json.loads(bundle)

    def import_file(path: Path, index: int) -> None:
        content = read_bundle(path)
        report = verify_bundle(content)
        if not report.ok:
            return
        with Store.open(workdir / f"import-{index}.sqlite3", recover=False) as store:
            store.import_bundle(content)

    source_db = (workdir / "bundle-source.sqlite3").read_bytes()

    def open_database(path: Path) -> None:
        before = path.read_bytes()
        try:
            with Store.open(path, create=False, recover=False) as store:
                store.verify()
        except TensControlError:
            if path.read_bytes() != before:
                raise RuntimeError("a database refused as damaged was changed") from None
            raise

    for index in range(max(5, bundle_rounds // 4)):
        data = _mutate(rng, source_db) if rng.random() < 0.8 else _noise(rng)
        path = workdir / f"damaged-{index}.sqlite3"
        path.write_bytes(data)
        _try(tally, f"database file #{index}", (TensControlError,), partial(open_database, path))

    for index in range(bundle_rounds):
        if rng.random() < 0.5:
            data = _mutate(rng, bundle)
        else:
            data = json.dumps(_mutate_json(rng, parsed)).encode("utf-8")
        target.write_bytes(data)
        _try(tally, f"bundle #{index}", (TensControlError,), partial(import_file, target, index))


def _mutate_json(rng: random.Random, value: Any) -> Any:
    """A copy of ``value`` with one leaf (or container) replaced by something else."""
    replacements: list[Any] = [None, 0, -1, 1e308, "", "x" * 100, [], {}, True, "2026-13-40"]

    def walk(v: Any, depth: int) -> Any:
        if isinstance(v, dict) and v and rng.random() < 0.9 - depth * 0.05:
            key = rng.choice(list(v))
            out = dict(v)
            if rng.random() < 0.1:
                del out[key]
            else:
                out[key] = walk(v[key], depth + 1)
            return out
        if isinstance(v, list) and v and rng.random() < 0.9 - depth * 0.05:
            i = rng.randrange(len(v))
            out_list = list(v)
            out_list[i] = walk(v[i], depth + 1)
            return out_list
        return rng.choice(replacements)

    return walk(value, 0)


def run_fuzz(seed: int, rounds: int, bundle_rounds: int, workdir: Path) -> list[Tally]:
    rng = random.Random(f"{seed}:campaign:fuzz")
    decoders = Tally("bad input: decoders and the device")
    started = time.perf_counter()
    fuzz_decoders(decoders, rng, rounds)
    fuzz_device(decoders, rng, max(10, rounds // 10))
    decoders.seconds = time.perf_counter() - started
    files = Tally("bad input: profiles, prescriptions, settings, bundles")
    started = time.perf_counter()
    fuzz_files(files, rng, max(10, rounds // 5), bundle_rounds, workdir)
    files.seconds = time.perf_counter() - started
    return [decoders, files]


# ============================================================================ the verdict

KNOWN_GAPS: dict[tuple[str, FaultKind], str] = {}
"""Scenarios whose failure is a known, reported gap: listed in the table and the output (never
hidden) but not counted as violations. Remove an entry once its cause is fixed."""
KNOWN_INPUT_GAPS: dict[tuple[str, str], str] = {}
"""Bad-input failures that are known and reported, by (input, exception): listed in the output
(never hidden) but not counted. Remove an entry once its cause is fixed."""
QUICK_CONTROLLER = frozenset(
    {FaultKind.LEAD_OFF, FaultKind.JUMP, FaultKind.EMERGENCY, FaultKind.DISCONNECT}
)


def table(tallies: list[Tally]) -> str:
    def row(t: Tally) -> str:
        return (
            f"{t.part:<52} {t.scenarios:>9} {t.faults:>7} {len(t.violations):>10} "
            f"{t.events_lost:>11} {len(t.known):>10} {t.seconds:>6.0f}"
        )

    head = (
        f"{'part':<52} {'scenarios':>9} {'faults':>7} {'violations':>10} "
        f"{'events lost':>11} {'known gaps':>10} {'s':>6}"
    )
    total = Tally("total", sum(t.scenarios for t in tallies), sum(t.faults for t in tallies))
    total.violations = [v for t in tallies for v in t.violations]
    total.known = [v for t in tallies for v in t.known]
    total.events_lost = sum(t.events_lost for t in tallies)
    total.seconds = sum(t.seconds for t in tallies)
    rule = "-" * len(head)
    return "\n".join([head, rule, *(row(t) for t in tallies), rule, row(total)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    p.add_argument("--quick", action="store_true", help="the bounded budget CI runs")
    p.add_argument("--moments", type=int, help="injection moments per fault kind and protocol")
    p.add_argument("--kills", type=int, help="SIGKILLs of tens-control run (default 20)")
    p.add_argument("--fuzz", type=int, help="rounds of random input per decoder")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON")
    args = p.parse_args(argv)
    moments = args.moments if args.moments is not None else (1 if args.quick else 3)
    kills = args.kills if args.kills is not None else (2 if args.quick else 20)
    rounds = args.fuzz if args.fuzz is not None else (300 if args.quick else 5000)
    bundle_rounds = 15 if args.quick else 200
    started = time.perf_counter()
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="tens-campaign-", dir=scratch) as tmp:
        workdir = Path(tmp)
        # CI: the controller half for a few kinds only (each runs a store on the side)
        tallies = [run_single_fault(args.seed, 1 if args.quick else 3)]
        tallies += run_faults(args.seed, moments, QUICK_CONTROLLER if args.quick else None, workdir)
        tallies.append(run_kills(kills, args.seed, workdir))
        tallies.append(run_kills(max(1, kills // 2), args.seed, workdir, "sciencemode4"))
        tallies += run_fuzz(args.seed, rounds, bundle_rounds, workdir)
    print(f"reliability campaign, seed {args.seed}, {time.perf_counter() - started:.0f} s")
    print(table(tallies))
    violations = [v for t in tallies for v in t.violations]
    lost = sum(t.events_lost for t in tallies)
    for v in violations:
        print(f"VIOLATION {v}")
    for v in (v for t in tallies for v in t.known):
        print(f"KNOWN GAP {v}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "seed": args.seed,
                    "machine": benchlib.machine(),
                    "parts": [
                        {
                            "part": t.part,
                            "scenarios": t.scenarios,
                            "faults": t.faults,
                            "violations": t.violations,
                            "known_gaps": t.known,
                            "events_lost": t.events_lost,
                            "seconds": round(t.seconds, 2),
                        }
                        for t in tallies
                    ],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 1 if violations or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
