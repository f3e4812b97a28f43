"""The safety governor: every command to a TENS unit passes through it (DESIGN.md §4).

:class:`SafetyGovernor` wraps any :class:`~drivers.base.TensDriver`. The application never
calls the driver's commands itself; it calls the governor, which checks each request against
the rules (``rules.py``) before a byte is written, moves through the states of ``states.py``,
and reports what happened as the typed events of ``events.py``.

**One lock.** The governor has no lock of its own: it runs under the driver's one lock
(:meth:`~drivers.base.TensDriver.locked`), with the protocol engine, the device's reports (its
report hook) and the driver's completions. So the governor's view and the link's state can
never disagree half-way, and nothing holds a lock while writing: the driver writes what was
queued when the outermost holder lets go, then delivers the events (``on_event``), in order,
outside the lock. ``on_event`` must be quick and must not wait for the device; it may call the
governor.

Only the public methods that must wait for the device (``connect``, ``configure``, ``start``,
``resume``) wait, on the caller's thread, without the lock. ``stop``, ``pause`` and
``emergency_stop`` never wait; their stop is written before they return.

**What the device says only narrows (S17).** Its limits and ramp intersect the profile's; its
telemetry can only end, pause or stop a session (S9, S15: its lead-off flag and output state are
repeated in every reading), never raise anything.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

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
from drivers.limits import Bound, CapLayer, CapSource, DeviceProfile, EffectiveCaps, effective_caps
from drivers.safety import rules
from drivers.safety.events import (
    Actor,
    AmplitudeChanged,
    CapsChanged,
    ChannelCap,
    Closed,
    CommsLost,
    Configured,
    Connected,
    DeviceRejected,
    DeviceReported,
    EmergencyStop,
    GovernorEvent,
    LeadOff,
    LeadOn,
    NoLeadOffDetection,
    NoReadback,
    OutputMismatch,
    Paused,
    Rejected,
    Resumed,
    Started,
    StopConfirmed,
    Stopped,
    StopReason,
    TargetChanged,
)
from drivers.safety.rules import EPS, RampPlan, Refusal, fmt
from drivers.safety.states import CONNECTED, GovernorState, Trigger, next_state

log = logging.getLogger(__name__)


class GovernorStateError(DriverError):
    """A call that is not allowed in the governor's current state (nothing was sent)."""


