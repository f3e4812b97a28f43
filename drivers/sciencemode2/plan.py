"""How the RehaStim 2 (ScienceMode2 channel list mode) can deliver a set of channel settings.

Pure arithmetic, no I/O. Channel list mode has one main interval for every channel (8-1025 ms
in 0.5 ms steps), an optional low-frequency factor (some channels fire every 2nd-8th interval),
and single pulses, doublets or triplets per channel with one shared inter-pulse interval.
:func:`plan_channel_list` maps :class:`~drivers.base.ChannelSettings` onto that and refuses, with
a reason, what the device cannot do. Intervals are rounded *up* to the 0.5 ms grid, so the
delivered pulse rate is never above the requested one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.base import ChannelSettings, DeviceRejectedError, ErrorCode, Pattern, Waveform
from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import (
    ChannelPulse,
    InitChannelListMode,
    PulseMode,
    Result,
    StartChannelListMode,
)

PROTOCOL = "sciencemode2"
BAUDRATE = 460800
FTDI_VID = 0x0403
PROFILE_ID = "rehastim2"

MAX_CHANNELS = 8
MAX_CURRENT_MA = 130
MIN_PULSE_WIDTH_US = 20
MAX_PULSE_WIDTH_US = 500
MIN_MAIN_INTERVAL_MS = 8.0
MAX_MAIN_INTERVAL_MS = 1025.0
MIN_INTER_PULSE_MS = 8.0
"""The description allows 1.5-129 ms, but "the firmware minimum for both intervals is 8 ms": a
burst that needs pulses closer than 8 ms is refused on the host rather than delivered slower."""
MAX_INTER_PULSE_MS = 129.0
MAX_LOW_FREQUENCY_FACTOR = 7
CHANNEL_SLOT_MS = 1.5
"""Time each active channel takes in the main interval (sequential execution)."""
RATE_TOLERANCE = 0.05
"""A channel's delivered rate may be at most this fraction below the requested one."""

_RESULT_CODES: dict[int, ErrorCode] = {
    Result.TRANSFER_ERROR: ErrorCode.CRC,
    Result.PARAMETER_ERROR: ErrorCode.PARAMETER,
    Result.WRONG_MODE: ErrorCode.STATE,
    Result.BUSY: ErrorCode.BUSY,
    Result.INCOMPATIBLE_VERSION: ErrorCode.VERSION,
}
_RESULT_TEXT: dict[int, str] = {
    Result.TRANSFER_ERROR: "transfer error: the device received a damaged frame",
    Result.PARAMETER_ERROR: "parameter error: a value is outside what the device accepts",
    Result.WRONG_MODE: "wrong mode: the device is not in a state that allows this command",
    Result.BUSY: "busy: the device cannot take the command now",
    Result.INCOMPATIBLE_VERSION: "incompatible protocol version",
}


def error_for_result(result: int, command: str) -> DeviceRejectedError:
    """The typed error for a non-zero acknowledgement result."""
    code = _RESULT_CODES.get(result, ErrorCode.PARAMETER)
    text = _RESULT_TEXT.get(result, f"result {result}")
    return DeviceRejectedError(code, command, f"RehaStim 2 answered {result}: {text}")


class UnsupportedSettingsError(DeviceRejectedError):
    """The RehaStim 2 cannot deliver these settings. Checked on the host; nothing was sent."""

    def __init__(self, command: str, detail: str) -> None:
        super().__init__(ErrorCode.PARAMETER, command, detail)


class DriverRefusedError(DeviceRejectedError):
    """A command the device would refuse (wrong state, value off its grid), refused on the host
    before anything was sent."""


# --------------------------------------------------------------------------- programs


def _up_to_grid(ms: float) -> float:
    """Round a time up to the device's 0.5 ms grid (never a faster rate than requested)."""
    return math.ceil(ms * 2.0 - 1e-6) / 2.0


@dataclass(frozen=True)
class ChannelPlan:
    channel: int
    mode: PulseMode
    pulse_width_us: int
    requested_hz: float
    """Requested pulse (or train) rate."""
    delivered_hz: float
    """The rate the device will deliver (never above ``requested_hz``)."""


@dataclass(frozen=True)
class ChannelListPlan:
    """How a set of channel settings maps onto channel list mode."""

    init: InitChannelListMode
    channels: tuple[ChannelPlan, ...]

    @property
    def active(self) -> tuple[int, ...]:
        return tuple(c.channel for c in self.channels)

    def start_message(self, currents: Mapping[int, int]) -> StartChannelListMode:
        """StartChannelListMode with ``currents`` (missing channels at 0 mA)."""
        return StartChannelListMode(
            tuple(
                ChannelPulse(int(c.mode), c.pulse_width_us, currents.get(c.channel, 0))
                for c in self.channels
            )
        )


def _refuse(channel: int | None, detail: str) -> UnsupportedSettingsError:
    where = f"channel {channel}: " if channel is not None else ""
    return UnsupportedSettingsError("configure", f"{where}{detail}")


@dataclass
class _Wanted:
    channel: int
    period_ms: float
    mode: PulseMode
    pulse_width_us: int
    requested_hz: float
    inter_pulse_ms: float | None = None


