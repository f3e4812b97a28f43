"""The emulated P24 (``sim://sciencemode4``) driven frame by frame, in virtual time.

A raw host writes ScienceMode4 packets and reads the answers; every assertion about output is
made on what the emulated device delivered (its record).
"""

from __future__ import annotations

import pytest
import serial

import simulator  # noqa: F401  (registers sim://)
from drivers.base import FramingError
from drivers.clock import VirtualClock
from drivers.sciencemode4 import codec
from drivers.sciencemode4.codec import (
    Ack,
    ChannelState,
    Command,
    GeneralError,
    GetBatteryStatus,
    GetBatteryStatusAck,
    GetDeviceId,
    GetDeviceIdAck,
    GetStimStatus,
    GetStimStatusAck,
    Message,
    MlChannel,
    MlGetCurrentData,
    MlGetCurrentDataAck,
    MlInit,
    MlStop,
    MlUpdate,
    Point,
    Request,
    Result,
    StimStatus,
    UnknownCommand,
)
from drivers.sciencemode4.frame import FrameDecoder, RawFrame, encode_frame
from simulator.device import SimDevice
from simulator.faults import FaultKind
from simulator.protocol_sim import Serial as SimSerial
from simulator.sciencemode4 import HV_OFF_S, HV_ON_S, device_id

OK = Result.SUCCESSFUL


def pulse(ma: float, width: int = 200) -> tuple[Point, ...]:
    return (Point(width, ma), Point(width, -ma))


def channels(**config: MlChannel) -> MlUpdate:
    """``channels(ch1=..., ch3=...)``: an Ml_Update with those channels enabled."""
    entries: list[MlChannel | None] = [None] * 8
    for name, value in config.items():
        entries[int(name.removeprefix("ch")) - 1] = value
    return MlUpdate(tuple(entries))


class RawHost:
    """A host that speaks ScienceMode4 by hand to the in-process emulator."""

    def __init__(self, url: str = "sim://sciencemode4?seed=4") -> None:
        self.clock = VirtualClock()
        port = serial.serial_for_url(url, do_not_open=True)
        assert isinstance(port, SimSerial)
        port.use_clock(self.clock)
        port.open()
        port.set_data_callback(self._on_data)
        self.port = port
        self.received: list[tuple[float, RawFrame | FramingError]] = []
        self._decoder = FrameDecoder()
        self._pkt = 0

    @property
    def device(self) -> SimDevice:
        return self.port.device

    def _on_data(self) -> None:
        data = self.port.read(self.port.in_waiting)
        now = self.clock.now()
        for item in self._decoder.feed(data):
            self.received.append((now, item))

    def frames(self) -> list[tuple[float, RawFrame]]:
        return [(t, f) for t, f in self.received if isinstance(f, RawFrame)]

    def send(self, message: Message, pkt: int | None = None) -> int:
        if pkt is None:
            self._pkt = (self._pkt + 1) % 64
            pkt = self._pkt
        self.port.write(codec.encode(pkt, message))
        return pkt

    def command(self, message: Request, timeout: float = 0.3) -> tuple[float, Message]:
        pkt = self.send(message)
        ack = codec.ACK_FOR[int(message.command)]
        found: list[tuple[float, Message]] = []

        def arrived() -> bool:
            for t, f in self.frames():
                if f.pkt == pkt and f.command in (ack, Command.UNKNOWN_COMMAND):
                    found.append((t, codec.from_frame(f)))
                    return True
            return False

        sent = self.clock.now()
        assert self.clock.wait_until(arrived, timeout), f"no answer to {message!r}"
        return found[0][0] - sent, found[0][1]

    def answer(self, message: Request) -> Message:
        return self.command(message)[1]

    def status(self) -> int:
        reply = self.answer(GetStimStatus())
        assert isinstance(reply, GetStimStatusAck)
        return reply.status

    def current_data(self) -> MlGetCurrentDataAck:
        reply = self.answer(MlGetCurrentData())
        assert isinstance(reply, MlGetCurrentDataAck)
        return reply

    def stimulate(self, update: MlUpdate) -> None:
        assert self.answer(MlInit(True)) == Ack(int(Command.ML_INIT_ACK))
        assert self.answer(update) == Ack(int(Command.ML_UPDATE_ACK))

    def keep_alive(self, seconds: float, period: float = 0.5) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() + period <= end:
            self.current_data()
            self.clock.advance(period)
        self.clock.run_until(end)

    def delivered(self, channel: int) -> float:
        return self.device.firmware.delivered(channel)