class SafetyRejection(DriverError):
    """A request refused by the governor (S4): nothing was written to the port.

    ``str(e)`` is one sentence naming the parameter, the value and the limit, for example
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


class ChannelStatus:
    """A snapshot of one channel as the governor knows it."""

    __slots__ = (
        "cap",
        "channel",
        "commanded_ma",
        "impedance_ohm",
        "lead_off",
        "measured_ma",
        "set_ma",
        "settings",
        "target_ma",
    )

    def __init__(self, ch: _Channel, cap: Bound) -> None:
        self.channel = ch.number
        self.settings: ChannelSettings | None = ch.settings
        """The acknowledged program settings, or None when not configured."""
        self.target_ma = ch.target
        """Where the ramp is heading."""
        self.commanded_ma = ch.commanded
        """The last amplitude sent (acknowledged or not)."""
        self.set_ma = ch.acked
        """The last amplitude the device acknowledged."""
        self.measured_ma = ch.measured
        """The last measured current from telemetry (None if not reported)."""
        self.impedance_ohm = ch.impedance
        self.lead_off = ch.lead_off
        self.cap = cap
        """The binding amplitude cap, including the dose-derived limit (source DOSE)."""

    @property
    def ramping(self) -> bool:
        return self.commanded_ma < self.target_ma


class _Channel:
    """The governor's book-keeping for one channel (under the driver's lock)."""

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
        self.who = Actor.SYSTEM
        self.why = ""

    @property
    def live(self) -> bool:
        """Above 0, or on its way there."""
        return self.commanded > 0 or self.acked > 0 or self.inc_inflight

    def reset_output(self) -> None:
        """S1: forget targets and in-flight ramp work (the device is being zeroed)."""
        self.epoch += 1
        self.target = 0.0
        self.commanded = 0.0
        self.mismatches = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _actor(who: str | Actor) -> Actor:
    try:
        return Actor(who)
    except ValueError:
        return Actor.SYSTEM


class SafetyGovernor:
    """Wraps a driver; enforces S1-S10, S14-S17. See the module docstring."""

    def __init__(
        self,
        driver: TensDriver,
        profile: DeviceProfile,
        clock: Clock,
        *,
        on_event: Callable[[GovernorEvent], None],
        layers: tuple[CapLayer, ...] = (),
        electrode_areas_cm2: Mapping[int, float] | None = None,
        dose_override: bool = False,
        lead_off_impedance_ohm: float = rules.LEAD_OFF_IMPEDANCE_OHM,
    ) -> None:
        """``layers``: extra cap layers (prescription, comfort), applied at ``connect()``.

        ``electrode_areas_cm2``: the electrode area on record per channel (S5). A channel
        without an area cannot be raised above 0 mA (the dose cannot be checked).
        ``dose_override``: the prescription records a clinician override of the 2 mA/cm²
        r.m.s. attention level (the 0.25 W/cm² limit is never overridden).
        ``lead_off_impedance_ohm``: telemetry impedance above this is lead-off.
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

        self._state = GovernorState.DISCONNECTED
        self._end_reason: StopReason | None = None
        self._info: DeviceInfo | None = None
        self._caps: EffectiveCaps | None = None
        self._channels: dict[int, _Channel] = {}
        self._step = profile.amplitude.step_ma
        self._ramp = RampPlan(profile.ramp.step_ma, profile.ramp.rate_ma_per_s, 0.0)
        self._lead_off_detection = profile.lead_off_detection
        self._readback = profile.reports_current
        self._remaining_s = 0.0
        self._run_started = 0.0
        self._output_confirmed = False
        """The device acknowledged the START of this run: its telemetry now speaks of it."""
        self._duration_timer: TimerHandle | None = None
        self._closed = False
        driver.set_report_hook(self._on_report)

    # ------------------------------------------------------------------ plumbing
    def _locked(self) -> AbstractContextManager[None]:
        """The driver's one lock; a public call waits for its events to be delivered."""
        return self._driver.locked(wait_for_delivery=True)

    def _emit(self, event: GovernorEvent) -> None:
        """Deliver ``event`` after the lock is released, in order (lock held)."""
        self._driver.defer(functools.partial(self._deliver, event))

    def _deliver(self, event: GovernorEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # a logging failure must not break the safety path
            log.exception("on_event handler failed for %s", event.kind)

    def _now(self) -> float:
        return self._clock.now()

    def _transition(self, trigger: Trigger) -> GovernorState:
        """Move to where ``trigger`` leads (the caller checked it is allowed)."""
        state = next_state(self._state, trigger)
        assert state is not None, f"{trigger} is not allowed while {self._state}"
        self._state = state
        return state

    def _require_caps(self) -> EffectiveCaps:
        if self._caps is None:
            raise GovernorStateError("the device is not connected; connect first")
        return self._caps

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
        return self._ramp.step_ma

    @property
    def ramp_rate_ma_per_s(self) -> float:
        return self._ramp.rate_ma_per_s

    def _channel(self, channel: int) -> _Channel:
        found = self._channels.get(channel)
        if found is None:
            self._require_caps()
            known = ", ".join(str(c) for c in sorted(self._channels))
            raise GovernorStateError(f"there is no channel {channel}; channels are {known}")
        return found

    def channel_status(self, channel: int) -> ChannelStatus:
        with self._driver.locked():
            ch = self._channel(channel)
            return ChannelStatus(ch, self._cap(ch))

    def max_amplitude(self, channel: int) -> Bound:
        """The highest amplitude ``set_target`` accepts on ``channel`` now, on the step grid,
        and the layer that binds (PROFILE, DEVICE, PRESCRIPTION, COMFORT or DOSE)."""
        with self._driver.locked():
            return self._cap(self._channel(channel))

    def _cap(self, ch: _Channel) -> Bound:
        return rules.amplitude_cap(self._require_caps(), ch.number, ch.dose_bound)

    def remaining_s(self) -> float | None:
        """Stimulation time left in the running or paused session (pauses do not count)."""
        with self._driver.locked():
            if self._state is GovernorState.RUNNING:
                return max(0.0, self._remaining_s - (self._now() - self._run_started))
            if self._state is GovernorState.PAUSED:
                return max(0.0, self._remaining_s)
            return None

    # ------------------------------------------------------------------ refusals
    def _reject(
        self, refusal: Refusal, channel: int | None, who: str = "", why: str = ""
    ) -> SafetyRejection:
        """Log a refusal (S4); the caller raises the returned error. Nothing is sent."""
        message = f"{refusal.message}; nothing was sent"
        self._emit(
            Rejected(
                time=self._now(),
                channel=channel,
                parameter=refusal.parameter,
                value=refusal.value,
                limit=refusal.limit,
                source=refusal.source.value,
                message=message,
                who=_actor(who) if who else None,
                why=why,
            )
        )
        return SafetyRejection(
            refusal.parameter, refusal.value, refusal.limit, refusal.source, channel, message
        )

    def _state_error(
        self, message: str, channel: int | None = None, who: str = "", why: str = ""
    ) -> GovernorStateError:
        self._emit(
            Rejected(
                time=self._now(),
                channel=channel,
                parameter="state",
                value=self._state.value,
                message=message,
                who=_actor(who) if who else None,
                why=why,
            )
        )
        return GovernorStateError(message)

    def _check_channel(self, channel: int, who: str = "", why: str = "") -> _Channel:
        found = self._channels.get(channel)
        if found is None:
            count = len(self._require_caps().channels)
            source = CapSource.DEVICE if count < self._profile.channels else CapSource.PROFILE
            raise self._reject(
                Refusal(
                    "channel",
                    float(channel),
                    float(count),
                    source,
                    f"channel {channel} does not exist (this device has channels 1-{count})",
                ),
                channel,
                who,
                why,
            )
        return found

    # ------------------------------------------------------------------ sending (lock held)
    def _send_amplitude(self, ch: _Channel, value: float, who: Actor, why: str) -> None:
        """Send one amplitude now. A failure ends the session."""
        increase = value > ch.commanded
        previous = ch.commanded
        ch.commanded = value
        if increase:
            ch.inc_inflight = True
        epoch = ch.epoch
        try:
            pending = self._driver.request_amplitude(ch.number, value)
        except DriverError as error:
            ch.commanded = previous
            if increase:
                ch.inc_inflight = False
            self._command_failed(error, f"amplitude {fmt(value)} mA on channel {ch.number}")
            return
        timer = self._watch(pending)
        pending.add_done_callback(
            functools.partial(self._amplitude_done, ch, value, increase, epoch, who, why, timer)
        )

    def _watch(self, pending: Pending) -> TimerHandle:
        """S8, belt and braces: the engine answers every command within 1 s; if it ever did
        not, the governor ends the session as comms lost all the same."""
        deadline = max(pending.deadline, self._now() + rules.COMMS_TIMEOUT_S)
        timer = self._clock.call_at(deadline, functools.partial(self._overdue, pending))
        pending.add_done_callback(lambda _p: timer.cancel())
        return timer

    def _overdue(self, pending: Pending) -> None:
        with self._driver.locked():
            if not pending.done():
                self._comms_lost(f"no acknowledgement for {pending.command} within 1 s")

    def _amplitude_done(
        self,
        ch: _Channel,
        value: float,
        increase: bool,
        epoch: int,
        who: Actor,
        why: str,
        timer: TimerHandle,
        pending: Pending,
    ) -> None:
        with self._driver.locked():
            timer.cancel()
            if increase:
                ch.inc_inflight = False
            if pending.error is not None:
                if epoch == ch.epoch or not increase:
                    self._command_failed(
                        pending.error, f"amplitude {fmt(value)} mA on channel {ch.number}"
                    )
                return
            previous = ch.acked
            ch.acked = value
            if increase:
                ch.last_increase = self._now()
            if ch is not self._channels.get(ch.number):
                return
            self._emit(
                AmplitudeChanged(
                    time=self._now(),
                    channel=ch.number,
                    from_ma=previous,
                    to_ma=value,
                    who=who,
                    why=why,
                )
            )
            if epoch == ch.epoch and self._state is GovernorState.RUNNING:
                self._ramp_on(ch)

    def _command_failed(self, error: DriverError, what: str) -> None:
        """A command the governor sent failed: end the session with the matching reason."""
        if isinstance(error, DeviceRejectedError):
            self._emit(
                DeviceRejected(
                    time=self._now(),
                    detail=str(error),
                    command=error.command,
                    code=error.code.value,
                )
            )
            if error.code is ErrorCode.CRC:
                self._comms_lost(f"{what}: {error}")
            elif error.code in (ErrorCode.LIMIT, ErrorCode.PARAMETER, ErrorCode.RAMP):
                self._end(StopReason.LIMIT, f"{what}: {error}")
            else:
                self._end(StopReason.DEVICE_FAULT, f"{what}: {error}")
        elif isinstance(error, CommsLostError):
            self._comms_lost(f"{what}: {error}")
        else:
            self._end(StopReason.DEVICE_FAULT, f"{what}: {error}")

    def _write_stop(self) -> Pending | None:
        """Queue the stop now. Never raises; None when the driver could not take it."""
        try:
            pending = self._driver.request_stop()
        except Exception as error:  # a driver bug must not keep the governor from ending
            log.warning("stop could not be sent: %s", error)
            return None
        self._watch(pending)
        pending.add_done_callback(self._stop_done)
        return pending

    def _stop_done(self, pending: Pending) -> None:
        with self._driver.locked():
            if pending.error is None:
                was_on = any(ch.acked > 0 for ch in self._channels.values())
                for ch in self._channels.values():
                    ch.acked = 0.0
                if was_on:
                    self._emit(
                        StopConfirmed(
                            time=self._now(),
                            detail="the device acknowledged the stop: every output at 0 mA",
                        )
                    )
            elif self._state in (GovernorState.RUNNING, GovernorState.PAUSED):
                self._command_failed(pending.error, "stop")
            else:
                self._emit(
                    DeviceRejected(
                        time=self._now(),
                        detail=f"the stop was not acknowledged: {pending.error}",
                        command="stop",
                        code=type(pending.error).__name__,
                    )
                )

    # ------------------------------------------------------------------ ramp (S2)
    def _ramp_on(self, ch: _Channel) -> None:
        """Send the next ramp step if one is due, else book it (lock held)."""
        # a cap never moves under a target without lowering it; the ramp checks once more
        ch.target = min(ch.target, self._cap(ch).value)
        if ch.inc_inflight:
            return
        value, due = rules.next_ramp_step(
            ch.commanded, ch.target, ch.last_increase, self._now(), self._ramp
        )
        if value is not None:
            self._send_amplitude(ch, value, ch.who, ch.why)
        elif due is not None and (ch.timer is None or ch.timer.cancelled or ch.timer.when != due):
            if ch.timer is not None:
                ch.timer.cancel()
            ch.timer = self._clock.call_at(due, functools.partial(self._ramp_tick, ch))

    def _ramp_tick(self, ch: _Channel) -> None:
        with self._driver.locked():
            ch.timer = None
            if self._state is GovernorState.RUNNING and ch is self._channels.get(ch.number):
                self._ramp_on(ch)

    # ------------------------------------------------------------------ ending
    def _end(self, reason: StopReason, detail: str = "", stop_written: bool = False) -> None:
        """Every output 0 and ENDED (lock held): the stop is queued before anything else.
        Outside a session (already ENDED, or DISCONNECTED) only the stop is sent again."""
        ending = self._state in CONNECTED
        if not stop_written and (ending or self._driver.connected):
            self._write_stop()
        if ending:
            self._zero_book()
            self._cancel_duration(record=True)
            self._transition(Trigger.END)
            self._end_reason = reason
            self._emit(Stopped(time=self._now(), reason=reason, detail=detail or reason.value))

    def _zero_book(self) -> None:
        for ch in self._channels.values():
            ch.reset_output()
        self._output_confirmed = False

    def _comms_lost(self, detail: str) -> None:
        if self._state in CONNECTED:
            self._emit(CommsLost(time=self._now(), detail=detail))
            self._end(StopReason.COMMS_LOST, detail)
        elif self._state is GovernorState.ENDED:
            self._emit(CommsLost(time=self._now(), detail=detail))

    def _cancel_duration(self, record: bool) -> None:
        if self._duration_timer is not None:
            self._duration_timer.cancel()
            self._duration_timer = None
        if record and self._state is GovernorState.RUNNING:
            self._remaining_s -= self._now() - self._run_started

    def _on_duration(self) -> None:
        with self._driver.locked():
            self._duration_timer = None
            if self._state is GovernorState.RUNNING:
                self._end(StopReason.DURATION, "the planned session duration was reached")

    # ------------------------------------------------------------------ reports (lock held)
    def _on_report(self, report: Report) -> None:
        if isinstance(report, Telemetry):
            self._on_telemetry(report)
        else:
            self._on_device_event(report)

    def _on_telemetry(self, tel: Telemetry) -> None:
        ch = self._channels.get(tel.channel)
        if ch is None:
            return
        ch.measured = tel.measured_ma
        ch.impedance = tel.impedance_ohm
        if (
            tel.output_on is False
            and self._state is GovernorState.RUNNING
            and self._output_confirmed
        ):
            # S15: the device says its output is off while the host believes it on (the event
            # that said so was lost): the session cannot go on
            self._emit(
                DeviceReported(
                    time=self._now(),
                    event=DeviceEventKind.OUTPUT_STOPPED.value,
                    detail="the device reports its output off",
                )
            )
            self._end(StopReason.DEVICE_FAULT, "the device reports its output off")
            return
        if ch.settings is not None:
            off = rules.lead_off_seen(tel.impedance_ohm, tel.lead_off, self._lead_off_ohm)
            if off and not ch.lead_off:
                what = (
                    "the device reports the electrode off"
                    if tel.lead_off
                    else f"impedance {fmt(tel.impedance_ohm or 0.0)} Ω over threshold"
                )
                self._lead_off(ch, what)
                return
            if off is False and ch.lead_off:
                ch.lead_off = False
                self._emit(
                    LeadOn(
                        time=self._now(),
                        channel=ch.number,
                        detail="electrode contact restored"
                        + ("" if tel.impedance_ohm is None else f" ({fmt(tel.impedance_ohm)} Ω)"),
                        impedance_ohm=tel.impedance_ohm,
                    )
                )
        self._check_readback(ch, tel)

    def _check_readback(self, ch: _Channel, tel: Telemetry) -> None:
        """S9: measured (and device-reported set) current against what was set."""
        differs = rules.readback_differs(
            ch.acked, ch.commanded, tel.measured_ma, tel.set_ma, self._step
        )
        if differs is None:
            ch.mismatches = 0
            return
        ch.mismatches += 1
        if ch.mismatches < rules.READBACK_CONSECUTIVE:
            return
        ch.mismatches = 0
        detail = (
            f"channel {ch.number} read back {fmt(differs)} mA while {fmt(ch.acked)} mA was set, "
            "in two consecutive readings"
        )
        self._emit(
            OutputMismatch(
                time=self._now(),
                channel=ch.number,
                detail=detail,
                set_ma=ch.acked,
                commanded_ma=ch.commanded,
                measured_ma=tel.measured_ma,
                device_set_ma=tel.set_ma,
            )
        )
        if self._state in CONNECTED:
            self._end(StopReason.OUTPUT_MISMATCH, detail)
        elif self._driver.connected:
            self._write_stop()

    def _lead_off(self, ch: _Channel, detail: str) -> None:
        ch.lead_off = True
        self._emit(
            LeadOff(time=self._now(), channel=ch.number, detail=detail, impedance_ohm=ch.impedance)
        )
        if self._state is GovernorState.RUNNING:
            self._pause(StopReason.LEAD_OFF, f"lead-off on channel {ch.number}")

    def _lead_off_unknown(self, detail: str) -> None:
        """Lead-off on a channel the device does not name (RehaStim 2 electrode error): every
        configured channel is suspect; pause like any lead-off."""
        for ch in self._channels.values():
            if ch.settings is not None:
                ch.lead_off = True
        self._emit(LeadOff(time=self._now(), detail=detail))
        if self._state is GovernorState.RUNNING:
            self._pause(StopReason.LEAD_OFF, f"lead-off ({detail})")

    def _on_device_event(self, event: DeviceEvent) -> None:
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
            DeviceReported(
                time=self._now(),
                channel=event.channel,
                detail=event.detail or kind.value,
                event=kind.value,
            )
        )
        reason = rules.END_FOR_DEVICE_EVENT.get(kind)
        if reason is not None and self._state in CONNECTED:
            self._end(reason, event.detail or kind.value)

    # ------------------------------------------------------------------ connect
    def connect(self) -> DeviceInfo:
        """Identify the device, compute the caps, set every output to 0 (S1).

        Allowed when DISCONNECTED, IDLE or ENDED; leaves IDLE with no channel configured.
        Emits Connected, then NoLeadOffDetection / NoReadback when they apply.
        """
        with self._driver.locked():
            if next_state(self._state, Trigger.CONNECT) is None:
                raise GovernorStateError("a session is running; stop it before reconnecting")
            if self._closed:
                raise GovernorStateError("the governor is closed; open a new driver")
        info = self._driver.identify()
        channels = min(info.channels, self._profile.channels)
        caps = self._build_caps(info, channels)
        plan = rules.ramp_plan(caps)
        if isinstance(plan, Refusal):
            raise DriverError(plan.message)
        self._driver.wait(self._driver.request_stop())
        with self._locked():
            self._info = info
            self._caps = caps
            self._step = caps.amplitude_step_ma
            self._ramp = plan
            self._channels = {n: _Channel(n) for n in sorted(caps.channels)}
            self._transition(Trigger.CONNECT)
            self._end_reason = None
            self._lead_off_detection = self._profile.lead_off_detection and info.reports_impedance
            self._readback = self._profile.reports_current and info.reports_current
            self._emit(
                Connected(
                    time=self._now(),
                    detail=f"{info.model} serial {info.serial_number} firmware {info.firmware}",
                    model=info.model,
                    serial=info.serial_number,
                    firmware=info.firmware,
                    protocol=f"{info.protocol} {info.protocol_version}",
                    profile=self._profile.id,
                    channels=channels,
                    simulator=info.is_simulator,
                    reported_simulator=info.reported_simulator,
                    caps=self._cap_list(),
                    max_session_min=caps.max_session.value,
                    max_session_source=caps.max_session.source,
                )
            )
            if not self._lead_off_detection:
                self._emit(
                    NoLeadOffDetection(
                        time=self._now(), detail="this device cannot detect electrodes coming off"
                    )
                )
            if not self._readback:
                self._emit(
                    NoReadback(
                        time=self._now(),
                        detail="this device does not report the current it delivers; output "
                        "read-back checks cannot run",
                    )
                )
            return info

    def _build_caps(self, info: DeviceInfo, channels: int) -> EffectiveCaps:
        layers = self._layers
        if self._comfort:
            layers = (
                *layers,
                CapLayer(source=CapSource.COMFORT, channel_max_amplitude_ma=self._comfort),
            )
        return effective_caps(self._profile, info.limits, layers, channels)

    def _cap_list(self) -> tuple[ChannelCap, ...]:
        out = []
        for number, ch in self._channels.items():
            bound = self._cap(ch)
            out.append(ChannelCap(channel=number, max_ma=bound.value, source=bound.source))
        return tuple(out)

    # ------------------------------------------------------------------ caps
    def set_layers(self, layers: tuple[CapLayer, ...]) -> None:
        """Replace the extra cap layers. A tighter cap lowers targets and output at once."""
        with self._locked():
            self._layers = tuple(layers)
            self._recompute_caps("cap layers changed")

    def set_comfort_cap(self, channel: int, milliamps: float | None) -> None:
        """The patient's own cap on ``channel`` (None removes it); lowering it below the
        current output lowers the output at once."""
        with self._locked():
            if milliamps is not None and (not math.isfinite(milliamps) or milliamps < 0):
                raise self._reject(
                    Refusal(
                        "comfort cap",
                        milliamps,
                        0.0,
                        CapSource.COMFORT,
                        f"comfort cap {fmt(milliamps)} mA on channel {channel} is not a valid "
                        "current",
                    ),
                    channel,
                )
            if self._caps is not None:
                self._check_channel(channel)
            if milliamps is None:
                self._comfort.pop(channel, None)
            else:
                self._comfort[channel] = milliamps
            self._recompute_caps(f"comfort cap on channel {channel}")

    def _recompute_caps(self, why: str) -> None:
        if self._info is None:
            return
        self._caps = caps = self._build_caps(self._info, len(self._channels))
        running = self._state is GovernorState.RUNNING
        for ch in self._channels.values():
            if ch.settings is not None and rules.check_settings(ch.settings, ch.number, caps):
                # the program is no longer allowed: zero the channel, it must be reconfigured
                had_output = ch.live
                ch.reset_output()
                if running and had_output:
                    self._send_amplitude(ch, 0.0, Actor.SYSTEM, why)
                ch.settings = None
                ch.dose_bound = None
            limit = self._cap(ch).value
            if ch.target > limit + EPS:
                self._emit(
                    TargetChanged(
                        time=self._now(),
                        channel=ch.number,
                        detail=f"lowered to the new cap ({why})",
                        from_ma=ch.target,
                        to_ma=limit,
                        who=Actor.SYSTEM,
                        why=why,
                    )
                )
                ch.target = limit
            if ch.commanded > limit + EPS and running:
                self._send_amplitude(ch, limit, Actor.SYSTEM, why)
        self._emit(
            CapsChanged(
                time=self._now(),
                detail=why,
                caps=self._cap_list(),
                max_session_min=caps.max_session.value,
                max_session_source=caps.max_session.source,
            )
        )

    # ------------------------------------------------------------------ configure
    def configure(self, channel: int, settings: ChannelSettings) -> None:
        """Check ``settings`` against the caps (S3/S4), then send them; amplitude to 0 (S1).

        Allowed when IDLE, RUNNING or PAUSED. While RUNNING the channel is zeroed first.
        Raises SafetyRejection (nothing sent) or the device's DriverError.
        """
        with self._locked():
            if self._state not in CONNECTED:
                raise self._state_error(
                    f"cannot change the program while {self._state.value}", channel
                )
            ch = self._check_channel(channel)
            problem = rules.check_settings(settings, channel, self._require_caps())
            if problem is not None:
                raise self._reject(problem, channel)
            running = self._state is GovernorState.RUNNING
            had_output = ch.live
            ch.reset_output()
            ch.settings = None
            ch.dose_bound = None
            if running and had_output:
                self._send_amplitude(ch, 0.0, Actor.SYSTEM, "program change")
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
        try:
            self._driver.wait(pending)
        except DriverError as error:
            with self._locked():
                if self._state in CONNECTED:
                    if isinstance(error, DeviceRejectedError):
                        self._emit(
                            DeviceRejected(
                                time=self._now(),
                                channel=channel,
                                detail=str(error),
                                command=error.command,
                                code=error.code.value,
                            )
                        )
                    else:
                        self._comms_lost(f"configure channel {channel}: {error}")
            raise
        with self._locked():
            if ch.epoch != epoch or ch is not self._channels.get(channel):
                raise GovernorStateError(
                    f"channel {channel} was reset while it was being configured; configure it again"
                )
            caps = self._require_caps()
            ch.settings = settings
            ch.acked = 0.0
            ch.dose_bound = rules.dose_cap(
                settings,
                self._areas.get(channel),
                self._dose_override,
                self._load_ohm,
                caps.channel(channel).max_amplitude.value,
                self._step,
            )
            bound = self._cap(ch)
            self._emit(
                Configured(
                    time=self._now(),
                    channel=channel,
                    detail=f"{settings.pattern.value} {fmt(settings.frequency_hz)} Hz "
                    f"{settings.pulse_width_us} µs {settings.waveform.value}",
                    settings=settings,
                    electrode_area_cm2=self._areas.get(channel),
                    dose_limit_ma=ch.dose_bound.value,
                    max_ma=bound.value,
                    max_source=bound.source,
                )
            )

    # ------------------------------------------------------------------ start, resume
    def start(self, duration_s: float) -> None:
        """IDLE -> RUNNING with every amplitude 0; ends the session after ``duration_s`` of
        stimulation (S6). At least one channel must be configured."""
        with self._locked():
            if next_state(self._state, Trigger.START) is None:
                raise self._state_error(f"cannot start a session while {self._state.value}")
            problem = rules.check_duration(duration_s, self._require_caps())
            if problem is not None:
                raise self._reject(problem, None)
            if not any(ch.settings is not None for ch in self._channels.values()):
                raise self._state_error("no channel is configured; choose a program first")
            self._zero_book()
            for ch in self._channels.values():
                ch.lead_off = False
            pending = self._send_start()
            self._transition(Trigger.START)
            self._remaining_s = float(duration_s)
            self._run(self._remaining_s)
            self._emit(Started(time=self._now(), duration_s=float(duration_s)))
        self._wait_start(pending, "start")

    def _send_start(self) -> Pending:
        try:
            pending = self._driver.request_start()
        except DriverError as error:
            self._command_failed(error, "start")
            raise
        self._watch(pending)
        pending.add_done_callback(self._start_done)
        return pending

    def _start_done(self, pending: Pending) -> None:
        with self._driver.locked():
            if pending.error is None and self._state is GovernorState.RUNNING:
                self._output_confirmed = True

    def _run(self, seconds: float) -> None:
        self._run_started = self._now()
        self._duration_timer = self._clock.call_at(
            self._run_started + max(0.0, seconds), self._on_duration
        )

    def _wait_start(self, pending: Pending, command: str) -> None:
        try:
            self._driver.wait(pending)
        except DriverError as error:
            with self._locked():
                if self._state is GovernorState.RUNNING:
                    self._command_failed(error, command)
            raise

    def resume(self) -> None:
        """PAUSED -> RUNNING from 0 mA on every channel (S1); targets are 0."""
        with self._locked():
            if next_state(self._state, Trigger.RESUME) is None:
                raise self._state_error(f"cannot resume while {self._state.value}")
            self._zero_book()
            if self._info is None or not self._info.reports_impedance:
                # nothing will tell us the electrode is back: the patient's word is all we have
                for ch in self._channels.values():
                    ch.lead_off = False
            pending = self._send_start()
            self._transition(Trigger.RESUME)
            self._run(self._remaining_s)
            self._emit(Resumed(time=self._now(), remaining_s=self._remaining_s))
        self._wait_start(pending, "start (resume)")

    # ------------------------------------------------------------------ intensity
    def set_target(
        self, channel: int, milliamps: float, *, who: str = "patient", why: str = ""
    ) -> None:
        """Set where ``channel``'s amplitude is heading (RUNNING only).

        Refused (SafetyRejection, Rejected event, nothing written) if above any cap, off the
        amplitude step grid, negative, or failing the dose checks (S4/S5). Increases ramp on
        the clock (S2); decreases are sent at once.
        """
        with self._locked():
            self._set_target(channel, milliamps, who, why)

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
                f"the electrode on channel {channel} is off; put it back on the skin before "
                "raising the intensity",
                channel,
                who,
                why,
            )
        caps = self._require_caps()
        step_source = (
            CapSource.DEVICE if self._step > self._profile.amplitude.step_ma else CapSource.PROFILE
        )
        problem = rules.check_amplitude(ma, channel, caps, step_source)
        if problem is None and ma > 0:
            problem = rules.check_dose(
                ma,
                channel,
                ch.settings,
                self._areas.get(channel),
                self._dose_override,
                self._load_ohm,
            )
        if problem is not None:
            raise self._reject(problem, channel, who, why)
        ma = round(round(ma / self._step) * self._step, 6)
        if ma == ch.target:
            return ma
        actor = _actor(who)
        self._emit(
            TargetChanged(
                time=self._now(), channel=channel, from_ma=ch.target, to_ma=ma, who=actor, why=why
            )
        )
        ch.target = ma
        ch.who = actor
        ch.why = why
        if ma < ch.commanded:
            if ch.timer is not None:
                ch.timer.cancel()
                ch.timer = None
            self._send_amplitude(ch, ma, actor, why)
        else:
            self._ramp_on(ch)
        return ma

    def step_up(self, channel: int, *, who: str = "patient", why: str = "") -> float:
        """Raise by one amplitude step above where the output is (S16: presses do not queue up
        beyond one step ahead of the delivered current); returns the new target.

        At the cap this raises SafetyRejection naming the binding cap (the UI says so)."""
        with self._locked():
            if self._state is not GovernorState.RUNNING:
                raise self._state_error(
                    f"cannot change the intensity while {self._state.value}", channel, who, why
                )
            ch = self._check_channel(channel, who, why)
            above = round(ch.target + self._step, 6)
            if ch.settings is not None and above > self._cap(ch).value + EPS:
                return self._set_target(channel, above, who, why)  # refused, naming the cap
            return self._set_target(
                channel, rules.step_up_target(ch.target, ch.acked, self._step), who, why
            )

    def step_down(self, channel: int, *, who: str = "patient", why: str = "") -> float:
        """Lower the target by one amplitude step (not below 0); returns the new target."""
        with self._locked():
            if self._state is not GovernorState.RUNNING:
                raise self._state_error(
                    f"cannot change the intensity while {self._state.value}", channel, who, why
                )
            ch = self._check_channel(channel, who, why)
            target = max(0.0, round(rules.grid_floor(ch.target, self._step) - self._step, 6))
            return self._set_target(channel, target, who, why)

    def hold(self, channel: int, *, who: str = "patient", why: str = "released") -> None:
        """S16: stop a rise where it is (the key was released): the target becomes the
        amplitude already sent. Never lowers the output; nothing happens when not rising."""
        with self._locked():
            ch = self._channels.get(channel)
            if (
                ch is None
                or self._state is not GovernorState.RUNNING
                or ch.target <= ch.commanded + EPS
            ):
                return
            actor = _actor(who)
            self._emit(
                TargetChanged(
                    time=self._now(),
                    channel=channel,
                    from_ma=ch.target,
                    to_ma=ch.commanded,
                    who=actor,
                    why=why,
                )
            )
            ch.target = ch.commanded
            if ch.timer is not None:
                ch.timer.cancel()
                ch.timer = None

    # ------------------------------------------------------------------ pause, stop
    def pause(self, reason: StopReason = StopReason.USER) -> None:
        """RUNNING -> PAUSED: every output 0 at once (stop written before return).

        Idempotent when already PAUSED."""
        with self._locked():
            if self._state is GovernorState.PAUSED:
                return
            if next_state(self._state, Trigger.PAUSE) is None:
                raise self._state_error(f"cannot pause while {self._state.value}")
            self._pause(reason, "paused")

    def _pause(self, reason: StopReason, detail: str) -> None:
        written = self._write_stop()
        self._zero_book()
        self._cancel_duration(record=True)
        self._transition(Trigger.PAUSE)
        self._emit(Paused(time=self._now(), reason=reason, detail=detail))
        if written is None:
            self._comms_lost("the stop could not be sent")

    def stop(self, reason: StopReason = StopReason.USER) -> None:
        """Every output 0 at once (stop written before return, never waits), state ENDED.

        Idempotent; allowed in every state. When already ENDED the stop is written again and
        the first end reason is kept."""
        with self._locked():
            if self._state is GovernorState.DISCONNECTED:
                if self._driver.connected:
                    self._write_stop()
                return
            self._end(reason)

    def emergency_stop(self) -> None:
        """S10: stop written before return, ENDED(EMERGENCY). Never raises, never waits."""
        with self._locked():
            written = self._write_stop() is not None
            self._emit(
                EmergencyStop(
                    time=self._now(),
                    detail="emergency stop"
                    if written
                    else "emergency stop (the stop could not be sent)",
                    sent=written,
                )
            )
            self._end(StopReason.EMERGENCY, "emergency stop", stop_written=True)

    def close(self) -> None:
        """Stop (CLOSED if a session was on), close the driver; DISCONNECTED. Idempotent."""
        with self._locked():
            if self._closed:
                return
            self._closed = True
            if self._state in (GovernorState.RUNNING, GovernorState.PAUSED):
                self._end(StopReason.CLOSED, "closed")
            for ch in self._channels.values():
                ch.reset_output()
            self._cancel_duration(record=False)
        self._driver.set_report_hook(None)
        self._driver.close()
        with self._locked():
            self._transition(Trigger.CLOSE)
            self._emit(Closed(time=self._now(), detail="the port is closed"))


__all__ = [
    "ChannelStatus",
    "GovernorStateError",
    "SafetyGovernor",
    "SafetyRejection",
]
