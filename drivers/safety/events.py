"""What the safety governor reports: one typed, frozen model per event.

These models are the log records: the session layer stores each event as it is (its fields are
the payload, its ``kind`` the record kind), so one vocabulary runs from the governor to the log
and the review. No event carries free-form data. Three kinds keep the name and fields of the
records written before the governor had typed events (``amplitude_changed``, ``rejected``,
``device_event``), plus the time, so the review reads old and new logs alike.

Patient-facing wording is not here: ``detail`` is a technical sentence for the log; what a
patient reads is the application's choice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from drivers.base import ChannelSettings
from drivers.limits import CapSource

Text = Annotated[str, Field(max_length=10_000)]
ShortText = Annotated[str, Field(max_length=200)]


class Actor(StrEnum):
    """Who caused a change."""

    PATIENT = "patient"
    CLINICIAN = "clinician"
    SYSTEM = "system"
    """The governor itself (a cap lowered, a program refused) or the program on its own."""


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
    """The link is lost: no answer within 1 s, silence, or the port vanished (S8)."""
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
    NO_LEAD_OFF_DETECTION = "no_lead_off_detection"
    NO_READBACK = "no_readback"
    CAPS_CHANGED = "caps_changed"
    CONFIGURED = "configured"
    STARTED = "started"
    TARGET_CHANGED = "target_changed"
    AMPLITUDE_SET = "amplitude_changed"
    REJECTED = "rejected"
    DEVICE_REJECTED = "device_rejected"
    PAUSED = "paused"
    RESUMED = "resumed"
    LEAD_OFF = "lead_off"
    LEAD_ON = "lead_on"
    OUTPUT_MISMATCH = "output_mismatch"
    COMMS_LOST = "comms_lost"
    DEVICE_EVENT = "device_event"
    STOPPED = "stopped"
    STOP_CONFIRMED = "stop_confirmed"
    EMERGENCY_STOP = "emergency_stop"
    CLOSED = "closed"


class SafetyEvent(BaseModel):
    """Fields every event has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: float
    """The governor's clock time (monotonic seconds)."""
    channel: int | None = None
    detail: Text = ""


class ChannelCap(BaseModel):
    """One channel's binding amplitude cap and the layer it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: int
    max_ma: float
    source: CapSource


class Connected(SafetyEvent):
    """``connect()`` identified the device and zeroed every output."""

    kind: Literal[SafetyEventKind.CONNECTED] = SafetyEventKind.CONNECTED
    model: ShortText
    serial: ShortText
    firmware: ShortText
    protocol: ShortText
    profile: ShortText
    channels: int
    simulator: bool
    """The built-in simulator (decided from the URL, S17)."""
    reported_simulator: bool = False
    """What the device says about itself (logged, never trusted)."""
    caps: tuple[ChannelCap, ...] = ()
    max_session_min: float
    max_session_source: CapSource


class NoLeadOffDetection(SafetyEvent):
    """The device cannot detect lead-off (flag it in the UI and log)."""

    kind: Literal[SafetyEventKind.NO_LEAD_OFF_DETECTION] = SafetyEventKind.NO_LEAD_OFF_DETECTION


class NoReadback(SafetyEvent):
    """The device does not report measured current: S9 read-back cannot run."""

    kind: Literal[SafetyEventKind.NO_READBACK] = SafetyEventKind.NO_READBACK


class CapsChanged(SafetyEvent):
    """Cap layers or the comfort cap changed; ``detail`` says why."""

    kind: Literal[SafetyEventKind.CAPS_CHANGED] = SafetyEventKind.CAPS_CHANGED
    caps: tuple[ChannelCap, ...] = ()
    max_session_min: float
    max_session_source: CapSource


class Configured(SafetyEvent):
    """A channel's program settings were acknowledged."""

    kind: Literal[SafetyEventKind.CONFIGURED] = SafetyEventKind.CONFIGURED
    settings: ChannelSettings
    electrode_area_cm2: float | None = None
    dose_limit_ma: float
    max_ma: float
    max_source: CapSource


class Started(SafetyEvent):
    """A session started at 0 mA."""

    kind: Literal[SafetyEventKind.STARTED] = SafetyEventKind.STARTED
    duration_s: float


class TargetChanged(SafetyEvent):
    """Where a channel's amplitude is heading changed."""

    kind: Literal[SafetyEventKind.TARGET_CHANGED] = SafetyEventKind.TARGET_CHANGED
    from_ma: float
    to_ma: float
    who: Actor
    why: Text = ""


