"""P6: the terminal UI's start-up and its memory over a session (DESIGN.md §10).

* **Start to first screen** (``P6.start``, ``P6.bare``, ``P6.ratio``). Each app is started as a
  fresh Python process on a pseudo-terminal (100 x 32 cells, ``TERM=xterm-256color``) and the
  benchmark reads what it writes to that terminal, as a patient would see it. The UI is
  ``python -m tens_control --simulator --db FILE`` (what the ``tens-control`` command runs) on
  a fresh database holding a returning patient's safety answers, so that its first screen is
  the home screen (a first run shows the safety questions instead); the bare app is a Textual
  ``App`` with one ``Static("hello")``.

  **First screen, precisely:** the first moment at which everything the program has written to
  the terminal, with its colour codes removed, contains the home screen's last box title
  ``What next`` and the last key of its key line ``q Quit``. Textual writes a frame top to
  bottom and the key line is the bottom line, so at that moment the terminal shows the whole
  home screen: status lines, every box, and the keys. (The boxes still say "Loading…" then:
  the back end loads after the first frame.) For the bare app it is the moment ``hello`` has
  arrived. The figure is the wall time from just before the process is started to that moment:
  interpreter start, imports, building and painting the screen, and writing it out. Runs
  alternate (UI, bare app, UI, bare app, ...); the ratio is taken per pair. Target <= 1.5x.
  The detail also gives the CPU time each process had used at its first screen (from
  ``/proc``; less sensitive to other load on the machine than wall time).
* **Start to ready** (``P6.ready``, a reference figure without a target), from the same UI
  runs: the first moment the terminal has also received the home screen filled in, i.e. the
  device box naming the connected simulator (``built-in SIMULATOR``) and today's sessions
  (``Sessions today``): the store opened, the session controller created, the simulator
  connected and the home screen's data read. Then the benchmark presses Q and the UI must quit
  cleanly (exit status 0); the bare app is closed with Ctrl+Q.
* Bytecode: the child processes write and use compiled bytecode in a cache directory of their
  own (``PYTHONPYCACHEPREFIX``, even if ``PYTHONDONTWRITEBYTECODE`` is set here), and each app is
  started once, untimed, before the timed runs: an installed program does not compile its
  source at every start, and neither app is timed compiling.
* **RSS growth over a 60-minute session in virtual time** (``P6.rss``): the UI (``run_test``,
  headless) on a ``SessionController`` with its store and the in-process simulator on a
  ``VirtualClock``. A 60-minute session runs with both channels at 10 mA; the 10 Hz telemetry
  and every update reach the UI, which redraws after each 10 s step of virtual time (its redraw
  timer's work). The figure is the resident set size after the session minus before it (after
  a garbage collection each time). Target <= 10 MB.

Run: ``python bench/p6_tui.py`` (Linux or macOS: it needs a pseudo-terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
COLUMNS, ROWS = 100, 32
RUN_TIMEOUT_S = 60.0
"""Longest wait for a screen (a run that takes longer is an error, not a figure)."""
QUIT_TIMEOUT_S = 20.0

BARE_APP = """
from textual.app import App, ComposeResult
from textual.widgets import Static

