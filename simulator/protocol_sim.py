"""pyserial URL handler for ``sim://``: the simulated TENS unit behind the real serial API.

``import simulator`` registers the scheme; then ``serial.serial_for_url(url)`` opens a port whose
far end is a :class:`~simulator.device.SimDevice` in this process::

    sim://tsp?profile=tens-sim&seed=1&faults=leadoff@12.5:1,garble@30&latency_ms=2&wdms=1000

The host part names the protocol front-end (``tsp``, ``sciencemode2``; see
:mod:`simulator.frontends`); options are listed in ``docs/simulator.md``.

The port implements :class:`drivers.transport.ClockedPort`: call ``use_clock(clock)`` before
``open()`` (without it the port makes its own :class:`~drivers.clock.RealClock`).

* Virtual clock: nothing runs in the background. ``write()`` only schedules the device's work
  on the clock; bytes become readable from clock callbacks, which then call the data callback.
  ``read()`` never waits: it returns what is buffered.
* Real clock: the device runs on the clock's scheduler thread; ``read()`` blocks up to the
  timeout, and ``cancel_read()`` wakes it.

Tests reach the device as ``port.device`` (its firmware, delivered record and ``inject()``).
A ``disconnect`` fault makes reads and writes raise ``SerialException``, as an unplugged USB
adapter does; the port must then be closed and opened again once the device is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from drivers.clock import Clock, RealClock, VirtualClock
from simulator.device import SimConfig, SimConfigError, SimDevice


class Serial(SerialBase):
    """A serial port whose other end is a simulated TENS unit."""

    BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 3000000)

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._clock: Clock | None = None
        self._own_clock = False
        self._device: SimDevice | None = None
        self._device_url: str | None = None
        self._rx = bytearray()
        self._cond = threading.Condition()
        self._data_callback: Callable[[], None] | None = None
        self._vanished = False
        self._cancelled = False
        self._virtual = False
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ ClockedPort
    def use_clock(self, clock: Clock) -> None:
        """Run the device on ``clock``. Call before ``open()``."""
        if self._device is not None and clock is not self._clock:
            raise SerialException("the simulated device already runs on another clock")
        self._clock = clock
        self._own_clock = False
        self._virtual = isinstance(clock, VirtualClock)

    def set_data_callback(self, callback: Callable[[], None] | None) -> None:
        """Called (from a clock callback) whenever bytes become readable."""
        self._data_callback = callback

    @property
    def device(self) -> SimDevice:
        """The simulated unit behind this port (available once the port was opened)."""
        if self._device is None:
            raise SerialException("the simulated device exists once the port is opened")
        return self._device

    # ------------------------------------------------------------------ life cycle
    def open(self) -> None:
        if self.port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        url = str(self.port)
        if self._device is not None and url != self._device_url:
            self._drop_device()
        if self._device is None:
            config = self.config_from_url(url)
            if self._clock is None:
                self._clock = RealClock()
                self._own_clock = True
                self._virtual = False
            try:
                self._device = SimDevice(config, self._clock)
            except (SimConfigError, LookupError) as error:
                raise SerialException(f"could not open port {url}: {error}") from None
            self._device_url = url
        device = self._device
        if device.disconnected:
            raise SerialException(f"could not open port {url}: the simulated device is unplugged")
        with self._cond:
            self._rx.clear()
            self._vanished = False
            self._cancelled = False
        device.add_link_listener(self._on_link)
        device.attach(self._on_bytes)
        self.is_open = True

    @staticmethod
    def config_from_url(url: str) -> SimConfig:
        """Parse ``sim://<protocol>?<options>``; raises ``SerialException`` naming the problem."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "sim":
            raise SerialException(f"expected a sim:// URL, got {url!r}")
        protocol = (parts.netloc or parts.path.strip("/") or "tsp").lower()
        try:
            options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
            return SimConfig.from_options(protocol, options)
        except (SimConfigError, ValueError) as error:
            raise SerialException(f"could not open port {url}: {error}") from None

    def close(self) -> None:
        """Unplug the cable. The device keeps running (its watchdog will notice) unless this
        port made its own real clock, in which case the device is switched off with it."""
        if self.is_open:
            self.is_open = False
            if self._device is not None:
                self._device.attach(None)
                self._device.remove_link_listener(self._on_link)
            with self._cond:
                self._cond.notify_all()
        if self._own_clock:
            self._drop_device()

    def _drop_device(self) -> None:
        if self._device is not None:
            self._device.attach(None)
            self._device.remove_link_listener(self._on_link)
            self._device.power_off()
            self._device = None
            self._device_url = None
        if self._own_clock and self._clock is not None:
            self._clock.close()
            self._clock = None
            self._own_clock = False

    def _reconfigure_port(self) -> None:
        """Baud rate, parity and the like mean nothing to the simulator."""

    # ------------------------------------------------------------------ device side
    def _on_bytes(self, data: bytes) -> None:
        with self._cond:
            self._rx += data
            self._cond.notify_all()
        callback = self._data_callback
        if callback is not None:
            callback()

    def _on_link(self, gone: bool) -> None:
        if not gone:
            return
        with self._cond:
            self._vanished = True
            self._cond.notify_all()
        callback = self._data_callback
        if callback is not None and self._clock is not None:
            # let the reader find out (it reads and gets SerialException), never re-entrantly
            self._clock.call_soon(callback)

    def _check(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        if self._vanished:
            raise SerialException(
                "device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)"
            )

    # ------------------------------------------------------------------ serial API
    @property
    def in_waiting(self) -> int:
        self._check()
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        self._check()
        if size <= 0:
            return b""
        with self._cond:
            if not self._virtual and len(self._rx) < size:
                timeout = self.timeout
                deadline = None if timeout is None else time.monotonic() + timeout
                while (
                    len(self._rx) < size
                    and self.is_open
                    and not self._vanished
                    and not self._cancelled
                ):
                    if deadline is None:
                        self._cond.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                self._cancelled = False
                if self._vanished and not self._rx:
                    self._check()
            data = bytes(self._rx[:size])
            del self._rx[:size]
        return data

    def write(self, b: object, /) -> int:
        self._check()
        data = bytes(b)  # type: ignore[call-overload]
        if self._device is not None:
            self._device.host_write(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered on the way out."""

    def reset_input_buffer(self) -> None:
        self._check()
        with self._cond:
            self._rx.clear()

    def reset_output_buffer(self) -> None:
        self._check()

    @property
    def out_waiting(self) -> int:
        self._check()
        return 0

    def cancel_read(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def cancel_write(self) -> None:
        """Writes never block."""

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        self._check()
        return True

    @property
    def dsr(self) -> bool:
        self._check()
        return True

    @property
    def ri(self) -> bool:
        self._check()
        return False

    @property
    def cd(self) -> bool:
        self._check()
        return True
