"""The governor's states, as one transition table.

::

    DISCONNECTED --connect--> IDLE --start--> RUNNING <--pause / resume--> PAUSED
    IDLE, RUNNING, PAUSED --end (stop, emergency stop, fault, duration)--> ENDED --connect--> IDLE
    every state --close--> DISCONNECTED

Only RUNNING may deliver current (S11). Every transition into RUNNING starts every channel at
0 mA and every transition out of it zeroes the output before anything else happens (S1).
A session is one ``start`` .. ENDED; a new session needs ``connect`` again (the device is
re-identified, every output zeroed, every channel configured again). Stimulation never resumes
by itself: no transition into RUNNING has a trigger the device or a timer can fire.
"""

from __future__ import annotations

from enum import StrEnum


class GovernorState(StrEnum):
    DISCONNECTED = "disconnected"
    """Before ``connect()``, and after ``close()``."""
    IDLE = "idle"
    """Connected, every output 0, no session running; channels may be configured."""
    RUNNING = "running"
    """A session is running; amplitudes follow their targets through the ramp."""
    PAUSED = "paused"
    """Every output 0 (stop sent); ``resume()`` starts again from 0 mA."""
    ENDED = "ended"
    """The session is over (see ``end_reason``); every output 0. ``connect()`` for another."""


class Trigger(StrEnum):
    CONNECT = "connect"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    END = "end"
    CLOSE = "close"


S = GovernorState
T = Trigger

TRANSITIONS: dict[tuple[GovernorState, Trigger], GovernorState] = {
    (S.DISCONNECTED, T.CONNECT): S.IDLE,
    (S.IDLE, T.CONNECT): S.IDLE,
    (S.ENDED, T.CONNECT): S.IDLE,
    (S.IDLE, T.START): S.RUNNING,
    (S.RUNNING, T.PAUSE): S.PAUSED,
    (S.PAUSED, T.RESUME): S.RUNNING,
    (S.IDLE, T.END): S.ENDED,
    (S.RUNNING, T.END): S.ENDED,
    (S.PAUSED, T.END): S.ENDED,
    **{(state, T.CLOSE): S.DISCONNECTED for state in S},
}
"""Every allowed transition. Anything else is refused (and nothing is sent)."""

CONNECTED = frozenset({S.IDLE, S.RUNNING, S.PAUSED})
"""States with a live session or an idle connection (a session may be ended from them)."""
DELIVERING = frozenset({S.RUNNING})
"""S11: the only state in which any channel may be above 0 mA."""


def next_state(state: GovernorState, trigger: Trigger) -> GovernorState | None:
    """Where ``trigger`` leads from ``state``, or None if it is not allowed there."""
    return TRANSITIONS.get((state, trigger))
