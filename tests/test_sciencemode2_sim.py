"""The simulated RehaStim 2 (``sim://sciencemode2``) seen by a bare ScienceMode2 host.

The host here follows only the public protocol (no driver): it answers Init, sends commands and
keeps every frame the device sent. Safety assertions are on the device's delivered record.
"""

from __future__ import annotations

import itertools

import pytest
import serial

import simulator  # noqa: F401  (registers sim://)
from drivers.base import FramingError
from drivers.clock import VirtualClock
from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import (
    ChannelPulse,
    Command,
    GetStimulationMode,
    GetStimulationModeAck,
    Init,
    InitAck,
    InitChannelListMode,
    InitChannelListModeAck,
    Message,
    SinglePulse,
    SinglePulseAck,
    StartChannelListMode,
    StartChannelListModeAck,
    StimulationError,
    StopChannelListMode,
    StopChannelListModeAck,
    UnknownCommand,
    Watchdog,
)
from drivers.sciencemode2.frame import FrameDecoder, RawFrame, encode_frame
from simulator.device import SimDevice
from simulator.faults import FaultKind
from simulator.protocol_sim import Serial as SimSerial

OK, TRANSFER, PARAMETER, WRONG_MODE = 0, -1, -2, -3

# 100 Hz on channel 1 only: main interval 10 ms = code 18.
INIT_CH1 = InitChannelListMode(0, 0b1, 0, 0, 18, 0)
INIT_CH12 = InitChannelListMode(0, 0b11, 0, 0, 18, 0)


class RawHost:
    """A bare ScienceMode2 host on an in-process simulated RehaStim 2, in virtual time."""

    def __init__(self, url: str = "sim://sciencemode2?seed=1") -> None:
        self.clock = VirtualClock()
        port = serial.serial_for_url(url, do_not_open=True, timeout=0)
        assert isinstance(port, SimSerial)
        port.use_clock(self.clock)
        port.open()
        port.set_data_callback(self._on_data)
        self.port = port
        self.received: list[tuple[float, RawFrame | FramingError]] = []
        self._decoder = FrameDecoder()
        self._pkt = 0
        self.last_sent = 0.0

    @property
    def device(self) -> SimDevice:
        return self.port.device

    def _on_data(self) -> None:
        data = self.port.read(self.port.in_waiting)
        now = self.clock.now()
        for item in self._decoder.feed(data):
            self.received.append((now, item))

    def frames(self) -> list[tuple[float, Message]]:
        return [(t, codec.from_frame(f)) for t, f in self.received if isinstance(f, RawFrame)]

    def messages(self, kind: type[Message]) -> list[tuple[float, Message]]:
        return [(t, m) for t, m in self.frames() if isinstance(m, kind)]

    def send(self, message: Message, pkt: int | None = None) -> int:
        if pkt is None:
            self._pkt = (self._pkt + 1) % 256
            pkt = self._pkt
        self.port.write(codec.encode(pkt, message))
        self.last_sent = self.clock.now()
        return pkt

    def reply(self, pkt: int, command: int, timeout: float = 0.2) -> Message:
        found: list[Message] = []

        def arrived() -> bool:
            for item in (f for _, f in self.received if isinstance(f, RawFrame)):
                if item.pkt == pkt and item.command == command:
                    found.append(codec.from_frame(item))
                    return True
            return False

        assert self.clock.wait_until(arrived, timeout), f"no reply {command} to packet {pkt}"
        return found[0]

    def command(self, message: Message, pkt: int | None = None) -> Message:
        pkt = self.send(message, pkt)
        ack = codec.ACK_FOR[Command(message.command)]
        replies: list[Message] = []

        def arrived() -> bool:
            for item in (f for _, f in self.received if isinstance(f, RawFrame)):
                if item.pkt == pkt and item.command in (ack, Command.UNKNOWN_COMMAND):
                    replies.append(codec.from_frame(item))
                    return True
            return False

        assert self.clock.wait_until(arrived, 0.2), f"no answer to {message!r}"
        return replies[0]

    def link(self) -> None:
        """Wait for the first Init and answer it."""
        assert self.clock.wait_until(lambda: bool(self.messages(Init)), 1.0)
        pkt = next(f.pkt for _, f in self.received if isinstance(f, RawFrame) and f.command == 1)
        self.send(InitAck(0), pkt)
        self.clock.advance(0.01)

    def keep_alive(self, seconds: float, period: float = 0.3) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() + period <= end:
            self.send(Watchdog())
            self.clock.advance(period)
        self.clock.run_until(end)

    def stimulate(self, current: int = 10, init: InitChannelListMode = INIT_CH1) -> None:
        self.link()
        assert self.command(init) == InitChannelListModeAck(OK)
        entries = tuple(ChannelPulse(0, 200, current) for _ in init.active_channels)
        assert self.command(StartChannelListMode(entries)) == StartChannelListModeAck(OK)

    def mode(self) -> int:
        reply = self.command(GetStimulationMode())
        assert isinstance(reply, GetStimulationModeAck)
        assert reply.result == OK
        return reply.mode


