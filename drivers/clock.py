"""Clocks: one interface for real time and for deterministic virtual time.

Everything that depends on time (keep-alives, acknowledgement timeouts, ramps, watchdogs,
session durations, the simulator's firmware) asks a :class:`Clock` for the time and schedules
work through it. Production code uses :class:`RealClock`; tests and benchmarks use
:class:`VirtualClock`, a discrete-event scheduler in which time only moves when somebody waits,
and then jumps straight to the next deadline. An hour of telemetry is replayed in milliseconds,
in the same order every run.

Rules for code running *inside* a scheduled callback: never block and never wait (call
``wait_until``/``sleep``) -- send, record, schedule, and return. Blocking waits belong to the
caller's thread at the edge of an API.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

Callback = Callable[[], None]


@dataclass(eq=False, slots=True)
class TimerHandle:
    """A scheduled callback. ``cancel()`` is idempotent and safe from any thread."""

    when: float
    seq: int
    callback: Callback = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Clock(ABC):
    """Monotonic time, scheduled callbacks and waits, in seconds."""

    @abstractmethod
    def now(self) -> float:
        """Monotonic time in seconds."""

    @abstractmethod
    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` at time ``when`` on the clock's scheduler."""

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        return self.call_at(self.now() + max(0.0, delay), callback)

    def call_soon(self, callback: Callback) -> TimerHandle:
        return self.call_at(self.now(), callback)

    @abstractmethod
    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true or ``timeout`` seconds pass; return ``predicate()``.

        Code that changes state a waiter may be watching calls :meth:`notify` afterwards.
        """

    def sleep(self, seconds: float) -> None:
        self.wait_until(lambda: False, seconds)

    @abstractmethod
    def notify(self) -> None:
        """Wake waiters so that they re-check their predicates."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop the scheduler (if any). Pending callbacks are dropped."""


class VirtualClock(Clock):
    """Deterministic discrete-event time.

    Time advances only inside :meth:`wait_until`, :meth:`sleep`, :meth:`advance` and
    :meth:`run_until`; each jumps from deadline to deadline, running due callbacks in
    (time, scheduling order). Waiting inside a callback is a programming error and raises.

    Scheduling is safe from any thread (a UI thread may send a stop while a worker waits);
    one thread at a time advances time (callbacks run one by one under a lock).
    Determinism holds as long as only one thread drives time at once.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._queue: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._callback_thread: int | None = None
        self._lock = threading.RLock()
        self._advance_lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        with self._lock:
            now = self._now
            handle = TimerHandle(when if when > now else now, next(self._seq), callback)
            heapq.heappush(self._queue, (handle.when, handle.seq, handle))
        return handle

    def notify(self) -> None:
        """Nothing to wake: waiters re-check their predicate after every callback."""

    def pending(self) -> int:
        """How many live callbacks are scheduled (for tests and leak checks)."""
        return sum(1 for _, _, h in self._queue if not h.cancelled)

    def next_deadline(self) -> float | None:
        with self._lock:
            while self._queue and self._queue[0][2].cancelled:
                heapq.heappop(self._queue)
            return self._queue[0][0] if self._queue else None

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run due callbacks one by one, in (time, scheduling order), until ``predicate()`` is
        true or the deadline is reached (then time stands at the deadline)."""
        ident = threading.get_ident()
        if self._callback_thread == ident:
            raise RuntimeError("a scheduled callback must not wait on the clock")
        with self._advance_lock:
            deadline = self._now + max(0.0, timeout)
            queue, lock, pop = self._queue, self._lock, heapq.heappop
            # this thread runs every callback of the loop: a callback that waits is caught above
            self._callback_thread = ident
            try:
                while not predicate():
                    with lock:
                        while queue and queue[0][2].cancelled:
                            pop(queue)
                        if not queue or queue[0][0] > deadline:
                            if deadline > self._now:
                                self._now = deadline
                            break
                        when, _, handle = pop(queue)
                        if when > self._now:
                            self._now = when
                    handle.callback()
                else:
                    return True
            finally:
                self._callback_thread = None
        return predicate()

    def run_until(self, when: float) -> None:
        """Advance to absolute time ``when``, running everything due on the way."""
        self.wait_until(lambda: False, when - self._now)

    def advance(self, seconds: float) -> None:
        self.run_until(self._now + seconds)


class RealClock(Clock):
    """Wall-clock monotonic time with one scheduler thread for callbacks.

    Callbacks run on the scheduler thread and must be short and non-blocking.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        handle = TimerHandle(when, next(self._seq), callback)
        with self._cond:
            if self._closed:
                handle.cancelled = True
                return handle
            heapq.heappush(self._queue, (when, handle.seq, handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tens-clock", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    while self._queue and self._queue[0][2].cancelled:
                        heapq.heappop(self._queue)
                    if self._queue:
                        delay = self._queue[0][0] - time.monotonic()
                        if delay <= 0:
                            handle = heapq.heappop(self._queue)[2]
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
            try:
                handle.callback()
            except Exception:  # pragma: no cover - a callback bug must not kill the clock
                import logging

                logging.getLogger(__name__).exception("clock callback failed")
            self.notify()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return predicate()
                # Short slices guard against a state change whose notify() was missed.
                self._cond.wait(min(remaining, 0.05))
            return True

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
