"""A session's amplitude figures, derived from its ``amplitude_changed`` log events and kept in
``sessions.mean_amplitude_ma`` / ``sessions.max_amplitude_ma`` (schema version 2) so that the
review does not recompute them from the log each time.

- ``mean_amplitude_ma``: for each channel, the time-weighted mean of the set amplitude over the
  time it was above 0 (each level holds until the channel's next change, the last one until the
  session's end); then the mean over the channels that stimulated;
- ``max_amplitude_ma``: the highest amplitude set on any channel.

Both are NULL while the session has no end (the review computes those live, with
:func:`compute`), and NULL for an ended session without such figures (no amplitude events, or
none above 0 for the mean). They are **derived** data: not part of any hash-chained payload and
not exported; the store writes them when a session ends (``end_session``), on crash recovery,
on import, when an amplitude event is logged for a session that has already ended, and when a
version 1 database is migrated. The SQL is SQLite's (``json_extract``, ``julianday``, window
functions); ``+e.kind`` keeps SQLite on the per-session index even where an index on ``kind``
exists (which would be far slower here). An event whose payload is not JSON (an edited
log) is left out here; ``verify`` names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, text, update

from tens_control.store import schema

AMPLITUDE_SQL = """
WITH amp AS (
    SELECT e.session_id AS sid,
           json_extract(e.payload, '$.channel') AS ch,
           json_extract(e.payload, '$.to_ma') AS ma,
           julianday(e.wall_time) AS t,
           LEAD(julianday(e.wall_time)) OVER (
               PARTITION BY e.session_id, json_extract(e.payload, '$.channel')
               ORDER BY e.wall_time, e.id
           ) AS t_next
    FROM events AS e JOIN sessions AS s ON s.id = e.session_id
    WHERE +e.kind = 'amplitude_changed' AND json_valid(e.payload) AND {where}
),
spans AS (
    SELECT a.sid, a.ch, a.ma,
           (COALESCE(a.t_next, julianday(s.ended_at)) - a.t) * 86400.0 AS dur
    FROM amp AS a JOIN sessions AS s ON s.id = a.sid
),
per_channel AS (
    SELECT sid, ch,
           SUM(CASE WHEN ma > 0 AND dur > 0 THEN ma * dur END)
               / SUM(CASE WHEN ma > 0 AND dur > 0 THEN dur END) AS mean_ma,
           MAX(ma) AS max_ma
    FROM spans GROUP BY sid, ch
)
SELECT sid, AVG(mean_ma) AS mean_ma, MAX(max_ma) AS max_ma FROM per_channel GROUP BY sid
"""
"""The figures of every session matched by ``{where}`` (a condition on ``e`` = events and
``s`` = sessions): rows ``(sid, mean_ma, max_ma)``, only for sessions with amplitude events."""

Figures = tuple[float | None, float | None]
"""(mean_amplitude_ma, max_amplitude_ma)."""

_CHUNK = 500


def query(conn: Connection, where: str, params: Mapping[str, Any]) -> dict[int, Figures]:
    """The figures of the sessions matched by the SQL condition ``where`` (see
    :data:`AMPLITUDE_SQL`), by session id; sessions without amplitude events are absent."""
    return {
        int(r.sid): (
            None if r.mean_ma is None else float(r.mean_ma),
            None if r.max_ma is None else float(r.max_ma),
        )
        for r in conn.execute(text(AMPLITUDE_SQL.format(where=where)), dict(params))
    }


def compute(conn: Connection, session_ids: Iterable[int]) -> dict[int, Figures]:
    """The figures of these sessions, computed from the log now (by session id; a session
    without amplitude events is absent). A session without an end gets a mean over its
    finished levels only, as the review always showed it."""
    ids = sorted(set(session_ids))
    out: dict[int, Figures] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        where = "e.session_id IN (" + ", ".join(str(int(x)) for x in chunk) + ")"
        out.update(query(conn, where, {}))
    return out


def _write(conn: Connection, session_ids: Iterable[int], figures: Mapping[int, Figures]) -> None:
    s = schema.sessions
    rows = []
    for sid in session_ids:
        mean_ma, max_ma = figures.get(sid, (None, None))
        rows.append({"b_id": sid, "b_mean": mean_ma, "b_max": max_ma})
    if rows:
        conn.execute(
            update(s)
            .where(s.c.id == bindparam("b_id"))
            .values(mean_amplitude_ma=bindparam("b_mean"), max_amplitude_ma=bindparam("b_max")),
            rows,
        )


def refresh(conn: Connection, session_ids: Iterable[int]) -> None:
    """Recompute and store the figures of these sessions (inside the caller's write
    transaction); a session without an end keeps NULLs (the review computes it live)."""
    ids = sorted({int(x) for x in session_ids})
    ended: list[int] = []
    for i in range(0, len(ids), _CHUNK):
        listed = ", ".join(str(x) for x in ids[i : i + _CHUNK])
        ended.extend(
            int(x)
            for x in conn.execute(
                text(f"SELECT id FROM sessions WHERE ended_at IS NOT NULL AND id IN ({listed})")
            ).scalars()
        )
    _write(conn, ended, compute(conn, ended))


def backfill(conn: Connection) -> int:
    """Store the figures of every ended session, in one pass over the log (the v1 -> v2
    migration). Returns the number of sessions given figures."""
    figures = query(conn, "s.ended_at IS NOT NULL", {})
    _write(conn, sorted(figures), figures)
    return len(figures)
