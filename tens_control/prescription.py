"""The clinician's prescription (DESIGN.md S3, S5, S6, S13 and §6).

A :class:`Prescription` is per patient and versioned. It says which programs the patient may
use, caps amplitude (for every channel and per channel), sets the session length, the daily
schedule (sessions and minutes per day, minimum gap), where each channel's pads go and how big
they are (for the S5 dose checks), the habituation prompt, how pain is asked, and any
clinician override of the 2 mA/cm² current-density rule.

Clinicians write it as TOML (``tens-control prescription new`` prints a commented template);
:func:`load_prescription` reads it and gives one error naming the field for anything wrong.
:func:`dump_prescription` writes it back (a small writer for this known schema: ``tomllib``
only reads).

Without a prescription the over-the-counter defaults apply (:func:`over_the_counter`): the
manufacturer profile, the default catalogue, 30-minute sessions, at most 3 a day.

The daily-limit checks (:func:`daily_limit_reason` and its parts) are pure functions of counts
the store supplies; each returns the reason to refuse a session, or None.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from drivers.limits import CapLayer, CapSource, DeviceProfile, EffectiveCaps
from tens_control import toml_out
from tens_control.errors import TensControlError
from tens_control.pain import PainSite
from tens_control.programs import CATALOGUE, Program, ProgramError, ProgramName, catalogue
from tens_control.screening import ClinicianOverride
from tens_control.sites import DEFAULT_PAD, ChannelPlacement, PadField
from tens_control.trust.keys import ClinicianKey, Signature

__all__ = [
    "FORMAT_VERSION",
    "OTC_SESSIONS_PER_DAY",
    "OTC_SESSION_MINUTES",
    "OVER_THE_COUNTER",
    "ChannelPrescription",
    "ClinicianOverride",
    "Prescription",
    "PrescriptionError",
    "daily_limit_reason",
    "dump_prescription",
    "gap_reason",
    "load_prescription",
    "minutes_left_today",
    "minutes_limit_reason",
    "over_the_counter",
    "parse_prescription",
    "prescription_from_dict",
    "save_prescription",
    "sessions_limit_reason",
    "template",
    "write_new_file",
]

FORMAT_VERSION = 1
"""The version of the prescription file format this code reads and writes."""

OTC_SESSION_MINUTES = 30
OTC_SESSIONS_PER_DAY = 3

RUN_IN_DEFAULT_DAYS = 7
"""Days of daily pain ratings asked before the first session (the baseline; DESIGN.md §9)."""
RUN_IN_MAX_DAYS = 28
RUN_IN_MIN_DAYS = 3
"""A run-in shorter than this could never give a baseline (it needs 3 rated days)."""

HABITUATION_MIN_MINUTES = 5
HABITUATION_MAX_MINUTES = 10
HABITUATION_DEFAULT_MINUTES = 7


class PrescriptionError(TensControlError):
    """A prescription is malformed, breaks a rule, or does not fit the device."""


_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
_IDENTIFIER = r"^[a-z0-9][a-z0-9-]*$"
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_ONE_LINE),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
Milliamps = Annotated[float, Field(ge=0, le=200, allow_inf_nan=False)]


class ChannelPrescription(ChannelPlacement):
    """One channel: its amplitude cap and where its pads go (site and pad size are required)."""

    channel: Annotated[int, Field(ge=1, le=16)]
    max_amplitude_ma: Milliamps | None = None
    """Peak amplitude cap for this channel (mA), on top of ``max_amplitude_ma`` for all."""
    pad: PadField
    """Pad size, required: the dose checks use its area."""

    @property
    def placement(self) -> ChannelPlacement:
        return ChannelPlacement(
            site=self.site,
            side=self.side,
            second_site=self.second_site,
            second_side=self.second_side,
            pad=self.pad,
            note=self.note,
        )


class DeviceCap(BaseModel):
    """A cap signed by the clinic for one device (TSP/2 §16): a device holding the clinic's key
    refuses any amplitude above it, whatever the host asks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    serial: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x29\x2b-\x7e]+$")]
    """The device's serial number (as it reports it): the signature is bound to it."""
    max_ma: Milliamps
    issued: Annotated[int, Field(ge=0)]
    """When it was signed (UNIX seconds); a device refuses one older than the cap it holds."""
    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    signature: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class Prescription(BaseModel):
    """One version of one patient's prescription."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = FORMAT_VERSION
    patient: Name | None = None
    """The patient's pseudonym; if given, import refuses the file for another patient."""
    version: Annotated[int, Field(ge=0)] = 1
    """Version number; the store numbers imported versions. 0 is the built-in defaults."""
    written_by: Name
    written_at: AwareDatetime
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    device_profile: Annotated[str, Field(pattern=_IDENTIFIER)] | None = None
    """The device profile this was written for, if any (checked on import)."""

    programs: Annotated[tuple[ProgramName, ...], Field(min_length=1)]
    """Programs the patient may use, by name, the usual one first."""
    custom_programs: tuple[Program, ...] = ()
    """Programs defined here in addition to the catalogue; each must be listed in programs."""

    max_amplitude_ma: Milliamps | None = None
    """Peak amplitude cap for every channel (mA)."""
    session_minutes: Annotated[int, Field(ge=1, le=24 * 60)]
    sessions_per_day: Annotated[int, Field(ge=1, le=48)] | None = None
    minutes_per_day: Annotated[int, Field(ge=1, le=24 * 60)] | None = None
    min_gap_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 0
    """Minimum time from the end of one session to the start of the next."""

    habituation_prompt: bool = True
    """Ask "still strong but comfortable?" during sessions."""
    habituation_prompt_minutes: Annotated[
        int, Field(ge=HABITUATION_MIN_MINUTES, le=HABITUATION_MAX_MINUTES)
    ] = HABITUATION_DEFAULT_MINUTES

    rate_phantom_and_residual_separately: bool = True
    """Ask phantom pain and residual-limb (stump) pain as two ratings."""
    rate_on_movement: bool = False
    """Also ask pain on movement, not only at rest."""
    run_in_days: Annotated[int, Field(ge=0, le=RUN_IN_MAX_DAYS)] = RUN_IN_DEFAULT_DAYS
    """Days before the first session on which the patient is asked for a daily pain rating:
    the review's baseline. 0: no run-in (the baseline is then the first week of use)."""
    headline_pain: PainSite | None = None
    """The pain series the review leads with; None: phantom-limb pain (or the one pain rating
    when phantom and residual-limb pain are not rated separately)."""
    headline_on_movement: bool = False
    """The headline series is pain on movement (needs ``rate_on_movement``), not at rest."""

    current_density_override: ClinicianOverride | None = None
    """Allows r.m.s. current density above 2 mA/cm² (S5); 0.25 W/cm² is refused regardless."""

    channels: tuple[ChannelPrescription, ...] = ()
    notes: Text = ""

    device_caps: tuple[DeviceCap, ...] = ()
    """Caps signed for the patient's devices that check them themselves (``prescription sign
    --device-serial``); covered by the prescription's signature as well."""

    signature: Signature | None = None
    """The clinician's signature (``tens-control prescription sign``), over
    :meth:`signed_content`; None for an unsigned prescription, which may only narrow."""

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value > FORMAT_VERSION:
            raise ValueError(
                f"format {value} is newer than this version of tens-control understands "
                f"(format {FORMAT_VERSION}); update tens-control"
            )
        if value < 1:
            raise ValueError(f"format must be {FORMAT_VERSION}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Prescription:
        if len(set(self.programs)) != len(self.programs):
            raise ValueError("programs: a program is listed twice")
        builtin = catalogue()
        custom_names = [p.name for p in self.custom_programs]
        for name in custom_names:
            if name in builtin:
                raise ValueError(
                    f"custom_programs: {name!r} is the name of a catalogue program; "
                    "give the custom program another name"
                )
            if name not in self.programs:
                raise ValueError(f"custom_programs: {name!r} is defined but not listed in programs")
        if len(set(custom_names)) != len(custom_names):
            raise ValueError("custom_programs: two programs have the same name")
        known = set(builtin) | set(custom_names)
        for name in self.programs:
            if name not in known:
                raise ValueError(
                    f"programs: no program named {name!r}; known programs: "
                    f"{', '.join(sorted(known))}"
                )
        numbers = [c.channel for c in self.channels]
        if len(set(numbers)) != len(numbers):
            raise ValueError("channels: a channel number appears twice")
        if 0 < self.run_in_days < RUN_IN_MIN_DAYS:
            raise ValueError(
                f"run_in_days ({self.run_in_days}) is too short for a baseline: use 0 (no "
                f"run-in) or {RUN_IN_MIN_DAYS} to {RUN_IN_MAX_DAYS} days"
            )
        separate = self.rate_phantom_and_residual_separately
        headline = self.headline_pain
        if headline is not None and (headline is not PainSite.OTHER) != separate:
            raise ValueError(
                f"headline_pain {headline.value!r} is never asked: with "
                f"rate_phantom_and_residual_separately = {str(separate).lower()} use "
                + ("'phantom' or 'residual_limb'" if separate else "'other' (one pain rating)")
            )
        if self.headline_on_movement and not self.rate_on_movement:
            raise ValueError("headline_on_movement needs rate_on_movement = true")
        if self.minutes_per_day is not None and self.minutes_per_day < self.session_minutes:
            raise ValueError(
                f"minutes_per_day ({self.minutes_per_day}) is shorter than one session "
                f"(session_minutes = {self.session_minutes})"
            )
        return self

    # ---- queries

    @property
    def is_over_the_counter(self) -> bool:
        return self.version == 0

    @property
    def headline_series(self) -> tuple[PainSite, bool]:
        """The review's headline series: (which pain, on movement)."""
        pain = self.headline_pain
        if pain is None:
            pain = PainSite.PHANTOM if self.rate_phantom_and_residual_separately else PainSite.OTHER
        return pain, self.headline_on_movement

    @property
    def is_signed(self) -> bool:
        return self.signature is not None

    def device_cap(self, serial: str) -> DeviceCap | None:
        """The newest cap signed for the device with this serial number, if any."""
        caps = [c for c in self.device_caps if c.serial == serial]
        return max(caps, key=lambda c: c.issued) if caps else None

    def signed_content(self) -> dict[str, Any]:
        """What a signature covers: every field as JSON except the signature itself and
        ``version`` (the store numbers the versions it imports)."""
        return self.model_dump(mode="json", exclude={"signature", "version"})

    @property
    def habituation_interval_s(self) -> float | None:
        """Seconds between habituation prompts, or None if the prompt is off."""
        return self.habituation_prompt_minutes * 60.0 if self.habituation_prompt else None

    @property
    def allows_current_density_override(self) -> bool:
        return self.current_density_override is not None

    def all_programs(self) -> tuple[Program, ...]:
        """The allowed programs, in the prescribed order."""
        known = {p.name: p for p in (*CATALOGUE, *self.custom_programs)}
        return tuple(known[name] for name in self.programs)

    def program(self, name: str) -> Program:
        """An allowed program by name; :class:`ProgramError` if not prescribed."""
        for p in self.all_programs():
            if p.name == name:
                return p
        allowed = ", ".join(self.programs)
        if name in catalogue():
            raise ProgramError(
                f"program {name!r} is not in the prescription; allowed programs: {allowed}"
            )
        raise ProgramError(f"no program named {name!r}; allowed programs: {allowed}")

    def available_programs(
        self, profile: DeviceProfile, caps: EffectiveCaps | None = None
    ) -> tuple[Program, ...]:
        """Allowed programs this device can deliver (the others are not offered)."""
        return tuple(p for p in self.all_programs() if p.refusal_for(profile, caps) is None)

    def channel(self, number: int) -> ChannelPrescription | None:
        """What the prescription says about channel ``number``, if anything."""
        for c in self.channels:
            if c.channel == number:
                return c
        return None

    def amplitude_cap(self, channel: int) -> float | None:
        """The prescribed peak amplitude cap for ``channel`` (mA), or None for no cap."""
        c = self.channel(channel)
        own = None if c is None else c.max_amplitude_ma
        caps = [v for v in (self.max_amplitude_ma, own) if v is not None]
        return min(caps) if caps else None

    def electrode_area_cm2(self, channel: int) -> float | None:
        """Pad area on record for ``channel`` (cm²), or None if the prescription has none."""
        c = self.channel(channel)
        return None if c is None else c.area_cm2

    def to_cap_layer(self) -> CapLayer:
        """The prescription's limits as a layer for :func:`drivers.limits.effective_caps`."""
        return CapLayer(
            source=CapSource.PRESCRIPTION,
            max_amplitude_ma=self.max_amplitude_ma,
            channel_max_amplitude_ma={
                c.channel: c.max_amplitude_ma
                for c in self.channels
                if c.max_amplitude_ma is not None
            },
            max_session_minutes=self.session_minutes,
        )

    def problems_for(self, profile: DeviceProfile) -> list[str]:
        """Everything that does not fit this device, as sentences naming the field."""
        problems: list[str] = []
        dev = profile.name
        if self.session_minutes > profile.max_session_minutes:
            problems.append(
                f"session_minutes ({self.session_minutes}) is above the "
                f"{profile.max_session_minutes}-minute maximum of {dev}"
            )
        top = profile.amplitude.max_ma
        if self.max_amplitude_ma is not None and self.max_amplitude_ma > top:
            problems.append(
                f"max_amplitude_ma ({self.max_amplitude_ma:g} mA) is above the {top:g} mA "
                f"maximum of {dev}"
            )
        for i, c in enumerate(self.channels, start=1):
            where = f"channels (entry {i})"
            if c.channel > profile.channels:
                problems.append(
                    f"{where}.channel: {dev} has {profile.channels} channel(s), not {c.channel}"
                )
            if c.max_amplitude_ma is not None and c.max_amplitude_ma > top:
                problems.append(
                    f"{where}.max_amplitude_ma ({c.max_amplitude_ma:g} mA) is above the "
                    f"{top:g} mA maximum of {dev}"
                )
        if not self.available_programs(profile):
            reasons = "; ".join(
                r for p in self.all_programs() if (r := p.refusal_for(profile)) is not None
            )
            problems.append(f"programs: none of the prescribed programs can run ({reasons})")
        return problems

    def validate_for(self, profile: DeviceProfile) -> None:
        """Raise :class:`PrescriptionError` if this prescription does not fit the device.

        Refused: a session longer than the profile's maximum (S6), an amplitude cap above the
        profile's maximum, a channel the device does not have, or no deliverable program.
        """
        problems = self.problems_for(profile)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PrescriptionError(
                f"prescription version {self.version} does not fit {profile.name}: "
                f"{problems[0]}{more}; ask your clinician for a prescription for this device"
            )

    def revised(
        self,
        *,
        version: int,
        written_by: str | None = None,
        written_at: datetime | None = None,
        reason: str | None = None,
        patient: str | None = None,
    ) -> Prescription:
        """A copy as a new version (validated again), e.g. when the store imports it."""
        data = self.model_dump()
        data["version"] = version
        if patient is not None:
            data["patient"] = patient
        if written_by is not None:
            data["written_by"] = written_by
        if written_at is not None:
            data["written_at"] = written_at
        if reason is not None:
            data["reason"] = reason
        return prescription_from_dict(data, f"prescription version {version}")


# --------------------------------------------------------------------------- signatures

SIGNATURE_PURPOSE = "tens-control prescription"


def sign_prescription(
    rx: Prescription,
    key: ClinicianKey,
    patient: str,
    at: datetime | None = None,
    device_serials: tuple[str, ...] = (),
) -> Prescription:
    """``rx`` for ``patient``, signed with ``key`` (any earlier signature is replaced).
    ``device_serials``: also sign the prescription's amplitude cap for each of these devices
    (TSP/2 §16; the device must hold this key)."""
    if rx.patient is not None and rx.patient != patient:
        raise PrescriptionError(
            f"the prescription is for patient {rx.patient!r}, not {patient!r}; check you have "
            "the right file"
        )
    data = rx.model_dump()
    data["patient"] = patient
    data["signature"] = None
    if device_serials:
        if rx.max_amplitude_ma is None:
            raise PrescriptionError(
                "a cap signed for a device needs max_amplitude_ma in the prescription; add it"
            )
        when = int((at or datetime.now(UTC)).timestamp())
        data["device_caps"] = [
            DeviceCap(
                serial=serial,
                max_ma=rx.max_amplitude_ma,
                issued=when,
                key_id=key.key_id,
                signature=key.sign_device_cap(serial, rx.max_amplitude_ma, when),
            ).model_dump()
            for serial in device_serials
        ]
    unsigned = prescription_from_dict(data, "prescription")
    signature = key.sign(SIGNATURE_PURPOSE, unsigned.signed_content(), patient=patient, at=at)
    return unsigned.model_copy(update={"signature": signature})


# --------------------------------------------------------------------------- narrowing

OTC_CHANNELS = 2
"""Channels a session uses without prescribed channels (a home unit's pair)."""


def _cap_text(value: float | None) -> str:
    return "the device's maximum" if value is None else f"{value:g} mA"


def _above(new: float | None, old: float | None) -> bool:
    """``new`` allows more than ``old`` (None: no limit)."""
    if old is None:
        return False
    return new is None or new > old + 1e-9


def widening(new: Prescription, base: Prescription, base_name: str) -> list[str]:
    """Everything ``new`` allows that ``base`` does not, as sentences naming the field; empty
    when ``new`` only narrows ``base`` (or equals it). ``base_name`` names the base in them
    (e.g. "the signed prescription version 2").

    Narrower means: only programs ``base`` allows (a custom program with the same settings);
    amplitude caps, session length, sessions and minutes a day no higher; a gap between sessions
    no shorter; no current-density override ``base`` lacks; and
    only channels ``base`` uses (without prescribed channels: the first two), each with the same
    electrode sites and pads no larger (a smaller pad makes the dose checks stricter)."""
    problems: list[str] = []
    allowed = {p.name: p for p in base.all_programs()}
    for program in new.all_programs():
        old = allowed.get(program.name)
        if old is None:
            problems.append(f"programs: {program.name!r} is not allowed by {base_name}")
        elif old != program:
            problems.append(
                f"custom_programs: {program.name!r} has other settings than in {base_name}"
            )
    numbers = sorted({c.channel for c in (*new.channels, *base.channels)} | {1, 2})
    for number in numbers:
        if _above(new.amplitude_cap(number), base.amplitude_cap(number)):
            problems.append(
                f"max_amplitude_ma: channel {number} may reach "
                f"{_cap_text(new.amplitude_cap(number))}, above the "
                f"{_cap_text(base.amplitude_cap(number))} of {base_name}"
            )
    if new.session_minutes > base.session_minutes:
        problems.append(
            f"session_minutes: {new.session_minutes} is longer than the "
            f"{base.session_minutes} of {base_name}"
        )
    for name in ("sessions_per_day", "minutes_per_day"):
        mine, theirs = getattr(new, name), getattr(base, name)
        if theirs is not None and (mine is None or mine > theirs):
            problems.append(
                f"{name}: {'no limit' if mine is None else mine} is more than the {theirs} of "
                f"{base_name}"
            )
    if new.min_gap_minutes < base.min_gap_minutes:
        problems.append(
            f"min_gap_minutes: {new.min_gap_minutes} is shorter than the "
            f"{base.min_gap_minutes} of {base_name}"
        )
    if new.current_density_override is not None and base.current_density_override is None:
        problems.append(f"current_density_override: {base_name} has none")
    problems.extend(_channel_widening(new, base, base_name))
    return problems


def _channel_widening(new: Prescription, base: Prescription, base_name: str) -> list[str]:
    problems: list[str] = []
    for c in new.channels:
        where = f"channels (channel {c.channel})"
        if not base.channels:
            if c.channel > OTC_CHANNELS:
                problems.append(f"{where}: {base_name} uses channels 1 and 2 only, not {c.channel}")
            elif c.area_cm2 > DEFAULT_PAD.area_cm2 + 1e-9:
                problems.append(
                    f"{where}.pad: {c.pad.label} is larger than the {DEFAULT_PAD.label} "
                    f"{base_name} assumes"
                )
            continue
        old = base.channel(c.channel)
        if old is None:
            problems.append(f"{where}: {base_name} does not use channel {c.channel}")
            continue
        if (c.site, c.side, c.second_site, c.second_side) != (
            old.site,
            old.side,
            old.second_site,
            old.second_side,
        ):
            problems.append(f"{where}.site: the electrode sites differ from {base_name}")
        if c.area_cm2 > old.area_cm2 + 1e-9:
            problems.append(
                f"{where}.pad: {c.pad.label} is larger than the {old.pad.label} of {base_name}"
            )
    if base.channels and not new.channels:
        problems.append(
            f"channels: none are given, so a session would use channels 1 and 2 with "
            f"{DEFAULT_PAD.label} pads instead of the channels of {base_name}"
        )
    return problems


def fitting_profile_problem(rx: Prescription, profiles: Mapping[str, DeviceProfile]) -> str | None:
    """None if at least one of ``profiles`` can satisfy ``rx``; else the problems with the
    profile that comes closest, as one sentence."""
    best: tuple[int, str] | None = None
    for profile in profiles.values():
        problems = rx.problems_for(profile)
        if not problems:
            return None
        if best is None or len(problems) < best[0]:
            best = (len(problems), f"{problems[0]} (closest: {profile.id})")
    return None if best is None else best[1]


# --------------------------------------------------------------------------- over the counter


def over_the_counter(profile: DeviceProfile | None = None) -> Prescription:
    """The defaults without a prescription: manufacturer profile, default catalogue,
    30-minute sessions (or the profile's maximum if shorter), at most 3 a day.

    With a ``profile``, only the catalogue programs that device can deliver are listed.
    """
    programs: Iterable[Program] = CATALOGUE
    minutes = OTC_SESSION_MINUTES
    if profile is not None:
        programs = [p for p in CATALOGUE if p.refusal_for(profile) is None] or list(CATALOGUE)
        minutes = min(minutes, profile.max_session_minutes)
    return Prescription(
        version=0,
        written_by="tens-control (over-the-counter defaults)",
        written_at=datetime(2026, 1, 1, tzinfo=UTC),
        reason="no prescription on record: conservative over-the-counter defaults",
        device_profile=None if profile is None else profile.id,
        programs=tuple(p.name for p in programs),
        session_minutes=minutes,
        sessions_per_day=OTC_SESSIONS_PER_DAY,
        run_in_days=0,
    )


OVER_THE_COUNTER = over_the_counter()
"""The over-the-counter defaults for any device (every catalogue program)."""


# --------------------------------------------------------------------------- daily limits
# Counts come from the store: sessions started today, minutes of stimulation today, and the
# time since the last session ended ("today" is the patient's local calendar day).


def sessions_limit_reason(rx: Prescription, sessions_today: int) -> str | None:
    """Refusal reason if another session would exceed ``sessions_per_day``."""
    if rx.sessions_per_day is not None and sessions_today >= rx.sessions_per_day:
        return (
            f"daily limit reached: {sessions_today} of {rx.sessions_per_day} sessions "
            "allowed today already done; the next session is possible tomorrow"
        )
    return None


def minutes_left_today(rx: Prescription, minutes_today: float) -> float | None:
    """Minutes of stimulation still allowed today, or None when there is no daily cap."""
    if rx.minutes_per_day is None:
        return None
    return max(0.0, rx.minutes_per_day - minutes_today)


def minutes_limit_reason(rx: Prescription, minutes_today: float) -> str | None:
    """Refusal reason if the ``minutes_per_day`` are used up."""
    left = minutes_left_today(rx, minutes_today)
    if left is not None and left < 1.0:
        return (
            f"daily limit reached: {math.floor(minutes_today)} of {rx.minutes_per_day} "
            "minutes allowed today already used; stimulation is possible again tomorrow"
        )
    return None


def gap_reason(rx: Prescription, since_last_session: timedelta | None) -> str | None:
    """Refusal reason if the last session ended less than ``min_gap_minutes`` ago.

    ``since_last_session`` is the time since the last session ended (None: no session yet).
    """
    if since_last_session is None or rx.min_gap_minutes == 0:
        return None
    gap = timedelta(minutes=rx.min_gap_minutes)
    if since_last_session < gap:
        wait = gap - since_last_session
        wait_min = max(1, math.ceil(wait.total_seconds() / 60.0))
        return (
            f"too soon after the last session: the prescription asks for "
            f"{rx.min_gap_minutes} minutes between sessions; wait {wait_min} more minute(s)"
        )
    return None


def daily_limit_reason(
    rx: Prescription,
    sessions_today: int,
    minutes_today: float,
    since_last_session: timedelta | None,
) -> str | None:
    """The first reason to refuse a new session now (S6), or None if it may start."""
    return (
        sessions_limit_reason(rx, sessions_today)
        or minutes_limit_reason(rx, minutes_today)
        or gap_reason(rx, since_last_session)
    )


# --------------------------------------------------------------------------- reading


def _where(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) and parts:
            parts[-1] = f"{parts[-1]} (entry {part + 1})"
        elif isinstance(part, int):
            parts.append(f"entry {part + 1}")
        else:
            parts.append(part)
    return ".".join(parts)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field (not part of the prescription format; check the spelling)"
    if kind == "missing":
        return "required field is missing"
    if kind in ("timezone_aware", "timezone_naive"):
        return "give a time zone, e.g. 2026-03-01T09:30:00Z"
    if kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        if pattern == _ONE_LINE:
            return "must be one line of text (no tabs, line breaks or control characters)"
        if pattern == _IDENTIFIER:
            return "use lower-case letters, digits and '-' only, starting with a letter or digit"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def describe_validation_error(error: ValidationError) -> str:
    """The first problem as ``field X: what is wrong`` (plus how many more there are)."""
    errors = error.errors()
    first = errors[0]
    where = _where(tuple(first["loc"]))
    text = f"field {where}: {_message(first)}" if where else _message(first)
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem(s))"
    return text


