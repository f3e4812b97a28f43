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
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tens_control.store import EndReason, PainSite, RatingTime, Store
from tests.sim_process import SimProcess, start_tens_sim

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

    def hold(self, key: str, seconds: float, every: float = 0.03) -> float:
        """Hold ``key`` down: the terminal's auto-repeat, one press every ``every`` seconds
        (plus tmux's own time), for ``seconds``. Returns the monotonic time of the release."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.run("send-keys", "-t", "ui", key)
            time.sleep(every)
        return time.monotonic()

    def wait_gone(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} was still shown after {timeout} s:\n{screen}")

    def app_pid(self) -> int:
        """The pid of the tens-control process in the window (a child of the pane's shell)."""
        shell = self.run("display-message", "-p", "-t", "ui", "#{pane_pid}").stdout.strip()
        children = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", shell], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        pids = [int(line.split()[0]) for line in children if "tens_control" in line]
        assert pids, children
        return pids[0]

    def close(self) -> None:
        """Close the window (the program in it has exited, or is killed with it)."""
        self.run("kill-session", "-t", "ui", check=False)

    def alive(self) -> bool:
        return self.run("has-session", "-t", "ui", check=False).returncode == 0

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if TMUX is None:
        if os.environ.get("TENS_CONTROL_REQUIRE_TMUX"):  # CI (.ci/run): never skipped there
            pytest.fail("tmux is not installed, and .ci/run requires it")
        pytest.skip("tmux is not installed: the real-terminal end-to-end test needs it")
    term = Terminal(f"tens-e2e-{os.getpid()}-{tmp_path.name}")
    try:
        yield term
    finally:
        term.kill()


ENV = {
    "TENS_CONTROL_PATIENT": "e2e-patient",
    "TERM": "xterm-256color",
    "COLORTERM": "truecolor",
}


def ui_command(tmp_path: Path, db: Path, *args: str) -> str:
    """The shell command that runs the UI in the tmux window, then says how it exited."""
    env = {"TENS_CONTROL_CONFIG": str(tmp_path / "config.toml"), **ENV}  # nothing saved
    return " ".join(
        [
            "env",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m",
            "tens_control",
            "--db",
            shlex.quote(str(db)),
            *(shlex.quote(a) for a in args),
            "; echo tens-control-exited-$?; sleep 30",
        ]
    )


def test_a_session_in_a_real_terminal_is_logged(terminal: Terminal, tmp_path: Path) -> None:
    db = tmp_path / "tens.sqlite3"
    command = ui_command(tmp_path, db, "--session-minutes", str(SESSION_MINUTES))
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


# --------------------------------------------------------------------------- issue 12


@pytest.fixture
def pty_sim(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(tmp_path, "--pty", "--seed", "4")


def test_holding_up_raises_and_letting_go_stops_on_the_device(
    terminal: Terminal, tmp_path: Path, pty_sim: SimProcess
) -> None:
    """S16 in a real terminal on a simulator in its own process, read from what it DELIVERED:
    ↑ held with auto-repeat raises; after the release the output rises at most by the one step
    already on its way, and then stays."""
    db = tmp_path / "tens.sqlite3"
    screened = subprocess.run(
        [sys.executable, "-m", "tens_control", "screening", "--none", "--db", str(db)],
        env={**os.environ, "TENS_CONTROL_CONFIG": str(tmp_path / "config.toml"), **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert screened.returncode == 0, screened.stderr
    terminal.start(ui_command(tmp_path, db, "--device", pty_sim.url), width=80, height=24)
    terminal.wait_for("N  start a session", timeout=40)
    _session(terminal)
    started = time.monotonic()
    released = terminal.hold("Up", 2.5)
    time.sleep(1.0)  # the release is noticed (no repeat for 0.2 s), the step on its way lands
    settled = pty_sim.delivered()
    at_release = settled.level_at(1, released)
    level = settled.level_at(1, time.monotonic())
    assert level >= 1.0  # it rose while held
    assert level <= at_release + 0.5 + 1e-9  # at most one step (0.5 mA) after the release
    time.sleep(4.0)  # nothing pressed: nothing more
    later = pty_sim.delivered()
    assert later.max_between(1, released + 1.0, time.monotonic()) == level
    assert later.max_between(1, started, time.monotonic()) <= level
    screen = terminal.screen()
    assert f"channel 1: {level:g} mA" in screen  # the screen says what the device delivers
    assert "rising" not in screen
    terminal.keys("x")  # end the session: output off, then the ratings after
    terminal.wait_for("After the session")
    assert pty_sim.delivered().level_at(1, time.monotonic()) == 0.0


def _session(terminal: Terminal, before: str = "6") -> None:
    """From home: choose the first program, rate before (then skip the second), start."""
    terminal.keys("n")
    terminal.wait_for("Choose a program")
    terminal.keys("Enter")
    terminal.wait_for("Before the session")
    terminal.keys(before)
    terminal.wait_for("question 2 of 2")
    terminal.keys("s")
    terminal.wait_for("Press Enter to start")
    terminal.keys("Enter")
    terminal.wait_for("time left")


def _after(terminal: Terminal, rating: str = "4") -> None:
    """The ratings after a session (one given, one skipped), then save and finish."""
    terminal.wait_for("After the session")
    terminal.keys(rating)
    terminal.wait_for("question 2 of 2")
    terminal.keys("s")
    terminal.wait_for("save and finish")
    terminal.keys("f")
    terminal.wait_for("What next")


def _quit(terminal: Terminal) -> None:
    terminal.keys("q")
    terminal.wait_for("tens-control-exited-0", timeout=20)
    terminal.close()


def test_a_week_of_use_has_no_dead_end(terminal: Terminal, tmp_path: Path) -> None:
    """Seven days in a real terminal, one start of the UI a day (the calendar moved ahead by
    the hidden --days-ahead): sessions with ratings, an emergency stop, a lead-off with a
    too-early resume, a missed day, Q mid-session, a crash and the restart after it. Every day
    ends back at home; the log has every session with its reason, on its day."""
    db = tmp_path / "tens.sqlite3"
    short = ("--session-minutes", "0.1")  # six seconds of simulated stimulation

    # the simulator keeps its odometer across starts, as a real unit does (verify checks it)
    odometer = tmp_path / "odometer.json"
    sim = f"sim://tsp?odometer={odometer}"

    def day(n: int, *args: str, device: str = sim) -> None:
        command = ui_command(tmp_path, db, "--days-ahead", str(n), "--device", device, *args)
        terminal.start(command)

    # day 0: the safety questions, then a whole session
    day(0, *short)
    terminal.wait_for("Question 1 of 9", timeout=40)
    for number in range(2, 10):
        terminal.keys("n")
        terminal.wait_for(f"Question {number} of 9")
    terminal.keys("n")
    terminal.wait_for("you may use TENS")
    terminal.keys("Enter")
    terminal.wait_for("N  start a session", timeout=30)
    _session(terminal, "7")
    terminal.keys("Up", "Up", "Up", "Up")
    terminal.wait_for("■ STIMULATING")
    terminal.wait_for("Session complete", timeout=30)
    _after(terminal, "4")
    terminal.wait_for("Last session: conventional, completed")
    _quit(terminal)

    # day 1: an emergency stop after a few seconds; it does not use up the day
    day(1, "--session-minutes", "5")
    terminal.wait_for("N  start a session", timeout=40)
    _session(terminal, "6")
    terminal.keys("Up", "Up")
    terminal.wait_for("■ STIMULATING")
    terminal.keys("Space")
    terminal.wait_for("EMERGENCY STOP")
    _after(terminal, "6")
    screen = terminal.wait_for("Last session: conventional, emergency stop")
    assert "not counted: 1" in screen
    assert "N  start a session" in screen
    _quit(terminal)

    # day 2: the pad comes off; resuming while it is still off is refused; back on, resumed
    day(2, "--session-minutes", "5", device=f"{sim}&faults=leadoff@25:1,leadon@40:1")
    terminal.wait_for("N  start a session", timeout=40)
    _session(terminal, "6")
    terminal.keys("Up", "Up", "Up", "Up")
    terminal.wait_for("■ STIMULATING")
    terminal.wait_for("Electrode off on channel 1", timeout=40)
    terminal.keys("p")
    screen = terminal.wait_for("still off the skin")
    assert "PAUSED" in screen
    assert "RUNNING" not in screen
    time.sleep(16.0)  # the pad is back on at 40 s
    terminal.keys("p")
    screen = terminal.wait_for("RUNNING", timeout=20)
    assert "output at 0 mA" in screen  # it starts again from zero
    terminal.keys("x")
    _after(terminal, "5")
    terminal.wait_for("Last session: conventional, stopped by user")
    _quit(terminal)

    # day 3: missed (no use at all)

    # day 4: Q during a session stops the output first and quits; then a whole session
    day(4, *short)
    terminal.wait_for("N  start a session", timeout=40)
    _session(terminal, "5")
    terminal.keys("Up", "Up")
    terminal.wait_for("■ STIMULATING")
    _quit(terminal)
    day(4, *short)
    # the session Q stopped is on record, stopped early and not counted against the day (at
    # 80x24 the missed-day reminder pushes "Last session" below the fold)
    terminal.wait_for("(stopped early, not counted: 1)", timeout=40)
    assert "No session yesterday" in terminal.screen()  # day 3 was missed
    _session(terminal, "5")
    terminal.keys("Up", "Up")
    terminal.wait_for("Session complete", timeout=30)
    _after(terminal, "3")
    _quit(terminal)

    # day 5: the program is killed mid-session (kill -9); the next start says so
    day(5, "--session-minutes", "5")
    terminal.wait_for("N  start a session", timeout=40)
    _session(terminal, "5")
    terminal.keys("Up", "Up")
    terminal.wait_for("■ STIMULATING")
    os.kill(terminal.app_pid(), signal.SIGKILL)
    terminal.wait_for("tens-control-exited-137", timeout=20)
    terminal.close()
    day(5, *short)
    terminal.wait_for("1 earlier session(s) ended unexpectedly", timeout=40)
    terminal.wait_for("ended unexpectedly")
    _quit(terminal)

    # day 6: a whole session, then the history
    day(6, *short)
    terminal.wait_for("N  start a session", timeout=40)
    _session(terminal, "4")
    terminal.keys("Up", "Up", "Up")
    terminal.wait_for("Session complete", timeout=30)
    _after(terminal, "2")
    terminal.keys("h")
    terminal.wait_for("History")
    terminal.keys("b")
    terminal.wait_for("What next")
    _quit(terminal)

    with Store.open(db, create=False, recover=False) as store:
        sessions = store.sessions("e2e-patient")
        reasons = [s.end_reason for s in sessions]
        assert reasons == [
            EndReason.COMPLETED,
            EndReason.EMERGENCY_STOP,
            EndReason.STOPPED_BY_USER,
            EndReason.STOPPED_BY_USER,
            EndReason.COMPLETED,
            EndReason.HOST_CRASH,
            EndReason.COMPLETED,
        ]
        first = sessions[0].started_at.date()
        days = [(s.started_at.date() - first).days for s in sessions]
        assert days == [0, 1, 2, 4, 4, 5, 6]  # and nothing on day 3
        lead_off = [e for e in store.events(session=sessions[2].uid) if e.kind == "lead_off"]
        assert lead_off
        report = store.verify()
        assert report.ok, report.problems
