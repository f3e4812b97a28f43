"""docs/protocol.md and drivers/tsp must agree: every golden frame in the document is checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers.tsp.codec import (
    Ack,
    MessageError,
    decode_command,
    decode_device_message,
    encode_command,
    encode_device_message,
    framing_error_reply,
    message_error_reply,
    parse_hello_ack,
    parse_status_ack,
)
from drivers.tsp.frame import Frame, FrameDecoder, crc16_ccitt_false
from tests.test_tsp_frames import GOLDEN_COMMANDS

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_ROW = re.compile(r"^\|\s*(H→D|D→H)\s*\|\s*`([^`]+)`\s*\|")
_BAD_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|[^|]*\|\s*`([^`]+)`\s*\|")


def _section(name: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    begin = text.index(f"<!-- {name}:begin -->")
    end = text.index(f"<!-- {name}:end -->")
    return text[begin:end].splitlines()


def _golden() -> list[tuple[str, bytes]]:
    rows = []
    for line in _section("golden-frames"):
        match = _ROW.match(line)
        if match:
            rows.append((match.group(1), match.group(2).encode("ascii") + b"\n"))
    return rows


def _bad() -> list[tuple[bytes, bytes]]:
    rows = []
    for line in _section("bad-lines"):
        match = _BAD_ROW.match(line)
        if match:
            rows.append((match.group(1).encode("ascii"), match.group(2).encode("ascii") + b"\n"))
    return rows


GOLDEN = _golden()
BAD = _bad()


def test_the_document_has_golden_frames_for_every_verb_and_event() -> None:
    assert len(GOLDEN) >= 25
    verbs = {wire.split(b"*")[0].split(b" ")[1] for _, wire in GOLDEN}
    assert verbs >= {b"HELLO", b"CFG", b"AMP", b"START", b"STOP", b"PING", b"STATUS"}
    assert verbs >= {b"ACK", b"ERR", b"TEL", b"EVT"}
    events = {wire.split(b" ")[2].split(b"*")[0] for _, wire in GOLDEN if b" EVT " in wire}
    assert events == {b"LEADOFF", b"WDT", b"FAULT", b"BATLOW", b"RESET"}
    assert len(BAD) >= 5


@pytest.mark.parametrize(("direction", "wire"), GOLDEN, ids=[w.decode() for _, w in GOLDEN])
def test_golden_frame_decodes_and_re_encodes_exactly(direction: str, wire: bytes) -> None:
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, Frame)
    assert frame.encode() == wire
    if direction == "H→D":
        command = decode_command(frame)
        assert encode_command(frame.seq, command) == wire
    else:
        message = decode_device_message(frame)
        assert encode_device_message(message) == wire
        if isinstance(message, Ack) and message.positional:
            parse_hello_ack(message)
        elif isinstance(message, Ack) and message.fields:
            parse_status_ack(message)


def test_every_typed_golden_command_is_in_the_document() -> None:
    documented = {wire for direction, wire in GOLDEN if direction == "H→D"}
    for seq, command, wire in GOLDEN_COMMANDS:
        assert encode_command(seq, command) == wire
        assert wire in documented


@pytest.mark.parametrize(("line", "answer"), BAD, ids=[b.decode() for b, _ in BAD])
def test_bad_lines_are_rejected_with_the_documented_answer(line: bytes, answer: bytes) -> None:
    (result,) = FrameDecoder().feed(line + b"\n")
    if isinstance(result, Frame):
        with pytest.raises(MessageError) as info:
            decode_command(result)
        reply = message_error_reply(result.seq, info.value)
    else:
        reply = framing_error_reply(result)
    assert encode_device_message(reply) == answer


def test_documented_crc_values() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "**0x29B1**" in text
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert "`7 AMP 1 12.5*1600`" in text
    assert crc16_ccitt_false(b"7 AMP 1 12.5") == 0x1600
    listed = "37 20 41 4D 50 20 31 20 31 32 2E 35 2A 31 36 30 30 0A"
    assert listed in text
    assert bytes.fromhex(listed) == b"7 AMP 1 12.5*1600\n"