def prescription_from_dict(data: Mapping[str, Any], source: str = "prescription") -> Prescription:
    """Validate parsed TOML (or a dump) into a :class:`Prescription`."""
    try:
        return Prescription.model_validate(dict(data))
    except ValidationError as error:
        raise PrescriptionError(
            f"{source}: {describe_validation_error(error)}; fix it and try again"
        ) from None


def parse_prescription(text: str, source: str = "prescription") -> Prescription:
    """Read a prescription from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PrescriptionError(
            f"{source}: not valid TOML ({error}); fix it and try again"
        ) from None
    return prescription_from_dict(data, source)


def load_prescription(path: Path) -> Prescription:
    """Read a prescription file. Every problem is one :class:`PrescriptionError` naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PrescriptionError(f"prescription {path}: file not found") from None
    except OSError as error:
        raise PrescriptionError(f"prescription {path}: cannot read it ({error.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PrescriptionError(
            f"prescription {path}: not UTF-8 text; save it as UTF-8 and try again"
        ) from None
    return parse_prescription(text, f"prescription {path}")


# --------------------------------------------------------------------------- writing


def dump_prescription(rx: Prescription) -> str:
    """The prescription as TOML that :func:`parse_prescription` reads back to an equal one."""
    data = rx.model_dump(mode="python", exclude_none=True)
    # channel number first in each [[channels]] table, as clinicians read them
    data["channels"] = [
        {"channel": c["channel"], "max_amplitude_ma": c.get("max_amplitude_ma"), **c}
        for c in data["channels"]
    ]
    return toml_out.dumps(
        data, (f"tens-control prescription, format {FORMAT_VERSION}", f"version {rx.version}")
    )


