"""TSP/2 framing and codec: golden frames, round trips and a framer fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import (
    ChannelSettings,
    DeviceEventKind,
    DeviceInfo,
    DeviceLimits,
    ErrorCode,
    FramingError,
    Pattern,
    Waveform,
)
from drivers.tsp.codec import (
    Ack,
    Command,
    CommandValueError,
    Configure,
    DeviceMessage,
    DeviceState,
    DeviceStatus,
    Err,
    EventFrame,
    EventName,
    Hello,
    MessageError,
    Ping,
    SetAmplitude,
    Start,
    Status,
    Stop,
    TelemetryFrame,
    decode_command,
    decode_device_message,
    encode_command,
    encode_device_message,
    format_amplitude,
    format_number,
    hello_ack,
    parse_hello_ack,
    parse_number,
    parse_status_ack,
    status_ack,
)
from drivers.tsp.frame import (
    MAX_FRAME_LEN,
    Frame,
    FrameDecoder,
    FrameErrorReason,
    TspFramingError,
    crc16_ccitt_false,
    decode_line,
    encode_frame,
)

SIM_INFO = DeviceInfo(
    protocol="TSP",
    protocol_version="2.0",
    model="TENS-SIM",
    serial_number="SIM-0001",
    firmware="2.0.0",
    channels=2,
    limits=DeviceLimits(
        max_amplitude_ma=100,
        amplitude_step_ma=0.5,
        min_frequency_hz=1,
        max_frequency_hz=150,
        min_pulse_width_us=50,
        max_pulse_width_us=400,
        ramp_step_ma=1,
        ramp_interval_ms=500,
    ),
    reports_current=True,
    reports_impedance=True,
    reported_simulator=True,
    watchdog_ms=1000,
    odometer_sessions=41,
    odometer_stimulation_s=73800,
)


# --------------------------------------------------------------------------- CRC


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


def test_crc_is_incremental() -> None:
    assert crc16_ccitt_false(b"6789", crc16_ccitt_false(b"12345")) == 0x29B1


# --------------------------------------------------------------------------- golden frames

GOLDEN_COMMANDS: list[tuple[int, Command, bytes]] = [
    (1, Hello(2), b"1 HELLO 2*81ED\n"),
    (
        2,
        Configure(1, ChannelSettings(frequency_hz=80, pulse_width_us=200)),
        b"2 CFG 1 80 200 SYM CONT - - -*2525\n",
    ),
    (
        3,
        Configure(
            2,
            ChannelSettings(
                frequency_hz=100,
                pulse_width_us=150,
                pattern=Pattern.BURST,
                secondary_hz=2,
                pulses_per_burst=7,
            ),
        ),
        b"3 CFG 2 100 150 SYM BURST 2 - 7*CCB8\n",
    ),
    (
        4,
        Configure(
            1,
            ChannelSettings(
                frequency_hz=100,
                pulse_width_us=200,
                waveform=Waveform.ASYMMETRIC_BIPHASIC,
                pattern=Pattern.MIXED,
                secondary_hz=2,
                cycle_s=3,
            ),
        ),
        b"4 CFG 1 100 200 ASYM MIX 2 3000 -*DD12\n",
    ),
    (
        5,
        Configure(
            2,
            ChannelSettings(
                frequency_hz=150,
                pulse_width_us=250,
                pattern=Pattern.MODULATED,
                secondary_hz=80,
                cycle_s=5,
            ),
        ),
        b"5 CFG 2 150 250 SYM MOD 80 5000 -*FB10\n",
    ),
    (6, Start(), b"6 START*2075\n"),
    (7, SetAmplitude(1, 12.5), b"7 AMP 1 12.5*1600\n"),
    (8, SetAmplitude(2, 0), b"8 AMP 2 0*4635\n"),
    (9, Ping(), b"9 PING*812D\n"),
    (10, Status(), b"10 STATUS*0CC3\n"),
    (11, Stop(), b"11 STOP*5954\n"),
    (65535, Ping(), b"65535 PING*B760\n"),
]
"""Host commands exactly as in docs/protocol.md §12 (checked there by test_tsp_protocol_doc)."""


@pytest.mark.parametrize(("seq", "command", "wire"), GOLDEN_COMMANDS)
def test_golden_commands_encode_and_decode(seq: int, command: Command, wire: bytes) -> None:
    assert encode_command(seq, command) == wire
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, Frame)
    assert frame.seq == seq
    assert decode_command(frame) == command


def test_golden_hello_ack_round_trips() -> None:
    wire = encode_device_message(hello_ack(1, SIM_INFO))
    assert wire.startswith(b"1 ACK TSP/2.0 model=TENS-SIM serial=SIM-0001 fw=2.0.0 ch=2 ")
    assert len(wire) <= MAX_FRAME_LEN
    message = decode_device_message(decode_line(wire[:-1]))
    assert isinstance(message, Ack)
    identity = parse_hello_ack(message)
    assert identity.info == SIM_INFO
    assert (identity.major, identity.minor, identity.watchdog_ms) == (2, 0, 1000)


def test_hello_ack_tolerates_unknown_fields_from_a_newer_minor() -> None:
    ack = hello_ack(3, SIM_INFO, minor=4)
    newer = Ack(3, (*ack.args, "colour=blue"))
    identity = parse_hello_ack(newer)
    assert identity.minor == 4
    assert identity.extra == {"colour": "blue"}


def test_hello_ack_missing_a_field_is_a_message_error() -> None:
    ack = hello_ack(3, SIM_INFO)
    broken = Ack(3, tuple(a for a in ack.args if not a.startswith("maxma=")))
    with pytest.raises(MessageError, match="maxma"):
        parse_hello_ack(broken)


DEVICE_GOLDEN: list[DeviceMessage] = [
    Ack(4),
    Err(4, ErrorCode.LIMIT, "max 100"),
    Err(0, ErrorCode.CRC),
    TelemetryFrame(17, 1, 12.5, 12.4, 1020),
    TelemetryFrame(18, 2, 0, None, None),
    EventFrame(19, EventName.LEADOFF, channel=2),
    EventFrame(20, EventName.WDT),
    EventFrame(21, EventName.FAULT, code="OVERCURRENT"),
    EventFrame(22, EventName.BATLOW, battery_pct=15),
    EventFrame(23, EventName.RESET),
]


@pytest.mark.parametrize("message", DEVICE_GOLDEN)
def test_device_messages_round_trip(message: DeviceMessage) -> None:
    wire = encode_device_message(message)
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, Frame)
    assert decode_device_message(frame) == message
    assert frame.encode() == wire


def test_status_round_trip() -> None:
    status = DeviceStatus(DeviceState.RUNNING, 87, {1: 12.5, 2: 0.0})
    ack = status_ack(6, status)
    assert ack.args == ("state=RUNNING", "bat=87", "a1=12.5", "a2=0")
    assert parse_status_ack(ack) == status


def test_reports_map_to_driver_types() -> None:
    tel = TelemetryFrame(1, 2, 10, 9.8, None).to_report(3.5)
    assert (tel.time, tel.channel, tel.set_ma, tel.measured_ma, tel.impedance_ohm) == (
        3.5,
        2,
        10,
        9.8,
        None,
    )
    event = EventFrame(2, EventName.LEADOFF, channel=1).to_report(4.0)
    assert (event.kind, event.channel) == (DeviceEventKind.LEAD_OFF, 1)
    assert EventFrame(3, EventName.WDT).to_report(0).kind is DeviceEventKind.WATCHDOG_TRIP


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "text"),
    [(12.5, "12.5"), (80, "80"), (0.0, "0"), (-0.0, "0"), (0.001, "0.001"), (1.23456, "1.235")],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text
    assert parse_number(text) == pytest.approx(value, abs=0.0005)


def test_amplitude_rounds_down_never_up() -> None:
    assert format_amplitude(12.3459) == "12.345"
    assert format_amplitude(0.0009) == "0"


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 1e12])
def test_unwritable_numbers_are_refused(value: float) -> None:
    with pytest.raises(CommandValueError):
        format_number(value)
    with pytest.raises(CommandValueError):
        encode_command(1, SetAmplitude(1, value))


@pytest.mark.parametrize("token", ["1e3", "-1", "+1", "1.2345", "", ".5", "5.", "0x10", "nan"])
def test_parse_number_rejects_non_tsp_numbers(token: str) -> None:
    with pytest.raises(MessageError):
        parse_number(token)


# --------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    ("line", "reason", "seq"),
    [
        (b"7 AMP 1 12.5*1601", FrameErrorReason.CRC, 7),
        (b"7 AMP 1 12.5*1600 ", FrameErrorReason.CRC, 7),
        (b"7 AMP 1 12.5*160a", FrameErrorReason.CRC, 7),
        (b"7 AMP 1 12.5", FrameErrorReason.CRC, 7),
        (b"PING", FrameErrorReason.CRC, None),
        (b"xx AMP 1*0000", FrameErrorReason.CRC, None),
    ],
)
def test_bad_lines_raise_framing_errors(
    line: bytes, reason: FrameErrorReason, seq: int | None
) -> None:
    with pytest.raises(TspFramingError) as info:
        decode_line(line)
    assert info.value.reason is reason
    assert info.value.seq == seq


def _with_crc(body: bytes) -> bytes:
    return body + b"*%04X" % crc16_ccitt_false(body)


@pytest.mark.parametrize(
    "body",
    [b"007 PING", b"65536 PING", b"7 ping", b"7", b"7  PING", b"7 PING ", b"7 AMP  1", b" 7 PING"],
)
def test_syntax_errors_with_a_valid_crc_are_still_errors(body: bytes) -> None:
    with pytest.raises(TspFramingError) as info:
        decode_line(_with_crc(body))
    assert info.value.reason is FrameErrorReason.SYNTAX


def test_cr_before_lf_is_tolerated_and_blank_lines_are_ignored() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(b"\n\r\n9 PING*812D\r\n")
    assert out == [Frame(9, "PING")]


def test_unknown_verbs_and_bad_arguments_carry_the_device_error_code() -> None:
    with pytest.raises(MessageError) as info:
        decode_command(Frame(1, "FLY", ("high",)))
    assert info.value.code is ErrorCode.UNKNOWN_COMMAND
    with pytest.raises(MessageError) as info:
        decode_command(Frame(1, "AMP", ("1",)))
    assert info.value.code is ErrorCode.PARAMETER
    with pytest.raises(MessageError) as info:
        decode_command(Frame(1, "CFG", ("1", "80", "200", "SYM", "BURST", "-", "-", "-")))
    assert info.value.code is ErrorCode.PARAMETER
    with pytest.raises(MessageError) as info:
        decode_command(Frame(1, "AMP", ("0", "1")))
    assert info.value.code is ErrorCode.PARAMETER


def test_encoder_refuses_unframeable_fields() -> None:
    with pytest.raises(ValueError, match="sequence"):
        encode_frame(65536, "PING")
    with pytest.raises(ValueError, match="verb"):
        encode_frame(1, "ping")
    with pytest.raises(ValueError, match="argument"):
        encode_frame(1, "X", ["a b"])
    with pytest.raises(ValueError, match="argument"):
        encode_frame(1, "X", ["a*b"])
    with pytest.raises(ValueError, match="bytes"):
        encode_frame(1, "X", ["a" * MAX_FRAME_LEN])


def test_overlong_line_is_one_error_then_resync() -> None:
    decoder = FrameDecoder()
    junk = b"9" * (MAX_FRAME_LEN * 3)
    out = decoder.feed(junk[:100]) + decoder.feed(junk[100:]) + decoder.feed(b"\n9 PING*812D\n")
    assert len(out) == 2
    assert isinstance(out[0], TspFramingError)
    assert out[0].reason is FrameErrorReason.LENGTH
    assert out[1] == Frame(9, "PING")


def test_line_of_exactly_max_length_is_accepted() -> None:
    body = b"1 X " + b"a" * 10
    pad = MAX_FRAME_LEN - len(_with_crc(body)) - 1
    body += b"a" * pad
    wire = _with_crc(body) + b"\n"
    assert len(wire) == MAX_FRAME_LEN
    assert FrameDecoder().feed(wire) == [decode_line(wire[:-1])]
    longer = _with_crc(body + b"a") + b"\n"
    (error,) = FrameDecoder().feed(longer)
    assert isinstance(error, TspFramingError)


# --------------------------------------------------------------------------- fuzz

tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="*"),
    min_size=1,
    max_size=8,
)
frames = st.builds(
    Frame,
    seq=st.integers(0, 65535),
    verb=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8),
    args=st.lists(tokens, max_size=6).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.data())
def test_random_bytes_yield_only_framing_errors_or_frames_present_verbatim(
    data: bytes, draw: st.DataObject
) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    decoder = FrameDecoder()
    out = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
    lines = {line.rstrip(b"\r") for line in data.split(b"\n")}
    for item in out:
        assert isinstance(item, Frame | FramingError)
        if isinstance(item, Frame):
            # a frame can only come from a line that is exactly its canonical encoding
            assert item.encode()[:-1] in lines


@settings(max_examples=200, deadline=None)
@given(st.lists(frames, min_size=1, max_size=4), st.binary(max_size=40))
def test_frames_survive_every_split_and_leading_garbage(sent: list[Frame], garbage: bytes) -> None:
    garbage = garbage.replace(b"*", b"#")  # no accidental valid CRC in the garbage
    stream = garbage + b"\n" + b"".join(f.encode() for f in sent)
    whole = FrameDecoder().feed(stream)
    assert [f for f in whole if isinstance(f, Frame)] == sent
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert out == whole or [f for f in out if isinstance(f, Frame)] == sent


@settings(max_examples=200, deadline=None)
@given(frames, st.data())
def test_any_single_byte_corruption_is_detected(frame: Frame, data: st.DataObject) -> None:
    wire = frame.encode()
    index = data.draw(st.integers(0, len(wire) - 2))  # keep the LF
    flip = data.draw(st.integers(1, 255))
    corrupted = bytearray(wire)
    corrupted[index] ^= flip
    if b"\n" in corrupted[:-1]:
        corrupted[index] = ord("#") if wire[index] != ord("#") else ord("%")
    out = FrameDecoder().feed(bytes(corrupted) + frame.encode())
    assert isinstance(out[0], FramingError)
    assert out[-1] == frame
    assert sum(isinstance(f, Frame) for f in out) == 1


@settings(max_examples=200, deadline=None)
@given(frames)
def test_two_frames_in_one_read(frame: Frame) -> None:
    second = Frame((frame.seq + 1) % 65536, "PING")
    assert FrameDecoder().feed(frame.encode() + second.encode()) == [frame, second]


@settings(max_examples=300, deadline=None)
@given(st.lists(tokens, max_size=9), st.sampled_from(["HELLO", "CFG", "AMP", "START", "X"]))
def test_decode_command_raises_only_message_error(args: list[str], verb: str) -> None:
    with contextlib.suppress(MessageError):
        decode_command(Frame(1, verb, tuple(args)))


@settings(max_examples=300, deadline=None)
@given(st.lists(tokens, max_size=6), st.sampled_from(["ACK", "ERR", "TEL", "EVT", "Q"]))
def test_decode_device_message_raises_only_message_error(args: list[str], verb: str) -> None:
    try:
        message = decode_device_message(Frame(1, verb, tuple(args)))
    except MessageError:
        return
    if isinstance(message, Ack):
        with contextlib.suppress(MessageError):
            parse_hello_ack(message)
        with contextlib.suppress(MessageError):
            parse_status_ack(message)