class AmplitudeChanged(SafetyEvent):
    """The device acknowledged an amplitude (each ramp step, each decrease)."""

    kind: Literal[SafetyEventKind.AMPLITUDE_SET] = SafetyEventKind.AMPLITUDE_SET
    channel: int
    from_ma: float
    to_ma: float
    who: Actor
    why: Text = ""


class Rejected(SafetyEvent):
    """A request was refused and nothing was sent (S4); or a state error (``parameter`` is
    ``state``). The application logs its own refused preconditions with the same record."""

    kind: Literal[SafetyEventKind.REJECTED] = SafetyEventKind.REJECTED
    command: ShortText = ""
    """What the application was doing (logged by the application; empty from the governor)."""
    parameter: ShortText
    value: JsonValue = None
    limit: JsonValue = None
    source: ShortText = ""
    message: Text
    who: Actor | None = None
    why: Text = ""


class DeviceRejected(SafetyEvent):
    """The device answered a command with an error."""

    kind: Literal[SafetyEventKind.DEVICE_REJECTED] = SafetyEventKind.DEVICE_REJECTED
    command: ShortText
    code: ShortText


class Paused(SafetyEvent):
    """Every output 0; ``reason`` USER or LEAD_OFF."""

    kind: Literal[SafetyEventKind.PAUSED] = SafetyEventKind.PAUSED
    reason: StopReason


class Resumed(SafetyEvent):
    """Running again from 0 mA."""

    kind: Literal[SafetyEventKind.RESUMED] = SafetyEventKind.RESUMED
    remaining_s: float


class LeadOff(SafetyEvent):
    """Lead-off on ``channel`` (None: the device does not say which)."""

    kind: Literal[SafetyEventKind.LEAD_OFF] = SafetyEventKind.LEAD_OFF
    impedance_ohm: float | None = None


class LeadOn(SafetyEvent):
    """Telemetry shows ``channel``'s electrode contact restored."""

    kind: Literal[SafetyEventKind.LEAD_ON] = SafetyEventKind.LEAD_ON
    impedance_ohm: float | None = None


class OutputMismatch(SafetyEvent):
    """Read-back mismatch on ``channel`` (S9)."""

    kind: Literal[SafetyEventKind.OUTPUT_MISMATCH] = SafetyEventKind.OUTPUT_MISMATCH
    set_ma: float
    commanded_ma: float
    measured_ma: float | None = None
    device_set_ma: float


class CommsLost(SafetyEvent):
    """The link to the device is lost (S8)."""

    kind: Literal[SafetyEventKind.COMMS_LOST] = SafetyEventKind.COMMS_LOST


class DeviceReported(SafetyEvent):
    """Something the device reported that no other event covers (battery low, fault, reset,
    watchdog, emergency switch, output stopped)."""

    kind: Literal[SafetyEventKind.DEVICE_EVENT] = SafetyEventKind.DEVICE_EVENT
    event: ShortText
    """The device event's kind (``battery_low``, ``fault``, ...)."""


class Stopped(SafetyEvent):
    """Every output 0 and the session ENDED."""

    kind: Literal[SafetyEventKind.STOPPED] = SafetyEventKind.STOPPED
    reason: StopReason


class StopConfirmed(SafetyEvent):
    """The device acknowledged a stop (or pause) while some output was on: every output is
    confirmed at 0 mA. Until then a stopped output is *stopping*, not off (S11)."""

    kind: Literal[SafetyEventKind.STOP_CONFIRMED] = SafetyEventKind.STOP_CONFIRMED


class EmergencyStop(SafetyEvent):
    """``emergency_stop()`` was called (followed by STOPPED, reason EMERGENCY)."""

    kind: Literal[SafetyEventKind.EMERGENCY_STOP] = SafetyEventKind.EMERGENCY_STOP
    reason: StopReason = StopReason.EMERGENCY
    sent: bool = True
    """The stop could be handed to the port."""


class Closed(SafetyEvent):
    """``close()``: the port is closed."""

    kind: Literal[SafetyEventKind.CLOSED] = SafetyEventKind.CLOSED


GovernorEvent = Annotated[
    Connected
    | NoLeadOffDetection
    | NoReadback
    | CapsChanged
    | Configured
    | Started
    | TargetChanged
    | AmplitudeChanged
    | Rejected
    | DeviceRejected
    | Paused
    | Resumed
    | LeadOff
    | LeadOn
    | OutputMismatch
    | CommsLost
    | DeviceReported
    | Stopped
    | StopConfirmed
    | EmergencyStop
    | Closed,
    Field(discriminator="kind"),
]
"""Every event the governor reports."""

GOVERNOR_EVENT: TypeAdapter[GovernorEvent] = TypeAdapter(GovernorEvent)
GOVERNOR_KINDS: frozenset[str] = frozenset(kind.value for kind in SafetyEventKind)
