"""TSP/2 framing: one ASCII line per frame, protected by CRC-16/CCITT-FALSE.

Wire format (docs/protocol.md §2)::

    <seq> SP <VERB> *( SP <arg> ) "*" <CRC4> [CR] LF

* ``seq``: decimal 0-65535 without leading zeros.
* ``VERB``: 1-16 upper-case letters A-Z.
* ``arg``: 1+ printable ASCII bytes 0x21-0x7E other than ``*``; single spaces between tokens.
* ``CRC4``: exactly four upper-case hex digits, CRC-16/CCITT-FALSE over every byte before ``*``.
* At most :data:`MAX_FRAME_LEN` bytes per line, counting the ``CR`` (if any) and the ``LF``.

This module is sans-I/O: :class:`FrameDecoder` takes bytes in and gives frames and errors out.
A bad line is reported as one :class:`TspFramingError` and never yields a frame; the decoder
then resynchronises at the next ``LF``. Empty lines (a bare ``LF`` or ``CR LF``) are ignored.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from drivers.base import FramingError

MAX_FRAME_LEN = 256
"""Longest frame in bytes, including the trailing ``CR`` (if sent) and ``LF``.

256, not 128: the ``HELLO`` acknowledgement with every identity field is ~160 bytes."""
MAX_SEQ = 65535
MAX_VERB_LEN = 16

_SEQ_RE = re.compile(rb"(?:0|[1-9][0-9]{0,4})")
_VERB_RE = re.compile(rb"[A-Z]{1,16}")
_ARG_RE = re.compile(rb"[\x21-\x29\x2b-\x7e]+")
_CRC_RE = re.compile(rb"[0-9A-F]{4}")
_LEADING_SEQ_RE = re.compile(rb"(0|[1-9][0-9]{0,4}) ")
# Fast paths: one match for a whole well-formed body / line. Anything they refuse goes through
# the field-by-field checks below, which name the exact problem.
_BODY_RE = re.compile(rb"(?:0|[1-9][0-9]{0,4}) [A-Z]{1,16}(?: [\x21-\x29\x2b-\x7e]+)*")
_LINE_RE = re.compile(
    rb"(0|[1-9][0-9]{0,4}) ([A-Z]{1,16})((?: [\x21-\x29\x2b-\x7e]+)*)\*([0-9A-F]{4})\r?"
)


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_table()


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0.

    ``crc16_ccitt_false(b"123456789") == 0x29B1``. ``binascii.crc_hqx`` computes exactly this
    CRC in C; :func:`crc16_ccitt_false_reference` is the table-driven definition it is tested
    against.
    """
    return binascii.crc_hqx(data, crc)


def sealed(body: bytes) -> bytes:
    """The wire line of an already valid ``body``: the body, ``*``, its CRC and ``LF``."""
    return body + b"*%04X\n" % binascii.crc_hqx(body, 0xFFFF)


def checksum_matches(line: bytes, crc_at: int) -> bool:
    """The four hex digits at ``crc_at`` (just after the ``*``) are the CRC of every byte
    before the ``*``."""
    return binascii.crc_hqx(line[: crc_at - 1], 0xFFFF) == int(line[crc_at : crc_at + 4], 16)


def crc16_ccitt_false_reference(data: bytes, crc: int = 0xFFFF) -> int:
    """The same CRC, table-driven in Python: the definition firmware authors port."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


class FrameErrorReason(StrEnum):
    """Why a line was not a frame."""

    CRC = "crc"
    """No ``*`` and four upper-case hex digits at the end, or they do not match the line.
    A device answers ``ERR CRC``; the host retransmits."""
    SYNTAX = "syntax"
    """The checksum matches but the grammar does not (sequence number, verb, empty argument,
    byte outside the charset). A device answers ``ERR PARAM``; retransmitting cannot help."""
    LENGTH = "length"
    """More than :data:`MAX_FRAME_LEN` bytes without a line end. A device answers ``ERR CRC``."""


class TspFramingError(FramingError):
    """One bad line on the wire. ``seq`` is the line's sequence number when readable."""

    def __init__(self, reason: FrameErrorReason, detail: str, seq: int | None, raw: bytes):
        self.reason = reason
        self.detail = detail
        self.seq = seq
        self.raw = raw
        super().__init__(f"bad TSP frame ({reason.value}): {detail}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: sequence number, verb and argument tokens (still text)."""

    seq: int
    verb: str
    args: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return encode_frame(self.seq, self.verb, self.args)


def _check_fields(seq: int, verb: str, args: Iterable[str]) -> bytes:
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} is outside 0-{MAX_SEQ}")
    parts = [str(seq).encode("ascii")]
    if not isinstance(verb, str) or not verb.isascii() or not _VERB_RE.fullmatch(verb.encode()):
        raise ValueError(f"verb {verb!r} must be 1-{MAX_VERB_LEN} letters A-Z")
    parts.append(verb.encode("ascii"))
    for arg in args:
        raw = arg.encode("ascii", "replace") if isinstance(arg, str) else b""
        if not isinstance(arg, str) or not arg.isascii() or not _ARG_RE.fullmatch(raw):
            raise ValueError(f"argument {arg!r} must be printable ASCII without spaces or '*'")
        parts.append(raw)
    return b" ".join(parts)


def _fast_body(seq: int, verb: str, args: tuple[str, ...]) -> bytes | None:
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ or type(verb) is not str:
        return None
    try:
        text = f"{seq} {verb} {' '.join(args)}" if args else f"{seq} {verb}"
        body = text.encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None
    # one space per separator: an argument containing a space must not pass as two arguments
    if body.count(b" ") != 1 + len(args) or not _BODY_RE.fullmatch(body):
        return None
    return body


