"""Stimulation programs as data (DESIGN.md §6).

A :class:`Program` is a name, a plain description for the patient and the
:class:`~drivers.base.ChannelSettings` it delivers. Amplitude is not part of a program: the
patient raises it (ramped by the governor) until the sensation is strong but comfortable.

:data:`CATALOGUE` is the default set. A prescription may add programs of its own. Before a
program is offered on a device, :meth:`Program.validate_for` checks that the device can deliver
it (pattern, waveform, frequency and pulse-width ranges) and refuses it with the reason if not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from drivers.base import ChannelSettings, Pattern, Waveform
from drivers.limits import DeviceProfile, EffectiveCaps
from tens_control.errors import TensControlError


class ProgramError(TensControlError):
    """A program is unknown, or the device cannot deliver it. The message says why."""


ProgramName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)]


class Program(BaseModel):
    """One stimulation program."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ProgramName
    """Identifier used in prescriptions and on the command line (``conventional``)."""
    title: Annotated[str, Field(min_length=1, max_length=60)]
    """Short name shown to the patient (``Conventional``)."""
    description: Annotated[str, Field(min_length=1, max_length=400)]
    """What it feels like and how to set the intensity, in plain words."""
    settings: ChannelSettings

    def channel_settings(self) -> ChannelSettings:
        """The settings every channel running this program is configured with."""
        return self.settings

    def summary(self) -> str:
        """The parameters in one line, for clinicians and logs."""
        return describe_settings(self.settings)

    def refusal_for(self, profile: DeviceProfile, caps: EffectiveCaps | None = None) -> str | None:
        """Why this device cannot deliver this program, or None if it can."""
        return _refusal(self, profile, caps)

    def validate_for(self, profile: DeviceProfile, caps: EffectiveCaps | None = None) -> None:
        """Raise :class:`ProgramError` with the reason if the device cannot deliver it.

        ``caps`` (optional) are the effective caps in force (profile ∩ device ∩ prescription
        ∩ comfort); their frequency and pulse-width ranges are checked on every channel.
        """
        reason = self.refusal_for(profile, caps)
        if reason is not None:
            raise ProgramError(reason)


def _fmt(value: float) -> str:
    return f"{value:g}"


def describe_settings(s: ChannelSettings) -> str:
    width = f"{s.pulse_width_us} µs"
    if s.pattern is Pattern.BURST:
        return (
            f"bursts of {s.pulses_per_burst} pulses at {_fmt(s.frequency_hz)} Hz, "
            f"{_fmt(s.secondary_hz or 0)} bursts per second, {width}"
        )
    if s.pattern is Pattern.MODULATED:
        low, high = sorted((s.secondary_hz or 0.0, s.frequency_hz))
        return (
            f"frequency swept {_fmt(low)}–{_fmt(high)} Hz every {_fmt(s.cycle_s or 0)} s, {width}"
        )
    if s.pattern is Pattern.MIXED:
        return (
            f"{_fmt(s.frequency_hz)} Hz and {_fmt(s.secondary_hz or 0)} Hz alternating every "
            f"{_fmt(s.cycle_s or 0)} s, {width}"
        )
    return f"{_fmt(s.frequency_hz)} Hz continuous, {width}"


