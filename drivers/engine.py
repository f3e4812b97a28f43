"""Sans-I/O protocol engines: the contract, and the life cycle every protocol shares.

An engine is a whole protocol minus the I/O. It is given the bytes that arrived and the current
time, and answers with the bytes to send, what happened (typed events) and when it next wants
to be woken (its next deadline). It never reads a port, reads a clock, sleeps or starts a
thread; :class:`~drivers.runtime.DeviceRuntime` does those, the same way for every protocol::

    ticket, out = engine.submit(SetAmplitude(1, 12.5), now)
    out = engine.feed(data, now)        # data may be b"": time passed, run what is due
    out.data, out.events, out.deadline

What every protocol shares lives here, in :class:`Engine`:

* **Tickets.** Every submitted command completes exactly once with a :class:`Completed` event:
  acknowledged, refused by the device, or failed (comms lost). Nothing is left hanging.
* **S8.** A command unanswered for :attr:`Engine.ack_timeout_s` (1 s), or a device silent for
  its silence period, means the link is lost: reported once (``COMMS_LOST``), a best-effort stop
  frame goes out, every command in flight fails, every later command fails at once (a stop is
  still written, best effort).
* **S14.** A zeroing command (stop, a channel to 0, any decrease) goes out
  :attr:`Engine.urgent_copies` times at once, as separate frames, and again every
  :attr:`Engine.urgent_resend_s` until it is answered. One frame lost, garbled, duplicated or
  delayed, in either direction, cannot hold the output up. Other commands are sent again after
  :attr:`Engine.resend_s` without an answer, where the protocol says a repeat is safe.
* **Keep-alive.** A protocol frame whenever nothing was sent for the keep-alive period.

A protocol (``drivers/tsp/engine.py``, ``drivers/sciencemode2/engine.py``) supplies the wire
format: how a command is encoded, how replies are matched, what its keep-alive and stop frames
are, and what it does with the device's own reports.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DriverError,
    Telemetry,
)

_EPS = 1e-9

# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Identify:
    """Handshake; completes with the device's :class:`~drivers.base.DeviceInfo`."""


@dataclass(frozen=True, slots=True)
class Configure:
    channel: int
    settings: ChannelSettings


@dataclass(frozen=True, slots=True)
class SetAmplitude:
    channel: int
    milliamps: float


@dataclass(frozen=True, slots=True)
class StartOutput:
    """Output on, every amplitude at 0."""


@dataclass(frozen=True, slots=True)
class StopOutput:
    """Every output to 0, output off. Always allowed; idempotent."""


@dataclass(frozen=True, slots=True)
class QueryStatus:
    """Ask the device for its state; completes with the protocol's status value."""


@dataclass(frozen=True, slots=True)
class Ping:
    """A command that changes nothing and is answered (a round trip)."""


@dataclass(frozen=True, slots=True)
class LoadSignedCap:
    """Hand the device a cap signed by the clinic (TSP/2 §16); a protocol without the feature
    refuses it."""

    max_ma: float
    issued: int
    signature: str


DeviceCommand = (
    Identify
    | Configure
    | SetAmplitude
    | StartOutput
    | StopOutput
    | QueryStatus
    | Ping
    | LoadSignedCap
)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Completed:
    """A submitted command is finished: ``error`` None means the device did it."""

    ticket: int
    error: DriverError | None = None
    value: object = None


EngineEvent = Telemetry | DeviceEvent | Completed


class Output(NamedTuple):
    """What one call into an engine produced."""

    data: bytes
    """Bytes to write to the port now, in this order."""
    events: tuple[EngineEvent, ...]
    deadline: float | None
    """Call :meth:`Engine.feed` (with no data) at this time at the latest."""


@dataclass(eq=False, slots=True)
class InFlight:
    """One command on the wire, awaiting its answer."""

    name: str
    """For people: ``AMP 1 12.5``, ``StopChannelListMode``."""
    wire: bytes
    sent_at: float
    deadline: float
    """When no answer by now, the link is lost (S8)."""
    ticket: int | None = None
    """The ticket it completes (None: one step of a longer command)."""
    urgent: bool = False
    resend_at: float | None = None
    resends: int = 0
    order: int = 0
    """Position in the send order (devices answer in that order)."""
    context: Any = field(default=None, repr=False)
    """The protocol's own record of what this command is (for handling its answer)."""


# --------------------------------------------------------------------------- the engine