def encode_frame(seq: int, verb: str, args: Iterable[str] = ()) -> bytes:
    """The wire bytes of one frame, ending in ``LF``. ``ValueError`` if it cannot be framed."""
    args = tuple(args)
    body = _fast_body(seq, verb, args)
    if body is None:
        body = _check_fields(seq, verb, args)
    line = sealed(body)
    if len(line) > MAX_FRAME_LEN:
        raise ValueError(f"frame is {len(line)} bytes, more than the {MAX_FRAME_LEN} allowed")
    return line


def _readable_seq(line: bytes) -> int | None:
    match = _LEADING_SEQ_RE.match(line)
    if match is None:
        return None
    value = int(match.group(1))
    return value if value <= MAX_SEQ else None


def decode_line(line: bytes) -> Frame:
    """Decode one line without its ``LF`` (a trailing ``CR`` is allowed).

    Raises :class:`TspFramingError` for anything that is not exactly one valid frame.
    """
    if len(line) < MAX_FRAME_LEN:
        match = _LINE_RE.fullmatch(line)
        if match is not None:
            seq = int(match[1])
            crc_at = match.start(4)
            if seq <= MAX_SEQ and checksum_matches(line, crc_at):
                args = match[3]
                return (
                    Frame(seq, match[2].decode("ascii"), tuple(args[1:].decode("ascii").split(" ")))
                    if args
                    else Frame(seq, match[2].decode("ascii"))
                )
    raw = line
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(raw) + 1 > MAX_FRAME_LEN:
        raise TspFramingError(
            FrameErrorReason.LENGTH,
            f"line is longer than {MAX_FRAME_LEN} bytes",
            _readable_seq(line),
            raw,
        )
    star = line.rfind(b"*")
    if star < 0 or not _CRC_RE.fullmatch(line[star + 1 :]):
        raise TspFramingError(
            FrameErrorReason.CRC,
            "no '*' and 4 upper-case hex digits at the end",
            _readable_seq(line),
            raw,
        )
    body = line[:star]
    seq_hint = _readable_seq(body)
    if crc16_ccitt_false(body) != int(line[star + 1 :], 16):
        raise TspFramingError(
            FrameErrorReason.CRC,
            f"checksum {line[star + 1 :].decode()} does not match {crc16_ccitt_false(body):04X}",
            seq_hint,
            raw,
        )
    tokens = body.split(b" ")
    if len(tokens) < 2:
        raise TspFramingError(FrameErrorReason.SYNTAX, "no verb", seq_hint, raw)
    seq_raw, verb_raw, *arg_raw = tokens
    if not _SEQ_RE.fullmatch(seq_raw) or int(seq_raw) > MAX_SEQ:
        raise TspFramingError(FrameErrorReason.SYNTAX, "bad sequence number", None, raw)
    seq = int(seq_raw)
    if not _VERB_RE.fullmatch(verb_raw):
        raise TspFramingError(FrameErrorReason.SYNTAX, "verb must be letters A-Z", seq, raw)
    for token in arg_raw:
        if not _ARG_RE.fullmatch(token):
            raise TspFramingError(
                FrameErrorReason.SYNTAX,
                "empty argument or byte outside printable ASCII",
                seq,
                raw,
            )
    return Frame(seq, verb_raw.decode("ascii"), tuple(t.decode("ascii") for t in arg_raw))


class FrameDecoder:
    """Incremental decoder: feed any chunks, get frames and per-line errors in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False
        self.frames_decoded = 0
        self.errors = 0

    def reset(self) -> None:
        """Forget any partial line (for example after a reconnect)."""
        self._buffer.clear()
        self._discarding = False

    def lines(self, data: bytes) -> list[bytes | TspFramingError]:
        """Split ``data`` into complete lines (without their ``LF``; empty lines skipped) and
        length errors, in order, keeping a partial line for the next call. Each line still has
        to be decoded (:func:`decode_line`)."""
        out: list[bytes | TspFramingError] = []
        start = 0
        size = len(data)
        while start < size:
            newline = data.find(b"\n", start)
            end = size if newline < 0 else newline
            if self._discarding:
                if newline >= 0:
                    self._discarding = False
            elif not self._buffer and newline >= 0 and end - start < MAX_FRAME_LEN:
                # the common case: a whole line inside this chunk
                if end > start and not (end - start == 1 and data[start] == 0x0D):
                    out.append(data[start:end])
            else:
                self._buffer += data[start:end]
                if len(self._buffer) + 1 > MAX_FRAME_LEN:
                    # Too long: report once, then skip to the next LF.
                    head = bytes(self._buffer[:MAX_FRAME_LEN])
                    out.append(
                        TspFramingError(
                            FrameErrorReason.LENGTH,
                            f"line is longer than {MAX_FRAME_LEN} bytes",
                            _readable_seq(head),
                            head,
                        )
                    )
                    self.errors += 1
                    self._buffer.clear()
                    self._discarding = newline < 0
                elif newline >= 0:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    if line not in (b"", b"\r"):
                        out.append(line)
            if newline < 0:
                break
            start = newline + 1
        return out

    def feed(self, data: bytes) -> list[Frame | FramingError]:
        out: list[Frame | FramingError] = []
        for line in self.lines(data):
            if isinstance(line, TspFramingError):
                out.append(line)
                continue
            try:
                out.append(decode_line(line))
                self.frames_decoded += 1
            except TspFramingError as error:
                out.append(error)
                self.errors += 1
        return out
