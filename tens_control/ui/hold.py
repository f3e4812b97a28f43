"""Hold ↑ to raise, in a terminal (DESIGN.md S16).

A terminal reports key presses, never key releases: holding ↑ arrives as the terminal's
auto-repeat, one press every 30-50 ms after an initial delay of 0.25-0.7 s. So:

* **A press asks for one step** above the delivered current, and only when no earlier ↑ of that
  channel is still being handled: presses that arrive while one is on its way are absorbed,
  never queued. (The governor absorbs them too: ``step_up`` never puts the target more than one
  step above what the device acknowledged.)
* **A held key** is a press that follows the previous one within :data:`REPEAT_GAP_S`. While
  the repeats keep coming the rise goes on, at the governor's ramp rate.
* **Release** is the repeats stopping: when no ↑ has come for :data:`REPEAT_GAP_S`, the rise is
  stopped where it is (``SessionController.hold``): a step not yet sent is dropped. Any other
  key (↓, another channel, pause, stop) stops the rise at once, the same way.

So after the key is let go the output never rises by more than the one step already on its
way. Time comes from the session's clock (a virtual clock in tests), never from a UI timer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.clock import Clock, TimerHandle

REPEAT_GAP_S = 0.2
"""Two ↑ presses this close are a held key (auto-repeat runs at 20-40 per second); this long
without one is a release. Shorter than the shortest common initial repeat delay (0.25 s), so
that two deliberate presses are two steps, and long enough for the repeats of a slow terminal
(or one over a network) to keep the rise going."""


@dataclass
class _Key:
    last: float | None = None
    in_flight: bool = False
    held: bool = False
    timer: TimerHandle | None = None


class RaiseKey:
    """Turns ↑ presses into one-step increases and their end into a hold.

    ``increase(channel, done)`` must ask for one step on ``channel`` off the UI thread and call
    ``done()`` when it has finished (whatever the outcome); ``hold(channel)`` must stop that
    channel's rise. Both run in order on the same queue, so a hold always follows the increase
    it stops."""

    def __init__(
        self,
        clock: Clock,
        increase: Callable[[int, Callable[[], None]], None],
        hold: Callable[[int], None],
        repeat_gap_s: float = REPEAT_GAP_S,
    ) -> None:
        self._clock = clock
        self._increase = increase
        self._hold = hold
        self._gap = repeat_gap_s
        self._keys: dict[int, _Key] = {}
        self._lock = threading.Lock()

    def pressed(self, channel: int) -> bool:
        """↑ on ``channel``. True if it asked for a step, False if it was absorbed (a step of
        that channel is still on its way)."""
        now = self._clock.now()
        with self._lock:
            key = self._keys.setdefault(channel, _Key())
            if key.last is not None and now - key.last <= self._gap:
                key.held = True
            key.last = now
            if key.held:
                if key.timer is not None:
                    key.timer.cancel()
                key.timer = self._clock.call_later(self._gap, lambda: self._released(channel))
            if key.in_flight:
                return False
            key.in_flight = True
        self._increase(channel, lambda: self._done(channel))
        return True

    def _done(self, channel: int) -> None:
        with self._lock:
            self._keys.setdefault(channel, _Key()).in_flight = False

    def _released(self, channel: int) -> None:
        """Clock callback: no ↑ for the repeat gap."""
        with self._lock:
            key = self._keys.get(channel)
            if key is None or not key.held or key.last is None:
                return
            if self._clock.now() - key.last < self._gap - 1e-9:
                return  # a newer press re-armed the timer
            key.held = False
            key.timer = None
        self._hold(channel)

    def other_key(self, channel: int) -> None:
        """Another key was pressed: stop ``channel``'s rise at once (S16)."""
        with self._lock:
            key = self._keys.get(channel)
            if key is not None:
                key.held = False
                key.last = None
                if key.timer is not None:
                    key.timer.cancel()
                    key.timer = None
        self._hold(channel)

    def held(self, channel: int) -> bool:
        """``channel``'s ↑ is being held (auto-repeat)."""
        with self._lock:
            key = self._keys.get(channel)
            return key is not None and key.held

    def close(self) -> None:
        """Cancel every pending release (the screen is going away; the session stops the
        output itself)."""
        with self._lock:
            for key in self._keys.values():
                if key.timer is not None:
                    key.timer.cancel()
                    key.timer = None