def _refusal(program: Program, profile: DeviceProfile, caps: EffectiveCaps | None) -> str | None:
    s = program.settings
    who = f"program {program.name!r} cannot run on {profile.name}"
    if s.pattern not in profile.patterns:
        supported = ", ".join(p.value for p in profile.patterns)
        return f"{who}: the device has no {s.pattern.value} pattern (it supports {supported})"
    if s.waveform not in profile.waveforms:
        return f"{who}: the device has no {s.waveform.value.replace('_', ' ')} waveform"
    fmin, fmax = profile.frequency.min_hz, profile.frequency.max_hz
    wmin, wmax = float(profile.pulse_width.min_us), float(profile.pulse_width.max_us)
    source = "the device"
    ranges: list[tuple[str, float, float, float, float]] = [
        (source, fmin, fmax, wmin, wmax),
    ]
    if caps is not None:
        if s.pattern not in caps.patterns:
            return f"{who}: the {s.pattern.value} pattern is not available on this device"
        if s.waveform not in caps.waveforms:
            return f"{who}: the {s.waveform.value} waveform is not available on this device"
        for ch in sorted(caps.channels):
            c = caps.channels[ch]
            ranges.append(
                (
                    f"channel {ch}",
                    c.min_frequency.value,
                    c.max_frequency.value,
                    c.min_pulse_width.value,
                    c.max_pulse_width.value,
                )
            )
    for where, lo_f, hi_f, lo_w, hi_w in ranges:
        for f in s.frequencies_hz:
            if f < lo_f:
                return f"{who}: {_fmt(f)} Hz is below the {_fmt(lo_f)} Hz minimum of {where}"
            if f > hi_f:
                return f"{who}: {_fmt(f)} Hz is above the {_fmt(hi_f)} Hz maximum of {where}"
        if s.pulse_width_us < lo_w:
            return (
                f"{who}: {s.pulse_width_us} µs is below the {_fmt(lo_w)} µs minimum pulse "
                f"width of {where}"
            )
        if s.pulse_width_us > hi_w:
            return (
                f"{who}: {s.pulse_width_us} µs is above the {_fmt(hi_w)} µs maximum pulse "
                f"width of {where}"
            )
    return None


# --------------------------------------------------------------------------- the catalogue

_SYM = Waveform.SYMMETRIC_BIPHASIC

CONVENTIONAL = Program(
    name="conventional",
    title="Conventional",
    description=(
        "A steady buzzing or tingling. Turn it up until it feels strong but comfortable, "
        "with no muscle twitching. If it fades, turn it up a little."
    ),
    settings=ChannelSettings(frequency_hz=100, pulse_width_us=150, waveform=_SYM),
)

ACUPUNCTURE_LIKE = Program(
    name="acupuncture-like",
    title="Acupuncture-like",
    description=(
        "Slow, separate pulses, like tapping. Turn it up until it is strong but still "
        "comfortable; small muscle twitches are fine, pain is not."
    ),
    settings=ChannelSettings(frequency_hz=2, pulse_width_us=250, waveform=_SYM),
)

BURST = Program(
    name="burst",
    title="Burst",
    description=(
        "Short bursts of buzzing, about two each second, like a fast pulse. Turn it up until "
        "it is strong but comfortable; small twitches are fine, pain is not."
    ),
    settings=ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        waveform=_SYM,
        pattern=Pattern.BURST,
        secondary_hz=2,
        pulses_per_burst=7,
    ),
)

MODULATED = Program(
    name="modulated",
    title="Modulated",
    description=(
        "A buzzing that slowly rises and falls in pitch, which makes it less likely to fade. "
        "Turn it up until strong but comfortable."
    ),
    settings=ChannelSettings(
        frequency_hz=120,
        pulse_width_us=150,
        waveform=_SYM,
        pattern=Pattern.MODULATED,
        secondary_hz=80,
        cycle_s=6,
    ),
)

MIXED_FREQUENCY = Program(
    name="mixed-frequency",
    title="Mixed frequency",
    description=(
        "Switches every few seconds between slow tapping and a fast buzz. Turn it up until "
        "both feel strong but comfortable."
    ),
    settings=ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        waveform=_SYM,
        pattern=Pattern.MIXED,
        secondary_hz=2,
        cycle_s=3,
    ),
)

CATALOGUE: tuple[Program, ...] = (
    CONVENTIONAL,
    ACUPUNCTURE_LIKE,
    BURST,
    MODULATED,
    MIXED_FREQUENCY,
)
"""The default programs (used without a prescription, and by name in prescriptions)."""


def catalogue() -> dict[str, Program]:
    """The default catalogue by name."""
    return {p.name: p for p in CATALOGUE}


def get_program(name: str, extra: Iterable[Program] = ()) -> Program:
    """A program by name from the catalogue (or ``extra``); :class:`ProgramError` if unknown."""
    known = {p.name: p for p in (*CATALOGUE, *extra)}
    if name not in known:
        names = ", ".join(sorted(known))
        raise ProgramError(f"no program named {name!r}; known programs: {names}")
    return known[name]


def deliverable(
    programs: Iterable[Program], profile: DeviceProfile, caps: EffectiveCaps | None = None
) -> tuple[Program, ...]:
    """The programs in ``programs`` this device can deliver, in order."""
    return tuple(p for p in programs if p.refusal_for(profile, caps) is None)
