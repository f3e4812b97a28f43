"""ScienceMode2 messages: every command and acknowledgement of the RehaStim 2 protocol.

Messages are frozen dataclasses without a packet number; the packet number travels in the
:class:`~drivers.sciencemode2.frame.RawFrame`. :func:`to_frame` and :func:`from_frame` convert.
Result bytes are signed (two's complement). Encoding checks that every field fits its bytes
(``ValueError`` otherwise -- a programming error); semantic ranges (8-1025 ms, 0-130 mA ...) are
checked by the driver before anything is sent, and by the device.

Decoding a frame with a known command but the wrong data length raises
:class:`PayloadError` (a :class:`~drivers.base.FramingError`); an unknown command number decodes
to :class:`Unknown`, because the device answers those with ``UnknownCommand``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from drivers.base import FramingError
from drivers.sciencemode2.frame import RawFrame, encode_frame

PROTOCOL_VERSION = 1
"""The ScienceMode2 protocol version the host speaks (sent by the device in ``Init``)."""


class Command(IntEnum):
    INIT = 1
    INIT_ACK = 2
    UNKNOWN_COMMAND = 3
    WATCHDOG = 4
    GET_STIMULATION_MODE = 10
    GET_STIMULATION_MODE_ACK = 11
    INIT_CHANNEL_LIST_MODE = 30
    INIT_CHANNEL_LIST_MODE_ACK = 31
    START_CHANNEL_LIST_MODE = 32
    START_CHANNEL_LIST_MODE_ACK = 33
    STOP_CHANNEL_LIST_MODE = 34
    STOP_CHANNEL_LIST_MODE_ACK = 35
    SINGLE_PULSE = 36
    SINGLE_PULSE_ACK = 37
    STIMULATION_ERROR = 38


class Result(IntEnum):
    """Acknowledgement results (signed bytes)."""

    OK = 0
    TRANSFER_ERROR = -1
    PARAMETER_ERROR = -2
    WRONG_MODE = -3
    INCOMPATIBLE_VERSION = -5
    BUSY = -8


class StimulationMode(IntEnum):
    START = 0
    INITIALISED = 1
    STARTED = 2


class PulseMode(IntEnum):
    SINGLE = 0
    DOUBLET = 1
    TRIPLET = 2


class StimulationErrorCode(IntEnum):
    EMERGENCY_SWITCH = -1
    ELECTRODE_ERROR = -2
    MODULE_ERROR = -3


class ChannelExecution(IntEnum):
    SEQUENTIAL = 0
    AS_SOON_AS_POSSIBLE = 1


class PayloadError(FramingError):
    """A frame of a known command whose data does not have that command's shape."""

    def __init__(self, message: str, pkt: int, command: int) -> None:
        super().__init__(message)
        self.pkt = pkt
        self.command = command


# --------------------------------------------------------------------------- helpers


def _byte(name: str, value: int, low: int = 0, high: int = 255) -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} {value} does not fit {low}-{high}")
    return value


def _signed(value: int) -> int:
    if not -128 <= value <= 127:
        raise ValueError(f"result {value} does not fit a signed byte")
    return value & 0xFF


def _unsigned_to_signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _u16(name: str, value: int, high: int = 0xFFFF) -> bytes:
    _byte(name, value, 0, high)
    return bytes((value >> 8, value & 0xFF))


def mask_of(channels: tuple[int, ...] | frozenset[int] | set[int]) -> int:
    """Channel bit mask: bit (channel-1) for each channel 1-8."""
    mask = 0
    for channel in channels:
        _byte("channel", channel, 1, 8)
        mask |= 1 << (channel - 1)
    return mask


def channels_of(mask: int) -> tuple[int, ...]:
    """Channels 1-8 set in ``mask``, ascending."""
    return tuple(ch for ch in range(1, 9) if mask & (1 << (ch - 1)))


def main_interval_code(interval_ms: float) -> int:
    """``(t_ms - 1) / 0.5``; ``t`` must be a multiple of 0.5 ms in 1-1025 ms."""
    code = (interval_ms - 1.0) / 0.5
    if code != int(code) or not 0 <= code <= 2048:
        raise ValueError(f"main interval {interval_ms} ms is not a 0.5 ms step in 1-1025 ms")
    return int(code)


def main_interval_ms(code: int) -> float:
    return 1.0 + 0.5 * code


def inter_pulse_interval_code(interval_ms: float) -> int:
    """``(t_ms - 1.5) / 0.5``; ``t`` a multiple of 0.5 ms in 1.5-129 ms."""
    code = (interval_ms - 1.5) / 0.5
    if code != int(code) or not 0 <= code <= 255:
        raise ValueError(f"inter-pulse interval {interval_ms} ms is not a 0.5 ms step in 1.5-129")
    return int(code)


def inter_pulse_interval_ms(code: int) -> float:
    return 1.5 + 0.5 * code


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Init:
    """Device -> host, every 500 ms until acknowledged."""

    version: int = PROTOCOL_VERSION
    command = Command.INIT

    def data(self) -> bytes:
        return bytes((_byte("version", self.version),))


