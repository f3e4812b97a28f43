"""Which sessions count against the daily allowance (DESIGN.md S6; docs/sessions.md).

A prescription's ``sessions_per_day`` and ``min_gap_minutes`` limit *treatments*: the number of
times a day the skin under the pads takes a session, and the rest it gets between them. A
session that was stopped within its first :data:`COUNTS_AFTER_S` seconds (an emergency stop, a
pad that came off, a stop because it felt wrong, a fault) gave no treatment; counting it would
punish the patient for using the stop the way they were taught to. So:

* A session **counts** against ``sessions_per_day`` and starts the ``min_gap_minutes`` wait
  when it completed, when it ran for at least :data:`COUNTS_AFTER_S` seconds (start to end),
  or when it has no end yet (it is running, or a crash left it open).
* A session that ended otherwise within :data:`COUNTS_AFTER_S` seconds does **not** count.
* **Every minute counts** against ``minutes_per_day``, whatever the session: that limit is on
  the dose, and a short session's minutes were delivered.
* At most :data:`MAX_FREE_SHORT` short sessions a day are free; any more count like any other
  session (a stop again and again is a reason to call the clinic, not to start again).

Both the session controller (which refuses a session) and the home screen (which says so before
the patient chooses a program) use :func:`daily_use`, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from tens_control.prescription import Prescription, daily_limit_reason
from tens_control.store import EndReason

if TYPE_CHECKING:
    from tens_control.store.store import SessionInfo, Store

COUNTS_AFTER_S = 120.0
"""A session stopped earlier than this (start to end) gave no treatment and is not counted."""
MAX_FREE_SHORT = 3
"""Short stopped sessions a day that do not count; further ones count."""


def counts(info: SessionInfo) -> bool:
    """True if ``info`` is a treatment that counts against ``sessions_per_day``."""
    if info.ended_at is None or info.end_reason is EndReason.COMPLETED:
        return True
    return (info.ended_at - info.started_at).total_seconds() >= COUNTS_AFTER_S


@dataclass(frozen=True, slots=True)
class DailyUse:
    """Today's use, as the daily limits count it."""

    sessions: int
    """Sessions that count against ``sessions_per_day``."""
    short_stops: int
    """Sessions stopped early that do not count (at most :data:`MAX_FREE_SHORT`)."""
    minutes: float
    """Minutes of every session today, start to end (an open one up to now)."""
    since_last: timedelta | None
    """Time since the last counted session ended (0 while one is open; None: none yet)."""

    def block_reason(self, rx: Prescription) -> str | None:
        """Why a new session may not start now under ``rx``, or None."""
        return daily_limit_reason(rx, self.sessions, self.minutes, self.since_last)


def daily_use(
    store: Store, patient: str | None, now: datetime, tz: tzinfo | None = None
) -> DailyUse:
    """Count today's sessions of ``patient`` (``now``: an aware datetime; ``tz``: the zone of
    the patient's calendar day, the machine's by default)."""
    today = store.sessions_on(now.astimezone(tz).date(), patient=patient, tz=tz)
    counted: list[SessionInfo] = []
    short = 0
    minutes = 0.0
    for info in sorted(today, key=lambda s: s.started_at):
        end = info.ended_at or now
        minutes += max(0.0, (end - info.started_at).total_seconds() / 60)
        if counts(info) or short >= MAX_FREE_SHORT:
            counted.append(info)
        else:
            short += 1
    last: SessionInfo | None = counted[-1] if counted else None
    if last is None:
        # the gap also holds across midnight: the last session before today, if it counted
        before = store.last_session(patient)
        if before is not None and before.started_at < min(
            (s.started_at for s in today), default=now
        ):
            last = before if counts(before) else None
    since: timedelta | None = None
    if last is not None:
        since = timedelta(0) if last.ended_at is None else max(timedelta(0), now - last.ended_at)
    return DailyUse(len(counted), short, minutes, since)


__all__ = ["COUNTS_AFTER_S", "MAX_FREE_SHORT", "DailyUse", "counts", "daily_use"]
