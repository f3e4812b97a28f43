"""TSP/2 messages: typed commands (host -> device) and replies/reports (device -> host).

Both directions are here so that the host driver and the simulator share one definition of
the wire format. Everything is sans-I/O: messages <-> :class:`~drivers.tsp.frame.Frame`.

Decoding never trusts its input: any frame that is not a valid message raises
:class:`MessageError` (a :class:`~drivers.base.FramingError`) carrying the
:class:`~drivers.base.ErrorCode` a device answers with (``UNKNOWN_COMMAND`` for an unknown
verb, ``PARAMETER`` for bad arguments). Encoding refuses values the wire cannot carry with
:class:`CommandValueError` (a :class:`~drivers.base.DriverError` and a ``ValueError``).

Numbers (docs/protocol.md §3): plain decimal, at most 3 decimals, no sign, no exponent; ``-``
means "not available". :func:`format_number` writes the shortest such form.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from pydantic import ValidationError

from drivers.base import (
    ChannelSettings,
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DeviceLimits,
    DriverError,
    ErrorCode,
    FramingError,
    Pattern,
    Telemetry,
    Waveform,
)
from drivers.tsp.frame import (
    MAX_SEQ,
    Frame,
    FrameErrorReason,
    TspFramingError,
    checksum_matches,
    decode_line,
    encode_frame,
    sealed,
)

PROTOCOL_NAME = "TSP"
PROTOCOL_MAJOR = 2
PROTOCOL_MINOR = 0
DEFAULT_WATCHDOG_MS = 1000
TELEMETRY_HZ = 10
"""Telemetry frames per second per channel while RUNNING (minimum)."""
MAX_CHANNELS = 16
NOT_AVAILABLE = "-"


class MessageError(FramingError):
    """A well-framed line that is not a valid TSP message.

    ``code`` is what a device answers: ``UNKNOWN_COMMAND`` (unknown verb) or ``PARAMETER``.
    """

    def __init__(self, code: ErrorCode, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"bad TSP message ({code.value}): {detail}")


class CommandValueError(DriverError, ValueError):
    """A value cannot be written in TSP (negative, not finite, not a token)."""


# --------------------------------------------------------------------------- numbers

_TSP_NUMBER = rb"[0-9]{1,9}(?:\.[0-9]{1,3})?"
_NUMBER_RE = re.compile(_TSP_NUMBER.decode("ascii"))
_INT_RE = re.compile(r"[0-9]{1,9}")
_MILLI = Decimal("0.001")


def _format_decimal(value: float, rounding: str, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommandValueError(f"{what} {value!r} is not a finite number")
    if value < 0:
        raise CommandValueError(f"{what} {value!r} is negative")
    if value >= 1e9:
        raise CommandValueError(f"{what} {value!r} is too large for TSP (at most 9 digits)")
    # Fast paths, equal to the Decimal rounding of the shortest repr (tested by a property
    # test): at most 3 decimals needs no rounding; half-even rounding of the binary value
    # differs from the repr's only on an exact 4th-decimal tie, which takes the slow path.
    if value == 0:
        return "0"  # also -0.0
    shortest = repr(float(value))
    if "e" not in shortest:
        whole, _, frac = shortest.partition(".")
        if len(frac) <= 3:
            frac = frac.rstrip("0")
            return f"{whole}.{frac}" if frac else whole
        if rounding == ROUND_HALF_EVEN and not (len(frac) == 4 and frac[3] == "5"):
            text = f"{value:.3f}".rstrip("0").rstrip(".")
            return text or "0"
    return _format_decimal_exact(value, rounding)


def _format_decimal_exact(value: float, rounding: str) -> str:
    exact = Decimal(repr(float(value))) if value else Decimal(0)
    text = format(exact.quantize(_MILLI, rounding=rounding), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_FORMATTED: dict[float, str] = {}
_FORMATTED_MAX = 4096


def format_number(value: float, what: str = "value") -> str:
    """Shortest plain decimal with at most 3 decimals (rounded half-even): 12.5, 80, 0.001.

    Telemetry repeats a few hundred distinct values (a set current, its read-back with
    three decimals, an impedance with one), so the text of each finite float is remembered
    (a bounded table, emptied when full). Only ``float`` values take that path: ``True`` equals
    ``1`` as a key and must still be refused."""
    if type(value) is float:
        text = _FORMATTED.get(value)
        if text is None:
            text = _format_decimal(value, ROUND_HALF_EVEN, what)
            if len(_FORMATTED) >= _FORMATTED_MAX:
                _FORMATTED.clear()
            _FORMATTED[value] = text
        return text
    return _format_decimal(value, ROUND_HALF_EVEN, what)


def format_amplitude(milliamps: float) -> str:
    """An amplitude in mA, rounded *down* to 0.001 mA so that rounding never adds current."""
    return _format_decimal(milliamps, ROUND_FLOOR, "amplitude")


def format_optional(value: float | None, what: str = "value") -> str:
    return NOT_AVAILABLE if value is None else format_number(value, what)


def parse_number(token: str, what: str = "value") -> float:
    if not _NUMBER_RE.fullmatch(token):
        raise MessageError(ErrorCode.PARAMETER, f"{what} {token!r} is not a TSP number")
    return float(token)


def parse_optional(token: str, what: str = "value") -> float | None:
    return None if token == NOT_AVAILABLE else parse_number(token, what)


def parse_int(token: str, what: str = "value") -> int:
    if not _INT_RE.fullmatch(token):
        raise MessageError(ErrorCode.PARAMETER, f"{what} {token!r} is not a whole number")
    return int(token)


def _parse_channel(token: str) -> int:
    channel = parse_int(token, "channel")
    if not 1 <= channel <= MAX_CHANNELS:
        raise MessageError(ErrorCode.PARAMETER, f"channel {channel} is outside 1-{MAX_CHANNELS}")
    return channel


def _check_channel(channel: int) -> str:
    if isinstance(channel, bool) or not isinstance(channel, int):
        raise CommandValueError(f"channel {channel!r} is not a whole number")
    if not 1 <= channel <= MAX_CHANNELS:
        raise CommandValueError(f"channel {channel} is outside 1-{MAX_CHANNELS}")
    return str(channel)


def _expect_args(frame: Frame, count: int) -> tuple[str, ...]:
    if len(frame.args) != count:
        raise MessageError(
            ErrorCode.PARAMETER,
            f"{frame.verb} takes {count} argument(s), got {len(frame.args)}",
        )
    return frame.args


# --------------------------------------------------------------------------- enums on the wire

WAVEFORM_TOKENS: dict[Waveform, str] = {
    Waveform.SYMMETRIC_BIPHASIC: "SYM",
    Waveform.ASYMMETRIC_BIPHASIC: "ASYM",
}
PATTERN_TOKENS: dict[Pattern, str] = {
    Pattern.CONTINUOUS: "CONT",
    Pattern.BURST: "BURST",
    Pattern.MODULATED: "MOD",
    Pattern.MIXED: "MIX",
}
ERROR_TOKENS: dict[ErrorCode, str] = {
    ErrorCode.LIMIT: "LIMIT",
    ErrorCode.PARAMETER: "PARAM",
    ErrorCode.STATE: "STATE",
    ErrorCode.CRC: "CRC",
    ErrorCode.BUSY: "BUSY",
    ErrorCode.UNKNOWN_COMMAND: "UNKNOWN",
    ErrorCode.VERSION: "VERSION",
    ErrorCode.RAMP: "RAMP",
}
_WAVEFORMS = {v: k for k, v in WAVEFORM_TOKENS.items()}
_PATTERNS = {v: k for k, v in PATTERN_TOKENS.items()}
_ERRORS = {v: k for k, v in ERROR_TOKENS.items()}


# --------------------------------------------------------------------------- host -> device


@dataclass(frozen=True, slots=True)
class Hello:
    """Identify; ``major`` is the protocol major version the host speaks."""

    major: int = PROTOCOL_MAJOR
    verb = "HELLO"

    def to_args(self) -> tuple[str, ...]:
        if isinstance(self.major, bool) or not 0 <= self.major <= 999:
            raise CommandValueError(f"protocol major {self.major!r} is outside 0-999")
        return (str(self.major),)


@dataclass(frozen=True, slots=True)
class Configure:
    """Configure one channel; the device sets that channel's amplitude to 0."""

    channel: int
    settings: ChannelSettings
    verb = "CFG"

    def to_args(self) -> tuple[str, ...]:
        s = self.settings
        cycle_ms = None if s.cycle_s is None else s.cycle_s * 1000.0
        return (
            _check_channel(self.channel),
            format_number(s.frequency_hz, "frequency"),
            format_number(s.pulse_width_us, "pulse width"),
            WAVEFORM_TOKENS[s.waveform],
            PATTERN_TOKENS[s.pattern],
            format_optional(s.secondary_hz, "secondary frequency"),
            format_optional(cycle_ms, "cycle"),
            NOT_AVAILABLE if s.pulses_per_burst is None else str(s.pulses_per_burst),
        )


