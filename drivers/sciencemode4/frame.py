"""ScienceMode4 framing: start/stop bytes, byte stuffing, a 16-bit length and CRC, packet numbers.

A packet on the wire (``smpt_packet_internal.c`` of the public ScienceMode4 C library)::

    F0 | 81 LENhi^55 | 81 LENlo^55 | 81 CRChi^55 | 81 CRClo^55 | B9 B10 DATA... (stuffed) | 0F
    B9  = packet_number << 2 | command >> 8      (packet number 0-63, command 0-1023)
    B10 = command & 0xFF

* LEN is the length of the whole *stuffed* packet, start and stop byte included; the four
  header bytes are always sent escaped (``81, b ^ 55``), whatever their value.
* CRC is CRC-16-CCITT, polynomial 0x1021, seed 0, no reflection, no final XOR ("XMODEM"),
  over the *stuffed* bytes from index 9 up to, not including, the stop byte.
* Stuffing: any F0, 0F or 81 from index 9 on is sent as ``81, b ^ 55``; nothing else is
  escaped (the same scheme as ScienceMode2, :func:`drivers.sciencemode2.frame.stuff`).
* A packet is 12-1200 bytes long.

The decoder finds a packet the way the C library's ``smpt_find_packet`` does (from a start
byte to the next stop byte that does not follow an escape byte), checks LEN and CRC, and
reports a bad packet as a :class:`~drivers.base.FramingError` value -- never as a decoded
frame, and never by raising anything else. It is sans-I/O: bytes in, frames and errors out.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import FramingError
from drivers.sciencemode2.frame import ESCAPE, KEY, START, STOP, stuff

MIN_PACKET = 12
MAX_PACKET = 1200
"""Smallest and largest packet, start and stop byte included (``Smpt_Length_*``)."""
HEADER = 9
"""Start byte and the four escaped header bytes; the CRC covers what follows."""
PACKET_NUMBERS = 64
MAX_COMMAND = 0x3FF


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC-16-CCITT: polynomial 0x1021, seed 0, no reflection, no final XOR (XMODEM)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ _CRC16[((crc >> 8) & 0xFF) ^ byte]
    return crc


def unstuff(stuffed: bytes) -> bytes:
    """Undo :func:`stuff`: ``81 x`` is ``x ^ 55`` for ANY x (a trailing 81 is dropped)."""
    out = bytearray()
    escaped = False
    for byte in stuffed:
        if escaped:
            out.append(byte ^ KEY)
            escaped = False
        elif byte == ESCAPE:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One valid packet: packet number, command number and (un-stuffed) data bytes."""

    pkt: int
    command: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.pkt < PACKET_NUMBERS:
            raise ValueError(f"packet number {self.pkt} is outside 0-{PACKET_NUMBERS - 1}")
        if not 0 <= self.command <= MAX_COMMAND:
            raise ValueError(f"command number {self.command} is outside 0-{MAX_COMMAND}")


def encode_frame(frame: RawFrame) -> bytes:
    """The bytes to put on the wire for ``frame``; ``ValueError`` if it exceeds 1200 bytes."""
    body = stuff(
        bytes(((frame.pkt << 2) | (frame.command >> 8), frame.command & 0xFF)) + frame.data
    )
    length = HEADER + len(body) + 1
    if length > MAX_PACKET:
        raise ValueError(f"a {length}-byte packet; ScienceMode4 packets are at most {MAX_PACKET}")
    crc = crc16(body)
    header = bytes(
        (
            START,
            ESCAPE,
            (length >> 8) ^ KEY,
            ESCAPE,
            (length & 0xFF) ^ KEY,
            ESCAPE,
            (crc >> 8) ^ KEY,
            ESCAPE,
            (crc & 0xFF) ^ KEY,
        )
    )
    return header + body + bytes((STOP,))


class TransferError(FramingError):
    """A packet whose LEN or CRC does not match (the protocol's "transfer error").

    ``pkt`` and ``command`` are what the packet claims, when it was long enough to say."""

    def __init__(self, message: str, pkt: int | None = None, command: int | None = None) -> None:
        super().__init__(message)
        self.pkt = pkt
        self.command = command


Decoded = RawFrame | FramingError


class FrameDecoder:
    """Incremental decoder. Feed it whatever the port returned; get frames and errors back.

    Bytes may arrive split anywhere and several packets may arrive in one read. Garbage
    outside a packet is reported once per run (when the next start byte arrives)."""

    def __init__(self) -> None:
        self._in_frame = False
        self._escaped = False
        self._raw = bytearray()
        self._garbage = 0
        self.frames = 0
        self.errors = 0

    def reset(self) -> None:
        """Forget any partial packet (for example after reopening the port)."""
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
                self._escaped = False
            elif byte == ESCAPE:
                self._escaped = True
            elif byte == START:
                self._error(out, FramingError("packet cut short by a new start byte"))
                self._begin()
                continue
            elif byte == STOP:
                self._in_frame = False
                self._finish(out)
                continue
            self._raw.append(byte)
            if len(self._raw) > MAX_PACKET - 2:
                self._in_frame = False
                self._escaped = False
                self._raw.clear()
                self._error(out, FramingError(f"packet longer than {MAX_PACKET} bytes"))
        return out

    # ---- internals
    def _begin(self) -> None:
        self._in_frame = True
        self._escaped = False
        self._raw.clear()

    def _flush_garbage(self, out: list[Decoded]) -> None:
        if self._garbage:
            count, self._garbage = self._garbage, 0
            self._error(out, FramingError(f"{count} bytes outside a packet skipped"))

    def _error(self, out: list[Decoded], error: FramingError) -> None:
        self.errors += 1
        out.append(error)

    def _finish(self, out: list[Decoded]) -> None:
        raw = bytes(self._raw)  # between the start and the stop byte
        self._raw.clear()
        total = len(raw) + 2
        if total < MIN_PACKET:
            self._error(out, FramingError(f"packet too short ({total} bytes)"))
            return
        if any(raw[i] != ESCAPE for i in (0, 2, 4, 6)):
            self._error(out, FramingError("packet length and checksum are not escaped"))
            return
        length = ((raw[1] ^ KEY) << 8) | (raw[3] ^ KEY)
        crc = ((raw[5] ^ KEY) << 8) | (raw[7] ^ KEY)
        stuffed = raw[HEADER - 1 :]
        body = unstuff(stuffed)
        pkt = body[0] >> 2 if body else None
        command = ((body[0] & 0x03) << 8) | body[1] if len(body) >= 2 else None
        if length != total:
            self._error(
                out,
                TransferError(
                    f"length mismatch: LEN says {length}, the packet has {total} bytes",
                    pkt,
                    command,
                ),
            )
            return
        actual = crc16(stuffed)
        if crc != actual:
            self._error(
                out,
                TransferError(
                    f"checksum mismatch: CRC says {crc:04X}, the packet gives {actual:04X}",
                    pkt,
                    command,
                ),
            )
            return
        if pkt is None or command is None:
            self._error(out, FramingError("packet without a command number"))
            return
        self.frames += 1
        out.append(RawFrame(pkt, command, body[2:]))


__all__ = [
    "MAX_PACKET",
    "MIN_PACKET",
    "PACKET_NUMBERS",
    "Decoded",
    "FrameDecoder",
    "RawFrame",
    "TransferError",
    "crc16",
    "encode_frame",
    "unstuff",
]
