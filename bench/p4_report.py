"""P4: the clinician report over 100 patients x 1 year x 3 sessions a day (DESIGN.md §10).

The synthetic clinic database comes from ``bench/p4_generate.py`` (seeded; see its docstring
for what it holds). It is generated once into ``bench/results/cache/`` and reused while the
generator's version and its options are unchanged (``--regenerate`` rebuilds it). Then,
timed on the database opened read-only as ``tens-control report`` opens it:

* **all patients**: the clinic overview, as the review's patient list reads it -- every
  patient's figures from the SQL path (``review.source.load_summaries``: per-day sums in SQL,
  no rows; the same figures as a full report) turned into one status line each
  (``wording.status_line``). Target <= 2 s;
* **one patient**: ``load_patient`` + ``build_report`` (every figure of the report: adherence,
  pain change, IMMPACT bands, responders, tolerance, faults). Target <= 200 ms;
* **one patient, HTML**: the same plus ``render_html`` (the two-page report with its charts),
  measured against the same 200 ms; the PDF (``render_pdf``) is reported for reference.

The clinic is reviewed on the day after its last generated day (``review_day``), as a clinic
with current data would be: the review's period runs to "today", and reviewing a year-old clinic
today would time months of empty days instead of the year of data.

Run: ``python bench/p4_report.py`` (``--regenerate`` to rebuild the database first).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import benchlib
import p4_generate
from benchlib import Comparison, Figure, Stats

from tens_control.review.analytics import summarize_data
from tens_control.review.model import PatientData
from tens_control.review.report import build_report, render_html, render_pdf
from tens_control.review.source import list_patients, load_patient, load_summaries
from tens_control.review.wording import status_line
from tens_control.store import Store

SEED = 1
PATIENTS = 100
DAYS = 365
QUICK_PATIENTS = 3
QUICK_DAYS = 21
ALL_RUNS = 3
ONE_RUNS = 10
RENDER_RUNS = 3


def cache_path(patients: int, days: int) -> Path:
    """Keyed by the options and the generator's version, so a changed generator regenerates."""
    name = f"clinic-s{SEED}-{patients}x{days}-v{p4_generate.GENERATOR_VERSION}.sqlite3"
    return benchlib.RESULTS_DIR / "cache" / name


def database(patients: int, days: int, regenerate: bool, workdir: Path | None) -> Path:
    path = (workdir / "clinic.sqlite3") if workdir is not None else cache_path(patients, days)
    if regenerate and path.exists():
        path.unlink()
    if not path.exists():
        benchlib.progress(f"generating {patients} patients x {days} days into {path}")
        started = time.perf_counter()
        counts = p4_generate.generate(
            path, seed=SEED, patients=patients, days=days, progress=benchlib.progress
        )
        benchlib.progress(
            f"generated {counts.sessions} sessions, {counts.ratings} ratings, "
            f"{counts.events} events, {counts.telemetry} telemetry rows "
            f"in {time.perf_counter() - started:.0f} s"
        )
    return path


def review_day(days: int) -> date:
    """The day the clinic is reviewed: the day after its last generated day."""
    return (p4_generate.START + timedelta(days=days)).date()


def timed(runs: int, job: Callable[[], object]) -> list[float]:
    out: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        job()
        out.append(time.perf_counter() - start)
    return out


def figures(path: Path, quick: bool, today: date) -> list[Figure]:
    with Store.open(path, create=False, recover=False) as store:
        patients = list_patients(store)
        names = [p.pseudonym for p in patients]

        def overview() -> list[str]:
            return [status_line(s) for s in load_summaries(store, today=today)]

        def patient(name: str) -> PatientData:
            return load_patient(store, name, today=today)

        lines = overview()  # warm-up (imports, SQLite page cache), and a sanity check
        if len(lines) != len(names):
            raise RuntimeError("the overview lost patients")
        for i in (0, len(names) // 2, len(names) - 1):  # the same lines as full reports
            if lines[i] != status_line(summarize_data(patient(names[i]))):
                raise RuntimeError(f"the overview's line of {names[i]} differs from its report")
        all_times = timed(1 if quick else ALL_RUNS, overview)

        one = names[len(names) // 2]
        data = patient(one)
        sessions = len(data.sessions)
        one_times = timed(2 if quick else ONE_RUNS, lambda: build_report(patient(one)))
        report = build_report(data)
        render_html(report)  # warm-up: the report's modules load once per process
        html_times = timed(
            1 if quick else RENDER_RUNS,
            lambda: render_html(build_report(patient(one))),
        )
        pdf_times = timed(
            1 if quick else RENDER_RUNS,
            lambda: render_pdf(build_report(patient(one))),
        )
    s_all = Stats.of(all_times)
    s_one = Stats.of(one_times).scaled(1000.0)
    s_html = Stats.of(html_times).scaled(1000.0)
    s_pdf = Stats.of(pdf_times).scaled(1000.0)
    kind: Comparison = "info" if quick else "<="
    detail = {"patients": len(names), "sessions_of_one_patient": sessions, "database": path.name}
    return [
        Figure(
            "P4.all",
            f"clinic overview: {len(names)} patients' figures (load_summaries), one line each",
            s_all.median,
            "s",
            2.0,
            kind,
            s_all,
            detail,
        ),
        Figure(
            "P4.one",
            f"one patient's report figures ({sessions} sessions): load + build_report",
            s_one.median,
            "ms",
            200.0,
            kind,
            s_one,
            detail,
        ),
        Figure(
            "P4.html",
            "one patient's HTML report with charts: load + build_report + render_html",
            s_html.median,
            "ms",
            200.0,
            kind,
            s_html,
            detail,
        ),
        Figure(
            "P4.pdf",
            "reference: the same as a two-page PDF (render_pdf)",
            s_pdf.median,
            "ms",
            None,
            "info",
            s_pdf,
            detail,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser(__doc__ or "P4")
    p.add_argument("--regenerate", action="store_true", help="rebuild the cached database")
    args = p.parse_args(argv)
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="tens-bench-p4-") as tmp:
            path = database(QUICK_PATIENTS, QUICK_DAYS, False, Path(tmp))
            figs = figures(path, quick=True, today=review_day(QUICK_DAYS))
    else:
        path = database(PATIENTS, DAYS, args.regenerate, None)
        figs = figures(path, quick=False, today=review_day(DAYS))
    benchlib.report("P4 clinician report over a synthetic clinic", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
