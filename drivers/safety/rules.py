"""The safety rules S1-S9 and S16 (DESIGN.md §4), as pure functions.

Nothing here has state, reads a clock, sends a byte or knows a protocol: each function takes
what the rule needs and returns its verdict. :class:`~drivers.safety.governor.SafetyGovernor`
applies them, in order, before anything is sent, and records what they decided. Read this file
to know what the governor allows; read the governor to know when it asks.

=====  ==========================================  ==========================================
rule   what                                        here
=====  ==========================================  ==========================================
S1     start at zero                               states.ZEROING (every entry to RUNNING)
S2     ramped increase, instant decrease           :func:`ramp_plan`, :func:`next_ramp_step`
S3     layered caps                                :func:`amplitude_cap` (drivers.limits)
S4     reject, never clamp                         :func:`check_amplitude`, :func:`check_settings`
S5     dose                                        :func:`check_dose`, :func:`dose_cap`
S6     session duration                            :func:`check_duration`
S7     lead-off                                    :func:`lead_off_seen`
S8     comms watchdog                              :data:`COMMS_TIMEOUT_S` (engines enforce it)
S9     read-back                                   :func:`readback_differs`
S16    intent, not key count                       :func:`step_up_target`
=====  ==========================================  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.base import ChannelSettings, DeviceEventKind
from drivers.limits import (
    CURRENT_DENSITY_ATTENTION_MA_PER_CM2,
    POWER_DENSITY_LIMIT_W_PER_CM2,
    Bound,
    CapSource,
    DoseVerdict,
    EffectiveCaps,
    dose,
    max_amplitude_for_dose,
)
from drivers.safety.events import StopReason

EPS = 1e-9

LEAD_OFF_IMPEDANCE_OHM = 10_000.0
"""S7: telemetry impedance above this is lead-off (unless the profile says otherwise)."""
READBACK_RELATIVE = 0.10
"""S9: a reading differs when it is off by more than 10 % of the set current (at least one
amplitude step) or by more than 2 mA, whichever is *smaller* (the stricter reading)."""
READBACK_ABSOLUTE_MA = 2.0
READBACK_CONSECUTIVE = 2
"""S9: this many consecutive differing readings on a channel stop the session."""
COMMS_TIMEOUT_S = 1.0
"""S8: a command unanswered this long ends the session as comms lost."""

END_FOR_DEVICE_EVENT: dict[DeviceEventKind, StopReason] = {
    DeviceEventKind.FAULT: StopReason.DEVICE_FAULT,
    DeviceEventKind.OUTPUT_STOPPED: StopReason.DEVICE_FAULT,
    DeviceEventKind.DEVICE_RESET: StopReason.DEVICE_RESET,
    DeviceEventKind.WATCHDOG_TRIP: StopReason.WATCHDOG,
    DeviceEventKind.EMERGENCY_SWITCH: StopReason.EMERGENCY_SWITCH,
}
"""Device events that end a session, and why. (Lead-off pauses; battery low only reports.)"""

SOURCE_PHRASE: dict[CapSource, str] = {
    CapSource.PROFILE: "the manufacturer's limit",
    CapSource.DEVICE: "the device's own limit",
    CapSource.PRESCRIPTION: "the prescription cap",
    CapSource.COMFORT: "the comfort cap",
    CapSource.DOSE: "the dose limit",
}


def fmt(value: float) -> str:
    """A number as a person reads it: 45, 12.5, 0.125."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused (S4): the governor logs it and raises it; nothing is sent."""

    parameter: str
    value: float | str
    limit: float | str
    source: CapSource
    message: str


# --------------------------------------------------------------------------- the amplitude grid


def on_grid(value: float, step: float) -> bool:
    steps = value / step
    return abs(steps - round(steps)) < 1e-6


def grid_floor(value: float, step: float) -> float:
    return round(math.floor(value / step + 1e-6) * step, 6)


# --------------------------------------------------------------------------- S2, S15, S16


@dataclass(frozen=True)
class RampPlan:
    step_ma: float
    """The largest single increase (on the amplitude grid)."""
    rate_ma_per_s: float
    min_interval_s: float
    """The device's own shortest time between two increases (0: no device ramp)."""


def ramp_plan(caps: EffectiveCaps) -> RampPlan | Refusal:
    """S2: the ramp on the amplitude grid, no faster than the profile's (and the device's own,
    S15/S17: a device ramp only makes it slower). Refused when the grid is coarser than the
    ramp step: such a device cannot be ramped safely."""
    step = caps.amplitude_step_ma
    ramp_step = math.floor(caps.ramp_step_ma / step + 1e-6) * step
    if ramp_step < step - EPS:
        return Refusal(
            "ramp step",
            step,
            caps.ramp_step_ma,
            CapSource.DEVICE,
            f"the device's amplitude step of {fmt(step)} mA is coarser than the ramp step of "
            f"{fmt(caps.ramp_step_ma)} mA; this device cannot be ramped safely",
        )
    return RampPlan(round(ramp_step, 6), caps.ramp_rate_ma_per_s, caps.ramp_min_interval_s)


