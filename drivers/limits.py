"""Manufacturer profiles, layered caps and dose arithmetic (DESIGN.md S3-S6).

A :class:`DeviceProfile` is the manufacturer's numbers for one device model, loaded from a TOML
file in ``drivers/profiles/``. :func:`effective_caps` intersects the profile with the limits the
device reports about itself and with any narrower :class:`CapLayer` (a clinician's
prescription, the patient's comfort cap), remembering which layer binds so that a refusal can
say *which* limit was hit. :func:`dose` computes the S5 figures for one channel.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.base import ChannelSettings, DeviceLimits, DriverError, Pattern, Waveform

# S5 thresholds
CURRENT_DENSITY_ATTENTION_MA_PER_CM2 = 2.0
"""Above this r.m.s. current density a recorded clinician override is required."""
POWER_DENSITY_LIMIT_W_PER_CM2 = 0.25
"""At or above this power density stimulation is always refused."""
REFERENCE_LOAD_OHM = 500.0
"""Load used for power figures, as manufacturers specify output."""


class ProfileError(DriverError):
    """A profile file is missing, not TOML, or breaks a rule. The message names file and field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AmplitudeSpec(_Frozen):
    max_ma: Annotated[float, Field(gt=0, le=200, description="Peak output current limit, mA")]
    step_ma: Annotated[float, Field(gt=0, le=10, description="Smallest amplitude step, mA")]
    load_ohm: Annotated[float, Field(gt=0)] = REFERENCE_LOAD_OHM


class FrequencySpec(_Frozen):
    min_hz: Annotated[float, Field(gt=0)]
    max_hz: Annotated[float, Field(gt=0, le=10_000)]

    @model_validator(mode="after")
    def _ordered(self) -> FrequencySpec:
        if self.min_hz > self.max_hz:
            raise ValueError("min_hz must not exceed max_hz")
        return self


class PulseWidthSpec(_Frozen):
    min_us: Annotated[int, Field(gt=0)]
    max_us: Annotated[int, Field(gt=0, le=10_000)]

    @model_validator(mode="after")
    def _ordered(self) -> PulseWidthSpec:
        if self.min_us > self.max_us:
            raise ValueError("min_us must not exceed max_us")
        return self


class RampSpec(_Frozen):
    step_ma: Annotated[float, Field(gt=0, le=5)] = 1.0
    rate_ma_per_s: Annotated[float, Field(gt=0, le=10)] = 2.0


class UsbId(_Frozen):
    vid: Annotated[int, Field(ge=0, le=0xFFFF)]
    pid: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None


