"""The codec's fast paths give exactly what the precise reference code gives."""

import math
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.tsp.codec import (
    _FORMATTED_MAX,
    CommandValueError,
    _format_decimal,
    _format_decimal_exact,
    format_number,
)
from drivers.tsp.frame import (
    FrameDecoder,
    crc16_ccitt_false,
    crc16_ccitt_false_reference,
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