def next_ramp_step(
    commanded: float, target: float, last_increase: float, now: float, plan: RampPlan
) -> tuple[float | None, float | None]:
    """S2: ``(value, None)`` to send one step now, ``(None, due)`` to wait until ``due``, or
    ``(None, None)`` when there is nothing to raise. Each step is at most ``plan.step_ma``, and
    steps are at least ``step / rate`` (and the device's own interval) apart."""
    if commanded >= target - EPS:
        return None, None
    step = min(plan.step_ma, target - commanded)
    due = last_increase + max(step / plan.rate_ma_per_s, plan.min_interval_s)
    if now < due - EPS:
        return None, due
    return round(commanded + step, 6), None


def step_up_target(target: float, acknowledged: float, step: float) -> float:
    """S16: one press of "up" asks for one step above where the output *is*, not above where a
    queue of earlier presses has put the target: a press while one step is still on its way is
    absorbed, so releasing the key stops the rise within one step. A press never lowers a
    target set further ahead (by ``set_target``)."""
    return round(max(target, min(target, acknowledged) + step), 6)


# --------------------------------------------------------------------------- S3, S4, S5


def amplitude_cap(caps: EffectiveCaps, channel: int, dose_bound: Bound | None) -> Bound:
    """S3: the binding amplitude cap of ``channel`` on the grid, the dose limit included."""
    cap = caps.channel(channel).max_amplitude
    best = Bound(grid_floor(cap.value, caps.amplitude_step_ma), cap.source)
    if dose_bound is not None and dose_bound.value < best.value:
        return dose_bound
    return best


def check_amplitude(
    ma: float, channel: int, caps: EffectiveCaps, step_source: CapSource
) -> Refusal | None:
    """S4: a requested amplitude that is not a current, above the caps (before the dose), or
    off the device's step grid."""
    cap = caps.channel(channel).max_amplitude
    if not math.isfinite(ma) or ma < 0:
        return Refusal(
            "amplitude",
            ma,
            0.0,
            cap.source,
            f"amplitude {fmt(ma)} mA on channel {channel} is not a valid current",
        )
    if ma > cap.value + EPS:
        return Refusal(
            "amplitude",
            ma,
            cap.value,
            cap.source,
            f"amplitude {fmt(ma)} mA on channel {channel} is above {SOURCE_PHRASE[cap.source]} "
            f"of {fmt(cap.value)} mA",
        )
    step = caps.amplitude_step_ma
    if not on_grid(ma, step):
        return Refusal(
            "amplitude step",
            ma,
            step,
            step_source,
            f"amplitude {fmt(ma)} mA on channel {channel} is not a multiple of the device's "
            f"{fmt(step)} mA step",
        )
    return None


def check_dose(
    ma: float,
    channel: int,
    settings: ChannelSettings,
    area_cm2: float | None,
    override: bool,
    load_ohm: float,
) -> Refusal | None:
    """S5: no current without an electrode area on record; never at or above 0.25 W/cm²;
    above 2 mA/cm² r.m.s. only with a clinician override on record."""
    if area_cm2 is None or not area_cm2 > 0:
        return Refusal(
            "electrode area",
            0.0,
            0.0,
            CapSource.DOSE,
            f"channel {channel} has no electrode area on record, so the dose of {fmt(ma)} mA "
            "cannot be checked; record the electrode size first",
        )
    figures = dose(ma, settings, area_cm2, load_ohm)
    verdict = figures.verdict(override)
    if verdict is DoseVerdict.REFUSED:
        return Refusal(
            "power density",
            figures.power_density_w_per_cm2,
            POWER_DENSITY_LIMIT_W_PER_CM2,
            CapSource.DOSE,
            f"amplitude {fmt(ma)} mA on channel {channel} gives "
            f"{figures.power_density_w_per_cm2:.3f} W/cm² on {fmt(area_cm2)} cm² electrodes, "
            f"at or above the {fmt(POWER_DENSITY_LIMIT_W_PER_CM2)} W/cm² burn limit",
        )
    if verdict is DoseVerdict.NEEDS_OVERRIDE:
        return Refusal(
            "current density",
            figures.current_density_ma_per_cm2,
            CURRENT_DENSITY_ATTENTION_MA_PER_CM2,
            CapSource.DOSE,
            f"amplitude {fmt(ma)} mA on channel {channel} gives "
            f"{figures.current_density_ma_per_cm2:.2f} mA/cm² r.m.s. on {fmt(area_cm2)} cm² "
            f"electrodes, above the {fmt(CURRENT_DENSITY_ATTENTION_MA_PER_CM2)} mA/cm² that needs "
            "a recorded clinician override",
        )
    return None


