"""An ordered queue of quick controller calls, run off the UI thread.

Intensity steps, pause, stop, pain ratings and the habituation answer do not wait for the device,
but they do wait until their log records are committed. Running them here keeps the event loop
free, so the emergency-stop key is handled at once even if the disk is slow. Calls run one at a
time in the order they were made (an "up" then a "down" arrive in that order).

The emergency stop never goes through this queue: it is called directly on the UI thread (it
never waits).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Job = tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]]


class CallQueue:
    """One daemon thread running submitted calls in order; every result goes to its callback."""

    def __init__(self, name: str = "tens-ui-calls") -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._closed = False

    def submit(
        self, call: Callable[[], Any], done: Callable[[Any, BaseException | None], None]
    ) -> bool:
        """Queue ``call``; ``done(result, error)`` runs on the queue's thread afterwards.
        False if the queue is closed."""
        with self._lock:
            if self._closed:
                return False
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put((call, done))
        return True

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._closed:
                    return
                continue
            if job is None:
                return
            call, done = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = call()
            except Exception as exc:  # reported to the callback, never lost
                error = exc
            try:
                done(result, error)
            except Exception:
                log.exception("UI call callback failed")
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted call has finished (tests). True if idle."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the thread (waits at most ``timeout``)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
