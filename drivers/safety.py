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

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from drivers.base import (
    ChannelSettings,
    DeviceInfo,
    DriverError,
    TensDriver,
)
from drivers.clock import Clock
from drivers.limits import Bound, CapLayer, CapSource, DeviceProfile, EffectiveCaps

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
        value: float,
        limit: float,
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
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ read-only state
    @property
    def state(self) -> GovernorState:
        raise NotImplementedError

    @property
    def end_reason(self) -> StopReason | None:
        """Why the session ENDED (None before that)."""
        raise NotImplementedError

    @property
    def info(self) -> DeviceInfo:
        """The device identity from ``connect()``. Raises GovernorStateError before."""
        raise NotImplementedError

    @property
    def caps(self) -> EffectiveCaps:
        """The effective caps (profile ∩ device ∩ layers ∩ comfort). Raises before connect."""
        raise NotImplementedError

    @property
    def channels(self) -> tuple[int, ...]:
        """The usable channel numbers (from 1)."""
        raise NotImplementedError

    @property
    def lead_off_detection(self) -> bool:
        """False when the device cannot detect lead-off (flagged at connect)."""
        raise NotImplementedError

    @property
    def readback(self) -> bool:
        """False when the device does not report measured current (S9 cannot run)."""
        raise NotImplementedError

    def channel_status(self, channel: int) -> ChannelStatus:
        raise NotImplementedError

    def max_amplitude(self, channel: int) -> Bound:
        """The highest amplitude ``set_target`` accepts on ``channel`` now, on the step grid,
        and the layer that binds (PROFILE, DEVICE, PRESCRIPTION, COMFORT or DOSE)."""
        raise NotImplementedError

    def remaining_s(self) -> float | None:
        """Stimulation time left in the running or paused session (pauses do not count)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ commands
    def connect(self) -> DeviceInfo:
        """Identify the device, compute the caps, set every output to 0 (S1).

        Allowed when DISCONNECTED, IDLE or ENDED; leaves IDLE with no channel configured.
        Emits CONNECTED, then NO_LEAD_OFF_DETECTION / NO_READBACK when they apply.
        """
        raise NotImplementedError

    def set_layers(self, layers: tuple[CapLayer, ...]) -> None:
        """Replace the extra cap layers. A tighter cap lowers targets and output at once."""
        raise NotImplementedError

    def set_comfort_cap(self, channel: int, milliamps: float | None) -> None:
        """The patient's own cap on ``channel`` (None removes it); lowering it below the
        current output lowers the output at once."""
        raise NotImplementedError

    def configure(self, channel: int, settings: ChannelSettings) -> None:
        """Check ``settings`` against the caps (S3/S4), then send them; amplitude to 0 (S1).

        Allowed when IDLE, RUNNING or PAUSED. While RUNNING the channel is zeroed first.
        Raises SafetyRejection (nothing sent) or the device's DriverError.
        """
        raise NotImplementedError

    def start(self, duration_s: float) -> None:
        """IDLE -> RUNNING with every amplitude 0; ends the session after ``duration_s`` of
        stimulation (S6). At least one channel must be configured."""
        raise NotImplementedError

    def set_target(
        self, channel: int, milliamps: float, *, who: str = "patient", why: str = ""
    ) -> None:
        """Set where ``channel``'s amplitude is heading (RUNNING only).

        Refused (SafetyRejection, REJECTED event, nothing written) if above any cap, off the
        amplitude step grid, negative, or failing the dose checks (S4/S5). Increases ramp on
        the clock (S2); decreases are sent at once.
        """
        raise NotImplementedError

    def step_up(self, channel: int, *, who: str = "patient", why: str = "") -> float:
        """Raise the target by one amplitude step; returns the new target."""
        raise NotImplementedError

    def step_down(self, channel: int, *, who: str = "patient", why: str = "") -> float:
        """Lower the target by one amplitude step (not below 0); returns the new target."""
        raise NotImplementedError

    def pause(self, reason: StopReason = StopReason.USER) -> None:
        """RUNNING -> PAUSED: every output 0 at once (STOP written before return)."""
        raise NotImplementedError

    def resume(self) -> None:
        """PAUSED -> RUNNING from 0 mA on every channel (S1); targets are 0."""
        raise NotImplementedError

    def stop(self, reason: StopReason = StopReason.USER) -> None:
        """Every output 0 at once (STOP written before return, never waits), state ENDED.

        Idempotent; allowed in every state (in DISCONNECTED it only records nothing)."""
        raise NotImplementedError

    def emergency_stop(self) -> None:
        """S10: STOP written before return, ENDED(EMERGENCY). Never raises, never waits."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop (CLOSED if a session was on), close the driver; DISCONNECTED. Idempotent."""
        raise NotImplementedError


def _finite(value: float) -> bool:
    return math.isfinite(value)
