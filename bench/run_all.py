"""Run every benchmark (P1-P6 of DESIGN.md §10) and write ``bench/results/latest.json``.

Each script runs in its own process (so that one's threads, caches and memory do not colour
the next), one after another, with ``--json``; their figures are collected with a description
of the machine into one machine-readable file::

    {"generated": "...", "machine": {...}, "figures": [
        {"figure": "P1.sim", "name": "...", "value": 1.2, "unit": "ms", "target": 2.0,
         "comparison": "<=", "met": true, "stats": {...}, "detail": {...}}, ...]}

``met`` is null for reference figures (no target). A benchmark never fails on timing: the exit
status is non-zero only if a script could not run. Run: ``python bench/run_all.py``
(``--quick`` for a smoke run, ``--only p1,p3`` to re-run some and keep the other figures of
the file, each re-run figure with its own run's time and machine, ``--out FILE`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib

SCRIPTS = (
    "p1_estop.py",
    "p2_throughput.py",
    "p3_telemetry.py",
    "p4_report.py",
    "p4_serve.py",
    "p5_session.py",
    "p6_tui.py",
    "cli_help.py",
)


def source() -> dict[str, Any]:
    """The commit measured, and tracked files with changes not yet committed (in a shared work
    tree, other people's work in progress is measured too)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=benchlib.REPO_DIR, capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "-uno").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": changed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny budgets (smoke run)")
    p.add_argument("--only", help="comma-separated prefixes, e.g. p1,p3")
    p.add_argument(
        "--out",
        type=Path,
        default=benchlib.RESULTS_DIR / "latest.json",
        help="result file (default bench/results/latest.json)",
    )
    args = p.parse_args(argv)
    chosen = [
        s
        for s in SCRIPTS
        if not args.only or any(s.startswith(x.strip().lower()) for x in args.only.split(","))
    ]
    machine_before = benchlib.machine()
    figures: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tens-bench-") as tmp:
        for script in chosen:
            out = Path(tmp) / f"{script}.json"
            command = [sys.executable, str(benchlib.BENCH_DIR / script), "--json", str(out)]
            if args.quick:
                command.append("--quick")
            benchlib.progress(f"{script}")
            t0 = time.perf_counter()
            done = subprocess.run(command, check=False)
            if done.returncode != 0 or not out.exists():
                failed.append(script)
                continue
            result = json.loads(out.read_text(encoding="utf-8"))
            for fig in result["figures"]:
                fig["script"] = script
                fig["seconds_to_run"] = round(time.perf_counter() - t0, 1)
                figures.append(fig)
    machine = benchlib.machine()
    machine["load_average_before"] = machine_before["load_average"]
    if args.only and args.out.exists():
        # a partial run updates its scripts' figures and keeps the others (with their run)
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        kept = [f for f in previous.get("figures", []) if f.get("script") not in chosen]
        for fig in figures:
            fig["run"] = {
                "generated": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
            }
        figures = kept + figures
        figures.sort(key=lambda f: SCRIPTS.index(f["script"]) if f.get("script") in SCRIPTS else 99)
    payload = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "source": source(),
        "figures": figures,
        "failed": failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\n== summary ({args.out})")
    for fig in figures:
        met = {True: "met", False: "MISSED", None: "-"}[fig["met"]]
        target = "" if fig["target"] is None else f"{fig['comparison']} {fig['target']:g}"
        print(f"{fig['figure']:<14} {fig['value']:>12.4g} {fig['unit']:<4} {target:<12} {met}")
    for script in failed:
        print(f"FAILED to run: {script}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
