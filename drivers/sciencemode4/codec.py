"""ScienceMode4 messages: the general and mid-level commands of the Hasomed P24, both ways.

Messages are frozen dataclasses without a packet number; the packet number travels in the
:class:`~drivers.sciencemode4.frame.RawFrame`. :func:`encode` and :func:`from_frame` convert.
Every layout is the public ScienceMode4 C library's (``smpt_packet_server.c``,
``smpt_ml_packet_client.c``, ``smpt_ml_packet_server.c``, ``smpt_ml_packet_utils.c``,
``smpt_ll_packet_client.c``); multi-byte numbers are big-endian (``smpt_insert_uint16_t``).
Encoding checks that every field fits its bits (``ValueError`` otherwise -- a programming error);
semantic ranges (0-130 mA, the duty limit ...) are checked by the driver before anything is sent,
and by the device. Decoding a known command with the wrong data length raises
:class:`PayloadError` (a :class:`~drivers.base.FramingError`); an unknown command number decodes to
:class:`Unknown`, which the device answers with ``Unknown_Cmd``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from drivers.base import FramingError
from drivers.sciencemode4.frame import RawFrame, encode_frame

CHANNELS = 8
"""Mid level addresses 8 channels (2 connectors x 4 channels: red, blue, black, white)."""
MAX_POINTS = 16
DEVICE_ID_LENGTH = 10


class Command(IntEnum):
    LL_INIT = 0
    LL_INIT_ACK = 1
    LL_CHANNEL_CONFIG = 2
    LL_CHANNEL_CONFIG_ACK = 3
    LL_STOP = 4
    LL_STOP_ACK = 5
    ML_INIT = 30
    ML_INIT_ACK = 31
    ML_UPDATE = 32
    ML_UPDATE_ACK = 33
    ML_STOP = 34
    ML_STOP_ACK = 35
    ML_GET_CURRENT_DATA = 36
    ML_GET_CURRENT_DATA_ACK = 37
    GET_VERSION_MAIN = 50
    GET_VERSION_MAIN_ACK = 51
    GET_DEVICE_ID = 52
    GET_DEVICE_ID_ACK = 53
    GET_BATTERY_STATUS = 54
    GET_BATTERY_STATUS_ACK = 55
    RESET = 58
    RESET_ACK = 59
    GET_STIM_STATUS = 62
    GET_STIM_STATUS_ACK = 63
    GENERAL_ERROR = 66
    UNKNOWN_COMMAND = 67
    GET_EXTENDED_VERSION = 68
    GET_EXTENDED_VERSION_ACK = 69


class Result(IntEnum):
    """``Smpt_Result``: the result byte of every acknowledgement."""

    SUCCESSFUL = 0
    TRANSFER_ERROR = 1
    PARAMETER_ERROR = 2
    PROTOCOL_ERROR = 3
    UC_STIM_TIMEOUT_ERROR = 4
    EMG_TIMEOUT_ERROR = 5
    EMG_REGISTER_ERROR = 6
    NOT_INITIALIZED_ERROR = 7
    HV_ERROR = 8
    DEMUX_TIMEOUT_ERROR = 9
    ELECTRODE_ERROR = 10
    INVALID_CMD_ERROR = 11
    DEMUX_PARAMETER_ERROR = 12
    DEMUX_NOT_INITIALIZED_ERROR = 13
    DEMUX_TRANSFER_ERROR = 14
    DEMUX_UNKNOWN_ACK_ERROR = 15
    PULSE_TIMEOUT_ERROR = 16
    FUEL_GAUGE_ERROR = 17
    LIVE_SIGNAL_ERROR = 18
    FILE_TRANSMISSION_TIMEOUT = 19
    FILE_NOT_FOUND = 20
    BUSY = 21
    FILE_ERROR = 22
    FLASH_ERASE_ERROR = 23
    FLASH_WRITE_ERROR = 24
    UNKNOWN_CONTROLLER_ERROR = 25
    FIRMWARE_TOO_LARGE_ERROR = 26
    FUEL_GAUGE_NOT_PROGRAMMED = 27
    PULSE_LOW_CURRENT_ERROR = 28


class StimStatus(IntEnum):
    UNINITIALIZED = 0
    LL_INITIALIZED = 1
    ML_INITIALIZED = 2
    ML_RUNNING = 3


class HighVoltage(IntEnum):
    DEFAULT = 0
    OFF = 1
    V30 = 2
    V60 = 3
    V90 = 4
    V120 = 5
    V150 = 6


class MlData(IntEnum):
    """``Smpt_Ml_Data``: what Ml_Get_Current_Data asks for."""

    STIMULATION = 2
    STIMULATION_EIGHT_CHANNELS = 3
    CHANNELS = 4
    """Every channel's stimulation state and error state (what this driver asks for)."""