@pytest.fixture
def host() -> RawHost:
    return RawHost()


# --------------------------------------------------------------------------- Init


def test_init_every_500_ms_until_acknowledged(host: RawHost) -> None:
    host.clock.advance(2.05)
    times = [t for t, _ in host.messages(Init)]
    assert len(times) == 5
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [0.5] * 4
    assert all(m == Init(codec.PROTOCOL_VERSION) for _, m in host.messages(Init))
    # an InitAck with a packet number no Init had is ignored
    host.send(InitAck(0), pkt=200)
    host.clock.advance(0.6)
    assert len(host.messages(Init)) == 6
    host.link()
    count = len(host.messages(Init))
    host.keep_alive(3.0)
    assert len(host.messages(Init)) == count


def test_commands_work_only_after_answering_init_and_modes_report(host: RawHost) -> None:
    host.link()
    assert host.mode() == 0
    assert host.command(INIT_CH1) == InitChannelListModeAck(OK)
    assert host.mode() == 1
    assert host.command(StartChannelListMode((ChannelPulse(0, 200, 5),))) == (
        StartChannelListModeAck(OK)
    )
    assert host.mode() == 2
    assert host.device.firmware.delivered(1) == 5.0
    assert host.command(StopChannelListMode()) == StopChannelListModeAck(OK)
    assert host.mode() == 0
    assert host.device.firmware.delivered(1) == 0.0


# --------------------------------------------------------------------------- watchdog


def test_watchdog_expiry_on_host_silence_stops_output_and_init_starts_again(
    host: RawHost,
) -> None:
    host.stimulate(current=12)
    host.keep_alive(2.0)  # Watchdog frames keep it running
    assert host.device.firmware.delivered(1) == 12.0
    last = host.last_sent
    inits_before = len(host.messages(Init))
    host.clock.advance(3.0)  # host silent
    record = host.device.record
    off = record.zero_at(1, last)
    assert off is not None
    # 1200 ms after the last valid frame arrived (1 ms link latency)
    assert off - last == pytest.approx(1.201, abs=1e-6)
    assert record.max_between(1, off, host.clock.now()) == 0.0
    inits = [t for t, _ in host.messages(Init)][inits_before:]
    assert inits
    assert inits[0] >= off
    host.link()
    assert host.mode() == 0  # every mode reset to the start mode


def test_any_valid_packet_feeds_the_watchdog(host: RawHost) -> None:
    host.stimulate(current=3)
    for _ in range(20):
        host.command(GetStimulationMode())
        host.clock.advance(0.5)
    assert host.device.firmware.delivered(1) == 3.0


# --------------------------------------------------------------------------- mode rules


