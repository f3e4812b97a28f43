"""Re-opening a simulated RehaStim 2's pty: ``tens-control run --protocol sciencemode2`` as a
separate process against ``tens-sim --protocol sciencemode2 --pty`` in another, in real time.

The bug this guards against: after one run on the pty (killed with SIGKILL or not), every later
run failed with a ``termios.error: (22, 'Invalid argument')`` traceback from the port's open.
A pty cannot keep even parity (the kernel drops PARENB), so once a host had set 460800 baud
8E1, the next host's identical request changed nothing the pty keeps, and the kernel refused it.
``tens-sim`` now puts the pty back to its power-on line settings whenever the host closes it,
and ``open_port`` turns any refusal of the line settings into one clear sentence.

Also: a pty whose simulator is gone (the path vanished, or the path is still there but nothing
is behind it) gives one clear line, never a traceback. Every assertion about output is on the
simulator's delivered record.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from drivers.base import PortError
from drivers.clock import RealClock
from drivers.transport import open_port
from tests.sim_process import SimProcess, first_line, start_tens_sim

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="ptys and signals are POSIX"),
]

SM2 = ("--protocol", "sciencemode2", "--pty", "--seed", "4")
WATCHDOG_S = 1.2
SLACK_S = 1.0
"""Scheduling slack of busy processes on a loaded CI machine (not a timing claim)."""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = dict(os.environ)
    out["TENS_CONTROL_CONFIG"] = str(tmp_path / "config.toml")
    out.pop("TENS_CONTROL_DB", None)
    out.pop("TENS_CONTROL_PATIENT", None)
    return out


@pytest.fixture
def db(tmp_path: Path, env: dict[str, str]) -> Path:
    """A database whose patient has answered the contraindication screening (a RehaStim 2 on
    a pty is a real device as far as tens-control can tell)."""
    path = tmp_path / "db.sqlite3"
    done = subprocess.run(
        [sys.executable, "-m", "tens_control", "screening", "--none", "--db", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(tmp_path, *SM2, channels=8)


def _run(db: Path, device: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tens_control",
        "run",
        "--db",
        str(db),
        "--protocol",
        "sciencemode2",
        "--device",
        device,
        "--program",
        "conventional",
        *args,
    ]


def _complete_run(db: Path, env: dict[str, str], sim: SimProcess, target_ma: int) -> None:
    """One short session on the pty: it completes and the device delivered ``target_ma``."""
    started = time.monotonic()
    done = subprocess.run(
        _run(db, sim.url, "--minutes", "0.05", "--target-ma", str(target_ma)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "completed session=" in done.stdout
    record = sim.delivered()
    for channel in (1, 2):
        assert record.max_between(channel, started, time.monotonic()) == float(target_ma)
    assert record.all_zero_at(time.monotonic()) is not None


def _wait_for_line(process: subprocess.Popen[str], wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = first_line(process, max(0.1, deadline - time.monotonic()))
        seen.append(line)
        if wanted in line:
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{wanted!r} not printed within {timeout} s; got {seen[-5:]}")


def _one_clear_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tens-control: error: port "), stderr
    return lines[0]


@pytest.mark.timeout(240)
def test_a_run_after_a_killed_run_on_the_same_pty_works_and_delivers(
    db: Path, env: dict[str, str], sim: SimProcess
) -> None:
    process = subprocess.Popen(
        _run(db, sim.url, "--minutes", "5", "--target-ma", "3"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(process, "ch1_ma=3 ", 60.0)
        killed = time.monotonic()
        process.kill()  # SIGKILL: no stop, no close; the pty is left as the host set it
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert process.returncode == -signal.SIGKILL
    # the device's own watchdog ends the output, and it goes back to announcing itself
    deadline = time.monotonic() + WATCHDOG_S + 10.0
    while sim.delivered().all_zero_at(killed) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    record = sim.delivered()
    assert record.level_at(1, killed) == 3.0
    zero = record.all_zero_at(killed)
    assert zero is not None
    assert zero - killed <= WATCHDOG_S + SLACK_S

    # the next run on the same pty opens it, completes and delivers; and the one after that
    _complete_run(db, env, sim, target_ma=2)
    _complete_run(db, env, sim, target_ma=4)


@pytest.mark.timeout(120)
def test_a_vanished_pty_gives_one_clear_line(tmp_path: Path, db: Path, env: dict[str, str]) -> None:
    gen = start_tens_sim(tmp_path, *SM2, channels=8)
    sim = next(gen)
    next(gen, None)  # the fixture code after its yield: tens-sim stops, its pty vanishes
    assert not os.path.exists(sim.url)
    done = subprocess.run(
        _run(db, sim.url, "--minutes", "0.05"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    line = _one_clear_line(done.stderr)
    assert f"port {sim.url} " in line
    if not os.path.exists(sim.url):  # (a test running beside this one may take the pty number)
        assert f"port {sim.url} does not exist" in line


@pytest.mark.timeout(120)
@pytest.mark.parametrize("line_set_before", [False, True], ids=["fresh", "left-at-8E1"])
def test_a_pty_with_no_rehastim_behind_it_gives_one_clear_line(
    db: Path, env: dict[str, str], line_set_before: bool
) -> None:
    """A stale path now taken by another pty (nothing answers), also one whose line a host
    already set to the RehaStim 2's 460800 baud 8E1 and nobody put back (its open fails
    where the kernel refuses a parity it cannot keep)."""
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    try:
        if line_set_before:
            serial.Serial(path, 460800, parity=serial.PARITY_EVEN, timeout=0).close()
        done = subprocess.run(
            _run(db, path, "--minutes", "0.05"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(master)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tens-control: error: "), done.stderr
    assert path in lines[0]


# --------------------------------------------------------------------------- open_port


@pytest.mark.parametrize(
    "raised",
    [
        termios.error(22, "Invalid argument"),
        OSError(5, "Input/output error"),
        serial.SerialException("Could not configure port: (22, 'Invalid argument')"),
    ],
    ids=["termios", "oserror", "serial"],
)
def test_open_port_turns_a_refused_line_setting_into_one_port_error(
    monkeypatch: pytest.MonkeyPatch, raised: Exception
) -> None:
    """pyserial lets ``termios.error`` from ``tcsetattr`` through its ``open``; open_port must
    not (the line settings of a stale or foreign pty, or of an adapter that went away)."""
    master, slave = pty.openpty()
    path = os.ttyname(slave)

    def refuse(self: serial.Serial) -> None:
        raise raised

    monkeypatch.setattr(serial.Serial, "open", refuse)
    clock = RealClock()
    try:
        with pytest.raises(PortError) as caught:
            open_port(path, clock=clock, baudrate=460800, parity=serial.PARITY_EVEN)
    finally:
        clock.close()
        os.close(slave)
        os.close(master)
    message = str(caught.value)
    assert message.startswith(f"port {path} ")
    assert "\n" not in message
    assert "460800" in message