class ChannelState(IntEnum):
    """``Smpt_Ml_Channel_State``: one channel's state in Ml_Get_Current_Data_Ack."""

    OK = 0
    ELECTRODE_ERROR = 1
    """The measured load says the electrode has fallen off."""
    TIMEOUT_ERROR = 2
    """The period of the pulse cannot be achieved."""
    LOW_CURRENT_ERROR = 3
    """The selected pulse current cannot be achieved."""


class PayloadError(FramingError):
    """A packet of a known command whose data does not have that command's shape."""

    def __init__(self, message: str, pkt: int, command: int) -> None:
        super().__init__(message)
        self.pkt = pkt
        self.command = command


def _byte(name: str, value: int, high: int = 255) -> int:
    if not 0 <= value <= high:
        raise ValueError(f"{name} {value} does not fit 0-{high}")
    return value


def _u16(value: int) -> bytes:
    return bytes(((value >> 8) & 0xFF, value & 0xFF))


# --------------------------------------------------------------------------- points, channels


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a pulse pattern: ``time_us`` at ``current_ma`` (4 bytes on the wire)."""

    time_us: int
    """0-4095 µs (the device treats values under 10 as 10)."""
    current_ma: float
    """-150...150 mA in 0.5 mA steps on the wire (sent as ``2 * I + 300`` in 10 bits)."""
    interpolation: int = 0

    def data(self) -> bytes:
        time = _byte("point time", self.time_us, 4095)
        doubled = self.current_ma * 2.0
        if not math.isfinite(doubled) or doubled != int(doubled) or abs(doubled) > 300:
            raise ValueError(f"point current {self.current_ma!r} mA is not a 0.5 mA step in ±150")
        # the C library's (uint16_t)(current * 2 + 300); exact on the 0.5 mA grid
        code = int(doubled) + 300
        mode = _byte("interpolation mode", self.interpolation, 3)
        return bytes(
            (
                time >> 4,
                ((time << 4) & 0xF0) | ((code >> 6) & 0x0F),
                (code << 2) & 0xFC,
                (mode << 5) & 0x60,
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> Point:
        time = (data[0] << 4) | (data[1] >> 4)
        code = ((data[1] & 0x0F) << 6) | (data[2] >> 2)
        return cls(time, (code - 300) / 2.0, (data[3] >> 5) & 0x03)


@dataclass(frozen=True, slots=True)
class MlChannel:
    """One enabled channel of an Ml_Update: ramp, period and its 1-16 points."""

    period_ms: float
    """0.5-16383 ms in 0.5 ms steps (0.25-8191.75 ms in 0.25 ms with ``double_accuracy``)."""
    points: tuple[Point, ...]
    ramp: int = 0
    """0-15 pulses of linearly rising current when the channel is switched on."""
    double_accuracy: bool = False

    @property
    def period_code(self) -> int:
        code = self.period_ms * (4.0 if self.double_accuracy else 2.0)
        if not math.isfinite(code) or code != int(code) or not 0 <= code <= 0x7FFF:
            step = "0.25" if self.double_accuracy else "0.5"
            raise ValueError(f"period {self.period_ms!r} ms is not a {step} ms step in range")
        return int(code)

    @property
    def peak_ma(self) -> float:
        """The highest current magnitude of the pattern."""
        return max((abs(p.current_ma) for p in self.points), default=0.0)

    def data(self) -> bytes:
        if not 1 <= len(self.points) <= MAX_POINTS:
            raise ValueError(f"{len(self.points)} points; a channel has 1-{MAX_POINTS}")
        ramp = _byte("ramp", self.ramp, 15)
        shifted = self.period_code << 1
        return bytes(
            (
                ((len(self.points) - 1) << 4) | ramp,
                (shifted >> 8) & 0xFF,
                (shifted & 0xFE) | (1 if self.double_accuracy else 0),
            )
        ) + b"".join(p.data() for p in self.points)


# --------------------------------------------------------------------------- host -> device


@dataclass(frozen=True, slots=True)
class _NoData:
    def data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class GetDeviceId(_NoData):
    command = Command.GET_DEVICE_ID


@dataclass(frozen=True, slots=True)
class GetVersionMain(_NoData):
    command = Command.GET_VERSION_MAIN


@dataclass(frozen=True, slots=True)
class GetExtendedVersion(_NoData):
    command = Command.GET_EXTENDED_VERSION


@dataclass(frozen=True, slots=True)
class GetBatteryStatus(_NoData):
    command = Command.GET_BATTERY_STATUS


@dataclass(frozen=True, slots=True)
class GetStimStatus(_NoData):
    command = Command.GET_STIM_STATUS


@dataclass(frozen=True, slots=True)
class Reset(_NoData):
    command = Command.RESET


@dataclass(frozen=True, slots=True)
class MlStop(_NoData):
    """Stop every channel and switch the high voltage off (execution about 40 ms)."""

    command = Command.ML_STOP


@dataclass(frozen=True, slots=True)
class LlStop(_NoData):
    """Leave the low level (sent only to stop a device someone else left there)."""

    command = Command.LL_STOP


@dataclass(frozen=True, slots=True)
class MlInit:
    """Enter the mid level: high voltage on (about 2 x 40 ms)."""

    stop_all_channels_on_error: bool = True
    command = Command.ML_INIT

    def data(self) -> bytes:
        return bytes((1 if self.stop_all_channels_on_error else 0,))


@dataclass(frozen=True, slots=True)
class MlUpdate:
    """Start or change stimulation: per channel 1-8, its configuration or None (off)."""

    channels: tuple[MlChannel | None, ...]
    command = Command.ML_UPDATE

    def __post_init__(self) -> None:
        if len(self.channels) != CHANNELS:
            raise ValueError(f"Ml_Update takes {CHANNELS} channel entries")

    @property
    def enabled(self) -> tuple[int, ...]:
        """The enabled channels, numbered from 1."""
        return tuple(i + 1 for i, c in enumerate(self.channels) if c is not None)

    def data(self) -> bytes:
        mask = 0
        for index, channel in enumerate(self.channels):
            if channel is not None:
                mask |= 1 << index
        return bytes((mask,)) + b"".join(c.data() for c in self.channels if c is not None)


@dataclass(frozen=True, slots=True)
class MlGetCurrentData:
    """The mid level's keep-alive: at least every 2 s while stimulating."""

    selection: int = MlData.CHANNELS
    command = Command.ML_GET_CURRENT_DATA

    def data(self) -> bytes:
        return bytes((_byte("data selection", self.selection),))


