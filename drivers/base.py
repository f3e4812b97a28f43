"""The driver interface every TENS device driver implements, and the types it speaks.

A driver is blocking at its public edge (``identify``, ``configure``, ``set_amplitude``,
``start``, ``stop``, ``close``) and non-blocking underneath (``request_*``), so that code
running inside clock callbacks (ramps, watchdogs) can command the device without waiting.

``stop()`` and ``close()`` always try to leave every output at 0 mA, never raise for a lost
link (the device's own watchdog then zeroes the output), and are idempotent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.clock import Clock

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- errors


class DriverError(Exception):
    """Base of every error raised by the hardware layer. ``str(e)`` is one clear sentence."""


class PortError(DriverError):
    """A port could not be opened: missing, busy, no permission, or not a TENS unit."""


class FramingError(DriverError):
    """Bytes on the wire are not a valid frame (bad checksum, length, escape or syntax)."""


class CommsLostError(DriverError):
    """The device stopped answering (acknowledgement timeout) or the port vanished."""


class IdentityError(DriverError):
    """The device on the port did not identify as a supported TENS unit."""


class ErrorCode(StrEnum):
    """Typed reasons a device refuses a command (shared by every protocol)."""

    LIMIT = "limit"
    PARAMETER = "parameter"
    STATE = "state"
    CRC = "crc"
    BUSY = "busy"
    UNKNOWN_COMMAND = "unknown_command"
    VERSION = "version"
    RAMP = "ramp"
    """The device refused an increase larger or sooner than its own ramp allows (S15)."""


class DeviceRejectedError(DriverError):
    """The device answered a command with an error acknowledgement."""

    def __init__(self, code: ErrorCode, command: str, detail: str = "") -> None:
        self.code = code
        self.command = command
        self.detail = detail
        text = f"the device refused {command}: {code.value} error"
        super().__init__(f"{text} ({detail})" if detail else text)


# --------------------------------------------------------------------------- settings


class Waveform(StrEnum):
    SYMMETRIC_BIPHASIC = "symmetric_biphasic"
    ASYMMETRIC_BIPHASIC = "asymmetric_biphasic"


class Pattern(StrEnum):
    """How pulses are timed. Every pattern is defined by :class:`ChannelSettings`."""

    CONTINUOUS = "continuous"
    """Pulses at ``frequency_hz``."""
    BURST = "burst"
    """Trains of ``pulses_per_burst`` pulses at ``frequency_hz``, ``secondary_hz`` trains/s."""
    MODULATED = "modulated"
    """Frequency swept between ``secondary_hz`` and ``frequency_hz`` over ``cycle_s``."""
    MIXED = "mixed"
    """``frequency_hz`` and ``secondary_hz`` alternating, each for ``cycle_s`` seconds."""


class ChannelSettings(BaseModel):
    """What one channel delivers, apart from amplitude (which the governor ramps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    frequency_hz: Annotated[float, Field(gt=0, le=10_000)]
    pulse_width_us: Annotated[int, Field(gt=0, le=10_000)]
    waveform: Waveform = Waveform.SYMMETRIC_BIPHASIC
    pattern: Pattern = Pattern.CONTINUOUS
    secondary_hz: Annotated[float, Field(gt=0, le=10_000)] | None = None
    cycle_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    pulses_per_burst: Annotated[int, Field(ge=1, le=100)] | None = None

    @model_validator(mode="after")
    def _pattern_fields(self) -> ChannelSettings:
        needs: dict[Pattern, tuple[str, ...]] = {
            Pattern.CONTINUOUS: (),
            Pattern.BURST: ("secondary_hz", "pulses_per_burst"),
            Pattern.MODULATED: ("secondary_hz", "cycle_s"),
            Pattern.MIXED: ("secondary_hz", "cycle_s"),
        }
        missing = [name for name in needs[self.pattern] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"pattern {self.pattern.value} needs {', '.join(missing)}")
        if self.pattern is Pattern.BURST:
            assert self.secondary_hz is not None
            assert self.pulses_per_burst is not None
            train_s = self.pulses_per_burst / self.frequency_hz
            if train_s * self.secondary_hz >= 1.0:
                raise ValueError("burst trains overlap: pulses_per_burst/frequency_hz too long")
        return self

    @property
    def frequencies_hz(self) -> tuple[float, ...]:
        """Every pulse frequency the pattern uses (for range checks)."""
        if self.pattern in (Pattern.MODULATED, Pattern.MIXED) and self.secondary_hz:
            return (self.secondary_hz, self.frequency_hz)
        return (self.frequency_hz,)

    @property
    def max_pulse_rate_hz(self) -> float:
        """Worst-case pulses per second, over any one second (for dose checks)."""
        if self.pattern is Pattern.BURST:
            assert self.secondary_hz is not None
            assert self.pulses_per_burst is not None
            return self.secondary_hz * self.pulses_per_burst
        return max(self.frequencies_hz)


# --------------------------------------------------------------------------- identity


class DeviceLimits(BaseModel):
    """The hard limits a device reports about itself (intersected with the profile)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_amplitude_ma: Annotated[float, Field(ge=0)]
    amplitude_step_ma: Annotated[float, Field(gt=0)]
    min_frequency_hz: Annotated[float, Field(gt=0)]
    max_frequency_hz: Annotated[float, Field(gt=0)]
    min_pulse_width_us: Annotated[int, Field(gt=0)]
    max_pulse_width_us: Annotated[int, Field(gt=0)]
    ramp_step_ma: Annotated[float, Field(gt=0)] | None = None
    """The largest increase the device itself accepts at once (S15), or None if it has no ramp."""
    ramp_interval_ms: Annotated[float, Field(gt=0)] | None = None
    """The shortest time between two increases of one channel the device accepts (S15)."""


class DeviceInfo(BaseModel):
    """Who the device says it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: str
    protocol_version: str
    model: str
    serial_number: str
    firmware: str
    channels: Annotated[int, Field(ge=1, le=16)]
    limits: DeviceLimits | None = None
    """Hard limits reported by the device, or None when the protocol cannot report them."""
    reports_current: bool
    reports_impedance: bool
    is_simulator: bool = False
    """True only for the built-in simulator URL (``sim://``): decided by the host from the URL it
    opened, never from what the device says about itself (S17)."""
    reported_simulator: bool = False
    """The device says it is a simulator. Logged, never trusted (S17)."""
    watchdog_ms: Annotated[int, Field(gt=0)] | None = None
    """The device's own watchdog period, or None when it has none or does not say (S17: such a
    device is refused, as is one whose watchdog is over 1.5 s)."""
    odometer_sessions: Annotated[int, Field(ge=0)] | None = None
    """How many sessions the device has started in its life, from its non-volatile memory
    (a log anchor: a gap is a missing session); None when it does not count them."""
    odometer_stimulation_s: Annotated[float, Field(ge=0)] | None = None
    """Its total seconds of output in its life; None when it does not count them."""

    cap_key_id: str | None = None
    """The device holds a clinic's public key (this key id) and enforces a cap signed with it
    (TSP/2 §16), whatever the host asks; None when it has no such key."""
    signed_cap_ma: Annotated[float, Field(ge=0)] | None = None
    """The signed cap it enforces now (0 before one was loaded); None without a clinic key."""

    def identity(self) -> DeviceInfo:
        """Who the device is, without what changes from session to session (its odometer and
        the signed cap it holds)."""
        if self.odometer_sessions is None and self.odometer_stimulation_s is None:
            return (
                self
                if self.signed_cap_ma is None
                else self.model_copy(update={"signed_cap_ma": None})
            )
        return self.model_copy(
            update={
                "odometer_sessions": None,
                "odometer_stimulation_s": None,
                "signed_cap_ma": None,
            }
        )


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One read-back sample of one channel. ``None`` means "not reported by this device"."""

    time: float
    channel: int
    set_ma: float
    measured_ma: float | None
    impedance_ohm: float | None
    lead_off: bool | None = None
    """The device reports this channel's electrode off (and the channel held at 0 until it is
    raised again from 0); None when the device does not say (S15)."""
    output_on: bool | None = None
    """The device's output stage is on (RUNNING); None when the device does not say (S15)."""


