"""The host driver for TSP/1 devices (docs/protocol.md).

:class:`TspDriver` turns the blocking/non-blocking :class:`~drivers.base.TensDriver` calls into
TSP frames and back:

* every command gets the next host sequence number (1-65535, wrapping to 1) and a
  :class:`~drivers.base.Pending` resolved by the ``ACK``/``ERR`` with the same number, or by
  the 1 s acknowledgement timeout;
* ``ERR CRC`` makes the driver resend the same bytes, at most twice per command;
* a keep-alive ``PING`` goes out on the clock whenever nothing was sent for ``wdms / 3``,
  whatever the caller is doing;
* the host comms watchdog: an acknowledgement timeout, no frame at all from the device for 1 s,
  or the port vanishing, emits one ``COMMS_LOST`` event, sends ``STOP`` (best effort) and leaves
  the driver disconnected: every later request raises :class:`~drivers.base.CommsLostError`
  until :meth:`TspDriver.reconnect`, which sends ``HELLO`` and ``STOP`` and never resumes
  stimulation;
* telemetry (``TEL``) and events (``EVT``) go to the report handlers.

Threads: with a :class:`~drivers.clock.RealClock`, bytes arrive on the link's reader thread and
timers run on the clock's thread; with a :class:`~drivers.clock.VirtualClock` everything runs in
clock callbacks. Neither ever waits: they update state, resolve pendings, write a frame at most,
and return. Only the public blocking methods (``identify``, ``configure`` ...) wait.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import serial

from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DeviceRejectedError,
    DriverError,
    ErrorCode,
    FramingError,
    IdentityError,
    Pending,
    PortError,
    TensDriver,
)
from drivers.clock import Clock, TimerHandle
from drivers.link import SerialLink
from drivers.transport import open_port
from drivers.tsp.codec import (
    DEFAULT_WATCHDOG_MS,
    PROTOCOL_MAJOR,
    Ack,
    Command,
    CommandValueError,
    Configure,
    DeviceStatus,
    Err,
    EventFrame,
    Hello,
    MessageError,
    Ping,
    SetAmplitude,
    Start,
    Status,
    Stop,
    TelemetryFrame,
    command_frame,
    decode_device_line,
    encode_command,
    parse_hello_ack,
    parse_status_ack,
)
from drivers.tsp.frame import MAX_SEQ, FrameDecoder

log = logging.getLogger(__name__)

AckParser = Callable[[Ack], DriverError | None]


@dataclass(eq=False)
class _Outstanding:
    seq: int
    wire: bytes
    text: str
    pending: Pending
    on_ack: AckParser | None
    timer: TimerHandle | None = None
    retransmits: int = 0


class TspDriver(TensDriver):
    """A TENS unit speaking TSP/1 over a serial port (or ``sim://tsp``, a pty, TCP)."""

    ack_timeout_s: float = 1.0
    """S8: a command unacknowledged this long means the link is lost."""
    silence_timeout_s: float = 1.0
    """S8: no frame at all from the device this long (while connected) means the link is lost."""
    max_retransmits: int = 2
    """Resends of one command after ``ERR CRC``."""
    """How long :meth:`close` waits for the ``STOP`` acknowledgement before closing the port."""

    # ------------------------------------------------------------------ construction

    def __init__(self, port: serial.Serial, clock: Clock, *, url: str | None = None) -> None:
        """Attach to an already-open port. Nothing is sent; see :meth:`connect`/:meth:`open`."""
        super().__init__(clock)
        self.url = url or str(getattr(port, "portstr", None) or getattr(port, "port", "") or "")
        self._lock = threading.RLock()
        """Guards the driver's state. Never held while writing or calling report handlers."""
        self._send_lock = threading.RLock()
        """Orders sequence numbers and writes, so frames go out in the order they are numbered."""
        self._info: DeviceInfo | None = None
        self._watchdog_ms = DEFAULT_WATCHDOG_MS
        self._next_seq = 1
        self._outstanding: dict[int, _Outstanding] = {}
        self._keepalive: TimerHandle | None = None
        self._silence: TimerHandle | None = None
        self._closed = False
        self._lost = False
        self._lost_detail = ""
        self.pings_sent = 0
        self.framing_errors = 0
        self._attach(port)

    def _attach(self, port: serial.Serial) -> None:
        now = self.clock.now()
        with self._lock:
            self._decoder = FrameDecoder()
            self._last_sent = now
            self._last_received = now
            self._closed = False
            self._lost = False
            self._lost_detail = ""
            self._link = SerialLink(
                port, self.clock, self._on_bytes, self._on_link_lost, name=f"tsp-reader {self.url}"
            )
        self._link.start()
        exit_guard.register(self)
        with self._lock:
            self._schedule_keepalive()
            self._schedule_silence_check()

    @classmethod
    def connect(cls, port: serial.Serial, clock: Clock, *, url: str | None = None) -> TspDriver:
        """Attach to an open port, identify the device and send ``STOP`` (S1: start at zero).

        On failure the port is closed and the error (:class:`IdentityError`,
        :class:`CommsLostError`) is raised.
        """
        driver = cls(port, clock, url=url)
        try:
            driver.identify()
            driver._stop_and_confirm()
        except BaseException:
            driver.close()
            raise
        return driver

    @classmethod
    def open(cls, url: str, clock: Clock) -> TspDriver:
        """Open ``url`` (``/dev/ttyUSB0``, ``COM3``, ``sim://tsp``, ``socket://…``), identify,
        stop. Raises :class:`~drivers.base.PortError` or :class:`IdentityError` with one clear
        sentence."""
        port = open_port(url, clock=clock)
        return cls.connect(port, clock, url=url)

    def reconnect(self, port: serial.Serial | None = None) -> DeviceInfo:
        """Re-open the port, identify again and send ``STOP``: every output is left at 0.

        Never resumes stimulation. ``port``: an already-open replacement; by default the port
        this driver used is opened again. Raises :class:`PortError` if it cannot be opened,
        :class:`IdentityError` if the device does not answer.
        """
        old = self._link.port
        self._teardown("reconnecting")
        if port is None:
            port = self._reopen(old)
        self._attach(port)
        try:
            info = self.identify()
            self._stop_and_confirm()
        except BaseException:
            self._teardown("reconnect failed")
            raise
        return info

    def _reopen(self, port: serial.Serial) -> serial.Serial:
        """Open the same port object again (same device path or URL, same settings; for
        ``sim://`` the same simulated device)."""
        where = self.url or "the port"
        try:
            if port.is_open:
                port.close()
            port.open()
        except (serial.SerialException, OSError, ValueError) as error:
            raise PortError(
                f"port {where} could not be opened again ({error}); check that the device is "
                "plugged in and switched on, then reconnect"
            ) from None
        return port

    # ------------------------------------------------------------------ state

    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            raise IdentityError("the device has not been identified yet (call identify())")
        return self._info

    @property
    def watchdog_ms(self) -> int:
        """The device watchdog period from ``HELLO`` (1000 ms until identified)."""
        return self._watchdog_ms

    @property
    def keepalive_interval_s(self) -> float:
        """``PING`` after this much silence from the host: a third of the device watchdog."""
        return self._watchdog_ms / 3000.0

    @property
    def connected(self) -> bool:
        return not self._closed and not self._lost and self._link.alive

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def port(self) -> serial.Serial:
        """The port in use (for ``sim://`` tests: ``driver.port.device`` is the simulator)."""
        return self._link.port

    # ------------------------------------------------------------------ sending

    def _check_usable(self) -> None:
        if self._closed:
            raise CommsLostError(f"the connection to {self.url or 'the device'} is closed")
        if self._lost:
            raise CommsLostError(
                f"the connection to {self.url or 'the device'} was lost ({self._lost_detail}); "
                "reconnect to continue"
            )

    def _allocate_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQ else seq + 1
        return seq

    def _send(self, command: Command, on_ack: AckParser | None = None) -> Pending:
        """Number, register and write one command. Raises before writing anything if the
        value cannot be encoded or the link is unusable; never waits for the reply."""
        with self._send_lock:
            with self._lock:
                self._check_usable()
                seq = self._allocate_seq()
                frame = command_frame(seq, command)
                wire = encode_command(seq, command)
                if isinstance(command, Stop):
                    wire = b"\n" + wire  # end any partial line so STOP cannot be merged into it
                text = " ".join((frame.verb, *frame.args))
                now = self.clock.now()
                pending = Pending(text, now + self.ack_timeout_s)
                out = _Outstanding(seq, wire, text, pending, on_ack)
                self._outstanding[seq] = out
                out.timer = self.clock.call_at(pending.deadline, lambda: self._ack_timeout(out))
                self._last_sent = now
            self._write(out)
        return pending

    def _write(self, out: _Outstanding) -> None:
        try:
            self._link.write(out.wire)
        except CommsLostError as error:
            # the link reported the loss through _on_link_lost (which resolves everything)
            with self._lock:
                self._outstanding.pop(out.seq, None)
                if out.timer is not None:
                    out.timer.cancel()
            out.pending.resolve(CommsLostError(f"could not send {out.text}: {error}"))
            self.clock.notify()

    def _write_untracked_stop(self) -> None:
        """Best-effort ``STOP`` when the driver no longer tracks replies (lost or closing)."""
        if not self._link.alive:
            return
        with self._send_lock:
            with self._lock:
                seq = self._allocate_seq()
                self._last_sent = self.clock.now()
            with contextlib.suppress(DriverError):
                self._link.write(b"\n" + encode_command(seq, Stop()))

    # ------------------------------------------------------------------ receiving

    def _on_bytes(self, data: bytes) -> None:
        for line in self._decoder.lines(data):
            not_understood: MessageError | None = None
            try:
                if isinstance(line, FramingError):
                    raise line
                message = decode_device_line(line)
            except MessageError as error:  # a valid frame all the same: it feeds the watchdog
                not_understood = error
            except FramingError as error:
                self.framing_errors += 1
                log.debug("%s: bad line from the device: %s", self.url, error)
                continue
            with self._lock:
                if self._closed or self._lost:
                    return
                self._last_received = self.clock.now()
            if not_understood is not None:
                log.info(
                    "%s: ignoring a frame this host does not understand: %s",
                    self.url,
                    not_understood,
                )
                continue
            if isinstance(message, TelemetryFrame):  # the most frequent first
                self._emit(message.to_report(self.clock.now()))
            elif isinstance(message, Ack):
                self._on_ack(message)
            elif isinstance(message, Err):
                self._on_err(message)
            elif isinstance(message, EventFrame):
                self._on_event(message)
        self.clock.notify()

    def _take(self, seq: int) -> _Outstanding | None:
        with self._lock:
            out = self._outstanding.pop(seq, None)
            if out is not None and out.timer is not None:
                out.timer.cancel()
            return out

    def _on_ack(self, ack: Ack) -> None:
        out = self._take(ack.seq)
        if out is None:
            log.debug("%s: acknowledgement for no waiting command (seq %d)", self.url, ack.seq)
            return
        error = out.on_ack(ack) if out.on_ack is not None else None
        out.pending.resolve(error)

    def _on_err(self, err: Err) -> None:
        if err.code is ErrorCode.CRC:
            self._retransmit(err.seq)
            return
        out = self._take(err.seq)
        if out is None:
            log.debug("%s: error reply for no waiting command (seq %d)", self.url, err.seq)
            return
        out.pending.resolve(DeviceRejectedError(err.code, out.text, err.detail))

    def _retransmit(self, seq: int) -> None:
        with self._lock:
            out = self._outstanding.get(seq)
            if out is None and self._outstanding:
                # the damaged line's number was unreadable: the device answers in order, so it
                # was our oldest unanswered command
                out = next(iter(self._outstanding.values()))
            if out is None:
                log.debug("%s: ERR CRC with no command waiting", self.url)
                return
            if out.retransmits >= self.max_retransmits:
                exhausted = True
            else:
                exhausted = False
                out.retransmits += 1
                if out.timer is not None:
                    out.timer.cancel()
                now = self.clock.now()
                out.pending.deadline = now + self.ack_timeout_s
                out.timer = self.clock.call_at(out.pending.deadline, lambda: self._ack_timeout(out))
                self._last_sent = now
        if exhausted:
            self._take(out.seq)
            detail = f"{out.text} arrived damaged {self.max_retransmits + 1} times"
            out.pending.resolve(CommsLostError(f"the line to the device is unreliable: {detail}"))
            self._comms_lost(detail)
            return
        log.info("%s: resending %s after ERR CRC (%d)", self.url, out.text, out.retransmits)
        with self._send_lock:
            self._write(out)

    def _on_event(self, event: EventFrame) -> None:
        self._emit(event.to_report(self.clock.now()))

    # ------------------------------------------------------------------ timers

    def _schedule_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        due = self._last_sent + self.keepalive_interval_s
        self._keepalive = self.clock.call_at(due, self._keepalive_due)

    def _keepalive_due(self) -> None:
        with self._lock:
            self._keepalive = None
            if self._closed or self._lost:
                return
            quiet = self.clock.now() - self._last_sent
            if quiet + 1e-9 < self.keepalive_interval_s:
                self._schedule_keepalive()
                return
        with contextlib.suppress(DriverError):
            self._send(Ping())
            self.pings_sent += 1
        with self._lock:
            if not (self._closed or self._lost):
                self._schedule_keepalive()

    def _schedule_silence_check(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
        due = self._last_received + self.silence_timeout_s
        self._silence = self.clock.call_at(due, self._silence_due)

    def _silence_due(self) -> None:
        with self._lock:
            self._silence = None
            if self._closed or self._lost:
                return
            quiet = self.clock.now() - self._last_received
            if quiet + 1e-9 < self.silence_timeout_s:
                self._schedule_silence_check()
                return
        self._comms_lost(f"no frame from the device for {self.silence_timeout_s:g} s")

    def _ack_timeout(self, out: _Outstanding) -> None:
        with self._lock:
            if self._outstanding.get(out.seq) is not out:
                return
        self._take(out.seq)
        detail = f"no acknowledgement for {out.text} within {self.ack_timeout_s:g} s"
        out.pending.resolve(CommsLostError(detail))
        self._comms_lost(detail)

    # ------------------------------------------------------------------ comms loss

    def _on_link_lost(self, detail: str) -> None:
        self._comms_lost(detail)

    def _comms_lost(self, detail: str) -> None:
        """S8: report once, stop (best effort), refuse further commands. Never waits."""
        with self._lock:
            if self._closed or self._lost:
                return
            self._lost = True
            self._lost_detail = detail
            outstanding = list(self._outstanding.values())
            self._outstanding.clear()
            self._cancel_timers()
        log.warning("%s: comms lost: %s", self.url, detail)
        for out in outstanding:
            if out.timer is not None:
                out.timer.cancel()
            out.pending.resolve(CommsLostError(f"{out.text} not confirmed: comms lost ({detail})"))
        self._write_untracked_stop()
        self._emit(DeviceEvent(self.clock.now(), DeviceEventKind.COMMS_LOST, None, detail))
        self.clock.notify()

    def _cancel_timers(self) -> None:
        for timer in (self._keepalive, self._silence):
            if timer is not None:
                timer.cancel()
        self._keepalive = None
        self._silence = None

    # ------------------------------------------------------------------ commands

    def wait(self, pending: Pending) -> None:
        """Block until the command is answered (retransmissions included); raise its error.

        The driver's own timers always resolve a command (acknowledgement, error, timeout or
        comms loss); the clock wait below is only a backstop.
        """
        limit = self.ack_timeout_s * (self.max_retransmits + 1) + 0.5
        if not self.clock.wait_until(pending.done, limit):
            raise CommsLostError(f"no acknowledgement for {pending.command}")
        pending.raise_for_error()

    def _on_hello(self, ack: Ack) -> DriverError | None:
        try:
            identity = parse_hello_ack(ack)
        except MessageError as error:
            return IdentityError(
                f"the device on {self.url or 'the port'} gave an invalid TSP identity: "
                f"{error.detail}"
            )
        if identity.major != PROTOCOL_MAJOR:
            return IdentityError(
                f"the device on {self.url or 'the port'} answered in TSP/{identity.major}; "
                f"this program speaks TSP/{PROTOCOL_MAJOR}"
            )
        with self._lock:
            self._info = identity.info
            self._watchdog_ms = identity.watchdog_ms
            if not (self._closed or self._lost):
                self._schedule_keepalive()
        return None

    def identify(self) -> DeviceInfo:
        """``HELLO``: read the device's identity and hard limits (blocking)."""
        where = self.url or "the port"
        try:
            self.wait(self._send(Hello(PROTOCOL_MAJOR), self._on_hello))
        except DeviceRejectedError as error:
            if error.code is ErrorCode.VERSION:
                raise IdentityError(
                    f"the device on {where} does not speak TSP/{PROTOCOL_MAJOR} "
                    f"(it speaks major version {error.detail or 'unknown'}); "
                    "update the device firmware or this program"
                ) from None
            raise IdentityError(f"the device on {where} refused HELLO: {error}") from None
        except CommsLostError as error:
            raise IdentityError(
                f"no TSP answer from {where} ({error}); check that it is a TSP device, "
                "switched on and connected"
            ) from None
        return self.info

    def _stop_and_confirm(self) -> None:
        self.wait(self.request_stop())

    def _check_channel(self, channel: int) -> None:
        if self._info is not None and not 1 <= channel <= self._info.channels:
            raise CommandValueError(
                f"channel {channel} does not exist: the device has channels 1-{self._info.channels}"
            )

    def request_configure(self, channel: int, settings: ChannelSettings) -> Pending:
        self._check_channel(channel)
        return self._send(Configure(channel, settings))

    def request_amplitude(self, channel: int, milliamps: float) -> Pending:
        self._check_channel(channel)
        if not math.isfinite(milliamps) or milliamps < 0:
            raise CommandValueError(f"amplitude {milliamps!r} mA is not a current (>= 0)")
        return self._send(SetAmplitude(channel, milliamps))

    def request_start(self) -> Pending:
        return self._send(Start())

    def request_ping(self) -> Pending:
        return self._send(Ping())

    def request_status(self) -> tuple[Pending, Callable[[], DeviceStatus]]:
        """Send ``STATUS``; returns the pending and a getter for the parsed reply."""
        box: list[DeviceStatus] = []

        def parse(ack: Ack) -> DriverError | None:
            try:
                box.append(parse_status_ack(ack))
            except MessageError as error:
                return error
            return None

        pending = self._send(Status(), parse)

        def result() -> DeviceStatus:
            pending.raise_for_error()
            if not box:
                raise CommsLostError("STATUS not answered yet")
            return box[0]

        return pending, result

    def status(self) -> DeviceStatus:
        """``STATUS``: state, battery and every channel's amplitude (blocking)."""
        pending, result = self.request_status()
        self.wait(pending)
        return result()

    def request_stop(self) -> Pending:
        """Every output to 0. The ``STOP`` frame is written before this returns.

        Never raises: when the link is lost or closed, a best-effort ``STOP`` is still written if
        the port is alive, and the returned pending carries a :class:`CommsLostError`.
        """
        try:
            return self._send(Stop())
        except DriverError as error:
            self._write_untracked_stop()
            failed = Pending("STOP", self.clock.now())
            failed.resolve(
                error if isinstance(error, CommsLostError) else CommsLostError(str(error))
            )
            return failed

    # ------------------------------------------------------------------ closing

    def _teardown(self, reason: str) -> None:
        with self._lock:
            self._closed = True
            outstanding = list(self._outstanding.values())
            self._outstanding.clear()
            self._cancel_timers()
        for out in outstanding:
            if out.timer is not None:
                out.timer.cancel()
            out.pending.resolve(CommsLostError(f"{out.text} not confirmed: {reason}"))
        self._link.close()
        exit_guard.unregister(self)
        self.clock.notify()

    def __enter__(self) -> TspDriver:
        return self
