"""Reminders of the prescribed schedule, as home TENS apps give them: when the next session is
due, and the days without a session since treatment started. Plain data in, one line out (the
home screen shows it); nothing here decides whether a session may start (that is the session
layer's job), it only reminds.

Rules (the careful clinician's):

- *Next session*: with sessions left today (``sessions_per_day``, else as many as
  ``minutes_per_day`` allows, else one a day), it is due now, or at the end of the last session
  plus the prescribed gap (``min_gap_minutes``) if that is later. With none left, tomorrow.
- *Missed days*: the local days from the first session's day to yesterday with no session
  started. Only the last :data:`MISSED_WINDOW_DAYS` are counted (an old gap is history, not a
  reminder); none before the first session (the run-in has its own line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

MISSED_WINDOW_DAYS = 7


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the prescription says about when to use TENS."""

    sessions_per_day: int | None
    minutes_per_day: int | None
    session_minutes: int
    min_gap_minutes: int = 0

    @property
    def per_day(self) -> int:
        if self.sessions_per_day is not None:
            return self.sessions_per_day
        if self.minutes_per_day is not None:
            return max(1, self.minutes_per_day // self.session_minutes)
        return 1


def _day(moment: datetime, tz: tzinfo | None) -> date:
    return moment.astimezone(tz).date()


def missed_days(starts: Sequence[datetime], now: datetime, tz: tzinfo | None = None) -> list[date]:
    """The days (oldest first) in the last :data:`MISSED_WINDOW_DAYS` before today, from the
    first session's day on, without a session started."""
    if not starts:
        return []
    today = _day(now, tz)
    first = max(_day(min(starts), tz), today - timedelta(days=MISSED_WINDOW_DAYS))
    used = {_day(s, tz) for s in starts}
    days = (first + timedelta(days=i) for i in range((today - first).days))
    return [d for d in days if d not in used]


def _date_words(day: date, today: date) -> str:
    return "yesterday" if (today - day).days == 1 else day.strftime("%a %d %b")


def reminder(
    schedule: Schedule,
    sessions: Sequence[tuple[datetime, datetime | None]],
    now: datetime,
    tz: tzinfo | None = None,
) -> str:
    """One or two lines: the next session, then (if any) the days missed. ``sessions`` are
    (start, end) of every session, in any order."""
    today = _day(now, tz)
    todays = [(s, e) for s, e in sessions if _day(s, tz) == today]
    left = schedule.per_day - len(todays)
    if left <= 0:
        line = f"Next session: tomorrow (all {schedule.per_day} done today)"
    else:
        due = now
        ends = [e for _s, e in todays if e is not None]
        if ends and schedule.min_gap_minutes:
            due = max(due, max(ends) + timedelta(minutes=schedule.min_gap_minutes))
        when = "now" if due <= now else "from " + due.astimezone(tz).strftime("%H:%M")
        if _day(due, tz) != today:
            when = "tomorrow"
        line = f"Next session: {when}"
    missed = missed_days([s for s, _e in sessions], now, tz)
    if not missed:
        return line
    if len(missed) == 1:
        gap = f"No session {_date_words(missed[0], today)}"
        if (today - missed[0]).days > 1:
            gap = f"No session on {_date_words(missed[0], today)}"
    else:
        gap = f"No session on {len(missed)} of the last {MISSED_WINDOW_DAYS} days"
        if missed[-1] == today - timedelta(days=1):
            gap += ", yesterday included"
    return f"{line}\n{gap} (prescribed: {schedule.per_day} a day)"