class Engine(ABC):
    """The shared life cycle of a protocol engine (see the module docstring)."""

    ack_timeout_s: float = 1.0
    """S8: a command unanswered this long means the link is lost."""
    silence_timeout_s: float | None = None
    """S8: no frame at all from the device this long means the link is lost (None: the
    protocol does not promise regular frames; its polls and their timeouts cover it)."""
    urgent_copies: int = 2
    """S14: a zeroing command goes out this many times at once, as separate frames."""
    urgent_resend_s: float = 0.02
    """S14: and again this often until it is answered (within :attr:`ack_timeout_s`)."""
    resend_s: float = 0.25
    """Other commands: sent again after this long without an answer, where that is safe."""
    max_resends: int = 2

    def __init__(self) -> None:
        self._out = bytearray()
        self._events: list[EngineEvent] = []
        self._flight: dict[Hashable, InFlight] = {}
        self._tickets = itertools.count(1)
        self._order = itertools.count(1)
        self.now = 0.0
        """The time of the call being handled (every entry point is given it)."""
        self.lost: str | None = None
        """Why the link was lost, once it is (never reset: a new link is a new engine)."""
        self.closed = False
        self.opened_at: float | None = None
        self.last_tx = -math.inf
        self.last_rx = -math.inf
        self._wake: float | None = None
        """The next deadline, cached: it is a lower bound until something is sent (answers,
        silence and keep-alive only move deadlines later), so it is recomputed only then."""

    # ------------------------------------------------------------------ the contract
    def open(self, now: float) -> Output:
        """The port is open: start the protocol (timers run from now)."""
        self.now = now
        self.opened_at = now
        self.last_tx = self.last_rx = now
        self._opened(now)
        return self._finish(now)

    def submit(self, command: DeviceCommand, now: float) -> tuple[int, Output]:
        """Start ``command``; its :class:`Completed` event comes in this or a later output.

        Raises :class:`~drivers.base.DriverError` (and sends nothing, changes nothing) when the
        command is refused on the host: a value the wire cannot carry, a state the protocol
        does not allow, or a lost link -- except :class:`StopOutput`, which is always accepted
        (on a lost link it writes a best-effort stop frame and completes with the error).
        """
        self.now = now
        self._wake = None
        ticket = next(self._tickets)
        if self.lost is not None or self.closed:
            if not isinstance(command, StopOutput):
                raise self._unusable()
            self._write(self._stop_frame(), now)
            self._complete(ticket, self._unusable())
            return ticket, self._finish(now)
        self._submit(ticket, command, now)
        return ticket, self._finish(now)

    def feed(self, data: bytes, now: float) -> Output:
        """Bytes from the device (or none: time passed). Runs what is due first."""
        self.now = now
        if self.lost is None and not self.closed:
            wake = self._wake
            if wake is None or now >= wake - _EPS:
                self._run_timers(now)
            if data and self.lost is None:
                self._receive(data, now)
        return self._finish(now)

    def port_lost(self, detail: str, now: float) -> Output:
        """The port failed (unplugged, a read or write error)."""
        self.now = now
        self._lose(detail, now, send_stop=False)
        return self._finish(now)

    def close(self, reason: str, now: float) -> Output:
        """The port is being closed: every command in flight fails with ``reason``."""
        self.now = now
        if not self.closed:
            self.closed = True
            self._fail_all(CommsLostError, f"not confirmed: {reason}")
        return self._finish(now)

    # ------------------------------------------------------------------ for protocols
    @property
    def keepalive_s(self) -> float | None:
        """Send the keep-alive frame whenever nothing was sent this long (None: none yet)."""
        return None

    @abstractmethod
    def _submit(self, ticket: int, command: DeviceCommand, now: float) -> None:
        """Encode and send ``command`` (``_send``), or raise DriverError having sent nothing."""

    @abstractmethod
    def _receive(self, data: bytes, now: float) -> None:
        """Decode ``data``; complete commands, report telemetry and events."""

    @abstractmethod
    def _stop_frame(self) -> bytes:
        """A self-contained stop frame needing no answer tracking (best effort on loss)."""

    @abstractmethod
    def _keepalive_frame(self) -> bytes: ...

    def _opened(self, now: float) -> None:  # noqa: B027 - optional hook
        """The port was opened (a protocol may start its handshake timers)."""

    def _may_resend(self, key: Hashable, flight: InFlight) -> bool:
        """Is sending ``flight`` again safe and useful? By default only a zeroing command is
        (it is idempotent); a protocol may allow more."""
        return flight.urgent

    def _resend(self, key: Hashable, flight: InFlight, now: float) -> None:
        """Send ``flight`` again (by default the same bytes)."""
        self._write(flight.wire, now)

    def _due(self, now: float) -> None:  # noqa: B027 - optional hook
        """The protocol's own timers (polls, handshakes)."""

    def _protocol_deadline(self) -> float | None:
        return None

    def _lost_cleanup(self, why: str) -> None:  # noqa: B027 - optional hook
        """Forget protocol state after the link was lost or closed (and fail, with ``why``,
        any command of its own that is not in flight on the wire)."""

    def _unusable(self) -> CommsLostError:
        if self.closed:
            return CommsLostError("the connection to the device is closed")
        return CommsLostError(
            f"the connection to the device was lost ({self.lost}); reconnect to continue"
        )

    # ------------------------------------------------------------------ building outputs
    def _write(self, data: bytes, now: float) -> None:
        if data:
            self._out += data
            self.last_tx = now
            self._wake = None

    def _report(self, event: Telemetry | DeviceEvent) -> None:
        self._events.append(event)

    def _complete(
        self, ticket: int | None, error: DriverError | None = None, value: object = None
    ) -> None:
        if ticket is not None:
            self._events.append(Completed(ticket, error, value))

    def _send(
        self,
        key: Hashable,
        name: str,
        wire: bytes,
        now: float,
        *,
        ticket: int | None,
        urgent: bool = False,
        context: Any = None,
    ) -> InFlight:
        """Write ``wire`` (urgent: several copies) and wait for its answer under ``key``."""
        resend_at: float | None = None
        if urgent:
            resend_at = now + self.urgent_resend_s
        elif self.max_resends > 0:
            resend_at = now + self.resend_s
        flight = InFlight(
            name,
            wire,
            now,
            now + self.ack_timeout_s,
            ticket,
            urgent,
            resend_at,
            order=next(self._order),
            context=context,
        )
        self._flight[key] = flight
        for _ in range(self.urgent_copies if urgent else 1):
            self._write(wire, now)
        return flight

    def _answered(self, key: Hashable) -> InFlight | None:
        """The answer for ``key`` arrived: stop waiting for it (None: nothing waits)."""
        return self._flight.pop(key, None)

    def _in_flight(self) -> list[tuple[Hashable, InFlight]]:
        """Every command awaiting an answer, oldest first."""
        return sorted(self._flight.items(), key=lambda item: item[1].order)

    def _finish(self, now: float) -> Output:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
        else:
            data = b""
        if self._events:
            events = tuple(self._events)
            self._events.clear()
        else:
            events = ()
        if self.lost or self.closed:
            return Output(data, events, None)
        wake = self._wake
        if wake is None:
            wake = self._wake = self._deadline()
        return Output(data, events, wake)

    # ------------------------------------------------------------------ timers
    def _deadline(self) -> float | None:
        times: list[float] = []
        for flight in self._flight.values():
            times.append(flight.deadline)
            if flight.resend_at is not None:
                times.append(flight.resend_at)
        keepalive = self.keepalive_s
        if keepalive is not None:
            times.append(self.last_tx + keepalive)
        if self.silence_timeout_s is not None:
            times.append(self.last_rx + self.silence_timeout_s)
        own = self._protocol_deadline()
        if own is not None:
            times.append(own)
        return min(times) if times else None

    def _run_timers(self, now: float) -> None:
        self._wake = None
        for key, flight in list(self._flight.items()):
            if self._flight.get(key) is not flight:
                continue
            if now >= flight.deadline - _EPS:
                self._lose(
                    f"no acknowledgement for {flight.name} within {self.ack_timeout_s:g} s", now
                )
                return
            if flight.resend_at is not None and now >= flight.resend_at - _EPS:
                if (flight.urgent or flight.resends < self.max_resends) and self._may_resend(
                    key, flight
                ):
                    flight.resends += 1
                    self._resend(key, flight, now)
                    flight.resend_at = now + (
                        self.urgent_resend_s if flight.urgent else self.resend_s
                    )
                else:
                    flight.resend_at = None
        if (
            self.silence_timeout_s is not None
            and now >= self.last_rx + self.silence_timeout_s - _EPS
        ):
            self._lose(f"no frame from the device for {self.silence_timeout_s:g} s", now)
            return
        self._due(now)
        keepalive = self.keepalive_s
        if self.lost is None and keepalive is not None and now >= self.last_tx + keepalive - _EPS:
            self._write(self._keepalive_frame(), now)

    # ------------------------------------------------------------------ comms loss
    def _lose(self, detail: str, now: float, *, send_stop: bool = True) -> None:
        """S8: report once, stop (best effort), fail everything in flight."""
        if self.lost is not None or self.closed:
            return
        self.lost = detail
        if send_stop:
            self._write(self._stop_frame(), now)
        self._report(DeviceEvent(now, DeviceEventKind.COMMS_LOST, None, detail))
        self._fail_all(CommsLostError, f"not confirmed: comms lost ({detail})")

    def _fail_all(self, error: type[DriverError], why: str) -> None:
        flights = self._in_flight()
        self._flight.clear()
        for _, flight in flights:
            self._failed(flight, error(f"{flight.name} {why}"))
        self._lost_cleanup(why)

    def _failed(self, flight: InFlight, error: DriverError) -> None:
        """``flight`` will never be answered (the link is lost or closed)."""
        self._complete(flight.ticket, error)


__all__ = [
    "Completed",
    "Configure",
    "DeviceCommand",
    "Engine",
    "EngineEvent",
    "Identify",
    "InFlight",
    "LoadSignedCap",
    "Output",
    "Ping",
    "QueryStatus",
    "SetAmplitude",
    "StartOutput",
    "StopOutput",
]