# --------------------------------------------------------------------------- device -> host


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement that carries only a result (Ml_Init, Ml_Update, Ml_Stop, Reset,
    Ll_Stop)."""

    command: int
    result: int = Result.SUCCESSFUL

    def data(self) -> bytes:
        return bytes((_byte("result", self.result),))


@dataclass(frozen=True, slots=True)
class GeneralError:
    """Unsolicited (no request): the device could not process something."""

    result: int
    command = Command.GENERAL_ERROR

    def data(self) -> bytes:
        return bytes((_byte("result", self.result),))


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """The device cannot process the command number it received (same packet number)."""

    result: int = Result.INVALID_CMD_ERROR
    command = Command.UNKNOWN_COMMAND

    def data(self) -> bytes:
        return bytes((_byte("result", self.result),))


@dataclass(frozen=True, slots=True)
class GetDeviceIdAck:
    result: int
    device_id: str
    """10 characters (padded with NUL on the wire)."""
    command = Command.GET_DEVICE_ID_ACK

    def data(self) -> bytes:
        raw = self.device_id.encode("ascii")
        if len(raw) > DEVICE_ID_LENGTH:
            raise ValueError(f"device id {self.device_id!r} is longer than 10 characters")
        return bytes((_byte("result", self.result),)) + raw.ljust(DEVICE_ID_LENGTH, b"\0")


Version = tuple[int, int, int]


def _version(value: Version) -> bytes:
    return bytes(_byte("version", part) for part in value)


@dataclass(frozen=True, slots=True)
class GetVersionMainAck:
    result: int
    firmware: Version
    sciencemode: Version
    command = Command.GET_VERSION_MAIN_ACK

    def data(self) -> bytes:
        return (
            bytes((_byte("result", self.result),))
            + _version(self.firmware)
            + _version(self.sciencemode)
        )


@dataclass(frozen=True, slots=True)
class GetExtendedVersionAck:
    result: int
    firmware: Version
    sciencemode: Version
    firmware_hash: int = 0
    hash_type: int = 0
    hash_valid: bool = False
    command = Command.GET_EXTENDED_VERSION_ACK

    def data(self) -> bytes:
        if not 0 <= self.firmware_hash <= 0xFFFFFFFF:
            raise ValueError("firmware hash does not fit 32 bits")
        return (
            bytes((_byte("result", self.result),))
            + _version(self.firmware)
            + _version(self.sciencemode)
            + self.firmware_hash.to_bytes(4, "big")
            + bytes((_byte("hash type", self.hash_type), 1 if self.hash_valid else 0))
        )


@dataclass(frozen=True, slots=True)
class GetBatteryStatusAck:
    result: int
    level_pct: int
    voltage_mv: int
    command = Command.GET_BATTERY_STATUS_ACK

    def data(self) -> bytes:
        return bytes(
            (_byte("result", self.result), _byte("battery level", self.level_pct, 100))
        ) + _u16(_byte("battery voltage", self.voltage_mv, 0xFFFF))


@dataclass(frozen=True, slots=True)
class GetStimStatusAck:
    result: int
    status: int
    high_voltage: int
    command = Command.GET_STIM_STATUS_ACK

    def data(self) -> bytes:
        return bytes(
            (
                _byte("result", self.result),
                _byte("stim status", self.status),
                _byte("high voltage", self.high_voltage),
            )
        )


@dataclass(frozen=True, slots=True)
class MlGetCurrentDataAck:
    """Per channel (1-8): stimulating or not, and its :class:`ChannelState`.

    Only the ``CHANNELS`` selection (4) carries these; for the other selections the codec
    keeps the raw bytes in ``extra``."""

    result: int
    selection: int = MlData.CHANNELS
    active: tuple[bool, ...] = (False,) * CHANNELS
    states: tuple[int, ...] = (ChannelState.OK,) * CHANNELS
    extra: bytes = b""
    command = Command.ML_GET_CURRENT_DATA_ACK

    def data(self) -> bytes:
        head = bytes((_byte("result", self.result), _byte("data selection", self.selection)))
        if self.selection != MlData.CHANNELS:
            return head + self.extra
        mask = sum(1 << i for i, on in enumerate(self.active) if on)
        nibbles = bytes(
            (_byte("channel state", self.states[i], 15))
            | (_byte("channel state", self.states[i + 1], 15) << 4)
            for i in range(0, CHANNELS, 2)
        )
        return head + bytes((mask,)) + nibbles


@dataclass(frozen=True, slots=True)
class Unknown:
    """A packet whose command number this codec does not know (kept as raw data)."""

    number: int
    payload: bytes = b""

    @property
    def command(self) -> int:
        return self.number

    def data(self) -> bytes:
        return self.payload


Request = (
    GetDeviceId
    | GetVersionMain
    | GetExtendedVersion
    | GetBatteryStatus
    | GetStimStatus
    | Reset
    | MlInit
    | MlUpdate
    | MlStop
    | MlGetCurrentData
    | LlStop
)
Reply = (
    Ack
    | GeneralError
    | UnknownCommand
    | GetDeviceIdAck
    | GetVersionMainAck
    | GetExtendedVersionAck
    | GetBatteryStatusAck
    | GetStimStatusAck
    | MlGetCurrentDataAck
)
Message = Request | Reply | Unknown

ACK_FOR: dict[int, int] = {
    int(c): int(c) + 1
    for c in (
        Command.LL_INIT,
        Command.LL_CHANNEL_CONFIG,
        Command.LL_STOP,
        Command.ML_INIT,
        Command.ML_UPDATE,
        Command.ML_STOP,
        Command.ML_GET_CURRENT_DATA,
        Command.GET_VERSION_MAIN,
        Command.GET_DEVICE_ID,
        Command.GET_BATTERY_STATUS,
        Command.RESET,
        Command.GET_STIM_STATUS,
        Command.GET_EXTENDED_VERSION,
    )
}
"""Host command -> the device's acknowledgement command (always the command + 1)."""


