"""ScienceMode4 framing and codec: golden frames, the framer's known pitfalls, round trips.

The golden frames are the ones computed in ``../shared/reference/driver-and-simulator-anchors.md``
§1.3 from the C library's ``smpt_packet_internal.c`` (they are byte-identical to
``science-mode-4``'s ``Protocol.packet_to_bytes``; tests/test_sciencemode4_independent_host.py
compares the two encoders directly). The decoder cases are the bugs a framer tends to have,
as science-mode-4's own regression tests list them: a minimal 12-byte packet, leading
garbage, split reads, two packets in one read, an escaped F0 in the data.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import FramingError
from drivers.sciencemode4 import codec
from drivers.sciencemode4.codec import ChannelState, MlChannel, MlUpdate, Point
from drivers.sciencemode4.frame import (
    FrameDecoder,
    RawFrame,
    TransferError,
    crc16,
    encode_frame,
    unstuff,
)

GOLDEN = [
    ("Ml_Stop pkt0", 0, codec.MlStop(), "F0 81 55 81 59 81 51 81 75 00 22 0F"),
    (
        "Get_Extended_Version pkt1",
        1,
        codec.GetExtendedVersion(),
        "F0 81 55 81 59 81 91 81 D1 04 44 0F",
    ),
    (
        "Ml_Get_Current_Data pkt2 sel=4",
        2,
        codec.MlGetCurrentData(),
        "F0 81 55 81 58 81 76 81 52 08 24 04 0F",
    ),
]


@pytest.mark.parametrize(("name", "pkt", "message", "wire"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_frames(name: str, pkt: int, message: codec.Message, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert codec.encode(pkt, message) == data
    (frame,) = FrameDecoder().feed(data)
    assert isinstance(frame, RawFrame)
    assert (frame.pkt, frame.command) == (pkt, int(message.command))
    assert codec.from_frame(frame) == message


def test_crc_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3  # the CRC-16/XMODEM check value
    assert crc16(b"") == 0


def test_header_bytes_are_always_escaped_and_len_counts_the_whole_stuffed_packet() -> None:
    wire = codec.encode(0, codec.MlInit(True))
    assert wire[0] == 0xF0
    assert wire[-1] == 0x0F
    assert [wire[i] for i in (1, 3, 5, 7)] == [0x81] * 4
    assert ((wire[2] ^ 0x55) << 8) | (wire[4] ^ 0x55) == len(wire)
    assert ((wire[6] ^ 0x55) << 8) | (wire[8] ^ 0x55) == crc16(wire[9:-1])


def test_the_packet_number_and_command_share_the_first_byte() -> None:
    # packet 63, command 0x3FF: B9 = 63 << 2 | 3 = 0xFF, B10 = 0xFF
    wire = encode_frame(RawFrame(63, 0x3FF))
    assert wire[9:11] == b"\xff\xff"
    # packet 60 with Ml_Stop (34): B9 = 0xF0 must be stuffed
    wire = codec.encode(60, codec.MlStop())
    assert wire[9:11] == bytes((0x81, 0xF0 ^ 0x55))
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, RawFrame)
    assert (frame.pkt, frame.command) == (60, 34)


def test_special_bytes_in_the_data_are_stuffed_and_nothing_else() -> None:
    frame = RawFrame(5, int(codec.Command.GET_DEVICE_ID_ACK), b"\x00\xf0\x0f\x81\x55\x0a")
    wire = encode_frame(frame)
    assert wire[11:-1] == b"\x00\x81\xa5\x81\x5a\x81\xd4\x55\x0a"
    assert unstuff(wire[9:-1])[2:] == frame.data
    assert FrameDecoder().feed(wire) == [frame]


def test_a_minimal_12_byte_packet_is_found() -> None:
    wire = encode_frame(RawFrame(1, 3))
    assert len(wire) == 12
    assert FrameDecoder().feed(wire) == [RawFrame(1, 3)]


def test_leading_garbage_is_reported_once_and_the_next_packet_is_kept() -> None:
    wire = codec.encode(7, codec.MlStop())
    out = FrameDecoder().feed(b"\x00\x12\x0f\x81" + wire + wire)
    assert isinstance(out[0], FramingError)
    assert out[1:] == [RawFrame(7, 34), RawFrame(7, 34)]


@given(st.lists(st.integers(1, 20), min_size=1, max_size=30))
def test_split_reads_give_the_same_packets(cuts: list[int]) -> None:
    update = MlUpdate(
        (
            MlChannel(20, (Point(200, 20), Point(200, -20)), ramp=3),
            None,
            MlChannel(0.5, (Point(4095, -130), Point(10, 0.5), Point(0, 0))),
            *(None,) * 5,
        )
    )
    wire = codec.encode(9, update) + codec.encode(10, codec.MlStop())
    decoder = FrameDecoder()
    out: list[object] = []
    start = 0
    for cut in cuts:
        out += decoder.feed(wire[start : start + cut])
        start += cut
    out += decoder.feed(wire[start:])
    assert len(out) == 2
    assert isinstance(out[0], RawFrame)
    assert codec.from_frame(out[0]) == update
    assert out[1] == RawFrame(10, 34)


@given(
    pkt=st.integers(0, 63),
    command=st.integers(0, 0x3FF),
    data=st.binary(max_size=200),
)
def test_any_frame_round_trips(pkt: int, command: int, data: bytes) -> None:
    frame = RawFrame(pkt, command, data)
    assert FrameDecoder().feed(encode_frame(frame)) == [frame]


def test_a_damaged_packet_is_a_transfer_error_naming_its_packet_and_command() -> None:
    wire = bytearray(codec.encode(12, codec.MlGetCurrentData()))
    wire[-2] ^= 0x01  # the data byte
    (error,) = FrameDecoder().feed(bytes(wire))
    assert isinstance(error, TransferError)
    assert "checksum" in str(error)
    assert (error.pkt, error.command) == (12, 36)
    wire = bytearray(codec.encode(12, codec.MlGetCurrentData()))
    wire[4] ^= 0x01  # LEN
    (error,) = FrameDecoder().feed(bytes(wire))
    assert isinstance(error, TransferError)
    assert "length" in str(error)


def test_unescaped_headers_and_short_packets_are_framing_errors() -> None:
    decoder = FrameDecoder()
    assert isinstance(decoder.feed(b"\xf0\x01\x02\x0f")[0], FramingError)
    (error,) = decoder.feed(b"\xf0" + b"\x00" * 12 + b"\x0f")
    assert isinstance(error, FramingError)
    assert not isinstance(error, TransferError)


def test_points_encode_as_the_c_library_does() -> None:
    # smpt_insert_ll_point: time 12 bits, current (2 I + 300) 10 bits, interpolation 2 bits
    assert Point(200, 20).data() == bytes((0x0C, 0x85, 0x50, 0x00))
    assert Point(200, -20).data() == bytes((0x0C, 0x84, 0x10, 0x00))
    assert Point(4095, 150).data() == bytes((0xFF, 0xF9, 0x60, 0x00))
    assert Point(0, -150).data() == bytes((0x00, 0x00, 0x00, 0x00))
    for point in (Point(200, 20), Point(4095, -150), Point(10, 0.5), Point(1, 0, 1)):
        assert Point.decode(point.data()) == point
    for bad in (Point(4096, 0), Point(10, 150.5), Point(10, 0.25), Point(10, float("nan"))):
        with pytest.raises(ValueError, match="point"):
            bad.data()


def test_the_period_is_15_bits_and_the_accuracy_flag_its_lowest() -> None:
    # smpt_utils_insert_ml_update: (period*2) << 1 as MSB, LSB | double_period_accuracy
    assert MlChannel(20, (Point(200, 1),)).data()[:3] == bytes((0x00, 0x00, 0x50))
    assert MlChannel(16383, (Point(200, 1),)).data()[1:3] == bytes((0xFF, 0xFC))
    assert MlChannel(8191.75, (Point(200, 1),), double_accuracy=True).data()[1:3] == bytes(
        (0xFF, 0xFF)
    )
    head = MlChannel(1, tuple(Point(10, 0) for _ in range(16)), ramp=15).data()[0]
    assert head == 0xFF  # 16 points - 1, ramp 15
    for bad in (
        MlChannel(20.25, (Point(10, 0),)),
        MlChannel(20, ()),
        MlChannel(20, (Point(10, 0),), ramp=16),
        MlChannel(16384, (Point(10, 0),)),
    ):
        with pytest.raises(ValueError, match=r"period|points|ramp"):
            bad.data()


def test_the_current_data_answer_packs_8_states_in_nibbles() -> None:
    ack = codec.MlGetCurrentDataAck(
        0,
        active=(True, False, True) + (False,) * 5,
        states=(ChannelState.OK, ChannelState.ELECTRODE_ERROR, 2, 3, 0, 0, 0, 1),
    )
    assert ack.data() == bytes((0, 4, 0b101, 0x10, 0x32, 0x00, 0x10))
    (frame,) = FrameDecoder().feed(codec.encode(3, ack))
    assert isinstance(frame, RawFrame)
    assert codec.from_frame(frame) == ack


def test_general_acknowledgements_have_the_c_library_layouts() -> None:
    pairs: list[codec.Message] = [
        codec.GetDeviceIdAck(0, "ABC1234567"),
        codec.GetExtendedVersionAck(0, (1, 2, 3), (4, 0, 1), 0xDEADBEEF, 1, True),
        codec.GetVersionMainAck(0, (1, 2, 3), (4, 0, 1)),
        codec.GetBatteryStatusAck(0, 87, 4011),
        codec.GetStimStatusAck(0, codec.StimStatus.ML_RUNNING, codec.HighVoltage.V150),
        codec.GeneralError(codec.Result.TRANSFER_ERROR),
        codec.UnknownCommand(),
        codec.Ack(int(codec.Command.ML_UPDATE_ACK), codec.Result.PARAMETER_ERROR),
    ]
    for message in pairs:
        (frame,) = FrameDecoder().feed(codec.encode(1, message))
        assert isinstance(frame, RawFrame)
        assert codec.from_frame(frame) == message
    assert codec.GetBatteryStatusAck(0, 87, 4011).data() == bytes((0, 87, 0x0F, 0xAB))
    assert codec.GetExtendedVersionAck(0, (1, 2, 3), (4, 0, 1), 0xDEADBEEF, 1, True).data() == (
        bytes((0, 1, 2, 3, 4, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF, 1, 1))
    )


def test_malformed_payloads_raise_payload_errors_and_unknown_commands_decode() -> None:
    with pytest.raises(codec.PayloadError):
        codec.from_frame(RawFrame(1, int(codec.Command.ML_UPDATE), b"\x01\x10"))
    with pytest.raises(codec.PayloadError):
        codec.from_frame(RawFrame(1, int(codec.Command.GET_STIM_STATUS_ACK), b"\x00"))
    assert codec.from_frame(RawFrame(1, 500, b"xy")) == codec.Unknown(500, b"xy")