def dose_cap(
    settings: ChannelSettings,
    area_cm2: float | None,
    override: bool,
    load_ohm: float,
    ceiling: float,
    step: float,
) -> Bound:
    """S5 as a cap: the highest amplitude on the grid that passes :func:`check_dose`."""
    if area_cm2 is None or not area_cm2 > 0:
        return Bound(0.0, CapSource.DOSE)
    raw = max_amplitude_for_dose(settings, area_cm2, override, load_ohm)
    value = grid_floor(min(raw, ceiling + step), step)
    while (
        value > 0
        and dose(value, settings, area_cm2, load_ohm).verdict(override) is not DoseVerdict.OK
    ):
        value = round(value - step, 6)
    return Bound(max(value, 0.0), CapSource.DOSE)


def _range(
    parameter: str, value: float, bound: Bound, channel: int, unit: str, side: str
) -> Refusal:
    word = "maximum" if side == "above" else "minimum"
    return Refusal(
        parameter,
        value,
        bound.value,
        bound.source,
        f"{parameter} {fmt(value)} {unit} on channel {channel} is {side} "
        f"{SOURCE_PHRASE[bound.source]} ({word} {fmt(bound.value)} {unit})",
    )


def check_settings(settings: ChannelSettings, channel: int, caps: EffectiveCaps) -> Refusal | None:
    """S3/S4: the first limit a program's settings break on ``channel``, or None."""
    cc = caps.channel(channel)
    if settings.waveform not in caps.waveforms:
        allowed = ", ".join(w.value for w in caps.waveforms)
        return Refusal(
            "waveform",
            settings.waveform.value,
            allowed,
            CapSource.PROFILE,
            f"waveform {settings.waveform.value} on channel {channel} is not one this device "
            f"allows ({allowed})",
        )
    if settings.pattern not in caps.patterns:
        allowed = ", ".join(p.value for p in caps.patterns)
        return Refusal(
            "pattern",
            settings.pattern.value,
            allowed,
            CapSource.PROFILE,
            f"pattern {settings.pattern.value} on channel {channel} is not one this device "
            f"allows ({allowed})",
        )
    for hz in settings.frequencies_hz:
        if hz < cc.min_frequency.value - EPS:
            return _range("frequency", hz, cc.min_frequency, channel, "Hz", "below")
        if hz > cc.max_frequency.value + EPS:
            return _range("frequency", hz, cc.max_frequency, channel, "Hz", "above")
    width = float(settings.pulse_width_us)
    if width < cc.min_pulse_width.value - EPS:
        return _range("pulse width", width, cc.min_pulse_width, channel, "µs", "below")
    if width > cc.max_pulse_width.value + EPS:
        return _range("pulse width", width, cc.max_pulse_width, channel, "µs", "above")
    return None


# --------------------------------------------------------------------------- S6


def check_duration(duration_s: float, caps: EffectiveCaps) -> Refusal | None:
    """S6: a positive time, not above the maximum session length."""
    source = caps.max_session.source
    limit_s = caps.max_session.value * 60.0
    if not math.isfinite(duration_s) or duration_s <= 0:
        return Refusal(
            "session duration",
            duration_s,
            limit_s,
            source,
            f"session duration {fmt(duration_s)} s is not a positive time",
        )
    if duration_s > limit_s + EPS:
        return Refusal(
            "session duration",
            duration_s,
            limit_s,
            source,
            f"session duration {fmt(duration_s / 60)} min is above {SOURCE_PHRASE[source]} of "
            f"{fmt(caps.max_session.value)} min",
        )
    return None


# --------------------------------------------------------------------------- S7


def lead_off_seen(
    impedance_ohm: float | None, device_says: bool | None, threshold_ohm: float
) -> bool | None:
    """S7 from one reading: True (off), False (on) or None (the reading does not say). The
    device's own flag (S15, repeated in every telemetry frame) wins over the impedance."""
    if device_says is not None:
        return device_says or (impedance_ohm is not None and impedance_ohm > threshold_ohm)
    if impedance_ohm is None:
        return None
    return impedance_ohm > threshold_ohm


# --------------------------------------------------------------------------- S9


def readback_tolerance(set_ma: float, step: float) -> float:
    return min(max(READBACK_RELATIVE * set_ma, step), READBACK_ABSOLUTE_MA)


def readback_differs(
    acknowledged: float, commanded: float, measured: float | None, device_set: float, step: float
) -> float | None:
    """S9: the reading (measured current, else the device's own set value) that lies outside
    what the host set, widened to the range of a change in flight; None when it agrees."""
    if acknowledged == commanded:  # nothing in flight (every reading of a steady session)
        tolerance = readback_tolerance(acknowledged, step)
        low, high = acknowledged - tolerance, acknowledged + tolerance
    else:
        low, high = (
            (acknowledged, commanded) if acknowledged < commanded else (commanded, acknowledged)
        )
        low -= readback_tolerance(low, step)
        high += readback_tolerance(high, step)
    if measured is not None and not low <= measured <= high:
        return measured
    if not low <= device_set <= high:
        return device_set
    return None
