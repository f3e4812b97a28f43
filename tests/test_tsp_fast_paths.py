"""The codec's fast paths give exactly what the precise reference code gives."""

import math
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import FramingError
from drivers.tsp.codec import (
    _FORMATTED_MAX,
    Ack,
    CommandValueError,
    TelemetryFrame,
    _format_decimal,
    _format_decimal_exact,
    decode_device_line,
    decode_device_message,
    encode_device_message,
    format_number,
)
from drivers.tsp.frame import (
    FrameDecoder,
    crc16_ccitt_false,
    crc16_ccitt_false_reference,
    decode_line,
    encode_frame,
)

finite = st.floats(min_value=0, max_value=999_999_999, allow_nan=False, allow_infinity=False)
decimals = st.integers(min_value=0, max_value=999_999_999_999).map(lambda n: n / 10_000)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(finite, decimals))
def test_fast_number_formatting_equals_decimal_rounding(value: float) -> None:
    for rounding in (ROUND_HALF_EVEN, ROUND_FLOOR):
        assert _format_decimal(value, rounding, "v") == _format_decimal_exact(value, rounding)


def test_ties_on_the_fourth_decimal_round_half_even_like_the_reference() -> None:
    for value in (0.0005, 0.0015, 2.0625, 12.3455):
        assert _format_decimal(value, ROUND_HALF_EVEN, "v") == _format_decimal_exact(
            value, ROUND_HALF_EVEN
        )


@settings(max_examples=3000, deadline=None)
@given(st.one_of(finite, decimals))
def test_remembered_number_texts_equal_the_reference(value: float) -> None:
    first = format_number(value)
    assert first == format_number(value) == _format_decimal_exact(value, ROUND_HALF_EVEN)


def test_remembering_never_lets_a_bad_value_through() -> None:
    assert format_number(1.0) == "1"
    assert format_number(0.0) == format_number(-0.0) == "0"
    for bad in (True, False, math.nan, math.inf, -1.0):
        with pytest.raises(CommandValueError):
            format_number(bad)  # True == 1.0 as a key: still refused


def test_the_table_of_remembered_texts_stays_bounded() -> None:
    from drivers.tsp import codec

    for n in range(_FORMATTED_MAX * 2 + 7):
        assert format_number(n / 1000) == _format_decimal_exact(n / 1000, ROUND_HALF_EVEN)
    assert len(codec._FORMATTED) <= _FORMATTED_MAX


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_c_crc_equals_the_table_driven_definition(data: bytes) -> None:
    assert crc16_ccitt_false(data) == crc16_ccitt_false_reference(data)


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0, max_value=65535),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=16),
    st.lists(
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="*"),
            min_size=1,
            max_size=8,
        ),
        max_size=6,
    ),
)
def test_fast_decode_round_trips_every_valid_frame(seq: int, verb: str, args: list[str]) -> None:
    frames = FrameDecoder().feed(encode_frame(seq, verb, args))
    assert len(frames) == 1
    frame = frames[0]
    assert not isinstance(frame, Exception)
    assert (frame.seq, frame.verb, frame.args) == (seq, verb, tuple(args))


def _general_decode(line: bytes) -> object:
    try:
        return decode_device_message(decode_line(line))
    except FramingError as error:
        return type(error)


def _fast_decode(line: bytes) -> object:
    try:
        return decode_device_line(line)
    except FramingError as error:
        return type(error)


readings = st.one_of(st.none(), finite, decimals)


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 65535), st.integers(1, 16), finite, readings, readings)
def test_fast_telemetry_encoding_equals_the_general_path(
    seq: int, channel: int, set_ma: float, measured: float | None, impedance: float | None
) -> None:
    frame = TelemetryFrame(seq, channel, set_ma, measured, impedance)
    line = encode_device_message(frame)
    assert line == encode_frame(seq, "TEL", frame.to_args())
    assert decode_device_line(line[:-1]) == decode_device_message(decode_line(line[:-1]))


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.from_regex(
            rb"\A(0|[1-9][0-9]{0,5}|01) TEL ([0-9]{1,2}|-)( [0-9.\-]{1,12}){2,4}\*[0-9A-F]{4}\r?\Z"
        ),
        st.from_regex(
            rb"\A(0|[1-9][0-9]{0,5}|01) (ACK|ACKS|ERR)( [a-z=0-9]{1,5})?\*[0-9A-F]{4}\r?\Z"
        ),
    ),
    st.booleans(),
)
def test_fast_telemetry_decoding_equals_the_general_path(line: bytes, fix_crc: bool) -> None:
    if fix_crc and b"*" in line:
        body = line[: line.rindex(b"*")]
        line = body + b"*%04X" % crc16_ccitt_false(body)
    assert _fast_decode(line) == _general_decode(line)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 65535))
def test_fast_acknowledgement_encoding_equals_the_general_path(seq: int) -> None:
    line = encode_device_message(Ack(seq))
    assert line == encode_frame(seq, "ACK")
    assert decode_device_line(line[:-1]) == Ack(seq)
