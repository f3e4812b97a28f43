"""P1: emergency stop -> device output 0 (DESIGN.md §10), in real time.

Each trial runs a real session through the safety governor and the TSP driver: connect,
configure channel 1, start, raise channel 1 to 1 mA (the device has acknowledged it, so it is
delivering), then ``SafetyGovernor.emergency_stop()``. The figure is the time from just before
that call to the moment the *device* delivered 0 mA, read from the device's own record:

* in-process ``sim://tsp`` on a RealClock: the firmware's delivered record (its timestamps are
  ``time.monotonic()``, the clock the trial reads too). Measured twice in the same run: with
  the simulator's default 1 ms one-way line latency (a modelled serial line: a 13-byte STOP
  frame takes 1.1 ms at 115,200 baud) and with 0 ms (the software path alone);
* ``tens-sim --pty`` in a separate process: its ``--record`` file (system monotonic clock, so
  comparable with this process's) minus the time the stop was requested. The simulator adds
  no latency of its own here (``--latency-ms 0``): the pty is the line.

* with ONE frame lost at the stop (S14): in-process ``sim://tsp``, 1 ms line, the first frame
  the host sends after the call is dropped on the line (the simulator's ``drop`` fault, armed
  before each call). The host sends every zeroing command twice at once and again every 20 ms
  until answered, so the second copy stops the output.

The same trials run on the emulated Hasomed P24 (``sim://sciencemode4``, the ScienceMode4
driver; ``P1.p24`` in-process with the 1 ms modelled line, ``P1.p24pty`` over a pty to
``tens-sim --protocol sciencemode4``): the P24 zeroes its output when the Ml_Stop arrives.

Targets: p99 <= 2 ms in-process, <= 5 ms over a pty, <= 50 ms with one frame lost. Run:
``python bench/p1_estop.py``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import benchlib
from benchlib import Figure, SimProcess, Stats, ms

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings
from drivers.clock import RealClock
from drivers.limits import get_profile
from drivers.runtime import DeviceRuntime
from drivers.safety import AmplitudeChanged, GovernorEvent, SafetyGovernor
from drivers.sciencemode4.driver import ScienceMode4Driver
from drivers.transport import open_port
from drivers.tsp.driver import TspDriver
from simulator.firmware import Delivery
from simulator.protocol_sim import Serial as SimSerial

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
AREAS = {1: 25.0, 2: 25.0}
TRIALS = 1000
QUICK_TRIALS = 20


DRIVERS: dict[str, tuple[type[DeviceRuntime], str]] = {
    "tsp": (TspDriver, "tens-sim"),
    "sciencemode4": (ScienceMode4Driver, "p24"),
}
"""Protocol -> (driver, profile) of the trials."""


class Trials:
    """A governor on a driver on a RealClock, ready to run emergency-stop trials."""

    def __init__(self, url: str, protocol: str = "tsp") -> None:
        driver, profile = DRIVERS[protocol]
        self.clock = RealClock()
        self.port = open_port(url, clock=self.clock, baudrate=driver.baudrate)
        self.driver = driver.connect(self.port, self.clock, url=url)
        self.raised = threading.Event()
        self.governor = SafetyGovernor(
            self.driver,
            get_profile(profile),
            self.clock,
            on_event=self._on_event,
            electrode_areas_cm2=AREAS,
        )

    def _on_event(self, event: GovernorEvent) -> None:
        if isinstance(event, AmplitudeChanged) and event.channel == 1 and event.to_ma > 0:
            self.raised.set()

    def raise_output(self) -> None:
        """A fresh session with channel 1 delivering 1 mA (acknowledged by the device)."""
        gov = self.governor
        gov.connect()
        gov.configure(1, CONVENTIONAL)
        gov.start(3600.0)
        self.raised.clear()
        gov.set_target(1, 1.0)
        if not self.raised.wait(5.0):
            raise RuntimeError("the device did not acknowledge 1 mA within 5 s")

    def stop(self) -> tuple[float, float]:
        """Emergency stop; returns (requested, returned) monotonic times."""
        requested = time.monotonic()
        self.governor.emergency_stop()
        return requested, time.monotonic()

    def confirm(self) -> None:
        """Wait until the device has processed everything sent so far (a status answered)."""
        self.driver.wait(self.driver.request_status())

    def close(self) -> None:
        self.governor.close()
        self.clock.close()


def in_process(
    trials: int, latency_ms: float, lose_one: bool = False, protocol: str = "tsp"
) -> tuple[list[float], list[float]]:
    """Device-side and host-side (call returned) delays in seconds. ``lose_one``: the first
    frame the host sends after the stop is requested is lost on the line (S14)."""
    rig = Trials(f"sim://{protocol}?latency_ms={latency_ms:g}", protocol)
    assert isinstance(rig.port, SimSerial)
    zero = threading.Event()
    zero_time = [0.0]

    def listen(d: Delivery) -> None:
        if d.channel == 1 and d.ma == 0.0:
            zero_time[0] = d.time
            zero.set()

    rig.port.device.record.add_listener(listen)
    device: list[float] = []
    host: list[float] = []
    try:
        for _ in range(trials):
            rig.raise_output()
            zero.clear()
            if lose_one:
                sim = rig.port.device
                armed = len(sim.faults_applied)
                sim.inject("drop", direction="device")
                while len(sim.faults_applied) == armed:  # armed on the clock thread
                    time.sleep(0.0001)
            requested, returned = rig.stop()
            if not zero.wait(5.0):
                raise RuntimeError("the simulated device never delivered 0 mA after the stop")
            device.append(zero_time[0] - requested)
            host.append(returned - requested)
    finally:
        rig.close()
    return device, host


def over_pty(trials: int, workdir: Path, protocol: str = "tsp") -> tuple[list[float], list[float]]:
    where = ("--pty", "--latency-ms", "0", "--protocol", protocol)
    with SimProcess(workdir, *where, name=f"delivered-{protocol}") as sim:
        rig = Trials(sim.url, protocol)
        device: list[float] = []
        host: list[float] = []
        try:
            for _ in range(trials):
                rig.raise_output()
                sim.new_deliveries()
                requested, returned = rig.stop()
                rig.confirm()
                zeros = [t for t, ch, ma in sim.new_deliveries() if ch == 1 and ma == 0.0]
                if not zeros:
                    raise RuntimeError("tens-sim recorded no 0 mA after the stop")
                device.append(zeros[0] - requested)
                host.append(returned - requested)
        finally:
            rig.close()
    return device, host


def figures(trials: int, workdir: Path, progress: Callable[[str], None]) -> list[Figure]:
    progress(f"in-process sim://tsp, 1 ms line latency, {trials} trials")
    sim_dev, sim_host = in_process(trials, 1.0)
    progress(f"in-process sim://tsp, 0 ms line latency, {trials} trials")
    raw_dev, _ = in_process(trials, 0.0)
    progress(f"in-process sim://tsp, 1 ms line, one frame lost at the stop, {trials} trials")
    lost_dev, _ = in_process(trials, 1.0, lose_one=True)
    progress(f"tens-sim --pty, {trials} trials")
    pty_dev, pty_host = over_pty(trials, workdir)
    progress(f"in-process sim://sciencemode4 (the P24), 1 ms line latency, {trials} trials")
    p24_dev, p24_host = in_process(trials, 1.0, protocol="sciencemode4")
    progress(f"tens-sim --protocol sciencemode4 --pty, {trials} trials")
    p24_pty_dev, p24_pty_host = over_pty(trials, workdir, "sciencemode4")
    s_lost = Stats.of(lost_dev).scaled(1000.0)
    s_sim = Stats.of(sim_dev).scaled(1000.0)
    s_raw = Stats.of(raw_dev).scaled(1000.0)
    s_pty = Stats.of(pty_dev).scaled(1000.0)
    s_p24 = Stats.of(p24_dev).scaled(1000.0)
    s_p24_pty = Stats.of(p24_pty_dev).scaled(1000.0)
    progress("timer wake-up noise of this machine (1 ms timed waits)")
    s_timer = Stats.of(benchlib.timer_overshoot(trials)).scaled(1000.0)
    return [
        Figure(
            "P1.sim",
            "e-stop -> device 0 mA, in-process sim:// (1 ms modelled line), p99",
            s_sim.p99,
            "ms",
            2.0,
            "<=",
            s_sim,
            {"host_call_p99_ms": ms(Stats.of(sim_host).p99), "latency_ms": 1.0},
        ),
        Figure(
            "P1.sim0",
            "e-stop -> device 0 mA, in-process sim:// (0 ms line: software only), p99",
            s_raw.p99,
            "ms",
            2.0,
            "<=",
            s_raw,
            {"latency_ms": 0.0},
        ),
        Figure(
            "P1.lost",
            "e-stop -> device 0 mA with ONE frame lost at the stop, sim:// (1 ms line), p99",
            s_lost.p99,
            "ms",
            50.0,
            "<=",
            s_lost,
            {"latency_ms": 1.0, "lost": "the first frame the host sends after the call"},
        ),
        Figure(
            "P1.pty",
            "e-stop -> device 0 mA, tens-sim over a pty, p99",
            s_pty.p99,
            "ms",
            5.0,
            "<=",
            s_pty,
            {"host_call_p99_ms": ms(Stats.of(pty_host).p99)},
        ),
        Figure(
            "P1.p24",
            "e-stop -> device 0 mA, the emulated P24 in-process (1 ms modelled line), p99",
            s_p24.p99,
            "ms",
            2.0,
            "<=",
            s_p24,
            {"host_call_p99_ms": ms(Stats.of(p24_host).p99), "latency_ms": 1.0},
        ),
        Figure(
            "P1.p24pty",
            "e-stop -> device 0 mA, the emulated P24 over a pty, p99",
            s_p24_pty.p99,
            "ms",
            5.0,
            "<=",
            s_p24_pty,
            {"host_call_p99_ms": ms(Stats.of(p24_pty_host).p99)},
        ),
        Figure(
            "P1.timer",
            "reference: how late a 1 ms timed wait wakes on this machine now, p99",
            s_timer.p99,
            "ms",
            None,
            "info",
            s_timer,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser(__doc__ or "P1")
    p.add_argument(
        "--switch-interval",
        type=float,
        metavar="S",
        help="sys.setswitchinterval(S) first (CPython's default is 0.005 s): how long the "
        "in-process device thread may wait for the interpreter lock (see docs/performance.md)",
    )
    args = p.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    trials = QUICK_TRIALS if args.quick else TRIALS
    with tempfile.TemporaryDirectory(prefix="tens-bench-p1-") as tmp:
        figs = figures(trials, Path(tmp), benchlib.progress)
    benchlib.report("P1 emergency stop -> device output 0", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
