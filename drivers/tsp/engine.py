"""The TSP protocol engine (docs/protocol.md), sans-I/O: bytes and times in, bytes, events and a
deadline out. The life cycle it shares with every protocol (tickets, S8 timeouts, S14 redundant
zeroing, keep-alive) is :class:`drivers.engine.Engine`; this module is the TSP wire:

* every command gets the next host sequence number (1-65535, wrapping to 1); the ``ACK``/``ERR``
  with the same number answers it;
* ``ERR CRC`` makes the engine resend the same bytes, at most twice per command; an unanswered
  command is sent again (same bytes, same number) because a TSP device answers a repeat of a
  command it already executed from its reply cache, without executing it again;
* zeroing commands (``STOP``, ``AMP <ch> 0`` and every decrease) go out twice at once, each
  ``STOP`` after a bare LF (so that a half-written earlier line cannot swallow it);
* ``PING`` whenever nothing was sent for ``wdms / 3``; no frame at all from the device for 1 s
  is comms loss (telemetry and the keep-alive's answers arrive far more often);
* ``TEL`` and ``EVT`` become :class:`~drivers.base.Telemetry` and
  :class:`~drivers.base.DeviceEvent` reports. What is TSP about them (the ``estop`` fault code of
  a device's own emergency switch) is translated here, so the governor knows no TSP.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable

from drivers.base import (
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DeviceRejectedError,
    DriverError,
    ErrorCode,
    FramingError,
    IdentityError,
)
from drivers.engine import (
    Configure,
    DeviceCommand,
    Engine,
    Identify,
    InFlight,
    LoadSignedCap,
    Ping,
    QueryStatus,
    SetAmplitude,
    StartOutput,
    StopOutput,
)
from drivers.tsp import codec
from drivers.tsp.codec import (
    DEFAULT_WATCHDOG_MS,
    PROTOCOL_MAJOR,
    Ack,
    CommandValueError,
    Err,
    EventFrame,
    MessageError,
    TelemetryFrame,
)
from drivers.tsp.frame import MAX_SEQ, FrameDecoder

log = logging.getLogger(__name__)


class TspEngine(Engine):
    """One TSP link (a new engine for every connection)."""

    silence_timeout_s = 1.0
    max_crc_retransmits = 2
    """Resends of one command after ``ERR CRC``."""

    def __init__(self, url: str = "") -> None:
        super().__init__()
        self.url = url
        self._decoder = FrameDecoder()
        self._next_seq = 1
        self.watchdog_ms = DEFAULT_WATCHDOG_MS
        self.info: DeviceInfo | None = None
        self._levels: dict[int, float] = {}
        """Per channel: the amplitude most recently sent (what a new value is a decrease of)."""
        self._crc_resends: dict[int, int] = {}
        self._newest: dict[int, int] = {}
        """Per channel: the send order of the newest command that set its amplitude."""
        self._newest_output = 0
        """The send order of the newest START or STOP (it sets every channel)."""
        self.pings_sent = 0
        self.framing_errors = 0

    @property
    def keepalive_s(self) -> float:
        """``PING`` after this much silence from the host: a third of the device watchdog."""
        return self.watchdog_ms / 3000.0

    def _where(self) -> str:
        return self.url or "the port"

    # ------------------------------------------------------------------ sending
    def _seq(self) -> int:
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQ else seq + 1
        return seq

    def _stop_frame(self) -> bytes:
        return b"\n" + codec.encode_command(self._seq(), codec.Stop())

    def _keepalive_frame(self) -> bytes:
        self.pings_sent += 1
        seq = self._seq()
        frame = codec.encode_command(seq, codec.Ping())
        # tracked like any command: its answer proves the link, its absence is comms loss
        self._flight[seq] = InFlight("PING", frame, self.last_tx, self.last_tx + self.ack_timeout_s)
        return frame

    def _check_channel(self, channel: int) -> None:
        if self.info is not None and not 1 <= channel <= self.info.channels:
            raise CommandValueError(
                f"channel {channel} does not exist: the device has channels 1-{self.info.channels}"
            )

    def _submit(self, ticket: int, command: DeviceCommand, now: float) -> None:
        urgent = False
        prefix = b""
        if isinstance(command, Identify):
            message: codec.Command = codec.Hello(PROTOCOL_MAJOR)
        elif isinstance(command, Configure):
            self._check_channel(command.channel)
            message = codec.Configure(command.channel, command.settings)
        elif isinstance(command, SetAmplitude):
            self._check_channel(command.channel)
            ma = command.milliamps
            if not math.isfinite(ma) or ma < 0:
                raise CommandValueError(f"amplitude {ma!r} mA is not a current (>= 0)")
            message = codec.SetAmplitude(command.channel, ma)
            urgent = ma == 0 or ma < self._levels.get(command.channel, 0.0)
        elif isinstance(command, StartOutput):
            message = codec.Start()
        elif isinstance(command, StopOutput):
            message = codec.Stop()
            urgent = True
            prefix = b"\n"  # end any partial line so STOP cannot be merged into it
        elif isinstance(command, QueryStatus):
            message = codec.Status()
        elif isinstance(command, Ping):
            message = codec.Ping()
        elif isinstance(command, LoadSignedCap):
            message = codec.SignedCap(command.max_ma, command.issued, command.signature)
        else:  # pragma: no cover - DeviceCommand is closed
            raise TypeError(command)
        seq = self._seq()
        wire = prefix + codec.encode_command(seq, message)  # raises CommandValueError: nothing sent
        frame = codec.command_frame(seq, message)
        name = " ".join((frame.verb, *frame.args))
        if isinstance(command, SetAmplitude):
            self._levels[command.channel] = command.milliamps
        elif isinstance(command, StartOutput | StopOutput):
            self._levels.clear()
        elif isinstance(command, Configure):
            self._levels[command.channel] = 0.0
        flight = self._send(seq, name, wire, now, ticket=ticket, urgent=urgent, context=command)
        if isinstance(command, SetAmplitude | Configure):
            self._newest[command.channel] = flight.order
        elif isinstance(command, StartOutput | StopOutput):
            self._newest_output = flight.order

    def _current(self, flight: InFlight) -> bool:
        """No newer command has set what ``flight`` sets (its channel, or every channel)."""
        command = flight.context
        if isinstance(command, SetAmplitude | Configure):
            return (
                self._newest.get(command.channel, 0) <= flight.order
                and self._newest_output <= flight.order
            )
        if isinstance(command, StartOutput | StopOutput):
            return self._newest_output <= flight.order
        return True

    def _may_resend(self, key: Hashable, flight: InFlight) -> bool:
        # A TSP device answers a byte-identical repeat of a command it executed from its reply
        # cache, without executing it again (docs/protocol.md §7). Even so, a command that a
        # newer one has overtaken is never sent again: if the device had forgotten it, the old
        # value would come back.
        return flight.ticket is not None and self._current(flight)

    def _overtaken(self, answered: InFlight) -> None:
        """The device answers in order: an answer to ``answered`` means every older command's
        answer was lost. Those a newer command has overtaken are done (what the newer one set
        stands); the others are still sent again until answered."""
        for key, flight in self._in_flight():
            if flight.order >= answered.order:
                break
            if not self._current(flight):
                self._answered(key)
                self._complete(flight.ticket)

    # ------------------------------------------------------------------ receiving
    def _receive(self, data: bytes, now: float) -> None:
        for line in self._decoder.lines(data):
            not_understood: MessageError | None = None
            try:
                if isinstance(line, FramingError):
                    raise line
                message = codec.decode_device_line(line)
            except MessageError as error:  # a valid frame all the same: it proves the link
                not_understood = error
            except FramingError as error:
                self.framing_errors += 1
                log.debug("%s: bad line from the device: %s", self.url, error)
                continue
            self.last_rx = now
            if not_understood is not None:
                log.info(
                    "%s: ignoring a frame this host does not understand: %s",
                    self.url,
                    not_understood,
                )
                continue
            if isinstance(message, TelemetryFrame):  # the most frequent first
                self._report(message.to_report(now))
            elif isinstance(message, Ack):
                self._on_ack(message)
            elif isinstance(message, Err):
                self._on_err(message, now)
            elif isinstance(message, EventFrame):
                self._on_event(message, now)
            if self.lost is not None:
                return

    def _on_ack(self, ack: Ack) -> None:
        flight = self._answered(ack.seq)
        self._crc_resends.pop(ack.seq, None)
        if flight is None:
            log.debug("%s: acknowledgement for no waiting command (seq %d)", self.url, ack.seq)
            return
        self._overtaken(flight)
        result: object = None
        if isinstance(flight.context, Identify):
            result = self._on_hello(ack)
        elif isinstance(flight.context, QueryStatus):
            result = _parse_status(ack)
        if isinstance(result, DriverError):
            self._complete(flight.ticket, result)
        else:
            self._complete(flight.ticket, None, result)

    def _on_err(self, err: Err, now: float) -> None:
        if err.code is ErrorCode.CRC:
            self._retransmit(err.seq, now)
            return
        flight = self._answered(err.seq)
        self._crc_resends.pop(err.seq, None)
        if flight is None:
            log.debug("%s: error reply for no waiting command (seq %d)", self.url, err.seq)
            return
        self._overtaken(flight)
        if isinstance(flight.context, Identify) and err.code is ErrorCode.VERSION:
            self._complete(
                flight.ticket,
                IdentityError(
                    f"the device on {self._where()} does not speak TSP/{PROTOCOL_MAJOR} (it "
                    f"speaks major version {err.detail or 'unknown'}); update the device "
                    "firmware or this program"
                ),
            )
            return
        self._complete(flight.ticket, DeviceRejectedError(err.code, flight.name, err.detail))

    def _retransmit(self, seq: int, now: float) -> None:
        key: Hashable = seq
        flight = self._flight.get(seq)
        if flight is None:
            waiting = self._in_flight()
            if not waiting:
                log.debug("%s: ERR CRC with no command waiting", self.url)
                return
            # the damaged line's number was unreadable: the device answers in order, so it was
            # our oldest unanswered command
            key, flight = waiting[0]
        assert isinstance(key, int)
        done = self._crc_resends.get(key, 0)
        if done >= self.max_crc_retransmits:
            self._lose(
                f"the line to the device is unreliable: {flight.name} arrived damaged "
                f"{self.max_crc_retransmits + 1} times",
                now,
            )
            return
        self._crc_resends[key] = done + 1
        log.info("%s: resending %s after ERR CRC (%d)", self.url, flight.name, done + 1)
        flight.deadline = now + self.ack_timeout_s
        self._write(flight.wire, now)

    def _on_event(self, event: EventFrame, now: float) -> None:
        report = event.to_report(now)
        if report.kind is DeviceEventKind.FAULT and report.detail.lower() == "estop":
            # TSP reports the device's own emergency switch as EVT FAULT estop
            report = DeviceEvent(
                now, DeviceEventKind.EMERGENCY_SWITCH, report.channel, report.detail
            )
        self._report(report)

    # ------------------------------------------------------------------ identity
    def _on_hello(self, ack: Ack) -> DeviceInfo | DriverError:
        try:
            identity = codec.parse_hello_ack(ack)
        except MessageError as error:
            return IdentityError(
                f"the device on {self._where()} gave an invalid TSP identity: {error.detail}"
            )
        if identity.major != PROTOCOL_MAJOR:
            return IdentityError(
                f"the device on {self._where()} answered in TSP/{identity.major}; this program "
                f"speaks TSP/{PROTOCOL_MAJOR}"
            )
        self.watchdog_ms = identity.watchdog_ms
        info = identity.info
        cap = info.signed_cap_ma
        if cap is not None and info.limits is not None and cap < info.limits.max_amplitude_ma:
            # a cap the device enforces itself is one more (narrower) limit of the device
            info = info.model_copy(
                update={"limits": info.limits.model_copy(update={"max_amplitude_ma": cap})}
            )
        self.info = info
        return info


def _parse_status(ack: Ack) -> codec.DeviceStatus | DriverError:
    try:
        return codec.parse_status_ack(ack)
    except MessageError as error:
        return error