def test_wrong_mode_acks_change_nothing(host: RawHost) -> None:
    host.link()
    assert host.command(StartChannelListMode((ChannelPulse(0, 200, 5),))) == (
        StartChannelListModeAck(WRONG_MODE)
    )
    assert host.device.record.max_level() == 0.0
    assert host.command(INIT_CH1) == InitChannelListModeAck(OK)
    assert host.command(INIT_CH1) == InitChannelListModeAck(WRONG_MODE)
    assert host.command(SinglePulse(0, 200, 10)) == SinglePulseAck(WRONG_MODE)
    assert host.command(StartChannelListMode((ChannelPulse(0, 200, 5),))) == (
        StartChannelListModeAck(OK)
    )
    assert host.command(INIT_CH1) == InitChannelListModeAck(WRONG_MODE)
    assert host.command(SinglePulse(0, 200, 10)) == SinglePulseAck(WRONG_MODE)
    assert host.device.firmware.delivered(1) == 5.0
    assert host.mode() == 2


@pytest.mark.parametrize("stimulating", [False, True], ids=["start-mode", "stimulating"])
def test_stop_is_answered_ok_in_every_mode(host: RawHost, stimulating: bool) -> None:
    """The description allows only 0 (stopped) and -1 (transfer error) for Stop; hosts such as
    pyScienceMode send Stop before their first Init and treat anything else as fatal."""
    if stimulating:
        host.stimulate(current=9)
    else:
        host.link()
    for _ in range(2):
        assert host.command(StopChannelListMode()) == StopChannelListModeAck(OK)
        assert host.mode() == 0
    assert host.device.firmware.delivered(1) == 0.0
    assert host.command(INIT_CH1) == InitChannelListModeAck(OK)  # and the next session starts


def test_a_stop_with_data_bytes_still_stops(host: RawHost) -> None:
    host.stimulate(current=9)
    pkt = 61
    host.port.write(encode_frame(RawFrame(pkt, Command.STOP_CHANNEL_LIST_MODE, b"\x00")))
    assert host.reply(pkt, Command.STOP_CHANNEL_LIST_MODE_ACK) == StopChannelListModeAck(OK)
    assert host.device.firmware.delivered(1) == 0.0
    assert host.mode() == 0


def test_a_garbled_stop_is_a_transfer_error(host: RawHost) -> None:
    host.stimulate(current=9)
    wire = bytearray(codec.encode(43, StopChannelListMode()))
    wire[2] ^= 0x04  # the escaped CRC byte
    host.port.write(bytes(wire))
    assert host.reply(43, Command.STOP_CHANNEL_LIST_MODE_ACK) == StopChannelListModeAck(TRANSFER)
    assert host.device.firmware.delivered(1) == 9.0  # not executed: the frame cannot be trusted


# --------------------------------------------------------------------------- parameters

BAD_INITS = [
    InitChannelListMode(8, 0b1, 0, 0, 18, 0),  # low-frequency factor above 7
    InitChannelListMode(0, 0, 0, 0, 18, 0),  # no channel
    InitChannelListMode(1, 0b1, 0b10, 0, 18, 0),  # low-frequency channel not active
    InitChannelListMode(0, 0b1, 0, 0, 13, 0),  # 7.5 ms: below the 8 ms firmware minimum
    InitChannelListMode(0, 0b1, 0, 0, 2049, 0),  # above 1025 ms
    InitChannelListMode(0, 0b1, 0, 0, 18, 2),  # channel execution 2
    InitChannelListMode(0, 0xFF, 0, 0, 14, 0),  # 8 channels do not fit in 8 ms
]


@pytest.mark.parametrize("init", BAD_INITS)
def test_bad_init_parameters_are_parameter_errors(host: RawHost, init: InitChannelListMode) -> None:
    host.link()
    assert host.command(init) == InitChannelListModeAck(PARAMETER)
    assert host.mode() == 0


