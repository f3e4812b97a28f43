"""A ``tens-sim`` in its own process for integration tests: started on a pty or TCP with a
``--record`` file, so tests assert on what the device side actually delivered."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simulator.cli import load_record
from simulator.firmware import DeliveredRecord

TENS_SIM = [sys.executable, "-m", "simulator.cli"]


@dataclass
class SimProcess:
    url: str
    record: Path
    process: subprocess.Popen[str]
    channels: int

    def delivered(self) -> DeliveredRecord:
        return load_record(self.record, self.channels)


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's next stdout line; fails the test if nothing comes within ``timeout``."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return process.stdout.readline().strip()


def start_tens_sim(tmp_path: Path, *args: str, channels: int = 2) -> Iterator[SimProcess]:
    """Run ``tens-sim ARGS --record FILE`` until the fixture ends (SIGTERM, then kill)."""
    record = tmp_path / "delivered.jsonl"
    process = subprocess.Popen(
        [*TENS_SIM, *args, "--record", str(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = first_line(process, 20.0)
        assert url, process.stderr.read() if process.stderr else ""
        if "--pty" in args:
            assert url.startswith("/dev/"), url
        yield SimProcess(url, record, process, channels)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
