"""The device odometer (DESIGN.md §12): a log anchor kept by the TSP/2 firmware.

The simulated firmware counts the links in which its output went on and its seconds of output,
keeps them across power cycles (in a file, as a board keeps them in non-volatile memory),
reports them in ``HELLO``; each session logs them; ``verify`` shows a jump in the counter as
sessions missing from the log.
"""

from __future__ import annotations

from pathlib import Path

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings
from drivers.clock import VirtualClock
from drivers.tsp.codec import PROTOCOL_MAJOR, Ack, Configure, Hello, Start, Stop, parse_hello_ack
from simulator.testing import RawTspHost
from tens_control.store.records import SessionStarted
from tests.session_support import make_rig

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)


def _hello(host: RawTspHost) -> tuple[int | None, float | None]:
    reply = host.command(Hello(PROTOCOL_MAJOR))
    assert isinstance(reply, Ack)
    info = parse_hello_ack(reply).info
    return info.odometer_sessions, info.odometer_stimulation_s


def test_the_firmware_counts_links_with_output_and_keeps_them_across_power_cycles(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odometer.json"
    host = RawTspHost(f"sim://tsp?odometer={path}")
    assert _hello(host) == (0, 0.0)
    host.command(Configure(1, CONVENTIONAL))
    host.command(Start())
    host.keep_alive(20.0)
    host.command(Stop())  # a pause ...
    host.command(Start())  # ... and the same session goes on: still one session
    host.keep_alive(10.0)
    host.command(Stop())
    assert _hello(host) == (1, 30.0)
    host.close()  # power off
    again = RawTspHost(f"sim://tsp?odometer={path}", VirtualClock())
    assert _hello(again) == (1, 30.0)  # the counters survived the power cycle
    again.command(Configure(1, CONVENTIONAL))
    again.command(Start())
    again.keep_alive(5.0)
    assert _hello(again) == (2, 35.0)  # a new link: a new session; time counted while on
    again.close()


def test_each_session_logs_the_odometer_and_verify_shows_a_gap_as_missing_sessions(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.c.connect("sim://tsp")
        first = rig.run_session(minutes=0.5)
        # the unit is used once without this log (another computer, a deleted database)
        rig.sim.firmware.odometer.count_session()
        rig.c.finish()
        second = rig.run_session(minutes=0.5)
        logged = {
            r.session: r.odometer
            for r in rig.records("session_started")
            if isinstance(r, SessionStarted)
        }
        one, two = logged[first], logged[second]
        assert one is not None
        assert two is not None
        assert (one.sessions, two.sessions) == (0, 2)
        assert two.stimulation_s >= one.stimulation_s + 30.0 - 1.0  # whole seconds on the wire
        report = rig.store.verify()
        assert [p.kind for p in report.problems] == ["missing"]
        assert "ran 1 session(s)" in str(report.problems[0])
    finally:
        rig.close()
