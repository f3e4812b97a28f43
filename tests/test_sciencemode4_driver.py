"""ScienceMode4Driver against the emulated P24 (``sim://sciencemode4``), in virtual time, and
its program planning. Safety assertions are made on what the emulator DELIVERED (its record),
not on what the driver believes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

import simulator  # noqa: F401  (registers sim://)
from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    ErrorCode,
    IdentityError,
    Pattern,
    Report,
    Telemetry,
    Waveform,
)
from drivers.clock import VirtualClock
from drivers.engine import Configure, Identify, SetAmplitude, StartOutput
from drivers.limits import get_profile
from drivers.sciencemode4 import codec
from drivers.sciencemode4.codec import ChannelState, MlUpdate, Point, Result
from drivers.sciencemode4.driver import P24Status, ScienceMode4Driver, discover, p24_ports
from drivers.sciencemode4.engine import POLL_S, ScienceMode4Engine
from drivers.sciencemode4.frame import FrameDecoder, RawFrame
from drivers.sciencemode4.plan import (
    DriverRefusedError,
    UnsupportedSettingsError,
    build_update,
    charge_balance_error,
    check_duty,
    error_for_result,
    plan_channel,
)
from drivers.transport import PortInfo
from simulator.device import SimDevice
from simulator.faults import Direction, FaultKind
from simulator.protocol_sim import Serial as SimSerial
from simulator.sciencemode4 import ScienceMode4FrontEnd, device_id

HZ100 = ChannelSettings(frequency_hz=100, pulse_width_us=200)
URL = "sim://sciencemode4?seed=2"


@pytest.fixture(autouse=True)
def _clean_exit_guard() -> Iterator[None]:
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


class Reports:
    def __init__(self) -> None:
        self.items: list[Report] = []

    def __call__(self, report: Report) -> None:
        self.items.append(report)

    def events(self, kind: DeviceEventKind | None = None) -> list[DeviceEvent]:
        return [
            r for r in self.items if isinstance(r, DeviceEvent) and (kind is None or r.kind is kind)
        ]

    def telemetry(self, channel: int | None = None) -> list[Telemetry]:
        return [
            r
            for r in self.items
            if isinstance(r, Telemetry) and (channel is None or r.channel == channel)
        ]


class Wire:
    """Every packet the emulated device received from the host, with its arrival time."""

    def __init__(self, device: SimDevice) -> None:
        self.frames: list[tuple[float, RawFrame]] = []
        self._decoder = FrameDecoder()
        front_end = device.front_end
        assert isinstance(front_end, ScienceMode4FrontEnd)
        original = front_end.receive
        clock = device.clock

        def receive(data: bytes) -> None:
            for item in self._decoder.feed(data):
                if isinstance(item, RawFrame):
                    self.frames.append((clock.now(), item))
            original(data)

        front_end.receive = receive  # type: ignore[method-assign]

    def commands(self, since: float = -1.0) -> list[int]:
        return [f.command for t, f in self.frames if t > since]

    def updates(self) -> list[MlUpdate]:
        return [m for _, f in self.frames if isinstance(m := codec.from_frame(f), MlUpdate)]


def device_of(driver: ScienceMode4Driver) -> SimDevice:
    port = driver.port
    assert isinstance(port, SimSerial)
    return port.device


def running(
    clock: VirtualClock, url: str = URL, level: float = 20.0
) -> tuple[ScienceMode4Driver, SimDevice, Reports]:
    driver = ScienceMode4Driver.open(url, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    driver.configure(1, HZ100)
    driver.configure(2, ChannelSettings(frequency_hz=50, pulse_width_us=300))
    driver.start()
    driver.set_amplitude(1, level)
    driver.set_amplitude(2, 4.0)
    device = device_of(driver)
    assert device.firmware.delivered(1) == level
    return driver, device, reports


# --------------------------------------------------------------------------- identify


def test_open_identifies_the_p24_by_its_device_id_and_version(clock: VirtualClock) -> None:
    with ScienceMode4Driver.open(URL, clock) as driver:
        info = driver.info
        assert (info.protocol, info.protocol_version, info.model) == (
            "sciencemode4",
            "4.0.0",
            "P24",
        )
        assert info.serial_number == device_id(2) == driver.device_id
        assert info.firmware == "1.0.0"
        assert info.channels == 8
        assert (info.reports_current, info.reports_impedance) == (False, False)
        assert info.watchdog_ms == 2000
        assert info.is_simulator is True
        assert info.limits is not None
        assert info.limits.max_amplitude_ma == 130.0
        assert driver.battery_pct == 100
        assert driver in exit_guard.registered()
        status = driver.status()
        assert status == P24Status(codec.StimStatus.UNINITIALIZED, codec.HighVoltage.OFF, 100, 4200)
    assert driver not in exit_guard.registered()


def test_s17_the_2_s_keep_alive_is_an_exception_of_this_driver_only(clock: VirtualClock) -> None:
    class Strict(ScienceMode4Driver):
        max_device_watchdog_ms = 1500

    with pytest.raises(IdentityError, match="2000 ms watchdog"):
        Strict.open(URL, clock)
    with ScienceMode4Driver.open(URL, clock) as driver:
        assert driver.info.watchdog_ms == 2000


def test_identify_asks_status_id_version_battery_then_stops(clock: VirtualClock) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    wire = Wire(device_of(driver))  # attach after: reconnect replays everything
    driver.reconnect()
    got = wire.commands()
    assert got[:5] == [62, 52, 68, 54, 34]  # Ml_Stop urgent: twice at once
    assert got[5] == 34
    driver.close()


def test_a_device_left_stimulating_by_another_host_is_stopped_at_identify(
    clock: VirtualClock,
) -> None:
    driver, device, _ = running(clock)
    driver._teardown("the other host went away")  # no stop: the device keeps stimulating
    assert device.firmware.delivered(1) == 20.0
    port = driver.port
    port.open()
    again = ScienceMode4Driver.connect(port, clock, url=URL)
    assert device.firmware.delivered(1) == 0.0
    again.close()


def test_a_device_that_is_not_a_p24_is_refused_with_one_sentence(clock: VirtualClock) -> None:
    with pytest.raises(IdentityError, match="ScienceMode4 answer"):
        ScienceMode4Driver.open("sim://sciencemode4?seed=1&faults=mute@0", clock)


# --------------------------------------------------------------------------- stimulation


def test_start_enters_the_mid_level_and_enables_every_channel_at_zero(clock: VirtualClock) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    wire = Wire(device_of(driver))
    driver.configure(1, HZ100)
    driver.configure(3, ChannelSettings(frequency_hz=2.5, pulse_width_us=400))
    assert wire.commands() == []  # configuring while idle sends nothing
    driver.start()
    assert wire.commands()[:2] == [30, 32]
    (update,) = wire.updates()
    one, three = update.channels[0], update.channels[2]
    assert one is not None
    assert three is not None
    assert update.enabled == (1, 3)
    assert (one.period_ms, one.ramp, one.points) == (10.0, 0, (Point(200, 0.0), Point(200, -0.0)))
    assert three.period_ms == 400.0
    assert len(device_of(driver).record) == 0
    driver.close()


def test_each_amplitude_is_one_absolute_update_and_the_record_follows(
    clock: VirtualClock,
) -> None:
    driver, device, _ = running(clock)
    wire = Wire(device)
    driver.set_amplitude(1, 20.5)
    (update,) = wire.updates()
    one, two = update.channels[0], update.channels[1]
    assert one is not None
    assert two is not None
    assert one.points == (Point(200, 20.5), Point(200, -20.5))
    assert two.points == (Point(300, 4.0), Point(300, -4.0))
    assert charge_balance_error(one.points) == 0
    assert device.firmware.delivered(1) == 20.5
    assert driver.amplitudes() == {1: 20.5, 2: 4.0}
    driver.close()


def test_a_decrease_goes_out_twice_at_once_and_an_increase_once(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    wire = Wire(device)
    now = clock.now()
    driver.set_amplitude(1, 10.0)
    assert wire.commands(since=now) == [32, 32]
    now = clock.now()
    driver.set_amplitude(1, 11.0)
    assert wire.commands(since=now) == [32]
    driver.close()


@pytest.mark.parametrize("value", [10.25, 130.5, -1.0, math.nan, math.inf])
def test_amplitudes_the_p24_cannot_take_are_refused_before_anything_is_written(
    clock: VirtualClock, value: float
) -> None:
    driver, device, _ = running(clock)
    written = driver.bytes_written
    with pytest.raises(DriverRefusedError) as caught:
        driver.set_amplitude(1, value)
    assert caught.value.code in (ErrorCode.LIMIT, ErrorCode.PARAMETER)
    assert driver.bytes_written == written
    assert device.firmware.delivered(1) == 20.0
    driver.close()


def test_amplitude_is_refused_when_not_stimulating_or_not_configured(clock: VirtualClock) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    driver.configure(1, HZ100)
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 2.0)
    driver.start()
    with pytest.raises(DriverRefusedError, match="not configured"):
        driver.set_amplitude(2, 2.0)
    driver.close()


def test_reconfiguring_while_stimulating_zeroes_that_channel_only(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    driver.configure(2, ChannelSettings(frequency_hz=80, pulse_width_us=150))
    assert (device.firmware.delivered(1), device.firmware.delivered(2)) == (20.0, 0.0)
    settings = device.firmware.settings(2)
    assert settings is not None
    assert (settings.frequency_hz, settings.pulse_width_us) == (80.0, 150)
    driver.close()


def test_stop_zeroes_every_channel_within_a_few_ms_and_is_idempotent(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    at = clock.now()
    driver.stop()
    assert device.record.all_zero_at(at) == pytest.approx(at + 0.001)
    driver.stop()
    assert device.record.max_any_between(at + 0.001, clock.now()) == 0.0
    driver.close()


def test_the_keep_alive_starts_one_poll_after_the_start(clock: VirtualClock) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    wire = Wire(device_of(driver))
    driver.configure(1, HZ100)
    driver.start()
    started = clock.now()
    clock.advance(0.3)
    polls = [t for t, f in wire.frames if f.command == 36]
    assert polls[0] - started <= POLL_S + 0.002
    driver.close()


def test_the_keep_alive_runs_every_50_ms_and_the_device_never_trips(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    before = driver.polls_sent
    clock.advance(10.0)
    polls = driver.polls_sent - before
    assert 10.0 / POLL_S <= polls <= 10.0 / POLL_S + 12  # plus the battery, once a second
    assert device.firmware.delivered(1) == 20.0
    assert not device.firmware.events
    tel = reports.telemetry(1)[-1]
    assert (tel.set_ma, tel.measured_ma, tel.impedance_ohm) == (20.0, None, None)
    assert (tel.lead_off, tel.output_on) == (None, True)
    driver.close()


def test_idle_the_host_asks_the_stim_status_twice_a_second(clock: VirtualClock) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    wire = Wire(device_of(driver))
    clock.advance(5.0)
    got = wire.commands()
    assert got.count(62) == 10
    assert got.count(54) == 5
    assert set(got) == {62, 54}
    driver.close()


# --------------------------------------------------------------------------- device reports


def test_an_electrode_off_is_a_lead_off_of_that_channel_within_one_poll(
    clock: VirtualClock,
) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.LEAD_OFF, channel=1)
    clock.advance(0.2)
    (event,) = reports.events(DeviceEventKind.LEAD_OFF)
    assert event.channel == 1
    assert event.time - at <= POLL_S + 0.005
    # only that channel stopped (stop_all_channels_on_error off: the governor stops the rest)
    assert (device.firmware.delivered(1), device.firmware.delivered(2)) == (0.0, 4.0)
    assert reports.telemetry(1)[-1].lead_off is True  # repeated in every answer (S15)
    assert reports.telemetry(1)[-1].output_on is False
    assert reports.telemetry(2)[-1].output_on is True
    driver.close()


def test_the_mid_level_is_entered_with_stop_all_channels_on_error_off(
    clock: VirtualClock,
) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    wire = Wire(device_of(driver))
    driver.configure(1, HZ100)
    driver.start()
    inits = [codec.from_frame(f) for _, f in wire.frames if f.command == 30]
    assert inits == [codec.MlInit(stop_all_channels_on_error=False)]
    driver.close()


def test_below_15_ma_the_p24_reports_no_lead_off(clock: VirtualClock) -> None:
    driver, device, reports = running(clock, level=12.0)
    device.inject(FaultKind.LEAD_OFF, channel=1)
    clock.advance(1.0)
    assert reports.events(DeviceEventKind.LEAD_OFF) == []
    device.inject(FaultKind.LEAD_ON, channel=1)
    clock.advance(0.05)
    assert device.firmware.delivered(1) == 12.0  # the documented residual risk
    driver.close()


def _engine_reply(engine: ScienceMode4Engine, reply: codec.Reply, command: int) -> list[object]:
    """Answer the newest command ``command`` in flight with ``reply`` (a crafted device)."""
    keys = [k for k in engine._flight if isinstance(k, tuple) and k[0] == command + 1]
    pkt = int(keys[-1][1])
    out = engine.feed(codec.encode(pkt, reply), engine.now + 0.001)
    return list(out.events)


def _running_engine() -> ScienceMode4Engine:
    engine = ScienceMode4Engine(get_profile("p24"))
    engine.open(0.0)
    engine.submit(Identify(), 0.0)
    answers: list[codec.Reply] = [
        codec.GetStimStatusAck(0, 0, 1),
        codec.GetDeviceIdAck(0, "P24TEST001"),
        codec.GetExtendedVersionAck(0, (2, 1, 0), (4, 0, 0)),
        codec.GetBatteryStatusAck(0, 90, 4000),
    ]
    for reply in answers:
        _engine_reply(engine, reply, int(reply.command) - 1)
    assert engine.state.identified
    engine.submit(Configure(1, HZ100), engine.now)
    engine.submit(Configure(2, HZ100), engine.now)
    engine.submit(StartOutput(), engine.now)
    _engine_reply(engine, codec.Ack(31), 30)
    _engine_reply(engine, codec.Ack(33), 32)
    assert engine.state.running
    engine.submit(SetAmplitude(1, 18.0), engine.now)
    _engine_reply(engine, codec.Ack(33), 32)
    engine.feed(b"", engine.now + POLL_S)
    return engine


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        (ChannelState.ELECTRODE_ERROR, DeviceEventKind.LEAD_OFF),
        (ChannelState.LOW_CURRENT_ERROR, DeviceEventKind.LEAD_OFF),
        (ChannelState.TIMEOUT_ERROR, DeviceEventKind.FAULT),
    ],
)
def test_each_channel_state_maps_onto_a_governor_rule(
    state: ChannelState, kind: DeviceEventKind
) -> None:
    engine = _running_engine()
    states = (ChannelState.OK, state) + (ChannelState.OK,) * 6
    reply = codec.MlGetCurrentDataAck(0, 4, (True, False) + (False,) * 6, states)
    events = _engine_reply(engine, reply, 36)
    reported = [e for e in events if isinstance(e, DeviceEvent)]
    assert [(e.kind, e.channel) for e in reported] == [(kind, 2)]
    # the same state in the next answer is not reported again
    engine.feed(b"", engine.now + POLL_S)
    if engine.state.running:
        again = _engine_reply(engine, reply, 36)
        assert not [e for e in again if isinstance(e, DeviceEvent)]


def test_a_channel_stopped_without_a_reason_is_an_output_off_in_telemetry() -> None:
    engine = _running_engine()
    reply = codec.MlGetCurrentDataAck(0, 4, (False,) * 8, (ChannelState.OK,) * 8)
    events = _engine_reply(engine, reply, 36)
    tel = [e for e in events if isinstance(e, Telemetry)]
    assert [(t.channel, t.set_ma, t.output_on) for t in tel] == [(1, 18.0, False), (2, 0.0, False)]


def test_not_initialised_while_stimulating_is_a_reset_and_nothing_resumes() -> None:
    engine = _running_engine()
    events = _engine_reply(engine, codec.MlGetCurrentDataAck(Result.NOT_INITIALIZED_ERROR), 36)
    assert [e.kind for e in events if isinstance(e, DeviceEvent)] == [DeviceEventKind.DEVICE_RESET]
    assert not engine.state.running
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        engine.submit(SetAmplitude(1, 1.0), engine.now)


def test_a_device_reset_is_reported_within_one_poll(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.RESET)
    clock.advance(0.2)
    (event,) = reports.events(DeviceEventKind.DEVICE_RESET)
    assert event.time - at <= POLL_S + 0.005
    with pytest.raises(DriverRefusedError):
        driver.set_amplitude(1, 1.0)
    driver.close()


def test_an_update_refused_as_not_initialised_reports_the_reset_first(
    clock: VirtualClock,
) -> None:
    driver, device, reports = running(clock)
    device.inject(FaultKind.RESET)
    pending = driver.request_amplitude(1, 21.0)  # before the next keep-alive saw it
    clock.advance(0.01)
    assert pending.error is not None
    assert "not initialised" in str(pending.error)
    (event,) = reports.events(DeviceEventKind.DEVICE_RESET)
    assert event.time <= clock.now()
    assert device.firmware.delivered(1) == 0.0
    driver.close()


def test_an_internal_fault_is_a_device_fault(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    device.inject(FaultKind.INTERNAL)
    clock.advance(0.01)
    (event,) = reports.events(DeviceEventKind.FAULT)
    assert "general error" in event.detail
    assert device.firmware.delivered(1) == 0.0
    driver.close()


def test_the_battery_running_low_is_reported_once(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    device.inject(FaultKind.BATTERY_LOW)
    clock.advance(3.0)
    (event,) = reports.events(DeviceEventKind.BATTERY_LOW)
    assert "15 %" in event.detail
    assert driver.battery_pct == 15
    driver.close()


def test_a_requested_reset_is_reported_and_the_output_is_off(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    driver.reset()
    assert device.firmware.delivered(1) == 0.0
    assert [e.kind for e in reports.events()] == [DeviceEventKind.DEVICE_RESET]
    driver.close()


# --------------------------------------------------------------------------- the link


@pytest.mark.parametrize("direction", [Direction.DEVICE, Direction.HOST])
def test_one_lost_or_damaged_frame_is_recovered_without_ending_the_link(
    clock: VirtualClock, direction: Direction
) -> None:
    for kind in (FaultKind.DROP, FaultKind.GARBLE):
        driver, device, reports = running(clock)
        device.inject(kind, direction=direction)
        driver.set_amplitude(1, 22.0)
        clock.advance(2.0)
        assert driver.connected
        assert device.firmware.delivered(1) == 22.0
        assert reports.events(DeviceEventKind.COMMS_LOST) == []
        driver.close()


def test_an_update_whose_answer_is_lost_is_done_by_the_answer_to_a_newer_one(
    clock: VirtualClock,
) -> None:
    driver, device, reports = running(clock)
    device.inject(FaultKind.DROP, direction=Direction.HOST)  # the next answer is lost
    older = driver.request_amplitude(1, 21.0)
    newer = driver.request_amplitude(1, 22.0)
    clock.advance(2.0)
    assert older.done()
    assert older.error is None
    assert newer.error is None
    assert device.firmware.delivered(1) == 22.0
    assert driver.amplitudes()[1] == 22.0
    assert driver.connected
    assert reports.events(DeviceEventKind.COMMS_LOST) == []
    driver.close()


def test_a_silent_device_is_comms_lost_within_a_second_and_the_stop_reaches_it(
    clock: VirtualClock,
) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.MUTE)
    clock.advance(1.5)
    (lost,) = reports.events(DeviceEventKind.COMMS_LOST)
    assert lost.time - at <= 1.0 + POLL_S + 0.005
    zero = device.record.all_zero_at(at)
    assert zero is not None
    assert zero <= lost.time + 0.002
    with pytest.raises(CommsLostError):
        driver.set_amplitude(1, 1.0)
    driver.close()


def test_unplugged_the_p24_stops_by_itself_after_2_s(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.DISCONNECT)
    clock.advance(3.0)
    assert reports.events(DeviceEventKind.COMMS_LOST)
    zero = device.record.all_zero_at(at)
    assert zero is not None
    assert 2.0 - POLL_S <= zero - at <= 2.0 + 1e-6  # its 2 s since the last keep-alive
    driver.close()


def test_reconnect_after_unplugging_never_resumes(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    device.inject(FaultKind.DISCONNECT, value=0.5)
    clock.advance(3.0)
    driver.reconnect()
    clock.advance(1.0)
    assert device.firmware.delivered(1) == 0.0
    with pytest.raises(DriverRefusedError):
        driver.set_amplitude(1, 1.0)
    driver.configure(1, HZ100)
    driver.start()
    assert device.record.level_at(1, clock.now()) == 0.0
    driver.close()


# --------------------------------------------------------------------------- programs


def test_plan_rounds_the_period_up_to_the_half_millisecond_grid() -> None:
    pattern = plan_channel(1, ChannelSettings(frequency_hz=150, pulse_width_us=100))
    assert pattern.period_ms == 7.0  # 6.67 ms requested: never faster
    assert pattern.delivered_hz <= pattern.requested_hz
    assert pattern.shape == ((100, 1), (100, -1))


def test_plan_maps_a_burst_onto_pulses_and_gaps_of_at_most_4095_us() -> None:
    burst = ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        pattern=Pattern.BURST,
        secondary_hz=2,
        pulses_per_burst=3,
    )
    pattern = plan_channel(1, burst)
    assert pattern.period_ms == 500.0
    gap = [(3200, 0), (3200, 0), (3200, 0)]  # 10 ms - 2 x 200 µs
    assert list(pattern.shape) == [
        (200, 1),
        (200, -1),
        *gap,
        (200, 1),
        (200, -1),
        *gap,
        (200, 1),
        (200, -1),
    ]
    points = pattern.points(10.0)
    assert charge_balance_error(points) == 0
    assert sum(p.time_us for p in points) == 2 * 10_000 + 400


@pytest.mark.parametrize(
    ("channel", "settings", "why"),
    [
        (9, HZ100, "channels 1-8"),
        (1, ChannelSettings(frequency_hz=100, pulse_width_us=4096), "4095"),
        (
            1,
            ChannelSettings(
                frequency_hz=100, pulse_width_us=200, waveform=Waveform.ASYMMETRIC_BIPHASIC
            ),
            "symmetric",
        ),
        (
            1,
            ChannelSettings(
                frequency_hz=100,
                pulse_width_us=200,
                pattern=Pattern.MODULATED,
                secondary_hz=50,
                cycle_s=2,
            ),
            "modulated",
        ),
        (
            1,
            ChannelSettings(
                frequency_hz=100,
                pulse_width_us=200,
                pattern=Pattern.BURST,
                secondary_hz=2,
                pulses_per_burst=7,
            ),
            "16",
        ),
        (1, ChannelSettings(frequency_hz=0.05, pulse_width_us=200), "repeats"),
    ],
)
def test_plan_refuses_what_the_p24_cannot_do_with_a_reason(
    channel: int, settings: ChannelSettings, why: str
) -> None:
    with pytest.raises(UnsupportedSettingsError, match=why):
        plan_channel(channel, settings)


def test_the_duty_limit_of_all_channels_together_is_checked_before_sending() -> None:
    wide = ChannelSettings(frequency_hz=100, pulse_width_us=2000)
    patterns = [plan_channel(ch, wide) for ch in (1, 2)]
    check_duty(patterns[:1])  # 40 % of the time
    with pytest.raises(UnsupportedSettingsError, match="of the time"):
        check_duty([*patterns, plan_channel(3, wide)])


def test_configure_refusal_writes_nothing(clock: VirtualClock) -> None:
    driver = ScienceMode4Driver.open(URL, clock)
    written = driver.bytes_written
    with pytest.raises(UnsupportedSettingsError):
        driver.configure(1, ChannelSettings(frequency_hz=100, pulse_width_us=5000))
    assert driver.bytes_written == written
    driver.close()


def test_an_unbalanced_pattern_is_never_sent() -> None:
    pattern = plan_channel(1, HZ100)
    unbalanced = type(pattern)(1, 10.0, ((200, 1), (100, -1)), 100.0, 100.0)
    assert charge_balance_error(unbalanced.points(10)) == 1000.0
    with pytest.raises(DriverRefusedError, match="charge balanced"):
        build_update({1: unbalanced}, {1: 10.0})


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (Result.TRANSFER_ERROR, ErrorCode.CRC),
        (Result.PARAMETER_ERROR, ErrorCode.PARAMETER),
        (Result.PROTOCOL_ERROR, ErrorCode.VERSION),
        (Result.NOT_INITIALIZED_ERROR, ErrorCode.STATE),
        (Result.BUSY, ErrorCode.BUSY),
        (Result.INVALID_CMD_ERROR, ErrorCode.UNKNOWN_COMMAND),
        (Result.HV_ERROR, ErrorCode.STATE),
    ],
)
def test_every_result_code_maps_to_a_typed_error(result: int, code: ErrorCode) -> None:
    error = error_for_result(result, "Ml_Update")
    assert error.code is code
    assert f"P24 answered {result}" in str(error)


# --------------------------------------------------------------------------- discovery


def test_discovery_lists_only_the_p24_usb_id_and_confirms_it_by_its_device_id(
    clock: VirtualClock,
) -> None:
    p24 = PortInfo(URL, "STM32 Virtual ComPort", 0x0483, 0x5740, "1234", "STMicroelectronics")
    other = PortInfo("sim://tsp", "another STM32 board", 0x0483, 0x1234, None, None)
    ftdi = PortInfo("sim://sciencemode2", "FT232R", 0x0403, 0x6001, None, None)
    assert p24_ports([p24, other, ftdi]) == [p24]
    (found,) = discover(clock, ports=[p24, other, ftdi])
    assert found.port is p24
    assert found.info.serial_number == device_id(2)
    silent = PortInfo("sim://sciencemode4?faults=mute@0", "STM32", 0x0483, 0x5740, None, None)
    assert discover(clock, ports=[silent]) == []


def test_usb_id_of_the_profile_is_the_p24s() -> None:
    profile = get_profile("p24")
    assert [(u.vid, u.pid) for u in profile.usb] == [(0x0483, 0x5740)]
    assert profile.protocol == "sciencemode4"
