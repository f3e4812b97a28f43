"""The safety governor: every command to a TENS unit passes through it (DESIGN.md §4, S1-S10).

:class:`SafetyGovernor` wraps any :class:`~drivers.base.TensDriver`. The application never
calls the driver's commands itself; it calls the governor, which

* checks every request against the layered caps (manufacturer profile ∩ device-reported
  limits ∩ prescription ∩ the patient's comfort cap) and the S5 dose rules *before a byte is
  written*, and refuses (never clamps) anything out of range with a :class:`SafetyRejection`
  (S3, S4, S5);
* starts every channel at 0 mA and ramps increases on the clock, one step at a time, never
  faster than the profile's ramp rate; decreases and stops are sent at once (S1, S2);
* stops at the planned session duration (S6);
* pauses on lead-off or impedance over threshold (S7), ends the session on comms loss (S8),
  on an output read-back mismatch (S9), on device faults, resets, watchdog trips and the
  device's emergency switch, and on :meth:`SafetyGovernor.emergency_stop` (S10);
* reports everything that happened as typed :class:`SafetyEvent` values to ``on_event`` so
  that the application can log it (who/why of every change included).

States::

    DISCONNECTED --connect()--> IDLE --start()--> RUNNING <--pause()/resume()--> PAUSED
    any connected state --stop()/emergency_stop()/fault--> ENDED --connect()--> IDLE

A session is one ``start()`` .. ENDED. A new session on the same device needs ``connect()``
again (the device is re-identified, every output set to 0 and every channel must be
configured again). After COMMS_LOST the driver's link is dead: open a new driver and make a
new governor. Stimulation never resumes by itself.

Threading: the governor is safe to call from any thread. Reports from the driver's reader
thread, ramp ticks and timers from the clock's scheduler and calls from the application all
take one lock, briefly; nothing under the lock blocks. Only the public methods that must wait
for the device (``connect``, ``configure``, ``start``, ``resume``) wait for an
acknowledgement, on the caller's thread, without holding the lock. ``stop`` and
``emergency_stop`` write STOP before they return and never wait.

Events are delivered in order, outside the lock, on whichever thread produced them (the
caller's thread for the events of a public call, so a REJECTED event has been delivered
before :class:`SafetyRejection` is raised). ``on_event`` must be quick and must not wait for
the device; it may call the governor (for example ``stop()``).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DeviceRejectedError,
    DriverError,
    ErrorCode,
    Pending,
    Report,
    Telemetry,
    TensDriver,
)
from drivers.clock import Clock, TimerHandle
from drivers.limits import (
    Bound,
    CapLayer,
    CapSource,
    DeviceProfile,
    DoseVerdict,
    EffectiveCaps,
    dose,
    effective_caps,
    max_amplitude_for_dose,
)

log = logging.getLogger(__name__)

LEAD_OFF_IMPEDANCE_OHM = 10_000.0
"""Default impedance above which a channel is treated as lead-off (S7) from telemetry."""
READBACK_RELATIVE = 0.10
"""S9: a reading differs when it is off by more than 10 % of the set current (at least one
amplitude step) or by more than 2 mA, whichever is *smaller* (the stricter reading)."""
READBACK_ABSOLUTE_MA = 2.0
READBACK_CONSECUTIVE = 2
"""S9: this many consecutive differing readings on a channel stop the session."""
COMMS_TIMEOUT_S = 1.0
"""S8: a governor command still unacknowledged this long after it was sent ends the session
(the driver's own comms watchdog normally reports COMMS_LOST first)."""


class GovernorState(StrEnum):
    DISCONNECTED = "disconnected"
    """Before ``connect()``, and after ``close()``."""
    IDLE = "idle"
    """Connected, every output 0, no session running; channels may be configured."""
    RUNNING = "running"
    """A session is running; amplitudes follow their targets through the ramp."""
    PAUSED = "paused"
    """Every output 0 (STOP sent); ``resume()`` starts again from 0 mA."""
    ENDED = "ended"
    """The session is over (see ``end_reason``); every output 0. ``connect()`` for another."""


class StopReason(StrEnum):
    """Why output was stopped (end reason of a session, or the reason of a pause)."""

    USER = "user"
    """``stop()`` by the application (the patient or clinician pressed stop)."""
    EMERGENCY = "emergency"
    """``emergency_stop()`` (S10)."""
    DURATION = "duration"
    """The planned session duration was reached (S6)."""
    LEAD_OFF = "lead_off"
    """Lead-off event or impedance over threshold (S7). Used as the reason of a *pause*."""
    COMMS_LOST = "comms_lost"
    """The driver reported comms loss, a command went unacknowledged, or the port vanished (S8)."""
    DEVICE_FAULT = "device_fault"
    """The device reported an internal fault, stopped output by itself, or refused a command
    for a reason other than a limit (state, parameter, busy...)."""
    DEVICE_RESET = "device_reset"
    """The device restarted (everything 0 and unconfigured)."""
    EMERGENCY_SWITCH = "emergency_switch"
    """The device's own emergency switch was pressed."""
    WATCHDOG = "watchdog"
    """The device's watchdog tripped (it stopped hearing from the host)."""
    OUTPUT_MISMATCH = "output_mismatch"
    """Read-back: measured current differed from the set current (S9), or a reading was
    above the effective cap, or output was measured while it should have been 0."""
    LIMIT = "limit"
    """The device refused an amplitude or setting as over its limit although the governor had
    checked it: the host's and the device's limits disagree, so the session ends."""
    CLOSED = "closed"
    """``close()`` was called while a session was running or paused."""


class SafetyEventKind(StrEnum):
    CONNECTED = "connected"
    """``connect()`` identified the device; data: model, serial, firmware, protocol, caps."""
    NO_LEAD_OFF_DETECTION = "no_lead_off_detection"
    """The device cannot detect lead-off (flag it in the UI and log)."""
    NO_READBACK = "no_readback"
    """The device does not report measured current: S9 read-back cannot run."""
    CAPS_CHANGED = "caps_changed"
    """Cap layers or the comfort cap changed; data: per channel new max."""
    CONFIGURED = "configured"
    """A channel's program settings were acknowledged; data: the settings, dose limit."""
    STARTED = "started"
    """A session started at 0 mA; data: duration_s."""
    TARGET_CHANGED = "target_changed"
    """A channel's target changed; data: from_ma, to_ma, who, why."""
    AMPLITUDE_SET = "amplitude_set"
    """The device acknowledged an amplitude (each ramp step); data: from_ma, to_ma, who, why."""
    REJECTED = "rejected"
    """A request was refused and nothing was sent; data: parameter, value, limit, source, who,
    why (or a state error: parameter "state")."""
    DEVICE_REJECTED = "device_rejected"
    """The device answered a command with an error; data: command, code."""
    PAUSED = "paused"
    """Every output 0; reason USER or LEAD_OFF."""
    RESUMED = "resumed"
    """Running again from 0 mA."""
    LEAD_OFF = "lead_off"
    """Lead-off on ``channel`` (device event or impedance over threshold; data: impedance)."""
    LEAD_ON = "lead_on"
    """Telemetry shows ``channel``'s electrode contact restored (impedance under threshold)."""
    OUTPUT_MISMATCH = "output_mismatch"
    """Read-back mismatch on ``channel``; data: set_ma, measured_ma, tolerance_ma."""
    COMMS_LOST = "comms_lost"
    """The link to the device is lost (S8)."""
    DEVICE_EVENT = "device_event"
    """Something the device reported that is not covered above (battery low, fault, reset,
    watchdog, emergency switch, output stopped); data: kind."""
    STOPPED = "stopped"
    """Every output 0 and the session ENDED; ``reason`` says why."""
    EMERGENCY_STOP = "emergency_stop"
    """``emergency_stop()`` was called (followed by STOPPED with reason EMERGENCY)."""
    CLOSED = "closed"
    """``close()``: the port is closed."""


EventData = dict[str, float | str | None]


@dataclass(frozen=True)
class SafetyEvent:
    """Something the application must log. ``time`` is the governor's clock time."""

    time: float
    kind: SafetyEventKind
    channel: int | None = None
    reason: StopReason | None = None
    detail: str = ""
    data: EventData = field(default_factory=dict)


class GovernorStateError(DriverError):
    """A call that is not allowed in the governor's current state (nothing was sent)."""


class SafetyRejection(DriverError):
    """A request refused by the governor (S4): nothing was written to the port.

    ``str(e)`` is one sentence a patient or clinician can act on, for example
    "amplitude 45 mA on channel 1 is above the prescription cap of 40 mA; nothing was sent".
    """

    def __init__(
        self,
        parameter: str,
        value: float | str,
        limit: float | str,
        source: CapSource,
        channel: int | None,
        message: str,
    ) -> None:
        self.parameter = parameter
        self.value = value
        self.limit = limit
        self.source = source
        self.channel = channel
        super().__init__(message)


@dataclass(frozen=True)
class ChannelStatus:
    """A snapshot of one channel as the governor knows it."""

    channel: int
    settings: ChannelSettings | None
    """The acknowledged program settings, or None when not configured."""
    target_ma: float
    """Where the ramp is heading."""
    commanded_ma: float
    """The last amplitude sent (acknowledged or not)."""
    set_ma: float
    """The last amplitude the device acknowledged."""
    measured_ma: float | None
    """The last measured current from telemetry (None if not reported)."""
    impedance_ohm: float | None
    lead_off: bool
    cap: Bound
    """The binding amplitude cap, including the dose-derived limit (source DOSE)."""

    @property
    def ramping(self) -> bool:
        return self.commanded_ma < self.target_ma


_SOURCE_PHRASE: dict[CapSource, str] = {
    CapSource.PROFILE: "the manufacturer's limit",
    CapSource.DEVICE: "the device's own limit",
    CapSource.PRESCRIPTION: "the prescription cap",
    CapSource.COMFORT: "your comfort cap",
    CapSource.DOSE: "the dose limit",
}
_END_FOR_DEVICE_EVENT: dict[DeviceEventKind, StopReason] = {
    DeviceEventKind.FAULT: StopReason.DEVICE_FAULT,
    DeviceEventKind.OUTPUT_STOPPED: StopReason.DEVICE_FAULT,
    DeviceEventKind.DEVICE_RESET: StopReason.DEVICE_RESET,
    DeviceEventKind.WATCHDOG_TRIP: StopReason.WATCHDOG,
    DeviceEventKind.EMERGENCY_SWITCH: StopReason.EMERGENCY_SWITCH,
}
_CONNECTED_STATES = (GovernorState.IDLE, GovernorState.RUNNING, GovernorState.PAUSED)
_EPS = 1e-9


def _fmt(value: float) -> str:
    """A number as a person reads it: 45, 12.5, 0.125."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class _Channel:
    """The governor's book-keeping for one channel (guarded by the governor's lock)."""

    __slots__ = (
        "acked",
        "commanded",
        "dose_bound",
        "epoch",
        "impedance",
        "inc_inflight",
        "last_increase",
        "lead_off",
        "measured",
        "mismatches",
        "number",
        "settings",
        "target",
        "timer",
        "who",
        "why",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.settings: ChannelSettings | None = None
        self.dose_bound: Bound | None = None
        self.target = 0.0
        self.commanded = 0.0
        self.acked = 0.0
        self.measured: float | None = None
        self.impedance: float | None = None
        self.lead_off = False
        self.epoch = 0
        self.inc_inflight = False
        self.last_increase = -math.inf
        self.timer: TimerHandle | None = None
        self.mismatches = 0
        self.who = "governor"
        self.why = ""

    def reset_output(self) -> None:
        """Forget targets and in-flight ramp work (the device is being zeroed)."""
        self.epoch += 1
        self.target = 0.0
        self.commanded = 0.0
        self.mismatches = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Sent:
    """One amplitude command in flight."""

    __slots__ = ("channel", "epoch", "increase", "timer", "value", "who", "why")

    def __init__(self, channel: _Channel, value: float, increase: bool, who: str, why: str) -> None:
        self.channel = channel
        self.epoch = channel.epoch
        self.value = value
        self.increase = increase
        self.who = who
        self.why = why
        self.timer: TimerHandle | None = None


class SafetyGovernor:
    """Wraps a driver; enforces S1-S10. See the module docstring for states and threading."""

    def __init__(
        self,
        driver: TensDriver,
        profile: DeviceProfile,
        clock: Clock,
        *,
        on_event: Callable[[SafetyEvent], None],
        layers: tuple[CapLayer, ...] = (),
        electrode_areas_cm2: Mapping[int, float] | None = None,
        dose_override: bool = False,
        lead_off_impedance_ohm: float = LEAD_OFF_IMPEDANCE_OHM,
    ) -> None:
        """``layers``: extra cap layers (prescription, comfort), applied at ``connect()``.

        ``electrode_areas_cm2``: the electrode area on record per channel (S5). A channel
        without an area cannot be raised above 0 mA (the dose cannot be checked).
        ``dose_override``: the prescription records a clinician override of the 2 mA/cm²
        r.m.s. attention level (the 0.25 W/cm² limit is never overridden).
        ``lead_off_impedance_ohm``: telemetry impedance above this is treated as lead-off.
        """
        self._driver = driver
        self._profile = profile
        self._clock = clock
        self._on_event = on_event
        self._layers = tuple(layers)
        self._comfort: dict[int, float] = {}
        self._areas: dict[int, float] = dict(electrode_areas_cm2 or {})
        self._dose_override = dose_override
        self._lead_off_ohm = lead_off_impedance_ohm
        self._load_ohm = profile.amplitude.load_ohm

        self._lock = threading.RLock()
        self._depth = 0
        """How deep the lock-holding thread is in the governor's own calls (events are delivered
        when the outermost call leaves)."""
        self._events: deque[SafetyEvent] = deque()
        self._emit_lock = threading.RLock()

        self._state = GovernorState.DISCONNECTED
        self._end_reason: StopReason | None = None
        self._info: DeviceInfo | None = None
        self._caps: EffectiveCaps | None = None
        self._channels: dict[int, _Channel] = {}
        self._step = profile.amplitude.step_ma
        self._ramp_step = profile.ramp.step_ma
        self._ramp_rate = profile.ramp.rate_ma_per_s
        self._lead_off_detection = profile.lead_off_detection
        self._readback = profile.reports_current
        self._remaining_s = 0.0
        self._run_started = 0.0
        self._duration_timer: TimerHandle | None = None
        self._closed = False
        driver.add_report_handler(self._on_report)

    # ------------------------------------------------------------------ plumbing
    def _enter(self) -> None:
        self._lock.acquire()
        self._depth += 1

    def _leave(self, blocking: bool) -> None:
        # only the thread holding the (re-entrant) lock changes the depth: a plain counter
        self._depth = depth = self._depth - 1
        self._lock.release()
        if depth == 0:
            self._flush(blocking)

    def _flush(self, blocking: bool) -> None:
        """Deliver queued events in order, outside the lock.

        ``blocking``: the caller's thread at a public edge waits for another thread that is
        delivering; I/O and clock threads never wait (the deliverer picks their events up).
        """
        while self._events:
            if not self._emit_lock.acquire(blocking=blocking):
                return
            try:
                while True:
                    try:
                        event = self._events.popleft()
                    except IndexError:
                        break
                    try:
                        self._on_event(event)
                    except Exception:  # a logging failure must not break the safety path
                        log.exception("on_event handler failed for %s", event.kind)
            finally:
                self._emit_lock.release()

    def _emit(
        self,
        kind: SafetyEventKind,
        channel: int | None = None,
        reason: StopReason | None = None,
        detail: str = "",
        extra: EventData | None = None,
        **data: float | str | None,
    ) -> None:
        if extra:
            data.update(extra)
        self._events.append(SafetyEvent(self._clock.now(), kind, channel, reason, detail, data))

    def _require_caps(self) -> EffectiveCaps:
        if self._caps is None:
            raise GovernorStateError("the device is not connected; connect first")
        return self._caps

    def _grid_floor(self, value: float) -> float:
        return round(math.floor(value / self._step + 1e-6) * self._step, 6)

    def _on_grid(self, value: float) -> bool:
        steps = value / self._step
        return abs(steps - round(steps)) < 1e-6

    # ------------------------------------------------------------------ read-only state
    @property
    def state(self) -> GovernorState:
        return self._state

    @property
    def end_reason(self) -> StopReason | None:
        """Why the session ENDED (None before that)."""
        return self._end_reason

    @property
    def driver(self) -> TensDriver:
        return self._driver

    @property
    def profile(self) -> DeviceProfile:
        return self._profile

    @property
    def info(self) -> DeviceInfo:
        """The device identity from ``connect()``. Raises GovernorStateError before."""
        if self._info is None:
            raise GovernorStateError("the device is not connected; connect first")
        return self._info

    @property
    def caps(self) -> EffectiveCaps:
        """The effective caps (profile ∩ device ∩ layers ∩ comfort). Raises before connect."""
        return self._require_caps()

    @property
    def channels(self) -> tuple[int, ...]:
        """The usable channel numbers (from 1)."""
        return tuple(sorted(self._require_caps().channels))

    @property
    def lead_off_detection(self) -> bool:
        """False when the device cannot detect lead-off (flagged at connect)."""
        return self._lead_off_detection

    @property
    def readback(self) -> bool:
        """False when the device does not report measured current (S9 cannot run)."""
        return self._readback

    @property
    def ramp_step_ma(self) -> float:
        """The largest single increase the ramp sends (on the amplitude grid)."""
        return self._ramp_step

    @property
    def ramp_rate_ma_per_s(self) -> float:
        return self._ramp_rate

    def _channel(self, channel: int) -> _Channel:
        found = self._channels.get(channel)
        if found is None:
            self._require_caps()
            known = ", ".join(str(c) for c in sorted(self._channels))
            raise GovernorStateError(f"there is no channel {channel}; channels are {known}")
        return found

    def channel_status(self, channel: int) -> ChannelStatus:
        with self._lock:
            ch = self._channel(channel)
            return ChannelStatus(
                channel=channel,
                settings=ch.settings,
                target_ma=ch.target,
                commanded_ma=ch.commanded,
                set_ma=ch.acked,
                measured_ma=ch.measured,
                impedance_ohm=ch.impedance,
                lead_off=ch.lead_off,
                cap=self._max_bound(ch),
            )

    def max_amplitude(self, channel: int) -> Bound:
        """The highest amplitude ``set_target`` accepts on ``channel`` now, on the step grid,
        and the layer that binds (PROFILE, DEVICE, PRESCRIPTION, COMFORT or DOSE)."""
        with self._lock:
            return self._max_bound(self._channel(channel))

    def _max_bound(self, ch: _Channel) -> Bound:
        cap = self._require_caps().channel(ch.number).max_amplitude
        best = Bound(self._grid_floor(cap.value), cap.source)
        if ch.dose_bound is not None and ch.dose_bound.value < best.value:
            return ch.dose_bound
        return best

    def remaining_s(self) -> float | None:
        """Stimulation time left in the running or paused session (pauses do not count)."""
        with self._lock:
            if self._state is GovernorState.RUNNING:
                return max(0.0, self._remaining_s - (self._clock.now() - self._run_started))
            if self._state is GovernorState.PAUSED:
                return max(0.0, self._remaining_s)
            return None

    # ------------------------------------------------------------------ rejections
    def _reject(
        self,
        parameter: str,
        value: float | str,
        limit: float | str,
        source: CapSource,
        channel: int | None,
        message: str,
        who: str = "",
        why: str = "",
    ) -> SafetyRejection:
        """Record a REJECTED event; the caller raises the returned error. Nothing is sent."""
        message = f"{message}; nothing was sent"
        self._emit(
            SafetyEventKind.REJECTED,
            channel,
            detail=message,
            parameter=parameter,
            value=value,
            limit=limit,
            source=source.value,
            who=who,
            why=why,
        )
        return SafetyRejection(parameter, value, limit, source, channel, message)

    def _state_error(
        self, message: str, channel: int | None = None, who: str = "", why: str = ""
    ) -> GovernorStateError:
        self._emit(
            SafetyEventKind.REJECTED,
            channel,
            detail=message,
            parameter="state",
            value=self._state.value,
            who=who,
            why=why,
        )
        return GovernorStateError(message)

    def _check_channel(self, channel: int, who: str = "", why: str = "") -> _Channel:
        found = self._channels.get(channel)
        if found is None:
            caps = self._require_caps()
            count = len(caps.channels)
            source = CapSource.DEVICE if count < self._profile.channels else CapSource.PROFILE
            raise self._reject(
                "channel",
                float(channel),
                float(count),
                source,
                channel,
                f"channel {channel} does not exist (this device has channels 1-{count})",
                who,
                why,
            )
        return found

    # ------------------------------------------------------------------ sending
    def _send_amplitude(self, ch: _Channel, value: float, who: str, why: str) -> None:
        """Send one amplitude now (lock held). A failure ends the session."""
        increase = value > ch.commanded
        previous = ch.commanded
        ch.commanded = value
        if increase:
            ch.inc_inflight = True
        sent = _Sent(ch, value, increase, who, why)
        try:
            pending = self._driver.request_amplitude(ch.number, value)
        except DriverError as error:
            ch.commanded = previous
            if increase:
                ch.inc_inflight = False
            self._command_failed(error, f"amplitude {_fmt(value)} mA on channel {ch.number}")
            return
        self._watch(pending, sent)
        pending.add_done_callback(functools.partial(self._amplitude_done, sent))

    def _watch(self, pending: Pending, sent: _Sent | None = None) -> TimerHandle:
        """S8 at the governor: a command unacknowledged past its deadline is comms loss."""
        deadline = max(pending.deadline, self._clock.now() + COMMS_TIMEOUT_S)
        timer = self._clock.call_at(deadline, functools.partial(self._ack_overdue, pending))
        if sent is not None:
            sent.timer = timer
        else:
            pending.add_done_callback(lambda _p: timer.cancel())
        return timer

    def _ack_overdue(self, pending: Pending) -> None:
        self._enter()
        try:
            if not pending.done():
                detail = f"no acknowledgement for {pending.command} within 1 s"
                self._comms_lost(detail)
        finally:
            self._leave(blocking=False)

    def _amplitude_done(self, sent: _Sent, pending: Pending) -> None:
        self._enter()
        try:
            assert sent.timer is not None  # set by _watch before the callback is added
            sent.timer.cancel()
            ch = sent.channel
            if sent.increase:
                ch.inc_inflight = False
            if pending.error is not None:
                if sent.epoch == ch.epoch or sent.increase is False:
                    self._command_failed(
                        pending.error, f"amplitude {_fmt(sent.value)} mA on channel {ch.number}"
                    )
                return
            now = self._clock.now()
            previous = ch.acked
            ch.acked = sent.value
            if sent.increase:
                ch.last_increase = now
            if ch is not self._channels.get(ch.number):
                return
            self._emit(
                SafetyEventKind.AMPLITUDE_SET,
                ch.number,
                from_ma=previous,
                to_ma=sent.value,
                who=sent.who,
                why=sent.why,
            )
            if sent.epoch == ch.epoch and self._state is GovernorState.RUNNING:
                self._ramp(ch)
        finally:
            self._leave(blocking=False)

    def _command_failed(self, error: DriverError, what: str) -> None:
        """A command the governor sent failed: end the session with the matching reason."""
        if isinstance(error, DeviceRejectedError):
            self._emit(
                SafetyEventKind.DEVICE_REJECTED,
                detail=str(error),
                command=error.command,
                code=error.code.value,
            )
            if error.code is ErrorCode.CRC:
                self._comms_lost(f"{what}: {error}")
            elif error.code in (ErrorCode.LIMIT, ErrorCode.PARAMETER):
                self._end(StopReason.LIMIT, f"{what}: {error}")
            else:
                self._end(StopReason.DEVICE_FAULT, f"{what}: {error}")
        elif isinstance(error, CommsLostError):
            self._comms_lost(f"{what}: {error}")
        else:
            self._end(StopReason.DEVICE_FAULT, f"{what}: {error}")

    def _write_stop(self) -> Pending | None:
        """Write STOP now (lock held). Never raises; None when the link is gone."""
        try:
            pending = self._driver.request_stop()
        except Exception as error:  # a driver bug must not keep the governor from ending
            log.warning("STOP could not be written: %s", error)
            return None
        self._watch(pending)
        pending.add_done_callback(self._stop_done)
        return pending

    def _stop_done(self, pending: Pending) -> None:
        self._enter()
        try:
            if pending.error is None:
                for ch in self._channels.values():
                    ch.acked = 0.0
            elif self._state in (GovernorState.RUNNING, GovernorState.PAUSED):
                self._command_failed(pending.error, "STOP")
            else:
                self._emit(
                    SafetyEventKind.DEVICE_REJECTED,
                    detail=f"STOP was not acknowledged: {pending.error}",
                    command="STOP",
                    code=type(pending.error).__name__,
                )
        finally:
            self._leave(blocking=False)

    # ------------------------------------------------------------------ ramp (S2)
    def _ramp(self, ch: _Channel) -> None:
        """Send the next ramp step if one is due, else schedule it (lock held)."""
        # a cap never moves under a target without lowering it (set_target, _recompute_caps);
        # the ramp checks once more, so that no step can ever go above the cap
        ch.target = min(ch.target, self._max_bound(ch).value)
        if ch.inc_inflight or ch.commanded >= ch.target - _EPS:
            return
        step = min(self._ramp_step, ch.target - ch.commanded)
        due = ch.last_increase + step / self._ramp_rate
        now = self._clock.now()
        if now < due - _EPS:
            if ch.timer is None or ch.timer.cancelled or ch.timer.when != due:
                if ch.timer is not None:
                    ch.timer.cancel()
                ch.timer = self._clock.call_at(due, functools.partial(self._ramp_tick, ch))
            return
        value = round(ch.commanded + step, 6)
        self._send_amplitude(ch, value, ch.who, ch.why)

    def _ramp_tick(self, ch: _Channel) -> None:
        self._enter()
        try:
            ch.timer = None
            if self._state is GovernorState.RUNNING and ch is self._channels.get(ch.number):
                self._ramp(ch)
        finally:
            self._leave(blocking=False)

    # ------------------------------------------------------------------ ending
    def _end(self, reason: StopReason, detail: str = "", stop_written: bool = False) -> None:
        """Every output 0 and ENDED (lock held). STOP is written before the lock is released.

        Outside a session (already ENDED, or DISCONNECTED) only STOP is written again."""
        ending = self._state in _CONNECTED_STATES
        if ending:
            self._zero_book()
            self._cancel_duration(record=True)
            self._state = GovernorState.ENDED
            self._end_reason = reason
            self._emit(SafetyEventKind.STOPPED, reason=reason, detail=detail or reason.value)
        if not stop_written and (ending or self._driver.connected):
            self._write_stop()

    def _zero_book(self) -> None:
        for ch in self._channels.values():
            ch.reset_output()

    def _comms_lost(self, detail: str) -> None:
        if self._state in _CONNECTED_STATES:
            self._emit(SafetyEventKind.COMMS_LOST, detail=detail)
            self._end(StopReason.COMMS_LOST, detail)
        elif self._state is GovernorState.ENDED:
            self._emit(SafetyEventKind.COMMS_LOST, detail=detail)

    def _cancel_duration(self, record: bool) -> None:
        if self._duration_timer is not None:
            self._duration_timer.cancel()
            self._duration_timer = None
        if record and self._state is GovernorState.RUNNING:
            self._remaining_s -= self._clock.now() - self._run_started

    def _on_duration(self) -> None:
        self._enter()
        try:
            self._duration_timer = None
            if self._state is GovernorState.RUNNING:
                self._end(StopReason.DURATION, "the planned session duration was reached")
        finally:
            self._leave(blocking=False)

    # ------------------------------------------------------------------ reports
    def _on_report(self, report: Report) -> None:
        if isinstance(report, Telemetry):
            self._on_telemetry(report)
        else:
            self._on_device_event(report)

    def _on_telemetry(self, tel: Telemetry) -> None:
        self._enter()
        try:
            ch = self._channels.get(tel.channel)
            if ch is None:
                return
            ch.measured = tel.measured_ma
            ch.impedance = tel.impedance_ohm
            impedance = tel.impedance_ohm
            if impedance is not None and ch.settings is not None:
                if impedance > self._lead_off_ohm:
                    if not ch.lead_off:
                        self._lead_off(ch, f"impedance {_fmt(impedance)} Ω over threshold")
                        return
                elif ch.lead_off:
                    ch.lead_off = False
                    self._emit(
                        SafetyEventKind.LEAD_ON,
                        ch.number,
                        detail=f"electrode contact restored ({_fmt(impedance)} Ω)",
                        impedance_ohm=impedance,
                    )
            self._check_readback(ch, tel)
        finally:
            self._leave(blocking=False)

    def _tolerance(self, set_ma: float) -> float:
        return min(max(READBACK_RELATIVE * set_ma, self._step), READBACK_ABSOLUTE_MA)

    def _check_readback(self, ch: _Channel, tel: Telemetry) -> None:
        """S9: measured (and device-reported set) current vs what was set (lock held)."""
        acked, commanded = ch.acked, ch.commanded
        if acked == commanded:  # nothing in flight (every reading of a steady session)
            tolerance = self._tolerance(acked)
            low, high = acked - tolerance, acked + tolerance
        else:
            low, high = (acked, commanded) if acked < commanded else (commanded, acked)
            low -= self._tolerance(low)
            high += self._tolerance(high)
        differs: float | None = None
        if tel.measured_ma is not None and not low <= tel.measured_ma <= high:
            differs = tel.measured_ma
        elif not low <= tel.set_ma <= high:
            differs = tel.set_ma
        if differs is None:
            ch.mismatches = 0
            return
        ch.mismatches += 1
        if ch.mismatches < READBACK_CONSECUTIVE:
            return
        ch.mismatches = 0
        detail = (
            f"channel {ch.number} read back {_fmt(differs)} mA while {_fmt(ch.acked)} mA "
            "was set, in two consecutive readings"
        )
        self._emit(
            SafetyEventKind.OUTPUT_MISMATCH,
            ch.number,
            detail=detail,
            set_ma=ch.acked,
            commanded_ma=ch.commanded,
            measured_ma=tel.measured_ma,
            device_set_ma=tel.set_ma,
        )
        if self._state in _CONNECTED_STATES:
            self._end(StopReason.OUTPUT_MISMATCH, detail)
        elif self._driver.connected:
            self._write_stop()

    def _lead_off(self, ch: _Channel, detail: str) -> None:
        ch.lead_off = True
        self._emit(SafetyEventKind.LEAD_OFF, ch.number, detail=detail, impedance_ohm=ch.impedance)
        if self._state is GovernorState.RUNNING:
            self._pause(StopReason.LEAD_OFF, f"lead-off on channel {ch.number}")

    def _lead_off_unknown(self, detail: str) -> None:
        """Lead-off on a channel the device does not name (RehaStim 2 electrode error): every
        configured channel is suspect; pause like any lead-off."""
        for ch in self._channels.values():
            if ch.settings is not None:
                ch.lead_off = True
        self._emit(SafetyEventKind.LEAD_OFF, None, detail=detail)
        if self._state is GovernorState.RUNNING:
            self._pause(StopReason.LEAD_OFF, f"lead-off ({detail})")

    def _on_device_event(self, event: DeviceEvent) -> None:
        self._enter()
        try:
            kind = event.kind
            if kind is DeviceEventKind.COMMS_LOST:
                self._comms_lost(event.detail or "the driver reported comms loss")
                return
            ch = self._channels.get(event.channel) if event.channel is not None else None
            if kind is DeviceEventKind.LEAD_OFF:
                if ch is not None:
                    self._lead_off(ch, event.detail or "the device reported lead-off")
                else:
                    self._lead_off_unknown(event.detail or "the device reported an electrode error")
                return
            self._emit(
                SafetyEventKind.DEVICE_EVENT,
                event.channel,
                detail=event.detail or kind.value,
                device_kind=kind.value,
            )
            reason = _END_FOR_DEVICE_EVENT.get(kind)
            if kind is DeviceEventKind.FAULT and event.detail.lower() == "estop":
                reason = StopReason.EMERGENCY_SWITCH  # TSP reports the switch as EVT FAULT estop
            if reason is not None and self._state in _CONNECTED_STATES:
                self._end(reason, event.detail or kind.value)
        finally:
            self._leave(blocking=False)

    # ------------------------------------------------------------------ commands
    def connect(self) -> DeviceInfo:
        """Identify the device, compute the caps, set every output to 0 (S1).

        Allowed when DISCONNECTED, IDLE or ENDED; leaves IDLE with no channel configured.
        Emits CONNECTED, then NO_LEAD_OFF_DETECTION / NO_READBACK when they apply.
        """
        with self._lock:
            if self._state in (GovernorState.RUNNING, GovernorState.PAUSED):
                raise GovernorStateError("a session is running; stop it before reconnecting")
            if self._closed:
                raise GovernorStateError("the governor is closed; open a new driver")
        info = self._driver.identify()
        channels = min(info.channels, self._profile.channels)
        caps = self._build_caps(info, channels)
        step = caps.amplitude_step_ma
        ramp_step = math.floor(self._profile.ramp.step_ma / step + 1e-6) * step
        if ramp_step < step - _EPS:
            raise DriverError(
                f"the device's amplitude step of {_fmt(step)} mA is coarser than the "
                f"profile's ramp step of {_fmt(self._profile.ramp.step_ma)} mA; "
                "this device cannot be ramped safely"
            )
        pending = self._driver.request_stop()
        self._driver.wait(pending)
        self._enter()
        try:
            self._info = info
            self._caps = caps
            self._step = step
            self._ramp_step = round(ramp_step, 6)
            self._ramp_rate = caps.ramp_rate_ma_per_s
            self._channels = {n: _Channel(n) for n in sorted(caps.channels)}
            self._state = GovernorState.IDLE
            self._end_reason = None
            self._lead_off_detection = self._profile.lead_off_detection
            self._readback = self._profile.reports_current and info.reports_current
            self._emit(
                SafetyEventKind.CONNECTED,
                detail=f"{info.model} serial {info.serial_number} firmware {info.firmware}",
                model=info.model,
                serial=info.serial_number,
                firmware=info.firmware,
                protocol=f"{info.protocol} {info.protocol_version}",
                channels=float(channels),
                simulator="yes" if info.is_simulator else "no",
                profile=self._profile.id,
                extra=self._caps_data(),
            )
            if not self._lead_off_detection:
                self._emit(
                    SafetyEventKind.NO_LEAD_OFF_DETECTION,
                    detail="this device cannot detect electrodes coming off",
                )
            if not self._readback:
                self._emit(
                    SafetyEventKind.NO_READBACK,
                    detail="this device does not report the current it delivers; "
                    "output read-back checks cannot run",
                )
            return info
        finally:
            self._leave(blocking=True)

    def _build_caps(self, info: DeviceInfo, channels: int) -> EffectiveCaps:
        layers = self._layers
        if self._comfort:
            comfort = CapLayer(source=CapSource.COMFORT, channel_max_amplitude_ma=self._comfort)
            layers = (*layers, comfort)
        return effective_caps(self._profile, info.limits, layers, channels)

    def _caps_data(self) -> dict[str, float | str | None]:
        data: dict[str, float | str | None] = {}
        for number, ch in self._channels.items():
            bound = self._max_bound(ch)
            data[f"max_ma_{number}"] = bound.value
            data[f"max_source_{number}"] = bound.source.value
        caps = self._require_caps()
        data["max_session_min"] = caps.max_session.value
        data["max_session_source"] = caps.max_session.source.value
        return data

    def set_layers(self, layers: tuple[CapLayer, ...]) -> None:
        """Replace the extra cap layers. A tighter cap lowers targets and output at once."""
        self._enter()
        try:
            self._layers = tuple(layers)
            self._recompute_caps("cap layers changed")
        finally:
            self._leave(blocking=True)

    def set_comfort_cap(self, channel: int, milliamps: float | None) -> None:
        """The patient's own cap on ``channel`` (None removes it); lowering it below the
        current output lowers the output at once."""
        self._enter()
        try:
            if milliamps is not None and (not math.isfinite(milliamps) or milliamps < 0):
                raise self._reject(
                    "comfort cap",
                    milliamps,
                    0.0,
                    CapSource.COMFORT,
                    channel,
                    f"comfort cap {_fmt(milliamps)} mA on channel {channel} is not a valid current",
                )
            if self._caps is not None:
                self._check_channel(channel)
            if milliamps is None:
                self._comfort.pop(channel, None)
            else:
                self._comfort[channel] = milliamps
            self._recompute_caps(f"comfort cap on channel {channel}")
        finally:
            self._leave(blocking=True)

    def _recompute_caps(self, why: str) -> None:
        if self._info is None:
            return
        self._caps = self._build_caps(self._info, len(self._channels))
        for ch in self._channels.values():
            if ch.settings is not None and self._settings_problem(ch.number, ch.settings):
                # the program is no longer allowed: zero the channel, it must be reconfigured
                had_output = ch.commanded > 0 or ch.acked > 0 or ch.inc_inflight
                ch.reset_output()
                if self._state is GovernorState.RUNNING and had_output:
                    self._send_amplitude(ch, 0.0, "governor", why)
                ch.settings = None
                ch.dose_bound = None
            limit = self._max_bound(ch).value
            if ch.target > limit + _EPS:
                self._emit(
                    SafetyEventKind.TARGET_CHANGED,
                    ch.number,
                    detail=f"lowered to the new cap ({why})",
                    from_ma=ch.target,
                    to_ma=limit,
                    who="governor",
                    why=why,
                )
                ch.target = limit
            if ch.commanded > limit + _EPS and self._state is GovernorState.RUNNING:
                self._send_amplitude(ch, limit, "governor", why)
        self._emit(SafetyEventKind.CAPS_CHANGED, detail=why, extra=self._caps_data())

    def _settings_problem(self, channel: int, settings: ChannelSettings) -> SafetyRejection | None:
        """The first rule ``settings`` break on ``channel``, as an (un-emitted) rejection."""
        caps = self._require_caps()
        cc = caps.channel(channel)
        if settings.waveform not in caps.waveforms:
            allowed = ", ".join(w.value for w in caps.waveforms)
            return SafetyRejection(
                "waveform",
                settings.waveform.value,
                allowed,
                CapSource.PROFILE,
                channel,
                f"waveform {settings.waveform.value} on channel {channel} is not one this "
                f"device allows ({allowed})",
            )
        if settings.pattern not in caps.patterns:
            allowed = ", ".join(p.value for p in caps.patterns)
            return SafetyRejection(
                "pattern",
                settings.pattern.value,
                allowed,
                CapSource.PROFILE,
                channel,
                f"pattern {settings.pattern.value} on channel {channel} is not one this "
                f"device allows ({allowed})",
            )
        for hz in settings.frequencies_hz:
            if hz < cc.min_frequency.value - _EPS:
                return self._range_rejection(
                    "frequency", hz, cc.min_frequency, channel, "Hz", "below"
                )
            if hz > cc.max_frequency.value + _EPS:
                return self._range_rejection(
                    "frequency", hz, cc.max_frequency, channel, "Hz", "above"
                )
        width = float(settings.pulse_width_us)
        if width < cc.min_pulse_width.value - _EPS:
            return self._range_rejection(
                "pulse width", width, cc.min_pulse_width, channel, "µs", "below"
            )
        if width > cc.max_pulse_width.value + _EPS:
            return self._range_rejection(
                "pulse width", width, cc.max_pulse_width, channel, "µs", "above"
            )
        return None

    @staticmethod
    def _range_rejection(
        parameter: str, value: float, bound: Bound, channel: int, unit: str, side: str
    ) -> SafetyRejection:
        phrase = _SOURCE_PHRASE[bound.source]
        word = "maximum" if side == "above" else "minimum"
        return SafetyRejection(
            parameter,
            value,
            bound.value,
            bound.source,
            channel,
            f"{parameter} {_fmt(value)} {unit} on channel {channel} is {side} {phrase} "
            f"({word} {_fmt(bound.value)} {unit})",
        )

    def _dose_bound(self, channel: int, settings: ChannelSettings) -> Bound:
        area = self._areas.get(channel)
        if area is None or not area > 0:
            return Bound(0.0, CapSource.DOSE)
        raw = max_amplitude_for_dose(settings, area, self._dose_override, self._load_ohm)
        ceiling = self._require_caps().channel(channel).max_amplitude.value
        value = self._grid_floor(min(raw, ceiling + self._step))
        while value > 0 and self._dose_verdict(value, settings, area) is not DoseVerdict.OK:
            value = round(value - self._step, 6)
        return Bound(max(value, 0.0), CapSource.DOSE)

    def _dose_verdict(self, ma: float, settings: ChannelSettings, area: float) -> DoseVerdict:
        return dose(ma, settings, area, self._load_ohm).verdict(self._dose_override)

    def configure(self, channel: int, settings: ChannelSettings) -> None:
        """Check ``settings`` against the caps (S3/S4), then send them; amplitude to 0 (S1).

        Allowed when IDLE, RUNNING or PAUSED. While RUNNING the channel is zeroed first.
        Raises SafetyRejection (nothing sent) or the device's DriverError.
        """
        self._enter()
        try:
            if self._state not in _CONNECTED_STATES:
                raise self._state_error(
                    f"cannot change the program while {self._state.value}", channel
                )
            ch = self._check_channel(channel)
            problem = self._settings_problem(channel, settings)
            if problem is not None:
                raise self._reject(
                    problem.parameter,
                    problem.value,
                    problem.limit,
                    problem.source,
                    channel,
                    str(problem),
                )
            running = self._state is GovernorState.RUNNING
            had_output = ch.commanded > 0 or ch.acked > 0 or ch.inc_inflight
            ch.reset_output()
            ch.settings = None
            ch.dose_bound = None
            if running and had_output:
                self._send_amplitude(ch, 0.0, "governor", "program change")
                if self._state is not GovernorState.RUNNING:
                    raise GovernorStateError(
                        f"the session ended while zeroing channel {channel}; nothing was configured"
                    )
            epoch = ch.epoch
            try:
                pending = self._driver.request_configure(channel, settings)
            except DriverError as error:
                self._command_failed(error, f"configure channel {channel}")
                raise
            self._watch(pending)
        finally:
            self._leave(blocking=True)
        try:
            self._driver.wait(pending)
        except DriverError as error:
            self._enter()
            try:
                if self._state in _CONNECTED_STATES:
                    if isinstance(error, DeviceRejectedError):
                        self._emit(
                            SafetyEventKind.DEVICE_REJECTED,
                            channel,
                            detail=str(error),
                            command=error.command,
                            code=error.code.value,
                        )
                    else:
                        self._comms_lost(f"configure channel {channel}: {error}")
            finally:
                self._leave(blocking=True)
            raise
        self._enter()
        try:
            if ch.epoch != epoch or ch is not self._channels.get(channel):
                raise GovernorStateError(
                    f"channel {channel} was reset while it was being configured; configure it again"
                )
            ch.settings = settings
            ch.acked = 0.0
            ch.dose_bound = self._dose_bound(channel, settings)
            bound = self._max_bound(ch)
            self._emit(
                SafetyEventKind.CONFIGURED,
                channel,
                detail=f"{settings.pattern.value} {_fmt(settings.frequency_hz)} Hz "
                f"{settings.pulse_width_us} µs {settings.waveform.value}",
                frequency_hz=settings.frequency_hz,
                pulse_width_us=float(settings.pulse_width_us),
                waveform=settings.waveform.value,
                pattern=settings.pattern.value,
                secondary_hz=settings.secondary_hz,
                cycle_s=settings.cycle_s,
                pulses_per_burst=None
                if settings.pulses_per_burst is None
                else float(settings.pulses_per_burst),
                electrode_area_cm2=self._areas.get(channel),
                dose_limit_ma=ch.dose_bound.value,
                max_ma=bound.value,
                max_source=bound.source.value,
            )
        finally:
            self._leave(blocking=True)

    def start(self, duration_s: float) -> None:
        """IDLE -> RUNNING with every amplitude 0; ends the session after ``duration_s`` of
        stimulation (S6). At least one channel must be configured."""
        self._enter()
        try:
            if self._state is not GovernorState.IDLE:
                raise self._state_error(f"cannot start a session while {self._state.value}")
            caps = self._require_caps()
            limit_s = caps.max_session.value * 60.0
            if not math.isfinite(duration_s) or duration_s <= 0:
                raise self._reject(
                    "session duration",
                    duration_s,
                    limit_s,
                    caps.max_session.source,
                    None,
                    f"session duration {_fmt(duration_s)} s is not a positive time",
                )
            if duration_s > limit_s + _EPS:
                phrase = _SOURCE_PHRASE[caps.max_session.source]
                raise self._reject(
                    "session duration",
                    duration_s,
                    limit_s,
                    caps.max_session.source,
                    None,
                    f"session duration {_fmt(duration_s / 60)} min is above {phrase} of "
                    f"{_fmt(caps.max_session.value)} min",
                )
            if not any(ch.settings is not None for ch in self._channels.values()):
                raise self._state_error("no channel is configured; choose a program first")
            self._zero_book()
            for ch in self._channels.values():
                ch.lead_off = False
            try:
                pending = self._driver.request_start()
            except DriverError as error:
                self._command_failed(error, "START")
                raise
            self._watch(pending)
            self._state = GovernorState.RUNNING
            self._remaining_s = float(duration_s)
            self._run_started = self._clock.now()
            self._duration_timer = self._clock.call_at(
                self._run_started + duration_s, self._on_duration
            )
            self._emit(SafetyEventKind.STARTED, duration_s=float(duration_s))
        finally:
            self._leave(blocking=True)
        self._wait_start(pending, "START")

    def _wait_start(self, pending: Pending, command: str) -> None:
        try:
            self._driver.wait(pending)
        except DriverError as error:
            self._enter()
            try:
                if self._state is GovernorState.RUNNING:
                    self._command_failed(error, command)
            finally:
                self._leave(blocking=True)
            raise

    def set_target(
        self, channel: int, milliamps: float, *, who: str = "patient", why: str = ""
    ) -> None:
        """Set where ``channel``'s amplitude is heading (RUNNING only).

        Refused (SafetyRejection, REJECTED event, nothing written) if above any cap, off the
        amplitude step grid, negative, or failing the dose checks (S4/S5). Increases ramp on
        the clock (S2); decreases are sent at once.
        """
        self._enter()
        try:
            self._set_target(channel, milliamps, who, why)
        finally:
            self._leave(blocking=True)

    def _set_target(self, channel: int, ma: float, who: str, why: str) -> float:
        if self._state is not GovernorState.RUNNING:
            raise self._state_error(
                f"cannot change the intensity while {self._state.value}", channel, who, why
            )
        ch = self._check_channel(channel, who, why)
        if ch.settings is None:
            raise self._state_error(
                f"channel {channel} has no program; configure it first", channel, who, why
            )
        if ch.lead_off and ma > 0:
            raise self._state_error(
                f"the electrode on channel {channel} is off; put it back on the skin "
                "before raising the intensity",
                channel,
                who,
                why,
            )
        caps = self._require_caps()
        cap = caps.channel(channel).max_amplitude
        if not math.isfinite(ma) or ma < 0:
            raise self._reject(
                "amplitude",
                ma,
                0.0,
                cap.source,
                channel,
                f"amplitude {_fmt(ma)} mA on channel {channel} is not a valid current",
                who,
                why,
            )
        if ma > cap.value + _EPS:
            raise self._reject(
                "amplitude",
                ma,
                cap.value,
                cap.source,
                channel,
                f"amplitude {_fmt(ma)} mA on channel {channel} is above "
                f"{_SOURCE_PHRASE[cap.source]} of {_fmt(cap.value)} mA",
                who,
                why,
            )
        if not self._on_grid(ma):
            source = (
                CapSource.DEVICE
                if self._step > self._profile.amplitude.step_ma
                else CapSource.PROFILE
            )
            raise self._reject(
                "amplitude step",
                ma,
                self._step,
                source,
                channel,
                f"amplitude {_fmt(ma)} mA on channel {channel} is not a multiple of the "
                f"device's {_fmt(self._step)} mA step",
                who,
                why,
            )
        if ma > 0:
            self._check_dose(ch, ch.settings, ma, who, why)
        ma = round(round(ma / self._step) * self._step, 6)
        if ma == ch.target:
            return ma
        self._emit(
            SafetyEventKind.TARGET_CHANGED,
            channel,
            from_ma=ch.target,
            to_ma=ma,
            who=who,
            why=why,
        )
        ch.target = ma
        ch.who = who
        ch.why = why
        if ma < ch.commanded:
            if ch.timer is not None:
                ch.timer.cancel()
                ch.timer = None
            self._send_amplitude(ch, ma, who, why)
        else:
            self._ramp(ch)
        return ma

    def _check_dose(
        self, ch: _Channel, settings: ChannelSettings, ma: float, who: str, why: str
    ) -> None:
        channel = ch.number
        area = self._areas.get(channel)
        if area is None or not area > 0:
            raise self._reject(
                "electrode area",
                0.0,
                0.0,
                CapSource.DOSE,
                channel,
                f"channel {channel} has no electrode area on record, so the dose of "
                f"{_fmt(ma)} mA cannot be checked; record the electrode size first",
                who,
                why,
            )
        figures = dose(ma, settings, area, self._load_ohm)
        verdict = figures.verdict(self._dose_override)
        if verdict is DoseVerdict.REFUSED:
            raise self._reject(
                "power density",
                figures.power_density_w_per_cm2,
                0.25,
                CapSource.DOSE,
                channel,
                f"amplitude {_fmt(ma)} mA on channel {channel} gives "
                f"{figures.power_density_w_per_cm2:.3f} W/cm² on {_fmt(area)} cm² electrodes, "
                "at or above the 0.25 W/cm² burn limit",
                who,
                why,
            )
        if verdict is DoseVerdict.NEEDS_OVERRIDE:
            raise self._reject(
                "current density",
                figures.current_density_ma_per_cm2,
                2.0,
                CapSource.DOSE,
                channel,
                f"amplitude {_fmt(ma)} mA on channel {channel} gives "
                f"{figures.current_density_ma_per_cm2:.2f} mA/cm² r.m.s. on {_fmt(area)} cm² "
                "electrodes, above the 2 mA/cm² that needs a recorded clinician override",
                who,
                why,
            )

    def step_up(self, channel: int, *, who: str = "patient", why: str = "") -> float:
        """Raise the target by one amplitude step; returns the new target.

        At the cap this raises SafetyRejection naming the binding cap (the UI says so)."""
        self._enter()
        try:
            if self._state is not GovernorState.RUNNING:
                raise self._state_error(
                    f"cannot change the intensity while {self._state.value}", channel, who, why
                )
            ch = self._check_channel(channel, who, why)
            return self._set_target(channel, round(ch.target + self._step, 6), who, why)
        finally:
            self._leave(blocking=True)

    def step_down(self, channel: int, *, who: str = "patient", why: str = "") -> float:
        """Lower the target by one amplitude step (not below 0); returns the new target."""
        self._enter()
        try:
            if self._state is not GovernorState.RUNNING:
                raise self._state_error(
                    f"cannot change the intensity while {self._state.value}", channel, who, why
                )
            ch = self._check_channel(channel, who, why)
            target = max(0.0, round(self._grid_floor(ch.target) - self._step, 6))
            return self._set_target(channel, target, who, why)
        finally:
            self._leave(blocking=True)

    def pause(self, reason: StopReason = StopReason.USER) -> None:
        """RUNNING -> PAUSED: every output 0 at once (STOP written before return).

        Idempotent when already PAUSED."""
        self._enter()
        try:
            if self._state is GovernorState.PAUSED:
                return
            if self._state is not GovernorState.RUNNING:
                raise self._state_error(f"cannot pause while {self._state.value}")
            self._pause(reason, "paused")
        finally:
            self._leave(blocking=True)

    def _pause(self, reason: StopReason, detail: str) -> None:
        self._zero_book()
        self._cancel_duration(record=True)
        self._state = GovernorState.PAUSED
        self._emit(SafetyEventKind.PAUSED, reason=reason, detail=detail)
        if self._write_stop() is None:
            self._comms_lost("STOP could not be written")

    def resume(self) -> None:
        """PAUSED -> RUNNING from 0 mA on every channel (S1); targets are 0."""
        self._enter()
        try:
            if self._state is not GovernorState.PAUSED:
                raise self._state_error(f"cannot resume while {self._state.value}")
            self._zero_book()
            if self._info is None or not self._info.reports_impedance:
                # nothing will tell us the electrode is back: the patient's word is all we have
                for ch in self._channels.values():
                    ch.lead_off = False
            try:
                pending = self._driver.request_start()
            except DriverError as error:
                self._command_failed(error, "START")
                raise
            self._watch(pending)
            self._state = GovernorState.RUNNING
            self._run_started = self._clock.now()
            self._duration_timer = self._clock.call_at(
                self._run_started + max(0.0, self._remaining_s), self._on_duration
            )
            self._emit(SafetyEventKind.RESUMED, remaining_s=self._remaining_s)
        finally:
            self._leave(blocking=True)
        self._wait_start(pending, "START (resume)")

    def stop(self, reason: StopReason = StopReason.USER) -> None:
        """Every output 0 at once (STOP written before return, never waits), state ENDED.

        Idempotent; allowed in every state. When already ENDED the STOP is written again and
        the first end reason is kept."""
        self._enter()
        try:
            if self._state is GovernorState.DISCONNECTED:
                if self._driver.connected:
                    self._write_stop()
                return
            self._end(reason)
        finally:
            self._leave(blocking=True)

    def emergency_stop(self) -> None:
        """S10: STOP written before return, ENDED(EMERGENCY). Never raises, never waits."""
        self._enter()
        try:
            written = self._write_stop() is not None
            self._emit(
                SafetyEventKind.EMERGENCY_STOP,
                reason=StopReason.EMERGENCY,
                detail="emergency stop" if written else "emergency stop (STOP could not be sent)",
            )
            self._end(StopReason.EMERGENCY, "emergency stop", stop_written=True)
        finally:
            self._leave(blocking=True)

    def close(self) -> None:
        """Stop (CLOSED if a session was on), close the driver; DISCONNECTED. Idempotent."""
        self._enter()
        try:
            if self._closed:
                return
            self._closed = True
            if self._state in (GovernorState.RUNNING, GovernorState.PAUSED):
                self._end(StopReason.CLOSED, "closed")
            for ch in self._channels.values():
                ch.reset_output()
            self._cancel_duration(record=False)
        finally:
            self._leave(blocking=True)
        self._driver.remove_report_handler(self._on_report)
        self._driver.close()
        self._enter()
        try:
            self._state = GovernorState.DISCONNECTED
            self._emit(SafetyEventKind.CLOSED, detail="the port is closed")
        finally:
            self._leave(blocking=True)
