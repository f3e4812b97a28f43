"""The served review (``tens-control review --serve``) as a real server process, for
tests/test_review_serve.py and tests/test_review_serve_browser.py.

The server runs as ``python -m tens_control review --serve --port 0`` (any free port, on
127.0.0.1) with TZ=UTC; the address and token are read from what it prints. Each wait has a
deadline; none asserts on how long anything took.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.fixtures import review_ui_store

T = TypeVar("T")
REVIEW_DAY = "2026-03-30"
"""The fixture clinic is reviewed on day 28 (tests/fixtures/review_ui_store.py)."""
START_TIMEOUT_S = 30.0


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``probe()`` until it gives something other than None (or fails at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (children, their children, …), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # a zombie has ended
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode() for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    token: str
    lines: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.base}/?token={self.token}"

    @property
    def cookie(self) -> str:
        return f"tens_review_{self.port}"

    def read_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line:
            self.lines.append(line.rstrip("\n"))
        return line

    def wait_line(self, pattern: str) -> re.Match[str]:
        """Read what the server prints until a line matches ``pattern``."""
        regex = re.compile(pattern)
        for line in self.lines:
            if (match := regex.search(line)) is not None:
                return match
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.read_line()
            if not line:
                break
            if (match := regex.search(line)) is not None:
                return match
        raise AssertionError(f"the server never printed {pattern!r}; it printed {self.lines}")

    def review_processes(self) -> set[int]:
        """The tabs' review processes (below the server)."""
        return {p for p in descendants(self.process.pid) if "review" in cmdline(p)}


def clinic_db(directory: Path) -> Path:
    """The five-patient fixture clinic (tests/fixtures/review_ui_store.py) in ``directory``."""
    db = directory / "clinic.sqlite3"
    review_ui_store.build(db)
    return db


def serve_command(db: Path, *extra: str, review_day: str = REVIEW_DAY) -> list[str]:
    return [sys.executable, "-m", "tens_control", "review", "--serve", "--db", str(db),
            "--port", "0", "--to", review_day, *extra]  # fmt: skip


def serve_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TZ": "UTC", "PYTHONUNBUFFERED": "1", "TENS_CONTROL_CLINIC_CONFIG": "", **extra})
    return env


@contextmanager
def served(
    db: Path, *extra: str, env: dict[str, str] | None = None, review_day: str = REVIEW_DAY
) -> Iterator[Served]:
    """The server on ``db``; stopped with SIGINT (as Ctrl-C) at the end if still running."""
    process = subprocess.Popen(
        serve_command(db, *extra, review_day=review_day),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env or serve_env(),
        start_new_session=True,  # a process group of its own, as in a terminal
    )
    server = Served(process=process, port=0, token="")
    try:
        match = server.wait_line(r"open:\s+http://127\.0\.0\.1:(\d+)/\?token=(\S+)")
        server.port, server.token = int(match[1]), match[2]
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
