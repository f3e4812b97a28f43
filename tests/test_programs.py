"""The program catalogue (DESIGN.md §6) and its check against each device profile."""

from __future__ import annotations

import pytest

from drivers.base import ChannelSettings, DeviceLimits, Pattern, Waveform
from drivers.limits import (
    CapLayer,
    CapSource,
    DeviceProfile,
    builtin_profiles,
    effective_caps,
    get_profile,
)
from tens_control.programs import (
    ACUPUNCTURE_LIKE,
    BURST,
    CATALOGUE,
    CONVENTIONAL,
    MIXED_FREQUENCY,
    MODULATED,
    Program,
    ProgramError,
    catalogue,
    deliverable,
    get_program,
)


def _profile(**changes: object) -> DeviceProfile:
    data = get_profile("generic-2ch").model_dump()
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[key] = value
    return DeviceProfile.model_validate(data)


def test_catalogue_has_the_five_design_programs_with_their_parameters() -> None:
    assert [p.name for p in CATALOGUE] == [
        "conventional",
        "acupuncture-like",
        "burst",
        "modulated",
        "mixed-frequency",
    ]
    assert CONVENTIONAL.settings.frequency_hz == 100
    assert CONVENTIONAL.settings.pulse_width_us == 150
    assert CONVENTIONAL.settings.pattern is Pattern.CONTINUOUS
    assert 2 <= ACUPUNCTURE_LIKE.settings.frequency_hz <= 4
    assert 200 <= ACUPUNCTURE_LIKE.settings.pulse_width_us <= 250
    assert BURST.settings.pattern is Pattern.BURST
    assert BURST.settings.frequency_hz == 100
    assert BURST.settings.secondary_hz == 2
    assert MODULATED.settings.pattern is Pattern.MODULATED
    assert MODULATED.settings.secondary_hz is not None
    assert MODULATED.settings.secondary_hz != MODULATED.settings.frequency_hz
    assert MIXED_FREQUENCY.settings.pattern is Pattern.MIXED
    assert sorted(MIXED_FREQUENCY.settings.frequencies_hz) == [2, 100]
    assert MIXED_FREQUENCY.settings.cycle_s is not None
    assert 1 <= MIXED_FREQUENCY.settings.cycle_s <= 10


def test_every_program_has_a_plain_patient_description() -> None:
    for program in CATALOGUE:
        assert program.title
        assert "comfortable" in program.description
        assert "Hz" not in program.description  # plain words for patients; numbers in summary()
        assert "Hz" in program.summary()
        assert program.channel_settings() is program.settings


def test_summaries_describe_each_pattern() -> None:
    assert CONVENTIONAL.summary() == "100 Hz continuous, 150 µs"
    assert "bursts of 7 pulses at 100 Hz, 2 bursts per second" in BURST.summary()
    assert "swept 80–120 Hz" in MODULATED.summary()
    assert "100 Hz and 2 Hz alternating every 3 s" in MIXED_FREQUENCY.summary()


def test_get_program_by_name_and_unknown_names_are_refused() -> None:
    assert get_program("burst") is BURST
    assert catalogue()["conventional"] is CONVENTIONAL
    with pytest.raises(ProgramError, match=r"no program named 'tickle'; known programs: "):
        get_program("tickle")
    extra = Program(
        name="slow",
        title="Slow",
        description="Slow taps; strong but comfortable.",
        settings=ChannelSettings(frequency_hz=4, pulse_width_us=200),
    )
    assert get_program("slow", extra=[extra]) is extra


@pytest.mark.parametrize("profile_id", sorted(builtin_profiles()))
def test_catalogue_against_each_shipped_profile(profile_id: str) -> None:
    profile = get_profile(profile_id)
    for program in CATALOGUE:
        reason = program.refusal_for(profile)
        should_run = program.settings.pattern in profile.patterns
        assert (reason is None) is should_run, (program.name, reason)
        if should_run:
            program.validate_for(profile)
            caps = effective_caps(profile, profile.device_limits())
            program.validate_for(profile, caps)
        else:
            with pytest.raises(ProgramError, match=f"no {program.settings.pattern.value} pattern"):
                program.validate_for(profile)


