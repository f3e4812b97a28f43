from pathlib import Path

import pytest

from drivers.base import ChannelSettings, DeviceLimits, Pattern
from drivers.limits import (
    CapLayer,
    CapSource,
    DoseVerdict,
    ProfileError,
    builtin_profiles,
    dose,
    effective_caps,
    get_profile,
    load_profile,
    max_amplitude_for_dose,
)


def test_the_three_design_profiles_ship() -> None:
    profiles = builtin_profiles()
    generic = profiles["generic-2ch"]
    assert (generic.channels, generic.amplitude.max_ma, generic.amplitude.step_ma) == (2, 80, 0.5)
    assert (generic.frequency.min_hz, generic.frequency.max_hz) == (1, 150)
    assert (generic.pulse_width.min_us, generic.pulse_width.max_us) == (50, 300)
    assert generic.max_session_minutes == 60
    rehastim = profiles["rehastim2"]
    assert (rehastim.channels, rehastim.amplitude.max_ma, rehastim.amplitude.step_ma) == (8, 130, 1)
    assert (rehastim.frequency.max_hz, rehastim.pulse_width.min_us) == (125, 20)
    assert rehastim.pulse_width.max_us == 500
    assert "tens-sim" in profiles


def test_worked_dose_example_from_the_clinical_notes() -> None:
    # 60 mA, 200 µs, 100 Hz -> 12 mA rms; on 2x2 cm that is 3.0 mA/cm² (needs override)
    settings = ChannelSettings(frequency_hz=100, pulse_width_us=200)
    d = dose(60, settings, electrode_area_cm2=4.0)
    assert d.charge_per_phase_uc == pytest.approx(12.0)
    assert d.rms_current_ma == pytest.approx(12.0)
    assert d.current_density_ma_per_cm2 == pytest.approx(3.0)
    assert d.power_w == pytest.approx(0.072)
    assert d.verdict() is DoseVerdict.NEEDS_OVERRIDE
    assert d.verdict(clinician_override=True) is DoseVerdict.OK
    # on a 5x5 cm pad the same output is fine
    assert dose(60, settings, 25.0).verdict() is DoseVerdict.OK
    # 2 mA/cm² on 4 cm² is reached at 40 mA peak
    assert max_amplitude_for_dose(settings, 4.0, clinician_override=False) == pytest.approx(40.0)


def test_power_density_at_the_limit_is_refused_even_with_override() -> None:
    settings = ChannelSettings(frequency_hz=150, pulse_width_us=300)
    limit = max_amplitude_for_dose(settings, 0.5, clinician_override=True)
    assert dose(limit * 1.0001, settings, 0.5).verdict(True) is DoseVerdict.REFUSED
    assert dose(limit * 0.999, settings, 0.5).verdict(True) is DoseVerdict.OK


def test_burst_dose_uses_pulses_per_second_not_intra_burst_frequency() -> None:
    burst = ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        pattern=Pattern.BURST,
        secondary_hz=2,
        pulses_per_burst=7,
    )
    assert burst.max_pulse_rate_hz == 14


def test_caps_intersect_and_remember_the_binding_layer() -> None:
    profile = get_profile("generic-2ch")
    device = DeviceLimits(
        max_amplitude_ma=70,
        amplitude_step_ma=0.5,
        min_frequency_hz=2,
        max_frequency_hz=200,
        min_pulse_width_us=20,
        max_pulse_width_us=250,
    )
    rx = CapLayer(source=CapSource.PRESCRIPTION, channel_max_amplitude_ma={2: 30})
    comfort = CapLayer(source=CapSource.COMFORT, max_amplitude_ma=45)
    caps = effective_caps(profile, device, (rx, comfort))
    assert caps.channel(1).max_amplitude.value == 45
    assert caps.channel(1).max_amplitude.source is CapSource.COMFORT
    assert caps.channel(2).max_amplitude.value == 30
    assert caps.channel(2).max_amplitude.source is CapSource.PRESCRIPTION
    assert caps.channel(1).min_frequency.value == 2
    assert caps.channel(1).min_frequency.source is CapSource.DEVICE
    assert caps.channel(1).max_frequency.value == 150  # profile narrower than device
    assert caps.channel(1).max_pulse_width.value == 250
    # a layer can never widen a limit
    wide = CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=500, max_frequency_hz=999)
    caps = effective_caps(profile, None, (wide,))
    assert caps.channel(1).max_amplitude.value == 80
    assert caps.channel(1).max_frequency.value == 150


def test_malformed_profile_names_file_field_and_rule(tmp_path: Path) -> None:
    source = (Path(__file__).parents[1] / "drivers/profiles/generic-2ch.toml").read_text()
    bad = tmp_path / "generic-2ch.toml"
    bad.write_text(source.replace("max_ma = 80.0", "max_ma = -3"))
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "amplitude.max_ma" in message
    assert "greater than 0" in message


def test_profile_that_is_not_toml_is_reported_plainly(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("id = [unclosed")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    source = (Path(__file__).parents[1] / "drivers/profiles/tens-sim.toml").read_text()
    bad = tmp_path / "tens-sim.toml"
    bad.write_text("turbo = true\n" + source)
    with pytest.raises(ProfileError, match="turbo"):
        load_profile(bad)
