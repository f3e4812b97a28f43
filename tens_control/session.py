"""The session controller: the session state machine on top of the safety governor (DESIGN.md §6).

::

    idle --connect()--> connected --prepare()--> ready --start()--> running <--> paused
      ^                     ^                                           |           |
      |                     +------------------ finish() -------- ended(reason) <---+
      +--------- finish() after comms loss / close() -------------------+

End reasons (:class:`~tens_control.store.records.EndReason`): completed, stopped by user,
emergency stop, lead-off, comms lost, device fault, output mismatch, limit reached, and host crash
(a session a crashed process left open, closed by the store at the next start).

Every command to the device goes through the :class:`~drivers.safety.SafetyGovernor`; this module
never talks to a driver's commands. It adds what a *session* is: the preconditions (screening,
prescription or over-the-counter defaults, daily limits, electrode sites), the plan, the
habituation prompt, the lead-off pause and its time limit, pain ratings, notes and adverse events,
and the log.

Logging and acknowledgement. Every governor :class:`~drivers.safety.SafetyEvent` and every state
transition becomes a hash-chained *safety* event in the store, committed to disk before the
controller acknowledges it: a public method returns, and listeners hear of it, only after its
events are committed. The one exception is :meth:`SessionController.emergency_stop`, which
returns as soon as the STOP frame is written (its log records are committed moments later, and
the ``EndedUpdate`` is delivered after that). Telemetry goes through the store's batch writer.

Threads. Public methods may be called from any thread. The blocking ones (``connect``,
``prepare``, ``start``, ``resume``, ``finish``, ``close``) wait for the device and belong on a
worker thread, never on a UI event loop. ``emergency_stop``, ``stop``, ``pause``, ``increase``
and ``decrease`` do not wait for the device. With a real clock, log commits and listener calls
run on one log thread (``tens-session-log``) in event order; with a
:class:`~drivers.clock.VirtualClock` they run inline, deterministically. Time-driven work
(habituation prompts, the lead-off time limit) runs on the clock.

Listeners receive small immutable update messages (:data:`Update`) on any thread; they must be
quick, and must not wait for the device (calling ``stop`` or ``emergency_stop`` is fine).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from pydantic import ValidationError

from drivers.base import DeviceInfo, DriverError, Report, Telemetry
from drivers.clock import Clock, TimerHandle, VirtualClock
from drivers.limits import CapSource
from drivers.safety import (
    DeviceReported,
    GovernorEvent,
    GovernorState,
    GovernorStateError,
    Paused,
    SafetyEventKind,
    SafetyGovernor,
    SafetyRejection,
    Stopped,
    StopReason,
)
from tens_control import pain as pain_mod
from tens_control.allowance import daily_use
from tens_control.config import saved_device
from tens_control.device import OpenedDevice, open_device
from tens_control.errors import TensControlError
from tens_control.prescription import (
    Prescription,
    PrescriptionError,
    minutes_left_today,
    over_the_counter,
    parse_prescription,
)
from tens_control.programs import Program, ProgramError
from tens_control.screening import Screening, screening_gate, screening_log_note
from tens_control.sites import DEFAULT_PAD, ChannelPlacement, pair_refusal
from tens_control.store.errors import StoreError
from tens_control.store.records import (
    AdverseKind,
    CallerRecord,
    ChannelPlan,
    EndReason,
    HabituationPrompt,
    Note,
    Odometer,
    PainContext,
    PainSite,
    RatingTime,
    Rejected,
    SessionPlan,
    Severity,
    StateChanged,
)
from tens_control.store.records import Screening as StoredScreening
from tens_control.store.store import Store, StoredEvent
from tens_control.store.telemetry import TelemetryWriter
from tens_control.trust.check import (
    InForce,
    check_before_session,
    pinned_enrolment,
    trusted_screening,
)
from tens_control.trust.keys import TrustError

log = logging.getLogger(__name__)

LEAD_OFF_TIMEOUT_S = 10 * 60.0
"""A session paused by lead-off that is not resumed within this time ends as lead-off."""
HABITUATION_ADJUST_WINDOW_S = 60.0
"""Intensity changes this soon after a "no" to the habituation prompt are logged as its
adjustment."""
LOG_TIMEOUT_S = 15.0
"""How long a public method waits for its log records to be committed before it treats the log
as broken (stops output and raises :class:`SessionLogError`)."""
HABITUATION_QUESTION = "Is the feeling still strong but comfortable?"
DEFAULT_CHANNELS = 2
"""Without prescribed channels a session uses channels 1 and 2 (the pair of a home unit)."""

# --------------------------------------------------------------------------- states, reasons


class SessionState(StrEnum):
    IDLE = "idle"
    """No device connected."""
    CONNECTED = "connected"
    """A device is connected and identified; every output is 0; no program chosen."""
    READY = "ready"
    """A program is chosen and the preconditions passed; the channels are configured at 0 mA."""
    RUNNING = "running"
    """Stimulating (every channel started at 0 mA; the patient raises it)."""
    PAUSED = "paused"
    """Every output 0; ``resume()`` starts again from 0 mA."""
    ENDED = "ended"
    """The session is over (``end_reason``); every output 0. ``finish()`` for the next one."""


END_REASON_FOR_STOP: dict[StopReason, EndReason] = {
    StopReason.USER: EndReason.STOPPED_BY_USER,
    StopReason.CLOSED: EndReason.STOPPED_BY_USER,
    StopReason.EMERGENCY: EndReason.EMERGENCY_STOP,
    StopReason.EMERGENCY_SWITCH: EndReason.EMERGENCY_STOP,
    StopReason.DURATION: EndReason.COMPLETED,
    StopReason.LEAD_OFF: EndReason.LEAD_OFF,
    StopReason.COMMS_LOST: EndReason.COMMS_LOST,
    StopReason.WATCHDOG: EndReason.COMMS_LOST,
    StopReason.DEVICE_FAULT: EndReason.DEVICE_FAULT,
    StopReason.DEVICE_RESET: EndReason.DEVICE_FAULT,
    StopReason.OUTPUT_MISMATCH: EndReason.OUTPUT_MISMATCH,
    StopReason.LIMIT: EndReason.LIMIT_REACHED,
}
"""How a governor stop reason becomes a session end reason."""

END_WORDS: dict[EndReason, str] = {
    EndReason.COMPLETED: "completed",
    EndReason.STOPPED_BY_USER: "stopped by user",
    EndReason.EMERGENCY_STOP: "emergency stop",
    EndReason.LEAD_OFF: "lead-off",
    EndReason.COMMS_LOST: "comms lost",
    EndReason.DEVICE_FAULT: "device fault",
    EndReason.OUTPUT_MISMATCH: "output mismatch",
    EndReason.LIMIT_REACHED: "limit reached",
    EndReason.HOST_CRASH: "host crash",
}
"""End reasons as people read them."""

END_MESSAGES: dict[EndReason, str] = {
    EndReason.COMPLETED: "Session complete. The output is off. Please rate your pain now.",
    EndReason.STOPPED_BY_USER: "Session stopped. The output is off.",
    EndReason.EMERGENCY_STOP: "EMERGENCY STOP: every output is off.",
    EndReason.LEAD_OFF: (
        "Session ended: an electrode stayed off the skin, so the session could not go on. "
        "The output is off. Check the pads and leads before the next session."
    ),
    EndReason.COMMS_LOST: (
        "The connection to the device was lost; the session is over. The device switches its "
        "output off by itself within a second. Check the cable and that the device is on, then "
        "reconnect. Stimulation never restarts on its own."
    ),
    EndReason.DEVICE_FAULT: (
        "The device reported a fault and stopped; the output is off. Switch the device off and "
        "on again before the next session; if it happens again, contact your clinician or the "
        "supplier."
    ),
    EndReason.OUTPUT_MISMATCH: (
        "The device delivered a different current from the one set, so the session was stopped "
        "for safety; the output is off. Do not use this device again until it has been checked."
    ),
    EndReason.LIMIT_REACHED: (
        "The device refused a setting as over its own limit, so the session was stopped; the "
        "output is off. Tell your clinician or the supplier: the device and its profile disagree."
    ),
    EndReason.HOST_CRASH: (
        "The session log could not be written, so the session was stopped; the output is off. "
        "Check the disk, then start tens-control again."
    ),
}
"""What happened and what to do, for each end reason (shown to the patient)."""

_SOURCE_WORDS: dict[CapSource, str] = {
    CapSource.PROFILE: "the manufacturer's limit for this device",
    CapSource.DEVICE: "the device's own limit",
    CapSource.PRESCRIPTION: "your prescription's limit",
    CapSource.COMFORT: "your own comfort limit",
    CapSource.DOSE: "the safe limit for the size of your pads",
}


class HabituationAnswer(StrEnum):
    """The answers to "Is the feeling still strong but comfortable?"."""

    COMFORTABLE = "comfortable"
    FADED = "faded"
    """Not strong enough any more (the patient then raises it)."""
    TOO_STRONG = "too_strong"
    """Too strong or uncomfortable (every channel is lowered one step at once)."""


HABITUATION_RESPONSES: dict[HabituationAnswer, str] = {
    HabituationAnswer.COMFORTABLE: "yes: still strong but comfortable",
    HabituationAnswer.FADED: "no: not strong enough any more",
    HabituationAnswer.TOO_STRONG: "no: too strong or uncomfortable",
}
"""How each answer is logged (``habituation_prompt`` records)."""


class SessionError(TensControlError):
    """A session action cannot be done now. The message says why and what to do."""


class SessionStateError(SessionError):
    """The action is not possible in the current state (nothing was sent or logged)."""


class PreconditionError(SessionError):
    """A session may not be prepared or started (screening, prescription, daily limit, site).

    ``check`` names the precondition: ``screening``, ``prescription``, ``program``,
    ``session length``, ``daily limit``, ``electrode site``, ``device``.
    """

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        super().__init__(message)


class SessionLogError(SessionError):
    """The session log could not be written; output was stopped."""


# --------------------------------------------------------------------------- update messages


class MessageLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Message:
    """A message for the patient. ``key`` identifies a banner (a message that stays shown until
    cleared), e.g. ``simulator``, ``lead-off``, ``comms-lost``, ``ended``, ``limit-1``."""

    key: str
    level: MessageLevel
    text: str


@dataclass(frozen=True, slots=True)
class ChannelView:
    """One channel as the UI shows it."""

    channel: int
    active: bool
    """Configured for the prepared/running session."""
    target_ma: float
    """Where the ramp is heading (what the patient asked for)."""
    set_ma: float
    """What the device acknowledged."""
    commanded_ma: float
    """The last amplitude sent (0 at once after a stop, a pause or a decrease to 0, before the
    device has confirmed it)."""
    measured_ma: float | None
    """Measured current from telemetry (None: not reported by this device, or no live reading
    because the output is off)."""
    impedance_ohm: float | None
    lead_off: bool
    cap_ma: float
    """The highest amplitude allowed now, and where that limit comes from."""
    cap_source: CapSource
    site: str
    """Where the pads go (or "not recorded")."""

    @property
    def stimulating(self) -> bool:
        return self.set_ma > 0 or (self.measured_ma is not None and self.measured_ma > 0)

    @property
    def stopping(self) -> bool:
        """Output was stopped (0 sent) but the device has not confirmed it yet."""
        return self.set_ma > 0 and self.commanded_ma <= 0


@dataclass(frozen=True, slots=True)
class DeviceView:
    url: str
    protocol: str
    model: str
    serial_number: str
    firmware: str
    profile_id: str
    profile_name: str
    channels: int
    is_simulator: bool
    measured_output: bool
    """False: "no measured output" (the device does not report the current it delivers)."""
    impedance: bool
    """False: "no impedance" (the device does not report electrode impedance)."""
    lead_off_detection: bool
    """False: "no lead-off detection"."""
    profile_note: str = ""

    @property
    def flags(self) -> tuple[str, ...]:
        out: list[str] = []
        if self.is_simulator:
            out.append("simulator")
        if not self.measured_output:
            out.append("no measured output")
        if not self.impedance:
            out.append("no impedance")
        if not self.lead_off_detection:
            out.append("no lead-off detection")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of the controller at one moment (safe to keep and read anywhere)."""

    time: float
    state: SessionState
    program: Program | None
    planned_s: float | None
    elapsed_s: float | None
    """Stimulation time so far (pauses do not count)."""
    remaining_s: float | None
    channels: tuple[ChannelView, ...]
    device: DeviceView | None
    banners: tuple[Message, ...]
    end_reason: EndReason | None
    end_detail: str
    session_id: str | None
    paused_for_lead_off: bool
    habituation_pending: bool
    output_stopped: bool
    """The output was stopped (stop, emergency stop, pause or end): every channel was sent 0,
    even if the device has not confirmed it yet (then :attr:`stopping`)."""
    prescription_version: int | None
    """None: over-the-counter defaults."""
    patient: str

    @property
    def stimulating(self) -> bool:
        """True whenever any channel is above 0 mA (the STIMULATING indicator, S11)."""
        return any(ch.stimulating for ch in self.channels)

    @property
    def stopping(self) -> bool:
        """Output was stopped and some channel still awaits the device's confirmation of 0 mA
        (S11: shown as STOPPING, neither as stimulating nor as off)."""
        return any(ch.set_ma > 0 for ch in self.channels) and (
            self.output_stopped or all(ch.commanded_ma <= 0 for ch in self.channels)
        )

    def channel(self, number: int) -> ChannelView:
        for ch in self.channels:
            if ch.channel == number:
                return ch
        raise KeyError(number)