class Bare(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello")

Bare().run()
"""

SEED_DB = """
import sys
from tens_control.screening import Question
from tens_control.store.store import Store

store = Store.open(sys.argv[1])
store.ensure_patient()
store.save_screening({q.value: False for q in Question}, recorded_by="patient")
store.close()
"""

FIRST_SCREEN = (b"What next", b"q Quit")
"""The home screen is whole on the terminal once both have arrived (the key line is last)."""
READY = (b"built-in SIMULATOR", b"Sessions today")
"""... and filled in once these have."""
BARE_FIRST_SCREEN = (b"hello",)
QUIT_UI = b"q"
QUIT_BARE = b"\x11"  # Ctrl+Q
_SGR = re.compile(rb"\x1b\[[0-9;:]*m")
"""Colour and style codes (removed before looking for the texts above)."""


@dataclass(frozen=True)
class StartRun:
    first_s: float
    """Process start to the first screen on the terminal (wall time)."""
    ready_s: float | None
    """Process start to the home screen filled in (None: not measured)."""
    cpu_s: float | None
    """CPU time the process had used at its first screen (None: unknown)."""


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process so far (Linux ``/proc``; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TENS_CONTROL_CONFIG"] = str(workdir / "config.toml")  # nothing saved: no device
    env.pop("TENS_CONTROL_DB", None)
    env.pop("TENS_CONTROL_PATIENT", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    env.pop("TEXTUAL", None)
    return env


def timed_start(
    argv: list[str],
    env: dict[str, str],
    first: tuple[bytes, ...],
    ready: tuple[bytes, ...],
    quit_keys: bytes,
) -> StartRun:
    """Start ``argv`` on a new pseudo-terminal; time the texts ``first`` and then ``ready``
    arriving on it; then type ``quit_keys`` and wait for a clean exit."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    seen = b""
    first_s: float | None = None
    ready_s: float | None = None
    cpu_s: float | None = None
    try:
        while True:
            now = time.perf_counter() - started
            if now > RUN_TIMEOUT_S:
                want = "first screen" if first_s is None else "ready screen"
                raise RuntimeError(f"no {want} after {RUN_TIMEOUT_S:g} s: {_tail(seen)!r}")
            readable, _, _ = select.select([master], [], [], 0.5)
            if not readable:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the program has closed the terminal
                data = b""
            if not data:
                raise RuntimeError(f"the program ended before its screen: {_tail(seen)!r}")
            at = time.perf_counter() - started
            seen += data
            text = _SGR.sub(b"", seen)
            if first_s is None and all(marker in text for marker in first):
                first_s = at
                cpu_s = _cpu_seconds(process.pid)
            if first_s is not None and all(marker in text for marker in ready):
                ready_s = at if ready else None
                break
        os.write(master, quit_keys)
        deadline = time.monotonic() + QUIT_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            readable, _, _ = select.select([master], [], [], 0.1)
            if readable:
                with contextlib.suppress(OSError):
                    os.read(master, 65536)  # keep the terminal drained while it closes
        if process.poll() is None:
            raise RuntimeError(f"the program did not quit on {quit_keys!r}")
        if process.returncode != 0:
            raise RuntimeError(f"the program quit with status {process.returncode}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)
    assert first_s is not None
    return StartRun(first_s, ready_s, cpu_s)


def _tail(data: bytes) -> bytes:
    return _SGR.sub(b"", data)[-300:]


def ui_start(workdir: Path, run: int) -> StartRun:
    env = child_env(workdir)
    db = workdir / f"ui-{run}.sqlite3"
    subprocess.run([sys.executable, "-c", SEED_DB, str(db)], env=env, check=True, timeout=120)
    argv = [sys.executable, "-m", "tens_control", "--simulator", "--db", str(db)]
    return timed_start(argv, env, FIRST_SCREEN, READY, QUIT_UI)


def bare_start(workdir: Path) -> StartRun:
    argv = [sys.executable, "-c", BARE_APP]
    return timed_start(argv, child_env(workdir), BARE_FIRST_SCREEN, (), QUIT_BARE)


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def session_rss(minutes: float, workdir: Path) -> tuple[int, int]:
    """RSS (bytes) with the session running at 10 mA, and after ``minutes`` of it."""
    from textual.worker import WorkerCancelled

    from drivers.clock import VirtualClock
    from tens_control.prescription import prescription_from_dict
    from tens_control.screening import Question
    from tens_control.session import SessionController, SessionState
    from tens_control.store.store import Store, virtual_wall_clock
    from tens_control.trust.demo import enrol_and_prescribe
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
    enrol_and_prescribe(store, rx)  # a demo clinic signs it
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
    ui_start(workdir, -1)  # untimed: writes the bytecode, warms the file cache
    bare_start(workdir)
    real: list[StartRun] = []
    bare: list[StartRun] = []
    for run in range(runs):
        real.append(ui_start(workdir, run))
        bare.append(bare_start(workdir))
    ratios = [r.first_s / b.first_s for r, b in zip(real, bare, strict=True)]
    before, after = asyncio.run(session_rss(minutes, workdir))
    growth_mb = (after - before) / 1e6
    s_real = Stats.of([r.first_s for r in real]).scaled(1000.0)
    s_bare = Stats.of([b.first_s for b in bare]).scaled(1000.0)
    s_ratio = Stats.of(ratios)
    s_ready = Stats.of([r.ready_s for r in real if r.ready_s is not None]).scaled(1000.0)
    cpu: dict[str, Any] = {}
    ui_cpu = [r.cpu_s for r in real]
    bare_cpu = [b.cpu_s for b in bare]
    if all(c is not None for c in ui_cpu + bare_cpu):
        ui_ms = [1000.0 * c for c in ui_cpu if c is not None]
        bare_ms = [1000.0 * c for c in bare_cpu if c is not None]
        cpu = {
            "ui_cpu_ms_median": statistics.median(ui_ms),
            "bare_cpu_ms_median": statistics.median(bare_ms),
            "cpu_ratio_median": statistics.median(
                u / b for u, b in zip(ui_ms, bare_ms, strict=True) if b > 0
            ),
        }
    kind: Comparison = "info" if quick else "<="
    return [
        Figure(
            "P6.start",
            "tens-control UI: process start to the home screen on the terminal",
            s_real.median,
            "ms",
            None,
            "info",
            s_real,
            cpu,
        ),
        Figure(
            "P6.bare",
            "bare Textual app: process start to its screen on the terminal",
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
            cpu,
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
        Figure(
            "P6.ready",
            "tens-control UI: process start to the home screen filled in (simulator "
            "connected, data shown)",
            s_ready.median,
            "ms",
            None,
            "info",
            s_ready,
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