BAD_STARTS = [
    StartChannelListMode((ChannelPulse(0, 200, 131),)),  # above 130 mA
    StartChannelListMode((ChannelPulse(0, 501, 10),)),  # above 500 µs
    StartChannelListMode((ChannelPulse(3, 200, 10),)),  # pulse mode 3
    StartChannelListMode((ChannelPulse(0, 200, 10), ChannelPulse(0, 200, 10))),  # 2 for 1
    StartChannelListMode(()),  # none for 1
]


@pytest.mark.parametrize("start", BAD_STARTS)
def test_bad_start_parameters_are_parameter_errors_and_deliver_nothing(
    host: RawHost, start: StartChannelListMode
) -> None:
    host.link()
    host.command(INIT_CH1)
    assert host.command(start) == StartChannelListModeAck(PARAMETER)
    assert host.device.record.max_level() == 0.0
    assert host.mode() == 1


def test_a_bad_update_while_stimulating_keeps_the_previous_output(host: RawHost) -> None:
    host.stimulate(current=7)
    reply = host.command(StartChannelListMode((ChannelPulse(0, 200, 200),)))
    assert reply == StartChannelListModeAck(PARAMETER)
    assert host.device.firmware.delivered(1) == 7.0
    assert host.device.record.max_level(1) == 7.0


def test_wrong_data_length_is_a_parameter_error(host: RawHost) -> None:
    host.link()
    pkt = 77
    host.port.write(encode_frame(RawFrame(pkt, Command.INIT_CHANNEL_LIST_MODE, b"\x00\x01")))
    assert host.reply(pkt, Command.INIT_CHANNEL_LIST_MODE_ACK) == InitChannelListModeAck(PARAMETER)


def test_pulse_widths_below_20_us_are_accepted_as_20(host: RawHost) -> None:
    host.link()
    host.command(INIT_CH1)
    assert host.command(StartChannelListMode((ChannelPulse(0, 5, 4),))) == (
        StartChannelListModeAck(OK)
    )
    settings = host.device.firmware.settings(1)
    assert settings is not None
    assert settings.pulse_width_us == 20
    assert settings.frequency_hz == pytest.approx(100.0)


def test_updates_change_current_per_channel_in_channel_order(host: RawHost) -> None:
    host.stimulate(current=0, init=INIT_CH12)
    update = StartChannelListMode((ChannelPulse(0, 200, 3), ChannelPulse(0, 300, 9)))
    assert host.command(update) == StartChannelListModeAck(OK)
    fw = host.device.firmware
    assert (fw.delivered(1), fw.delivered(2)) == (3.0, 9.0)
    settings = fw.settings(2)
    assert settings is not None
    assert settings.pulse_width_us == 300


def test_low_frequency_factor_and_doublets_are_understood(host: RawHost) -> None:
    host.link()
    # 50 ms main interval (20 Hz); channel 2 every 4th interval (5 Hz); 10 ms between doublets.
    init = InitChannelListMode(3, 0b11, 0b10, codec.inter_pulse_interval_code(10.0), 98, 0)
    assert host.command(init) == InitChannelListModeAck(OK)
    start = StartChannelListMode((ChannelPulse(1, 200, 6), ChannelPulse(0, 250, 8)))
    assert host.command(start) == StartChannelListModeAck(OK)
    fw = host.device.firmware
    one, two = fw.settings(1), fw.settings(2)
    assert one is not None
    assert two is not None
    assert one.pulses_per_burst == 2
    assert one.frequency_hz == pytest.approx(100.0)
    assert one.secondary_hz == pytest.approx(20.0)
    assert two.frequency_hz == pytest.approx(5.0)
    assert (fw.delivered(1), fw.delivered(2)) == (6.0, 8.0)


def _burst_host(host: RawHost, inter_pulse_ms: float, main_code: int, channels: int = 1) -> None:
    host.link()
    init = InitChannelListMode(
        0, (1 << channels) - 1, 0, codec.inter_pulse_interval_code(inter_pulse_ms), main_code, 0
    )
    assert host.command(init) == InitChannelListModeAck(OK)