@dataclass(frozen=True, slots=True)
class StateUpdate:
    time: float
    state: SessionState
    previous: SessionState
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelUpdate:
    time: float
    channel: ChannelView


@dataclass(frozen=True, slots=True)
class MessageUpdate:
    time: float
    message: Message
    banner: bool
    """True: shown until a :class:`BannerCleared` with the same key."""


@dataclass(frozen=True, slots=True)
class BannerCleared:
    time: float
    key: str


@dataclass(frozen=True, slots=True)
class HabituationDue:
    time: float
    number: int
    elapsed_s: float
    question: str = HABITUATION_QUESTION


@dataclass(frozen=True, slots=True)
class EndedUpdate:
    time: float
    reason: EndReason
    detail: str
    message: str


Update = StateUpdate | ChannelUpdate | MessageUpdate | BannerCleared | HabituationDue | EndedUpdate
Listener = Callable[[Update], None]


@dataclass(frozen=True, slots=True)
class IntensityResult:
    """The outcome of an intensity change. Refusals carry a message for the patient."""

    accepted: bool
    channel: int
    target_ma: float
    message: str | None = None
    limit_ma: float | None = None
    source: CapSource | None = None


class DeviceOpener(Protocol):
    def __call__(
        self,
        url: str | None,
        clock: Clock,
        *,
        protocol: str | None = None,
        profile: str | None = None,
    ) -> OpenedDevice: ...


# --------------------------------------------------------------------------- the log executor