class DeviceEventKind(StrEnum):
    LEAD_OFF = "lead_off"
    FAULT = "fault"
    WATCHDOG_TRIP = "watchdog_trip"
    BATTERY_LOW = "battery_low"
    DEVICE_RESET = "device_reset"
    EMERGENCY_SWITCH = "emergency_switch"
    OUTPUT_STOPPED = "output_stopped"
    COMMS_LOST = "comms_lost"


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something the device reported, or the driver detected (``COMMS_LOST``)."""

    time: float
    kind: DeviceEventKind
    channel: int | None = None
    detail: str = ""


Report = Telemetry | DeviceEvent
ReportHandler = Callable[[Report], None]


# --------------------------------------------------------------------------- commands


class Pending:
    """A command sent and awaiting its acknowledgement (or its engine's verdict)."""

    __slots__ = ("_callbacks", "command", "deadline", "error", "finished", "value")

    def __init__(self, command: str, deadline: float) -> None:
        self.command = command
        self.deadline = deadline
        self.finished = False
        self.error: DriverError | None = None
        self.value: object = None
        """What the command returned (an identity, a status), when it has a result."""
        self._callbacks: list[Callable[[Pending], None]] = []

    def done(self) -> bool:
        return self.finished

    def resolve(self, error: DriverError | None = None, value: object = None) -> None:
        if not self.finished:
            self.error = error
            self.value = value
            self.finished = True
            self._run_callbacks()

    def add_done_callback(self, callback: Callable[[Pending], None]) -> None:
        """Call ``callback(self)`` once, when resolved (at once if already resolved).

        It runs on whichever thread resolves the command, with the driver's lock held when the
        driver resolves it, so it must not block or wait. Each callback runs exactly once, also
        under a race with :meth:`resolve` (``list.pop`` is atomic).
        """
        self._callbacks.append(callback)
        if self.finished:
            self._run_callbacks()

    def _run_callbacks(self) -> None:
        while self._callbacks:
            try:
                callback = self._callbacks.pop(0)
            except IndexError:  # another thread took the last one
                return
            callback(self)

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


ReportHook = Callable[[Report], None]


class TensDriver(ABC):
    """A connected TENS unit. Channels are numbered from 1.

    **The one lock.** Every driver has one re-entrant lock (:meth:`locked`). Whatever changes the
    state of the link (bytes from the device, a timer, a command) and whatever supervises it (the
    :class:`~drivers.safety.SafetyGovernor`) runs under it. Nothing waits or does I/O while
    holding it: bytes to send are queued and written, in order, when the outermost holder lets
    go (:meth:`_flush_writes`); then the work handed to :meth:`defer` runs (report handlers,
    the application's event callbacks), in order, outside the lock.
    """

    ack_timeout_s: float = 1.0

    url: str = ""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._deferred: deque[Callable[[], None]] = deque()
        self._deliver_lock = threading.Lock()
        self._deliverer: int | None = None
        """The thread running deferred actions now (they may call back into the driver)."""
        self._report_handlers: tuple[ReportHandler, ...] = ()
        """Replaced, never changed in place: delivering a report (ten a second per channel)
        iterates it without a copy while another thread may add or remove a handler."""
        self._report_hook: ReportHook | None = None
        self._held = _Held(self, False)
        self._held_waiting = _Held(self, True)

    # ---- the one lock
    def locked(self, *, wait_for_delivery: bool = False) -> _Held:
        """Hold the driver's lock (``with driver.locked(): ...``). When the outermost holder
        leaves, queued bytes are written and deferred work runs. ``wait_for_delivery``: the
        caller (a public, blocking edge) waits for another thread that is delivering, so that
        every event of its call has been delivered when it returns; I/O and clock threads never
        wait (the deliverer takes theirs)."""
        return self._held_waiting if wait_for_delivery else self._held

    def _release(self, wait_for_delivery: bool) -> None:
        self._depth = depth = self._depth - 1
        self._lock.release()
        if depth == 0:
            self._flush_writes()
            if self._deferred:
                self._deliver(wait_for_delivery)
            self.clock.notify()

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the lock is released (in order, one at a time)."""
        self._deferred.append(action)

    def _flush_writes(self) -> None:  # noqa: B027 - a hook; drivers that queue bytes override it
        """Write the bytes queued under the lock (the runtime does; a fake writes at once)."""

    def _deliver(self, wait: bool) -> None:
        deferred = self._deferred
        me = threading.get_ident()
        if self._deliverer == me:
            return  # called from a deferred action: the delivery loop below picks it up
        while deferred:
            if not self._deliver_lock.acquire(blocking=wait):
                return
            self._deliverer = me
            try:
                while True:
                    try:
                        action = deferred.popleft()
                    except IndexError:
                        break
                    try:
                        action()
                    except Exception:  # a handler bug must not break the safety path
                        log.exception("%s: a report handler or event callback failed", self.url)
            finally:
                self._deliverer = None
                self._deliver_lock.release()

    # ---- reports
    def add_report_handler(self, handler: ReportHandler) -> None:
        """Receive telemetry and events, outside the lock (deferred). Must not block."""
        self._report_handlers = (*self._report_handlers, handler)

    def remove_report_handler(self, handler: ReportHandler) -> None:
        handlers = list(self._report_handlers)
        if handler in handlers:
            handlers.remove(handler)
            self._report_handlers = tuple(handlers)

    def set_report_hook(self, hook: ReportHook | None) -> None:
        """The supervisor (the safety governor): called for every report *under the lock*,
        before any handler, so that it acts on the device's state before anything else runs."""
        self._report_hook = hook

    def _emit(self, report: Report) -> None:
        """Deliver one report: the hook at once (under the lock), the handlers afterwards."""
        with self.locked():
            self._report_locked(report)

    def _report_locked(self, report: Report) -> None:
        """:meth:`_emit` for a caller that already holds the lock."""
        hook = self._report_hook
        if hook is not None:
            try:
                hook(report)
            except Exception:  # a supervisor bug must not stop the driver's own timers
                log.exception("%s: report hook failed on %s", self.url, report)
        handlers = self._report_handlers
        if handlers:
            self._deferred.append(functools.partial(_call_handlers, handlers, report, self.url))

    # ---- non-blocking core, implemented by each protocol
    @property
    @abstractmethod
    def info(self) -> DeviceInfo:
        """The identity from the last ``identify()``; raises if not identified yet."""

    @abstractmethod
    def identify(self) -> DeviceInfo:
        """Handshake and read the device's identity and hard limits (blocking)."""

    @abstractmethod
    def request_configure(self, channel: int, settings: ChannelSettings) -> Pending:
        """Send channel settings; the device sets that channel's amplitude to 0."""

    @abstractmethod
    def request_amplitude(self, channel: int, milliamps: float) -> Pending: ...

    @abstractmethod
    def request_start(self) -> Pending: ...

    @abstractmethod
    def request_stop(self) -> Pending:
        """Every output to 0 mA. Queued before this returns, written when the lock is released
        (at once, unless the caller holds the lock)."""

    close_wait_s: float = 0.3
    """How long ``close()`` waits for the stop's acknowledgement before closing anyway."""

    def close(self) -> None:
        """STOP (best effort, a short wait for its acknowledgement), then close the port.

        Idempotent; never raises. Inside a clock callback (where waiting is not allowed) the
        STOP is still written, just not waited for.
        """
        if self.closed:
            return
        try:
            pending = self.request_stop()
            if not pending.done():
                with contextlib.suppress(DriverError, RuntimeError):
                    self.clock.wait_until(pending.done, self.close_wait_s)
        except Exception:  # close() must never raise
            log.exception("%r: error while stopping before close", self)
        finally:
            try:
                self._teardown("closed")
            except Exception:
                log.exception("%r: error while closing", self)

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once ``close()`` (or a lost link) has released the port."""

    @abstractmethod
    def _teardown(self, reason: str) -> None:
        """Release the port and background work. Called once by ``close()``; idempotent."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """False once the link is lost or closed."""

    # ---- blocking edge
    def wait(self, pending: Pending) -> None:
        """Block until acknowledged; raise the device's error or :class:`CommsLostError`."""
        timeout = max(0.0, pending.deadline - self.clock.now())
        if not self.clock.wait_until(pending.done, timeout + 0.001):
            raise CommsLostError(f"no acknowledgement for {pending.command} within timeout")
        pending.raise_for_error()

    def configure(self, channel: int, settings: ChannelSettings) -> None:
        self.wait(self.request_configure(channel, settings))

    def set_amplitude(self, channel: int, milliamps: float) -> None:
        self.wait(self.request_amplitude(channel, milliamps))

    def start(self) -> None:
        self.wait(self.request_start())

    def load_signed_cap(self, max_ma: float, issued: int, signature: str) -> None:
        """Hand the device a cap signed by the clinic (TSP/2 §16). A device or protocol
        without the feature refuses it."""
        raise DeviceRejectedError(
            ErrorCode.UNKNOWN_COMMAND, "signed cap", "this device cannot check signed caps"
        )

    def stop(self) -> None:
        """All outputs to 0 and wait for the acknowledgement; never raises."""
        with contextlib.suppress(DriverError):
            self.wait(self.request_stop())

    def __enter__(self) -> TensDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Held:
    """``with driver.locked():`` -- a plain class, not a generator: it runs for every frame."""

    __slots__ = ("_driver", "_wait")

    def __init__(self, driver: TensDriver, wait: bool) -> None:
        self._driver = driver
        self._wait = wait

    def __enter__(self) -> None:
        driver = self._driver
        driver._lock.acquire()
        driver._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._driver._release(self._wait)


def _call_handlers(handlers: tuple[ReportHandler, ...], report: Report, url: str) -> None:
    for handler in handlers:
        try:
            handler(report)
        except Exception:
            log.exception("%s: report handler failed on %s", url, report)
