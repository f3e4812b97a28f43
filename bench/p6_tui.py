"""P6: the terminal UI's start-up and its memory over a session (DESIGN.md §10).

* **Start to first screen**, as a ratio to a bare Textual app: each is started as a fresh
  Python process running headless (``App.run(headless=True)``) whose auto-pilot prints a line
  once the first screen has been composed and painted (``pilot.pause()``), then exits. The
  figure is the wall time from starting the process to that line (interpreter start and imports
  included, as a patient waits for them). The tens-control UI is ``make_app(...)`` on a fresh
  database with the built-in simulator, as ``tens-control`` opens it; the bare app is one
  ``Static`` widget. The runs alternate (real, bare, real, bare ...); the ratio is taken per
  pair. Target <= 1.5x.
* **RSS growth over a 60-minute session in virtual time**: the UI (``run_test``, headless) on a
  ``SessionController`` with its store and the in-process simulator on a ``VirtualClock``. A
  60-minute session runs with both channels at 10 mA; the 10 Hz telemetry and every update
  reach the UI, which redraws after each 10 s step of virtual time (its redraw timer's work).
  The figure is the resident set size after the session minus before it (after a garbage
  collection each time). Target <= 10 MB.

Run: ``python bench/p6_tui.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Comparison, Figure, Stats

START_RUNS = 7
QUICK_START_RUNS = 1
MINUTES = 60.0
QUICK_MINUTES = 1.0
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

BARE_APP = """
import sys
from textual.app import App, ComposeResult
from textual.widgets import Static

class Bare(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello")

async def pilot(p):
    await p.pause()
    sys.stdout.write("first-screen\\n")
    sys.stdout.flush()
    p.app.exit()

Bare().run(headless=True, auto_pilot=pilot)
"""

TENS_APP = """
import sys
from tens_control.ui.app import make_app

async def pilot(p):
    await p.pause()
    sys.stdout.write("first-screen " + type(p.app.screen).__name__ + "\\n")
    sys.stdout.flush()
    p.app.exit()

app = make_app(device="sim://tsp", db=sys.argv[1])
app.run(headless=True, auto_pilot=pilot)
"""


def first_screen_s(code: str, workdir: Path, run: int) -> float:
    env = dict(os.environ)
    env["TENS_CONTROL_CONFIG"] = str(workdir / "config.toml")
    env.pop("TENS_CONTROL_DB", None)
    db = workdir / f"ui-{run}.sqlite3"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        elapsed = time.perf_counter() - started
        if not line.startswith("first-screen"):
            raise RuntimeError(f"the app did not show a first screen (printed {line!r})")
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    return elapsed


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def session_rss(minutes: float, workdir: Path) -> tuple[int, int]:
    """RSS (bytes) with the session running at 10 mA, and after ``minutes`` of it."""
    from textual.worker import WorkerCancelled

    from drivers.clock import VirtualClock
    from tens_control.prescription import dump_prescription, prescription_from_dict
    from tens_control.screening import Question
    from tens_control.session import SessionController, SessionState
    from tens_control.store.store import Store, virtual_wall_clock
    from tens_control.ui.app import make_app

    clock = VirtualClock()
    wall = virtual_wall_clock(clock, START)
    store = Store.open(workdir / "p6.sqlite3", clock=clock, wall=wall)
    store.ensure_patient()
    rx = prescription_from_dict(
        {
            "written_by": "Dr A. Example",
            "written_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            "reason": "benchmark",
            "programs": ["conventional"],
            "max_amplitude_ma": 40.0,
            "session_minutes": 60,
            "sessions_per_day": 4,
            "habituation_prompt": False,
            "channels": [
                {"channel": 1, "site": "residual_limb", "side": "left", "pad": "5x5 cm"},
                {"channel": 2, "site": "transected_nerve", "side": "left", "pad": "5x5 cm"},
            ],
        }
    )
    store.save_prescription(dump_prescription(rx), author="Dr A. Example", reason="bench")
    store.save_screening({q.value: False for q in Question}, recorded_by="patient")
    controller = SessionController(store, clock, wall=wall)
    app: Any = make_app(
        controller,
        store=store,
        clock=clock,
        live=False,
        tz=UTC,
        cursor_blink=False,
        wall=wall,
        device="sim://tsp?seed=7",
    )
    try:
        async with app.run_test(size=(100, 32)) as pilot:

            async def settle() -> None:
                for _ in range(3):
                    with contextlib.suppress(WorkerCancelled):  # the app cancels stale work
                        await app.workers.wait_for_complete()
                    app.wait_calls()
                    await pilot.pause()

            await settle()
            if controller.state is SessionState.IDLE:
                controller.connect("sim://tsp?seed=7")
            controller.prepare("conventional", minutes)
            controller.start()
            controller.set_target(1, 10.0)
            controller.set_target(2, 10.0)
            clock.advance(10.0)
            await settle()
            app.redraw()
            gc.collect()
            before = rss_bytes()
            steps = int(minutes * 6)
            for _ in range(steps):
                clock.advance(10.0)
                await settle()
                app.redraw()
                await pilot.pause()
            await settle()
            gc.collect()
            after = rss_bytes()
            if controller.state is not SessionState.ENDED:
                raise RuntimeError(f"the session did not end ({controller.state})")
            app.exit()
    finally:
        app.calls.close()
        controller.close()
        store.close()
    return before, after


def figures(runs: int, minutes: float, workdir: Path, quick: bool) -> list[Figure]:
    real: list[float] = []
    bare: list[float] = []
    ratios: list[float] = []
    for run in range(runs):
        r = first_screen_s(TENS_APP, workdir, run)
        b = first_screen_s(BARE_APP, workdir, run)
        real.append(r)
        bare.append(b)
        ratios.append(r / b)
    before, after = asyncio.run(session_rss(minutes, workdir))
    growth_mb = (after - before) / 1e6
    s_real = Stats.of(real).scaled(1000.0)
    s_bare = Stats.of(bare).scaled(1000.0)
    s_ratio = Stats.of(ratios)
    kind: Comparison = "info" if quick else "<="
    return [
        Figure(
            "P6.start",
            "tens-control UI: process start to first screen",
            s_real.median,
            "ms",
            None,
            "info",
            s_real,
        ),
        Figure(
            "P6.bare",
            "bare Textual app: process start to first screen",
            s_bare.median,
            "ms",
            None,
            "info",
            s_bare,
        ),
        Figure(
            "P6.ratio",
            "UI start / bare Textual app start, paired runs",
            s_ratio.median,
            "x",
            1.5,
            kind,
            s_ratio,
        ),
        Figure(
            "P6.rss",
            f"RSS growth of the UI over a {minutes:g}-minute virtual session (10 Hz telemetry)",
            growth_mb,
            "MB",
            10.0,
            kind,
            None,
            {"rss_before_mb": before / 1e6, "rss_after_mb": after / 1e6, "minutes": minutes},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parser(__doc__ or "P6").parse_args(argv)
    runs = QUICK_START_RUNS if args.quick else START_RUNS
    minutes = QUICK_MINUTES if args.quick else MINUTES
    with tempfile.TemporaryDirectory(prefix="tens-bench-p6-") as tmp:
        figs = figures(runs, minutes, Path(tmp), args.quick)
    benchlib.report("P6 terminal UI start-up and memory", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
