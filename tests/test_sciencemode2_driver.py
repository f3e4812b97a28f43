"""ScienceMode2Driver against the simulated RehaStim 2 (``sim://sciencemode2``), virtual time.

Safety assertions are made on what the simulator DELIVERED (its record), not on what the
driver believes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import serial

import simulator  # noqa: F401  (registers sim://)
from drivers import exit_guard
from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceRejectedError,
    ErrorCode,
    IdentityError,
    Pattern,
    Report,
    Telemetry,
    Waveform,
)
from drivers.clock import VirtualClock
from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import Command, Result, StimulationMode
from drivers.sciencemode2.driver import (
    KEEPALIVE_S,
    DriverRefusedError,
    ScienceMode2Driver,
    UnsupportedSettingsError,
    discover,
    error_for_result,
    plan_channel_list,
)
from drivers.sciencemode2.frame import FrameDecoder, RawFrame
from drivers.transport import PortInfo
from simulator import sciencemode2 as sm2_sim
from simulator.device import SimDevice
from simulator.faults import FaultKind
from simulator.protocol_sim import Serial as SimSerial

HZ100 = ChannelSettings(frequency_hz=100, pulse_width_us=200)
URL = "sim://sciencemode2?seed=1"


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

    def telemetry(self) -> list[Telemetry]:
        return [r for r in self.items if isinstance(r, Telemetry)]


class Wire:
    """Every frame the simulated device received from the host, with its arrival time."""

    def __init__(self, device: SimDevice) -> None:
        self.frames: list[tuple[float, RawFrame]] = []
        self._decoder = FrameDecoder()
        front_end = device.front_end
        assert isinstance(front_end, sm2_sim.ScienceMode2FrontEnd)
        original = front_end.receive
        clock = device.clock

        def receive(data: bytes) -> None:
            for item in self._decoder.feed(data):
                if isinstance(item, RawFrame):
                    self.frames.append((clock.now(), item))
            original(data)

        front_end.receive = receive  # type: ignore[method-assign]

    def commands(self) -> list[int]:
        return [f.command for _, f in self.frames]


def device_of(driver: ScienceMode2Driver) -> SimDevice:
    port = driver.port
    assert isinstance(port, SimSerial)
    return port.device


def front_end_of(device: SimDevice) -> sm2_sim.ScienceMode2FrontEnd:
    front_end = device.front_end
    assert isinstance(front_end, sm2_sim.ScienceMode2FrontEnd)
    return front_end


def running(
    clock: VirtualClock, url: str = URL, up_to: int = 6
) -> tuple[ScienceMode2Driver, SimDevice, Reports]:
    driver = ScienceMode2Driver.open(url, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    driver.configure(1, HZ100)
    driver.start()
    for ma in range(1, up_to + 1):
        driver.set_amplitude(1, ma)
        clock.advance(0.5)
    device = device_of(driver)
    assert device.firmware.delivered(1) == float(up_to)
    return driver, device, reports


# --------------------------------------------------------------------------- identify


def test_open_identifies_without_inventing_readback(clock: VirtualClock) -> None:
    with ScienceMode2Driver.open(URL, clock) as driver:
        info = driver.info
        assert info.protocol == "sciencemode2"
        assert info.protocol_version == str(codec.PROTOCOL_VERSION)
        assert info.model == "RehaStim 2"
        assert info.channels == 8
        assert info.reports_current is False
        assert info.reports_impedance is False
        assert info.is_simulator is True
        assert info.limits is not None
        assert info.limits.max_amplitude_ma == 130.0
        assert isinstance(driver, ScienceMode2Driver)
        assert driver.stimulation_mode is StimulationMode.START
        assert driver in exit_guard.registered()
    assert driver not in exit_guard.registered()


def test_nothing_is_sent_before_the_device_init_and_init_is_answered_first(
    clock: VirtualClock,
) -> None:
    port = serial.serial_for_url(URL, do_not_open=True, timeout=0)
    assert isinstance(port, SimSerial)
    port.use_clock(clock)
    port.open()
    wire = Wire(port.device)
    driver = ScienceMode2Driver(port, clock, url=URL)
    assert wire.frames == []
    driver.identify()
    assert wire.commands()[:2] == [Command.INIT_ACK, Command.GET_STIMULATION_MODE]
    assert wire.frames[0][1].pkt == 1  # the packet number of the device's first Init
    driver.close()


def test_identify_gives_one_clear_error_when_no_init_comes(clock: VirtualClock) -> None:
    # a TSP unit on the port says nothing unasked: no Init comes
    with pytest.raises(IdentityError, match="sent no ScienceMode2 Init"):
        ScienceMode2Driver.open("sim://tsp", clock)
    assert exit_guard.registered() == []
    # Init, then silence
    with pytest.raises(IdentityError, match="did not answer GetStimulationMode"):
        ScienceMode2Driver.open("sim://sciencemode2?faults=mute@0.0015", clock)
    assert exit_guard.registered() == []


def test_a_device_still_linked_to_a_dead_host_is_found_after_its_watchdog(
    clock: VirtualClock,
) -> None:
    first = ScienceMode2Driver.open(URL, clock)
    device = device_of(first)
    port = first.port
    # the first host dies without a word: no stop, no keep-alive, port left open
    first._teardown("host died")
    port.open()
    second = ScienceMode2Driver.connect(port, clock, url=URL)
    assert second.info.model == "RehaStim 2"
    assert device.record.max_level() == 0.0
    second.close()


# --------------------------------------------------------------------------- keep-alive


def test_keepalive_runs_on_the_clock_and_the_device_never_trips(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    wire = Wire(device)
    inits = front_end_of(device).inits_sent
    clock.advance(60.0)  # the caller does nothing for a minute
    times = [t for t, _ in wire.frames]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 0.4 + 1e-9
    assert max(gaps) <= KEEPALIVE_S + 1e-9
    assert Command.WATCHDOG in wire.commands()
    assert front_end_of(device).inits_sent == inits
    assert device.record.level_at(1, clock.now()) == 6.0
    assert reports.events() == []
    driver.close()


def test_telemetry_reports_set_current_and_none_for_what_the_device_cannot_measure(
    clock: VirtualClock,
) -> None:
    driver, _, reports = running(clock, up_to=4)
    clock.advance(2.0)
    samples = reports.telemetry()
    assert samples
    last = samples[-1]
    assert (last.channel, last.set_ma, last.measured_ma, last.impedance_ohm) == (1, 4.0, None, None)
    driver.close()


# --------------------------------------------------------------------------- amplitude


def test_each_amplitude_is_one_update_and_the_record_follows(clock: VirtualClock) -> None:
    driver, device, _ = running(clock, up_to=3)
    steps = device.record.steps(1)
    assert [(before, after) for _, before, after in steps] == [(0, 1), (1, 2), (2, 3)]
    driver.set_amplitude(1, 0)
    assert device.firmware.delivered(1) == 0.0
    assert driver.amplitudes() == {1: 0}
    driver.close()


@pytest.mark.parametrize(
    ("milliamps", "code"),
    [(131.0, ErrorCode.LIMIT), (2.5, ErrorCode.LIMIT), (-1.0, ErrorCode.PARAMETER)],
)
def test_amplitudes_the_device_cannot_take_are_refused_before_anything_is_written(
    clock: VirtualClock, milliamps: float, code: ErrorCode
) -> None:
    driver, device, _ = running(clock, up_to=2)
    before = device.frames_in
    with pytest.raises(DriverRefusedError) as caught:
        driver.request_amplitude(1, milliamps)
    assert caught.value.code is code
    assert device.frames_in == before
    assert device.firmware.delivered(1) == 2.0
    driver.close()


def test_amplitude_is_refused_when_not_stimulating_or_not_configured(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    driver.configure(1, HZ100)
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 1)
    driver.start()
    with pytest.raises(DriverRefusedError, match="channel 2 is not configured"):
        driver.set_amplitude(2, 1)
    assert device_of(driver).record.max_level() == 0.0
    driver.close()


# --------------------------------------------------------------------------- programs


def test_plan_maps_frequency_onto_the_main_interval() -> None:
    plan = plan_channel_list({1: HZ100})
    assert plan.init.main_interval_code == 18  # (10 ms - 1) / 0.5
    assert plan.init.active_channels == (1,)
    assert plan.init.low_frequency_mask == 0
    assert plan.channels[0].delivered_hz == 100.0
    # no doublets: the inter-pulse interval is the firmware's 8 ms minimum, code (8 - 1.5) / 0.5
    assert plan_channel_list({1: ChannelSettings(frequency_hz=125, pulse_width_us=20)}).init == (
        codec.InitChannelListMode(0, 1, 0, 13, 14, 0)
    )
    slow = plan_channel_list({3: ChannelSettings(frequency_hz=1, pulse_width_us=500)})
    assert slow.init.main_interval_code == 1998
    assert slow.init.active_mask == 0b100


def test_plan_never_delivers_a_faster_rate_than_requested() -> None:
    for hz in (1.0, 2.0, 3.0, 7.0, 33.0, 80.0, 90.0, 110.0, 120.0, 125.0):
        plan = plan_channel_list({1: ChannelSettings(frequency_hz=hz, pulse_width_us=100)})
        delivered = plan.channels[0].delivered_hz
        assert delivered <= hz + 1e-9
        assert delivered >= hz * 0.95


def test_plan_uses_the_low_frequency_factor_for_a_slower_channel() -> None:
    plan = plan_channel_list(
        {
            1: ChannelSettings(frequency_hz=80, pulse_width_us=200),
            2: ChannelSettings(frequency_hz=20, pulse_width_us=200),
        }
    )
    assert plan.init.low_frequency_factor == 3
    assert plan.init.low_frequency_mask == 0b10
    assert [c.delivered_hz for c in plan.channels] == [80.0, 20.0]


def test_plan_maps_short_bursts_onto_doublets_and_triplets() -> None:
    burst = ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        pattern=Pattern.BURST,
        secondary_hz=2,
        pulses_per_burst=3,
    )
    plan = plan_channel_list({1: burst})
    assert plan.channels[0].mode is codec.PulseMode.TRIPLET
    assert plan.init.inter_pulse_ms == 10.0
    assert plan.init.main_interval_ms == 500.0
    assert plan.start_message({1: 5}).channels == (codec.ChannelPulse(2, 200, 5),)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({1: ChannelSettings(frequency_hz=150, pulse_width_us=200)}, "above"),
        ({1: ChannelSettings(frequency_hz=100, pulse_width_us=10)}, "pulse width"),
        ({1: ChannelSettings(frequency_hz=100, pulse_width_us=600)}, "pulse width"),
        (
            {
                1: ChannelSettings(
                    frequency_hz=100, pulse_width_us=200, waveform=Waveform.ASYMMETRIC_BIPHASIC
                )
            },
            "symmetric",
        ),
        (
            {
                1: ChannelSettings(
                    frequency_hz=100,
                    pulse_width_us=200,
                    pattern=Pattern.BURST,
                    secondary_hz=2,
                    pulses_per_burst=8,
                )
            },
            "at most 3",
        ),
        (
            {
                1: ChannelSettings(
                    frequency_hz=100,
                    pulse_width_us=200,
                    pattern=Pattern.MIXED,
                    secondary_hz=2,
                    cycle_s=3,
                )
            },
            "continuous or burst",
        ),
        (
            {1: HZ100, 2: ChannelSettings(frequency_hz=2, pulse_width_us=200)},
            "divide",
        ),
        (
            {1: HZ100, 2: ChannelSettings(frequency_hz=80, pulse_width_us=200)},
            "cannot run beside",
        ),
        (
            {
                1: HZ100,
                2: ChannelSettings(frequency_hz=50, pulse_width_us=200),
                3: ChannelSettings(frequency_hz=25, pulse_width_us=200),
            },
            "only one slower rate",
        ),
        ({ch: HZ100 for ch in range(1, 9)}, "fewer channels"),
        ({9: HZ100}, "channels 1-8"),
    ],
)
def test_plan_refuses_what_the_device_cannot_do_with_a_reason(
    settings: dict[int, ChannelSettings], reason: str
) -> None:
    with pytest.raises(UnsupportedSettingsError, match=reason) as caught:
        plan_channel_list(settings)
    assert caught.value.code is ErrorCode.PARAMETER


def test_configure_refusal_writes_nothing(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    device = device_of(driver)
    before = device.frames_in
    with pytest.raises(UnsupportedSettingsError):
        driver.configure(1, ChannelSettings(frequency_hz=150, pulse_width_us=200))
    assert device.frames_in == before
    assert driver.plan is None
    driver.close()


def test_start_initialises_channel_list_mode_and_starts_at_zero(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    device = device_of(driver)
    wire = Wire(device)
    driver.configure(1, HZ100)
    driver.configure(2, ChannelSettings(frequency_hz=50, pulse_width_us=300))
    assert Command.INIT_CHANNEL_LIST_MODE not in wire.commands()  # nothing until start
    driver.start()
    sent = [f for _, f in wire.frames if f.command != Command.WATCHDOG]
    assert [f.command for f in sent][-2:] == [
        Command.INIT_CHANNEL_LIST_MODE,
        Command.START_CHANNEL_LIST_MODE,
    ]
    start = codec.from_frame(sent[-1])
    assert isinstance(start, codec.StartChannelListMode)
    assert [c.current_ma for c in start.channels] == [0, 0]
    assert front_end_of(device).mode is StimulationMode.STARTED
    assert device.record.max_level() == 0.0
    driver.close()


def test_pulse_width_change_while_running_is_one_update(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    device = device_of(driver)
    driver.configure(1, HZ100)
    driver.configure(2, HZ100)
    driver.start()
    driver.set_amplitude(2, 1)
    driver.set_amplitude(2, 2)
    wire = Wire(device)
    driver.configure(1, ChannelSettings(frequency_hz=100, pulse_width_us=350))
    assert wire.commands() == [Command.START_CHANNEL_LIST_MODE]
    assert device.firmware.delivered(2) == 2.0  # the other channel is untouched
    settings = device.firmware.settings(1)
    assert settings is not None
    assert settings.pulse_width_us == 350
    driver.close()


def test_timing_change_while_another_channel_stimulates_is_refused(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    device = device_of(driver)
    driver.configure(1, HZ100)
    driver.configure(2, HZ100)
    driver.start()
    driver.set_amplitude(2, 1)
    before = device.frames_in
    with pytest.raises(DriverRefusedError, match="lower channel"):
        driver.configure(1, ChannelSettings(frequency_hz=50, pulse_width_us=200))
    assert device.frames_in == before
    assert device.firmware.delivered(2) == 1.0
    driver.close()


def test_timing_change_while_running_re_initialises_at_zero(clock: VirtualClock) -> None:
    driver, device, reports = running(clock, up_to=3)
    driver.set_amplitude(1, 0)  # the governor zeroes the channel before a program change
    wire = Wire(device)
    driver.configure(1, ChannelSettings(frequency_hz=50, pulse_width_us=200))
    assert [c for c in wire.commands() if c != Command.WATCHDOG] == [
        Command.STOP_CHANNEL_LIST_MODE,
        Command.INIT_CHANNEL_LIST_MODE,
        Command.START_CHANNEL_LIST_MODE,
    ]
    assert front_end_of(device).mode is StimulationMode.STARTED
    settings = device.firmware.settings(1)
    assert settings is not None
    assert settings.frequency_hz == pytest.approx(50.0)
    driver.set_amplitude(1, 1)
    assert device.firmware.delivered(1) == 1.0
    assert reports.events() == []
    driver.close()


# --------------------------------------------------------------------------- stop / close


def test_stop_zeroes_every_channel_and_is_idempotent(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    at = clock.now()
    driver.stop()
    assert device.record.all_zero_at(at) is not None
    driver.stop()
    driver.stop()  # the device answers "wrong mode": already stopped, which is fine
    assert driver.connected
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 1)
    driver.start()  # from 0 again
    assert device.firmware.delivered(1) == 0.0
    driver.close()


def test_stop_is_written_before_request_stop_returns(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    writes = driver.bytes_written
    driver.request_stop()
    assert driver.bytes_written > writes
    clock.advance(0.01)
    assert device.firmware.delivered(1) == 0.0
    driver.close()


def test_close_stops_then_closes_and_is_idempotent(clock: VirtualClock) -> None:
    driver, device, _ = running(clock)
    driver.close()
    driver.close()
    assert not driver.connected
    assert device.firmware.delivered(1) == 0.0
    with pytest.raises(CommsLostError):
        driver.set_amplitude(1, 1)
    clock.advance(5.0)
    assert device.record.level_at(1, clock.now()) == 0.0


def test_exit_guard_stops_a_running_device(clock: VirtualClock) -> None:
    _, device, _ = running(clock)
    exit_guard.stop_all()
    assert device.firmware.delivered(1) == 0.0


# --------------------------------------------------------------------------- device errors


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (Result.TRANSFER_ERROR, ErrorCode.CRC),
        (Result.PARAMETER_ERROR, ErrorCode.PARAMETER),
        (Result.WRONG_MODE, ErrorCode.STATE),
        (Result.BUSY, ErrorCode.BUSY),
        (Result.INCOMPATIBLE_VERSION, ErrorCode.VERSION),
        (-100, ErrorCode.PARAMETER),
    ],
)
def test_every_result_code_maps_to_a_typed_error(result: int, code: ErrorCode) -> None:
    error = error_for_result(result, "set amplitude")
    assert isinstance(error, DeviceRejectedError)
    assert error.code is code
    assert str(result) in str(error)


def refuse_updates(device: SimDevice, result: int, times: int | None = None) -> list[int]:
    """Make the simulated device answer StartChannelListMode updates with ``result``."""
    front_end = front_end_of(device)
    original = front_end._execute
    seen: list[int] = []

    def execute(message: codec.Message) -> codec.StimulationErrorCode | None:
        if isinstance(message, codec.StartChannelListMode) and (times is None or len(seen) < times):
            seen.append(result)
            raise sm2_sim._Reject(Result(result), "test")
        return original(message)

    front_end._execute = execute  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize(
    ("result", "code"),
    [(Result.PARAMETER_ERROR, ErrorCode.PARAMETER), (Result.WRONG_MODE, ErrorCode.STATE)],
)
def test_a_refused_update_raises_its_code_and_changes_nothing(
    clock: VirtualClock, result: int, code: ErrorCode
) -> None:
    driver, device, _ = running(clock, up_to=2)
    refuse_updates(device, result)
    with pytest.raises(DeviceRejectedError) as caught:
        driver.set_amplitude(1, 3)
    assert caught.value.code is code
    assert device.firmware.delivered(1) == 2.0
    assert driver.amplitudes() == {1: 2}
    driver.close()


@pytest.mark.parametrize("result", [Result.TRANSFER_ERROR, Result.BUSY])
def test_transfer_and_busy_answers_are_retried_twice(clock: VirtualClock, result: int) -> None:
    driver, device, _ = running(clock, up_to=2)
    seen = refuse_updates(device, result, times=2)
    driver.set_amplitude(1, 3)  # two refusals, then accepted
    assert seen == [result, result]
    assert device.firmware.delivered(1) == 3.0
    seen = refuse_updates(device, result, times=3)
    code = ErrorCode.CRC if result == Result.TRANSFER_ERROR else ErrorCode.BUSY
    with pytest.raises(DeviceRejectedError) as caught:
        driver.set_amplitude(1, 4)
    assert caught.value.code is code
    assert device.firmware.delivered(1) == 3.0
    driver.close()


def test_a_garbled_command_is_answered_as_transfer_error_and_resent(clock: VirtualClock) -> None:
    driver, device, reports = running(clock, up_to=2)
    device.inject(FaultKind.GARBLE, direction="device")
    driver.set_amplitude(1, 3)
    assert device.firmware.delivered(1) == 3.0
    assert front_end_of(device).transfer_errors == 1
    assert reports.events() == []
    driver.close()


def test_unknown_command_answer_is_typed(clock: VirtualClock) -> None:
    driver, device, _ = running(clock, up_to=1)
    front_end = front_end_of(device)
    original = front_end._on_frame

    def on_frame(frame: RawFrame) -> None:
        if frame.command == Command.START_CHANNEL_LIST_MODE:
            front_end._send(frame.pkt, codec.UnknownCommand(frame.command))
            return
        original(frame)

    front_end._on_frame = on_frame  # type: ignore[method-assign]
    with pytest.raises(DeviceRejectedError) as caught:
        driver.set_amplitude(1, 2)
    assert caught.value.code is ErrorCode.UNKNOWN_COMMAND
    driver.close()


# --------------------------------------------------------------------------- stimulation errors


def test_emergency_switch_is_reported_and_output_stays_off(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.EMERGENCY)
    clock.advance(0.1)
    events = reports.events(DeviceEventKind.EMERGENCY_SWITCH)
    assert len(events) == 1
    assert "emergency switch" in events[0].detail
    assert device.record.zero_at(1, at) == at
    assert driver.amplitudes() == {1: 0}
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 1)
    clock.advance(10.0)
    assert device.record.max_between(1, at, clock.now()) == 0.0
    driver.close()


def test_electrode_error_is_a_lead_off_on_every_channel(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device = device_of(driver)
    driver.configure(1, HZ100)
    driver.configure(2, HZ100)
    driver.start()
    for ma in (1, 2, 3):
        driver.set_amplitude(1, ma)
        driver.set_amplitude(2, ma)
    at = clock.now()
    device.inject(FaultKind.LEAD_OFF, channel=2)
    clock.advance(0.1)
    events = reports.events(DeviceEventKind.LEAD_OFF)
    assert len(events) == 1
    assert events[0].channel is None  # the device does not say which
    assert "every channel" in events[0].detail
    assert device.record.all_zero_at(at) == at
    assert driver.amplitudes() == {1: 0, 2: 0}
    # the electrode is put back: a restart begins at 0 mA on every channel
    device.inject(FaultKind.LEAD_ON, channel=2)
    driver.start()
    assert device.firmware.delivered(1) == 0.0
    driver.set_amplitude(2, 1)
    assert device.firmware.delivered(2) == 1.0
    driver.close()


def test_an_electrode_already_off_is_reported_as_lead_off_at_start(clock: VirtualClock) -> None:
    driver = ScienceMode2Driver.open(URL, clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device = device_of(driver)
    device.inject(FaultKind.LEAD_OFF, channel=1)
    driver.configure(1, HZ100)
    driver.start()  # acknowledged, then the resistance test finds the electrode off
    clock.advance(0.1)
    assert len(reports.events(DeviceEventKind.LEAD_OFF)) == 1
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 1)
    assert device.record.max_level() == 0.0
    driver.close()


def test_module_error_is_a_fault(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    device.inject(FaultKind.INTERNAL)
    clock.advance(0.1)
    assert len(reports.events(DeviceEventKind.FAULT)) == 1
    assert device.firmware.delivered(1) == 0.0
    assert driver.amplitudes() == {1: 0}
    driver.close()


# --------------------------------------------------------------------------- Init mid-session


def test_init_in_the_middle_of_a_session_is_a_reset_and_nothing_resumes(
    clock: VirtualClock,
) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.RESET)
    clock.advance(0.1)
    resets = reports.events(DeviceEventKind.DEVICE_RESET)
    assert len(resets) == 1
    assert "nothing resumes by itself" in resets[0].detail
    assert driver.connected  # the link itself is fine: Init was answered
    assert driver.stimulation_mode is StimulationMode.START
    assert driver.amplitudes() == {1: 0}
    clock.advance(30.0)
    assert device.record.max_between(1, at, clock.now()) == 0.0
    assert front_end_of(device).linked
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 6)
    driver.start()  # the caller decides: again from 0 mA
    assert device.firmware.delivered(1) == 0.0
    driver.close()


def test_repeated_init_crossing_our_answer_is_tolerated(clock: VirtualClock) -> None:
    # The first InitAck is lost on the way: the device sends Init again 500 ms later.
    driver = ScienceMode2Driver.open("sim://sciencemode2?seed=1&faults=drop@0:device:1", clock)
    reports = Reports()
    driver.add_report_handler(reports)
    device = device_of(driver)
    clock.advance(2.0)
    assert front_end_of(device).inits_sent == 2
    assert front_end_of(device).linked
    assert reports.events() == []
    driver.configure(1, HZ100)
    driver.start()
    driver.set_amplitude(1, 1)
    assert device.firmware.delivered(1) == 1.0
    driver.close()


def test_the_device_watchdog_restarts_it_when_the_host_hangs(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, device, reports = running(clock)
    # the host process hangs: its timer never fires again (no keep-alive, no polls)
    assert driver._timer is not None
    driver._timer.cancel()
    monkeypatch.setattr(driver, "_arm", lambda deadline: None)
    last = clock.now()
    clock.advance(1.5)
    off = device.record.zero_at(1, last)
    assert off is not None
    assert off - last <= 1.2 + 0.01
    # the hung host's reader still runs: it answers the Init and reports the restart
    assert reports.events(DeviceEventKind.DEVICE_RESET)
    driver.close()


# --------------------------------------------------------------------------- comms loss


def test_a_silent_device_is_comms_lost_within_a_second_and_output_stops(
    clock: VirtualClock,
) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.MUTE)
    clock.advance(3.0)
    lost = reports.events(DeviceEventKind.COMMS_LOST)
    assert len(lost) == 1
    assert lost[0].time - at <= 1.0 + 0.5 + 1e-9  # a poll goes out within 0.5 s
    assert not driver.connected
    # the driver wrote a stop: the device (still hearing us) delivers 0
    assert device.record.zero_at(1, at) is not None
    with pytest.raises(CommsLostError):
        driver.set_amplitude(1, 1)
    driver.close()


def test_unplugging_is_comms_lost(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    at = clock.now()
    device.inject(FaultKind.DISCONNECT)
    clock.advance(2.0)
    assert len(reports.events(DeviceEventKind.COMMS_LOST)) == 1
    off = device.record.zero_at(1, at)
    assert off is not None
    assert off - at <= 1.21  # the device's own watchdog
    driver.close()


def test_a_device_that_stops_silently_is_noticed(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    front_end = front_end_of(device)
    device.firmware.stop()
    front_end._reset_modes()  # stop without telling the host
    clock.advance(1.0)
    stopped = reports.events(DeviceEventKind.OUTPUT_STOPPED)
    assert len(stopped) == 1
    assert driver.amplitudes() == {1: 0}
    driver.close()


# --------------------------------------------------------------------------- discovery


def test_discovery_confirms_ports_by_the_init_handshake(clock: VirtualClock) -> None:
    def port(device: str) -> PortInfo:
        return PortInfo(device, "FT232R USB UART", 0x0403, 0x6001, "A1", "FTDI")

    found = discover(
        clock,
        ports=[
            port("sim://sciencemode2?seed=4"),
            port("sim://sciencemode2?faults=mute@0"),
            port("/dev/does-not-exist-tens"),
        ],
    )
    assert [f.port.device for f in found] == ["sim://sciencemode2?seed=4"]
    assert found[0].info.model == "RehaStim 2"
    assert exit_guard.registered() == []


@pytest.mark.parametrize(
    ("kind", "direction"),
    [
        (FaultKind.DROP, "host"),
        (FaultKind.GARBLE, "host"),
        (FaultKind.DROP, "device"),
        (FaultKind.GARBLE, "device"),
    ],
)
def test_a_lost_or_damaged_frame_is_recovered_without_ending_the_link(
    clock: VirtualClock, kind: FaultKind, direction: str
) -> None:
    driver, device, reports = running(clock, up_to=2)
    for ma in (3, 4, 3, 5):
        device.inject(kind, direction=direction, count=2)
        driver.set_amplitude(1, ma)
        clock.advance(1.0)
        assert device.firmware.delivered(1) == float(ma)
        assert driver.amplitudes() == {1: ma}
    assert reports.events() == []
    assert driver.connected
    driver.close()


def test_an_update_answered_after_a_stop_does_not_revive_the_output_belief(
    clock: VirtualClock,
) -> None:
    driver, device, _ = running(clock, up_to=2)
    driver.request_amplitude(1, 3)
    driver.request_stop()  # before the update's acknowledgement arrives
    clock.advance(0.5)
    assert driver.amplitudes() == {1: 0}
    assert device.firmware.delivered(1) == 0.0
    with pytest.raises(DriverRefusedError, match="not stimulating"):
        driver.set_amplitude(1, 1)
    driver.close()


def test_a_restart_is_reported_before_the_commands_it_cancelled_fail(clock: VirtualClock) -> None:
    driver, device, _ = running(clock, up_to=2)
    order: list[str] = []
    driver.add_report_handler(
        lambda r: order.append(r.kind.value) if isinstance(r, DeviceEvent) else None
    )
    pending = driver.request_amplitude(1, 3)
    pending.add_done_callback(lambda p: order.append(f"command failed: {p.error is not None}"))
    device.inject(FaultKind.RESET)  # before the update arrives: the device restarts
    clock.advance(0.1)
    assert order[:2] == ["device_reset", "command failed: True"]
    assert device.record.level_at(1, clock.now()) == 0.0
    driver.close()


def test_reconnect_after_unplugging_never_resumes(clock: VirtualClock) -> None:
    driver, device, reports = running(clock)
    device.inject(FaultKind.DISCONNECT, value=2.0)  # back after 2 s
    clock.advance(3.0)
    assert reports.events(DeviceEventKind.COMMS_LOST)
    info = driver.reconnect()
    assert info.model == "RehaStim 2"
    assert driver.connected
    assert driver.plan is None  # every channel must be configured again
    with pytest.raises(DriverRefusedError):
        driver.start()
    clock.advance(5.0)
    assert device.record.level_at(1, clock.now()) == 0.0
    driver.configure(1, HZ100)
    driver.start()
    assert device.firmware.delivered(1) == 0.0
    driver.close()
