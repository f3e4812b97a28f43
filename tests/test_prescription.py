"""The prescription: TOML in and out, one clear error per bad file, caps, daily limits."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import ChannelSettings, Pattern
from drivers.limits import (
    CapSource,
    DeviceProfile,
    builtin_profiles,
    effective_caps,
    get_profile,
)
from tens_control.cli import main
from tens_control.prescription import (
    OTC_SESSION_MINUTES,
    OTC_SESSIONS_PER_DAY,
    OVER_THE_COUNTER,
    ChannelPrescription,
    Prescription,
    PrescriptionError,
    daily_limit_reason,
    dump_prescription,
    gap_reason,
    load_prescription,
    minutes_left_today,
    minutes_limit_reason,
    over_the_counter,
    parse_prescription,
    prescription_from_dict,
    save_prescription,
    sessions_limit_reason,
    template,
)
from tens_control.programs import CATALOGUE, Program, ProgramError
from tens_control.screening import ClinicianOverride
from tens_control.sites import PadSize, Side, Site
from tens_control.store import Store

WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _rx(**changes: Any) -> Prescription:
    data: dict[str, Any] = {
        "patient": "patient-001",
        "written_by": "Dr A. Example",
        "written_at": WHEN,
        "reason": "phantom-limb pain",
        "programs": ("conventional", "burst"),
        "max_amplitude_ma": 60.0,
        "session_minutes": 30,
        "sessions_per_day": 3,
        "minutes_per_day": 120,
        "min_gap_minutes": 60,
        "channels": (
            {"channel": 1, "site": "residual_limb", "pad": "5x5 cm", "max_amplitude_ma": 40.0},
            {"channel": 2, "site": "transected_nerve", "pad": "2x2 cm"},
        ),
    }
    data.update(changes)
    return Prescription.model_validate(data)


# --------------------------------------------------------------------------- the template


def test_the_template_is_a_valid_commented_prescription() -> None:
    text = template(now=WHEN)
    assert text.count("#") > 20  # it explains itself
    rx = parse_prescription(text)
    assert rx.written_at == WHEN
    assert rx.programs == ("conventional", "acupuncture-like")
    assert rx.channel(1) is not None
    assert rx.electrode_area_cm2(1) == pytest.approx(25.0)
    assert rx.habituation_interval_s == 7 * 60
    assert rx.current_density_override is None
    for profile in builtin_profiles().values():
        rx.validate_for(profile)


def test_template_commented_sections_are_valid_when_uncommented() -> None:
    text = template(now=WHEN)
    uncommented = []
    inside = False
    for line in text.splitlines():
        if line.startswith("# [current_density_override]") or line.startswith(
            "# [[custom_programs]]"
        ):
            inside = True
        if inside and line.startswith("# ") and not line.startswith("# A program"):
            uncommented.append(line[2:].split("  #")[0])
        else:
            uncommented.append(line)
    text = "\n".join(uncommented).replace(
        'programs = ["conventional", "acupuncture-like"]',
        'programs = ["conventional", "acupuncture-like", "nhs-80hz"]',
    )
    rx = parse_prescription(text)
    assert rx.allows_current_density_override
    assert rx.program("nhs-80hz").settings.frequency_hz == 80


# --------------------------------------------------------------------------- round trip


def test_toml_round_trip_of_a_full_prescription(tmp_path: Path) -> None:
    custom = Program(
        name="han",
        title="Han",
        description='Two "speeds"\nalternating; strong but comfortable.',
        settings=ChannelSettings(
            frequency_hz=100, pulse_width_us=200, pattern=Pattern.MIXED, secondary_hz=4, cycle_s=3
        ),
    )
    rx = _rx(
        programs=("han", "conventional"),
        custom_programs=(custom,),
        current_density_override=ClinicianOverride(
            who="Dr B \\ Clinic", at=WHEN, why="small pads over the nerve; reviewed"
        ),
        habituation_prompt=False,
        rate_on_movement=True,
        device_profile="generic-2ch",
        notes="tab\there; ünïcödé µA",
        channels=(
            {
                "channel": 2,
                "site": "chest",
                "side": "left",
                "pad": "round 3.2 cm",
                "note": "left chest wall",
            },
            {
                "channel": 1,
                "site": "residual_limb",
                "second_site": "contralateral",
                "side": "right",
                "second_side": "left",
                "pad": "5x9",
                "max_amplitude_ma": 33.5,
            },
        ),
    )
    text = dump_prescription(rx)
    assert parse_prescription(text) == rx
    path = tmp_path / "rx.toml"
    save_prescription(rx, path)
    assert load_prescription(path) == rx
    assert rx.channel(2) is not None
    assert rx.channel(2).pad == PadSize.round(3.2)  # type: ignore[union-attr]


def test_written_file_starts_with_channel_numbers_and_omits_unset_values() -> None:
    text = dump_prescription(_rx())
    data = tomllib.loads(text)
    assert "current_density_override" not in data
    assert "device_profile" not in data
    first_keys = [line.split(" = ")[0] for line in text.split("[[channels]]")[1].split("\n")[1:3]]
    assert first_keys == ["channel", "max_amplitude_ma"]


def test_over_the_counter_round_trips() -> None:
    assert parse_prescription(dump_prescription(OVER_THE_COUNTER)) == OVER_THE_COUNTER


_names = st.sampled_from([p.name for p in CATALOGUE])
_line = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=30
).filter(str.strip)
_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=40,
)


@st.composite
def _prescriptions(draw: st.DrawFn) -> Prescription:
    session = draw(st.integers(1, 60))
    chans = draw(st.lists(st.integers(1, 8), unique=True, max_size=3))
    sites = [s for s in Site if s not in (Site.FRONT_OF_NECK, Site.HEAD, Site.EYES, Site.MOUTH)]
    sites.remove(Site.OTHER)
    sites.remove(Site.CHEST)
    return Prescription(
        patient=draw(st.none() | _line.map(str.strip)),
        version=draw(st.integers(0, 10_000)),
        written_by=draw(_line).strip(),
        written_at=draw(
            st.datetimes(
                min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
                max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
            )
        ),
        reason=draw(_text.filter(str.strip)).strip(),
        programs=tuple(draw(st.lists(_names, min_size=1, max_size=5, unique=True))),
        max_amplitude_ma=draw(st.none() | st.floats(0, 200)),
        session_minutes=session,
        sessions_per_day=draw(st.none() | st.integers(1, 48)),
        minutes_per_day=draw(st.none() | st.integers(session, 1440)),
        min_gap_minutes=draw(st.integers(0, 1440)),
        habituation_prompt=draw(st.booleans()),
        habituation_prompt_minutes=draw(st.integers(5, 10)),
        rate_phantom_and_residual_separately=draw(st.booleans()),
        rate_on_movement=draw(st.booleans()),
        channels=tuple(
            ChannelPrescription(
                channel=c,
                site=draw(st.sampled_from(sites)),
                side=draw(st.none() | st.sampled_from(list(Side))),
                pad=PadSize.rectangle(
                    draw(st.floats(2, 20).map(lambda v: round(v, 2))),
                    draw(st.floats(2, 20).map(lambda v: round(v, 2))),
                ),
                max_amplitude_ma=draw(st.none() | st.floats(0, 200)),
                note=draw(_text).strip(),
            )
            for c in chans
        ),
        notes=draw(_text).strip(),
    )


@settings(max_examples=150, deadline=None)
@given(_prescriptions())
def test_round_trip_property(rx: Prescription) -> None:
    assert parse_prescription(dump_prescription(rx)) == rx


# --------------------------------------------------------------------------- bad input


def _error(text: str) -> str:
    with pytest.raises(PrescriptionError) as info:
        parse_prescription(text, "prescription rx.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("prescription rx.toml: ")
    return message


BASE = template(now=WHEN)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('notes = ""', 'colour = "red"', "field colour: unknown field"),
        ("channel = 2\n", "channel = 2\ncolour = 1\n", "field channels (entry 2).colour: unknown"),
        ("max_amplitude_ma = 60.0", 'max_amplitude_ma = "lots"', "field max_amplitude_ma: "),
        ("max_amplitude_ma = 60.0", "max_amplitude_ma = 250", "field max_amplitude_ma: "),
        (
            "max_amplitude_ma = 50.0",
            "max_amplitude_ma = -5",
            "field channels (entry 1).max_amplitude_ma: Input should be greater than or equal",
        ),
        ("session_minutes = 30", "session_minutes = 30.5", "field session_minutes: "),
        ("session_minutes = 30", "session_minutes = 0", "field session_minutes: "),
        ("habituation_prompt_minutes = 7", "habituation_prompt_minutes = 20", "habituation"),
        ("habituation_prompt_minutes = 7", "habituation_prompt_minutes = 3", "habituation"),
        ('written_by = "Dr A. Example, pain clinic"', "", "field written_by: required field"),
        ("written_at = 2026", "written_at = 2026-03-01T09:30:00\n# ", "field written_at: give a"),
        ('"acupuncture-like"]', '"tickle"]', "no program named 'tickle'; known programs:"),
        ('["conventional", "acupuncture-like"]', "[]", "field programs: "),
        (
            '["conventional", "acupuncture-like"]',
            '["conventional", "conventional"]',
            "listed twice",
        ),
        ('site = "residual_limb"', 'site = "front_of_neck"', "channels (entry 1).site: front"),
        ('site = "residual_limb"', 'site = "stump"', "field channels (entry 1).site: Input"),
        ('site = "residual_limb"', 'site = "eyes"', "eyes is refused"),
        (
            'site = "residual_limb"',
            'site = "chest"\nsecond_site = "upper_back"',
            "transthoracic",
        ),
        ('pad = "5x5 cm"', 'pad = "huge"', "field channels (entry 1).pad: pad size 'huge' not"),
        ('pad = "5x5 cm"', 'pad = "1x1 cm"', "too small"),
        ('pad = "5x5 cm"\nmax', "max", "field channels (entry 1).pad: required field"),
        ("channel = 2", "channel = 1", "channel number appears twice"),
        ("format = 1", "format = 2", "field format: format 2 is newer"),
        ("minutes_per_day = 120", "minutes_per_day = 10", "shorter than one session"),
        ("session_minutes = 30", "session_minutes =", "not valid TOML"),
        ('reason = "Phantom', 'reason = "  "\nx = "', "field reason: String should have at"),
        ('written_by = "Dr', 'written_by = "\\u0007Dr', "field written_by: "),
    ],
)
def test_malformed_files_give_one_message_naming_the_field(
    old: str, new: str, expected: str
) -> None:
    assert old in BASE
    message = _error(BASE.replace(old, new, 1))
    assert expected in message
    assert "Traceback" not in message
    assert "validation error" not in message


def test_missing_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(PrescriptionError, match="file not found"):
        load_prescription(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(BASE.replace("Example", "Ex\xe9mple").encode("latin-1"))
    with pytest.raises(PrescriptionError, match="not UTF-8"):
        load_prescription(bad)
    with pytest.raises(PrescriptionError, match="cannot read"):
        load_prescription(tmp_path)


def test_more_problems_are_counted_in_the_one_message() -> None:
    message = _error(BASE.replace('notes = ""', 'colour = "red"\nsize = 1'))
    assert "(and 1 more problem(s))" in message


def test_custom_programs_must_be_listed_and_not_shadow_the_catalogue() -> None:
    custom = {
        "name": "conventional",
        "title": "Mine",
        "description": "d",
        "settings": {"frequency_hz": 80, "pulse_width_us": 150},
    }
    with pytest.raises(ValueError, match="name of a catalogue program"):
        _rx(custom_programs=(custom,))
    with pytest.raises(ValueError, match="not listed in programs"):
        _rx(custom_programs=({**custom, "name": "mine"},))


def test_saving_never_overwrites_without_permission(tmp_path: Path) -> None:
    path = tmp_path / "rx.toml"
    path.write_text("keep me")
    with pytest.raises(PrescriptionError, match=r"already exists; .* --force"):
        save_prescription(_rx(), path)
    assert path.read_text() == "keep me"
    save_prescription(_rx(), path, overwrite=True)
    assert load_prescription(path) == _rx()


# --------------------------------------------------------------------------- caps


def test_cap_layer_carries_the_caps_and_session_length() -> None:
    layer = _rx().to_cap_layer()
    assert layer.source is CapSource.PRESCRIPTION
    assert layer.max_amplitude_ma == 60
    assert layer.channel_max_amplitude_ma == {1: 40}
    assert layer.max_session_minutes == 30
    caps = effective_caps(get_profile("generic-2ch"), None, (layer,))
    assert caps.channel(1).max_amplitude.value == 40
    assert caps.channel(1).max_amplitude.source is CapSource.PRESCRIPTION
    assert caps.channel(2).max_amplitude.value == 60
    assert caps.max_session.value == 30
    assert _rx().amplitude_cap(1) == 40
    assert _rx().amplitude_cap(2) == 60
    assert _rx(max_amplitude_ma=None).amplitude_cap(2) is None
    assert _rx().electrode_area_cm2(2) == pytest.approx(4.0)
    assert _rx().electrode_area_cm2(5) is None


@settings(max_examples=100, deadline=None)
@given(_prescriptions(), st.sampled_from(sorted(builtin_profiles())))
def test_effective_caps_are_never_above_the_profile(rx: Prescription, profile_id: str) -> None:
    profile = get_profile(profile_id)
    caps = effective_caps(profile, None, (rx.to_cap_layer(),))
    for number, ch in caps.channels.items():
        assert ch.max_amplitude.value <= profile.amplitude.max_ma
        cap = rx.amplitude_cap(number)
        if cap is not None:
            assert ch.max_amplitude.value <= cap
    assert caps.max_session.value <= profile.max_session_minutes
    assert caps.max_session.value <= rx.session_minutes


def test_prescriptions_above_the_profile_are_refused_naming_the_field() -> None:
    generic = get_profile("generic-2ch")
    with pytest.raises(PrescriptionError, match=r"session_minutes \(90\) is above the 60-minute"):
        _rx(session_minutes=90, minutes_per_day=None).validate_for(generic)
    with pytest.raises(PrescriptionError, match=r"max_amplitude_ma \(100 mA\) is above the 80"):
        _rx(max_amplitude_ma=100).validate_for(generic)
    over = _rx(
        channels=({"channel": 1, "site": "residual_limb", "pad": "5x5", "max_amplitude_ma": 90},)
    )
    with pytest.raises(PrescriptionError, match=r"channels \(entry 1\).max_amplitude_ma \(90 mA\)"):
        over.validate_for(generic)
    with pytest.raises(PrescriptionError, match=r"has 2 channel\(s\), not 3"):
        _rx(channels=({"channel": 3, "site": "thigh", "pad": "5x5"},)).validate_for(generic)
    _rx(max_amplitude_ma=100).validate_for(get_profile("rehastim2"))  # 130 mA device


def test_programs_the_device_cannot_run_are_not_offered() -> None:
    rehastim = get_profile("rehastim2")
    rx = _rx(programs=("mixed-frequency", "conventional"))
    assert [p.name for p in rx.available_programs(rehastim)] == ["conventional"]
    rx.validate_for(rehastim)
    only_mixed = _rx(programs=("mixed-frequency",))
    with pytest.raises(PrescriptionError, match="none of the prescribed programs can run"):
        only_mixed.validate_for(rehastim)


def test_program_lookup_respects_the_prescription() -> None:
    rx = _rx()
    assert rx.program("burst").name == "burst"
    with pytest.raises(ProgramError, match="'modulated' is not in the prescription"):
        rx.program("modulated")
    with pytest.raises(ProgramError, match="no program named 'tickle'"):
        rx.program("tickle")
    assert [p.name for p in rx.all_programs()] == ["conventional", "burst"]


def test_revised_makes_a_new_validated_version() -> None:
    rx = _rx()
    later = WHEN + timedelta(days=7)
    new = rx.revised(version=4, written_by="Dr C", written_at=later, reason="raise cap")
    assert (new.version, new.written_by, new.written_at, new.reason) == (
        4,
        "Dr C",
        later,
        "raise cap",
    )
    assert new.channels == rx.channels
    with pytest.raises(PrescriptionError, match="field reason"):
        rx.revised(version=5, reason="")


# --------------------------------------------------------------------------- over the counter


def test_over_the_counter_defaults() -> None:
    otc = OVER_THE_COUNTER
    assert otc.is_over_the_counter
    assert otc.session_minutes == OTC_SESSION_MINUTES == 30
    assert otc.sessions_per_day == OTC_SESSIONS_PER_DAY == 3
    assert otc.programs == tuple(p.name for p in CATALOGUE)
    assert otc.channels == ()
    assert otc.max_amplitude_ma is None
    assert otc.current_density_override is None
    layer = otc.to_cap_layer()
    caps = effective_caps(get_profile("generic-2ch"), None, (layer,))
    assert caps.channel(1).max_amplitude.source is CapSource.PROFILE  # the manufacturer's
    assert caps.max_session.value == 30


def test_over_the_counter_for_a_device_lists_what_it_can_run() -> None:
    otc = over_the_counter(get_profile("rehastim2"))
    assert otc.programs == ("conventional", "acupuncture-like", "burst")
    assert otc.device_profile == "rehastim2"
    short = DeviceProfile.model_validate(
        {**get_profile("generic-2ch").model_dump(), "max_session_minutes": 20}
    )
    assert over_the_counter(short).session_minutes == 20
    for profile in builtin_profiles().values():
        over_the_counter(profile).validate_for(profile)


# --------------------------------------------------------------------------- daily limits


def test_sessions_per_day() -> None:
    rx = _rx(sessions_per_day=3)
    assert sessions_limit_reason(rx, 0) is None
    assert sessions_limit_reason(rx, 2) is None
    reason = sessions_limit_reason(rx, 3)
    assert reason is not None
    assert "3 of 3 sessions" in reason
    assert sessions_limit_reason(rx, 4) is not None
    assert sessions_limit_reason(_rx(sessions_per_day=None), 100) is None


def test_minutes_per_day() -> None:
    rx = _rx(minutes_per_day=120)
    assert minutes_left_today(rx, 0) == 120
    assert minutes_left_today(rx, 100.5) == pytest.approx(19.5)
    assert minutes_left_today(rx, 150) == 0
    assert minutes_limit_reason(rx, 119.0) is None
    reason = minutes_limit_reason(rx, 119.5)
    assert reason is not None
    assert "119 of 120 minutes" in reason
    assert minutes_left_today(_rx(minutes_per_day=None), 1000) is None
    assert minutes_limit_reason(_rx(minutes_per_day=None), 1000) is None


def test_minimum_gap_between_sessions() -> None:
    rx = _rx(min_gap_minutes=60)
    assert gap_reason(rx, None) is None
    assert gap_reason(rx, timedelta(minutes=60)) is None
    reason = gap_reason(rx, timedelta(minutes=45, seconds=30))
    assert reason is not None
    assert "wait 15 more minute(s)" in reason
    assert "wait 1 more" in (gap_reason(rx, timedelta(minutes=59, seconds=59)) or "")
    assert gap_reason(_rx(min_gap_minutes=0), timedelta(0)) is None


def test_daily_limit_reason_gives_the_first_reason_or_none() -> None:
    rx = _rx(sessions_per_day=3, minutes_per_day=120, min_gap_minutes=60)
    assert daily_limit_reason(rx, 1, 30, timedelta(hours=2)) is None
    assert "sessions" in (daily_limit_reason(rx, 3, 200, timedelta(0)) or "")
    assert "minutes allowed" in (daily_limit_reason(rx, 2, 120, timedelta(0)) or "")
    assert "too soon" in (daily_limit_reason(rx, 2, 60, timedelta(minutes=5)) or "")
    otc = OVER_THE_COUNTER
    assert daily_limit_reason(otc, 2, 60, timedelta(minutes=1)) is None
    assert daily_limit_reason(otc, 3, 90, None) is not None


def test_prescription_dict_errors_name_the_source() -> None:
    with pytest.raises(PrescriptionError, match=r"^my source: field written_by"):
        prescription_from_dict({}, "my source")


# --------------------------------------------------------------------------- docs and commands

DOCS = Path(__file__).resolve().parent.parent / "docs" / "prescription.md"


def test_the_annotated_example_in_the_docs_parses_and_fits_its_device() -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    rx = parse_prescription(example, "docs example")
    assert rx.programs == ("conventional", "mixed-frequency", "nhs-80hz")
    assert rx.allows_current_density_override
    assert rx.amplitude_cap(1) == 50
    assert rx.amplitude_cap(2) == 60
    assert rx.electrode_area_cm2(2) == pytest.approx(4.0)
    assert rx.device_profile == "generic-2ch"
    rx.validate_for(get_profile("generic-2ch"))


def test_cli_new_writes_a_template_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rx.toml"
    assert main(["prescription", "new", "-o", str(path)]) == 0
    first = path.read_text(encoding="utf-8")
    parse_prescription(first)
    path.write_text("edited", encoding="utf-8")
    assert main(["prescription", "new", "-o", str(path)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err
    assert "--force" in err
    assert path.read_text(encoding="utf-8") == "edited"
    assert main(["prescription", "new", "-o", str(path), "--force"]) == 0
    parse_prescription(path.read_text(encoding="utf-8"))


def test_cli_show_prints_plain_words_and_checks_the_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rx.toml"
    save_prescription(_rx(programs=("conventional", "mixed-frequency")), path)
    assert main(["prescription", "show", str(path), "--profile", "rehastim2"]) == 0
    out = capsys.readouterr().out
    assert "Prescription version 1 for patient-001" in out
    assert "at most 3 a day" in out
    assert "not offered on this device" in out  # mixed frequency on the RehaStim 2
    assert "Fits Hasomed RehaStim 2" in out
    assert "1: residual limb (stump), 5x5 cm pads (25.0 cm²); at most 40 mA" in out
    long = tmp_path / "long.toml"
    save_prescription(_rx(session_minutes=90, minutes_per_day=None), long)
    assert main(["prescription", "show", str(long), "--profile", "generic-2ch"]) == 2
    captured = capsys.readouterr()
    assert "Does NOT fit" in captured.out
    err = captured.err.strip()
    assert err.count("\n") == 0
    assert "session_minutes (90) is above the 60-minute maximum" in err
    assert main(["prescription", "show", str(path), "--toml"]) == 0
    assert parse_prescription(capsys.readouterr().out) == _rx(
        programs=("conventional", "mixed-frequency")
    )


def test_cli_show_of_a_malformed_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace('site = "residual_limb"', 'site = "head"'), encoding="utf-8")
    assert main(["prescription", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tens-control: error: prescription ")
    assert "field channels (entry 1).site: head is refused" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_import_stores_numbered_versions_and_show_current_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", str(tmp_path / "db.sqlite3")]
    assert main(["prescription", "show", "--current", *db]) == 0
    out = capsys.readouterr().out
    assert "No prescription on record: the over-the-counter defaults apply." in out
    assert "at most 3 a day" in out

    path = tmp_path / "rx.toml"
    save_prescription(_rx(patient=None), path)
    assert main(["prescription", "import", str(path), *db]) == 0
    assert "as prescription version 1" in capsys.readouterr().out
    assert (
        main(["prescription", "import", str(path), "--author", "Dr Z", "--reason", "v2", *db]) == 0
    )
    assert "as prescription version 2" in capsys.readouterr().out

    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        versions = store.prescriptions()
        assert [(p.version, p.author, p.reason) for p in versions] == [
            (1, "Dr A. Example", "phantom-limb pain"),
            (2, "Dr Z", "v2"),
        ]
        stored = parse_prescription(versions[1].toml)
    assert (stored.version, stored.written_by, stored.reason) == (2, "Dr Z", "v2")
    assert stored.patient == "patient-1"
    assert stored.channels == _rx().channels

    assert main(["prescription", "show", "--current", *db]) == 0
    out = capsys.readouterr().out
    assert "Prescription version 2 for patient-1" in out
    assert "written by Dr Z" in out


def test_cli_import_refuses_bad_files_other_patients_and_misfits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path = tmp_path / "db.sqlite3"
    db = ["--db", str(db_path)]
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace("session_minutes = 30", "session_minutes = 0"), encoding="utf-8")
    assert main(["prescription", "import", str(bad), *db]) == 2
    assert "field session_minutes" in capsys.readouterr().err
    assert not db_path.exists()  # nothing stored, not even a database

    mine = tmp_path / "mine.toml"
    save_prescription(_rx(patient="patient-7"), mine)
    assert main(["prescription", "import", str(mine), "--patient", "patient-8", *db]) == 2
    assert "is for patient 'patient-7', not 'patient-8'" in capsys.readouterr().err

    other = tmp_path / "other.toml"
    save_prescription(_rx(patient=None), other)
    assert main(["prescription", "import", str(other), *db]) == 0  # creates patient-1
    capsys.readouterr()
    assert main(["prescription", "import", str(mine), *db]) == 2
    assert "add --patient patient-7" in capsys.readouterr().err
    assert main(["prescription", "import", str(mine), "--patient", "patient-7", *db]) == 0
    capsys.readouterr()

    too_long = tmp_path / "long.toml"
    save_prescription(_rx(patient=None, session_minutes=90, minutes_per_day=None), too_long)
    args = ["prescription", "import", str(too_long), "--profile", "generic-2ch", *db]
    assert main([*args, "--patient", "patient-1"]) == 2
    assert "session_minutes (90)" in capsys.readouterr().err
    with Store.open(db_path, create=False, recover=False) as store:
        assert len(store.prescriptions("patient-1")) == 1
        assert len(store.prescriptions("patient-7")) == 1