@pytest.fixture
def host() -> RawHost:
    return RawHost()


def test_identity_and_status_answers(host: RawHost) -> None:
    assert host.answer(GetDeviceId()) == GetDeviceIdAck(OK, device_id(4))
    assert len(device_id(4)) == 10
    assert host.status() == StimStatus.UNINITIALIZED
    battery = host.answer(GetBatteryStatus())
    assert battery == GetBatteryStatusAck(OK, 100, 4200)
    host.device.firmware.set_battery(40)
    reply = host.answer(GetBatteryStatus())
    assert isinstance(reply, GetBatteryStatusAck)
    assert reply.level_pct == 40


def test_ml_init_takes_80_ms_and_commands_wait_for_it(host: RawHost) -> None:
    took, reply = host.command(MlInit(True))
    assert reply == Ack(int(Command.ML_INIT_ACK))
    assert took == pytest.approx(HV_ON_S + 0.002)  # 1 ms latency each way
    assert host.status() == StimStatus.ML_INITIALIZED
    took, reply = host.command(MlInit(True))  # already in the mid level: at once
    assert took == pytest.approx(0.002)


def test_update_outside_the_mid_level_is_not_initialised_and_delivers_nothing(
    host: RawHost,
) -> None:
    reply = host.answer(channels(ch1=MlChannel(10, pulse(10))))
    assert reply == Ack(int(Command.ML_UPDATE_ACK), Result.NOT_INITIALIZED_ERROR)
    assert len(host.device.record) == 0


def test_update_starts_each_channel_at_its_current_and_stop_zeroes_all(host: RawHost) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(10)), ch3=MlChannel(20, pulse(22.5, 300))))
    assert (host.delivered(1), host.delivered(3)) == (10.0, 22.5)
    assert host.status() == StimStatus.ML_RUNNING
    settings = host.device.firmware.settings(3)
    assert settings is not None
    assert (settings.frequency_hz, settings.pulse_width_us) == (50.0, 300)
    data = host.current_data()
    assert data.result == OK
    assert data.active == (True, False, True) + (False,) * 5
    assert set(data.states) == {ChannelState.OK}
    # a new update is absolute: channel 3 off, channel 1 lower
    host.answer(channels(ch1=MlChannel(10, pulse(4))))
    assert (host.delivered(1), host.delivered(3)) == (4.0, 0.0)
    took, reply = host.command(MlStop())
    assert reply == Ack(int(Command.ML_STOP_ACK))
    assert took == pytest.approx(HV_OFF_S + 0.002)
    assert host.device.record.levels_at(host.clock.now()) == dict.fromkeys(range(1, 9), 0.0)
    assert host.status() == StimStatus.UNINITIALIZED
    assert host.current_data().result == Result.NOT_INITIALIZED_ERROR


def test_output_stops_when_the_stop_arrives_not_when_it_is_answered(host: RawHost) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(10))))
    sent = host.clock.now()
    host.send(MlStop())
    host.clock.advance(0.005)
    assert host.device.record.zero_at(1, sent) == pytest.approx(sent + 0.001)


def test_a_channel_switched_on_with_a_ramp_rises_over_that_many_pulses(host: RawHost) -> None:
    host.stimulate(channels(ch1=MlChannel(20, pulse(20), ramp=3)))
    host.clock.advance(0.2)
    steps = [(round(t - s[0][0], 3), ma) for s in [host.device.record.steps(1)] for t, _, ma in s]
    assert steps == [(0.0, 5.0), (0.02, 10.0), (0.04, 15.0), (0.06, 20.0)]


