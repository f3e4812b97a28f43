"""ScienceMode2 framing: start/stop bytes, byte stuffing, CRC-8 and length.

A frame on the wire is::

    F0 | 81 | CRC^55 | 81 | LEN^55 | PKT CMD DATA... (stuffed) | 0F

* Any F0, 0F or 81 inside the body (packet number, command, data) is sent as ``81, b ^ 55``.
  Nothing else is escaped on encode.
* CRC is CRC-8 (polynomial 0x07, init 0, no reflection, no final XOR) over the *stuffed* body,
  and LEN is the number of bytes of the *stuffed* body. Both are always sent escaped, even when
  the escaped value is itself F0 or 0F.
* The decoder requires CRC and LEN escaped, un-escapes ``81 x`` to ``x ^ 55`` for ANY x (some
  hosts escape more byte values than required, and an escaped CRC or LEN may be F0/0F),
  resynchronises on the next F0 after garbage, and reports a bad frame as a
  :class:`~drivers.base.FramingError` value -- never as a decoded frame, and never by raising
  anything else.

This module is sans-I/O: bytes in, frames and errors out.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import FramingError

START = 0xF0
STOP = 0x0F
ESCAPE = 0x81
KEY = 0x55
MAX_DATA = 60
"""Most data bytes a frame carries (after PKT and CMD)."""
_SPECIAL = frozenset((START, STOP, ESCAPE))
_MAX_RAW = 4 + 2 * (2 + MAX_DATA)
"""Most bytes between start and stop byte: escaped CRC and LEN plus a fully escaped body."""


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, initial value 0, no reflection, no final XOR."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def stuff(body: bytes) -> bytes:
    """Escape F0, 0F and 81 (and nothing else) as ``81, b ^ 55``."""
    out = bytearray()
    for byte in body:
        if byte in _SPECIAL:
            out += bytes((ESCAPE, byte ^ KEY))
        else:
            out.append(byte)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One valid frame: packet number, command number and (un-escaped) data bytes."""

    pkt: int
    command: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.pkt <= 255:
            raise ValueError(f"packet number {self.pkt} is outside 0-255")
        if not 0 <= self.command <= 255:
            raise ValueError(f"command number {self.command} is outside 0-255")
        if len(self.data) > MAX_DATA:
            raise ValueError(f"{len(self.data)} data bytes; a frame carries at most {MAX_DATA}")


def encode_frame(frame: RawFrame) -> bytes:
    """The bytes to put on the wire for ``frame``."""
    body = stuff(bytes((frame.pkt, frame.command)) + frame.data)
    return bytes((START, ESCAPE, crc8(body) ^ KEY, ESCAPE, len(body) ^ KEY)) + body + bytes((STOP,))


class TransferError(FramingError):
    """A frame whose CRC or LEN does not match (the protocol's "transfer error").

    ``pkt`` and ``command`` are what the body claims, when it was long enough to say; a device
    answers with a transfer-error acknowledgement for that command.
    """

    def __init__(self, message: str, pkt: int | None = None, command: int | None = None) -> None:
        super().__init__(message)
        self.pkt = pkt
        self.command = command


Decoded = RawFrame | FramingError


class FrameDecoder:
    """Incremental decoder. Feed it whatever the port returned; get frames and errors back.

    Bytes may arrive split anywhere and several frames may arrive in one read. Garbage outside
    a frame is reported once per run (when the next start byte arrives), as a
    :class:`FramingError`.
    """

    def __init__(self) -> None:
        self._in_frame = False
        self._escaped = False
        self._raw = bytearray()
        self._garbage = 0
        self.frames = 0
        self.errors = 0

    def reset(self) -> None:
        """Forget any partial frame (for example after reopening the port)."""
        self._in_frame = False
        self._escaped = False
        self._raw.clear()
        self._garbage = 0

    def feed(self, data: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        for byte in data:
            if not self._in_frame:
                if byte == START:
                    self._flush_garbage(out)
                    self._begin()
                else:
                    self._garbage += 1
                continue
            if self._escaped:
                # 81 x is an escaped byte for ANY x, including F0 and 0F (an escaped CRC or LEN
                # may take those values).
                self._escaped = False
                self._raw.append(byte)
            elif byte == ESCAPE:
                self._escaped = True
                self._raw.append(byte)
            elif byte == START:
                self._error(out, FramingError("frame cut short by a new start byte"))
                self._begin()
                continue
            elif byte == STOP:
                self._in_frame = False
                self._finish(out)
                continue
            else:
                self._raw.append(byte)
            if len(self._raw) > _MAX_RAW:
                self._in_frame = False
                self._escaped = False
                self._error(out, FramingError(f"frame longer than {_MAX_RAW} bytes"))
        return out

    # ---- internals
    def _begin(self) -> None:
        self._in_frame = True
        self._escaped = False
        self._raw.clear()

    def _flush_garbage(self, out: list[Decoded]) -> None:
        if self._garbage:
            count, self._garbage = self._garbage, 0
            self._error(out, FramingError(f"{count} bytes outside a frame skipped"))

    def _error(self, out: list[Decoded], error: FramingError) -> None:
        self.errors += 1
        out.append(error)

    def _finish(self, out: list[Decoded]) -> None:
        raw = bytes(self._raw)
        self._raw.clear()
        values: list[int] = []
        ends: list[int] = []  # raw offset just after each value
        i = 0
        while i < len(raw):
            if raw[i] == ESCAPE:
                values.append(raw[i + 1] ^ KEY)
                i += 2
            else:
                values.append(raw[i])
                i += 1
            ends.append(i)
        if len(values) < 4:
            self._error(out, FramingError(f"frame too short ({len(raw)} bytes)"))
            return
        if raw[0] != ESCAPE or raw[2] != ESCAPE:
            self._error(out, FramingError("CRC and LEN are not escaped"))
            return
        crc, length = values[0], values[1]
        body = raw[ends[1] :]
        pkt, command = values[2], values[3]
        if length != len(body):
            self._error(
                out,
                TransferError(
                    f"length mismatch: LEN says {length}, body has {len(body)} bytes", pkt, command
                ),
            )
            return
        actual = crc8(body)
        if crc != actual:
            self._error(
                out,
                TransferError(
                    f"checksum mismatch: CRC says {crc:02X}, body gives {actual:02X}", pkt, command
                ),
            )
            return
        data = bytes(values[4:])
        if len(data) > MAX_DATA:
            self._error(out, FramingError(f"{len(data)} data bytes; at most {MAX_DATA} allowed"))
            return
        self.frames += 1
        out.append(RawFrame(pkt, command, data))