# --------------------------------------------------------------------------- conversion


def to_frame(pkt: int, message: Message) -> RawFrame:
    return RawFrame(pkt, int(message.command), message.data())


def encode(pkt: int, message: Message) -> bytes:
    """The wire bytes for ``message`` in packet ``pkt`` (0-63)."""
    return encode_frame(to_frame(pkt, message))


def _need(frame: RawFrame, name: str, length: int) -> bytes:
    if len(frame.data) != length:
        raise PayloadError(
            f"{name} needs {length} data bytes, got {len(frame.data)}", frame.pkt, frame.command
        )
    return frame.data


def _empty(name: str, message: Message) -> Callable[[RawFrame], Message]:
    def decode(frame: RawFrame) -> Message:
        _need(frame, name, 0)
        return message

    return decode


def _ack(name: str) -> Callable[[RawFrame], Message]:
    def decode(frame: RawFrame) -> Message:
        return Ack(frame.command, _need(frame, name, 1)[0])

    return decode


def _ml_update(frame: RawFrame) -> MlUpdate:
    data = frame.data
    if not data:
        raise PayloadError("Ml_Update without a channel mask", frame.pkt, frame.command)
    mask = data[0]
    index = 1
    channels: list[MlChannel | None] = []
    for bit in range(CHANNELS):
        if not mask & (1 << bit):
            channels.append(None)
            continue
        if index + 3 > len(data):
            raise PayloadError(
                f"Ml_Update cut short in channel {bit + 1}", frame.pkt, frame.command
            )
        head, high, low = data[index], data[index + 1], data[index + 2]
        index += 3
        count = (head >> 4) + 1
        end = index + 4 * count
        if end > len(data):
            raise PayloadError(
                f"Ml_Update channel {bit + 1} needs {count} points", frame.pkt, frame.command
            )
        points = tuple(Point.decode(data[i : i + 4]) for i in range(index, end, 4))
        index = end
        double = bool(low & 0x01)
        code = ((high << 8) | (low & 0xFE)) >> 1
        channels.append(MlChannel(code / (4.0 if double else 2.0), points, head & 0x0F, double))
    if index != len(data):
        raise PayloadError(
            f"Ml_Update has {len(data) - index} bytes after its channels", frame.pkt, frame.command
        )
    return MlUpdate(tuple(channels))