@dataclass(frozen=True, slots=True)
class InitAck:
    """Host -> device, with the Init's packet number."""

    result: int = Result.OK
    command = Command.INIT_ACK

    def data(self) -> bytes:
        return bytes((_signed(self.result),))


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """Device -> host: the command number it did not understand."""

    unknown: int
    command = Command.UNKNOWN_COMMAND

    def data(self) -> bytes:
        return bytes((_byte("command", self.unknown),))


@dataclass(frozen=True, slots=True)
class Watchdog:
    """Host -> device keep-alive; never acknowledged."""

    command = Command.WATCHDOG

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class GetStimulationMode:
    command = Command.GET_STIMULATION_MODE

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class GetStimulationModeAck:
    result: int
    mode: int
    command = Command.GET_STIMULATION_MODE_ACK

    def data(self) -> bytes:
        return bytes((_signed(self.result), _byte("mode", self.mode)))


@dataclass(frozen=True, slots=True)
class InitChannelListMode:
    """Set up channel list mode (the device's state becomes "initialised")."""

    low_frequency_factor: int
    active_mask: int
    low_frequency_mask: int
    inter_pulse_code: int
    main_interval_code: int
    execution: int = ChannelExecution.SEQUENTIAL
    command = Command.INIT_CHANNEL_LIST_MODE

    @property
    def active_channels(self) -> tuple[int, ...]:
        return channels_of(self.active_mask)

    @property
    def main_interval_ms(self) -> float:
        return main_interval_ms(self.main_interval_code)

    @property
    def inter_pulse_ms(self) -> float:
        return inter_pulse_interval_ms(self.inter_pulse_code)

    def data(self) -> bytes:
        return (
            bytes(
                (
                    _byte("low-frequency factor", self.low_frequency_factor),
                    _byte("active channel mask", self.active_mask),
                    _byte("low-frequency channel mask", self.low_frequency_mask),
                    _byte("inter-pulse interval code", self.inter_pulse_code),
                )
            )
            + _u16("main interval code", self.main_interval_code)
            + bytes((_byte("channel execution", self.execution),))
        )


@dataclass(frozen=True, slots=True)
class ChannelPulse:
    """One active channel's entry in StartChannelListMode."""

    mode: int
    pulse_width_us: int
    current_ma: int

    def data(self) -> bytes:
        return (
            bytes((_byte("pulse mode", self.mode),))
            + _u16("pulse width", self.pulse_width_us)
            + bytes((_byte("current", self.current_ma),))
        )


@dataclass(frozen=True, slots=True)
class StartChannelListMode:
    """Start (or, sent again, update) channel list mode: one entry per active channel."""

    channels: tuple[ChannelPulse, ...]
    command = Command.START_CHANNEL_LIST_MODE

    def data(self) -> bytes:
        return b"".join(entry.data() for entry in self.channels)


@dataclass(frozen=True, slots=True)
class StopChannelListMode:
    command = Command.STOP_CHANNEL_LIST_MODE

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class SinglePulse:
    channel: int
    """0-7 on the wire (channel 1 is 0)."""
    pulse_width_us: int
    current_ma: int
    command = Command.SINGLE_PULSE

    def data(self) -> bytes:
        return (
            bytes((_byte("channel", self.channel),))
            + _u16("pulse width", self.pulse_width_us)
            + bytes((_byte("current", self.current_ma),))
        )


@dataclass(frozen=True, slots=True)
class InitChannelListModeAck:
    result: int
    command = Command.INIT_CHANNEL_LIST_MODE_ACK

    def data(self) -> bytes:
        return bytes((_signed(self.result),))


@dataclass(frozen=True, slots=True)
class StartChannelListModeAck:
    result: int
    command = Command.START_CHANNEL_LIST_MODE_ACK

    def data(self) -> bytes:
        return bytes((_signed(self.result),))


@dataclass(frozen=True, slots=True)
class StopChannelListModeAck:
    result: int
    command = Command.STOP_CHANNEL_LIST_MODE_ACK

    def data(self) -> bytes:
        return bytes((_signed(self.result),))


@dataclass(frozen=True, slots=True)
class SinglePulseAck:
    result: int
    command = Command.SINGLE_PULSE_ACK

    def data(self) -> bytes:
        return bytes((_signed(self.result),))


@dataclass(frozen=True, slots=True)
class StimulationError:
    """Device -> host: output stopped and modes reset (emergency switch, electrode, module)."""

    error: int
    command = Command.STIMULATION_ERROR

    def data(self) -> bytes:
        return bytes((_signed(self.error),))


@dataclass(frozen=True, slots=True)
class Unknown:
    """A frame whose command number this codec does not know (kept as raw data)."""

    number: int
    payload: bytes = b""

    @property
    def command(self) -> int:
        return self.number

    def data(self) -> bytes:
        return self.payload


