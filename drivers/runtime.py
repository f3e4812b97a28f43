"""The one runtime under every protocol: it owns the port, the reader thread, the clock and the
lock, and runs a sans-I/O protocol engine (:mod:`drivers.engine`).

:class:`DeviceRuntime` is a :class:`~drivers.base.TensDriver`. Each protocol is a small
subclass that names its engine, its serial settings and any extra calls
(``drivers/tsp/driver.py``, ``drivers/sciencemode2/driver.py``). Everything else is here, once:

* **Bytes in.** Real time: one reader thread reads the port and feeds the engine. Virtual time:
  there are no threads; the in-process simulator port calls back when bytes are readable (from a
  clock callback) and the engine is fed at once.
* **Time.** The engine says when it next needs to be woken; one clock timer does that.
* **Bytes out.** Engines queue bytes under the lock; they are written in order when the
  outermost holder of the lock lets go (:meth:`~drivers.base.TensDriver.locked`), never while
  it is held. A port that fails to read or write is a comms loss like any other, never a
  traceback.
* **Life cycle.** ``open`` -> ``connect`` (identify, then stop: S1) -> ``reconnect`` (a new
  engine on the re-opened port: identify and stop again; stimulation never resumes by itself)
  -> ``close`` (stop, a short wait for its answer, close the port). The exit guard stops the
  device on every way out of the process.
* **S17.** The identity is the device's word, so it only narrows: the host decides from the URL
  whether this is the built-in simulator, and refuses a device whose own watchdog is missing or
  longer than :data:`MAX_DEVICE_WATCHDOG_MS`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from abc import abstractmethod
from typing import ClassVar, Self

import serial

from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceInfo,
    DriverError,
    IdentityError,
    Pending,
    PortError,
    TensDriver,
)
from drivers.clock import Clock, TimerHandle, VirtualClock
from drivers.engine import (
    Completed,
    Configure,
    DeviceCommand,
    Engine,
    Identify,
    LoadSignedCap,
    Output,
    QueryStatus,
    SetAmplitude,
    StartOutput,
    StopOutput,
)
from drivers.transport import ClockedPort, open_port

log = logging.getLogger(__name__)

MAX_DEVICE_WATCHDOG_MS = 1500
"""S17: a device whose own watchdog is longer than this (or that has none) is refused."""
SIMULATOR_SCHEME = "sim://"
"""S17: only this URL scheme (the built-in, in-process simulator) is treated as a simulator."""
WAIT_BACKSTOP_S = 5.0
"""The engine always completes a command (answer, error, 1 s timeout or comms loss); a blocking
wait gives up after this long only if an engine bug left a command hanging."""


def is_builtin_simulator(url: str) -> bool:
    """True for the built-in simulator URL (``sim://...``), whatever the device says."""
    return url.strip().lower().startswith(SIMULATOR_SCHEME)


class DeviceRuntime(TensDriver):
    """A TENS unit on a port, spoken to through one protocol engine."""

    baudrate: ClassVar[int] = 115200
    parity: ClassVar[str] = serial.PARITY_NONE
    device_name: ClassVar[str] = "the device"
    """How messages name the device ("the RehaStim 2")."""
    protocol_label: ClassVar[str] = "protocol"
    """How messages name the protocol ("TSP")."""
    max_device_watchdog_ms: ClassVar[int] = MAX_DEVICE_WATCHDOG_MS
    """S17: the longest device watchdog accepted. A driver may raise it only for a device whose
    watchdog is a fixed, documented fact of that device (the P24's 2 s; docs/safety.md)."""

    def __init__(self, port: serial.Serial, clock: Clock, *, url: str | None = None) -> None:
        """Attach to an already-open port. Nothing is sent until :meth:`identify`
        (see :meth:`connect` and :meth:`open`)."""
        super().__init__(clock)
        self.url = url or str(getattr(port, "portstr", None) or getattr(port, "port", "") or "")
        self._pendings: dict[int, Pending] = {}
        self._outbox = bytearray()
        self._write_lock = threading.RLock()
        """Orders the port writes of several threads (held only while writing, never with the
        driver's lock)."""
        self._timer: TimerHandle | None = None
        self._closed = True
        self._info: DeviceInfo | None = None
        self.bytes_written = 0
        self.bytes_read = 0
        self._attach(port)

    # ------------------------------------------------------------------ construction
    @abstractmethod
    def _new_engine(self) -> Engine:
        """A fresh engine for a new link (first attach and every reconnect)."""

    @classmethod
    def connect(cls, port: serial.Serial, clock: Clock, *, url: str | None = None) -> Self:
        """Attach to an open port, identify the device and stop every output (S1).

        On failure the port is closed and the error (:class:`IdentityError`,
        :class:`CommsLostError`) is raised."""
        driver = cls(port, clock, url=url)
        driver._identify_and_stop()
        return driver

    @classmethod
    def open(cls, url: str, clock: Clock) -> Self:
        """Open ``url`` (``/dev/ttyUSB0``, ``COM3``, ``sim://...``, ``socket://...``), identify,
        stop. Raises :class:`PortError` or :class:`IdentityError` with one clear sentence."""
        port = open_port(url, clock=clock, baudrate=cls.baudrate, parity=cls.parity)
        return cls.connect(port, clock, url=url)

    def _identify_and_stop(self) -> None:
        try:
            self.identify()
            self.wait(self.request_stop())
        except BaseException:
            self.close()
            raise

    def reconnect(self, port: serial.Serial | None = None) -> DeviceInfo:
        """Open the same port again (or use ``port``, already open), with a new engine;
        identify and stop. Every output is left at 0; stimulation never resumes by itself;
        every channel must be configured again. Raises :class:`PortError` if the port cannot
        be opened, :class:`IdentityError` if the device does not answer."""
        old = self._port
        self._teardown("reconnecting")
        if port is None:
            port = self._reopen(old)
        self._attach(port)
        try:
            info = self.identify()
            self.wait(self.request_stop())
        except BaseException:
            self._teardown("reconnect failed")
            raise
        return info

    def _reopen(self, port: serial.Serial) -> serial.Serial:
        """Open the same port object again (same path or URL and settings; for ``sim://`` the
        same simulated device)."""
        try:
            if port.is_open:
                port.close()
            port.open()
        except (serial.SerialException, OSError, ValueError) as error:
            raise PortError(
                f"port {self.url or 'of ' + self.device_name} could not be opened again "
                f"({error}); check that it is plugged in and switched on, then reconnect"
            ) from None
        return port

    def _attach(self, port: serial.Serial) -> None:
        if isinstance(self.clock, VirtualClock) and not isinstance(port, ClockedPort):
            raise PortError("virtual time needs the in-process simulator port (sim://)")
        with self.locked():
            self._port = port
            self._port_failure: str | None = None
            self._reader: threading.Thread | None = None
            self._engine = self._new_engine()
            self._closed = False
            self._outbox.clear()
            self._apply(self._engine.open(self.clock.now()))
        if isinstance(self.clock, VirtualClock):
            assert isinstance(port, ClockedPort)
            port.set_data_callback(self._pump)
            self._pump()
        else:
            self._reader = threading.Thread(
                target=self._read_loop, name=f"tens-reader {self.url}", daemon=True
            )
            self._reader.start()
        exit_guard.register(self)

    # ------------------------------------------------------------------ state
    @property
    def engine(self) -> Engine:
        """The protocol engine of the current link (for its counters and protocol calls)."""
        return self._engine

    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            raise IdentityError(f"{self.device_name} has not been identified yet (call identify())")
        return self._info

    @property
    def connected(self) -> bool:
        return not self._closed and self._engine.lost is None and self._port_failure is None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def port(self) -> serial.Serial:
        """The port in use (for ``sim://`` tests: ``driver.port.device`` is the simulator)."""
        return self._port

    # ------------------------------------------------------------------ the engine, under the lock
    def _apply(self, out: Output) -> None:
        """Queue the engine's bytes, hand out its events, book its next wake-up (lock held)."""
        if out.data:
            self._outbox += out.data
        for event in out.events:
            if isinstance(event, Completed):
                pending = self._pendings.pop(event.ticket, None)
                if pending is not None:
                    # in order with the reports' handlers: whoever waits on a command learns
                    # why (a restart, comms loss) before its error arrives
                    self.defer(functools.partial(pending.resolve, event.error, event.value))
            else:
                self._report_locked(event)
        self._arm(out.deadline)

    def _arm(self, deadline: float | None) -> None:
        if deadline is None or not math.isfinite(deadline):
            return
        timer = self._timer
        if timer is not None and not timer.cancelled and timer.when <= deadline + 1e-9:
            return  # an earlier (or the same) wake-up is booked: it re-arms when it fires
        if timer is not None:
            timer.cancel()
        self._timer = self.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        with self.locked():
            self._timer = None
            if not self._closed:
                self._apply(self._engine.feed(b"", self.clock.now()))

    def submit(self, command: DeviceCommand, name: str) -> Pending:
        """Hand ``command`` to the engine; the returned pending completes with its answer.

        Raises :class:`DriverError` (nothing sent) when the engine refuses it."""
        with self.locked():
            now = self.clock.now()
            ticket, out = self._engine.submit(command, now)
            pending = Pending(name, now + self.ack_timeout_s)
            self._pendings[ticket] = pending
            self._apply(out)
        return pending

    # ------------------------------------------------------------------ bytes in
    def _feed(self, data: bytes) -> None:
        with self.locked():
            if self._closed:
                return
            self.bytes_read += len(data)
            try:
                out = self._engine.feed(data, self.clock.now())
            except Exception:  # an engine bug must not kill the reader silently
                log.exception("%s: protocol engine failed on received bytes", self.url)
                out = self._engine.port_lost(
                    "protocol engine failed on received bytes", self.clock.now()
                )
            self._apply(out)

    def _pump(self) -> None:
        """Virtual time: read whatever is buffered and feed it."""
        if self._closed:
            return
        try:
            waiting = self._port.in_waiting
            data = self._port.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as error:
            self._port_failed(f"port read failed: {error}")
            return
        if data:
            self._feed(data)

    def _read_loop(self) -> None:
        port = self._port
        while not self._closed and port is self._port:
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as error:
                # TypeError/AttributeError: pyserial internals after close() on some platforms
                if not self._closed and port is self._port:
                    self._port_failed(f"port read failed: {error}")
                return
            if data and not self._closed:
                self._feed(data)

    # ------------------------------------------------------------------ bytes out
    def _flush_writes(self) -> None:
        """Write what the engine queued, in order (called when the lock is released)."""
        if not self._outbox:
            return  # most releases: nothing to write (another thread's bytes are its own)
        while True:
            failure: str | None = None
            with self._write_lock:
                with self._lock:
                    if not self._outbox:
                        return
                    data = bytes(self._outbox)
                    self._outbox.clear()
                    port = self._port
                    usable = not self._closed and self._port_failure is None
                if not usable:
                    continue  # the port is gone: nothing can be written any more
                try:
                    written = port.write(data)
                except (serial.SerialException, OSError) as error:
                    failure = f"port write failed: {error}"
                else:
                    if written is not None and written != len(data):
                        failure = "port write timed out"
                    else:
                        self.bytes_written += len(data)
            if failure is not None:
                self._port_failed(failure)

    def _port_failed(self, detail: str) -> None:
        with self.locked():
            if self._port_failure is not None or self._closed:
                return
            self._port_failure = detail
            self._outbox.clear()
            self._apply(self._engine.port_lost(detail, self.clock.now()))
        self.clock.notify()

    # ------------------------------------------------------------------ TensDriver
    def identify(self) -> DeviceInfo:
        """Handshake and read the device's identity and hard limits (blocking).

        S17: the device's word only narrows. ``is_simulator`` comes from the URL; a device
        whose watchdog is missing or over 1.5 s is refused."""
        where = self.url or "the port"
        try:
            pending = self.submit(Identify(), "identify")
            self.wait(pending)
        except CommsLostError as error:
            raise IdentityError(
                f"no {self.protocol_label} answer from {where} ({error}); check that it is a "
                f"{self.protocol_label} device, switched on, connected and not in use by another "
                "program"
            ) from None
        info = pending.value
        if not isinstance(info, DeviceInfo):  # pragma: no cover - an engine contract bug
            raise IdentityError(f"{where}: the protocol engine returned no identity")
        watchdog = info.watchdog_ms
        limit = self.max_device_watchdog_ms
        if watchdog is None or watchdog > limit:
            said = "has no watchdog" if watchdog is None else f"has a {watchdog} ms watchdog"
            raise IdentityError(
                f"the device on {where} {said}: tens-control only drives devices that switch "
                f"their own output off within {limit} ms when the computer "
                "stops talking to them (set the device's watchdog to 1000 ms, or use another "
                "device)"
            )
        info = info.model_copy(update={"is_simulator": is_builtin_simulator(self.url)})
        self._info = info
        return info

    def request_configure(self, channel: int, settings: ChannelSettings) -> Pending:
        return self.submit(Configure(channel, settings), f"configure channel {channel}")

    def request_amplitude(self, channel: int, milliamps: float) -> Pending:
        return self.submit(
            SetAmplitude(channel, milliamps), f"amplitude {milliamps:g} mA on {channel}"
        )

    def request_start(self) -> Pending:
        return self.submit(StartOutput(), "start")

    def request_stop(self) -> Pending:
        """Every output to 0. Never raises: on a lost link a best-effort stop is still written
        (if the port is alive) and the returned pending carries a :class:`CommsLostError`."""
        try:
            return self.submit(StopOutput(), "stop")
        except DriverError as error:  # pragma: no cover - engines always accept a stop
            failed = Pending("stop", self.clock.now())
            failed.resolve(
                error if isinstance(error, CommsLostError) else CommsLostError(str(error))
            )
            return failed

    def load_signed_cap(self, max_ma: float, issued: int, signature: str) -> None:
        """Hand the device a cap signed by the clinic (TSP/2 §16), then identify again so that
        the cap it now enforces is one of its limits. Raises the device's refusal."""
        self.wait(self.submit(LoadSignedCap(max_ma, issued, signature), "signed cap"))
        self.identify()

    def request_status(self) -> Pending:
        """Ask the device for its state; the pending's ``value`` is the protocol's status."""
        return self.submit(QueryStatus(), "status")

    def wait(self, pending: Pending) -> None:
        """Block until the command is answered (resends included); raise its error."""
        if not self.clock.wait_until(pending.done, WAIT_BACKSTOP_S):
            raise CommsLostError(f"no acknowledgement for {pending.command}")
        pending.raise_for_error()

    def _teardown(self, reason: str) -> None:
        with self.locked():
            if self._closed:
                return
            self._apply(self._engine.close(reason, self.clock.now()))
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            port = self._port
            for pending in list(self._pendings.values()):
                pending.resolve(CommsLostError(f"{pending.command} not confirmed: {reason}"))
            self._pendings.clear()
        if isinstance(port, ClockedPort):
            port.set_data_callback(None)
        with contextlib.suppress(Exception):  # best effort: the port may already be gone
            if hasattr(port, "cancel_read"):
                port.cancel_read()
        with contextlib.suppress(Exception):
            port.close()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=1.0)
        exit_guard.unregister(self)
        self.clock.notify()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url or '?'}>"


__all__ = ["MAX_DEVICE_WATCHDOG_MS", "DeviceRuntime", "is_builtin_simulator"]