def _current_data_ack(frame: RawFrame) -> MlGetCurrentDataAck:
    data = frame.data
    if len(data) < 2:
        raise PayloadError("Ml_Get_Current_Data_Ack too short", frame.pkt, frame.command)
    result, selection = data[0], data[1]
    if selection != MlData.CHANNELS:
        return MlGetCurrentDataAck(result, selection, extra=bytes(data[2:]))
    if len(data) != 7:
        raise PayloadError(
            f"Ml_Get_Current_Data_Ack (channels) needs 7 data bytes, got {len(data)}",
            frame.pkt,
            frame.command,
        )
    active = tuple(bool(data[2] & (1 << i)) for i in range(CHANNELS))
    states = tuple((data[3 + i // 2] >> (4 * (i % 2))) & 0x0F for i in range(CHANNELS))
    return MlGetCurrentDataAck(result, selection, active, states)


def _device_id_ack(frame: RawFrame) -> GetDeviceIdAck:
    data = _need(frame, "Get_Device_Id_Ack", 1 + DEVICE_ID_LENGTH)
    text = data[1:].split(b"\0", 1)[0].decode("ascii", errors="replace")
    return GetDeviceIdAck(data[0], text)


def _version_main_ack(frame: RawFrame) -> GetVersionMainAck:
    d = _need(frame, "Get_Version_Main_Ack", 7)
    return GetVersionMainAck(d[0], (d[1], d[2], d[3]), (d[4], d[5], d[6]))


def _extended_version_ack(frame: RawFrame) -> GetExtendedVersionAck:
    d = _need(frame, "Get_Extended_Version_Ack", 13)
    return GetExtendedVersionAck(
        d[0],
        (d[1], d[2], d[3]),
        (d[4], d[5], d[6]),
        int.from_bytes(d[7:11], "big"),
        d[11],
        d[12] == 1,
    )


def _battery_ack(frame: RawFrame) -> GetBatteryStatusAck:
    d = _need(frame, "Get_Battery_Status_Ack", 4)
    return GetBatteryStatusAck(d[0], d[1], (d[2] << 8) | d[3])


def _stim_status_ack(frame: RawFrame) -> GetStimStatusAck:
    d = _need(frame, "Get_Stim_Status_Ack", 3)
    return GetStimStatusAck(d[0], d[1], d[2])


_DECODERS: dict[int, Callable[[RawFrame], Message]] = {
    Command.GET_DEVICE_ID: _empty("Get_Device_Id", GetDeviceId()),
    Command.GET_VERSION_MAIN: _empty("Get_Version_Main", GetVersionMain()),
    Command.GET_EXTENDED_VERSION: _empty("Get_Extended_Version", GetExtendedVersion()),
    Command.GET_BATTERY_STATUS: _empty("Get_Battery_Status", GetBatteryStatus()),
    Command.GET_STIM_STATUS: _empty("Get_Stim_Status", GetStimStatus()),
    Command.RESET: _empty("Reset", Reset()),
    Command.ML_STOP: _empty("Ml_Stop", MlStop()),
    Command.LL_STOP: _empty("Ll_Stop", LlStop()),
    Command.ML_INIT: lambda f: MlInit(bool(_need(f, "Ml_Init", 1)[0] & 0x01)),
    Command.ML_UPDATE: _ml_update,
    Command.ML_GET_CURRENT_DATA: lambda f: MlGetCurrentData(_need(f, "Ml_Get_Current_Data", 1)[0]),
    Command.ML_INIT_ACK: _ack("Ml_Init_Ack"),
    Command.ML_UPDATE_ACK: _ack("Ml_Update_Ack"),
    Command.ML_STOP_ACK: _ack("Ml_Stop_Ack"),
    Command.RESET_ACK: _ack("Reset_Ack"),
    Command.LL_STOP_ACK: _ack("Ll_Stop_Ack"),
    Command.ML_GET_CURRENT_DATA_ACK: _current_data_ack,
    Command.GET_DEVICE_ID_ACK: _device_id_ack,
    Command.GET_VERSION_MAIN_ACK: _version_main_ack,
    Command.GET_EXTENDED_VERSION_ACK: _extended_version_ack,
    Command.GET_BATTERY_STATUS_ACK: _battery_ack,
    Command.GET_STIM_STATUS_ACK: _stim_status_ack,
    Command.GENERAL_ERROR: lambda f: GeneralError(_need(f, "General_Error", 1)[0]),
    Command.UNKNOWN_COMMAND: lambda f: UnknownCommand(_need(f, "Unknown_Cmd", 1)[0]),
}


def from_frame(frame: RawFrame) -> Message:
    """The message in ``frame``; :class:`PayloadError` if its data has the wrong shape."""
    decoder = _DECODERS.get(frame.command)
    if decoder is None:
        return Unknown(frame.command, frame.data)
    return decoder(frame)


def result_name(result: int) -> str:
    """``Smpt_Result`` name for people (``electrode error``), or the number."""
    try:
        return Result(result).name.lower().replace("_", " ")
    except ValueError:
        return f"result {result}"


__all__ = [
    "ACK_FOR",
    "CHANNELS",
    "Ack",
    "ChannelState",
    "Command",
    "GeneralError",
    "GetBatteryStatus",
    "GetBatteryStatusAck",
    "GetDeviceId",
    "GetDeviceIdAck",
    "GetExtendedVersion",
    "GetExtendedVersionAck",
    "GetStimStatus",
    "GetStimStatusAck",
    "GetVersionMain",
    "GetVersionMainAck",
    "HighVoltage",
    "LlStop",
    "Message",
    "MlChannel",
    "MlData",
    "MlGetCurrentData",
    "MlGetCurrentDataAck",
    "MlInit",
    "MlStop",
    "MlUpdate",
    "PayloadError",
    "Point",
    "Reply",
    "Request",
    "Reset",
    "Result",
    "StimStatus",
    "Unknown",
    "UnknownCommand",
    "encode",
    "from_frame",
    "result_name",
    "to_frame",
]
