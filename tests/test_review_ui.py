"""The clinician review UI (``tens-control review``) on a clinic database of five patients
(tests/fixtures/review_ui_store.py): pilot tests of the list, patient, session and export
screens against the analytics; read-only; snapshots of every screen at 80×24."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList

from tens_control.cli import main as cli_main
from tens_control.review.analytics import RULES, PatientSummary, summarize_data
from tens_control.review.fhir_export import parse_bundle
from tens_control.review.model import PatientData, PatientRow
from tens_control.review.source import load_patient
from tens_control.review.wording import answer_lines
from tens_control.store import DatabaseMissingError, NotATensControlDatabaseError, Store, StoreError
from tens_control.ui.review import plot
from tens_control.ui.review.app import ReviewApp, make_review_app
from tens_control.ui.review.data import (
    PatientStatus,
    default_export_name,
    filter_statuses,
    sort_statuses,
)
from tens_control.ui.review.screens.export import ConfirmReplace, ExportDialog
from tens_control.ui.review.screens.patient import PatientScreen
from tens_control.ui.review.screens.patients import PatientsScreen
from tens_control.ui.review.screens.session import SessionScreen
from tens_control.ui.review.widgets import LinesView, PlotView
from tests.fixtures import review_ui_store
from tests.fixtures.review_data import on

SIZE = (80, 24)
TODAY = on(review_ui_store.TODAY)
SnapCompare = Callable[..., bool]


@dataclass(frozen=True)
class Clinic:
    db: Path
    detailed_session: str
    export_dir: Path


@pytest.fixture(scope="session")
def clinic_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("clinic") / "clinic.sqlite3"
    sid = review_ui_store.build(path)
    return path, sid


@pytest.fixture
def clinic(tmp_path: Path, clinic_template: tuple[Path, str]) -> Clinic:
    """A fresh copy of the clinic database (the template was closed cleanly: one file)."""
    template, sid = clinic_template
    db = tmp_path / "clinic.sqlite3"
    shutil.copyfile(template, db)
    out = tmp_path / "reports"
    out.mkdir()
    return Clinic(db=db, detailed_session=sid, export_dir=out)


def app_for(clinic: Clinic, export_dir: Path | None = None) -> ReviewApp:
    return make_review_app(
        clinic.db,
        tz=UTC,
        export_dir=export_dir if export_dir is not None else clinic.export_dir,
        cursor_blink=False,
        today=TODAY,
    )


def expected_summary(db: Path, pseudonym: str) -> PatientSummary:
    """What the analytics say about a patient, computed apart from the UI."""
    store = Store.open(read_only=True, path=db)
    try:
        return summarize_data(load_patient(store, pseudonym, tz=UTC, today=TODAY), UTC)
    finally:
        store.close()


async def settle(pilot: Pilot[None]) -> None:
    """Let every worker finish (each updates its screen before it ends), then redraw."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def press(pilot: Pilot[None], *keys: str) -> None:
    await pilot.press(*keys)
    await settle(pilot)