@pytest.mark.parametrize("mode", [1, 2], ids=["doublet", "triplet"])
def test_an_inter_pulse_interval_below_8_ms_is_delivered_as_8_ms(host: RawHost, mode: int) -> None:
    """pyScienceMode always sends 2 ms (its default), which the real device evidently takes at
    Init; the description gives 8 ms as the firmware's minimum. So: accepted, delivered as
    8 ms -- never accepted at Init and refused at every Start."""
    _burst_host(host, 2.0, 58)  # 30 ms main interval
    start = StartChannelListMode((ChannelPulse(mode, 350, 10),))
    assert host.command(start) == StartChannelListModeAck(OK)
    settings = host.device.firmware.settings(1)
    assert settings is not None
    assert settings.frequency_hz == pytest.approx(125.0)  # 8 ms between the pulses
    assert settings.pulses_per_burst == mode + 1
    assert settings.secondary_hz == pytest.approx(1000.0 / 30.0)
    assert host.device.firmware.delivered(1) == 10.0


@pytest.mark.parametrize(
    ("mode", "main_ms", "result"),
    [
        (1, 16.0, OK),  # 2 pulses x 8 ms = 16 ms: fits exactly
        (1, 15.5, PARAMETER),
        (2, 24.0, OK),  # 3 x 8 ms
        (2, 23.5, PARAMETER),
    ],
)
def test_a_pulse_group_must_fit_in_the_main_interval(
    host: RawHost, mode: int, main_ms: float, result: int
) -> None:
    _burst_host(host, 8.0, codec.main_interval_code(main_ms))
    start = StartChannelListMode((ChannelPulse(mode, 200, 6),))
    assert host.command(start) == StartChannelListModeAck(result)
    assert host.device.record.max_level() == (6.0 if result == OK else 0.0)


def test_channel_slots_do_not_shorten_a_pulse_group(host: RawHost) -> None:
    """Eight channels of doublets at 8 ms in a 16 ms main interval: the description's rule
    (16 >= 2 x 8) holds; the channels' 1.5 ms slots are not added to the groups."""
    _burst_host(host, 8.0, codec.main_interval_code(16.0), channels=8)
    start = StartChannelListMode(tuple(ChannelPulse(1, 200, 3) for _ in range(8)))
    assert host.command(start) == StartChannelListModeAck(OK)
    assert [host.device.firmware.delivered(ch) for ch in range(1, 9)] == [3.0] * 8


@pytest.mark.parametrize("main_code", [2048, 1998], ids=["1025ms", "1000ms"])
def test_the_longest_main_intervals_are_delivered(host: RawHost, main_code: int) -> None:
    """1-1025 ms is the description's range, below the rehastim2 profile's 1 Hz."""
    host.link()
    init = InitChannelListMode(7, 0b11, 0b10, 0, main_code, 0)  # channel 2 every 8th interval
    assert host.command(init) == InitChannelListModeAck(OK)
    start = StartChannelListMode((ChannelPulse(0, 200, 4), ChannelPulse(2, 200, 5)))
    assert host.command(start) == StartChannelListModeAck(OK)
    fw = host.device.firmware
    assert (fw.delivered(1), fw.delivered(2)) == (4.0, 5.0)
    one = fw.settings(1)
    assert one is not None
    assert one.frequency_hz == pytest.approx(1000.0 / codec.main_interval_ms(main_code))


# --------------------------------------------------------------------------- transfer errors


def test_a_bad_crc_is_answered_as_a_transfer_error_and_not_executed(host: RawHost) -> None:
    host.link()
    host.command(INIT_CH1)
    wire = bytearray(codec.encode(42, StartChannelListMode((ChannelPulse(0, 200, 20),))))
    wire[2] ^= 0x04  # the escaped CRC byte
    host.port.write(bytes(wire))
    assert host.reply(42, Command.START_CHANNEL_LIST_MODE_ACK) == StartChannelListModeAck(TRANSFER)
    assert host.device.record.max_level() == 0.0
    assert host.mode() == 1