@dataclass(frozen=True, slots=True)
class SetAmplitude:
    """Set one channel's amplitude in mA (only while RUNNING)."""

    channel: int
    milliamps: float
    verb = "AMP"

    def to_args(self) -> tuple[str, ...]:
        return (_check_channel(self.channel), format_amplitude(self.milliamps))


@dataclass(frozen=True, slots=True)
class Start:
    """Output on; every amplitude starts at 0."""

    verb = "START"

    def to_args(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Stop:
    """Every amplitude to 0, output off. Always acknowledged; idempotent."""

    verb = "STOP"

    def to_args(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive."""

    verb = "PING"

    def to_args(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Status:
    """Ask for state, battery and every channel's amplitude."""

    verb = "STATUS"

    def to_args(self) -> tuple[str, ...]:
        return ()


_HEX128_RE = re.compile(r"[0-9a-f]{128}")


@dataclass(frozen=True, slots=True)
class SignedCap:
    """``CAP <maxma> <issued> <signature>`` (optional, §16): a cap on every channel signed by
    the clinic, which a device holding the clinic's key enforces whatever the host asks."""

    max_ma: float
    issued: int
    """When the clinic signed it (UNIX seconds); a device refuses one older than it holds."""
    signature: str
    """Ed25519 over :func:`cap_message`, 128 lower-case hex digits."""
    verb = "CAP"

    def to_args(self) -> tuple[str, ...]:
        if not _HEX128_RE.fullmatch(self.signature):
            raise CommandValueError("a CAP signature is 128 lower-case hex digits")
        if self.issued < 0:
            raise CommandValueError("a CAP issue time is UNIX seconds (>= 0)")
        return (format_number(self.max_ma, "cap"), str(self.issued), self.signature)


def cap_message(serial_number: str, max_ma: float, issued: int) -> bytes:
    """What the clinic signs for a device cap: bound to the device's serial number, so that a
    cap signed for one unit cannot be loaded into another (§16)."""
    return f"TSP-CAP {serial_number} {format_number(max_ma, 'cap')} {issued}".encode("ascii")


Command = Hello | Configure | SetAmplitude | Start | Stop | Ping | Status | SignedCap
COMMAND_VERBS: tuple[str, ...] = (
    "HELLO",
    "CFG",
    "AMP",
    "START",
    "STOP",
    "PING",
    "STATUS",
    "CAP",
)


def command_frame(seq: int, command: Command) -> Frame:
    return Frame(seq, command.verb, command.to_args())


def encode_command(seq: int, command: Command) -> bytes:
    """The wire bytes of ``command`` with sequence number ``seq``."""
    try:
        return encode_frame(seq, command.verb, command.to_args())
    except CommandValueError:
        raise
    except ValueError as error:
        raise CommandValueError(str(error)) from None


def _decode_configure(frame: Frame) -> Configure:
    ch, hz, us, wave, pattern, f2, cycle, pulses = _expect_args(frame, 8)
    channel = _parse_channel(ch)
    if wave not in _WAVEFORMS:
        raise MessageError(ErrorCode.PARAMETER, f"waveform {wave!r} is not SYM or ASYM")
    if pattern not in _PATTERNS:
        raise MessageError(ErrorCode.PARAMETER, f"pattern {pattern!r} is not CONT/BURST/MOD/MIX")
    cycle_ms = parse_optional(cycle, "cycle")
    try:
        settings = ChannelSettings(
            frequency_hz=parse_number(hz, "frequency"),
            pulse_width_us=parse_int(us, "pulse width"),
            waveform=_WAVEFORMS[wave],
            pattern=_PATTERNS[pattern],
            secondary_hz=parse_optional(f2, "secondary frequency"),
            cycle_s=None if cycle_ms is None else cycle_ms / 1000.0,
            pulses_per_burst=None if pulses == NOT_AVAILABLE else parse_int(pulses, "pulses"),
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise MessageError(ErrorCode.PARAMETER, f"{where}: {first['msg']}") from None
    return Configure(channel, settings)


def decode_command(frame: Frame) -> Command:
    """A host command from a frame (device side). Raises :class:`MessageError`."""
    verb = frame.verb
    if verb == "HELLO":
        (major,) = _expect_args(frame, 1)
        return Hello(parse_int(major, "protocol major"))
    if verb == "CFG":
        return _decode_configure(frame)
    if verb == "AMP":
        ch, ma = _expect_args(frame, 2)
        return SetAmplitude(_parse_channel(ch), parse_number(ma, "amplitude"))
    if verb == "CAP":
        ma, issued, signature = _expect_args(frame, 3)
        if not _HEX128_RE.fullmatch(signature):
            raise MessageError(ErrorCode.PARAMETER, "CAP signature is not 128 hex digits")
        if not re.fullmatch(r"[0-9]{1,12}", issued):
            raise MessageError(ErrorCode.PARAMETER, "CAP issue time is not UNIX seconds")
        return SignedCap(parse_number(ma, "cap"), int(issued), signature)
    simple: dict[str, Command] = {
        "START": Start(),
        "STOP": Stop(),
        "PING": Ping(),
        "STATUS": Status(),
    }
    if verb in simple:
        _expect_args(frame, 0)
        return simple[verb]
    raise MessageError(ErrorCode.UNKNOWN_COMMAND, f"unknown verb {verb}")


# --------------------------------------------------------------------------- device -> host


@dataclass(frozen=True, slots=True)
class Ack:
    """``<seq> ACK [args]``: the command with this ``seq`` was executed."""

    seq: int
    args: tuple[str, ...] = ()
    verb = "ACK"

    def to_args(self) -> tuple[str, ...]:
        return self.args

    @property
    def positional(self) -> tuple[str, ...]:
        """Arguments without ``=`` (for HELLO: the version token)."""
        return tuple(a for a in self.args if "=" not in a)

    @property
    def fields(self) -> dict[str, str]:
        """``key=value`` arguments. Unknown keys are kept (and ignored by parsers)."""
        out: dict[str, str] = {}
        for arg in self.args:
            key, sep, value = arg.partition("=")
            if sep and key and key not in out:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Err:
    """``<seq> ERR <CODE> [detail]``: the command with this ``seq`` was NOT executed."""

    seq: int
    code: ErrorCode
    detail: str = ""
    verb = "ERR"

    def to_args(self) -> tuple[str, ...]:
        return (ERROR_TOKENS[self.code], *self.detail.split())


class ChannelState(StrEnum):
    """What a channel is doing, repeated in every ``TEL`` (S15: a lost event cannot leave the
    host wrong for longer than one telemetry period)."""

    RUN = "RUN"
    """Output on; the electrode is on; the channel delivers its amplitude."""
    LEADOFF = "LEADOFF"
    """Output on, but this channel's electrode came off: it is at 0 mA and reads LEADOFF until the
    host sets it again (from 0), even if the electrode is already back."""
    IDLE = "IDLE"
    """Output off (after STOP, a watchdog trip, a reset, or before START)."""
    FAULT = "FAULT"
    """Output off after an internal fault or the device's own emergency switch, until the next
    START or STOP."""


_STATES = {s.value.encode(): s for s in ChannelState}


@dataclass(frozen=True, slots=True)
class TelemetryFrame:
    """``<seq> TEL <ch> <set_mA> <measured_mA|-> <impedance_ohm|-> <state>``."""

    seq: int
    channel: int
    set_ma: float
    measured_ma: float | None
    impedance_ohm: float | None
    state: ChannelState = ChannelState.RUN
    verb = "TEL"

    def to_args(self) -> tuple[str, ...]:
        return (
            _check_channel(self.channel),
            format_number(self.set_ma, "set current"),
            format_optional(self.measured_ma, "measured current"),
            format_optional(self.impedance_ohm, "impedance"),
            self.state.value,
        )

    def to_report(self, time: float) -> Telemetry:
        state = self.state
        return Telemetry(
            time,
            self.channel,
            self.set_ma,
            self.measured_ma,
            self.impedance_ohm,
            state is ChannelState.LEADOFF,
            state is ChannelState.RUN or state is ChannelState.LEADOFF,
        )


class EventName(StrEnum):
    LEADOFF = "LEADOFF"
    WDT = "WDT"
    FAULT = "FAULT"
    BATLOW = "BATLOW"
    RESET = "RESET"


_EVENT_KINDS: dict[EventName, DeviceEventKind] = {
    EventName.LEADOFF: DeviceEventKind.LEAD_OFF,
    EventName.WDT: DeviceEventKind.WATCHDOG_TRIP,
    EventName.FAULT: DeviceEventKind.FAULT,
    EventName.BATLOW: DeviceEventKind.BATTERY_LOW,
    EventName.RESET: DeviceEventKind.DEVICE_RESET,
}


@dataclass(frozen=True, slots=True)
class EventFrame:
    """``<seq> EVT <NAME> [arg]``.

    LEADOFF needs ``channel``; FAULT needs ``code`` (a token); BATLOW needs ``battery_pct``.
    """

    seq: int
    name: EventName
    channel: int | None = None
    code: str | None = None
    battery_pct: int | None = None
    verb = "EVT"

    def to_args(self) -> tuple[str, ...]:
        if self.name is EventName.LEADOFF:
            if self.channel is None:
                raise CommandValueError("EVT LEADOFF needs a channel")
            return (self.name.value, _check_channel(self.channel))
        if self.name is EventName.FAULT:
            if not self.code:
                raise CommandValueError("EVT FAULT needs a code")
            return (self.name.value, self.code)
        if self.name is EventName.BATLOW:
            if self.battery_pct is None or not 0 <= self.battery_pct <= 100:
                raise CommandValueError("EVT BATLOW needs a battery percentage 0-100")
            return (self.name.value, str(self.battery_pct))
        return (self.name.value,)

    def to_report(self, time: float) -> DeviceEvent:
        detail = ""
        if self.name is EventName.FAULT:
            detail = self.code or ""
        elif self.name is EventName.BATLOW:
            detail = f"battery {self.battery_pct}%"
        return DeviceEvent(time, _EVENT_KINDS[self.name], self.channel, detail)


DeviceMessage = Ack | Err | TelemetryFrame | EventFrame
DEVICE_VERBS: tuple[str, ...] = ("ACK", "ERR", "TEL", "EVT")


def device_frame(message: DeviceMessage) -> Frame:
    return Frame(message.seq, message.verb, message.to_args())


def encode_device_message(message: DeviceMessage) -> bytes:
    """The wire bytes of a device reply or report."""
    seq = message.seq
    if type(message) is Ack and not message.args and type(seq) is int and 0 <= seq <= MAX_SEQ:
        body = b"%d ACK" % seq  # the reply to every PING and AMP
        return sealed(body)
    if type(message) is TelemetryFrame:
        # Fast path for the frame sent ten times a second per channel: its tokens (a checked
        # channel, TSP numbers, "-") are valid arguments by construction, so the body needs no
        # re-checking; equal to the general path (tested).
        channel = message.channel
        if (
            type(seq) is int
            and 0 <= seq <= MAX_SEQ
            and type(channel) is int
            and 1 <= channel <= MAX_CHANNELS
        ):
            measured, impedance = message.measured_ma, message.impedance_ohm
            body = (
                f"{seq} TEL {channel} {format_number(message.set_ma, 'set current')} "
                f"{'-' if measured is None else format_number(measured, 'measured current')} "
                f"{'-' if impedance is None else format_number(impedance, 'impedance')} "
                f"{message.state.value}"
            ).encode("ascii")
            return sealed(body)
    try:
        return encode_frame(message.seq, message.verb, message.to_args())
    except CommandValueError:
        raise
    except ValueError as error:
        raise CommandValueError(str(error)) from None


def _decode_event(frame: Frame) -> EventFrame:
    if not frame.args:
        raise MessageError(ErrorCode.PARAMETER, "EVT without an event name")
    name_token, *rest = frame.args
    try:
        name = EventName(name_token)
    except ValueError:
        raise MessageError(ErrorCode.UNKNOWN_COMMAND, f"unknown event {name_token}") from None
    wants_arg = name in (EventName.LEADOFF, EventName.FAULT, EventName.BATLOW)
    if len(rest) != (1 if wants_arg else 0):
        raise MessageError(ErrorCode.PARAMETER, f"EVT {name.value}: wrong number of arguments")
    if name is EventName.LEADOFF:
        return EventFrame(frame.seq, name, channel=_parse_channel(rest[0]))
    if name is EventName.FAULT:
        return EventFrame(frame.seq, name, code=rest[0])
    if name is EventName.BATLOW:
        pct = parse_int(rest[0], "battery")
        if pct > 100:
            raise MessageError(ErrorCode.PARAMETER, f"battery {pct}% is above 100")
        return EventFrame(frame.seq, name, battery_pct=pct)
    return EventFrame(frame.seq, name)


_BARE_ACK_RE = re.compile(rb"(0|[1-9][0-9]{0,4}) ACK\*([0-9A-F]{4})\r?")
_TEL_LINE_RE = re.compile(
    rb"(0|[1-9][0-9]{0,4}) TEL ([1-9]|1[0-6]) (%s) (%s|-) (%s|-) (RUN|LEADOFF|IDLE|FAULT)"
    rb"\*([0-9A-F]{4})\r?" % (_TSP_NUMBER, _TSP_NUMBER, _TSP_NUMBER)
)


def decode_device_line(line: bytes) -> DeviceMessage:
    """A device reply or report from one line without its ``LF`` (host side).

    Raises :class:`~drivers.tsp.frame.TspFramingError` for a bad line and :class:`MessageError`
    for a well-framed line that is not a valid message. A well-formed ``TEL`` line -- ten a
    second per channel -- and a bare ``ACK`` are decoded by one regular expression and their CRC
    (equal to the general path, tested); anything else takes :func:`decode_line` and
    :func:`decode_device_message`.
    """
    match = _BARE_ACK_RE.fullmatch(line)
    if match is not None:
        ack_seq = int(match[1])
        if ack_seq <= MAX_SEQ and checksum_matches(line, match.start(2)):
            return Ack(ack_seq)
    match = _TEL_LINE_RE.fullmatch(line)
    if match is not None:
        seq, channel, set_ma, measured, impedance, state, _ = match.groups()
        if int(seq) <= MAX_SEQ and checksum_matches(line, match.start(7)):
            return TelemetryFrame(
                int(seq),
                int(channel),
                float(set_ma),
                None if measured == b"-" else float(measured),
                None if impedance == b"-" else float(impedance),
                _STATES[state],
            )
    return decode_device_message(decode_line(line))


def decode_device_message(frame: Frame) -> DeviceMessage:
    """A device reply or report from a frame (host side). Raises :class:`MessageError`."""
    verb = frame.verb
    if verb == "ACK":
        return Ack(frame.seq, frame.args)
    if verb == "ERR":
        if not frame.args:
            raise MessageError(ErrorCode.PARAMETER, "ERR without an error code")
        code_token, *detail = frame.args
        if code_token not in _ERRORS:
            raise MessageError(ErrorCode.PARAMETER, f"unknown error code {code_token}")
        return Err(frame.seq, _ERRORS[code_token], " ".join(detail))
    if verb == "TEL":
        ch, set_ma, measured, impedance, state = _expect_args(frame, 5)
        if state.encode() not in _STATES:
            raise MessageError(
                ErrorCode.PARAMETER, f"TEL state {state!r} is not one of RUN, LEADOFF, IDLE, FAULT"
            )
        return TelemetryFrame(
            frame.seq,
            _parse_channel(ch),
            parse_number(set_ma, "set current"),
            parse_optional(measured, "measured current"),
            parse_optional(impedance, "impedance"),
            _STATES[state.encode()],
        )
    if verb == "EVT":
        return _decode_event(frame)
    raise MessageError(ErrorCode.UNKNOWN_COMMAND, f"unknown device verb {verb}")


# --------------------------------------------------------------------------- HELLO identity

_TOKEN_RE = re.compile(r"[\x21-\x29\x2b-\x7e]+")
_VERSION_RE = re.compile(r"TSP/([0-9]{1,3})\.([0-9]{1,3})")


@dataclass(frozen=True, slots=True)
class HelloIdentity:
    """What a ``HELLO`` acknowledgement says."""

    major: int
    minor: int
    info: DeviceInfo
    """With the device's watchdog, ramp (in ``limits``) and odometer."""
    watchdog_ms: int = DEFAULT_WATCHDOG_MS
    extra: dict[str, str] = field(default_factory=dict)
    """Fields this host does not know (added by later minor versions)."""


def _token(value: str, what: str) -> str:
    if not _TOKEN_RE.fullmatch(value) or "=" in value:
        raise CommandValueError(
            f"{what} {value!r} must be printable ASCII without spaces, '*' or '='"
        )
    return value


def hello_ack(
    seq: int,
    info: DeviceInfo,
    *,
    watchdog_ms: int = DEFAULT_WATCHDOG_MS,
    minor: int = PROTOCOL_MINOR,
) -> Ack:
    """The ``ACK`` a device sends for ``HELLO`` (used by the simulator and the docs)."""
    limits = info.limits
    if limits is None:
        raise CommandValueError("a TSP device must report its hard limits")
    if limits.ramp_step_ma is None or limits.ramp_interval_ms is None:
        raise CommandValueError("a TSP/2 device must report its own ramp (rampma, rampms)")
    if info.odometer_sessions is None or info.odometer_stimulation_s is None:
        raise CommandValueError("a TSP/2 device must report its odometer (sessions, stimsec)")
    flag = {True: "1", False: "0"}
    return Ack(
        seq,
        (
            f"{PROTOCOL_NAME}/{PROTOCOL_MAJOR}.{minor}",
            f"model={_token(info.model, 'model')}",
            f"serial={_token(info.serial_number, 'serial number')}",
            f"fw={_token(info.firmware, 'firmware')}",
            f"ch={info.channels}",
            f"maxma={format_number(limits.max_amplitude_ma)}",
            f"stepma={format_number(limits.amplitude_step_ma)}",
            f"fmin={format_number(limits.min_frequency_hz)}",
            f"fmax={format_number(limits.max_frequency_hz)}",
            f"pwmin={limits.min_pulse_width_us}",
            f"pwmax={limits.max_pulse_width_us}",
            f"wdms={watchdog_ms}",
            f"rampma={format_number(limits.ramp_step_ma)}",
            f"rampms={format_number(limits.ramp_interval_ms)}",
            f"current={flag[info.reports_current]}",
            f"impedance={flag[info.reports_impedance]}",
            f"sim={flag[info.reported_simulator]}",
            f"sessions={info.odometer_sessions}",
            f"stimsec={round(info.odometer_stimulation_s)}",
            *(
                ()
                if info.cap_key_id is None
                else (f"capkey={info.cap_key_id}", f"cap={format_number(info.signed_cap_ma or 0)}")
            ),
        ),
    )


_HELLO_KEYS = (
    "model",
    "serial",
    "fw",
    "ch",
    "maxma",
    "stepma",
    "fmin",
    "fmax",
    "pwmin",
    "pwmax",
    "wdms",
    "rampma",
    "rampms",
    "current",
    "impedance",
    "sim",
    "sessions",
    "stimsec",
)


def _flag(fields: dict[str, str], key: str) -> bool:
    value = fields[key]
    if value not in ("0", "1"):
        raise MessageError(ErrorCode.PARAMETER, f"HELLO field {key}={value!r} is not 0 or 1")
    return value == "1"


def parse_hello_ack(ack: Ack) -> HelloIdentity:
    """Parse the identity in a ``HELLO`` acknowledgement. Raises :class:`MessageError`."""
    positional = ack.positional
    match = _VERSION_RE.fullmatch(positional[0]) if positional else None
    if match is None:
        raise MessageError(ErrorCode.PARAMETER, "HELLO reply has no TSP/<major>.<minor> version")
    fields = ack.fields
    missing = [key for key in _HELLO_KEYS if key not in fields]
    if missing:
        raise MessageError(ErrorCode.PARAMETER, f"HELLO reply lacks {', '.join(missing)}")
    major, minor = int(match.group(1)), int(match.group(2))
    channels = parse_int(fields["ch"], "ch")
    watchdog_ms = parse_int(fields["wdms"], "wdms")
    if watchdog_ms < 30:
        raise MessageError(ErrorCode.PARAMETER, f"watchdog {watchdog_ms} ms is below 30 ms")
    try:
        limits = DeviceLimits(
            max_amplitude_ma=parse_number(fields["maxma"], "maxma"),
            amplitude_step_ma=parse_number(fields["stepma"], "stepma"),
            min_frequency_hz=parse_number(fields["fmin"], "fmin"),
            max_frequency_hz=parse_number(fields["fmax"], "fmax"),
            min_pulse_width_us=parse_int(fields["pwmin"], "pwmin"),
            max_pulse_width_us=parse_int(fields["pwmax"], "pwmax"),
            ramp_step_ma=parse_number(fields["rampma"], "rampma"),
            ramp_interval_ms=parse_number(fields["rampms"], "rampms"),
        )
        info = DeviceInfo(
            protocol=PROTOCOL_NAME,
            protocol_version=f"{major}.{minor}",
            model=fields["model"],
            serial_number=fields["serial"],
            firmware=fields["fw"],
            channels=channels,
            limits=limits,
            reports_current=_flag(fields, "current"),
            reports_impedance=_flag(fields, "impedance"),
            reported_simulator=_flag(fields, "sim"),
            watchdog_ms=watchdog_ms,
            odometer_sessions=parse_int(fields["sessions"], "sessions"),
            odometer_stimulation_s=float(parse_int(fields["stimsec"], "stimsec")),
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "identity"
        raise MessageError(ErrorCode.PARAMETER, f"HELLO reply {where}: {first['msg']}") from None
    cap_key = fields.get("capkey")
    if cap_key is not None:
        if not re.fullmatch(r"[0-9a-f]{16}", cap_key):
            raise MessageError(
                ErrorCode.PARAMETER, f"HELLO field capkey={cap_key!r} is not a key id"
            )
        cap = fields.get("cap", "0")
        info = info.model_copy(
            update={"cap_key_id": cap_key, "signed_cap_ma": parse_number(cap, "cap")}
        )
    extra = {k: v for k, v in fields.items() if k not in (*_HELLO_KEYS, "capkey", "cap")}
    return HelloIdentity(major, minor, info, watchdog_ms, extra)


# --------------------------------------------------------------------------- STATUS


class DeviceState(StrEnum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What a ``STATUS`` acknowledgement says."""

    state: DeviceState
    battery_pct: int | None
    amplitudes_ma: dict[int, float] = field(default_factory=dict)


def status_ack(seq: int, status: DeviceStatus) -> Ack:
    """The ``ACK`` a device sends for ``STATUS``."""
    bat = NOT_AVAILABLE if status.battery_pct is None else str(status.battery_pct)
    amps = tuple(
        f"a{ch}={format_number(ma, 'amplitude')}" for ch, ma in sorted(status.amplitudes_ma.items())
    )
    return Ack(seq, (f"state={status.state.value}", f"bat={bat}", *amps))


_AMP_KEY_RE = re.compile(r"a([1-9][0-9]?)")


def parse_status_ack(ack: Ack) -> DeviceStatus:
    fields = ack.fields
    if "state" not in fields or "bat" not in fields:
        raise MessageError(ErrorCode.PARAMETER, "STATUS reply lacks state or bat")
    try:
        state = DeviceState(fields["state"])
    except ValueError:
        raise MessageError(
            ErrorCode.PARAMETER, f"STATUS state {fields['state']!r} is not IDLE or RUNNING"
        ) from None
    bat = fields["bat"]
    battery = None if bat == NOT_AVAILABLE else parse_int(bat, "battery")
    amplitudes: dict[int, float] = {}
    for key, value in fields.items():
        match = _AMP_KEY_RE.fullmatch(key)
        if match:
            amplitudes[int(match.group(1))] = parse_number(value, key)
    return DeviceStatus(state, battery, amplitudes)


# --------------------------------------------------------------------------- device error replies


def framing_error_reply(error: FramingError) -> Err:
    """What a device answers to a line that failed framing (docs/protocol.md §7).

    A checksum or length failure is ``ERR CRC`` (the host retransmits); a line whose checksum
    matches but whose grammar does not is ``ERR PARAM``. The seq is the line's own when
    readable, else 0.
    """
    if isinstance(error, TspFramingError):
        seq = error.seq if error.seq is not None else 0
        if error.reason is FrameErrorReason.SYNTAX:
            return Err(seq, ErrorCode.PARAMETER, "bad frame syntax")
        return Err(seq, ErrorCode.CRC)
    return Err(0, ErrorCode.CRC)


def message_error_reply(seq: int, error: MessageError) -> Err:
    """What a device answers to a well-framed line that is not a valid command."""
    text = "".join(c if " " < c <= "~" and c != "*" else " " for c in error.detail)
    return Err(seq, error.code, " ".join(text.split())[:80].strip())