Ack = (
    InitAck
    | GetStimulationModeAck
    | InitChannelListModeAck
    | StartChannelListModeAck
    | StopChannelListModeAck
    | SinglePulseAck
)
Message = (
    Init
    | InitAck
    | UnknownCommand
    | Watchdog
    | GetStimulationMode
    | GetStimulationModeAck
    | InitChannelListMode
    | InitChannelListModeAck
    | StartChannelListMode
    | StartChannelListModeAck
    | StopChannelListMode
    | StopChannelListModeAck
    | SinglePulse
    | SinglePulseAck
    | StimulationError
    | Unknown
)

ACK_FOR: dict[Command, Command] = {
    Command.GET_STIMULATION_MODE: Command.GET_STIMULATION_MODE_ACK,
    Command.INIT_CHANNEL_LIST_MODE: Command.INIT_CHANNEL_LIST_MODE_ACK,
    Command.START_CHANNEL_LIST_MODE: Command.START_CHANNEL_LIST_MODE_ACK,
    Command.STOP_CHANNEL_LIST_MODE: Command.STOP_CHANNEL_LIST_MODE_ACK,
    Command.SINGLE_PULSE: Command.SINGLE_PULSE_ACK,
}
"""Host command -> the device's acknowledgement command."""


# --------------------------------------------------------------------------- conversion


def to_frame(pkt: int, message: Message) -> RawFrame:
    return RawFrame(pkt, int(message.command), message.data())


def encode(pkt: int, message: Message) -> bytes:
    """The wire bytes for ``message`` in packet ``pkt``."""
    return encode_frame(to_frame(pkt, message))


def _need(frame: RawFrame, name: str, length: int) -> bytes:
    if len(frame.data) != length:
        raise PayloadError(
            f"{name} needs {length} data bytes, got {len(frame.data)}", frame.pkt, frame.command
        )
    return frame.data


def _result(frame: RawFrame, name: str) -> int:
    return _unsigned_to_signed(_need(frame, name, 1)[0])


def _start_channel_list_mode(frame: RawFrame) -> StartChannelListMode:
    data = frame.data
    if len(data) % 4 != 0 or len(data) > 32:
        raise PayloadError(
            f"StartChannelListMode needs 4 data bytes per channel (at most 8), got {len(data)}",
            frame.pkt,
            frame.command,
        )
    entries = tuple(
        ChannelPulse(data[i], (data[i + 1] << 8) | data[i + 2], data[i + 3])
        for i in range(0, len(data), 4)
    )
    return StartChannelListMode(entries)


def _init_channel_list_mode(frame: RawFrame) -> InitChannelListMode:
    d = _need(frame, "InitChannelListMode", 7)
    return InitChannelListMode(d[0], d[1], d[2], d[3], (d[4] << 8) | d[5], d[6])


def _single_pulse(frame: RawFrame) -> SinglePulse:
    d = _need(frame, "SinglePulse", 4)
    return SinglePulse(d[0], (d[1] << 8) | d[2], d[3])


def _empty(name: str, message: Message) -> Callable[[RawFrame], Message]:
    def decode(frame: RawFrame) -> Message:
        _need(frame, name, 0)
        return message

    return decode


def _mode_ack(frame: RawFrame) -> GetStimulationModeAck:
    d = _need(frame, "GetStimulationModeAck", 2)
    return GetStimulationModeAck(_unsigned_to_signed(d[0]), d[1])


_DECODERS: dict[int, Callable[[RawFrame], Message]] = {
    Command.INIT: lambda f: Init(_need(f, "Init", 1)[0]),
    Command.INIT_ACK: lambda f: InitAck(_result(f, "InitAck")),
    Command.UNKNOWN_COMMAND: lambda f: UnknownCommand(_need(f, "UnknownCommand", 1)[0]),
    Command.WATCHDOG: _empty("Watchdog", Watchdog()),
    Command.GET_STIMULATION_MODE: _empty("GetStimulationMode", GetStimulationMode()),
    Command.GET_STIMULATION_MODE_ACK: _mode_ack,
    Command.INIT_CHANNEL_LIST_MODE: _init_channel_list_mode,
    Command.INIT_CHANNEL_LIST_MODE_ACK: lambda f: InitChannelListModeAck(
        _result(f, "InitChannelListModeAck")
    ),
    Command.START_CHANNEL_LIST_MODE: _start_channel_list_mode,
    Command.START_CHANNEL_LIST_MODE_ACK: lambda f: StartChannelListModeAck(
        _result(f, "StartChannelListModeAck")
    ),
    Command.STOP_CHANNEL_LIST_MODE: _empty("StopChannelListMode", StopChannelListMode()),
    Command.STOP_CHANNEL_LIST_MODE_ACK: lambda f: StopChannelListModeAck(
        _result(f, "StopChannelListModeAck")
    ),
    Command.SINGLE_PULSE: _single_pulse,
    Command.SINGLE_PULSE_ACK: lambda f: SinglePulseAck(_result(f, "SinglePulseAck")),
    Command.STIMULATION_ERROR: lambda f: StimulationError(_result(f, "StimulationError")),
}


def from_frame(frame: RawFrame) -> Message:
    """The message in ``frame``; :class:`PayloadError` if its data has the wrong shape."""
    decoder = _DECODERS.get(frame.command)
    if decoder is None:
        return Unknown(frame.command, frame.data)
    return decoder(frame)
