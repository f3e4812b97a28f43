"""The simulator's firmware model on its own, in virtual time: hard limits, watchdog, electrodes,
battery, read-back and the delivered record."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import ChannelSettings, DeviceEventKind, ErrorCode, Pattern
from drivers.clock import VirtualClock
from drivers.limits import get_profile
from simulator.firmware import (
    LEAD_OFF_IMPEDANCE_OHM,
    DeliveredRecord,
    Delivery,
    Firmware,
    OutputState,
    Refused,
)

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)


def make(seed: int = 1, **kwargs: float) -> tuple[Firmware, VirtualClock]:
    clock = VirtualClock()
    firmware = Firmware(get_profile("tens-sim"), clock, seed, **kwargs)  # type: ignore[arg-type]
    return firmware, clock


def state(firmware: Firmware) -> OutputState:
    """The output state (a function, so that type narrowing does not outlive a command)."""
    return firmware.state


def fed(firmware: Firmware, clock: VirtualClock, seconds: float) -> None:
    """Advance time while a host keeps the watchdog fed."""
    end = clock.now() + seconds
    while clock.now() < end:
        clock.run_until(min(end, clock.now() + 0.25))
        firmware.feed()


def running(seed: int = 1) -> tuple[Firmware, VirtualClock]:
    firmware, clock = make(seed)
    firmware.configure(1, CONVENTIONAL)
    firmware.configure(2, CONVENTIONAL)
    firmware.feed()
    firmware.start()
    return firmware, clock


# --------------------------------------------------------------------------- hard limits


@pytest.mark.parametrize(
    ("milliamps", "code"),
    [
        (100.5, ErrorCode.LIMIT),  # above the device's own 100 mA
        (1000.0, ErrorCode.LIMIT),
        (10.25, ErrorCode.LIMIT),  # not a multiple of the 0.5 mA step
        (-1.0, ErrorCode.PARAMETER),
        (math.nan, ErrorCode.PARAMETER),
        (math.inf, ErrorCode.PARAMETER),
    ],
)
def test_an_out_of_range_amplitude_is_refused_and_changes_nothing(
    milliamps: float, code: ErrorCode
) -> None:
    firmware, _ = running()
    firmware.set_amplitude(1, 10.0)
    with pytest.raises(Refused) as caught:
        firmware.set_amplitude(1, milliamps)
    assert caught.value.code is code
    assert firmware.delivered(1) == 10.0
    assert firmware.set_amplitude_of(1) == 10.0
    assert firmware.record.max_level(1) == 10.0


def test_the_maximum_itself_is_allowed() -> None:
    firmware, _ = running()
    firmware.set_amplitude(1, 100.0)
    assert firmware.delivered(1) == 100.0


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        (ChannelSettings(frequency_hz=151, pulse_width_us=200), ErrorCode.LIMIT),
        (ChannelSettings(frequency_hz=0.5, pulse_width_us=200), ErrorCode.LIMIT),
        (ChannelSettings(frequency_hz=80, pulse_width_us=401), ErrorCode.LIMIT),
        (ChannelSettings(frequency_hz=80, pulse_width_us=49), ErrorCode.LIMIT),
        (
            ChannelSettings(
                frequency_hz=100,
                pulse_width_us=200,
                pattern=Pattern.MIXED,
                secondary_hz=0.5,
                cycle_s=3,
            ),
            ErrorCode.LIMIT,
        ),
    ],
)
def test_settings_outside_the_hard_limits_are_refused(
    settings: ChannelSettings, code: ErrorCode
) -> None:
    firmware, _ = make()
    with pytest.raises(Refused) as caught:
        firmware.configure(1, settings)
    assert caught.value.code is code
    assert firmware.settings(1) is None


def test_channel_numbers_outside_the_device_are_parameter_errors() -> None:
    firmware, _ = running()
    for channel in (0, 3, 16):
        with pytest.raises(Refused) as caught:
            firmware.set_amplitude(channel, 1.0)
        assert caught.value.code is ErrorCode.PARAMETER


def test_amplitude_needs_running_and_a_configured_channel() -> None:
    firmware, _ = make()
    firmware.configure(1, CONVENTIONAL)
    with pytest.raises(Refused) as caught:
        firmware.set_amplitude(1, 1.0)
    assert caught.value.code is ErrorCode.STATE
    firmware.start()
    with pytest.raises(Refused) as caught:
        firmware.set_amplitude(2, 1.0)
    assert caught.value.code is ErrorCode.STATE
    assert len(firmware.record) == 0


def test_start_needs_a_configured_channel() -> None:
    firmware, _ = make()
    with pytest.raises(Refused) as caught:
        firmware.start()
    assert caught.value.code is ErrorCode.STATE
    assert state(firmware) is OutputState.IDLE


def test_start_stop_and_configure_always_leave_amplitudes_at_zero() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 20.0)
    clock.advance(0.1)
    firmware.start()  # START while running: every amplitude back to 0
    assert firmware.delivered(1) == 0.0
    firmware.set_amplitude(1, 5.0)
    clock.advance(0.1)
    firmware.configure(1, CONVENTIONAL)  # CFG while running: that channel to 0
    assert firmware.delivered(1) == 0.0
    assert state(firmware) is OutputState.RUNNING
    firmware.set_amplitude(2, 7.5)
    clock.advance(0.1)
    firmware.stop()
    firmware.stop()  # idempotent
    assert state(firmware) is OutputState.IDLE
    assert firmware.record.levels_at(clock.now()) == {1: 0.0, 2: 0.0}
    # a later START does not restore anything
    firmware.start()
    assert firmware.record.levels_at(clock.now()) == {1: 0.0, 2: 0.0}


# --------------------------------------------------------------------------- watchdog


def test_watchdog_zeroes_every_output_exactly_one_period_after_the_last_valid_frame() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 10.0)
    firmware.set_amplitude(2, 4.0)
    for _ in range(10):  # fed every 0.3 s: never trips
        clock.advance(0.3)
        firmware.feed()
    last_feed = clock.now()
    assert state(firmware) is OutputState.RUNNING
    clock.advance(5.0)
    assert state(firmware) is OutputState.IDLE
    trips = [e for e in firmware.events if e.kind is DeviceEventKind.WATCHDOG_TRIP]
    assert [e.time for e in trips] == [pytest.approx(last_feed + 1.0)]
    record = firmware.record
    assert record.all_zero_at(last_feed) == pytest.approx(last_feed + 1.0)
    assert record.max_any_between(last_feed + 1.0, clock.now()) == 0.0


def test_watchdog_period_comes_from_the_constructor_and_rearms_on_the_next_frame() -> None:
    firmware, clock = make(watchdog_ms=200)
    firmware.configure(1, CONVENTIONAL)
    firmware.feed()
    firmware.start()
    firmware.set_amplitude(1, 3.0)
    clock.advance(0.25)
    assert firmware.delivered(1) == 0.0
    assert [e.time for e in firmware.events] == [pytest.approx(0.2)]
    clock.advance(2.0)  # disarmed after a trip: no second event
    assert len(firmware.events) == 1
    firmware.feed()
    clock.advance(0.3)
    assert len(firmware.events) == 2


# --------------------------------------------------------------------------- electrodes


def test_lead_off_zeroes_that_channel_at_once_and_refuses_raising_it() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 12.0)
    firmware.set_amplitude(2, 6.0)
    fed(firmware, clock, 1.0)
    firmware.lead_off(1)
    assert firmware.delivered(1) == 0.0
    assert firmware.delivered(2) == 6.0
    assert state(firmware) is OutputState.RUNNING
    assert firmware.record.zero_at(1, 1.0) == 1.0
    event = firmware.events[-1]
    assert (event.kind, event.channel, event.time) == (DeviceEventKind.LEAD_OFF, 1, 1.0)
    assert firmware.impedance(1) == LEAD_OFF_IMPEDANCE_OHM
    with pytest.raises(Refused) as caught:
        firmware.set_amplitude(1, 1.0)
    assert caught.value.code is ErrorCode.STATE
    firmware.set_amplitude(1, 0.0)  # lowering is always allowed
    firmware.lead_on(1)
    assert firmware.delivered(1) == 0.0  # nothing comes back by itself
    firmware.set_amplitude(1, 1.0)
    assert firmware.delivered(1) == 1.0


def test_contact_drift_raises_impedance_until_lead_off_is_detected() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 8.0)
    before = firmware.impedance(1)
    firmware.degrade_contact(1, 10.0)
    fed(firmware, clock, 5.0)
    middle = firmware.impedance(1)
    assert middle > before + 3000
    assert firmware.delivered(1) == 8.0
    fed(firmware, clock, 5.1)
    assert firmware.is_lead_off(1)
    assert firmware.record.zero_at(1, 0.0) == pytest.approx(10.0)


def test_impedance_drifts_slowly_around_a_kilo_ohm_and_is_deterministic() -> None:
    firmware, clock = make(seed=7)
    twin, twin_clock = make(seed=7)
    other, _ = make(seed=8)
    values: list[float] = []
    for _ in range(360):
        clock.advance(10.0)
        twin_clock.advance(10.0)
        values.append(firmware.impedance(1))
        assert twin.impedance(1) == values[-1]
    assert all(800.0 <= v <= 1500.0 for v in values)
    assert max(values) - min(values) > 50.0  # it does drift
    assert other.impedance(1) != firmware.impedance(1)


# --------------------------------------------------------------------------- read-back


def test_read_back_is_within_two_percent_of_what_is_delivered_and_zero_when_off() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 40.0)
    readings = []
    for _ in range(500):
        fed(firmware, clock, 0.1)
        sample = firmware.read_back(1)
        assert sample.set_ma == 40.0
        assert sample.measured_ma is not None
        readings.append(sample.measured_ma)
        assert sample.impedance_ohm is not None
        assert 800 <= sample.impedance_ohm <= 1500
    assert all(39.2 <= r <= 40.8 for r in readings)
    assert len(set(readings)) > 50  # noisy, not constant
    assert firmware.read_back(2).measured_ma == 0.0
    firmware.lead_off(1)
    sample = firmware.read_back(1)
    assert sample.measured_ma == 0.0
    assert sample.impedance_ohm == LEAD_OFF_IMPEDANCE_OHM


def test_read_back_measures_what_is_delivered_not_what_is_set() -> None:
    firmware, _ = running()
    firmware.set_amplitude(1, 20.0)
    firmware.stick(1)
    firmware.set_amplitude(1, 5.0)  # stuck: ignores the decrease
    sample = firmware.read_back(1)
    assert sample.set_ma == 5.0
    assert sample.measured_ma is not None
    assert sample.measured_ma > 19.0
    assert firmware.delivered(1) == 20.0


def test_a_profile_without_read_back_reports_nothing() -> None:
    clock = VirtualClock()
    profile = get_profile("tens-sim").model_copy(
        update={"reports_current": False, "lead_off_detection": False}
    )
    firmware = Firmware(profile, clock, 1)
    sample = firmware.read_back(1)
    assert sample.measured_ma is None
    assert sample.impedance_ohm is None


# --------------------------------------------------------------------------- device faults


def test_stuck_output_follows_increases_but_only_the_output_switch_brings_it_to_zero() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 10.0)
    firmware.stick(1)
    firmware.set_amplitude(1, 2.0)
    assert firmware.delivered(1) == 10.0
    firmware.set_amplitude(1, 12.0)
    assert firmware.delivered(1) == 12.0
    firmware.set_amplitude(1, 0.0)
    assert firmware.delivered(1) == 12.0
    clock.advance(0.2)
    firmware.stop()
    assert firmware.delivered(1) == 0.0
    assert firmware.record.zero_at(1, 0.0) == pytest.approx(0.2)


def test_amplitude_jump_rises_above_the_set_value_until_the_next_change() -> None:
    firmware, clock = running()
    firmware.set_amplitude(2, 10.0)
    clock.advance(0.5)
    firmware.jump(2, 5.0)
    assert firmware.delivered(2) == 15.0
    assert firmware.set_amplitude_of(2) == 10.0
    firmware.set_amplitude(2, 9.5)
    assert firmware.delivered(2) == 9.5
    firmware.set_amplitude(2, 98.0)
    firmware.jump(2, 5.0)
    assert firmware.delivered(2) == 100.0  # the output stage's own maximum
    firmware.stop()
    firmware.jump(2, 5.0)  # nothing to jump while off
    assert firmware.delivered(2) == 0.0


@pytest.mark.parametrize("fault", ["reset", "internal", "estop"])
def test_reset_fault_and_emergency_switch_zero_everything_and_report(fault: str) -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 30.0)
    firmware.set_amplitude(2, 30.0)
    clock.advance(0.3)
    if fault == "reset":
        firmware.reset()
        kind = DeviceEventKind.DEVICE_RESET
    elif fault == "internal":
        firmware.internal_fault("OVERCURRENT")
        kind = DeviceEventKind.FAULT
    else:
        firmware.emergency_switch()
        kind = DeviceEventKind.EMERGENCY_SWITCH
    assert state(firmware) is OutputState.IDLE
    assert firmware.record.all_zero_at(0.3) == pytest.approx(0.3)
    assert firmware.events[-1].kind is kind
    assert (firmware.settings(1) is None) == (fault == "reset")


# --------------------------------------------------------------------------- battery


def test_battery_drains_and_reports_low_once_at_the_computed_time() -> None:
    firmware, clock = make(battery_pct=16.0, battery_drain_idle_pct_per_h=2.0)
    clock.advance(1800.0 - 1.0)  # 2 %/h: 1 % takes 30 minutes
    assert not firmware.events
    clock.advance(2.0)
    low = [e for e in firmware.events if e.kind is DeviceEventKind.BATTERY_LOW]
    assert [e.time for e in low] == [pytest.approx(1800.0)]
    assert low[0].detail == "15"
    clock.advance(3600.0)
    assert len([e for e in firmware.events if e.kind is DeviceEventKind.BATTERY_LOW]) == 1
    assert firmware.battery_pct() == pytest.approx(13.0, abs=0.01)


def test_an_empty_battery_switches_the_output_off_and_refuses_start() -> None:
    firmware, clock = make(battery_pct=3.5, battery_drain_running_pct_per_h=60.0)
    firmware.configure(1, CONVENTIONAL)
    firmware.start()
    firmware.set_amplitude(1, 10.0)
    firmware.watchdog_s = 1e9  # this test is about the battery
    clock.advance(60.0)
    assert state(firmware) is OutputState.IDLE
    faults = [e for e in firmware.events if e.kind is DeviceEventKind.FAULT]
    assert [e.detail for e in faults] == ["battery_empty"]
    assert firmware.record.zero_at(1, 0.0) == pytest.approx(30.0)
    with pytest.raises(Refused):
        firmware.start()


def test_power_off_leaves_no_timer_behind() -> None:
    firmware, clock = running()
    firmware.set_amplitude(1, 5.0)
    firmware.degrade_contact(2, 10.0)
    firmware.power_off()
    assert clock.pending() == 0
    assert firmware.delivered(1) == 0.0


# --------------------------------------------------------------------------- the record


def _record() -> DeliveredRecord:
    record = DeliveredRecord(2)
    for time, channel, ma in [
        (1.0, 1, 2.0),
        (2.0, 1, 4.0),
        (2.0, 2, 1.0),
        (3.0, 1, 9.0),
        (3.0, 1, 0.0),  # a zero-length spike at t=3
        (5.0, 1, 6.0),
        (6.0, 2, 0.0),
        (7.0, 1, 0.0),
    ]:
        record.append(Delivery(time, channel, ma))
    return record


def test_record_level_at_uses_the_last_change_at_or_before_the_time() -> None:
    record = _record()
    assert record.level_at(1, 0.5) == 0.0
    assert record.level_at(1, 1.0) == 2.0
    assert record.level_at(1, 2.5) == 4.0
    assert record.level_at(1, 3.0) == 0.0
    assert record.level_at(1, 5.5) == 6.0
    assert record.levels_at(2.0) == {1: 4.0, 2: 1.0}


def test_record_max_between_counts_zero_length_spikes() -> None:
    record = _record()
    assert record.max_between(1, 2.5, 2.9) == 4.0
    assert record.max_between(1, 2.5, 3.0) == 9.0
    assert record.max_between(1, 3.1, 4.9) == 0.0
    assert record.max_any_between(3.1, 5.5) == 6.0
    assert record.max_level() == 9.0
    assert record.max_level(2) == 1.0


def test_record_zero_times_and_steps() -> None:
    record = _record()
    assert record.zero_at(1, 2.0) == 3.0
    assert record.zero_at(1, 0.0) == 0.0
    assert record.zero_at(1, 5.0) == 7.0
    assert record.zero_at(2, 2.0) == 6.0
    assert record.all_zero_at(2.0) == 7.0
    assert record.all_zero_at(5.0) == 7.0
    assert record.steps(2) == [(2.0, 0.0, 1.0), (6.0, 1.0, 0.0)]
    never = DeliveredRecord(1)
    never.append(Delivery(1.0, 1, 3.0))
    assert never.zero_at(1, 2.0) is None


def test_record_round_trips_through_json_lines_and_skips_a_torn_line() -> None:
    record = _record()
    text = record.to_jsonl() + '{"t": 8.0, "ch'
    again = DeliveredRecord.from_jsonl(text, 2)
    assert list(again) == list(record)


def test_record_refuses_going_back_in_time() -> None:
    record = DeliveredRecord(1)
    record.append(Delivery(2.0, 1, 1.0))
    with pytest.raises(ValueError, match="time order"):
        record.append(Delivery(1.0, 1, 0.0))


# --------------------------------------------------------------------------- properties

_COMMANDS = st.one_of(
    st.tuples(st.just("amp"), st.integers(0, 3), st.one_of(st.floats(-5, 150), st.just(math.nan))),
    st.tuples(st.just("amp"), st.integers(1, 2), st.integers(0, 220).map(lambda n: n / 2)),
    st.tuples(st.just("cfg"), st.integers(0, 3), st.integers(1, 200).map(float)),
    st.tuples(
        st.sampled_from(["start", "stop", "leadoff", "leadon", "stuck", "jump", "reset"]),
        st.integers(1, 2),
        st.just(0.0),
    ),
    st.tuples(st.just("wait"), st.just(0), st.floats(0.0, 1.5)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_COMMANDS, max_size=40))
def test_random_command_sequences_respect_the_hard_limits_and_the_output_switch(
    commands: list[tuple[str, int, float]],
) -> None:
    firmware, clock = make(seed=2)
    maximum = firmware.limits.max_amplitude_ma
    off_since: float | None = 0.0  # output off from this time (None while running)
    for name, channel, value in commands:
        firmware.feed()
        try:
            if name == "amp":
                firmware.set_amplitude(channel, value)
            elif name == "cfg":
                firmware.configure(channel, ChannelSettings(frequency_hz=value, pulse_width_us=200))
            elif name == "start":
                firmware.start()
            elif name == "stop":
                firmware.stop()
            elif name == "leadoff":
                firmware.lead_off(channel)
            elif name == "leadon":
                firmware.lead_on(channel)
            elif name == "stuck":
                firmware.stick(channel)
            elif name == "jump":
                firmware.jump(channel, 5.0)
            elif name == "reset":
                firmware.reset()
            else:
                clock.advance(value)
        except Refused:
            pass
        running = state(firmware) is OutputState.RUNNING
        if running:
            off_since = None
        elif off_since is None:
            off_since = clock.now()
        for ch in (1, 2):
            assert 0.0 <= firmware.delivered(ch) <= maximum
            if not running or firmware.is_lead_off(ch) or firmware.settings(ch) is None:
                assert firmware.delivered(ch) == 0.0
    record = firmware.record
    assert record.max_level() <= maximum
    if off_since is not None:
        assert record.max_any_between(off_since, clock.now()) == 0.0
