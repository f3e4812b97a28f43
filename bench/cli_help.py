"""``tens-control --help`` from a cold process, beside its floor (issue 15, DESIGN.md §10).

The command is run as the installed script runs it (``python -m tens_control --help``), each
time as a fresh process, alternating with the floor ``python -c pass`` (the interpreter's own
start-up) so that both meet the same load. The figure is the CPU time (user + system) of the
child process, from ``resource.getrusage(RUSAGE_CHILDREN)`` before and after each run: less
sensitive to other load on the machine than wall time, which is given in the detail. Bytecode
is compiled once, untimed, before the timed runs (an installed program does not compile its
modules on every start). Target: ``--help`` <= 0.3 s.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import benchlib
from benchlib import Figure, Stats

RUNS = 30
QUICK_RUNS = 3
TARGET_S = 0.3


def _run(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh process running ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def figures(runs: int) -> list[Figure]:
    help_cmd = [sys.executable, "-m", "tens_control", "--help"]
    floor_cmd = [sys.executable, "-c", "pass"]
    _run(help_cmd)  # compile bytecode, untimed
    helps: list[tuple[float, float]] = []
    floors: list[tuple[float, float]] = []
    for _ in range(runs):
        helps.append(_run(help_cmd))
        floors.append(_run(floor_cmd))
    cpu = Stats.of([c for c, _ in helps])
    floor = Stats.of([c for c, _ in floors])
    ratios = Stats.of([h[0] / max(f[0], 1e-6) for h, f in zip(helps, floors, strict=True)])
    detail = {
        "wall_median_s": Stats.of([w for _, w in helps]).median,
        "floor_wall_median_s": Stats.of([w for _, w in floors]).median,
        "runs": runs,
    }
    return [
        Figure(
            "CLI.help", "tens-control --help, CPU", cpu.median, "s", TARGET_S, "<=", cpu, detail
        ),
        Figure("CLI.floor", "python -c pass, CPU (floor)", floor.median, "s", None, "info", floor),
        Figure("CLI.ratio", "--help / floor", ratios.median, "x", None, "info", ratios),
    ]


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parser(__doc__ or "CLI").parse_args(argv)
    figs = figures(QUICK_RUNS if args.quick else RUNS)
    benchlib.report("tens-control --help from a cold process", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
