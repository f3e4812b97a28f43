"""Shared helpers of the benchmark scripts in ``bench/``: statistics, figures, the machine.

Every bench script is a plain program (``python bench/p1_estop.py``) with a ``main()``. It
measures, prints each figure as one line -- median, p99 and min-max over the repeated runs, the
target and whether it is met -- and, with ``--json FILE``, writes its figures as JSON so that
``bench/run_all.py`` can collect them into ``bench/results/latest.json``.

Benchmarks never fail on timing: a missed target is reported (``met: false``), and the exit
status is 0 unless the benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

Comparison = Literal["<=", ">=", "info"]


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements (in the unit they were taken in)."""

    n: int
    median: float
    p99: float
    """The worst 1 %: the 99th percentile of a time, the 1st percentile of a rate."""
    minimum: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float], *, higher_is_better: bool = False) -> Stats:
        if not values:
            raise ValueError("no measurements")
        ordered = sorted(values)
        return cls(
            n=len(ordered),
            median=statistics.median(ordered),
            p99=percentile(ordered, 1.0 if higher_is_better else 99.0),
            minimum=ordered[0],
            maximum=ordered[-1],
        )

    def scaled(self, factor: float) -> Stats:
        return Stats(
            self.n,
            self.median * factor,
            self.p99 * factor,
            self.minimum * factor,
            self.maximum * factor,
        )

    def text(self, unit: str, digits: int = 3) -> str:
        def f(v: float) -> str:
            return _num(v, digits)

        return (
            f"median {f(self.median)} {unit}, p99 (worst 1 %) {f(self.p99)} {unit}, "
            f"min-max {f(self.minimum)}-{f(self.maximum)} {unit} (n={self.n})"
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of sorted values (nearest rank, the conservative choice)."""
    if not ordered:
        raise ValueError("no measurements")
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def _num(value: float, digits: int = 3) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


@dataclass
class Figure:
    """One measured figure against its target."""

    figure: str
    """The DESIGN.md §10 id with a suffix, e.g. ``P1.sim`` or ``P3.ratio``."""
    name: str
    value: float
    unit: str
    target: float | None
    comparison: Comparison
    stats: Stats | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target is None or self.comparison == "info":
            return None
        if self.comparison == "<=":
            return self.value <= self.target
        return self.value >= self.target

    def line(self) -> str:
        target = ""
        if self.target is not None and self.comparison != "info":
            verdict = "met" if self.met else "MISSED"
            target = f"  [target {self.comparison} {_num(self.target)} {self.unit}: {verdict}]"
        text = f"{self.figure:<12} {self.name}: {_num(self.value)} {self.unit}{target}"
        if self.stats is not None:
            text += f"\n{'':<12}   {self.stats.text(self.unit)}"
        return text

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "figure": self.figure,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "comparison": self.comparison,
            "met": self.met,
            "detail": self.detail,
        }
        if self.stats is not None:
            data["stats"] = asdict(self.stats)
        return data


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """A description of this machine, for the result file and docs/performance.md."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in load()],
    }


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tiny budget (for smoke tests): the figures are not representative",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    return p


def report(title: str, figures: Sequence[Figure], json_path: Path | None) -> None:
    """Print the figures; with ``json_path`` also write them (and the machine) as JSON."""
    out = sys.stdout
    out.write(f"== {title}\n")
    for fig in figures:
        out.write(fig.line() + "\n")
    out.flush()
    if json_path is not None:
        payload = {"title": title, "machine": machine(), "figures": [f.to_json() for f in figures]}
        json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --------------------------------------------------------------------------- tens-sim process


class SimProcess:
    """``tens-sim`` in a subprocess (pty or TCP) with its ``--record`` file.

    Use as a context manager; leaving it sends SIGTERM (the simulator switches off) and waits.
    """

    def __init__(self, workdir: Path, *args: str, name: str = "delivered") -> None:
        import subprocess

        self.record = workdir / f"{name}.jsonl"
        self.record.write_text("", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", *args, "--record", str(self.record)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = self._first_line(20.0)
        self._offset = 0

    def _first_line(self, timeout: float) -> str:
        import selectors

        stdout = self.process.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.close()
                raise RuntimeError(f"tens-sim printed nothing within {timeout} s")
        line = stdout.readline().strip()
        if not line:
            self.close()
            raise RuntimeError("tens-sim exited before it announced its port")
        return line

    def new_deliveries(self) -> list[tuple[float, int, float]]:
        """``(time, channel, mA)`` of every record line written since the last call."""
        with self.record.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a torn last line is read next time
        self._offset += end
        out: list[tuple[float, int, float]] = []
        for line in data[:end].splitlines():
            if line.strip():
                item = json.loads(line)
                out.append((float(item["t"]), int(item["ch"]), float(item["ma"])))
        return out

    def close(self) -> None:
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews the tails)."""
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def progress(text: str) -> None:
    """A progress note on stderr (the figures go to stdout)."""
    sys.stderr.write(f"  .. {text}\n")
    sys.stderr.flush()


def timer_overshoot(samples: int, period_s: float = 0.001) -> list[float]:
    """How late a ``period_s`` timed wait wakes up, in seconds (the machine's scheduling noise:
    a bound under every real-time figure)."""
    cond = threading.Condition()
    late: list[float] = []
    with cond:
        for _ in range(samples):
            start = time.monotonic()
            cond.wait(period_s)
            late.append(max(0.0, time.monotonic() - start - period_s))
    return late
