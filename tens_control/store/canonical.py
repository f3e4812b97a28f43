"""Canonical forms and hashes: the exact bytes the hash chain and the digests are computed over.

These definitions are part of the log format (see docs/data.md): changing any of them breaks the
verification of every existing log. Keep them byte-for-byte stable.
"""

from __future__ import annotations

import hashlib
import json
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


class TelemetryDigest:
    """SHA-256 over the canonical JSON array of a segment's rows, fed in chunks.

    The digest of rows r1..rn equals ``sha256(canonical_json([r1, ..., rn]))`` where each row is
    ``[t, channel, set_ma, measured_ma, impedance_ohm]`` (floats as Python ``repr``, ``null``
    for "not reported"), however the rows are split into chunks.
    """

    __slots__ = ("_count", "_hash")

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"[")
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def update(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        text = json.dumps(rows, separators=(",", ":"), allow_nan=False)[1:-1]
        if self._count:
            text = "," + text
        self._hash.update(text.encode("ascii"))
        self._count += len(rows)

    def copy(self) -> TelemetryDigest:
        other = TelemetryDigest.__new__(TelemetryDigest)
        other._hash = self._hash.copy()
        other._count = self._count
        return other

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(b"]")
        return final.hexdigest()


def telemetry_digest(rows: Iterable[Sequence[Any]]) -> str:
    digest = TelemetryDigest()
    digest.update(list(rows))
    return digest.hexdigest()
