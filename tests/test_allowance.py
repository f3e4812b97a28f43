"""Which stopped sessions count against the daily allowance (issue 12, point 13;
``tens_control.allowance``, docs/sessions.md): a session stopped within its first two minutes
gave no treatment and does not use up one of the day's sessions, nor start the wait between
sessions; every minute of stimulation still counts against the daily minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tens_control.allowance import COUNTS_AFTER_S, MAX_FREE_SHORT, daily_use
from tens_control.session import PreconditionError, SessionState
from tests.session_support import Rig, make_rig, prescription


def _short_session(rig: Rig, seconds: float, *, emergency: bool = True) -> str:
    c = rig.c
    if c.state is SessionState.ENDED:
        c.finish()
    c.prepare("conventional", 10)
    c.start()
    session = c.snapshot().session_id
    assert session is not None
    assert c.set_target(1, 4.0).accepted
    rig.advance(seconds)
    if emergency:
        c.emergency_stop()
    else:
        c.stop()
    rig.advance(0.5)
    assert c.state is SessionState.ENDED
    return session


def test_emergency_stops_in_the_first_seconds_do_not_use_up_the_day(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, rx=prescription(sessions_per_day=3, session_minutes=10))
    try:
        c = rig.c
        c.connect("sim://tsp")
        for _ in range(3):  # the case of the issue: three e-stops of under 30 s
            _short_session(rig, 20.0)
        use = daily_use(rig.store, c.patient, rig.wall())
        assert (use.sessions, use.short_stops) == (0, 3)
        assert use.minutes == pytest.approx(3 * 20.5 / 60, abs=0.05)  # their minutes count
        # a real session may still start, and a whole one counts
        c.finish()
        rig.run_session(minutes=1.0)
        assert daily_use(rig.store, c.patient, rig.wall()).sessions == 1
    finally:
        rig.close()


def test_a_session_stopped_after_two_minutes_counts(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, rx=prescription(sessions_per_day=1, session_minutes=10))
    try:
        c = rig.c
        c.connect("sim://tsp")
        _short_session(rig, COUNTS_AFTER_S + 1.0, emergency=False)
        c.finish()
        with pytest.raises(PreconditionError) as error:
            c.prepare("conventional", 10)
        assert error.value.check == "daily limit"
        assert "1 of 1 sessions" in str(error.value)
    finally:
        rig.close()


def test_free_short_stops_are_limited(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, rx=prescription(sessions_per_day=1, session_minutes=10))
    try:
        c = rig.c
        c.connect("sim://tsp")
        for _ in range(MAX_FREE_SHORT):
            _short_session(rig, 10.0)
        _short_session(rig, 10.0)  # one more than is free: it counts
        c.finish()
        with pytest.raises(PreconditionError, match="1 of 1 sessions"):
            c.prepare("conventional", 10)
    finally:
        rig.close()


def test_a_short_stop_does_not_start_the_wait_between_sessions(tmp_path: Path) -> None:
    rx = prescription(sessions_per_day=4, session_minutes=10, min_gap_minutes=60)
    rig = make_rig(tmp_path, rx=rx)
    try:
        c = rig.c
        c.connect("sim://tsp")
        _short_session(rig, 15.0)
        c.finish()
        c.prepare("conventional", 1)  # no "too soon": the stop gave no treatment
        c.start()
        rig.advance(60.5)
        assert c.state is SessionState.ENDED
        c.finish()
        with pytest.raises(PreconditionError, match="too soon"):
            c.prepare("conventional", 1)  # a completed session does start the wait
    finally:
        rig.close()