def save_prescription(rx: Prescription, path: Path, overwrite: bool = False) -> None:
    """Write ``rx`` to ``path``; refuses to replace an existing file unless ``overwrite``."""
    write_new_file(path, dump_prescription(rx), overwrite)


def write_new_file(path: Path, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to a new file; refuses to replace one unless ``overwrite``."""
    mode = "w" if overwrite else "x"
    try:
        with path.open(mode, encoding="utf-8", newline="\n") as fp:
            fp.write(text)
    except FileExistsError:
        raise PrescriptionError(
            f"{path} already exists; choose another file or add --force to replace it"
        ) from None
    except OSError as error:
        raise PrescriptionError(f"cannot write {path} ({error.strerror})") from None


# --------------------------------------------------------------------------- template


def template(now: datetime | None = None) -> str:
    """A commented prescription for a clinician to edit (it is itself a valid prescription)."""
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    names = ", ".join(f'"{p.name}"' for p in CATALOGUE)
    return _TEMPLATE.format(
        format=FORMAT_VERSION,
        written_at=when.isoformat().replace("+00:00", "Z"),
        names=names,
        hmin=HABITUATION_MIN_MINUTES,
        hmax=HABITUATION_MAX_MINUTES,
        hdef=HABITUATION_DEFAULT_MINUTES,
    )


_TEMPLATE = """\
# tens-control prescription (TOML). Edit the values, then:
#   tens-control prescription show FILE      to check it
#   tens-control prescription import FILE    to make it the patient's current prescription
# Lines starting with # are comments. Times need a time zone (Z = UTC).
# The manufacturer's limits always apply too: nothing here can raise them.

format = {format}
# patient = "patient-1"            # the patient's pseudonym (optional; import checks it)
written_by = "Dr A. Example, pain clinic"
written_at = {written_at}
reason = "Phantom-limb pain after left transtibial amputation; start conventional TENS."
# device_profile = "generic-2ch"   # optional: the device model this is written for

# Programs the patient may use, the usual one first. Catalogue: {names}
programs = ["conventional", "acupuncture-like"]

# Amplitude caps, peak mA. max_amplitude_ma applies to every channel;
# a channel's own max_amplitude_ma (below) can only make it lower.
max_amplitude_ma = 60.0

# Schedule
session_minutes = 30               # length of one session (at most the device maximum)
sessions_per_day = 3               # remove the line for no limit
minutes_per_day = 120              # remove the line for no limit
min_gap_minutes = 60               # from the end of one session to the start of the next

# "Still strong but comfortable?" prompt during a session, every {hmin}-{hmax} minutes
habituation_prompt = true
habituation_prompt_minutes = {hdef}

# Pain ratings
rate_phantom_and_residual_separately = true
rate_on_movement = true
run_in_days = 7                    # days of ratings before the first session (baseline); 0: none
# headline_pain = "phantom"        # the series the review leads with: phantom or residual_limb
# headline_on_movement = false     # true: pain on movement (needs rate_on_movement = true)

notes = ""

# One [[channels]] table per channel used. Sites: residual_limb, transected_nerve,
# contralateral, shoulder, upper_arm, forearm, hand, hip, thigh, knee, lower_leg, foot,
# back_of_neck, upper_back, lower_back, buttock, chest, abdomen, other (needs a note).
# Refused: front_of_neck, head, eyes, mouth, and chest paired with the back.
# side: left, right or midline. second_site/second_side: where the other pad goes, if elsewhere.
# pad: "WxH cm" (e.g. "5x5 cm", "5x9 cm", "4x4 cm") or "round D cm" (e.g. "round 3.2 cm").
[[channels]]
channel = 1
site = "residual_limb"
side = "left"
pad = "5x5 cm"
max_amplitude_ma = 50.0
note = "both pads on the stump, above the scar"

[[channels]]
channel = 2
site = "transected_nerve"
side = "left"
pad = "5x5 cm"
note = "over the common peroneal nerve"

# To allow r.m.s. current density above 2 mA/cm² (small pads, high output), record who
# decided, when and why. Power density of 0.25 W/cm² or more is refused regardless.
# [current_density_override]
# who = "Dr A. Example"
# at = {written_at}
# why = "2x2 cm pads needed over the nerve; density reviewed"

# A program of your own (list its name in programs too):
# [[custom_programs]]
# name = "nhs-80hz"
# title = "80 Hz"
# description = "A steady buzzing; turn it up until strong but comfortable."
# [custom_programs.settings]
# frequency_hz = 80.0
# pulse_width_us = 150
# pattern = "continuous"            # continuous, burst, modulated or mixed
"""
