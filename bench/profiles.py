"""Profiles behind the figures (docs/performance.md): what each one spends its time on.

Each target runs one representative piece of a benchmark under the standard library's
``cProfile`` (or ``python -X importtime`` for start-up) and writes the top of the profile to
``bench/results/profiles/<target>.txt``, with the machine and the date, so that the reason a
figure is what it is can be read and re-checked by anyone::

    python bench/profiles.py            # every target
    python bench/profiles.py p5gov p4one

Targets: ``p3store`` (200,000 samples through the store's writer; the producer's thread),
``p4all`` (the clinic overview: every patient's figures by the SQL path, on the P4 clinic, if it
was generated), ``p4one`` (one patient's report figures on the same clinic), ``p4html``
(the same patient's HTML report), ``p5gov`` (10 virtual minutes through governor + TSP +
simulator), ``p5ctl`` (5 virtual minutes through the SessionController and its store on tmpfs),
``p6imports`` (the import time of the UI and of the session layer it loads at start).
For a sampling profiler instead: ``pip install pyinstrument`` and
``pyinstrument bench/p5_session.py --quick``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import benchlib

OUT = benchlib.RESULTS_DIR / "profiles"
TOP = 30


def _stats(run: Callable[[], object]) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(TOP)
    text.write("\n")
    stats.sort_stats("cumulative").print_stats(TOP)
    return text.getvalue().replace(str(benchlib.REPO_DIR) + "/", "")


def p3store() -> str:
    import p3_telemetry

    data = p3_telemetry.samples(200_000)
    with tempfile.TemporaryDirectory() as tmp:
        return _stats(lambda: p3_telemetry.store_run(Path(tmp) / "p3.sqlite3", data))


def _clinic() -> Path | None:
    import p4_report

    path = p4_report.cache_path(p4_report.PATIENTS, p4_report.DAYS)
    return path if path.exists() else None


def p4one() -> str:
    from tens_control.review.report import build_report
    from tens_control.review.source import load_patient
    from tens_control.store import Store

    path = _clinic()
    if path is None:
        return "skipped: run bench/p4_report.py first (it generates the clinic database)\n"
    with Store.open(path, create=False, recover=False) as store:
        build_report(load_patient(store, "P051"))  # warm-up
        return _stats(lambda: build_report(load_patient(store, "P051")))


def p4all() -> str:
    from tens_control.review.source import load_summaries
    from tens_control.store import Store

    path = _clinic()
    if path is None:
        return "skipped: run bench/p4_report.py first (it generates the clinic database)\n"
    with Store.open(path, create=False, recover=False) as store:
        load_summaries(store)  # warm-up
        return _stats(lambda: load_summaries(store))


def p4html() -> str:
    from tens_control.review.report import build_report, render_html
    from tens_control.review.source import load_patient
    from tens_control.store import Store

    path = _clinic()
    if path is None:
        return "skipped: run bench/p4_report.py first (it generates the clinic database)\n"
    with Store.open(path, create=False, recover=False) as store:
        report = build_report(load_patient(store, "P051"))
    render_html(report)  # warm-up: the report's modules
    return _stats(lambda: render_html(report))


def p5gov() -> str:
    import p5_session

    return _stats(lambda: p5_session.governor_run(10.0))


def p5ctl() -> str:
    import p5_session

    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        return _stats(lambda: p5_session.controller_run(5.0, Path(tmp), 0))


def p6imports() -> str:
    out: list[str] = []
    for module in ("textual.app", "tens_control.ui.app", "tens_control.session"):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        rows: list[tuple[int, str]] = []
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                rows.append((int(parts[1]), parts[2].rstrip()))
        rows.sort(reverse=True)
        out.append(f"import {module}: cumulative import time, microseconds (top {TOP})")
        out += [f"{us:>10}  {name}" for us, name in rows[:TOP]]
        out.append("")
    return "\n".join(out) + "\n"


TARGETS: dict[str, Callable[[], str]] = {
    "p3store": p3store,
    "p4all": p4all,
    "p4one": p4one,
    "p4html": p4html,
    "p5gov": p5gov,
    "p5ctl": p5ctl,
    "p6imports": p6imports,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("targets", nargs="*", help=f"some of: {', '.join(TARGETS)} (default: all)")
    args = p.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.targets or list(TARGETS):
        benchlib.progress(name)
        header = (
            f"profile {name}\n"
            f"generated {datetime.now(UTC).isoformat(timespec='seconds')} on {benchlib.machine()}\n"
            f"command: python bench/profiles.py {name}\n\n"
        )
        path = OUT / f"{name}.txt"
        path.write_text(header + TARGETS[name](), encoding="utf-8")
        print(f"wrote {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