@pytest.mark.parametrize(
    "update",
    [
        channels(ch1=MlChannel(10, pulse(130.5))),
        channels(ch1=MlChannel(10, (Point(200, -131),))),
        channels(ch1=MlChannel(0, pulse(10))),
        channels(ch1=MlChannel(16383.5, pulse(10))),
        # 8 channels of 2 x 4095 µs every 60 ms: busy more than 100 % of the time
        MlUpdate(tuple(MlChannel(60, (Point(4095, 10), Point(4095, -10))) for _ in range(8))),
    ],
    ids=["130.5mA", "-131mA", "period0", "period16383.5", "duty"],
)
def test_what_the_c_library_refuses_is_a_parameter_error(host: RawHost, update: MlUpdate) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(6))))
    reply = host.answer(update)
    assert reply == Ack(int(Command.ML_UPDATE_ACK), Result.PARAMETER_ERROR)
    assert host.delivered(1) == 6.0  # the refused update changed nothing


def test_without_keep_alive_the_device_stops_after_2_s(host: RawHost) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(10))))
    started = host.clock.now()
    host.keep_alive(5.0)
    assert host.delivered(1) == 10.0  # kept alive every 0.5 s
    last = host.clock.now()
    host.current_data()
    last = host.clock.now()
    for _ in range(4):  # other commands are no keep-alive
        host.status()
        host.clock.advance(0.4)
    host.clock.advance(0.5)
    assert host.device.record.zero_at(1, started) == pytest.approx(last - 0.001 + 2.0)
    assert host.status() == StimStatus.UNINITIALIZED
    assert host.current_data().result == Result.NOT_INITIALIZED_ERROR


def test_an_electrode_off_above_15_ma_is_an_electrode_error_and_every_channel_stops(
    host: RawHost,
) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(20)), ch2=MlChannel(10, pulse(8))))
    host.device.inject(FaultKind.LEAD_OFF, channel=1)
    assert (host.delivered(1), host.delivered(2)) == (0.0, 0.0)
    data = host.current_data()
    assert data.result == OK
    assert data.states[:2] == (ChannelState.ELECTRODE_ERROR, ChannelState.OK)
    assert data.active[:2] == (False, False)
    host.device.inject(FaultKind.LEAD_ON, channel=1)
    host.clock.advance(0.1)
    assert host.delivered(1) == 0.0  # stopped until the host starts it again
    assert host.current_data().states[0] == ChannelState.ELECTRODE_ERROR
    host.answer(channels(ch1=MlChannel(10, pulse(20)), ch2=MlChannel(10, pulse(8))))
    assert (host.delivered(1), host.delivered(2)) == (20.0, 8.0)
    assert host.current_data().states[0] == ChannelState.OK


def test_without_stop_all_only_the_channel_with_the_error_stops() -> None:
    host = RawHost()
    assert host.answer(MlInit(False)) == Ack(int(Command.ML_INIT_ACK))
    host.answer(channels(ch1=MlChannel(10, pulse(20)), ch2=MlChannel(10, pulse(8))))
    host.device.inject(FaultKind.LEAD_OFF, channel=1)
    assert (host.delivered(1), host.delivered(2)) == (0.0, 8.0)
    assert host.current_data().active[:2] == (False, True)


def test_below_15_ma_an_electrode_off_goes_unseen_and_the_current_comes_back_with_it(
    host: RawHost,
) -> None:
    """The P24's documented limit (docs/devices.md, docs/safety.md): the residual risk S7
    cannot cover on this device."""
    host.stimulate(channels(ch1=MlChannel(10, pulse(12))))
    host.device.inject(FaultKind.LEAD_OFF, channel=1)
    assert host.delivered(1) == 0.0  # no current flows through an open circuit
    data = host.current_data()
    assert (data.states[0], data.active[0]) == (ChannelState.OK, True)  # nothing noticed
    back = host.clock.now()
    host.device.inject(FaultKind.LEAD_ON, channel=1)
    host.clock.advance(0.05)
    assert host.delivered(1) == 12.0
    (when, before, after) = host.device.record.steps(1)[-1]
    assert (before, after) == (0.0, 12.0)
    assert back <= when <= back + 0.011