class DeviceProfile(_Frozen):
    """The manufacturer's limits for one device model."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    name: str
    manufacturer: str
    model: str
    protocol: Annotated[str, Field(pattern=r"^(tsp|sciencemode2|sciencemode4)$")]
    channels: Annotated[int, Field(ge=1, le=16)]
    amplitude: AmplitudeSpec
    frequency: FrequencySpec
    pulse_width: PulseWidthSpec
    waveforms: Annotated[tuple[Waveform, ...], Field(min_length=1)]
    patterns: Annotated[tuple[Pattern, ...], Field(min_length=1)]
    ramp: RampSpec = RampSpec()
    max_session_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 60
    lead_off_detection: bool
    reports_current: bool
    usb: tuple[UsbId, ...] = ()
    notes: str = ""

    def device_limits(self) -> DeviceLimits:
        """These numbers in the shape a device reports (used by the simulator's firmware)."""
        return DeviceLimits(
            max_amplitude_ma=self.amplitude.max_ma,
            amplitude_step_ma=self.amplitude.step_ma,
            min_frequency_hz=self.frequency.min_hz,
            max_frequency_hz=self.frequency.max_hz,
            min_pulse_width_us=self.pulse_width.min_us,
            max_pulse_width_us=self.pulse_width.max_us,
        )


def _describe_validation(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"field {where}: {first['msg']}"


def parse_profile(data: dict[str, Any], source: str) -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as error:
        raise ProfileError(
            f"profile {source}: {_describe_validation(error)}; fix the file and try again"
        ) from None


def load_profile(path: Path) -> DeviceProfile:
    """Load one profile file, with one clear message naming the file and field on error."""
    try:
        with path.open("rb") as fp:
            data = tomllib.load(fp)
    except FileNotFoundError:
        raise ProfileError(f"profile {path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"profile {path}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise ProfileError(f"profile {path}: not a text file (TOML must be UTF-8)") from None
    profile = parse_profile(data, str(path))
    if profile.id != path.stem:
        raise ProfileError(f"profile {path}: field id: must equal the file name ({path.stem!r})")
    return profile


def builtin_profiles() -> dict[str, DeviceProfile]:
    """Every profile shipped in ``drivers/profiles``, by id."""
    found: dict[str, DeviceProfile] = {}
    folder = resources.files("drivers") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                profile = load_profile(path)
            found[profile.id] = profile
    return found


def get_profile(profile_id: str) -> DeviceProfile:
    profiles = builtin_profiles()
    if profile_id not in profiles:
        known = ", ".join(sorted(profiles))
        raise ProfileError(f"no device profile named {profile_id!r}; known profiles: {known}")
    return profiles[profile_id]


# --------------------------------------------------------------------------- layered caps


class CapSource(StrEnum):
    """Where a limit comes from, most general first."""

    PROFILE = "manufacturer profile"
    DEVICE = "device"
    PRESCRIPTION = "prescription"
    COMFORT = "comfort cap"
    DOSE = "dose"


class CapLayer(_Frozen):
    """An extra, narrower layer of limits (a prescription or the patient's comfort cap)."""

    source: CapSource
    max_amplitude_ma: Annotated[float, Field(ge=0)] | None = None
    channel_max_amplitude_ma: dict[int, Annotated[float, Field(ge=0)]] = {}
    min_frequency_hz: Annotated[float, Field(gt=0)] | None = None
    max_frequency_hz: Annotated[float, Field(gt=0)] | None = None
    min_pulse_width_us: Annotated[int, Field(gt=0)] | None = None
    max_pulse_width_us: Annotated[int, Field(gt=0)] | None = None
    max_session_minutes: Annotated[int, Field(ge=1)] | None = None

    def amplitude_for(self, channel: int) -> float | None:
        values = [
            v
            for v in (self.max_amplitude_ma, self.channel_max_amplitude_ma.get(channel))
            if v is not None
        ]
        return min(values) if values else None


@dataclass(frozen=True)
class Bound:
    """One limit value and the layer it came from."""

    value: float
    source: CapSource


@dataclass(frozen=True)
class ChannelCaps:
    max_amplitude: Bound
    min_frequency: Bound
    max_frequency: Bound
    min_pulse_width: Bound
    max_pulse_width: Bound


@dataclass(frozen=True)
class EffectiveCaps:
    """The intersection of every layer, per channel, plus ramp and duration rules."""

    channels: dict[int, ChannelCaps]
    amplitude_step_ma: float
    ramp_step_ma: float
    ramp_rate_ma_per_s: float
    max_session: Bound
    """Maximum session length in minutes."""
    waveforms: tuple[Waveform, ...]
    patterns: tuple[Pattern, ...]
    ramp_min_interval_s: float = 0.0
    """The device's own shortest time between two increases of a channel (S15), 0 if none."""

    def channel(self, channel: int) -> ChannelCaps:
        return self.channels[channel]


def _tighter(current: Bound, value: float | None, source: CapSource, lower: bool) -> Bound:
    if value is None:
        return current
    if lower and value < current.value:
        return Bound(value, source)
    if not lower and value > current.value:
        return Bound(value, source)
    return current


def effective_caps(
    profile: DeviceProfile,
    device: DeviceLimits | None,
    layers: tuple[CapLayer, ...] = (),
    channels: int | None = None,
) -> EffectiveCaps:
    """Intersect profile ∩ device-reported limits ∩ each layer. Never widens anything."""
    count = min(profile.channels, channels) if channels else profile.channels
    out: dict[int, ChannelCaps] = {}
    p, dev = CapSource.PROFILE, CapSource.DEVICE
    for ch in range(1, count + 1):
        amp = Bound(profile.amplitude.max_ma, p)
        fmin, fmax = Bound(profile.frequency.min_hz, p), Bound(profile.frequency.max_hz, p)
        wmin = Bound(float(profile.pulse_width.min_us), p)
        wmax = Bound(float(profile.pulse_width.max_us), p)
        if device is not None:
            amp = _tighter(amp, device.max_amplitude_ma, dev, lower=True)
            fmin = _tighter(fmin, device.min_frequency_hz, dev, lower=False)
            fmax = _tighter(fmax, device.max_frequency_hz, dev, lower=True)
            wmin = _tighter(wmin, float(device.min_pulse_width_us), dev, lower=False)
            wmax = _tighter(wmax, float(device.max_pulse_width_us), dev, lower=True)
        for layer in layers:
            amp = _tighter(amp, layer.amplitude_for(ch), layer.source, lower=True)
            fmin = _tighter(fmin, layer.min_frequency_hz, layer.source, lower=False)
            fmax = _tighter(fmax, layer.max_frequency_hz, layer.source, lower=True)
            lo = layer.min_pulse_width_us
            hi = layer.max_pulse_width_us
            wmin = _tighter(wmin, None if lo is None else float(lo), layer.source, lower=False)
            wmax = _tighter(wmax, None if hi is None else float(hi), layer.source, lower=True)
        out[ch] = ChannelCaps(amp, fmin, fmax, wmin, wmax)
    step = profile.amplitude.step_ma
    if device is not None:
        step = max(step, device.amplitude_step_ma)
    session = Bound(float(profile.max_session_minutes), p)
    for layer in layers:
        session = _tighter(session, layer.max_session_minutes, layer.source, lower=True)
    # S15/S17: a device with a ramp of its own can only make the host's ramp slower
    ramp_step, ramp_rate, interval = profile.ramp.step_ma, profile.ramp.rate_ma_per_s, 0.0
    if device is not None and device.ramp_step_ma is not None:
        ramp_step = min(ramp_step, device.ramp_step_ma)
    if device is not None and device.ramp_interval_ms is not None:
        interval = device.ramp_interval_ms / 1000.0
        ramp_rate = min(ramp_rate, ramp_step / interval)
    return EffectiveCaps(
        channels=out,
        amplitude_step_ma=step,
        ramp_step_ma=ramp_step,
        ramp_rate_ma_per_s=ramp_rate,
        max_session=session,
        waveforms=profile.waveforms,
        patterns=profile.patterns,
        ramp_min_interval_s=interval,
    )


# --------------------------------------------------------------------------- dose (S5)


class DoseVerdict(StrEnum):
    OK = "ok"
    NEEDS_OVERRIDE = "needs clinician override"
    REFUSED = "refused"


@dataclass(frozen=True)
class Dose:
    """S5 figures for one channel at one amplitude."""

    charge_per_phase_uc: float
    rms_current_ma: float
    current_density_ma_per_cm2: float
    power_w: float
    power_density_w_per_cm2: float

    def verdict(self, clinician_override: bool = False) -> DoseVerdict:
        if self.power_density_w_per_cm2 >= POWER_DENSITY_LIMIT_W_PER_CM2:
            return DoseVerdict.REFUSED
        if self.current_density_ma_per_cm2 > CURRENT_DENSITY_ATTENTION_MA_PER_CM2:
            return DoseVerdict.OK if clinician_override else DoseVerdict.NEEDS_OVERRIDE
        return DoseVerdict.OK


def charge_per_phase_uc(amplitude_ma: float, pulse_width_us: float) -> float:
    """Q = I·w; mA·µs is nC, so divide by 1000 for µC."""
    return amplitude_ma * pulse_width_us / 1000.0


def rms_current_ma(amplitude_ma: float, pulse_width_us: float, pulse_rate_hz: float) -> float:
    """I_rms = I_peak·√(2·w·f) for symmetric biphasic pulses (both phases counted).

    For charge-balanced asymmetric pulses the second phase is lower and longer, so this is an
    upper bound; we use it for every waveform.
    """
    duty = 2.0 * pulse_width_us * 1e-6 * pulse_rate_hz
    return amplitude_ma * math.sqrt(min(duty, 1.0))


def dose(
    amplitude_ma: float,
    settings: ChannelSettings,
    electrode_area_cm2: float,
    load_ohm: float = REFERENCE_LOAD_OHM,
) -> Dose:
    """The S5 figures at the worst-case pulse rate of ``settings``."""
    if electrode_area_cm2 <= 0:
        raise ValueError("electrode area must be positive")
    rms = rms_current_ma(amplitude_ma, settings.pulse_width_us, settings.max_pulse_rate_hz)
    power = (rms / 1000.0) ** 2 * load_ohm
    return Dose(
        charge_per_phase_uc=charge_per_phase_uc(amplitude_ma, settings.pulse_width_us),
        rms_current_ma=rms,
        current_density_ma_per_cm2=rms / electrode_area_cm2,
        power_w=power,
        power_density_w_per_cm2=power / electrode_area_cm2,
    )


def max_amplitude_for_dose(
    settings: ChannelSettings,
    electrode_area_cm2: float,
    clinician_override: bool,
    load_ohm: float = REFERENCE_LOAD_OHM,
) -> float:
    """The highest amplitude (mA) the S5 rules allow for these settings and this pad."""
    unit = dose(1.0, settings, electrode_area_cm2, load_ohm)
    limits: list[float] = []
    if unit.power_density_w_per_cm2 > 0:
        # power scales with I²; strictly below the limit
        limits.append(math.sqrt(POWER_DENSITY_LIMIT_W_PER_CM2 / unit.power_density_w_per_cm2))
    if not clinician_override and unit.current_density_ma_per_cm2 > 0:
        limits.append(CURRENT_DENSITY_ATTENTION_MA_PER_CM2 / unit.current_density_ma_per_cm2)
    return min(limits) if limits else math.inf
