"""The thin runtime under every protocol driver: it owns the port and moves bytes.

* Real time: one reader thread reads the port and hands bytes to the protocol engine. Writes
  are serialised by a lock and go out on the caller's thread at once, so a stop never waits
  behind a read that is blocked for its timeout.
* Virtual time: there are no threads. The in-process simulator port calls back when bytes are
  readable (from a clock callback) and the link hands them over synchronously.

A read or write that fails (the port vanished, ``SerialException``) is reported once through
``on_lost`` -- a comms loss like any other, never a traceback -- and the link is dead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import serial

from drivers.base import CommsLostError, PortError
from drivers.clock import Clock, VirtualClock
from drivers.transport import ClockedPort

log = logging.getLogger(__name__)


class SerialLink:
    def __init__(
        self,
        port: serial.Serial,
        clock: Clock,
        on_bytes: Callable[[bytes], None],
        on_lost: Callable[[str], None],
        name: str = "tens-link",
    ) -> None:
        self.port = port
        self.clock = clock
        self._on_bytes = on_bytes
        self._on_lost = on_lost
        self._name = name
        self._write_lock = threading.Lock()
        self._alive = True
        self._lost_reported = False
        self._thread: threading.Thread | None = None
        self.bytes_written = 0
        self.bytes_read = 0
        if isinstance(clock, VirtualClock) and not isinstance(port, ClockedPort):
            raise PortError("virtual time needs the in-process simulator port (sim://)")

    @property
    def alive(self) -> bool:
        return self._alive

    def start(self) -> None:
        if isinstance(self.clock, VirtualClock):
            assert isinstance(self.port, ClockedPort)
            self.port.set_data_callback(self._pump)
            self._pump()
        else:
            self._thread = threading.Thread(target=self._read_loop, name=self._name, daemon=True)
            self._thread.start()

    # ---- reading
    def _pump(self) -> None:
        """Virtual time: read whatever is buffered and hand it over."""
        try:
            waiting = self.port.in_waiting
            data = self.port.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as error:
            self._lost(f"port read failed: {error}")
            return
        if data:
            self.bytes_read += len(data)
            self._on_bytes(data)

    def _read_loop(self) -> None:
        while self._alive:
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as error:
                # TypeError/AttributeError: pyserial internals after close() on some platforms
                if self._alive:
                    self._lost(f"port read failed: {error}")
                return
            if data and self._alive:
                self.bytes_read += len(data)
                try:
                    self._on_bytes(data)
                except Exception:  # a protocol bug must not kill the reader silently
                    log.exception("protocol engine failed on received bytes")
                    self._lost("protocol engine failed on received bytes")
                    return

    # ---- writing
    def write(self, data: bytes) -> None:
        """Write all of ``data`` now. Raises :class:`CommsLostError` when the port is gone."""
        if not self._alive:
            raise CommsLostError("the link to the device is closed")
        try:
            with self._write_lock:
                written = self.port.write(data)
        except (serial.SerialException, OSError) as error:
            self._lost(f"port write failed: {error}")
            raise CommsLostError(f"port write failed: {error}") from None
        if written is not None and written != len(data):
            self._lost("port write timed out")
            raise CommsLostError("port write timed out")
        self.bytes_written += len(data)

    def _lost(self, detail: str) -> None:
        self._alive = False
        if not self._lost_reported:
            self._lost_reported = True
            self._on_lost(detail)
        self.clock.notify()

    def close(self) -> None:
        """Close the port. Idempotent. Callers send their stop frame *before* this."""
        self._alive = False
        self._lost_reported = True
        if isinstance(self.port, ClockedPort):
            self.port.set_data_callback(None)
        with contextlib.suppress(Exception):  # best effort: the port may already be gone
            if hasattr(self.port, "cancel_read"):
                self.port.cancel_read()
        with contextlib.suppress(Exception):
            self.port.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
