"""Pilot tests: the run-in week (a daily pain rating before the first session) and the Patient
Global Impression of Change, as the patient gives them, asserted on the stored log."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tens_control.session import SessionState
from tens_control.store.records import PainContext, PainSite, RatingTime
from tens_control.ui.screens.home import run_in_progress
from tens_control.ui.screens.pgic import pgic_due
from tests.ui_support import (
    SIZE,
    START,
    UiRig,
    make_ui_rig,
    prescription,
    press,
    screen_text,
    settle,
)

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))


def open_later(rig: UiRig, by: timedelta) -> None:
    """The app's wall clock ``by`` after the store's (the patient opens the app days later)."""
    wall = rig.app.options.wall
    assert wall is not None
    rig.app.options.wall = lambda: wall() + by


def one_session(rig: UiRig) -> None:
    """A short session through the controller before the UI starts."""
    c = rig.controller
    c.connect()
    c.prepare("conventional", 1.0)
    c.start()
    rig.clock.advance(5.0)
    c.stop()
    c.finish()


def rate_on(rig: UiRig, day: int, nrs: int = 6) -> None:
    """A day rating stored ``day`` days after START (as the run-in screen stores it)."""
    rig.store.add_pain_rating(
        nrs, RatingTime.DIARY, PainSite.PHANTOM, at=START + day * DAY, patient=None
    )


def test_run_in_progress_counts_the_days_before_today() -> None:
    today = date(2026, 3, 9)
    days = {today - k * DAY for k in range(1, 8)}  # the 7 days before today
    assert run_in_progress(days, today, 7) == (6, False, True)
    assert run_in_progress(days - {today - 7 * DAY}, today, 7) == (6, False, False)
    assert run_in_progress({today}, today, 7) == (1, True, False)
    # six days before and today: complete from tomorrow, not today (a session today would
    # start the treatment with a 6-day run-in)
    six = {today - k * DAY for k in range(0, 7)}
    assert run_in_progress(six, today, 7) == (7, True, False)


def test_pgic_due_once_a_week_after_the_first_week() -> None:
    first = START
    assert not pgic_due(None, None, first + 30 * DAY)
    assert not pgic_due(first, None, first + 6 * DAY)
    assert pgic_due(first, None, first + 7 * DAY)


async def test_the_run_in_asks_for_a_daily_rating_and_stores_it_with_no_session(
    tmp_path: Path,
) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(run_in_days=7))
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            text = screen_text(app)
            assert "R  rate today's pain: one rating a day for 7 days before your first" in text
            assert "(0 of 7 done)" in text
            await press(pilot, app, "r")
            assert "Today's pain: how is your pain right now?" in screen_text(app)
            await press(pilot, app, "6", "s")
            text = screen_text(app)
            assert "Today's pain rating is done (1 of 7 days of the run-in)" in text
            assert rig.controller.state is SessionState.CONNECTED
        ratings = rig.store.pain_ratings()
        assert [(r.nrs, r.when, r.pain, r.context, r.session) for r in ratings] == [
            (6, RatingTime.DIARY, PainSite.PHANTOM, PainContext.REST, None),
            (None, RatingTime.DIARY, PainSite.RESIDUAL_LIMB, PainContext.REST, None),
        ]
        # the next session does not take them as its "before" ratings
        c = rig.controller
        c.prepare("conventional", 1.0)
        c.start()
        rig.clock.advance(5.0)
        c.stop()
        c.finish()
        assert all(r.session is None for r in rig.store.pain_ratings())
    finally:
        rig.close()


async def test_the_run_in_is_done_after_every_day_before_today_is_rated(tmp_path: Path) -> None:
    # the store's clock says START; the app is opened 7 days later
    rig = make_ui_rig(tmp_path, rx=prescription(run_in_days=7))
    open_later(rig, 7 * DAY)
    app = rig.app
    try:
        for day in range(1, 7):
            rate_on(rig, day)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            assert "(6 of 7 done)" in screen_text(app)
            rate_on(rig, 0)  # the seventh day before today
            app.screen.reload()  # type: ignore[attr-defined]
            await settle(pilot, app)
            assert "Run-in done (7 days rated): you can start your sessions." in screen_text(app)
    finally:
        rig.close()


async def test_no_run_in_once_treatment_has_started(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(run_in_days=7))
    one_session(rig)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            text = screen_text(app)
            assert "run-in" not in text
            assert "rate today's pain" not in text
            assert "G  how has your pain changed" not in text  # not before a week of use
    finally:
        rig.close()


async def test_the_pgic_from_the_history_screen(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "h")
            assert "How has your pain changed since you started TENS? Press G" in screen_text(app)
            await press(pilot, app, "g")
            text = screen_text(app)
            assert "Since you started TENS, how would you describe the change in" in text
            assert "7  very much worse" in text
            await press(pilot, app, "b")  # cancel: nothing stored
            assert rig.store.pgic_ratings() == []
            await press(pilot, app, "g", "2")
            text = screen_text(app)
            assert "How your pain has changed since you started: much improved (02 Mar)" in text
            await press(pilot, app, "g", "s")
            assert "since you started: skipped (02 Mar)" in screen_text(app)
        assert [p.value for p in rig.store.pgic_ratings()] == [2, None]
    finally:
        rig.close()


async def test_home_offers_the_pgic_a_week_after_the_first_session(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    one_session(rig)
    open_later(rig, 8 * DAY)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            offer = "G  how has your pain changed since you started TENS? (once a week)"
            assert offer in screen_text(app)
            await press(pilot, app, "g", "4")
            assert offer not in screen_text(app)
        answers = rig.store.pgic_ratings()
        assert [(p.value, p.at.date()) for p in answers] == [(4, (START + 8 * DAY).date())]
    finally:
        rig.close()