def test_raising_an_unseen_off_electrode_to_15_ma_shows_it() -> None:
    host = RawHost()
    host.stimulate(channels(ch1=MlChannel(10, pulse(12))))
    host.device.inject(FaultKind.LEAD_OFF, channel=1)
    host.answer(channels(ch1=MlChannel(10, pulse(15))))
    assert host.delivered(1) == 0.0
    assert host.current_data().states[0] == ChannelState.ELECTRODE_ERROR


def test_the_detection_current_is_an_option() -> None:
    host = RawHost("sim://sciencemode4?seed=4&electrode_min_ma=0")
    host.stimulate(channels(ch1=MlChannel(10, pulse(2))))
    host.device.inject(FaultKind.LEAD_OFF, channel=1)
    assert host.current_data().states[0] == ChannelState.ELECTRODE_ERROR
    with pytest.raises(serial.SerialException, match="electrode_min_ma"):
        RawHost("sim://sciencemode4?electrode_min_ma=lots")


def test_a_damaged_packet_is_a_general_transfer_error_and_not_executed(host: RawHost) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(10))))
    wire = bytearray(codec.encode(9, channels(ch1=MlChannel(10, pulse(30)))))
    wire[-2] ^= 0x01
    host.port.write(bytes(wire))
    host.clock.advance(0.01)
    assert host.delivered(1) == 10.0
    errors = [codec.from_frame(f) for _, f in host.frames() if f.command == Command.GENERAL_ERROR]
    assert errors == [GeneralError(Result.TRANSFER_ERROR)]


def test_unknown_commands_and_bad_payloads(host: RawHost) -> None:
    host.port.write(encode_frame(RawFrame(5, 0)))  # Ll_Init: the low level is not emulated
    host.port.write(encode_frame(RawFrame(6, 500)))
    host.port.write(encode_frame(RawFrame(7, int(Command.ML_INIT), b"")))
    host.port.write(encode_frame(RawFrame(8, int(Command.GET_EXTENDED_VERSION), b"\x01")))
    host.port.write(encode_frame(RawFrame(9, int(Command.ML_GET_CURRENT_DATA), b"")))
    host.clock.advance(0.01)
    replies = {(f.pkt, f.command): codec.from_frame(f) for _, f in host.frames()}
    assert replies[(8, Command.GET_EXTENDED_VERSION_ACK)] == codec.GetExtendedVersionAck(
        Result.PARAMETER_ERROR, (0, 0, 0), (0, 0, 0)
    )
    assert replies[(9, Command.ML_GET_CURRENT_DATA_ACK)] == MlGetCurrentDataAck(
        Result.PARAMETER_ERROR
    )
    assert replies[(5, Command.UNKNOWN_COMMAND)] == UnknownCommand(Result.INVALID_CMD_ERROR)
    assert replies[(6, Command.UNKNOWN_COMMAND)] == UnknownCommand(Result.INVALID_CMD_ERROR)
    assert replies[(7, Command.ML_INIT_ACK)] == Ack(
        int(Command.ML_INIT_ACK), Result.PARAMETER_ERROR
    )


@pytest.mark.parametrize(
    ("kind", "result"),
    [(FaultKind.INTERNAL, Result.UC_STIM_TIMEOUT_ERROR), (FaultKind.EMERGENCY, Result.HV_ERROR)],
)
def test_device_faults_send_a_general_error_and_leave_the_mid_level(
    host: RawHost, kind: FaultKind, result: Result
) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(10))))
    host.device.inject(kind)
    host.clock.advance(0.01)
    assert host.delivered(1) == 0.0
    errors = [codec.from_frame(f) for _, f in host.frames() if f.command == Command.GENERAL_ERROR]
    assert errors == [GeneralError(result)]
    assert host.status() == StimStatus.UNINITIALIZED


def test_a_reset_leaves_the_mid_level_silently(host: RawHost) -> None:
    host.stimulate(channels(ch1=MlChannel(10, pulse(10))))
    host.device.inject(FaultKind.RESET)
    assert host.delivered(1) == 0.0
    assert host.current_data().result == Result.NOT_INITIALIZED_ERROR
    reply = host.answer(codec.Reset())
    assert reply == Ack(int(Command.RESET_ACK))