def test_rehastim2_refuses_mixed_and_modulated_but_runs_the_others() -> None:
    rehastim = get_profile("rehastim2")
    with pytest.raises(ProgramError) as info:
        MIXED_FREQUENCY.validate_for(rehastim)
    assert str(info.value) == (
        "program 'mixed-frequency' cannot run on Hasomed RehaStim 2 (ScienceMode2): the device "
        "has no mixed pattern (it supports continuous, burst)"
    )
    assert MODULATED.refusal_for(rehastim) is not None
    names = [p.name for p in deliverable(CATALOGUE, rehastim)]
    assert names == ["conventional", "acupuncture-like", "burst"]


def test_every_catalogue_program_runs_on_the_generic_unit_and_the_simulator() -> None:
    for profile_id in ("generic-2ch", "tens-sim"):
        assert deliverable(CATALOGUE, get_profile(profile_id)) == CATALOGUE


def test_frequency_below_the_profile_minimum_is_refused() -> None:
    profile = _profile(frequency__min_hz=5)
    with pytest.raises(ProgramError, match=r"2 Hz is below the 5 Hz minimum of the device"):
        ACUPUNCTURE_LIKE.validate_for(profile)
    # mixed frequency uses 2 Hz too
    assert "2 Hz is below" in (MIXED_FREQUENCY.refusal_for(profile) or "")
    CONVENTIONAL.validate_for(profile)


def test_frequency_above_the_profile_maximum_is_refused() -> None:
    profile = _profile(frequency__max_hz=90)
    with pytest.raises(ProgramError, match=r"100 Hz is above the 90 Hz maximum"):
        CONVENTIONAL.validate_for(profile)
    ACUPUNCTURE_LIKE.validate_for(profile)


def test_pulse_width_out_of_range_is_refused() -> None:
    narrow = _profile(pulse_width__max_us=200)
    with pytest.raises(ProgramError, match=r"250 µs is above the 200 µs maximum pulse width"):
        ACUPUNCTURE_LIKE.validate_for(narrow)
    wide = _profile(pulse_width__min_us=160)
    with pytest.raises(ProgramError, match=r"150 µs is below the 160 µs minimum pulse width"):
        CONVENTIONAL.validate_for(wide)


def test_waveform_the_device_lacks_is_refused() -> None:
    asym = Program(
        name="asym",
        title="Asymmetric",
        description="A steady buzzing; strong but comfortable.",
        settings=ChannelSettings(
            frequency_hz=100, pulse_width_us=150, waveform=Waveform.ASYMMETRIC_BIPHASIC
        ),
    )
    with pytest.raises(ProgramError, match="no asymmetric biphasic waveform"):
        asym.validate_for(get_profile("rehastim2"))
    asym.validate_for(get_profile("generic-2ch"))


def test_narrower_device_reported_limits_and_caps_are_checked_per_channel() -> None:
    profile = get_profile("generic-2ch")
    device = DeviceLimits(
        max_amplitude_ma=80,
        amplitude_step_ma=0.5,
        min_frequency_hz=3,
        max_frequency_hz=150,
        min_pulse_width_us=50,
        max_pulse_width_us=300,
    )
    caps = effective_caps(profile, device)
    ACUPUNCTURE_LIKE.validate_for(profile)  # the profile alone allows 2 Hz
    with pytest.raises(ProgramError, match="below the 3 Hz minimum of channel 1"):
        ACUPUNCTURE_LIKE.validate_for(profile, caps)
    layer = CapLayer(source=CapSource.PRESCRIPTION, max_pulse_width_us=200)
    capped = effective_caps(profile, None, (layer,))
    with pytest.raises(ProgramError, match="250 µs is above the 200 µs maximum pulse width"):
        ACUPUNCTURE_LIKE.validate_for(profile, capped)


def test_programs_are_frozen_and_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        Program.model_validate(
            {
                "name": "x",
                "title": "X",
                "description": "d",
                "settings": {"frequency_hz": 100, "pulse_width_us": 150},
                "colour": "red",
            }
        )
    with pytest.raises(ValueError, match="frozen"):
        CONVENTIONAL.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="should match pattern"):
        Program(
            name="Bad Name",
            title="X",
            description="d",
            settings=ChannelSettings(frequency_hz=100, pulse_width_us=150),
        )