def _wanted(channel: int, settings: ChannelSettings) -> _Wanted:
    if not 1 <= channel <= MAX_CHANNELS:
        raise _refuse(channel, f"the RehaStim 2 has channels 1-{MAX_CHANNELS}")
    if settings.waveform is not Waveform.SYMMETRIC_BIPHASIC:
        raise _refuse(channel, "the RehaStim 2 delivers only symmetric biphasic pulses")
    width = settings.pulse_width_us
    if not MIN_PULSE_WIDTH_US <= width <= MAX_PULSE_WIDTH_US:
        raise _refuse(
            channel,
            f"pulse width {width} µs is outside the RehaStim 2's "
            f"{MIN_PULSE_WIDTH_US}-{MAX_PULSE_WIDTH_US} µs",
        )
    if settings.pattern is Pattern.CONTINUOUS:
        hz = settings.frequency_hz
        return _Wanted(channel, 1000.0 / hz, PulseMode.SINGLE, width, hz)
    if settings.pattern is Pattern.BURST:
        assert settings.secondary_hz is not None
        assert settings.pulses_per_burst is not None
        trains = settings.secondary_hz
        pulses = settings.pulses_per_burst
        if pulses == 1:
            return _Wanted(channel, 1000.0 / trains, PulseMode.SINGLE, width, trains)
        if pulses > 3:
            raise _refuse(
                channel,
                f"bursts of {pulses} pulses are not possible: the RehaStim 2 fires at most 3 "
                "pulses per train (doublet or triplet); choose 2 or 3 pulses per burst or a "
                "continuous program",
            )
        mode = PulseMode.DOUBLET if pulses == 2 else PulseMode.TRIPLET
        gap = 1000.0 / settings.frequency_hz
        return _Wanted(channel, 1000.0 / trains, mode, width, trains, gap)
    raise _refuse(
        channel,
        f"the {settings.pattern.value} pattern is not possible: the RehaStim 2 cannot change "
        "its frequency during stimulation; choose a continuous or burst program",
    )


def plan_channel_list(settings: Mapping[int, ChannelSettings]) -> ChannelListPlan:
    """Map per-channel settings onto channel list mode, or raise
    :class:`UnsupportedSettingsError` naming the channel and the reason."""
    if not settings:
        raise _refuse(None, "no channel is configured")
    wanted = [_wanted(ch, s) for ch, s in sorted(settings.items())]
    for w in wanted:
        if w.period_ms < MIN_MAIN_INTERVAL_MS - 1e-9:
            raise _refuse(
                w.channel,
                f"{w.requested_hz:g} Hz is above the RehaStim 2's "
                f"{1000.0 / MIN_MAIN_INTERVAL_MS:g} Hz",
            )
    main = _up_to_grid(min(w.period_ms for w in wanted))
    if main > MAX_MAIN_INTERVAL_MS:
        raise _refuse(
            None,
            f"{1000.0 / main:.3g} Hz is below the RehaStim 2's "
            f"{1000.0 / MAX_MAIN_INTERVAL_MS:.3g} Hz",
        )
    # One low-frequency factor for every slower channel.
    factor = 1
    slow: list[int] = []
    delivered: dict[int, float] = {}
    for w in wanted:
        multiple = max(1, math.ceil(w.period_ms / main - 1e-9))
        if main * multiple > w.period_ms * (1.0 + RATE_TOLERANCE):
            fastest = min(wanted, key=lambda x: x.period_ms)
            raise _refuse(
                w.channel,
                f"{w.requested_hz:g} Hz cannot run beside {fastest.requested_hz:g} Hz on channel "
                f"{fastest.channel}: the RehaStim 2 runs every channel at one base rate or at "
                "that rate divided by 2-8",
            )
        if multiple > 1:
            if multiple - 1 > MAX_LOW_FREQUENCY_FACTOR:
                raise _refuse(
                    w.channel,
                    f"{w.requested_hz:g} Hz is more than 8 times slower than another channel; "
                    "the RehaStim 2 can divide the base rate by 2-8 only",
                )
            if factor not in (1, multiple):
                raise _refuse(
                    w.channel,
                    "the RehaStim 2 allows only one slower rate beside the base rate; use at "
                    "most two different frequencies",
                )
            factor = multiple
            slow.append(w.channel)
        delivered[w.channel] = 1000.0 / (main * multiple)
    # One inter-pulse interval for every doublet/triplet channel.
    gaps = [w for w in wanted if w.inter_pulse_ms is not None]
    gap = MIN_INTER_PULSE_MS
    if gaps:
        gap = _up_to_grid(max(w.inter_pulse_ms or 0.0 for w in gaps))
        for w in gaps:
            assert w.inter_pulse_ms is not None
            if gap > w.inter_pulse_ms * (1.0 + RATE_TOLERANCE):
                raise _refuse(
                    w.channel,
                    "every burst channel must use the same pulse frequency within its bursts",
                )
        if not MIN_INTER_PULSE_MS <= gap <= MAX_INTER_PULSE_MS:
            raise _refuse(
                gaps[0].channel,
                f"the pulse spacing within a burst ({gap:g} ms) is outside the RehaStim 2's "
                f"{MIN_INTER_PULSE_MS:g}-{MAX_INTER_PULSE_MS:g} ms",
            )
    extra = max((w.mode for w in wanted), default=PulseMode.SINGLE)
    busy_ms = len(wanted) * CHANNEL_SLOT_MS + int(extra) * (gap if gaps else 0.0)
    if busy_ms > main:
        raise _refuse(
            None,
            f"{len(wanted)} channels need {busy_ms:g} ms per pulse round but the interval is "
            f"{main:g} ms; use fewer channels or a lower frequency",
        )
    init = InitChannelListMode(
        low_frequency_factor=factor - 1,
        active_mask=codec.mask_of({w.channel for w in wanted}),
        low_frequency_mask=codec.mask_of(set(slow)),
        inter_pulse_code=codec.inter_pulse_interval_code(gap),
        main_interval_code=codec.main_interval_code(main),
        execution=codec.ChannelExecution.SEQUENTIAL,
    )
    return ChannelListPlan(
        init,
        tuple(
            ChannelPlan(w.channel, w.mode, w.pulse_width_us, w.requested_hz, delivered[w.channel])
            for w in wanted
        ),
    )
