"""Stop every open TENS driver on every way out of the process.

Drivers :func:`register` themselves when they open and :func:`unregister` when they close.
:func:`install` (called by :func:`register`, safe to call any number of times) adds:

* an ``atexit`` hook, and
* handlers for ``SIGTERM`` and, where it exists, ``SIGHUP`` (a closed terminal),

each of which calls :func:`stop_all`: ``STOP`` is written to *every* registered driver first,
then every driver is closed (which waits briefly for the acknowledgement and closes the port).
A signal handler then hands over to the handler that was installed before ours; if that was the
default action, it raises ``SystemExit(128 + signum)`` so that ``finally`` blocks and context
managers still run.

``SIGINT`` is left alone: Ctrl-C stays :class:`KeyboardInterrupt`, and the context managers
and ``finally`` blocks it unwinds through stop the device (``TensDriver.__exit__``).

Signal handlers can only be installed from the main thread. :func:`install` called from another
thread installs the ``atexit`` hook only; call it once from the main thread at start-up (the
application does) to get the signal handlers too.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger(__name__)

SIGNAL_STOP_TIMEOUT_S = 2.0
"""How long a signal handler waits for the stop-all worker before carrying on regardless."""


class Stoppable(Protocol):
    """What the guard needs from a driver."""

    def request_stop(self) -> object:
        """Write STOP now; must not raise."""

    def close(self) -> None:
        """Stop (best effort), then close the port. Idempotent; must not raise."""


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_lock = threading.RLock()
_drivers: list[Stoppable] = []
_atexit_installed = False
_signals_installed = False
_previous: dict[int, _Handler] = {}


def _guarded_signals() -> list[signal.Signals]:
    names = ["SIGTERM", "SIGHUP"]
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def register(driver: Stoppable) -> None:
    """Guard ``driver`` until :func:`unregister`. Installs the handlers on first use."""
    install()
    with _lock:
        if not any(d is driver for d in _drivers):
            _drivers.append(driver)


def unregister(driver: Stoppable) -> None:
    with _lock:
        _drivers[:] = [d for d in _drivers if d is not driver]


def registered() -> list[Stoppable]:
    """The drivers currently guarded, oldest first."""
    with _lock:
        return list(_drivers)


def stop_all() -> None:
    """``STOP`` on every registered driver, then close each. Never raises."""
    drivers = registered()
    for driver in drivers:
        try:
            driver.request_stop()
        except Exception:  # a broken driver must not keep the others running
            log.exception("exit guard: STOP failed on %r", driver)
    for driver in drivers:
        try:
            driver.close()
        except Exception:
            log.exception("exit guard: close failed on %r", driver)
        unregister(driver)


def _stop_all_from_signal() -> None:
    """Run :func:`stop_all` on a helper thread with a time limit.

    The signal may have interrupted this very thread inside a driver or port lock; stopping on
    another thread cannot deadlock on it. If the limit passes, unwinding (``SystemExit`` through
    the context managers) and the device's own watchdog still stop the output.
    """
    worker = threading.Thread(target=stop_all, name="tens-exit-guard", daemon=True)
    worker.start()
    worker.join(SIGNAL_STOP_TIMEOUT_S)
    if worker.is_alive():
        log.error(
            "exit guard: stopping the devices did not finish within %.1f s",
            SIGNAL_STOP_TIMEOUT_S,
        )


def _on_signal(signum: int, frame: FrameType | None) -> None:
    log.warning("exit guard: signal %d: stopping every device", signum)
    _stop_all_from_signal()
    previous = _previous.get(signum, signal.SIG_DFL)
    if previous is signal.SIG_IGN:
        return
    if callable(previous):
        previous(signum, frame)
        return
    raise SystemExit(128 + signum)


def _at_exit() -> None:
    stop_all()


def install() -> None:
    """Install the atexit hook and (from the main thread) the signal handlers. Idempotent."""
    global _atexit_installed, _signals_installed
    with _lock:
        if not _atexit_installed:
            atexit.register(_at_exit)
            _atexit_installed = True
        if _signals_installed or threading.current_thread() is not threading.main_thread():
            return
        for signum in _guarded_signals():
            current = signal.getsignal(signum)
            if current is _on_signal:
                continue
            _previous[signum] = current
            signal.signal(signum, _on_signal)
        _signals_installed = True


def uninstall() -> None:
    """Restore the previous signal handlers and drop the atexit hook (for tests)."""
    global _atexit_installed, _signals_installed
    with _lock:
        if _signals_installed and threading.current_thread() is threading.main_thread():
            for signum, previous in _previous.items():
                if signal.getsignal(signum) is _on_signal:
                    with contextlib.suppress(TypeError, ValueError):
                        signal.signal(signum, previous)
            _previous.clear()
            _signals_installed = False
        if _atexit_installed:
            atexit.unregister(_at_exit)
            _atexit_installed = False
