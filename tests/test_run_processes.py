"""``tens-control run`` as a separate process, in real time, against ``tens-sim`` in another
process over a pty and over TCP; Ctrl-C; and a SIGKILL in the middle of a session (the device's
watchdog zeroes the output, the database survives, the next start closes the session as host
crash, and every safety event committed before the kill is still there).

Real time, but short and bounded: every wait has a deadline far above what it needs."""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from simulator.cli import load_record
from simulator.firmware import DeliveredRecord
from tens_control.session import SessionController
from tens_control.store import EndReason, Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="ptys and signals are POSIX"),
]

WATCHDOG_S = 1.0
SLACK_S = 0.5
"""Scheduling slack of two busy processes on a loaded CI machine (not a timing claim)."""


class Sim:
    """``tens-sim`` in a subprocess, with its delivered record."""

    def __init__(self, workdir: Path, *where: str) -> None:
        self.record_path = workdir / "delivered.jsonl"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", *where, "--record", str(self.record_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = _read_line(self.process.stdout, 30.0)
        assert line, "tens-sim did not announce its port"
        self.url = line.strip()

    def record(self) -> DeliveredRecord:
        return load_record(self.record_path, 2)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _read_line(stream: IO[str], timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = dict(os.environ)
    out["TENS_CONTROL_CONFIG"] = str(tmp_path / "config.toml")
    out.pop("TENS_CONTROL_DB", None)
    out.pop("TENS_CONTROL_PATIENT", None)
    return out


@pytest.fixture
def pty_sim(tmp_path: Path) -> Iterator[Sim]:
    sim = Sim(tmp_path, "--pty")
    try:
        yield sim
    finally:
        sim.close()


def _run_command(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tens_control", "run", "--db", str(db), *args]


def _screen(db: Path, env: dict[str, str]) -> None:
    """A simulator on a pty or TCP is a real device to the host (S17: only ``sim://`` skips the
    contraindication screening), so the patient answers it first."""
    done = subprocess.run(
        [sys.executable, "-m", "tens_control", "screening", "--none", "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _complete_run(tmp_path: Path, env: dict[str, str], sim: Sim) -> None:
    db = tmp_path / "db.sqlite3"
    _screen(db, env)
    done = subprocess.run(
        _run_command(
            db,
            "--device",
            sim.url,
            "--program",
            "conventional",
            "--minutes",
            "0.05",
            "--target-ma",
            "2",
            "--pain-before",
            "5",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "completed session=" in done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith("time=")]
    assert len(lines) >= 3
    with Store.open(db, create=False, recover=False) as store:
        (session,) = store.sessions()
        assert session.end_reason is EndReason.COMPLETED
        assert session.device is not None
        assert session.device.reported_simulator  # the device says so; the host does not
        assert not session.device.is_simulator  # trust it (S17): only sim:// is a simulator
        assert store.verify().ok
    record = sim.record()
    assert record.max_level(1) == 2.0
    assert record.max_level(2) == 2.0
    last = max(d.time for d in record)
    assert record.levels_at(last) == {1: 0.0, 2: 0.0}


def test_run_over_a_pty(tmp_path: Path, env: dict[str, str], pty_sim: Sim) -> None:
    assert pty_sim.url.startswith("/dev/")
    _complete_run(tmp_path, env, pty_sim)


def test_run_over_tcp(tmp_path: Path, env: dict[str, str]) -> None:
    sim = Sim(tmp_path, "--tcp", "127.0.0.1:0")
    try:
        assert sim.url.startswith("socket://127.0.0.1:")
        _complete_run(tmp_path, env, sim)
    finally:
        sim.close()


def _start_run(db: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    if "--device" in args and not args[args.index("--device") + 1].startswith("sim://"):
        _screen(db, env)
    return subprocess.Popen(
        _run_command(db, *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen[str], wanted: str, timeout: float) -> list[str]:
    """Read stdout lines until one contains ``wanted``; returns every line read."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = _read_line(process.stdout, max(0.0, deadline - time.monotonic()))
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if wanted in line:
            return seen
    raise AssertionError(f"{wanted!r} not printed within {timeout} s; got {seen[-5:]}")


def test_ctrl_c_stops_at_once_and_is_logged_as_stopped_by_user(
    tmp_path: Path, env: dict[str, str], pty_sim: Sim
) -> None:
    db = tmp_path / "db.sqlite3"
    process = _start_run(
        db,
        env,
        "--device",
        pty_sim.url,
        "--program",
        "conventional",
        "--minutes",
        "5",
        "--target-ma",
        "3",
    )
    try:
        _wait_for(process, "ch1_ma=3 ", 60.0)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "tens-control: session ended: stopped by user (Ctrl-C)"
    assert "interrupted: stopped by user (Ctrl-C)" in out
    with Store.open(db, create=False, recover=False) as store:
        (session,) = store.sessions()
        assert session.end_reason is EndReason.STOPPED_BY_USER
    record = pty_sim.record()
    zero = record.all_zero_at(sent)
    assert zero is not None
    assert zero - sent <= SLACK_S


def test_sigkill_mid_session(tmp_path: Path, env: dict[str, str], pty_sim: Sim) -> None:
    db = tmp_path / "db.sqlite3"
    process = _start_run(
        db,
        env,
        "--device",
        pty_sim.url,
        "--program",
        "conventional",
        "--minutes",
        "5",
        "--target-ma",
        "4",
        "--print-log",
    )
    try:
        lines = _wait_for(process, "ch1_ma=4 ", 60.0)
        lines += _wait_for(process, "time=", 10.0)
        killed = time.monotonic()
        process.kill()  # SIGKILL: no stop, no close, no atexit
        process.wait(10)
        assert process.stdout is not None
        lines += process.stdout.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == -signal.SIGKILL

    # the device zeroes its own output within its watchdog
    deadline = time.monotonic() + WATCHDOG_S + 10.0
    while time.monotonic() < deadline:
        record = pty_sim.record()
        if record.all_zero_at(killed) is not None:
            break
        time.sleep(0.1)
    record = pty_sim.record()
    assert record.level_at(1, killed) == 4.0  # it was stimulating when killed
    zero = record.all_zero_at(killed)
    assert zero is not None
    assert zero - killed <= WATCHDOG_S + SLACK_S

    # the database file is sound
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()

    # every safety event the run printed as committed is still there
    committed = {
        part.removeprefix("hash=")
        for line in lines
        if line.startswith("logged ")
        for part in line.split()
        if part.startswith("hash=")
    }
    assert any("kind=amplitude_changed" in line for line in lines if line.startswith("logged "))

    # the next start closes the session as host crash
    with Store.open(db, create=False, recover=False) as store:
        (open_session,) = store.sessions()
        assert open_session.end_reason is None
        controller = SessionController(store, store.clock)
        try:
            assert controller.recovered_sessions == (open_session.uid,)
        finally:
            controller.close()
        info = store.session(open_session.uid)
        assert info.end_reason is EndReason.HOST_CRASH
        stored = {e.hash for e in store.events()}
        assert committed
        assert committed <= stored
        assert store.verify().ok
