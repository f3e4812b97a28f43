"""Reminders of the prescribed schedule (tens_control.reminders): the next session due and
the days missed, on fixed hand-worked cases; and the home screen showing them (pilot, 80×24
and 100×30, with snapshots)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tens_control.reminders import Schedule, missed_days, reminder
from tests.ui_support import UiRig, make_ui_rig, prescription, screen_text, settle

NOW = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)  # a Thursday
DAY = timedelta(days=1)
THREE = Schedule(sessions_per_day=3, minutes_per_day=None, session_minutes=30, min_gap_minutes=60)
SnapCompare = Callable[..., bool]


def session(start: datetime, minutes: float = 30) -> tuple[datetime, datetime]:
    return start, start + timedelta(minutes=minutes)


def test_next_session_now_after_the_gap_or_tomorrow() -> None:
    yesterday = NOW - DAY
    assert reminder(THREE, [session(yesterday)], NOW).startswith("Next session: now")
    # one ended at 09:45 today: the 60-minute gap makes the next one due from 10:45
    today = [session(yesterday), session(NOW - timedelta(minutes=45), 30)]
    assert reminder(THREE, today, NOW) == "Next session: from 10:45"
    # three done today: tomorrow
    done = [session(yesterday)] + [session(NOW - timedelta(hours=h)) for h in (1, 3, 5)]
    assert reminder(THREE, done, NOW) == "Next session: tomorrow (all 3 done today)"
    # minutes a day only: as many sessions as fit
    minutes = Schedule(None, 90, 30)
    assert minutes.per_day == 3
    assert Schedule(None, None, 30).per_day == 1


def test_missed_days_from_the_first_session_over_the_last_week() -> None:
    # first session Monday; Tuesday used; Wednesday missed
    starts = [NOW - 3 * DAY, NOW - 2 * DAY]
    assert missed_days(starts, NOW) == [(NOW - DAY).date()]
    text = reminder(THREE, [session(s) for s in starts], NOW)
    assert text == "Next session: now\nNo session yesterday (prescribed: 3 a day)"
    # one missed day before yesterday is named
    starts = [NOW - 3 * DAY, NOW - DAY]
    assert reminder(THREE, [session(s) for s in starts], NOW).endswith(
        "No session on Tue 03 Mar (prescribed: 3 a day)"
    )
    # an old gap beyond the last 7 days is not a reminder; nothing before the first session
    starts = [NOW - 20 * DAY] + [NOW - i * DAY for i in range(1, 8)]
    assert missed_days(starts, NOW) == []
    starts = [NOW - 10 * DAY]
    assert len(missed_days(starts, NOW)) == 7
    assert reminder(THREE, [session(s) for s in starts], NOW).endswith(
        "No session on 7 of the last 7 days, yesterday included (prescribed: 3 a day)"
    )
    assert missed_days([], NOW) == []
    assert missed_days([NOW - timedelta(hours=1)], NOW) == []  # today is not over


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    the_rig = make_ui_rig(tmp_path, rx=prescription())
    c = the_rig.controller
    c.connect()
    c.prepare("conventional", 1.0)
    c.start()
    c.set_target(1, 6.0)
    the_rig.clock.advance(61.0)
    c.finish()
    c.disconnect()
    the_rig.clock.advance(50 * 3600.0)  # Wednesday 10:01: nothing on Tuesday
    try:
        yield the_rig
    finally:
        the_rig.close()


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_home_says_when_the_next_session_is_due_and_the_day_missed(
    rig: UiRig, size: tuple[int, int]
) -> None:
    async with rig.app.run_test(size=size) as pilot:
        await settle(pilot, rig.app)
        text = " ".join(screen_text(rig.app).split())
    assert "Next session: now" in text
    assert "No session yesterday" in text


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
def test_snapshot_home_reminder(
    snap_compare: SnapCompare, rig: UiRig, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, rig.app)

    assert snap_compare(rig.app, terminal_size=size, run_before=run_before)
