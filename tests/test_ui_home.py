"""Issue 12 on the home screen (points 13, 14, 15, 18): the daily allowance is shown before a
program is offered, and short stopped sessions do not use it up; a prescription imported while
the UI runs is picked up; sessions a crash left open are reported; recent pain says which
ratings were before and which after a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tens_control.pain import PainSite, RatingTime
from tens_control.session import SessionState
from tens_control.ui.app import make_app
from tests.session_support import make_rig
from tests.session_support import prescription as rig_prescription
from tests.trust_support import enrol_and_prescribe
from tests.ui_support import (
    UiRig,
    advance,
    make_ui_rig,
    prescription,
    press,
    press_up,
    screen_text,
    settle,
    state,
    wait_for,
)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


async def _estop_session(pilot: object, rig: UiRig, seconds: float) -> None:
    app = rig.app
    await press(pilot, app, "n", "enter", "5", "5", "enter")  # type: ignore[arg-type]
    await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")  # type: ignore[arg-type]
    await press_up(pilot, rig, 2)  # type: ignore[arg-type]
    await advance(pilot, rig, seconds)  # type: ignore[arg-type]
    await press(pilot, app, "space")  # type: ignore[arg-type]
    await advance(pilot, rig, 0.5)  # type: ignore[arg-type]
    assert state(rig) is SessionState.ENDED
    # after the stop: the ratings after (skipped) and back home
    for _ in range(5):
        if "What next" in screen_text(app):
            break
        await press(pilot, app, "s")  # type: ignore[arg-type]
        await press(pilot, app, "f")  # type: ignore[arg-type]
    await wait_for(pilot, app, lambda: "What next" in screen_text(app), "home")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_short_emergency_stops_leave_the_allowance_and_home_says_when_it_is_used(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(sessions_per_day=1, session_minutes=1))
    app = rig.app
    try:
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            for _ in range(3):  # three e-stops within 20 s: no treatment, not counted
                await _estop_session(pilot, rig, 20.0)
            text = screen_text(app)
            assert "Sessions today: 0 of 1 allowed" in text
            assert "not counted: 3" in text
            assert "N  start a session" in text
            # one whole session uses the day's allowance: home says so before any program
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            await advance(pilot, rig, 61.0)
            await wait_for(pilot, app, lambda: "Session complete" in screen_text(app), "done")
            await press(pilot, app, "s", "s", "f")
            await wait_for(pilot, app, lambda: "What next" in screen_text(app), "home")
            text = screen_text(app)
            assert "N  start a session" not in text
            assert "No session now: daily limit reached" in text
            await press(pilot, app, "n")
            assert "Choose a program" not in screen_text(app)
    finally:
        rig.close()


async def test_a_prescription_imported_while_the_ui_runs_is_picked_up(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path)  # no prescription: the over-the-counter defaults
    app = rig.app
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            await wait_for(pilot, app, lambda: "over-the-counter" in screen_text(app), "otc")
            # the clinician imports one (another process writes the same database)
            enrol_and_prescribe(rig.store, prescription(session_minutes=20))
            app.screen.reload()  # type: ignore[attr-defined]  # what its timer does
            await settle(pilot, app)
            await wait_for(
                pilot, app, lambda: "Prescription version 1" in screen_text(app), "picked up"
            )
            assert "20 min" in screen_text(app)
    finally:
        rig.close()


async def test_sessions_a_crash_left_open_are_reported_at_the_next_start(
    tmp_path: Path,
) -> None:
    """kill -9 mid-session, then start the UI again: the documented banner appears."""
    db = tmp_path / "tens.sqlite3"
    crashed = make_rig(tmp_path, rx=rig_prescription())
    crashed.c.connect("sim://tsp")
    crashed.c.prepare("conventional", 10)
    crashed.c.start()
    crashed.advance(5.0)
    assert crashed.c.state is SessionState.RUNNING
    crashed.store.close()  # the process is gone: no end was written
    app = make_app(db=str(db), live=False, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(
            pilot,
            app,
            lambda: "1 earlier session(s) ended unexpectedly" in screen_text(app),
            "the crash banner",
            tries=400,
        )
        await pilot.press("ctrl+q")
    app.close_owned_backend(10.0)


async def test_home_labels_ratings_before_and_after_sessions(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        for before, after in [(7, 4), (6, 3)]:
            rig.store.add_pain_rating(before, when=RatingTime.BEFORE, pain=PainSite.PHANTOM)
            rig.store.add_pain_rating(after, when=RatingTime.AFTER, pain=PainSite.PHANTOM)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            text = screen_text(app)
            assert "before sessions: 7 6   after sessions: 4 3" in text
            assert "chart: before each session" in text
    finally:
        rig.close()
