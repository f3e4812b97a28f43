"""The served review in a real browser: ``tens-control review --serve`` opened in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs), driven
with Selenium. Never skipped in CI (``CI`` set): there, without the browser, the tests fail and
say what to install; elsewhere they are skipped with that advice.

The test opens the printed address, waits for the patient list, checks every patient's line
against the review's own figures, moves to a patient with the keyboard, checks the figures
there against the fixture's hand-made facts (tests/fixtures/review_ui_store.py), downloads the
HTML report with ``d``, and closes the tab, whose process then ends. The screen is read from
xterm.js's buffer (tests/browser_support.py).

**Artifacts:** screenshots of the patient list and the patient go to
``$TENS_CONTROL_TEST_ARTIFACTS`` (default: ``test-artifacts/`` at the top of the repository,
ignored by git): ``review-serve-patients.png`` and ``review-serve-patient.png``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path

import pytest
from selenium.webdriver.common.keys import Keys

from tens_control.ui.review.app import make_review_app
from tens_control.ui.review.screens.patients import row_cells
from tests.browser_support import chromium, chromium_missing
from tests.serve_support import REVIEW_DAY, Served, clinic_db, served, wait_for

pytestmark = pytest.mark.slow

ARTIFACTS = Path(
    os.environ.get("TENS_CONTROL_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / "test-artifacts"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = chromium_missing()
    if missing is not None:
        advice = f"{missing}: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI"):  # never skipped in CI, which installs the browser
            pytest.fail(advice)
        pytest.skip(advice)
    return clinic_db(tmp_path_factory.mktemp("clinic"))


@pytest.fixture
def server(db: Path) -> Iterator[Served]:
    with served(db) as s:
        yield s


def expected_lines(db: Path) -> dict[str, list[str]]:
    """Each patient's line of the list, cell by cell, as the review computes it."""
    app = make_review_app(db, tz=UTC, today=date.fromisoformat(REVIEW_DAY))
    try:
        source = app.source
        return {
            name: [cell.plain for cell in row_cells(source.status(name))]
            for name in source.pseudonyms()
        }
    finally:
        source.close()


def row_of(screen: str, start: str) -> str:
    return next(line for line in screen.splitlines() if line.lstrip().startswith(start))


def test_a_clinician_reviews_a_patient_in_the_browser(
    server: Served, db: Path, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    with chromium(tmp_path / "profile", downloads) as browser:
        browser.open(server.address)
        screen = browser.wait_for("5 of 5 patients")
        assert "?token=" not in browser.driver.current_url  # the token left the address bar
        assert "tens-control review — clinic.sqlite3 · read-only" in screen

        # the patient list: every patient's figures as the review computes them
        for name, cells in expected_lines(db).items():
            row = row_of(screen, name)
            for cell in cells[:7]:
                assert cell in row, (name, cell, row)
        assert "−50 % wk4" in row_of(screen, "P-050")  # the fixture: 8 → 4 at week 4
        assert "−38 % wk4" in row_of(screen, "P-030")  # 8 → 5
        browser.keyboard()  # the page has the focus: the footer shows the keys
        screen = browser.wait_for("d Download HTML")
        browser.screenshot(ARTIFACTS / "review-serve-patients.png")

        # to P-050 with the keyboard: down from P-030, enter
        browser.press(Keys.ARROW_DOWN, Keys.ENTER)
        screen = browser.wait_for("Week 4 ")
        assert "tens-control review — P-050" in screen
        assert "8.0/10: run-in 23 Feb – 1 Mar 2026" in row_of(screen, "Baseline")
        week4 = row_of(screen, "Week 4")
        assert "4.0 (−4.0 points, −50 %)" in week4
        assert "IMMPACT substantial (≥ 50 %)" in week4
        assert "56 of 56" in row_of(screen, "Adherence")
        assert "none" in row_of(screen, "Faults")
        browser.screenshot(ARTIFACTS / "review-serve-patient.png")

        # the HTML report, downloaded with one key
        browser.press("d")
        report = wait_for(
            "the downloaded report",
            lambda: p if (p := downloads / "P-050-review.html").exists() else None,
        )
        browser.wait_for("Downloaded P-050-review.html")
        html = report.read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>")
        assert "P-050" in html
        pids = server.review_processes()
        assert len(pids) == 1
    # the browser closed, and with it the tab: its process has ended
    server.wait_line(r"tab closed \(process \d+ ended; 0 open\)")
    assert server.review_processes() == set()


def test_the_browser_without_the_token_gets_nothing_of_the_app(
    server: Served, tmp_path: Path
) -> None:
    with chromium(tmp_path / "profile") as browser:
        browser.open(server.base + "/")
        text = browser.page_text()
        assert "needs the address that tens-control review --serve printed" in text
        assert browser.driver.execute_script("return document.querySelector('.xterm')") is None
        assert browser.screen() == ""  # no terminal was ever made
        browser.open(server.base + "/?token=not-the-token")
        assert "not the one the server printed" in browser.page_text()
    assert server.review_processes() == set()
