"""P2: acknowledged amplitude commands per second over a pty (DESIGN.md §10).

``tens-sim --pty --latency-ms 0`` runs in a separate process; this process drives it with the
TSP driver on a RealClock. Channel 1 is configured, started and raised to 1 mA, then amplitude
commands hold it at 1 mA, and every command counts only once the device has acknowledged it.
(A TSP/2 device refuses an increase sooner than 500 ms after the last one (S15), and the host
sends every decrease twice (S14); a command that holds the level is an ordinary command,
executed and answered like any other, with the same frame size.) Two ways, in the same run:

* **blocking**: ``driver.set_amplitude()`` one at a time, each waiting for its ACK -- bounded
  by the pty round trip (two process wake-ups per command);
* **pipelined**: ``driver.request_amplitude()`` (non-blocking) with up to ``WINDOW`` commands
  in flight, counting ACKs as they arrive -- bounded by frame encoding/decoding on both ends.

The safety governor is not in this path on purpose: it ramps increases at 2 mA/s (S2), so
through it a patient can never send more than a few amplitude commands per second; this figure
is the capacity of the driver and the line. Each run sends ``COMMANDS`` commands; the figure
is the median rate over ``RUNS`` runs. Target: >= 2,000 /s. Run: ``python bench/p2_throughput.py``.

``P2.p24pipelined`` and ``P2.p24blocking`` are the same on the emulated Hasomed P24
(``tens-sim --protocol sciencemode4``, the ScienceMode4 driver): every amplitude command is an
Ml_Update describing both configured channels, and a decrease goes out twice (S14).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import benchlib
from benchlib import Figure, SimProcess, Stats

from drivers.base import ChannelSettings, Pending, TensDriver
from drivers.clock import RealClock
from drivers.runtime import DeviceRuntime
from drivers.sciencemode4.driver import ScienceMode4Driver
from drivers.tsp.driver import TspDriver

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
LEVEL = 1.0
WINDOW = 32
COMMANDS = 4000
RUNS = 7
QUICK_COMMANDS = 200
QUICK_RUNS = 2


def blocking_rate(driver: TensDriver, commands: int) -> float:
    start = time.perf_counter()
    for _ in range(commands):
        driver.set_amplitude(1, LEVEL)
    return commands / (time.perf_counter() - start)


def pipelined_rate(driver: TensDriver, commands: int, window: int) -> float:
    slots = threading.Semaphore(window)
    done = threading.Event()
    lock = threading.Lock()
    state = {"acked": 0, "failed": 0}

    def finished(pending: Pending) -> None:
        with lock:
            state["acked" if pending.error is None else "failed"] += 1
            if state["acked"] + state["failed"] == commands:
                done.set()
        slots.release()

    start = time.perf_counter()
    for _ in range(commands):
        if not slots.acquire(timeout=5.0):
            raise RuntimeError("no acknowledgement for 5 s: the device stopped answering")
        driver.request_amplitude(1, LEVEL).add_done_callback(finished)
    if not done.wait(30.0):
        raise RuntimeError("not every amplitude command was acknowledged within 30 s")
    elapsed = time.perf_counter() - start
    if state["failed"]:
        raise RuntimeError(f"{state['failed']} amplitude commands failed")
    return commands / elapsed


ECHO_SERVER = """
import os, pty, selectors, sys, tty
master, slave = pty.openpty()
tty.setraw(slave)
print(os.ttyname(slave), flush=True)
with selectors.DefaultSelector() as sel:
    sel.register(master, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select(5.0):
            if key.fileobj is sys.stdin:
                raise SystemExit(0)
            os.write(master, os.read(master, 4096))
"""


def echo_rate(commands: int) -> float:
    """Reference: request/response round trips per second through a pty to a bare echo process
    (no protocol, no simulator): the floor under any blocking exchange over a pty."""
    import subprocess
    import sys

    import serial

    server = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        path = server.stdout.readline().strip()
        port = serial.Serial(path, timeout=2.0)
        try:
            line = b"12 AMP 1 1.5*ABCD\n"
            start = time.perf_counter()
            for _ in range(commands):
                port.write(line)
                if port.readline() != line:
                    raise RuntimeError("the echo process did not answer")
            return commands / (time.perf_counter() - start)
        finally:
            port.close()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()


def rates(
    commands: int, runs: int, workdir: Path, protocol: str = "tsp"
) -> tuple[list[float], list[float]]:
    """Blocking and pipelined rates of ``runs`` runs on ``tens-sim --protocol PROTOCOL``."""
    blocking: list[float] = []
    pipelined: list[float] = []
    driver_class: type[DeviceRuntime] = (
        ScienceMode4Driver if protocol == "sciencemode4" else TspDriver
    )
    where = ("--pty", "--latency-ms", "0", "--protocol", protocol)
    with SimProcess(workdir, *where, name=f"delivered-{protocol}") as sim:
        clock = RealClock()
        driver = driver_class.open(sim.url, clock)
        try:
            driver.configure(1, CONVENTIONAL)
            driver.start()
            for _ in range(runs):
                blocking.append(blocking_rate(driver, commands))
                pipelined.append(pipelined_rate(driver, commands, WINDOW))
            driver.stop()
        finally:
            driver.close()
            clock.close()
    return blocking, pipelined


def figures(commands: int, runs: int, workdir: Path) -> list[Figure]:
    blocking, pipelined = rates(commands, runs, workdir)
    p24_blocking, p24_pipelined = rates(commands, runs, workdir, "sciencemode4")
    echo = [echo_rate(commands) for _ in range(runs)]
    s_echo = Stats.of(echo, higher_is_better=True)
    s_block = Stats.of(blocking, higher_is_better=True)
    s_pipe = Stats.of(pipelined, higher_is_better=True)
    s_p24_block = Stats.of(p24_blocking, higher_is_better=True)
    s_p24_pipe = Stats.of(p24_pipelined, higher_is_better=True)
    return [
        Figure(
            "P2.pipelined",
            f"acknowledged amplitude commands over a pty, pipelined ({WINDOW} in flight)",
            s_pipe.median,
            "/s",
            2000.0,
            ">=",
            s_pipe,
            {"commands_per_run": commands, "window": WINDOW},
        ),
        Figure(
            "P2.blocking",
            "acknowledged amplitude commands over a pty, blocking one at a time",
            s_block.median,
            "/s",
            2000.0,
            ">=",
            s_block,
            {"commands_per_run": commands},
        ),
        Figure(
            "P2.p24pipelined",
            f"the same on the emulated P24, pipelined ({WINDOW} in flight)",
            s_p24_pipe.median,
            "/s",
            2000.0,
            ">=",
            s_p24_pipe,
            {"commands_per_run": commands, "window": WINDOW},
        ),
        Figure(
            "P2.p24blocking",
            "the same on the emulated P24, blocking one at a time",
            s_p24_block.median,
            "/s",
            2000.0,
            ">=",
            s_p24_block,
            {"commands_per_run": commands},
        ),
        Figure(
            "P2.echo",
            "reference: blocking round trips through a pty to a bare echo process",
            s_echo.median,
            "/s",
            None,
            "info",
            s_echo,
            {"commands_per_run": commands},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parser(__doc__ or "P2").parse_args(argv)
    commands = QUICK_COMMANDS if args.quick else COMMANDS
    runs = QUICK_RUNS if args.quick else RUNS
    with tempfile.TemporaryDirectory(prefix="tens-bench-p2-") as tmp:
        figs = figures(commands, runs, Path(tmp))
    benchlib.report("P2 acknowledged amplitude commands per second", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
