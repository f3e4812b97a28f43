"""A real terminal, end to end: ``tens-control`` in tmux on the built-in simulator.

The test starts the UI in a private tmux server, answers the first-run safety questions, runs a
short session (hidden option ``--session-minutes``) with pain ratings before and after, quits,
and then finds the completed session, with its ratings, in the database. It reads the screen
with ``tmux capture-pane``. Real time, bounded: each wait has a deadline.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tens_control.store import EndReason, PainSite, RatingTime, Store

pytestmark = pytest.mark.slow

TMUX = shutil.which("tmux")
SESSION_MINUTES = 0.1  # six seconds of (simulated) stimulation


class Terminal:
    """One tmux server of our own (-L), with one window running the command."""

    def __init__(self, socket: str) -> None:
        assert TMUX is not None
        self.socket = socket
        self.tmux = TMUX

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=10,
        )

    def start(self, command: str, width: int = 100, height: int = 32) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "ui", "-x", str(width),
                 "-y", str(height), command)  # fmt: skip

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "ui", key)
            time.sleep(0.05)

    def screen(self) -> str:
        result = self.run("capture-pane", "-p", "-t", "ui", check=False)
        return result.stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear within {timeout} s; the screen:\n{screen}")

    def alive(self) -> bool:
        return self.run("has-session", "-t", "ui", check=False).returncode == 0

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if TMUX is None:
        pytest.skip("tmux is not installed: the real-terminal end-to-end test needs it")
    term = Terminal(f"tens-e2e-{os.getpid()}-{tmp_path.name}")
    try:
        yield term
    finally:
        term.kill()


def test_a_session_in_a_real_terminal_is_logged(terminal: Terminal, tmp_path: Path) -> None:
    db = tmp_path / "tens.sqlite3"
    env = {
        "TENS_CONTROL_CONFIG": str(tmp_path / "config.toml"),  # nothing saved: the simulator
        "TENS_CONTROL_PATIENT": "e2e-patient",
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    command = " ".join(
        [
            "env",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m",
            "tens_control",
            "--db",
            shlex.quote(str(db)),
            "--session-minutes",
            str(SESSION_MINUTES),
            "; echo tens-control-exited-$?; sleep 30",
        ]
    )
    terminal.start(command)

    # first run: the safety questions, on the simulator (said plainly)
    terminal.wait_for("Question 1 of 9", timeout=40)
    screen = terminal.wait_for("SIMULATOR — no stimulation is delivered")
    assert "STOP: Esc or Space" in screen
    for number in range(2, 10):
        terminal.keys("n")
        terminal.wait_for(f"Question {number} of 9")
    terminal.keys("n")
    terminal.wait_for("you may use TENS")
    terminal.keys("Enter")
    terminal.wait_for("start a session")

    # a session: program, ratings before, start, intensity up
    terminal.keys("n")
    terminal.wait_for("Choose a program")
    terminal.keys("Enter")
    terminal.wait_for("Before the session")
    terminal.keys("6")
    terminal.wait_for("question 2 of 2")
    terminal.keys("5")
    terminal.wait_for("Press Enter to start")
    terminal.keys("Enter")
    terminal.wait_for("time left")
    terminal.keys("Up", "Up", "Up", "Up")
    screen = terminal.wait_for("■ STIMULATING")
    assert "SIMULATOR" in screen

    # the session completes by itself; ratings after, then finish
    terminal.wait_for("Session complete", timeout=SESSION_MINUTES * 60 + 15)
    terminal.keys("3")
    terminal.wait_for("question 2 of 2")
    terminal.keys("s")
    terminal.wait_for("save and finish")
    terminal.keys("f")
    terminal.wait_for("Last session: conventional, completed")
    terminal.keys("q")
    terminal.wait_for("tens-control-exited-0", timeout=15)

    with Store.open(db, create=False, recover=False) as store:
        (session,) = store.sessions("e2e-patient")
        assert session.end_reason is EndReason.COMPLETED
        assert session.simulator
        assert session.planned_minutes == pytest.approx(SESSION_MINUTES)
        before = session.rating(RatingTime.BEFORE, PainSite.PHANTOM)
        after = session.rating(RatingTime.AFTER, PainSite.PHANTOM)
        skipped = session.rating(RatingTime.AFTER, PainSite.RESIDUAL_LIMB)
        assert before is not None
        assert before.nrs == 6
        assert after is not None
        assert after.nrs == 3
        assert skipped is not None
        assert skipped.nrs is None  # skipped: missing, never 0
        amplitudes = [
            e.payload.get("to_ma")
            for e in store.events(session=session.uid)
            if e.kind == "amplitude_changed"
        ]
        assert max(float(a) for a in amplitudes if isinstance(a, int | float)) > 0
        assert store.verify().ok
