"""P5: a 60-minute session with 10 Hz telemetry in virtual time (DESIGN.md §10).

Two stacks, each timed in wall-clock seconds for a whole 60-minute session on a
``VirtualClock`` (time jumps from deadline to deadline; nothing sleeps):

* **governor**: ``SafetyGovernor`` + ``TspDriver`` + the in-process simulator (``sim://tsp``):
  connect, configure both channels, start a 60-minute session, ramp both channels to 10 mA,
  run to the planned end (the governor stops at 60 min, S6). The simulator sends TEL for each
  channel at 10 Hz (36,000 frames); the driver sends keep-alive PINGs every 333 ms; the
  governor checks every reading (S7, S9).
* **controller**: the whole ``SessionController`` with its SQLite ``Store`` (the same clock):
  prepare, start, ramp channel 1 to 10 mA, run to completion. Every safety event is committed
  before it is acknowledged; telemetry goes through the batch writer, sealed into the chain.
  The store is opened as ``tens-control run --virtual-time`` opens it: telemetry committed
  every ``VIRTUAL_FLUSH_INTERVAL_S`` (60 s) of virtual time, which is a few tens of
  milliseconds of real time here, so the real-time promise (committed within 250 ms) holds.
  The database is on a tmpfs (``/dev/shm``) for the figure; one run on the disk (under
  ``bench/``) and one with the real-time setting (a commit every 250 ms of *virtual* time,
  14,400 synced commits an hour) are reported beside it.

After each run the simulator's delivered record is checked: 10 mA reached, 0 mA at the end.
Target: <= 3 s wall. Run: ``python bench/p5_session.py``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Comparison, Figure, Stats

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings
from drivers.clock import VirtualClock
from drivers.limits import get_profile
from drivers.safety import GovernorEvent, GovernorState, SafetyGovernor, StopReason
from drivers.transport import open_port
from drivers.tsp.driver import TspDriver
from simulator.protocol_sim import Serial as SimSerial
from tens_control.prescription import prescription_from_dict
from tens_control.session import SessionController, SessionState
from tens_control.store import Store
from tens_control.store.store import virtual_wall_clock
from tens_control.store.telemetry import FLUSH_INTERVAL_S, VIRTUAL_FLUSH_INTERVAL_S
from tens_control.trust.demo import enrol_and_prescribe

MINUTES = 60.0
QUICK_MINUTES = 2.0
RUNS = 3
QUICK_RUNS = 1
TARGET_MA = 10.0
CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def governor_run(minutes: float) -> tuple[float, int, float]:
    """Wall seconds for one session, the reports the host received, and CPU seconds."""
    start = time.perf_counter()
    cpu = time.process_time()
    clock = VirtualClock()
    port = open_port("sim://tsp?seed=1", clock=clock)
    assert isinstance(port, SimSerial)
    device = port.device
    driver = TspDriver.connect(port, clock, url="sim://tsp")
    readings = [0]

    def count(report: object) -> None:
        readings[0] += 1

    driver.add_report_handler(count)
    events: list[GovernorEvent] = []
    gov = SafetyGovernor(
        driver,
        get_profile("tens-sim"),
        clock,
        on_event=events.append,
        electrode_areas_cm2={1: 25.0, 2: 25.0},
    )
    gov.connect()
    gov.configure(1, CONVENTIONAL)
    gov.configure(2, CONVENTIONAL)
    gov.start(minutes * 60.0)
    began = clock.now()
    gov.set_target(1, TARGET_MA)
    gov.set_target(2, TARGET_MA)
    clock.run_until(began + minutes * 60.0 + 1.0)
    if gov.state is not GovernorState.ENDED or gov.end_reason is not StopReason.DURATION:
        raise RuntimeError(f"the session did not complete: {gov.state} {gov.end_reason}")
    gov.close()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    record = device.record
    if record.max_level(1) != TARGET_MA or record.level_at(1, clock.now()) != 0.0:
        raise RuntimeError("the simulator did not deliver the session as planned")
    return elapsed, readings[0], cpu


def prescription(minutes: float) -> Any:
    return prescription_from_dict(
        {
            "written_by": "Dr A. Example",
            "written_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            "reason": "benchmark",
            "programs": ["conventional"],
            "max_amplitude_ma": 40.0,
            "session_minutes": max(1, round(minutes)),
            "sessions_per_day": 4,
            "habituation_prompt": False,
            "channels": [
                {"channel": 1, "site": "residual_limb", "side": "left", "pad": "5x5 cm"},
                {"channel": 2, "site": "transected_nerve", "side": "left", "pad": "5x5 cm"},
            ],
        }
    )


def controller_run(
    minutes: float, workdir: Path, run: int, flush_interval_s: float = VIRTUAL_FLUSH_INTERVAL_S
) -> tuple[float, int, float]:
    """Wall seconds for one session through the SessionController and its store, the
    telemetry rows stored, and CPU seconds (waiting for the disk is not CPU time)."""
    start = time.perf_counter()
    cpu = time.process_time()
    clock = VirtualClock()
    wall = virtual_wall_clock(clock, START)
    store = Store.open(
        workdir / f"p5-{run}.sqlite3", clock=clock, wall=wall, flush_interval_s=flush_interval_s
    )
    try:
        enrol_and_prescribe(store, prescription(minutes))  # a demo clinic signs it
        controller = SessionController(store, clock, wall=wall)
        try:
            controller.connect("sim://tsp?seed=1")
            controller.prepare("conventional", minutes)
            controller.start()
            session = controller.snapshot().session_id
            assert session is not None
            if not controller.set_target(1, TARGET_MA).accepted:
                raise RuntimeError("the controller refused 10 mA")
            clock.advance(minutes * 60.0 + 1.0)
            if controller.state is not SessionState.ENDED:
                raise RuntimeError(f"the session did not end: {controller.state}")
            device = controller.device
            assert device is not None
            assert device.port is not None
            sim = getattr(device.port, "device", None)
            controller.finish()
        finally:
            controller.close()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        rows = len(store.telemetry(session))
        if sim is not None and sim.record.max_level(1) != TARGET_MA:
            raise RuntimeError("the simulator did not deliver the session as planned")
    finally:
        store.close()
    return elapsed, rows, cpu


def figures(minutes: float, runs: int, workdir: Path, memdir: Path) -> list[Figure]:
    gov_times: list[float] = []
    ctl_times: list[float] = []
    gov_cpu: list[float] = []
    ctl_cpu: list[float] = []
    readings = rows = 0
    for run in range(runs):
        elapsed, readings, cpu = governor_run(minutes)
        gov_times.append(elapsed)
        gov_cpu.append(cpu)
        elapsed, rows, cpu = controller_run(minutes, memdir, run)
        ctl_times.append(elapsed)
        ctl_cpu.append(cpu)
    disk_elapsed, _, disk_cpu = controller_run(minutes, workdir, runs)
    strict_elapsed, _, strict_cpu = controller_run(
        minutes, memdir, runs + 1, flush_interval_s=FLUSH_INTERVAL_S
    )
    s_gov = Stats.of(gov_times)
    s_ctl = Stats.of(ctl_times)
    c_gov = Stats.of(gov_cpu)
    c_ctl = Stats.of(ctl_cpu)
    kind: Comparison = "<=" if minutes == MINUTES else "info"
    return [
        Figure(
            "P5.governor",
            f"{minutes:g}-min session, 10 Hz telemetry, virtual time: governor+TSP+simulator",
            s_gov.median,
            "s",
            3.0,
            kind,
            s_gov,
            {"minutes": minutes, "reports_received": readings, "cpu_s": asdict(c_gov)},
        ),
        Figure(
            "P5.controller",
            f"{minutes:g}-min session, virtual time: SessionController + store (tmpfs)",
            s_ctl.median,
            "s",
            3.0,
            kind,
            s_ctl,
            {
                "minutes": minutes,
                "telemetry_rows_stored": rows,
                "cpu_s": asdict(c_ctl),
                "flush_interval_s": VIRTUAL_FLUSH_INTERVAL_S,
            },
        ),
        Figure(
            "P5.ctl_disk",
            "reference: the same with the database on the disk (every commit synced)",
            disk_elapsed,
            "s",
            None,
            "info",
            None,
            {"cpu_s": disk_cpu, "database_dir": str(workdir)},
        ),
        Figure(
            "P5.ctl_250ms",
            "reference: the controller committing telemetry every 250 ms of virtual time (tmpfs)",
            strict_elapsed,
            "s",
            None,
            "info",
            None,
            {"cpu_s": strict_cpu, "flush_interval_s": FLUSH_INTERVAL_S},
        ),
        Figure(
            "P5.gov_cpu",
            "reference: CPU seconds of the governor run (what an idle machine's wall would be)",
            c_gov.median,
            "s",
            None,
            "info",
            c_gov,
        ),
        Figure(
            "P5.ctl_cpu",
            "reference: CPU seconds of the controller run",
            c_ctl.median,
            "s",
            None,
            "info",
            c_ctl,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parser(__doc__ or "P5").parse_args(argv)
    minutes = QUICK_MINUTES if args.quick else MINUTES
    runs = QUICK_RUNS if args.quick else RUNS
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with (
        tempfile.TemporaryDirectory(prefix="tens-bench-p5-", dir=benchlib.BENCH_DIR) as tmp,
        tempfile.TemporaryDirectory(prefix="tens-bench-p5-", dir=shm) as mem,
    ):
        figs = figures(minutes, runs, Path(tmp), Path(mem))
    benchlib.report("P5 a 60-minute session in virtual time", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
