"""How the Hasomed P24 (ScienceMode4 mid level) can deliver a program, and its own limits.

Pure arithmetic, no I/O. In the mid level every channel repeats its own pattern of 1-16 points
(each 10-4095 µs at -130...130 mA in 0.5 mA steps) once per period (0.5-16383 ms in 0.5 ms
steps), by itself, until it is changed or stopped. :func:`plan_channel` maps a
:class:`~drivers.base.ChannelSettings` onto one such pattern and refuses, with a reason, what the
device cannot do:

* **continuous**: one symmetric biphasic pulse, ``(w, +I), (w, -I)``, every ``1/f`` (the
  period rounded *up* to the 0.5 ms grid, so the delivered rate is never above the requested);
* **burst**: ``N`` such pulses ``1/f`` apart (the gaps are 0 mA points of at most 4095 µs each,
  rounded up to whole µs), the train repeated every ``1/secondary_hz``; refused when the train
  needs more than 16 points;
* modulated and mixed programs change the period while stimulating, which the mid level does
  not do by itself: refused (the ``p24`` profile does not list them).

Every pattern is charge balanced by construction, and :func:`charge_balance_error` checks the
points actually sent (S5) before each update. :func:`check_duty` applies the C library's rule
that all enabled channels together must keep the stimulator busy less than 100 % of the time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from drivers.base import ChannelSettings, DeviceRejectedError, ErrorCode, Pattern, Waveform
from drivers.sciencemode2.plan import DriverRefusedError, UnsupportedSettingsError
from drivers.sciencemode4.codec import CHANNELS, MAX_POINTS, MlChannel, MlUpdate, Point, Result

PROTOCOL = "sciencemode4"
PROFILE_ID = "p24"
STM32_VID = 0x0483
STM32_CDC_PID = 0x5740
"""The STM32 virtual COM port the P24 enumerates as (the C library's auto-detection)."""
BAUDRATE = 3_000_000
"""What the C library opens (Windows, Linux); a USB CDC port ignores it."""
DEVICE_WATCHDOG_MS = 2000
"""The P24 stops stimulating when it gets no Ml_Get_Current_Data for 2 s (``smpt_ml_client.h``)."""

MAX_CHANNELS = CHANNELS
MAX_CURRENT_MA = 130.0
"""``smpt_is_valid_point`` refuses more than ±130 mA (the header comment says ±150, and
science-mode-4 allows ±150: we follow the check)."""
CURRENT_STEP_MA = 0.5
MIN_POINT_US = 10
"""The device treats shorter points as 10 µs."""
MAX_POINT_US = 4095
MIN_PERIOD_MS = 0.5
MAX_PERIOD_MS = 16383.0
PERIOD_STEP_MS = 0.5
DUTY_LIMIT_PERMILLE = 1000
"""``check_parameters``: sum over enabled channels of (pattern µs + 60 µs) / period ms < 1000."""
DUTY_EXTRA_US = 60
"""Per pattern: 40 µs mute before the pulse and 20 µs reserve (``get_duration_ms``)."""
ELECTRODE_CHECK_MIN_MA = 15.0
"""``Smpt_Result_Electrode_Error``: "A minimum current of 15 mA is required" -- below it the
P24 cannot tell that an electrode has come off."""

_RESULT_CODES: dict[int, ErrorCode] = {
    Result.TRANSFER_ERROR: ErrorCode.CRC,
    Result.PARAMETER_ERROR: ErrorCode.PARAMETER,
    Result.PROTOCOL_ERROR: ErrorCode.VERSION,
    Result.NOT_INITIALIZED_ERROR: ErrorCode.STATE,
    Result.BUSY: ErrorCode.BUSY,
    Result.INVALID_CMD_ERROR: ErrorCode.UNKNOWN_COMMAND,
}
_RESULT_TEXT: dict[int, str] = {
    Result.TRANSFER_ERROR: "transfer error: the device received a damaged packet",
    Result.PARAMETER_ERROR: "parameter error: a value is outside what the device accepts",
    Result.PROTOCOL_ERROR: "protocol error: the protocol version is not supported",
    Result.NOT_INITIALIZED_ERROR: "not initialised: the device is not in the mid level",
    Result.ELECTRODE_ERROR: "electrode error: an electrode is off or has poor contact",
    Result.INVALID_CMD_ERROR: "invalid command: the device cannot process this command",
    Result.HV_ERROR: "high voltage error",
    Result.PULSE_TIMEOUT_ERROR: "pulse timeout: the period cannot be achieved",
    Result.PULSE_LOW_CURRENT_ERROR: "low current: the set current cannot be reached",
    Result.BUSY: "busy: the device cannot take the command now",
}


def result_text(result: int) -> str:
    try:
        name = Result(result).name.lower().replace("_", " ")
    except ValueError:
        name = f"result {result}"
    return _RESULT_TEXT.get(result, name)


def error_for_result(result: int, command: str) -> DeviceRejectedError:
    """The typed error for a non-zero acknowledgement result."""
    code = _RESULT_CODES.get(result, ErrorCode.STATE)
    return DeviceRejectedError(code, command, f"P24 answered {result}: {result_text(result)}")


# --------------------------------------------------------------------------- patterns

Shape = tuple[tuple[int, int], ...]
"""Points as ``(time_us, sign)``: +1 and -1 carry the channel's current, 0 is a gap."""


@dataclass(frozen=True)
class ChannelPattern:
    """One channel's mid-level pattern, independent of its current."""

    channel: int
    period_ms: float
    shape: Shape
    requested_hz: float
    """Requested pulse (or train) rate."""
    delivered_hz: float
    """What the device delivers: never above ``requested_hz``."""

    @property
    def busy_us(self) -> int:
        return sum(t for t, _ in self.shape)

    @property
    def duty_permille(self) -> float:
        return (self.busy_us + DUTY_EXTRA_US) / self.period_ms

    def points(self, milliamps: float) -> tuple[Point, ...]:
        return tuple(Point(t, sign * milliamps if sign else 0.0) for t, sign in self.shape)

    def ml_channel(self, milliamps: float) -> MlChannel:
        return MlChannel(self.period_ms, self.points(milliamps))


def _refuse(channel: int | None, detail: str) -> UnsupportedSettingsError:
    where = f"channel {channel}: " if channel is not None else ""
    return UnsupportedSettingsError("configure", f"{where}{detail}")


def _period(channel: int, hz: float, what: str) -> float:
    ms = math.ceil(2000.0 / hz - 1e-6) / 2.0  # up to the 0.5 ms grid: never a faster rate
    if ms < MIN_PERIOD_MS or ms > MAX_PERIOD_MS:
        raise _refuse(
            channel,
            f"{what} {hz:g} Hz is outside what the P24 repeats "
            f"({1000.0 / MAX_PERIOD_MS:.3g}-{1000.0 / MIN_PERIOD_MS:g} Hz)",
        )
    return ms


def _gap(total_us: int) -> list[tuple[int, int]]:
    """0 mA points lasting ``total_us`` in all, each at most 4095 µs."""
    if total_us <= 0:
        return []
    total_us = max(total_us, MIN_POINT_US)
    count = math.ceil(total_us / MAX_POINT_US)
    base, extra = divmod(total_us, count)
    return [(base + (1 if i < extra else 0), 0) for i in range(count)]


def plan_channel(channel: int, settings: ChannelSettings) -> ChannelPattern:
    """The pattern for ``settings`` on ``channel`` (1-8), or :class:`UnsupportedSettingsError`
    naming the reason."""
    if not 1 <= channel <= MAX_CHANNELS:
        raise _refuse(channel, f"the P24 has channels 1-{MAX_CHANNELS}")
    if settings.waveform is not Waveform.SYMMETRIC_BIPHASIC:
        raise _refuse(channel, "tens-control drives the P24 with symmetric biphasic pulses only")
    width = settings.pulse_width_us
    if not MIN_POINT_US <= width <= MAX_POINT_US:
        raise _refuse(
            channel,
            f"pulse width {width} µs is outside the P24's {MIN_POINT_US}-{MAX_POINT_US} µs",
        )
    pulse: list[tuple[int, int]] = [(width, 1), (width, -1)]
    if settings.pattern is Pattern.CONTINUOUS:
        hz = settings.frequency_hz
        period = _period(channel, hz, "a pulse rate of")
        return ChannelPattern(channel, period, tuple(pulse), hz, 1000.0 / period)
    if settings.pattern is Pattern.BURST:
        assert settings.secondary_hz is not None
        assert settings.pulses_per_burst is not None
        trains = settings.secondary_hz
        count = settings.pulses_per_burst
        period = _period(channel, trains, "a burst rate of")
        gap = _gap(math.ceil(1e6 / settings.frequency_hz - 2 * width - 1e-6))
        if count > 1 and 1e6 / settings.frequency_hz < 2 * width:
            raise _refuse(
                channel,
                f"pulses of 2 x {width} µs do not fit {settings.frequency_hz:g} Hz within a burst",
            )
        shape: list[tuple[int, int]] = []
        for index in range(count):
            if index:
                shape += gap
            shape += pulse
        if len(shape) > MAX_POINTS:
            raise _refuse(
                channel,
                f"a burst of {count} pulses at {settings.frequency_hz:g} Hz needs {len(shape)} "
                f"points; the P24 repeats at most {MAX_POINTS} (fewer pulses per burst or a "
                "higher pulse rate within the burst)",
            )
        pattern = ChannelPattern(channel, period, tuple(shape), trains, 1000.0 / period)
        if pattern.busy_us > period * 1000.0:
            raise _refuse(channel, f"a burst of {count} pulses does not fit {trains:g} bursts/s")
        return pattern
    raise _refuse(
        channel,
        f"the {settings.pattern.value} pattern is not possible: the P24's mid level repeats one "
        "fixed pattern per channel; choose a continuous or burst program",
    )


def check_duty(patterns: Iterable[ChannelPattern]) -> None:
    """Raise :class:`UnsupportedSettingsError` unless the patterns together keep the device
    busy less than 100 % of the time (the device would refuse the update)."""
    chosen = list(patterns)
    total = sum(p.duty_permille for p in chosen)
    if math.ceil(total - 1e-9) >= DUTY_LIMIT_PERMILLE:
        raise _refuse(
            None,
            f"channels {', '.join(str(p.channel) for p in chosen)} together would keep the P24 "
            f"stimulating {total / 10:.0f} % of the time; use lower rates or shorter pulses",
        )


def charge_balance_error(points: Iterable[Point]) -> float:
    """Net charge of a pattern in nC (mA x µs); 0 for a charge-balanced pulse (S5)."""
    return sum(p.current_ma * max(p.time_us, MIN_POINT_US) for p in points)


def build_update(patterns: Mapping[int, ChannelPattern], currents: Mapping[int, float]) -> MlUpdate:
    """The Ml_Update enabling every channel of ``patterns`` at its current (0 if missing).

    Raises :class:`DriverRefusedError` (nothing to send) if a current is off the device's grid
    or range, or a pattern is not charge balanced."""
    entries: list[MlChannel | None] = [None] * MAX_CHANNELS
    for channel, pattern in patterns.items():
        milliamps = currents.get(channel, 0.0)
        if not math.isfinite(milliamps) or milliamps < 0:
            raise DriverRefusedError(
                ErrorCode.PARAMETER, "set amplitude", f"{milliamps!r} mA is not an amplitude"
            )
        if milliamps > MAX_CURRENT_MA + 1e-9:
            raise DriverRefusedError(
                ErrorCode.LIMIT,
                "set amplitude",
                f"{milliamps:g} mA is above the P24's {MAX_CURRENT_MA:g} mA",
            )
        steps = milliamps / CURRENT_STEP_MA
        if abs(steps - round(steps)) > 1e-9:
            raise DriverRefusedError(
                ErrorCode.LIMIT,
                "set amplitude",
                f"{milliamps:g} mA is not a multiple of the P24's {CURRENT_STEP_MA:g} mA step",
            )
        entry = pattern.ml_channel(round(steps) * CURRENT_STEP_MA)
        if abs(charge_balance_error(entry.points)) > 1e-9:
            raise DriverRefusedError(
                ErrorCode.PARAMETER, "set amplitude", f"channel {channel}: not charge balanced"
            )
        entries[channel - 1] = entry
    return MlUpdate(tuple(entries))


__all__ = [
    "BAUDRATE",
    "DEVICE_WATCHDOG_MS",
    "ELECTRODE_CHECK_MIN_MA",
    "MAX_CHANNELS",
    "MAX_CURRENT_MA",
    "PROFILE_ID",
    "PROTOCOL",
    "STM32_CDC_PID",
    "STM32_VID",
    "ChannelPattern",
    "DriverRefusedError",
    "UnsupportedSettingsError",
    "build_update",
    "charge_balance_error",
    "check_duty",
    "error_for_result",
    "plan_channel",
    "result_text",
]