def test_garbage_between_frames_is_skipped(host: RawHost) -> None:
    host.link()
    host.port.write(b"\x00\x13\x37garbage")
    assert host.mode() == 0


@pytest.mark.parametrize("number", [1, 3, 11, 31, 38, 50, 70, 90, 99, 255])
def test_unknown_commands_get_unknown_command(host: RawHost, number: int) -> None:
    host.link()
    pkt = 9
    host.port.write(encode_frame(RawFrame(pkt, number, b"\x01")))
    assert host.reply(pkt, Command.UNKNOWN_COMMAND) == UnknownCommand(number)
    assert host.mode() == 0


# --------------------------------------------------------------------------- faults


def stimulation_errors(host: RawHost) -> list[int]:
    return [m.error for _, m in host.messages(StimulationError) if isinstance(m, StimulationError)]


def test_electrode_error_while_stimulating_stops_every_channel(host: RawHost) -> None:
    host.stimulate(current=10, init=INIT_CH12)
    host.device.inject(FaultKind.LEAD_OFF, channel=2)
    at = host.clock.now()
    host.clock.advance(0.05)
    assert stimulation_errors(host) == [-2]
    assert host.device.record.all_zero_at(at) == at
    assert host.mode() == 0


@pytest.mark.parametrize("current", [0, 4])
def test_electrode_off_at_start_is_an_electrode_error_after_the_ack(
    host: RawHost, current: int
) -> None:
    host.link()
    host.device.inject(FaultKind.LEAD_OFF, channel=1)
    host.command(INIT_CH1)
    assert host.command(StartChannelListMode((ChannelPulse(0, 200, current),))) == (
        StartChannelListModeAck(OK)
    )
    host.clock.advance(0.05)
    assert stimulation_errors(host) == [-2]
    assert host.device.record.max_level() == 0.0
    assert host.mode() == 0


def test_an_electrode_off_on_an_inactive_channel_is_no_error(host: RawHost) -> None:
    host.stimulate(current=5)
    host.device.inject(FaultKind.LEAD_OFF, channel=3)
    host.clock.advance(0.05)
    assert stimulation_errors(host) == []
    assert host.device.firmware.delivered(1) == 5.0


def test_emergency_switch_stops_output_and_reports(host: RawHost) -> None:
    host.stimulate(current=20)
    at = host.clock.now()
    host.device.inject(FaultKind.EMERGENCY)
    host.clock.advance(0.05)
    assert stimulation_errors(host) == [-1]
    assert host.device.record.zero_at(1, at) == at
    assert host.mode() == 0


def test_module_error_stops_output_and_reports(host: RawHost) -> None:
    host.stimulate(current=20)
    host.device.inject(FaultKind.INTERNAL)
    host.clock.advance(0.05)
    assert stimulation_errors(host) == [-3]
    assert host.device.firmware.delivered(1) == 0.0


def test_a_restart_stops_output_and_sends_init_again(host: RawHost) -> None:
    host.stimulate(current=20)
    inits = len(host.messages(Init))
    host.device.inject(FaultKind.RESET)
    host.clock.advance(0.05)
    assert host.device.firmware.delivered(1) == 0.0
    assert len(host.messages(Init)) == inits + 1
    host.link()
    assert host.mode() == 0


def test_single_pulse_delivers_briefly(host: RawHost) -> None:
    host.link()
    at = host.clock.now()
    assert host.command(SinglePulse(1, 200, 15)) == SinglePulseAck(OK)
    host.clock.advance(0.1)
    assert host.device.record.max_between(2, at, host.clock.now()) == 15.0
    assert host.device.firmware.delivered(2) == 0.0
    assert host.command(SinglePulse(8, 200, 15)) == SinglePulseAck(PARAMETER)
    assert host.command(SinglePulse(0, 200, 131)) == SinglePulseAck(PARAMETER)