def screen_text(app: ReviewApp) -> str:
    """The current screen as plain text (what a monochrome terminal shows)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def cells(table: DataTable[Text], key: str) -> list[str]:
    return [c.plain if isinstance(c, Text) else str(c) for c in table.get_row(key)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the patient list ----------------------------------------------------------------------------


async def test_patient_list_shows_each_status_as_the_analytics_compute_it(clinic: Clinic) -> None:
    app = app_for(clinic)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PatientsScreen)
        table = screen.query_one("#patients", DataTable)
        assert table.row_count == len(review_ui_store.PATIENTS)
        for name in review_ui_store.PATIENTS:
            s = expected_summary(clinic.db, name)
            row = cells(table, name)
            assert row[0] == name
            assert s.last_session_day is not None
            assert row[1] == (
                f"{s.last_session_day.day} {s.last_session_day:%b} · {s.days_since_session} d"
            )
            assert row[2] == f"{s.adherence.sessions_pct:.0f} %"
            tp = None if s.primary is None else s.primary.endpoint
            if tp is not None and tp.status == "rated":
                assert tp.pct_change is not None
                sign = "−" if tp.pct_change < 0 else ""
                assert row[3] == f"{sign}{abs(tp.pct_change):.0f} % wk{tp.week}"
                assert row[4:7] == [
                    "yes" if x else "no"
                    for x in (tp.responder_30, tp.responder_50, tp.responder_points)
                ]
            elif tp is None:
                assert row[3:7] == ["–", "–", "–", "–"]
        # the fixture's known answers: week 4 (days 21-27) against the run-in
        assert cells(table, "P-030")[1:7] == [
            "29 Mar · 1 d",
            "75 %",
            "−38 % wk4",
            "yes",
            "no",
            "yes",
        ]
        assert cells(table, "P-050")[2:7] == ["100 %", "−50 % wk4", "yes", "yes", "yes"]
        assert cells(table, "P-NR")[3:7] == ["0 % wk4", "no", "no", "no"]
        assert cells(table, "P-NEW")[3:7] == ["–", "–", "–", "–"]
        assert cells(table, "P-AE")[7] == "⚠ other treatment · 2 adverse events · 2 faults"
        assert cells(table, "P-050")[7] == "none"
        text = screen_text(app)
        assert "5 of 5 patients" in text
        assert "– = no time point yet" in text  # the legend says what "–" means


async def test_patient_list_sorts_and_filters_by_keyboard(clinic: Clinic) -> None:
    app = app_for(clinic)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PatientsScreen)

        def order() -> list[str]:
            return [r.pseudonym for r in screen.shown]

        assert order() == ["P-030", "P-050", "P-AE", "P-NEW", "P-NR"]
        await press(pilot, "s")  # adherence, lowest first
        assert screen.sort_key == "adherence"
        assert order()[-2:] == ["P-050", "P-AE"]
        await press(pilot, "s")  # pain change: largest fall first, no value last
        assert order() == ["P-050", "P-030", "P-AE", "P-NR", "P-NEW"]
        await press(pilot, "r")
        assert order() == ["P-NR", "P-AE", "P-030", "P-050", "P-NEW"]
        await press(pilot, "r", "s")  # warnings, most first
        assert order()[0] == "P-AE"
        await press(pilot, "f")
        assert sorted(order()) == ["P-030", "P-050"]  # 30 % responders
        await press(pilot, "f")
        assert sorted(order()) == ["P-AE", "P-NR"]  # non-responders
        await press(pilot, "f")
        assert order() == ["P-NEW"]  # not enough data
        await press(pilot, "f")
        assert order() == ["P-AE"]  # with warnings
        await press(pilot, "f")
        assert len(order()) == 5
        assert "showing all patients" in screen_text(app)
        await press(pilot, "slash")
        assert isinstance(app.focused, Input)
        await press(pilot, "n", "e")
        assert order() == ["P-NEW"]
        await press(pilot, "enter")  # done searching: back to the table, filter kept
        assert isinstance(app.focused, DataTable)
        assert "name contains “ne”" in screen_text(app)
        await press(pilot, "escape")
        assert len(order()) == 5


def test_sorting_keeps_patients_without_a_value_last() -> None:
    from tests.fixtures.review_data import responder

    rows = [
        PatientStatus(summarize_data(responder(8, 4, "B"), UTC)),
        PatientStatus(summarize_data(responder(8, 6, "A"), UTC)),
        PatientStatus(summarize_data(PatientData(patient=PatientRow(id="z", pseudonym="Z")), UTC)),
    ]
    for reverse in (False, True):
        assert sort_statuses(rows, "pain", reverse)[-1].pseudonym == "Z"
        assert sort_statuses(rows, "adherence", reverse)[-1].pseudonym == "Z"
    assert [r.pseudonym for r in sort_statuses(rows, "pain")] == ["B", "A", "Z"]
    assert [r.pseudonym for r in filter_statuses(rows, "not_enough")] == ["Z"]
    assert [r.pseudonym for r in filter_statuses(rows, "all", "b")] == ["B"]


# --- list → patient → session → export ------------------------------------------------------------


async def test_navigate_list_patient_session_and_export(clinic: Clinic) -> None:
    app = app_for(clinic)
    expected = expected_summary(clinic.db, "P-AE")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # P-AE is the third patient by name
        await press(pilot, "down", "down", "enter")
        screen = app.screen
        assert isinstance(screen, PatientScreen)
        assert screen.pseudonym == "P-AE"
        assert screen.view is not None
        assert screen.view.summary == expected
        figures = screen.query_one("#figures", LinesView).lines
        answer = answer_lines(expected)
        assert list(figures[: len(answer)]) == answer
        labels = [x.label for x in figures]
        assert "Tolerance" in labels
        assert "Faults" in labels
        week4 = next(x.text for x in figures if x.label == "Week 4")
        assert week4.startswith("6.0 (−1.0 points, −14 %), 23–29 Mar 2026")
        assert "IMMPACT minimal" in week4
        assert "ketamine infusion 7–9 Mar 2026" in week4  # beside the figure it may explain
        text = screen_text(app)
        assert "Baseline" in text
        diary = screen.query_one("#treatments", LinesView).lines
        assert [x.text.split(":")[0] for x in diary] == [
            "ketamine infusion",
            "adverse event (mild)",
            "adverse event (mild)",
        ]

        await press(pilot, "2")  # charts
        plot_view = screen.query_one("#charts-plot", PlotView)
        chart = "\n".join(plot_view.lines(80))
        assert "before" in chart
        assert "after" in chart
        assert "K" in chart  # the ketamine infusion on the timeline
        assert "✖" in chart
        assert "▲" in chart

        await press(pilot, "3")  # weekly means
        weeks = "\n".join(screen.query_one("#weeks-plot", PlotView).lines(80))
        assert "7.0" in weeks
        assert "6.0" in weeks
        assert "baseline" in weeks
        assert "−14 %" in weeks
        assert "wk 4 *" in weeks  # a time point

        await press(pilot, "4")  # sessions
        table = screen.query_one("#session-table", DataTable)
        assert app.focused is table
        assert table.row_count == expected.sessions
        index = next(i for i, x in enumerate(screen.lines) if x.row.id == clinic.detailed_session)
        assert screen.lines[index].before == 7
        assert screen.lines[index].after == 4
        table.move_cursor(row=index)
        await press(pilot, "enter")
        session = app.screen
        assert isinstance(session, SessionScreen)
        assert session.detail is not None
        d = session.detail
        kinds = [e.kind for e in d.events]
        assert "FAULT" in kinds
        assert "REFUSED" in kinds
        assert kinds[-1] == "END"  # stopped by the patient (not completed)
        assert [r.value for r in d.ratings] == [7, 4]
        assert [a.kind for a in d.adverse_events] == ["skin_redness"]
        assert max(v for _, v in d.trajectory[1]) == 14.0
        assert max(v for _, v in d.trajectory[2]) == 8.0
        assert d.trajectory[2][-1] == (1200.0, 0.0)
        text = screen_text(app)
        assert "7 / 10" in text
        assert "4 / 10" in text
        assert "ch1 set" in text

        await press(pilot, "e")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        assert dialog.query_one("#export-path", Input).value == "P-AE-review.html"
        await press(pilot, "enter")  # format chosen: on to the file name
        assert isinstance(app.focused, Input)
        await press(pilot, "enter")  # write
        assert isinstance(app.screen, SessionScreen)
        target = clinic.export_dir / "P-AE-review.html"
        assert app.exported == [target]
        html = target.read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>")
        assert "TENS review — P-AE" in html
        assert app.last_export.startswith(f"✓ Wrote {target}")
        assert "✓ Wrote" in screen_text(app)
        await press(pilot, "escape", "escape")
        assert isinstance(app.screen, PatientsScreen)


@pytest.mark.parametrize("fmt", ["html", "pdf", "csv", "json", "fhir"])
async def test_export_writes_each_format_with_the_report_functions(
    clinic: Clinic, fmt: str
) -> None:
    app = app_for(clinic)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "down")  # P-050
        await press(pilot, "e")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        formats = dialog.query_one("#formats", OptionList)
        while dialog.fmt != fmt:
            await press(pilot, "down")
        assert formats.highlighted is not None
        name = default_export_name("P-050", dialog.fmt)
        assert dialog.query_one("#export-path", Input).value == name
        await press(pilot, "ctrl+s")
        target = clinic.export_dir / name
        assert app.exported == [target]
        content = target.read_bytes()
    if fmt == "html":
        assert b"TENS review" in content
    elif fmt == "pdf":
        assert content.startswith(b"%PDF")
    elif fmt == "csv":
        assert content.startswith(b"record,patient,")
        assert content.count(b"\r\n") > 28
    elif fmt == "json":
        summary = json.loads(content)["summary"]
        assert summary["pseudonym"] == "P-050"
        assert summary["primary"]["time_points"][0]["responder_50"] is True
    else:
        bundle = parse_bundle(content)
        assert bundle.type == "collection"


async def test_export_never_replaces_a_file_without_confirmation(clinic: Clinic) -> None:
    target = clinic.export_dir / "P-030-review.html"
    target.write_bytes(b"the clinician's own file")
    app = app_for(clinic)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "e")  # P-030 is selected
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, ConfirmReplace)
        assert "Replace the file?" in screen_text(app)
        await press(pilot, "n")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        assert "Kept the existing file" in screen_text(app)
        assert target.read_bytes() == b"the clinician's own file"
        assert app.exported == []
        # another name writes a new file and leaves the old one alone
        box = dialog.query_one("#export-path", Input)
        box.value = "P-030-second.html"
        await press(pilot, "enter")
        assert (clinic.export_dir / "P-030-second.html").read_bytes().startswith(b"<!DOCTYPE")
        assert target.read_bytes() == b"the clinician's own file"
        # the same name again, confirmed: replaced
        await press(pilot, "e", "ctrl+s")
        assert isinstance(app.screen, ConfirmReplace)
        await press(pilot, "y")
        assert target.read_bytes().startswith(b"<!DOCTYPE html>")
        assert app.last_export.startswith(f"✓ Replaced {target}")


async def test_export_to_a_missing_folder_is_refused_in_the_dialog(clinic: Clinic) -> None:
    app = app_for(clinic)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "e")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        dialog.query_one("#export-path", Input).value = "no-such-folder/report.html"
        await press(pilot, "ctrl+s")
        assert app.screen is dialog
        assert "does not exist" in screen_text(app)
        await press(pilot, "escape")
        assert isinstance(app.screen, PatientsScreen)
        assert app.exported == []
        assert list(clinic.export_dir.iterdir()) == []


# --- not enough data, with the rule --------------------------------------------------------------


async def test_not_enough_data_is_shown_with_its_rule(clinic: Clinic) -> None:
    app = make_review_app(clinic.db, tz=UTC, patient="P-NEW", cursor_blink=False, today=TODAY)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PatientScreen)
        figures = {x.label: x.text for x in screen.query_one("#figures", LinesView).lines}
        rule = f"not enough data: {RULES['baseline']}"
        assert rule in figures["Baseline"]  # two days of the first week so far
        assert figures["Week 4"].startswith("due:")
        assert figures["Responder"].endswith("no time point reached yet (week 4 ends 24 Apr 2026)")
        assert figures["Tolerance"] == f"not enough data: {RULES['tolerance']}"
        assert figures["Each session"] == f"not enough data: {RULES['session_change']}"
        await press(pilot, "3")
        weeks = "\n".join(screen.query_one("#weeks-plot", PlotView).lines(80))
        assert "not enough data" in weeks
        await press(pilot, "2")
        chart = screen.query_one("#charts-plot", PlotView).lines(80)
        rolling = [line for line in chart if "┤" in line or "│" in line]
        assert any(plot.MISSING in line for line in rolling)  # days without a value: "·"


# --- read-only ------------------------------------------------------------------------------------


async def test_a_review_session_leaves_the_database_byte_identical(clinic: Clinic) -> None:
    before = sha256(clinic.db)
    app = app_for(clinic)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for name in review_ui_store.PATIENTS:  # every patient's summary and session table
            screen = app.screen
            assert isinstance(screen, PatientsScreen)
            row = [r.pseudonym for r in screen.shown].index(name)
            screen.query_one("#patients", DataTable).move_cursor(row=row)
            await press(pilot, "enter", "4")
            patient = app.screen
            assert isinstance(patient, PatientScreen)
            assert patient.view is not None
            if name == "P-AE":  # a session in detail, and an export
                await press(pilot, "enter")
                assert isinstance(app.screen, SessionScreen)
                await press(pilot, "escape", "e")
                while isinstance(app.screen, ExportDialog) and app.screen.fmt != "csv":
                    await press(pilot, "down")
                await press(pilot, "ctrl+s")
            await press(pilot, "escape")
        assert app.exported == [clinic.export_dir / "P-AE-review.csv"]
    assert app.source.store.closed
    assert sha256(clinic.db) == before
    # and a write through the review's store is refused by SQLite, not merely avoided
    store = Store.open(read_only=True, path=clinic.db)
    try:
        with pytest.raises(StoreError):
            store.ensure_patient("P-NEW-PATIENT")
    finally:
        store.close()
    assert sha256(clinic.db) == before


def test_open_read_only_refuses_what_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissingError, match="there is no database"):
        Store.open(read_only=True, path=tmp_path / "missing.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(NotATensControlDatabaseError):
        Store.open(read_only=True, path=junk)
    assert junk.read_bytes() == b"not a database at all" * 10


def test_review_command_errors_are_one_line(
    tmp_path: Path, clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["review", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tens-control: error: there is no database at")
    assert err.count("\n") == 1
    assert cli_main(["review", "--db", str(clinic.db), "--patient", "P-999"]) == 2
    err = capsys.readouterr().err
    assert "there is no patient 'P-999'" in err
    assert "Traceback" not in err


def test_the_screens_never_import_matplotlib() -> None:
    code = (
        "import sys\n"
        "import tens_control.ui.review.app\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'fpdf', 'fhir')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- the text charts ------------------------------------------------------------------------------


def test_bar_rows_draw_missing_as_a_dot_and_zero_as_empty() -> None:
    rows = plot.bar_rows([None, 0.0, 10.0, 5.0, 0.1], height=2, top=10.0)
    # missing: a dot; 0: nothing; 10: full; 5: half; 0.1: still visible
    assert rows == ["  █  ", "· ██▁"]


def test_day_axis_fits_the_period_to_the_width() -> None:
    start = date(2026, 3, 2)
    two_weeks = plot.DayAxis.fit(start, date(2026, 3, 15), 60)
    assert (two_weeks.days_per_col, two_weeks.cols_per_day) == (1, 4)
    year = plot.DayAxis.fit(start, date(2027, 3, 1), 60)
    assert year.days_per_col == 7
    assert year.width <= 60
    assert year.bucket(date(2026, 3, 9)) == 1


def test_step_values_show_the_highest_level_held_in_each_column() -> None:
    points = [(0.0, 0.0), (10.0, 4.0), (15.0, 8.0), (30.0, 0.0)]
    # [0, 10) holds 0; [10, 20) rises to 8; [20, 30) holds 8; [30, 40) is back at 0
    assert plot.step_values(points, 40.0, 4) == [0.0, 8.0, 8.0, 0.0]


# --- snapshots (80×24, cursor blink off, workers waited for) --------------------------------------


@pytest.fixture
def snapshot_app(clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> ReviewApp:
    """The app with a relative export folder (``reports``, in the test's own working folder),
    so that no temporary path appears on screen."""
    monkeypatch.chdir(clinic.export_dir.parent)
    return app_for(clinic, export_dir=Path(clinic.export_dir.name))


def run_keys(*keys: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        for key in keys:
            await press(pilot, key)

    return run_before


SNAPSHOTS: dict[str, tuple[str, ...]] = {
    "patient_list": (),
    "patient_list_sorted_by_pain": ("s", "s"),
    "patient_figures": ("down", "down", "enter"),
    "patient_charts": ("down", "down", "enter", "2"),
    "patient_charts_timeline": ("down", "down", "enter", "2", "end"),
    "patient_weeks": ("down", "down", "enter", "3"),
    "patient_sessions": ("down", "down", "enter", "4"),
    "patient_not_enough_data": ("down", "down", "down", "enter"),
    "export_dialog": ("down", "e", "down"),
}


@pytest.mark.parametrize("name", list(SNAPSHOTS))
def test_snapshot(name: str, snapshot_app: ReviewApp, snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_keys(*SNAPSHOTS[name]))


async def open_detailed_session(pilot: Pilot[None], session_id: str) -> None:
    await run_keys("down", "down", "enter", "4")(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, PatientScreen)
    index = next(i for i, x in enumerate(screen.lines) if x.row.id == session_id)
    screen.query_one("#session-table", DataTable).move_cursor(row=index)
    await press(pilot, "enter")


@pytest.mark.parametrize("scroll", ["top", "events"])
def test_snapshot_session(
    scroll: str, clinic: Clinic, snapshot_app: ReviewApp, snap_compare: SnapCompare
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await open_detailed_session(pilot, clinic.detailed_session)
        if scroll == "events":
            await press(pilot, "end")

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_confirm_replace(
    clinic: Clinic, snapshot_app: ReviewApp, snap_compare: SnapCompare
) -> None:
    (clinic.export_dir / "P-030-review.html").write_bytes(b"old")
    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_keys("e", "ctrl+s"))


@pytest.mark.slow
def test_tens_control_review_runs_in_a_terminal_and_quits(clinic: Clinic) -> None:
    """The real command on a pseudo-terminal (80×24): the list appears, `q` quits with 0, and
    the database is unchanged."""
    import fcntl
    import os
    import select
    import struct
    import termios
    import time

    before = sha256(clinic.db)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "TZ": "UTC"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tens_control", "review", "--db", str(clinic.db)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=clinic.export_dir,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"P-NR" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        assert b"P-NR" in seen, seen[-2000:]
        os.write(master, b"q")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)
    assert sha256(clinic.db) == before
