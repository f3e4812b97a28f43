"""Canonical forms and hashes: the exact bytes the hash chain and the digests are computed over.

These definitions are part of the log format (see docs/data.md): changing any of them breaks the
verification of every existing log. Keep them byte-for-byte stable.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first record of every chain."""

TelemetryRow = tuple[float, int, float, float | None, float | None]
"""One telemetry sample as stored and digested: (t, channel, set_ma, measured_ma, impedance_ohm)."""


def new_uid() -> str:
    """A fresh random identifier (UUID4, 32 lower-case hex digits, no dashes)."""
    return uuid.uuid4().hex


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace, UTF-8 text (not \\u-escaped), no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def non_finite_at(value: Any) -> tuple[tuple[str | int, ...], float] | None:
    """The path (keys and indexes) to the first NaN or infinite number in ``value``, and that
    number; None if there is none. Canonical JSON has no such numbers, so a log never holds
    one: the store refuses to write one, and a bundle holding one was damaged or edited."""
    if isinstance(value, float):
        return None if math.isfinite(value) else ((), value)
    items: Iterable[tuple[str | int, Any]]
    if isinstance(value, dict):
        items = ((str(k), v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = non_finite_at(item)
        if found is not None:
            return (key, *found[0]), found[1]
    return None


def dotted(path: Sequence[str | int]) -> str:
    """``("payload", "to_ma")`` as ``payload.to_ma``, ``("events", 3)`` as ``events[3]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def iso_utc(moment: datetime) -> str:
    """A timezone-aware datetime as UTC ISO-8601 with microseconds: ``2025-01-31T09:05:00.000000Z``.

    Fixed width, so that text order is time order (the store compares these strings in SQL).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime has no time zone; pass a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`iso_utc` (accepts any ISO-8601 form with an offset)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(UTC)


def event_body(
    *,
    chain: str,
    seq: int,
    session: str | None,
    wall_time: str,
    mono_time: float | None,
    kind: str,
    payload: Any,
) -> dict[str, Any]:
    """The object whose canonical JSON is hashed for one event."""
    return {
        "chain": chain,
        "seq": seq,
        "session": session,
        "wall_time": wall_time,
        "mono_time": mono_time,
        "kind": kind,
        "payload": payload,
    }


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """SHA-256 (hex) of the previous hash (64 hex characters, ASCII) followed by the canonical
    JSON of the event body (UTF-8)."""
    data = prev_hash.encode("ascii", "replace") + canonical_json(body).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


_ROW = struct.Struct("<5d")
NOT_REPORTED = struct.unpack("<d", bytes.fromhex("000000000000f87f"))[0]
"""The quiet NaN (bits 0x7FF8000000000000) that stands for "not reported" in a digest."""


class TelemetryDigest:
    """SHA-256 over a segment's rows, fed in chunks.

    Each row ``(t, channel, set_ma, measured_ma, impedance_ohm)`` contributes 40 bytes: the five
    numbers as little-endian IEEE-754 binary64 (``struct`` format ``"<5d"``), with "not reported"
    (``None``) as the quiet NaN 0x7FF8000000000000. Rows are stored finite and without negative
    zero (see ``telemetry.to_row``), so the digest of the values read back from the database (or
    from a bundle's JSON) is the digest of the values written, however the rows were chunked.
    """

    __slots__ = ("_count", "_hash")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def update(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        pack, nan = _ROW.pack, NOT_REPORTED
        self._hash.update(
            b"".join(
                [
                    pack(t, ch, set_ma, nan if m is None else m, nan if z is None else z)
                    for t, ch, set_ma, m, z in rows
                ]
            )
        )
        self._count += len(rows)

    def copy(self) -> TelemetryDigest:
        other = TelemetryDigest.__new__(TelemetryDigest)
        other._hash = self._hash.copy()
        other._count = self._count
        return other

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def telemetry_digest(rows: Iterable[Sequence[Any]]) -> str:
    digest = TelemetryDigest()
    digest.update(list(rows))
    return digest.hexdigest()
