"""ScienceMode2 framing and codec: golden frames both ways, and a fuzzed decoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import FramingError
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
    PayloadError,
    SinglePulse,
    SinglePulseAck,
    StartChannelListMode,
    StartChannelListModeAck,
    StimulationError,
    StopChannelListMode,
    StopChannelListModeAck,
    Unknown,
    UnknownCommand,
    Watchdog,
)
from drivers.sciencemode2.frame import (
    ESCAPE,
    START,
    STOP,
    Decoded,
    FrameDecoder,
    RawFrame,
    TransferError,
    crc8,
    encode_frame,
    stuff,
)

# Golden frames from ../shared/protocols/sciencemode2.md
GOLDEN: list[tuple[int, Message, str]] = [
    (0, Watchdog(), "F0 81 49 81 57 00 04 0F"),
    (5, InitAck(0), "F0 81 BF 81 56 05 02 00 0F"),
    (3, StopChannelListMode(), "F0 81 84 81 57 03 22 0F"),
    (2, SinglePulse(0, 200, 20), "F0 81 C5 81 53 02 24 00 00 C8 14 0F"),
]


def frames_of(items: list[Decoded]) -> list[RawFrame]:
    return [item for item in items if isinstance(item, RawFrame)]


def errors_of(items: list[Decoded]) -> list[FramingError]:
    return [item for item in items if isinstance(item, FramingError)]


@pytest.mark.parametrize(("pkt", "message", "wire"), GOLDEN)
def test_golden_frames_encode(pkt: int, message: Message, wire: str) -> None:
    assert codec.encode(pkt, message) == bytes.fromhex(wire)


@pytest.mark.parametrize(("pkt", "message", "wire"), GOLDEN)
def test_golden_frames_decode(pkt: int, message: Message, wire: str) -> None:
    items = FrameDecoder().feed(bytes.fromhex(wire))
    assert len(items) == 1
    frame = items[0]
    assert isinstance(frame, RawFrame)
    assert frame.pkt == pkt
    assert codec.from_frame(frame) == message


def test_crc8_matches_the_standard_check_value() -> None:
    # CRC-8 (poly 0x07, init 0, no reflection, no xorout): check value of "123456789" is F4.
    assert crc8(b"123456789") == 0xF4


def test_only_f0_0f_81_are_escaped() -> None:
    assert stuff(bytes(range(256))) == bytes(
        b for v in range(256) for b in ((ESCAPE, v ^ 0x55) if v in (0xF0, 0x0F, 0x81) else (v,))
    )


def test_an_f0_data_byte_goes_out_as_81_a5_and_len_crc_cover_the_stuffed_body() -> None:
    wire = encode_frame(RawFrame(1, 36, bytes((0, 0, 0xF0, 20))))
    body = bytes((1, 36, 0, 0, 0x81, 0xA5, 20))
    assert (
        wire == bytes((START, ESCAPE, crc8(body) ^ 0x55, ESCAPE, len(body) ^ 0x55)) + body + b"\x0f"
    )
    assert frames_of(FrameDecoder().feed(wire)) == [RawFrame(1, 36, bytes((0, 0, 0xF0, 20)))]


def test_crc_and_len_whose_escaped_value_is_a_start_or_stop_byte_still_decode() -> None:
    # Find bodies whose CRC escapes to F0 (CRC A5) and to 0F (CRC 5A).
    wanted: dict[int, RawFrame] = {}
    for data in range(65536):
        frame = RawFrame(7, 36, data.to_bytes(2, "big"))
        crc = crc8(stuff(bytes((7, 36)) + frame.data))
        if crc in (0xA5, 0x5A):
            wanted.setdefault(crc, frame)
    assert sorted(wanted) == [0x5A, 0xA5]
    for crc, frame in wanted.items():
        wire = encode_frame(frame)
        assert wire[2] == crc ^ 0x55
        assert frames_of(FrameDecoder().feed(wire)) == [frame]


def test_any_escaped_byte_is_unescaped_even_when_escaping_was_not_needed() -> None:
    # A host that also escapes 0x55 and 0x0A (as one public library does) is still understood.
    body = bytes((0x81, 0x0A ^ 0x55, 0x0A))  # PKT 0x0A escaped, CMD 0x0A (GetStimulationMode)
    wire = bytes((START, ESCAPE, crc8(body) ^ 0x55, ESCAPE, len(body) ^ 0x55)) + body + b"\x0f"
    assert frames_of(FrameDecoder().feed(wire)) == [RawFrame(0x0A, 0x0A)]


def test_bad_crc_and_bad_len_are_transfer_errors_naming_the_packet() -> None:
    wire = bytearray(codec.encode(9, GetStimulationMode()))
    wire[2] ^= 0x01
    items = FrameDecoder().feed(bytes(wire))
    assert len(items) == 1
    assert isinstance(items[0], TransferError)
    assert (items[0].pkt, items[0].command) == (9, Command.GET_STIMULATION_MODE)
    wire = bytearray(codec.encode(9, GetStimulationMode()))
    wire[4] ^= 0x01
    items = FrameDecoder().feed(bytes(wire))
    assert len(items) == 1
    assert isinstance(items[0], TransferError)
    assert "length" in str(items[0])


def test_garbage_is_reported_once_and_the_next_frame_decodes() -> None:
    items = FrameDecoder().feed(b"\x00\x12\x34" + codec.encode(1, Watchdog()))
    assert len(errors_of(items)) == 1
    assert frames_of(items) == [RawFrame(1, 4)]


def test_a_frame_cut_short_by_a_new_start_byte_is_an_error_then_resync() -> None:
    whole = codec.encode(1, Watchdog())
    items = FrameDecoder().feed(whole[:5] + codec.encode(2, GetStimulationMode()))
    assert len(errors_of(items)) == 1
    assert frames_of(items) == [RawFrame(2, 10)]


def test_an_overlong_frame_is_an_error() -> None:
    items = FrameDecoder().feed(b"\xf0" + b"\x11" * 300 + b"\x0f" + codec.encode(3, Watchdog()))
    assert errors_of(items)
    assert frames_of(items) == [RawFrame(3, 4)]


# --------------------------------------------------------------------------- codec round trips

EVERY_MESSAGE: list[Message] = [
    Init(1),
    InitAck(0),
    InitAck(-5),
    UnknownCommand(55),
    Watchdog(),
    GetStimulationMode(),
    GetStimulationModeAck(0, 2),
    GetStimulationModeAck(-3, 0),
    InitChannelListMode(3, 0b1000_0001, 0b1000_0000, 4, 2048, 1),
    InitChannelListModeAck(-2),
    StartChannelListMode((ChannelPulse(0, 200, 20), ChannelPulse(2, 500, 130))),
    StartChannelListModeAck(-8),
    StopChannelListMode(),
    StopChannelListModeAck(-1),
    SinglePulse(7, 0x1F0, 0x0F),
    SinglePulseAck(0),
    StimulationError(-1),
    StimulationError(-2),
    StimulationError(-3),
    Unknown(60, b"\x01\x02"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE)
def test_every_message_round_trips(message: Message) -> None:
    for pkt in (0, 0x0F, 0x81, 0xF0, 255):
        frames = frames_of(FrameDecoder().feed(codec.encode(pkt, message)))
        assert len(frames) == 1
        assert frames[0].pkt == pkt
        assert codec.from_frame(frames[0]) == message


def test_result_bytes_are_signed() -> None:
    assert codec.encode(0, StartChannelListModeAck(-8))[-2] == 0xF8
    frame = RawFrame(0, Command.STIMULATION_ERROR, b"\xfe")
    assert codec.from_frame(frame) == StimulationError(-2)


def test_main_interval_and_inter_pulse_codes() -> None:
    assert codec.main_interval_code(8.0) == 14
    assert codec.main_interval_code(1025.0) == 2048
    assert codec.main_interval_ms(198) == 100.0
    assert codec.inter_pulse_interval_code(1.5) == 0
    assert codec.inter_pulse_interval_ms(10) == 6.5
    with pytest.raises(ValueError, match="main interval"):
        codec.main_interval_code(8.25)
    assert codec.channels_of(codec.mask_of({1, 3, 8})) == (1, 3, 8)


def test_a_known_command_with_the_wrong_data_length_is_a_payload_error() -> None:
    with pytest.raises(PayloadError) as caught:
        codec.from_frame(RawFrame(4, Command.INIT_CHANNEL_LIST_MODE, b"\x00"))
    assert caught.value.pkt == 4
    assert isinstance(caught.value, FramingError)
    with pytest.raises(PayloadError):
        codec.from_frame(RawFrame(4, Command.START_CHANNEL_LIST_MODE, b"\x00\x00\x00"))
    with pytest.raises(PayloadError):
        codec.from_frame(RawFrame(4, Command.WATCHDOG, b"\x00"))


# --------------------------------------------------------------------------- fuzz

raw_frames = st.builds(
    RawFrame,
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=60),
)
# Bias the byte values towards the special ones.
special_bytes = st.binary(max_size=200) | st.lists(
    st.sampled_from([0xF0, 0x0F, 0x81, 0x55, 0xA5, 0x5A, 0xD4, 0x00]), max_size=60
).map(bytes)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


@settings(max_examples=400, deadline=None)
@given(data=special_bytes, cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_random_bytes_give_only_frames_or_framing_errors_however_split(
    data: bytes, cuts: list[int]
) -> None:
    whole = FrameDecoder().feed(data)
    decoder = FrameDecoder()
    pieces: list[Decoded] = []
    for piece in split(data, cuts):
        pieces.extend(decoder.feed(piece))
    for item in whole:
        assert isinstance(item, (RawFrame, FramingError))
    assert [repr(i) if isinstance(i, RawFrame) else str(i) for i in whole] == [
        repr(i) if isinstance(i, RawFrame) else str(i) for i in pieces
    ]
    # Decoding any valid frame as a message raises only the decoder's own error type.
    for frame in frames_of(whole):
        with contextlib.suppress(FramingError):
            codec.from_frame(frame)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(raw_frames, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 2000)))
def test_frames_survive_any_split_and_several_in_one_read(
    frames: list[RawFrame], cuts: list[int]
) -> None:
    wire = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    out: list[Decoded] = []
    for piece in split(wire, cuts):
        out.extend(decoder.feed(piece))
    assert out == frames


@settings(max_examples=300, deadline=None)
@given(garbage=special_bytes, frames=st.lists(raw_frames, min_size=1, max_size=3))
def test_decoder_resynchronises_after_any_garbage(garbage: bytes, frames: list[RawFrame]) -> None:
    # Two stop bytes end whatever the garbage left open (even a dangling escape byte).
    wire = garbage + bytes((STOP, STOP)) + b"".join(encode_frame(f) for f in frames)
    out = FrameDecoder().feed(wire)
    assert frames_of(out)[-len(frames) :] == frames
    assert out[-len(frames) :] == frames


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=100).filter(lambda g: START not in g), frame=raw_frames)
def test_leading_garbage_without_a_start_byte_costs_nothing(
    garbage: bytes, frame: RawFrame
) -> None:
    out = FrameDecoder().feed(garbage + encode_frame(frame))
    assert frames_of(out) == [frame]
    assert len(errors_of(out)) == (1 if garbage else 0)


@settings(max_examples=300, deadline=None)
@given(frame=raw_frames, index=st.integers(0, 200), flip=st.integers(1, 255))
def test_a_corrupted_byte_never_yields_a_different_frame_silently(
    frame: RawFrame, index: int, flip: int
) -> None:
    wire = bytearray(encode_frame(frame))
    wire[index % len(wire)] ^= flip
    sentinel = RawFrame(1, 4)
    out = FrameDecoder().feed(bytes(wire) + bytes((STOP, STOP)) + encode_frame(sentinel))
    for item in out:
        assert isinstance(item, (RawFrame, FramingError))
    # CRC-8 catches every single-byte error in the body; header/framing corruption is an error.
    assert frames_of(out) == [sentinel]
    assert errors_of(out)