class _Serializer:
    """Runs jobs one at a time in submission order: on a background thread, or inline.

    Inline: the submitting thread runs the queue unless a job is already running (on any
    thread, including this one, nested), in which case the running drainer picks it up.
    """

    def __init__(self, background: bool, name: str) -> None:
        self._background = background
        self._name = name
        self._cond = threading.Condition()
        self._jobs: deque[tuple[int, Callable[[], None]]] = deque()
        self._submitted = 0
        self._done = 0
        self._drainer: int | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Callable[[], None]) -> int:
        with self._cond:
            self._submitted += 1
            ticket = self._submitted
            self._jobs.append((ticket, job))
            if self._background:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return ticket
            if self._drainer is not None:
                return ticket
            self._drainer = threading.get_ident()
        self._drain_inline()
        return ticket

    def _run_job(self, ticket: int, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a job failure must not stop the log
            log.exception("session log job failed")
        with self._cond:
            self._done = ticket
            self._cond.notify_all()

    def _drain_inline(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._drainer = None
                    self._cond.notify_all()
                    return
                ticket, job = self._jobs.popleft()
            self._run_job(ticket, job)

    def _run(self) -> None:
        with self._cond:
            self._drainer = threading.get_ident()
        while True:
            with self._cond:
                while not self._jobs:
                    if self._closed:
                        return
                    self._cond.wait(0.5)
                ticket, job = self._jobs.popleft()
            self._run_job(ticket, job)

    def in_job(self) -> bool:
        """True when called from the thread running jobs (a job or a listener)."""
        return self._drainer == threading.get_ident()

    def barrier(self, timeout: float = LOG_TIMEOUT_S) -> bool:
        """Wait until every job submitted so far has run. From inside a job: returns at once."""
        if self.in_job():
            return True
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = LOG_TIMEOUT_S) -> None:
        """Run what is queued, then stop the thread (if any)."""
        self.barrier(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


# --------------------------------------------------------------------------- helpers


def _fmt(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _to_screening(stored: StoredScreening) -> Screening:
    """The store's screening record as the screening module's model (same field names)."""
    return Screening.model_validate(stored.model_dump(mode="python", exclude={"uid"}))


def _enum_value(value: object) -> str:
    return str(getattr(value, "value", value))


@dataclass
class _Prepared:
    program: Program
    minutes: float
    channels: tuple[int, ...]
    placements: dict[int, ChannelPlacement | None]
    screening_uid: str | None
    screening_note: str | None
    trust: InForce | None = None


@dataclass
class _PendingRating:
    nrs: int | None
    when: RatingTime
    pain: PainSite
    context: PainContext
    note: str
    at: datetime


@dataclass
class _Habituation:
    interval_s: float
    number: int = 0
    pending: bool = False
    timer: TimerHandle | None = None
    next_due_run_s: float = 0.0
    """Stimulation time (pauses excluded) at which the next prompt is due."""
    adjust_until: float = -math.inf


@dataclass
class _Fields:
    """Controller state guarded by ``SessionController._lock``."""

    state: SessionState = SessionState.IDLE
    end_reason: EndReason | None = None
    end_detail: str = ""
    session: str | None = None
    prepared: _Prepared | None = None
    paused_for_lead_off: bool = False
    banners: dict[str, Message] = field(default_factory=dict)
    planned_s: float | None = None


# --------------------------------------------------------------------------- the controller


class SessionController:
    """One patient's sessions on one device at a time. See the module docstring."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        patient: str | None = None,
        wall: Callable[[], datetime] | None = None,
        opener: DeviceOpener = open_device,
        background_log: bool | None = None,
        lead_off_timeout_s: float = LEAD_OFF_TIMEOUT_S,
        habituation_adjust_window_s: float = HABITUATION_ADJUST_WINDOW_S,
        on_logged: Callable[[StoredEvent], None] | None = None,
    ) -> None:
        """``store``: an open store (the caller closes it). ``clock``: the same clock the store
        uses. ``patient``: pseudonym (default: the store's default patient, created if new).
        ``wall``: the current aware datetime for ratings and daily limits (default: UTC now; give
        the store's wall clock in virtual time). ``opener``: opens a device for a URL (tests
        replace it). ``background_log``: commit the log on a background thread (default: yes,
        unless ``clock`` is virtual). ``on_logged``: called with every safety event after it is
        committed (diagnostics; ``tens-control run --print-log``)."""
        self._store = store
        self._clock = clock
        self._wall: Callable[[], datetime] = wall or (lambda: datetime.now(UTC))
        self._opener = opener
        self._lead_off_timeout_s = lead_off_timeout_s
        self._adjust_window_s = habituation_adjust_window_s
        self._on_logged = on_logged
        background = (
            not isinstance(clock, VirtualClock) if background_log is None else background_log
        )
        self._jobs = _Serializer(background, "tens-session-log")
        self._lock = threading.RLock()
        self._op_lock = threading.RLock()
        self._local = threading.local()
        self._f = _Fields()
        self._listeners: list[tuple[Listener, bool]] = []
        self._channel_listeners = False
        self._governor: SafetyGovernor | None = None
        self._device: OpenedDevice | None = None
        self._rx: Prescription = over_the_counter()
        self._rx_note = ""
        self._site_cache: dict[int, tuple[Prescription, str]] = {}
        self._pending_ratings: list[_PendingRating] = []
        self._telemetry: TelemetryWriter | None = None
        self._habituation: _Habituation | None = None
        self._lead_off_timer: TimerHandle | None = None
        self._log_broken = False
        self._log_error = ""
        self._closed = False
        self.patient = store.ensure_patient(patient).pseudonym
        """The patient's pseudonym."""
        self.recovered_sessions: tuple[str, ...] = tuple(store.recover_unfinished_sessions())
        """Sessions a crashed process had left open, closed as host crash when this opened."""
        store.on_write_failure(self._log_failed)  # a full disk mid-session stops the output
        if self.recovered_sessions:
            count = len(self.recovered_sessions)
            self._f.banners["recovered"] = Message(
                "recovered",
                MessageLevel.WARNING,
                f"{count} earlier session(s) ended unexpectedly (the program stopped without "
                "ending them); they are recorded as ended by a host crash.",
            )
        self._rx = self._load_prescription()

    # ================================================================== listeners, snapshot
    def add_listener(self, listener: Listener, *, channel_updates: bool = True) -> None:
        """Receive every :data:`Update` (on any thread; be quick, never block).

        ``channel_updates=False``: no :class:`ChannelUpdate` (they come with every reading,
        10 times a second per channel)."""
        with self._lock:
            self._listeners = [*self._listeners, (listener, channel_updates)]
            self._channel_listeners = any(wants for _, wants in self._listeners)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = [x for x in self._listeners if x[0] is not listener]
            self._channel_listeners = any(wants for _, wants in self._listeners)

    def _notify(self, update: Update) -> None:
        channel = isinstance(update, ChannelUpdate)
        for listener, wants_channels in self._listeners:
            if channel and not wants_channels:
                continue
            try:
                listener(update)
            except Exception:  # a UI bug must not break the session layer
                log.exception("session listener failed on %s", type(update).__name__)

    @property
    def state(self) -> SessionState:
        return self._f.state

    @property
    def store(self) -> Store:
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def prescription(self) -> Prescription:
        """The prescription in force (version 0: the over-the-counter defaults)."""
        return self._rx

    @property
    def device(self) -> OpenedDevice | None:
        return self._device

    def snapshot(self) -> Snapshot:
        """An immutable view of the controller now (safe from any thread)."""
        governor = self._governor
        with self._lock:
            f = self._f
            prepared = f.prepared
            state = f.state
            banners = tuple(f.banners.values())
            session = f.session
            planned = f.planned_s
            end_reason, end_detail = f.end_reason, f.end_detail
            paused_lead_off = f.paused_for_lead_off
            hab = self._habituation
            hab_pending = hab is not None and hab.pending
        remaining: float | None = None
        elapsed: float | None = None
        channels: tuple[ChannelView, ...] = ()
        device_view: DeviceView | None = None
        stopped = governor is None or governor.state is not GovernorState.RUNNING
        if governor is not None and self._device is not None:
            device_view = self._device_view(self._device, governor)
            if state in (SessionState.RUNNING, SessionState.PAUSED):
                remaining = governor.remaining_s()
                if remaining is not None and planned is not None:
                    elapsed = max(0.0, planned - remaining)
            elif state is SessionState.READY:
                remaining = planned
                elapsed = 0.0
            try:
                channels = self._channel_views(governor, prepared)
            except DriverError:
                channels = ()
        rx = self._rx
        return Snapshot(
            time=self._clock.now(),
            state=state,
            program=None if prepared is None else prepared.program,
            planned_s=planned,
            elapsed_s=elapsed,
            remaining_s=remaining,
            channels=channels,
            device=device_view,
            banners=banners,
            end_reason=end_reason,
            end_detail=end_detail,
            session_id=session,
            paused_for_lead_off=paused_lead_off,
            habituation_pending=hab_pending,
            output_stopped=stopped,
            prescription_version=None if rx.is_over_the_counter else rx.version,
            patient=self.patient,
        )

    def _device_view(self, device: OpenedDevice, governor: SafetyGovernor) -> DeviceView:
        info = device.info
        return DeviceView(
            url=device.url,
            protocol=f"{info.protocol} {info.protocol_version}",
            model=info.model,
            serial_number=info.serial_number,
            firmware=info.firmware,
            profile_id=device.profile.id,
            profile_name=device.profile.name,
            channels=info.channels,
            is_simulator=info.is_simulator,
            measured_output=governor.readback,
            impedance=info.reports_impedance,
            lead_off_detection=governor.lead_off_detection,
            profile_note=device.profile_note,
        )

    def _placement(self, channel: int) -> ChannelPlacement | None:
        """The prescribed placement of ``channel`` (a ChannelPrescription is one)."""
        return self._rx.channel(channel)

    def _site_text(self, channel: int) -> str:
        rx = self._rx
        cached = self._site_cache.get(channel)
        if cached is not None and cached[0] is rx:
            return cached[1]
        placement = self._placement(channel)
        if placement is not None:
            text = placement.describe()
        else:
            text = f"not recorded; {DEFAULT_PAD.label} pads assumed"
        self._site_cache[channel] = (rx, text)
        return text

    def _channel_view(self, governor: SafetyGovernor, channel: int, active: bool) -> ChannelView:
        status = governor.channel_status(channel)
        # readings come only while the output is on; afterwards the last one is stale
        live = governor.state is GovernorState.RUNNING
        return ChannelView(
            channel=channel,
            active=active,
            target_ma=status.target_ma,
            set_ma=status.set_ma,
            commanded_ma=status.commanded_ma,
            measured_ma=status.measured_ma if live else None,
            impedance_ohm=status.impedance_ohm if live else None,
            lead_off=status.lead_off,
            cap_ma=status.cap.value,
            cap_source=status.cap.source,
            site=self._site_text(channel),
        )

    def _channel_views(
        self, governor: SafetyGovernor, prepared: _Prepared | None
    ) -> tuple[ChannelView, ...]:
        if governor.state is GovernorState.DISCONNECTED:
            return ()
        active = set(prepared.channels) if prepared is not None else set()
        return tuple(self._channel_view(governor, n, n in active) for n in governor.channels)

    # ================================================================== logging plumbing
    def _command(self) -> str:
        return str(getattr(self._local, "command", "") or "device")

    def _set_command(self, name: str) -> None:
        self._local.command = name

    def _append(
        self, session: str | None, record: CallerRecord, mono: float | None = None
    ) -> StoredEvent | None:
        """Commit one safety record (inside a job). A failure stops output."""
        if self._log_broken:
            return None
        try:
            stored = self._store.append_safety_event(
                session,
                record,
                patient=self.patient,
                at=self._wall(),
                mono=self._clock.now() if mono is None else mono,
            )
        except Exception as error:
            self._log_failed(error)
            return None
        if self._on_logged is not None:
            try:
                self._on_logged(stored)
            except Exception:
                log.exception("on_logged hook failed")
        return stored

    def _log_failed(self, error: BaseException) -> None:
        """The log cannot be written: stop output (the session ends as host crash)."""
        if self._log_broken:
            return
        self._log_broken = True
        self._log_error = str(error)
        log.error("the session log could not be written (%s); stopping output", error)
        governor = self._governor
        if governor is not None:
            try:
                governor.stop(StopReason.CLOSED)
            except Exception:
                log.exception("stop after a log failure failed")

    def _barrier(self) -> None:
        """Wait until every log record produced so far is committed (and listeners told)."""
        if not self._jobs.barrier():
            self._log_failed(TimeoutError("log commit timed out"))
            raise SessionLogError(
                "the session log did not confirm within "
                f"{LOG_TIMEOUT_S:g} s, so the output was stopped; check the disk"
            )

    def _submit(self, job: Callable[[], None]) -> None:
        self._jobs.submit(job)

    def _transition_job(self, new: SessionState, reason: str, session: str | None) -> None:
        with self._lock:
            previous = self._f.state
            if previous is new:
                return
            self._f.state = new
        self._append(
            session, StateChanged(from_state=previous.value, to_state=new.value, reason=reason)
        )
        self._notify(StateUpdate(self._clock.now(), new, previous, reason))

    def _transition(self, new: SessionState, reason: str) -> None:
        session = self._f.session
        self._submit(partial(self._transition_job, new, reason, session))

    def _banner(self, key: str, level: MessageLevel, text: str) -> None:
        message = Message(key, level, text)
        with self._lock:
            self._f.banners[key] = message
        self._submit(partial(self._notify, MessageUpdate(self._clock.now(), message, True)))

    def _clear_banner(self, key: str) -> None:
        with self._lock:
            had = self._f.banners.pop(key, None)
        if had is not None:
            self._submit(partial(self._notify, BannerCleared(self._clock.now(), key)))

    def _message(self, key: str, level: MessageLevel, text: str) -> None:
        message = Message(key, level, text)
        self._submit(partial(self._notify, MessageUpdate(self._clock.now(), message, False)))

    def _log_record(self, record: CallerRecord, session: str | None = None) -> None:
        """Queue a controller record (committed in order with governor events)."""
        self._submit(partial(self._append_job, session, record))

    def _append_job(self, session: str | None, record: CallerRecord) -> None:
        self._append(session, record)

    def _refuse(
        self,
        check: str,
        message: str,
        *,
        value: Any = None,
        limit: Any = None,
        source: str = "",
    ) -> PreconditionError:
        """Log a refused precondition and tell the patient; the caller raises the result."""
        self._log_record(
            Rejected(
                time=self._clock.now(),
                command=self._command(),
                parameter=check,
                value=value,
                limit=limit,
                source=source,
                message=message,
            ),
            self._f.session,
        )
        self._message("refused", MessageLevel.WARNING, message)
        self._barrier()
        return PreconditionError(check, message)

    # ================================================================== governor events
    def _on_governor_event(self, event: GovernorEvent) -> None:
        """The governor's ``on_event`` (any thread): queue it; never blocks on the disk."""
        ended = self._f.state is SessionState.ENDED
        # the device's confirmation of the stop that ended a session belongs to that session
        confirms = event.kind is SafetyEventKind.STOP_CONFIRMED
        session = self._f.session if not ended or confirms else None
        command = self._command()
        self._jobs.submit(partial(self._handle_event, event, session, command))

    def _handle_event(self, event: GovernorEvent, session: str | None, command: str) -> None:
        """Log one governor event as it is, then act on it and tell the listeners (a job)."""
        record: CallerRecord = event
        if event.kind is SafetyEventKind.REJECTED and not event.command:
            record = event.model_copy(update={"command": command[:200]})
        self._append(session, record, mono=event.time)
        kind = event.kind
        now = self._clock.now()
        if kind is SafetyEventKind.STARTED:
            self._transition_job(SessionState.RUNNING, "session started at 0 mA", session)
            self._habituation_started()
        elif isinstance(event, Paused):
            lead_off = event.reason is StopReason.LEAD_OFF
            with self._lock:
                self._f.paused_for_lead_off = lead_off
            self._habituation_paused()
            reason = "paused: electrode off" if lead_off else "paused by the patient"
            self._transition_job(SessionState.PAUSED, reason, session)
            if lead_off:
                self._lead_off_paused(event)
        elif kind is SafetyEventKind.RESUMED:
            self._cancel_lead_off_timer()
            with self._lock:
                self._f.paused_for_lead_off = False
                had = self._f.banners.pop("lead-off", None)
            if had is not None:
                self._notify(BannerCleared(now, "lead-off"))
            self._transition_job(SessionState.RUNNING, "resumed from 0 mA", session)
            self._habituation_resumed()
        elif isinstance(event, Stopped):
            self._ended(event, session)
        elif kind is SafetyEventKind.LEAD_ON:
            self._notify(
                MessageUpdate(
                    now,
                    Message(
                        "lead-on",
                        MessageLevel.INFO,
                        f"The electrode on channel {event.channel} is back on the skin.",
                    ),
                    False,
                )
            )
        elif kind is SafetyEventKind.COMMS_LOST:
            text = END_MESSAGES[EndReason.COMMS_LOST]
            message = Message("comms-lost", MessageLevel.ALARM, text)
            with self._lock:
                self._f.banners["comms-lost"] = message
            self._notify(MessageUpdate(now, message, True))
        elif kind is SafetyEventKind.STOP_CONFIRMED:
            # S11: the indicator learns a confirmed 0 mA from the device, not from a redraw
            governor = self._governor
            if governor is not None:
                for number in governor.channels:
                    self._channel_update(number)
        elif isinstance(event, DeviceReported) and event.event == "battery_low":
            message = Message(
                "battery-low",
                MessageLevel.WARNING,
                "The device's battery is low. Finish this session, then charge or replace it.",
            )
            with self._lock:
                self._f.banners["battery-low"] = message
            self._notify(MessageUpdate(now, message, True))
        if (
            kind
            in (
                SafetyEventKind.AMPLITUDE_SET,
                SafetyEventKind.TARGET_CHANGED,
                SafetyEventKind.LEAD_OFF,
                SafetyEventKind.LEAD_ON,
            )
            and event.channel is not None
        ):
            self._channel_update(event.channel)

    def _channel_update(self, channel: int) -> None:
        governor = self._governor
        if governor is None or not self._channel_listeners:
            return
        prepared = self._f.prepared
        active = prepared is not None and channel in prepared.channels
        try:
            view = self._channel_view(governor, channel, active)
        except DriverError:
            return
        self._notify(ChannelUpdate(self._clock.now(), view))

    def _lead_off_paused(self, event: Paused) -> None:
        channel = event.channel
        if channel is None:
            # the PAUSED event has no channel; find the channel(s) off
            governor = self._governor
            offs = []
            if governor is not None:
                offs = [n for n in governor.channels if governor.channel_status(n).lead_off]
            where = ", ".join(str(n) for n in offs) or "?"
        else:
            where = str(channel)
        minutes = _fmt(self._lead_off_timeout_s / 60.0)
        if self._lead_off_timeout_s > 0:
            text = (
                f"Electrode off on channel {where}: the output was stopped at once and the "
                "session is paused. Press the pads firmly onto clean, dry skin and check that "
                "the leads are plugged in, then resume; the intensity starts again from zero. "
                f"If you do not resume within {minutes} minutes, the session ends."
            )
        else:
            # nobody can resume (a headless run): the session ends as lead-off at once
            text = (
                f"Electrode off on channel {where}: the output was stopped at once, and the "
                "session ends (it cannot be resumed here). Press the pads firmly onto clean, "
                "dry skin and check the leads before you continue the session."
            )
        message = Message("lead-off", MessageLevel.ALARM, text)
        with self._lock:
            self._f.banners["lead-off"] = message
        self._notify(MessageUpdate(self._clock.now(), message, True))
        self._cancel_lead_off_timer()
        if self._lead_off_timeout_s <= 0:
            self._lead_off_expired()
            return
        self._lead_off_timer = self._clock.call_later(
            self._lead_off_timeout_s, self._lead_off_expired
        )

    def _lead_off_expired(self) -> None:
        """Clock callback: still paused for lead-off -> end the session as lead-off."""
        self._lead_off_timer = None
        governor = self._governor
        if governor is None or not self._f.paused_for_lead_off:
            return
        if governor.state is GovernorState.PAUSED:
            governor.stop(StopReason.LEAD_OFF)

    def _cancel_lead_off_timer(self) -> None:
        timer = self._lead_off_timer
        self._lead_off_timer = None
        if timer is not None:
            timer.cancel()

    def _ended(self, event: Stopped, session: str | None) -> None:
        reason_in = event.reason
        if self._log_broken:
            reason = EndReason.HOST_CRASH
        else:
            reason = END_REASON_FOR_STOP.get(reason_in, EndReason.DEVICE_FAULT)
        detail = event.detail or reason_in.value
        if self._log_broken:
            detail = f"the session log could not be written: {self._log_error}"
        self._cancel_lead_off_timer()
        self._habituation_stop()
        if session is None:
            self._stopped_without_session(reason, detail)
            return
        with self._lock:
            if self._f.state is SessionState.ENDED:
                return
            self._f.end_reason = reason
            self._f.end_detail = detail
            self._f.paused_for_lead_off = False
            self._f.banners.pop("lead-off", None)
        self._transition_job(SessionState.ENDED, f"{END_WORDS[reason]}: {detail}", session)
        if session is not None:
            hab = self._habituation
            if hab is not None and hab.pending:
                self._append(session, HabituationPrompt(response="no answer"))
            self._telemetry = None
            # also after a log failure: the store closes the session with what it can still
            # write (a full disk: what was committed, sealed), else the next start does
            try:
                self._store.end_session(
                    session, reason, at=self._wall(), mono=self._clock.now(), detail=detail
                )
            except Exception as error:
                self._log_failed(error)
        text = END_MESSAGES[reason]
        level = MessageLevel.INFO if reason is EndReason.COMPLETED else MessageLevel.ALARM
        if reason is EndReason.STOPPED_BY_USER:
            level = MessageLevel.INFO
        message = Message("ended", level, text)
        with self._lock:
            self._f.banners["ended"] = message
        now = self._clock.now()
        self._notify(MessageUpdate(now, message, True))
        self._notify(EndedUpdate(now, reason, detail, text))

    def _stopped_without_session(self, reason: EndReason, detail: str) -> None:
        """The governor stopped while no session was running (nothing was stimulating)."""
        governor = self._governor
        state = self._f.state
        if governor is not None and not governor.driver.connected:
            with self._lock:
                self._f.prepared = None
                self._f.planned_s = None
            self._transition_job(SessionState.IDLE, f"{END_WORDS[reason]}: {detail}", None)
        elif state is SessionState.READY:
            with self._lock:
                self._f.prepared = None
                self._f.planned_s = None
            self._transition_job(
                SessionState.CONNECTED, f"stopped before the start ({END_WORDS[reason]})", None
            )

    # ================================================================== habituation
    def _habituation_started(self) -> None:
        interval = self._rx.habituation_interval_s
        if interval is None:
            self._habituation = None
            return
        hab = _Habituation(interval_s=interval, next_due_run_s=interval)
        self._habituation = hab
        self._schedule_habituation(hab)

    def _run_elapsed(self) -> float:
        governor = self._governor
        planned = self._f.planned_s
        if governor is None or planned is None:
            return 0.0
        remaining = governor.remaining_s()
        return 0.0 if remaining is None else max(0.0, planned - remaining)

    def _schedule_habituation(self, hab: _Habituation) -> None:
        if hab.timer is not None:
            hab.timer.cancel()
        delay = max(0.0, hab.next_due_run_s - self._run_elapsed())
        hab.timer = self._clock.call_later(delay, partial(self._habituation_due, hab))

    def _habituation_due(self, hab: _Habituation) -> None:
        """Clock callback."""
        hab.timer = None
        if self._habituation is not hab or self._f.state is not SessionState.RUNNING:
            return
        hab.next_due_run_s += hab.interval_s
        self._schedule_habituation(hab)
        if hab.pending:
            return  # the last prompt is still unanswered: do not stack them
        hab.pending = True
        hab.number += 1
        number = hab.number
        elapsed = self._run_elapsed()
        session = self._f.session
        self._submit(partial(self._habituation_asked, session, number, elapsed))

    def _habituation_asked(self, session: str | None, number: int, elapsed: float) -> None:
        self._append(session, HabituationPrompt(response="asked"))
        self._notify(HabituationDue(self._clock.now(), number, elapsed))

    def _habituation_paused(self) -> None:
        hab = self._habituation
        if hab is not None and hab.timer is not None:
            hab.timer.cancel()
            hab.timer = None

    def _habituation_resumed(self) -> None:
        hab = self._habituation
        if hab is not None:
            self._schedule_habituation(hab)

    def _habituation_stop(self) -> None:
        hab = self._habituation
        if hab is not None and hab.timer is not None:
            hab.timer.cancel()
            hab.timer = None

    def answer_habituation(self, answer: HabituationAnswer | bool) -> None:
        """The patient's answer to "still strong but comfortable?" (``True``: comfortable,
        ``False``: faded). After "faded" or "too strong", intensity changes in the next minute
        are logged as the habituation adjustment; "too strong" also lowers every channel of the
        session by one step at once (a decrease is never delayed)."""
        self._set_command("habituation")
        if isinstance(answer, bool):
            answer = HabituationAnswer.COMFORTABLE if answer else HabituationAnswer.FADED
        hab = self._habituation
        if hab is None or not hab.pending:
            raise SessionStateError("there is no habituation question waiting for an answer")
        hab.pending = False
        session = self._f.session
        if answer is not HabituationAnswer.COMFORTABLE:
            hab.adjust_until = self._clock.now() + self._adjust_window_s
        if answer is HabituationAnswer.FADED:
            self._message(
                "habituation",
                MessageLevel.INFO,
                "Raise the intensity a little, one step at a time, until it feels strong but "
                "comfortable again.",
            )
        self._log_record(HabituationPrompt(response=HABITUATION_RESPONSES[answer]), session)
        if answer is HabituationAnswer.TOO_STRONG:
            self._lower_all("habituation adjustment (too strong)")
            self._message(
                "habituation",
                MessageLevel.INFO,
                "Lowered by one step. Press ↓ to lower it more; it should feel strong but "
                "comfortable, never painful.",
            )
        self._barrier()

    def _lower_all(self, why: str) -> None:
        """One step down on every channel of the running session that is above 0."""
        governor = self._governor
        prepared = self._f.prepared
        if governor is None or prepared is None or self._f.state is not SessionState.RUNNING:
            return
        for number in prepared.channels:
            try:
                if governor.channel_status(number).target_ma > 0:
                    governor.step_down(number, who="patient", why=why)
            except (SafetyRejection, GovernorStateError):
                continue

    def _why(self, default: str) -> str:
        hab = self._habituation
        if hab is not None and self._clock.now() <= hab.adjust_until:
            return f"habituation adjustment ({default})"
        return default

    # ================================================================== telemetry
    def _on_report(self, report: Report) -> None:
        """Driver report handler (I/O thread or clock): telemetry to the batch writer."""
        if not isinstance(report, Telemetry):
            return
        writer = self._telemetry
        if writer is not None:
            writer.add(report)
        if self._channel_listeners:
            self._channel_update(report.channel)

    # ================================================================== prescription
    def _load_prescription(self) -> Prescription:
        """The stored prescription, or the over-the-counter defaults for this device."""
        self._rx_note = ""
        stored = self._store.latest_prescription(self.patient)
        device = self._device
        if stored is None:
            return over_the_counter(device.profile if device is not None else None)
        try:
            rx = parse_prescription(stored.toml, f"stored prescription version {stored.version}")
            if rx.version != stored.version:
                rx = rx.revised(version=stored.version)
        except PrescriptionError as error:
            # a stored prescription that no longer reads must not silently become OTC
            self._rx_note = str(error)
            raise
        return rx

    def refresh_prescription(self) -> bool:
        """Read the stored prescription again between sessions (a clinician may have imported
        a new one while the app runs); True if the one in force changed. During a session, or
        when the stored one does not read (the next ``prepare`` says why), nothing changes. A
        new one with other pad sizes than the connected device was set up with is taken at the
        next connect (``prepare`` asks for it)."""
        with self._op_lock:
            if self._closed or self._f.state in (SessionState.RUNNING, SessionState.PAUSED):
                return False
            try:
                rx = self._load_prescription()
            except PrescriptionError:
                return False
            if rx == self._rx:
                return False
            governor = self._governor
            info = governor.info if governor is not None else None
            if governor is not None and info is not None:
                if self._areas(rx, info) != self._areas(self._rx, info):
                    return False
                governor.set_layers((rx.to_cap_layer(),))
            self._rx = rx
            return True

    def _areas(self, rx: Prescription, info: DeviceInfo) -> dict[int, float]:
        if rx.channels:
            return {c.channel: c.area_cm2 for c in rx.channels}
        count = min(info.channels, DEFAULT_CHANNELS)
        return {n: DEFAULT_PAD.area_cm2 for n in range(1, count + 1)}

    # ================================================================== connect
    def connect(
        self,
        url: str | None = None,
        *,
        protocol: str | None = None,
        profile: str | None = None,
        device: OpenedDevice | None = None,
    ) -> DeviceView:
        """Open (or take) a device, identify it and set every output to 0: state CONNECTED.

        ``url`` None: the saved device (``tens_control.config``), else the built-in simulator.
        Raises :class:`~drivers.base.DriverError` (port, identity) with one clear sentence.
        """
        with self._op_lock, self._log_failure_first():
            self._set_command("connect")
            self._check_open()
            if self._f.state in (SessionState.RUNNING, SessionState.PAUSED):
                if device is not None:
                    device.driver.close()
                raise SessionStateError("a session is running; stop it before reconnecting")
            self._shutdown_device()
            if device is None:
                if url is None:
                    saved = saved_device()
                    url = saved.device
                    protocol = protocol or saved.protocol
                    profile = profile or saved.profile
                device = self._opener(url, self._clock, protocol=protocol, profile=profile)
            self._device = device
            try:
                rx = self._load_prescription()
            except PrescriptionError:
                device.driver.close()
                self._device = None
                raise
            self._rx = rx
            governor = SafetyGovernor(
                device.driver,
                device.profile,
                self._clock,
                on_event=self._on_governor_event,
                layers=(rx.to_cap_layer(),),
                electrode_areas_cm2=self._areas(rx, device.info),
                dose_override=rx.allows_current_density_override,
            )
            self._governor = governor
            device.driver.add_report_handler(self._on_report)
            try:
                governor.connect()
            except BaseException:
                self._shutdown_device()
                self._barrier()
                raise
            with self._lock:
                self._f.end_reason = None
                self._f.end_detail = ""
                self._f.prepared = None
                self._f.session = None
                self._f.planned_s = None
                for key in ("ended", "comms-lost", "lead-off", "refused"):
                    self._f.banners.pop(key, None)
            self._submit(partial(self._record_device, device.info))
            self._connected_banners(device, governor, rx)
            self._transition(
                SessionState.CONNECTED,
                f"connected to {device.info.model} on {device.url}",
            )
            self._barrier()
            return self._device_view(device, governor)

    def _record_device(self, info: DeviceInfo) -> None:
        try:
            self._store.record_device(info)
        except StoreError as error:
            self._log_failed(error)

    def _connected_banners(
        self, device: OpenedDevice, governor: SafetyGovernor, rx: Prescription
    ) -> None:
        if device.is_simulator:
            self._banner(
                "simulator", MessageLevel.WARNING, "SIMULATOR — no stimulation is delivered."
            )
        else:
            self._clear_banner("simulator")
        if not governor.lead_off_detection:
            self._banner(
                "no-lead-off",
                MessageLevel.WARNING,
                "This device cannot detect an electrode coming off: check the pads yourself "
                "during the session.",
            )
        if not governor.readback:
            self._banner(
                "no-readback",
                MessageLevel.WARNING,
                "This device does not report the current it delivers (no measured output).",
            )
        if device.profile_note:
            self._banner("profile", MessageLevel.WARNING, device.profile_note)
        problems = rx.problems_for(device.profile)
        if problems:
            self._banner(
                "prescription",
                MessageLevel.WARNING,
                f"Your prescription does not fit this device ({problems[0]}); ask your "
                "clinician for one that does.",
            )

    def _shutdown_device(self) -> None:
        """Close the governor and driver of an earlier connection (output already 0)."""
        governor, device = self._governor, self._device
        self._governor = None
        self._device = None
        self._telemetry = None
        if device is not None:
            device.driver.remove_report_handler(self._on_report)
        if governor is not None:
            try:
                governor.close()
            except Exception:
                log.exception("closing the governor failed")
        elif device is not None:
            device.driver.close()
        with self._lock:
            self._f.prepared = None
        if self._f.state is not SessionState.IDLE:
            self._transition(SessionState.IDLE, "disconnected")

    def disconnect(self) -> None:
        """Stop (if a session runs: stopped by user), then close the device: state IDLE."""
        with self._op_lock:
            self._set_command("disconnect")
            governor = self._governor
            if governor is not None:
                governor.stop(StopReason.USER)
            self._barrier()
            self._shutdown_device()
            with self._lock:
                self._f.session = None
                self._f.planned_s = None
            self._barrier()

    def _check_open(self) -> None:
        if self._closed:
            raise SessionStateError("this session controller is closed")

    def _log_failure(self) -> SessionLogError:
        return SessionLogError(
            f"the session log could not be written ({self._log_error}); nothing can start "
            "until it can"
        )

    def _check_log(self) -> None:
        """Nothing starts once the log could not be written (a full disk): say why."""
        if self._log_broken:
            raise self._log_failure()

    @contextmanager
    def _log_failure_first(self) -> Iterator[None]:
        """An operation that fails because the log failed under it (the output was stopped, so
        the device refuses the next step) reports the log failure, its cause."""
        try:
            yield
        except SessionLogError:
            raise
        except Exception as error:
            if self._log_broken:
                raise self._log_failure() from error
            raise

    def _require_governor(self) -> tuple[SafetyGovernor, OpenedDevice]:
        governor, device = self._governor, self._device
        if governor is None or device is None:
            raise SessionStateError("no device is connected; connect first")
        return governor, device

    # ================================================================== programs, prepare
    def available_programs(self) -> tuple[Program, ...]:
        """The programs the patient may use on the connected device (all prescribed programs
        when no device is connected), today's program of a comparison first."""
        governor, device = self._governor, self._device
        if governor is None or device is None:
            programs = self._rx.all_programs()
        else:
            try:
                caps = governor.caps
            except DriverError:
                caps = None
            programs = self._rx.available_programs(device.profile, caps)
        today = self.scheduled_program()
        return tuple(sorted(programs, key=lambda p: p.name != today))

    def scheduled_program(self) -> str | None:
        """The program the prescription's N-of-1 comparison schedules for today (the patient's
        local day); None without a comparison, or outside it."""
        comparison = self._rx.comparison
        return None if comparison is None else comparison.program_on(self._today())

    def _today(self) -> date:
        return self._wall().astimezone().date()

    def _session_channels(self, governor: SafetyGovernor) -> tuple[int, ...]:
        """The prescribed channels; without any, the first two (a home unit's pair)."""
        usable = set(governor.channels)
        if self._rx.channels:
            return tuple(sorted(c.channel for c in self._rx.channels if c.channel in usable))
        return tuple(sorted(usable))[:DEFAULT_CHANNELS]

    def _check_trust(self, device: OpenedDevice) -> InForce:
        """Before every session: no other program runs one on this database, and the
        prescription in force is trusted (signature, log record; ``tens_control.trust.check``)."""
        other = self._store.running_elsewhere()
        if other is not None:
            raise self._refuse(
                "session lock",
                f"another program is running a session on this database: {other}; only one "
                "session at a time may run: wait for it to end, or stop it, then try again",
                source="session lock",
            )
        try:
            return check_before_session(
                self._store, self.patient, self._rx, device.profile, self._wall()
            )
        except TrustError as error:
            raise self._refuse("prescription", str(error), source="trust") from None

    def _check_preconditions(self, program: str | Program, minutes: float | None) -> _Prepared:
        governor, device = self._require_governor()
        trust = self._check_trust(device)
        rx = self._rx
        source = "over-the-counter defaults" if rx.is_over_the_counter else "prescription"
        problems = rx.problems_for(device.profile)
        if problems:
            raise self._refuse(
                "prescription",
                f"the prescription does not fit {device.profile.name}: {problems[0]}; ask your "
                "clinician for a prescription for this device",
                source="prescription",
            )
        name = program.name if isinstance(program, Program) else str(program)
        try:
            chosen = rx.program(name)
        except ProgramError as error:
            raise self._refuse("program", str(error), value=name, source=source) from None
        if isinstance(program, Program) and program != chosen:
            raise self._refuse(
                "program",
                f"program {name!r} differs from the prescribed program of that name",
                value=name,
                source=source,
            )
        caps = governor.caps
        refusal = chosen.refusal_for(device.profile, caps)
        if refusal is not None:
            raise self._refuse("program", refusal, value=name, source="device")
        if minutes is None:
            minutes = float(min(rx.session_minutes, caps.max_session.value))
        if not math.isfinite(minutes) or minutes <= 0:
            raise self._refuse(
                "session length",
                f"a session of {minutes} minutes is not possible; give a positive number",
                value=minutes,
            )
        if minutes > rx.session_minutes + 1e-9:
            raise self._refuse(
                "session length",
                f"a session of {_fmt(minutes)} minutes is longer than the "
                f"{rx.session_minutes}-minute session of the {source}",
                value=minutes,
                limit=rx.session_minutes,
                source=source,
            )
        if minutes > caps.max_session.value + 1e-9:
            raise self._refuse(
                "session length",
                f"a session of {_fmt(minutes)} minutes is longer than the "
                f"{_fmt(caps.max_session.value)}-minute maximum of {device.profile.name}",
                value=minutes,
                limit=caps.max_session.value,
                source=caps.max_session.source.value,
            )
        self._check_daily(rx, minutes, source)
        screening_uid, note = self._check_screening(device)
        channels = self._session_channels(governor)
        if not channels:
            raise self._refuse(
                "electrode site",
                "the prescription names no channel this device has; ask your clinician",
                source="prescription",
            )
        placements: dict[int, ChannelPlacement | None] = {}
        for number in channels:
            placement = self._placement(number)
            if placement is not None:
                why = pair_refusal(
                    placement.site,
                    placement.other_site,
                    placement.side,
                    placement.other_side,
                )
                if why is not None:
                    raise self._refuse(
                        "electrode site",
                        f"channel {number}: {why}; the pads may not go there",
                        value=placement.site.value,
                        source="prescription",
                    )
            placements[number] = placement
        return _Prepared(chosen, float(minutes), channels, placements, screening_uid, note, trust)

    def _check_daily(self, rx: Prescription, minutes: float, source: str) -> None:
        use = daily_use(self._store, self.patient, self._wall())
        used = use.minutes
        reason = use.block_reason(rx)
        if reason is not None:
            raise self._refuse(
                "daily limit",
                reason,
                value=use.sessions,
                limit=rx.sessions_per_day,
                source=source,
            )
        left = minutes_left_today(rx, used)
        if left is not None and minutes > left + 1e-9:
            raise self._refuse(
                "daily limit",
                f"only {_fmt(math.floor(left * 10) / 10)} of the {rx.minutes_per_day} minutes "
                f"allowed today are left; choose a session of at most {math.floor(left)} minutes",
                value=minutes,
                limit=left,
                source=source,
            )

    def _check_screening(self, device: OpenedDevice) -> tuple[str | None, str | None]:
        stored = self._store.latest_screening(self.patient)
        screening: Screening | None = None
        if stored is not None:
            try:
                screening = _to_screening(stored)
            except ValidationError:
                if not device.is_simulator:
                    raise self._refuse(
                        "screening",
                        "the stored contraindication screening cannot be read; run "
                        "`tens-control screening` again",
                    ) from None
        dropped: tuple[str, ...] = ()
        if screening is not None and screening.overrides:
            try:
                enrolment = pinned_enrolment(self._store, self.patient)
            except TrustError as error:
                raise self._refuse("screening", str(error), source="trust") from None
            screening, dropped = trusted_screening(screening, enrolment, self._wall())
        gate = screening_gate(screening, device.is_simulator)
        if gate is not None:
            why = f" ({'; '.join(dropped)})" if dropped else ""
            raise self._refuse("screening", gate + why, source="screening")
        note = screening_log_note(screening, device.is_simulator)
        return (None if stored is None else stored.uid), note

    def prepare(self, program: str | Program, minutes: float | None = None) -> Snapshot:
        """Choose the program and duration: check every precondition, configure the channels
        at 0 mA (state READY). ``minutes`` None: the prescribed (or default) session length.

        Raises :class:`PreconditionError` naming the check that failed (logged), or a
        :class:`~drivers.base.DriverError` from the device.
        """
        with self._op_lock, self._log_failure_first():
            self._set_command("prepare")
            self._check_open()
            self._check_log()
            state = self._f.state
            if state in (SessionState.RUNNING, SessionState.PAUSED):
                raise SessionStateError("a session is running; stop it first")
            if state is SessionState.ENDED:
                try:
                    self._new_session_locked()
                except SessionStateError:
                    self._shutdown_device()
                    self._barrier()
                    raise
            elif state is SessionState.IDLE:
                raise SessionStateError("no device is connected; connect first")
            governor, _ = self._require_governor()
            if governor.state is GovernorState.ENDED:
                # stopped while no session ran: identify again (every output 0) first
                if not governor.driver.connected:
                    self._shutdown_device()
                    self._barrier()
                    raise SessionStateError("the device is not connected any more; connect again")
                governor.connect()
            rx = self._load_prescription()
            if rx != self._rx:
                info = governor.info
                if self._areas(rx, info) != self._areas(self._rx, info):
                    raise SessionStateError(
                        "the prescription changed the pad sizes since the device was connected; "
                        "reconnect the device"
                    )
                self._rx = rx
                governor.set_layers((rx.to_cap_layer(),))
            prepared = self._check_preconditions(program, minutes)
            self._load_device_cap(governor)
            settings = prepared.program.channel_settings()
            try:
                for number in prepared.channels:
                    governor.configure(number, settings)
            except SafetyRejection as error:
                self._barrier()
                raise PreconditionError("program", str(error)) from None
            with self._lock:
                self._f.prepared = prepared
                self._f.planned_s = prepared.minutes * 60.0
            self._transition(
                SessionState.READY,
                f"{prepared.program.name} for {_fmt(prepared.minutes)} min on channel(s) "
                f"{', '.join(str(n) for n in prepared.channels)}",
            )
            self._barrier()
            return self.snapshot()

    def _load_device_cap(self, governor: SafetyGovernor) -> None:
        """A device that enforces a cap signed by the clinic (TSP/2 §16) gets the cap signed
        for it in the prescription in force, before any session; without one it is refused."""
        info = governor.info
        key = info.cap_key_id
        if key is None:
            return
        cap = self._rx.device_cap(info.serial_number)
        if cap is None or cap.key_id != key:
            why = (
                f"your prescription has none for this device (serial {info.serial_number})"
                if cap is None
                else f"the one in your prescription is signed with key {cap.key_id}"
            )
            self._barrier()
            raise self._refuse(
                "device cap",
                f"this device only stimulates up to a cap signed by your clinic (key {key}), "
                f"and {why}; ask your clinic for a prescription signed for this device",
                value=info.serial_number,
            )
        if info.signed_cap_ma == cap.max_ma:
            return
        try:
            governor.driver.load_signed_cap(cap.max_ma, cap.issued, cap.signature)
        except DriverError as error:
            self._barrier()
            raise self._refuse(
                "device cap",
                f"the device refused the cap signed for it ({error}); ask your clinic for a "
                "new prescription signed for this device",
                value=cap.max_ma,
            ) from None
        governor.connect()  # identified again: the cap it now enforces is one of its limits

    def _new_session_locked(self) -> None:
        """After ENDED: re-identify the device (every output 0) for another session."""
        governor = self._governor
        if governor is None or not governor.driver.connected:
            raise SessionStateError("the device is not connected any more; connect again")
        governor.connect()
        with self._lock:
            self._f.end_reason = None
            self._f.end_detail = ""
            self._f.prepared = None
            self._f.session = None
            self._f.planned_s = None
            self._f.banners.pop("ended", None)
            self._habituation = None
        self._clear_banner("ended")
        self._transition(SessionState.CONNECTED, "ready for another session")

    # ================================================================== pain, notes, adverse
    def record_pain(
        self,
        nrs: int | None,
        *,
        when: RatingTime | pain_mod.RatingTime = RatingTime.BEFORE,
        pain: PainSite | pain_mod.PainSite = PainSite.PHANTOM,
        context: PainContext | pain_mod.PainContext = PainContext.REST,
        note: str = "",
    ) -> None:
        """Record an NRS 0-10 rating (``None``: skipped, stored as missing, never 0).

        A "before" rating given before ``start()`` is linked to the session when it starts.
        Raises :class:`~tens_control.pain.PainRatingError` for anything but 0-10 or None.
        """
        self._set_command("rate")
        value = None if nrs is None else pain_mod.nrs(nrs)
        rating = _PendingRating(
            value,
            RatingTime(_enum_value(when)),
            PainSite(_enum_value(pain)),
            PainContext(_enum_value(context)),
            note,
            self._wall(),
        )
        with self._lock:
            state = self._f.state
            session = self._f.session
            if session is None and state is SessionState.READY:
                self._pending_ratings.append(rating)
                return
        self._barrier()
        self._store_rating(rating, session)

    def _store_rating(self, rating: _PendingRating, session: str | None) -> None:
        self._store.add_pain_rating(
            rating.nrs,
            rating.when,
            rating.pain,
            context=rating.context,
            session=session,
            at=rating.at,
            note=rating.note,
            patient=self.patient,
        )

    def _flush_pending_ratings(self, session: str | None) -> None:
        with self._lock:
            pending, self._pending_ratings = self._pending_ratings, []
        for rating in pending:
            self._store_rating(rating, session)

    def add_note(self, text: str) -> None:
        """A note from the patient, logged with the current session (if any)."""
        self._set_command("note")
        if not text.strip():
            raise SessionError("the note is empty; write something or skip it")
        self._log_record(Note(text=text.strip()[:10_000]), self._f.session)
        self._barrier()

    def record_adverse_event(
        self, kind: AdverseKind | str, severity: Severity | str, notes: str = ""
    ) -> None:
        """Skin redness, burn, headache or other (``other`` needs notes), with its severity."""
        self._set_command("adverse_event")
        try:
            parsed = pain_mod.AdverseEvent(
                at=self._wall(),
                kind=pain_mod.AdverseKind(_enum_value(kind)),
                severity=pain_mod.Severity(_enum_value(severity)),
                notes=notes,
            )
        except (ValidationError, ValueError) as error:
            raise SessionError(f"adverse event not recorded: {error}") from None
        self._barrier()
        self._store.add_adverse_event(
            AdverseKind(parsed.kind.value),
            Severity(parsed.severity.value),
            session=self._f.session,
            at=parsed.at,
            notes=parsed.notes,
            patient=self.patient,
        )

    # ================================================================== running
    def start(self) -> Snapshot:
        """READY -> RUNNING: the session is logged, then output starts with every channel at
        0 mA. The preconditions are checked again first."""
        with self._op_lock, self._log_failure_first():
            self._set_command("start")
            self._check_open()
            self._check_log()
            if self._f.state is not SessionState.READY:
                raise SessionStateError(
                    f"cannot start while {self._f.state.value}; choose a program first"
                )
            governor, device = self._require_governor()
            prepared = self._f.prepared
            assert prepared is not None
            fresh = self._check_preconditions(prepared.program, prepared.minutes)
            plan = self._plan(governor, fresh)
            self._barrier()
            info = governor.info  # identified afresh for this session (its odometer is current)
            odometer = None
            if info.odometer_sessions is not None and info.odometer_stimulation_s is not None:
                odometer = Odometer(
                    sessions=info.odometer_sessions, stimulation_s=info.odometer_stimulation_s
                )
            session = self._store.begin_session(
                plan,
                patient=self.patient,
                device=info,
                simulator=device.is_simulator,
                at=self._wall(),
                mono=self._clock.now(),
                odometer=odometer,
            )
            with self._lock:
                self._f.session = session
                self._f.prepared = fresh
            self._flush_pending_ratings(session)
            if fresh.trust is not None:
                self._log_record(
                    Note(text=fresh.trust.describe(), data={"trust": fresh.trust.log_data()}),
                    session,
                )
            if fresh.screening_note:
                self._log_record(
                    Note(text=fresh.screening_note, data={"screening": fresh.screening_uid}),
                    session,
                )
            comparison = self._rx.comparison
            schedule = (
                None
                if comparison is None
                else comparison.log_data(self._today(), prepared.program.name)
            )
            if schedule is not None:
                deviation = " (not the scheduled program)" if schedule["deviation"] else ""
                self._log_record(
                    Note(
                        text=f"program comparison: block {schedule['block']}, scheduled "
                        f"{schedule['scheduled']}, used {schedule['program']}{deviation}",
                        data={"comparison": schedule},
                    ),
                    session,
                )
            if self._rx.is_over_the_counter:
                self._log_record(
                    Note(
                        text="no prescription on record: over-the-counter defaults "
                        f"({self._rx.session_minutes}-minute sessions, at most "
                        f"{self._rx.sessions_per_day} a day, {DEFAULT_PAD.label} pads assumed)",
                        data={"over_the_counter": True},
                    ),
                    session,
                )
            self._telemetry = self._store.telemetry_writer(session)
            try:
                governor.start(fresh.minutes * 60.0)
            except DriverError:
                if governor.state is not GovernorState.ENDED:
                    governor.stop(StopReason.DEVICE_FAULT)
                self._barrier()
                raise
            self._barrier()
            return self.snapshot()

    def _plan(self, governor: SafetyGovernor, prepared: _Prepared) -> SessionPlan:
        caps = governor.caps
        channels: list[ChannelPlan] = []
        cap_data: dict[str, Any] = {
            "max_session_min": caps.max_session.value,
            "max_session_source": caps.max_session.source.value,
            "amplitude_step_ma": caps.amplitude_step_ma,
            "ramp_step_ma": governor.ramp_step_ma,
            "ramp_rate_ma_per_s": governor.ramp_rate_ma_per_s,
        }
        areas = self._areas(self._rx, governor.info)
        for number in prepared.channels:
            bound = governor.max_amplitude(number)
            placement = prepared.placements.get(number)
            channels.append(
                ChannelPlan(
                    channel=number,
                    settings=prepared.program.channel_settings(),
                    site=(
                        placement.describe() if placement is not None else self._site_text(number)
                    )[:200],
                    area_cm2=areas.get(number),
                    cap_ma=min(bound.value, 200.0),
                )
            )
            cap_data[f"channel_{number}_max_ma"] = bound.value
            cap_data[f"channel_{number}_source"] = bound.source.value
        return SessionPlan(
            program=prepared.program.name,
            channels=tuple(channels),
            caps=cap_data,
            planned_minutes=prepared.minutes,
            prescription_version=None if self._rx.is_over_the_counter else self._rx.version,
            screening=prepared.screening_uid,
            notes="",
        )

    def _intensity(self, channel: int, action: str, change: Callable[[], float]) -> IntensityResult:
        self._set_command(action)
        governor = self._governor
        state = self._f.state
        if governor is None or state is not SessionState.RUNNING:
            if state is SessionState.PAUSED:
                text = "The session is paused: resume it first (the intensity starts from zero)."
            else:
                text = "The intensity can be changed only while a session is running."
            self._message(f"limit-{channel}", MessageLevel.INFO, text)
            self._barrier()
            return IntensityResult(False, channel, 0.0, text)
        try:
            target = change()
        except SafetyRejection as error:
            text = self._rejection_text(error)
            self._message(f"limit-{channel}", MessageLevel.INFO, text)
            self._barrier()
            current = self._target(governor, channel)
            limit = error.limit if isinstance(error.limit, float | int) else None
            return IntensityResult(
                False,
                channel,
                current,
                text,
                None if limit is None else float(limit),
                error.source,
            )
        except GovernorStateError as error:
            text = str(error)
            text = text[:1].upper() + text[1:] + "."
            self._message(f"limit-{channel}", MessageLevel.INFO, text)
            self._barrier()
            return IntensityResult(False, channel, self._target(governor, channel), text)
        self._barrier()
        return IntensityResult(True, channel, target)

    @staticmethod
    def _target(governor: SafetyGovernor, channel: int) -> float:
        try:
            return governor.channel_status(channel).target_ma
        except DriverError:
            return 0.0

    @staticmethod
    def _rejection_text(error: SafetyRejection) -> str:
        if error.parameter == "amplitude" and isinstance(error.limit, float | int):
            where = f"Channel {error.channel}" if error.channel is not None else "The intensity"
            return (
                f"{where} is at its highest allowed level, {_fmt(float(error.limit))} mA "
                f"({_SOURCE_WORDS.get(error.source, error.source.value)}). It will not go higher."
            )
        text = str(error)
        return text[:1].upper() + text[1:] + "."

    def increase(self, channel: int) -> IntensityResult:
        """One amplitude step up on ``channel`` (ramped by the governor). At a limit the
        result is refused with a message naming the limit and where it comes from."""
        governor = self._governor
        why = self._why("patient raised intensity")
        return self._intensity(
            channel,
            "increase",
            lambda: governor.step_up(channel, who="patient", why=why) if governor else 0.0,
        )

    def decrease(self, channel: int) -> IntensityResult:
        """One amplitude step down on ``channel`` (at once)."""
        governor = self._governor
        why = self._why("patient lowered intensity")
        return self._intensity(
            channel,
            "decrease",
            lambda: governor.step_down(channel, who="patient", why=why) if governor else 0.0,
        )

    def hold(self, channel: int, *, why: str = "key released") -> None:
        """S16: stop a rise on ``channel`` where it is (the patient let go of the key, or
        pressed another). Never lowers the output; nothing happens when it is not rising."""
        self._set_command("hold")
        governor = self._governor
        if governor is None or self._f.state is not SessionState.RUNNING:
            return
        governor.hold(channel, who="patient", why=why)
        self._barrier()

    def set_target(
        self, channel: int, milliamps: float, *, who: str = "patient", why: str = ""
    ) -> IntensityResult:
        """Head for ``milliamps`` on ``channel`` (ramped up, or down at once)."""
        governor = self._governor
        reason = self._why(why or "target set")

        def change() -> float:
            if governor is None:
                return 0.0
            governor.set_target(channel, milliamps, who=who, why=reason)
            return governor.channel_status(channel).target_ma

        return self._intensity(channel, "set_target", change)

    def pause(self) -> None:
        """RUNNING -> PAUSED: every output 0 at once. Does not wait for the device."""
        self._set_command("pause")
        governor = self._governor
        if governor is None or self._f.state is not SessionState.RUNNING:
            raise SessionStateError(f"cannot pause while {self._f.state.value}")
        try:
            governor.pause(StopReason.USER)
        except GovernorStateError as error:
            self._barrier()
            raise SessionStateError(str(error)) from None
        self._barrier()

    def resume(self) -> None:
        """PAUSED -> RUNNING from 0 mA (waits for the device's acknowledgement)."""
        with self._op_lock:
            self._set_command("resume")
            governor = self._governor
            if governor is None or self._f.state is not SessionState.PAUSED:
                raise SessionStateError(f"cannot resume while {self._f.state.value}")
            still_off = self._electrodes_still_off(governor)
            if still_off:
                where = ", ".join(str(n) for n in still_off)
                text = (
                    f"the electrode on channel {where} is still off the skin, so the session "
                    "stays paused: press the pad firmly onto clean, dry skin and check that the "
                    "lead is plugged in, then resume"
                )
                raise SessionStateError(text)
            try:
                governor.resume()
            except GovernorStateError as error:
                self._barrier()
                raise SessionStateError(str(error)) from None
            except DriverError:
                self._barrier()
                raise
            self._barrier()

    def _electrodes_still_off(self, governor: SafetyGovernor) -> list[int]:
        """The session's channels whose electrode the device still reports off (only devices
        that detect lead-off can say so; on others the patient's word is all there is)."""
        if not governor.lead_off_detection:
            return []
        prepared = self._f.prepared
        channels = prepared.channels if prepared is not None else governor.channels
        off = []
        for number in channels:
            try:
                if governor.channel_status(number).lead_off:
                    off.append(number)
            except DriverError:
                continue
        return off

    def stop(self) -> None:
        """End the session now (stopped by user): every output 0, STOP written before this
        returns. Idempotent; without a session it just makes sure the output is 0."""
        self._set_command("stop")
        governor = self._governor
        if governor is not None:
            governor.stop(StopReason.USER)
        self._barrier()

    def emergency_stop(self) -> None:
        """S10: every output 0 now. The STOP frame is written before this returns; it never
        waits for the device or for the log, never raises. Logged as emergency stop."""
        try:
            self._set_command("emergency_stop")
            governor = self._governor
            if governor is not None:
                governor.emergency_stop()
        except Exception:  # an emergency stop must never raise
            log.exception("emergency stop failed")

    # ================================================================== finish, close
    def finish(self, notes: str = "") -> Snapshot:
        """After the session ended: log any notes, then get ready for another session
        (CONNECTED, every output 0) or, if the device is gone, IDLE."""
        with self._op_lock:
            self._set_command("finish")
            if self._f.state is not SessionState.ENDED:
                raise SessionStateError(f"cannot finish while {self._f.state.value}")
            if notes.strip():
                self.add_note(notes)
            self._flush_pending_ratings(None)
            try:
                self._new_session_locked()
            except (SessionStateError, DriverError) as error:
                log.info("device not available after the session: %s", error)
                self._shutdown_device()
                with self._lock:
                    self._f.session = None
            self._barrier()
            return self.snapshot()

    def close(self) -> None:
        """Stop first (stopped by user, if a session runs), then close the device. Idempotent.
        The store stays open (its owner closes it)."""
        self._set_command("close")
        governor = self._governor
        if governor is not None and not self._closed:
            # before taking the operation lock: a connect/start blocked on the device must not
            # delay the stop
            try:
                governor.stop(StopReason.USER)
            except Exception:
                log.exception("stop on close failed")
        with self._op_lock:
            if self._closed:
                return
            governor = self._governor
            if governor is not None:
                try:
                    governor.stop(StopReason.USER)
                except Exception:
                    log.exception("stop on close failed")
            try:
                self._barrier()
            except SessionLogError:
                log.exception("log barrier on close failed")
            try:
                self._flush_pending_ratings(self._f.session)
            except Exception:
                log.exception("could not store pending ratings on close")
            self._shutdown_device()
            self._closed = True
            self._jobs.close()
            self._store.on_write_failure(None)

    def __enter__(self) -> SessionController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "END_MESSAGES",
    "END_REASON_FOR_STOP",
    "END_WORDS",
    "BannerCleared",
    "ChannelUpdate",
    "ChannelView",
    "DeviceOpener",
    "DeviceView",
    "EndReason",
    "EndedUpdate",
    "HabituationAnswer",
    "HabituationDue",
    "IntensityResult",
    "Listener",
    "Message",
    "MessageLevel",
    "MessageUpdate",
    "PreconditionError",
    "SessionController",
    "SessionError",
    "SessionLogError",
    "SessionState",
    "SessionStateError",
    "Snapshot",
    "StateUpdate",
    "Update",
]
