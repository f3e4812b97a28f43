"""P4 in a browser: from opening the served review's address to the patient list drawn, for
1,000 patients (issue 19; docs/performance.md, "P4 in a browser").

The clinic is P4's synthetic one (``bench/p4_generate.py``, seed 1), with 1,000 patients over
28 days (four weeks, so that week 4's figures exist), cached in ``bench/results/cache/`` like
P4's (``--regenerate`` rebuilds it). ``tens-control review --serve`` serves it on 127.0.0.1
(TZ=UTC, reviewed the day after its last day); headless Chromium (Debian's, through Selenium,
as in the end-to-end test) opens the printed address, and the benchmark reads the terminal's
text from xterm.js's buffer every 20 ms (tests/browser_support.py):

* ``P4.web.first``: the wall time from ``driver.get(address)`` to the first patient's line on
  the screen. It covers the redirect that sets the cookie, the page and its script, the
  websocket, the new review process (interpreter start, imports, opening the database), its
  first frame and the first patient's figures. Target: P4's ≤ 2 s for the clinic overview.
* ``P4.web.all``: to the list complete (``1000 of 1000 patients``, no longer "reading"); every
  patient's figures read and drawn.
* ``P4.web.bare`` (floor): the same, served by textual-serve's own server, for a bare Textual
  app (one ``Static("hello")``) to ``hello`` on the screen: the browser, the websocket and a
  Python process with Textual, without the review. ``P4.web.ratio`` = first ÷ bare per pair.
* ``P4.web.sql`` (reference): the review's own reading of every patient's line in one process
  (``ReviewSource.statuses``, the SQL path of P4.all), without a browser or a screen.

Each run starts a new browser with an empty profile (a clinician opening the review cold; the
browser's own start is not timed) and a new server; runs alternate review, bare, review, ….

Run: ``python bench/p4_serve.py [--runs 3]`` (needs /usr/bin/chromium and
/usr/bin/chromedriver: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import benchlib
import p4_report
from benchlib import Figure, Stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' browser helpers

from tens_control.ui.review.app import make_review_app
from tests.browser_support import Browser, chromium, chromium_missing
from tests.serve_support import serve_env, served

PATIENTS = 1000
DAYS = 28
RUNS = 3
QUICK_PATIENTS = 20
QUICK_DAYS = 7
POLL_S = 0.02
BARE_APP = """
from textual.app import App
from textual.widgets import Static

class Bare(App[None]):
    def compose(self):
        yield Static("hello")

Bare().run()
"""


WAIT_S = 1800.0
"""How long a run may wait for the list (a loaded machine, 1,000 patients)."""


def until(browser: Browser, done: Callable[[str], bool], timeout: float = WAIT_S) -> float:
    """Wait until ``done(screen)``; the time then (``time.perf_counter()``)."""
    deadline = time.perf_counter() + timeout
    while not done(browser.screen()):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not drawn within {timeout:.0f} s:\n{browser.screen()}")
        time.sleep(POLL_S)
    return time.perf_counter()


def complete(patients: int) -> Callable[[str], bool]:
    return lambda screen: f"{patients} of {patients} patients" in screen and "reading" not in screen


def review_run(db: Path, day: str, patients: int, tmp: Path) -> tuple[float, float]:
    """Seconds from opening the address to the first patient drawn, and to all."""
    with served(db, review_day=day) as server, chromium(tmp / "profile-review") as browser:
        started = time.perf_counter()
        browser.open(server.address)
        first = until(browser, lambda screen: "P001 " in screen)
        total = until(browser, complete(patients))
        return first - started, total - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def bare_server(tmp: Path) -> Iterator[str]:
    app = tmp / "bare_app.py"
    app.write_text(BARE_APP, encoding="utf-8")
    port = free_port()
    command = f"{sys.executable} {app}"
    code = (
        "from textual_serve.server import Server; "
        f"Server({command!r}, host='127.0.0.1', port={port}).serve()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=serve_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("textual-serve's server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)


def bare_run(tmp: Path) -> float:
    with bare_server(tmp) as url, chromium(tmp / "profile-bare") as browser:
        started = time.perf_counter()
        browser.open(url)
        return until(browser, lambda screen: "hello" in screen) - started


def figures(runs: int, patients: int, days: int, regenerate: bool, tmp: Path) -> list[Figure]:
    workdir = tmp if patients != PATIENTS else None
    db = p4_report.database(patients, days, regenerate, workdir)
    day = p4_report.review_day(days).isoformat()
    firsts: list[float] = []
    alls: list[float] = []
    bares: list[float] = []
    for i in range(runs):
        benchlib.progress(f"run {i + 1} of {runs}")
        with tempfile.TemporaryDirectory(dir=tmp) as run_tmp:
            first, total = review_run(db, day, patients, Path(run_tmp))
        with tempfile.TemporaryDirectory(dir=tmp) as run_tmp:
            bare = bare_run(Path(run_tmp))
        firsts.append(first)
        alls.append(total)
        bares.append(bare)
        benchlib.progress(f"  first {first:.2f} s, all {total:.2f} s, bare {bare:.2f} s")
    app = make_review_app(db, tz=UTC, today=p4_report.review_day(days))
    started = time.perf_counter()
    app.source.statuses()
    sql = time.perf_counter() - started
    app.source.close()
    ratios = [f / b for f, b in zip(firsts, bares, strict=True)]
    first_stats = Stats.of(firsts)
    detail = {"patients": patients, "days": days, "runs": runs}
    return [
        Figure(
            "P4.web.first",
            f"address → first patient drawn, {patients} patients",
            first_stats.median,
            "s",
            2.0,
            "<=",
            first_stats,
            detail,
        ),
        Figure(
            "P4.web.all",
            f"address → all {patients} patients drawn",
            Stats.of(alls).median,
            "s",
            None,
            "info",
            Stats.of(alls),
            detail,
        ),
        Figure(
            "P4.web.bare",
            "floor: a bare Textual app served, address → drawn",
            Stats.of(bares).median,
            "s",
            None,
            "info",
            Stats.of(bares),
        ),
        Figure(
            "P4.web.ratio",
            "first ÷ bare, per pair",
            Stats.of(ratios).median,
            "x",
            None,
            "info",
            Stats.of(ratios),
        ),
        Figure(
            "P4.web.sql",
            f"reference: every patient's line read in one process ({patients})",
            sql,
            "s",
            None,
            "info",
            None,
            detail,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser(__doc__ or "P4 in a browser")
    p.add_argument("--runs", type=int, default=RUNS, help="runs of each (default: 3)")
    p.add_argument("--regenerate", action="store_true", help="rebuild the cached database")
    args = p.parse_args(argv)
    missing = chromium_missing()
    if missing is not None:
        print(f"p4_serve: {missing}", file=sys.stderr)
        return 2
    patients, days, runs = (
        (QUICK_PATIENTS, QUICK_DAYS, 1) if args.quick else (PATIENTS, DAYS, args.runs)
    )
    with tempfile.TemporaryDirectory(prefix="tens-bench-p4web-") as tmp:
        figs = figures(runs, patients, days, args.regenerate, Path(tmp))
    benchlib.report("P4 in a browser: the served review", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
