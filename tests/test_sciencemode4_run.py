"""``tens-control run --protocol sciencemode4`` on the emulated P24: in this process in virtual
time, and as separate processes in real time over a pty (``tens-sim --protocol sciencemode4``),
including a SIGKILL of the host mid-session (the P24 zeroes its output by itself within its
2 s keep-alive timeout: the one documented exception to S17, docs/safety.md).

Assertions about output are made on what the emulator delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.clock import Clock
from simulator.cli import load_record
from simulator.device import SimDevice
from tens_control.cli import main
from tens_control.device import OpenedDevice, open_device
from tens_control.store import EndReason, Store
from tests.sim_process import first_line

WATCHDOG_S = 2.0
SLACK_S = 0.5
"""Scheduling slack of two busy processes on a loaded CI machine (not a timing claim)."""


@pytest.fixture(autouse=True)
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


def test_run_on_the_emulated_p24_in_virtual_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[OpenedDevice] = []

    def opener(url: str, clock: Clock, **kwargs: Any) -> OpenedDevice:
        device = open_device(url, clock, **kwargs)
        opened.append(device)
        return device

    monkeypatch.setattr("tens_control.commands.run.open_device", opener)
    db = tmp_path / "db.sqlite3"
    code = main(
        [
            "run",
            "--virtual-time",
            "--db",
            str(db),
            "--device",
            "sim://sciencemode4?seed=3",
            "--protocol",
            "sciencemode4",
            "--program",
            "conventional",
            "--minutes",
            "1",
            "--target-ma",
            "16.5",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    first = out.out.splitlines()[0]
    assert "model=P24" in first
    assert "profile=p24" in first
    assert out.out.splitlines()[-1].startswith("completed session=")
    (device,) = opened
    sim = getattr(device.port, "device", None)
    assert isinstance(sim, SimDevice)
    record = sim.record
    for channel in (1, 2):
        assert record.max_level(channel) == 16.5
        steps = [after - before for _, before, after in record.steps(channel)]
        assert max(steps) <= 1.0 + 1e-9  # S2 on the device's side
    assert record.levels_at(max(d.time for d in record)) == dict.fromkeys(range(1, 9), 0.0)
    with Store.open(db, create=False, recover=False) as store:
        (session,) = store.sessions()
        assert session.end_reason is EndReason.COMPLETED
        assert session.device is not None
        assert session.device.model == "P24"


# --------------------------------------------------------------------------- processes


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TENS_CONTROL_CONFIG"] = str(tmp_path / "config.toml")
    env.pop("TENS_CONTROL_DB", None)
    env.pop("TENS_CONTROL_PATIENT", None)
    return env


def _run(db: Path, url: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tens_control",
        "run",
        "--db",
        str(db),
        "--device",
        url,
        "--protocol",
        "sciencemode4",
        "--program",
        "conventional",
        *args,
    ]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform == "win32", reason="ptys and signals are POSIX")
def test_run_over_a_pty_and_a_sigkill_mid_session(tmp_path: Path) -> None:
    env = _env(tmp_path)
    record_path = tmp_path / "delivered.jsonl"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "--protocol",
            "sciencemode4",
            "--pty",
            "--record",
            str(record_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = first_line(sim, 30.0)
        assert url.startswith("/dev/")
        db = tmp_path / "db.sqlite3"
        screened = subprocess.run(
            [sys.executable, "-m", "tens_control", "screening", "--none", "--db", str(db)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert screened.returncode == 0, screened.stderr
        done = subprocess.run(
            _run(db, url, "--minutes", "0.05", "--target-ma", "2"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "completed session=" in done.stdout
        record = load_record(record_path, 8)
        assert record.max_level(1) == 2.0
        assert record.levels_at(max(d.time for d in record))[1] == 0.0

        # the host killed while stimulating: the P24 stops by itself after 2 s
        run = subprocess.Popen(
            _run(db, url, "--minutes", "5", "--target-ma", "3"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = first_line(run, 60.0)
                if "ch1_ma=3 " in line:
                    break
            killed = time.monotonic()
            run.kill()
            run.wait(10)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(10)
        deadline = time.monotonic() + WATCHDOG_S + 10.0
        while time.monotonic() < deadline:
            if load_record(record_path, 8).all_zero_at(killed) is not None:
                break
            time.sleep(0.1)
        record = load_record(record_path, 8)
        assert record.level_at(1, killed) == 3.0
        zero = record.all_zero_at(killed)
        assert zero is not None
        assert zero - killed <= WATCHDOG_S + SLACK_S
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(10)
