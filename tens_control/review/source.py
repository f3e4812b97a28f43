"""The one adapter between the store and the review: builds the plain rows of
:mod:`tens_control.review.model` from the database (read-only).

Everything the review reads from the store goes through here. The queries are SQLAlchemy Core
on :mod:`tens_control.store.schema`, inside one read transaction, and never touch telemetry.
A session's amplitude figures (``mean_amplitude_ma``: the time-weighted mean of the set amplitude
while above 0, per channel, then over the channels; ``max_amplitude_ma``: the highest set) are
the ones the store keeps with each ended session (:mod:`tens_control.store.amplitude`); only a
session without an end has them computed from its ``amplitude_changed`` events, by the same SQL.
Faults and refused requests are read through the store's partial index on those event kinds.

A session's minutes are start to end, as the daily limit counts them (0 while it has no end).

**Linking ratings to sessions.** A rating the store saved with its session keeps it. A *before*
rating saved without one (it is taken before the session exists) belongs to the first session
that starts within :data:`BEFORE_LINK` after it; an *after* rating without one to the last
session that ended within :data:`AFTER_LINK` before it; a *+30 min* rating likewise within
:data:`PLUS_30_LINK`.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, select, text

from tens_control.prescription import PrescriptionError, parse_prescription
from tens_control.review.analytics import (
    BACKGROUND_WHENS,
    Aggregates,
    PatientSummary,
    SessionDay,
    Zone,
    local_day,
    summarize_many,
)
from tens_control.review.model import (
    AdverseEventRow,
    DeviceRow,
    EventRow,
    PainKind,
    PatientData,
    PatientRow,
    Posture,
    PrescriptionRow,
    RatingRow,
    SessionRow,
    TreatmentRow,
    When,
)
from tens_control.store import Store, amplitude, schema
from tens_control.store.canonical import iso_utc, parse_utc

log = logging.getLogger(__name__)

BEFORE_LINK = timedelta(minutes=30)
AFTER_LINK = timedelta(minutes=30)
PLUS_30_LINK = timedelta(minutes=90)
FAULT_KINDS = ("fault",)
REJECTION_KINDS = ("rejected",)
NOT_TREATMENTS = frozenset({"pain_episode"})
"""Diary kinds that are not other treatments."""


def midnight(day: date, tz: Zone) -> datetime:
    """The start of ``day`` in ``tz`` (``None``: local time), timezone-aware."""
    if tz is None:
        return datetime.combine(day, time(0)).astimezone()
    return datetime.combine(day, time(0), tzinfo=tz)


@dataclass(frozen=True, slots=True)
class Window:
    """The UTC bounds (ISO text, as stored) of the local days ``first`` to ``last``."""

    since: str | None
    until: str | None

    @staticmethod
    def of(first: date | None, last: date | None, tz: Zone) -> Window:
        since = None if first is None else iso_utc(midnight(first, tz))
        until = None if last is None else iso_utc(midnight(last + timedelta(days=1), tz))
        return Window(since, until)

    def sql(self, column: str) -> str:
        parts = []
        if self.since is not None:
            parts.append(f"{column} >= :since")
        if self.until is not None:
            parts.append(f"{column} < :until")
        return " AND ".join(parts) or "1 = 1"

    def params(self) -> dict[str, str]:
        out = {}
        if self.since is not None:
            out["since"] = self.since
        if self.until is not None:
            out["until"] = self.until
        return out


def reading(store: Store) -> AbstractContextManager[Connection]:
    """One read transaction on the store's database."""
    return store.reading()


def list_patients(store: Store) -> list[PatientRow]:
    """Every patient in the database, in the order they were added."""
    p = schema.patients.c
    with reading(store) as conn:
        rows = conn.execute(select(p.uid, p.pseudonym).order_by(p.id)).all()
    return [PatientRow(id=str(r.uid), pseudonym=str(r.pseudonym)) for r in rows]


def _amplitudes(conn: Connection, pid: int, window: Window) -> dict[int, amplitude.Figures]:
    """The amplitude figures of the patient's sessions that started in ``window``, by session
    id: the stored ones of ended sessions, computed from the log for sessions without an end.
    Sessions without figures are absent."""
    rows = conn.execute(
        text(
            "SELECT id, ended_at, mean_amplitude_ma, max_amplitude_ma FROM sessions "
            f"WHERE patient_id = :pid AND {window.sql('started_at')}"
        ),
        {"pid": pid, **window.params()},
    ).all()
    out: dict[int, amplitude.Figures] = {}
    running: list[int] = []
    for r in rows:
        if r.ended_at is None:
            running.append(int(r.id))
        elif r.mean_amplitude_ma is not None or r.max_amplitude_ma is not None:
            out[int(r.id)] = (r.mean_amplitude_ma, r.max_amplitude_ma)
    if running:
        out.update(amplitude.compute(conn, running))
    return out


def _utc(stored: str) -> datetime:
    """A stored time (``canonical.iso_utc`` text, ending in ``Z``) as an aware UTC datetime:
    :func:`parse_utc` without its conversion when the text is already UTC (the same value,
    faster over a year of rows)."""
    moment = datetime.fromisoformat(stored)
    return moment if moment.tzinfo is UTC else parse_utc(stored)


def _site(plan_json: str) -> str | None:
    try:
        plan = json.loads(plan_json)
        sites = [str(c["site"]) for c in plan.get("channels", ()) if c.get("site")]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    unique = list(dict.fromkeys(sites))
    return " + ".join(unique) if unique else None


def _link(ratings: list[RatingRow], sessions: Sequence[SessionRow]) -> list[RatingRow]:
    """Give before/after/+30 min ratings saved without a session the session they belong to."""
    if not sessions:
        return ratings
    by_start = sorted(sessions, key=lambda s: s.start)
    starts = [s.start for s in by_start]
    ended = sorted((s for s in sessions if s.end is not None), key=lambda s: s.end or s.start)
    ends = [s.end for s in ended if s.end is not None]
    out: list[RatingRow] = []
    for r in ratings:
        sid: str | None = None
        if r.session_id is None and r.when == "before":
            i = bisect.bisect_left(starts, r.at)
            if i < len(starts) and starts[i] - r.at <= BEFORE_LINK:
                sid = by_start[i].id
        elif r.session_id is None and r.when in ("after", "plus_30_min"):
            limit = AFTER_LINK if r.when == "after" else PLUS_30_LINK
            i = bisect.bisect_right(ends, r.at) - 1
            if i >= 0 and r.at - ends[i] <= limit:
                sid = ended[i].id
        if sid is None:
            out.append(r)
        else:
            out.append(RatingRow(r.id, r.at, r.when, r.pain, r.posture, r.value, session_id=sid))
    return out


def load_patient(
    store: Store,
    pseudonym: str | None = None,
    *,
    period_from: date | None = None,
    period_to: date | None = None,
    tz: Zone = None,
) -> PatientData:
    """One patient's rows for the review over the local days ``period_from`` to ``period_to``
    (``None``: unbounded). ``pseudonym`` defaults to the current patient."""
    zone = tz
    patient = store.pick_patient(pseudonym)
    window = Window.of(period_from, period_to, zone)
    # linked ratings may sit a little outside the period's sessions: read a margin around it
    margin = Window.of(
        None if period_from is None else period_from - timedelta(days=1),
        None if period_to is None else period_to + timedelta(days=1),
        zone,
    )
    p, s, d = schema.patients.c, schema.sessions.c, schema.devices.c
    with reading(store) as conn:
        pid = int(conn.execute(select(p.id).where(p.uid == patient.uid)).scalar_one())
        params: dict[str, Any] = {"pid": pid, **window.params()}
        session_rows = conn.execute(
            text(
                "SELECT id, uid, program, plan, started_at, ended_at, end_reason, device_id, "
                "mean_amplitude_ma, max_amplitude_ma "
                f"FROM sessions WHERE patient_id = :pid AND {margin.sql('started_at')} "
                "ORDER BY started_at, id"
            ),
            {"pid": pid, **margin.params()},
        ).all()
        since, until = window.since, window.until

        def in_window(started: str) -> bool:
            return (since is None or started >= since) and (until is None or started < until)

        # amplitude figures for the period's sessions only: stored ones, or from the log for a
        # session without an end
        live = amplitude.compute(
            conn, [int(r[0]) for r in session_rows if r[5] is None and in_window(r[4])]
        )
        uid_of: dict[int, str] = {}
        sessions: list[SessionRow] = []
        device_ids: set[int] = set()
        site_of: dict[str, str | None] = {}  # a patient's sessions mostly share a few plans
        for sid, suid, program, plan, started, ended, why, device, mean_ma, max_ma in session_rows:
            uid_of[int(sid)] = str(suid)
            start = _utc(started)
            end = None if ended is None else _utc(ended)
            if ended is None:
                mean_ma, max_ma = live.get(int(sid), (None, None))
            elif not in_window(started):
                mean_ma = max_ma = None
            if device is not None:
                device_ids.add(int(device))
            if plan not in site_of:
                site_of[plan] = _site(str(plan))
            sessions.append(
                SessionRow(
                    id=str(suid),
                    start=start,
                    end=end,
                    end_reason=why,
                    stim_minutes=_minutes(start, end),
                    program=str(program),
                    device_id=None if device is None else str(device),
                    mean_amplitude_ma=None if mean_ma is None else float(mean_ma),
                    max_amplitude_ma=None if max_ma is None else float(max_ma),
                    electrode_site=site_of[plan],
                )
            )
        rating_rows = conn.execute(
            text(
                "SELECT uid, session_id, at, nrs, timing, pain, context FROM pain_ratings "
                f"WHERE patient_id = :pid AND {margin.sql('at')} ORDER BY at, id"
            ),
            {"pid": pid, **margin.params()},
        ).all()
        missing_sessions = {
            int(r[1]) for r in rating_rows if r[1] is not None and int(r[1]) not in uid_of
        }
        if missing_sessions:
            for sid, suid in conn.execute(
                select(s.id, s.uid).where(s.id.in_(sorted(missing_sessions)))
            ):
                uid_of[int(sid)] = str(suid)
        whens, pains, postures = _WHENS.get, _PAINS.get, _POSTURES.get
        ratings = [
            RatingRow(
                str(uid),
                _utc(at),
                whens(timing, "diary"),
                pains(pain, "other"),
                postures(ctx, "rest"),
                None if nrs is None else int(nrs),
                None if sid is None else uid_of.get(int(sid)),
            )
            for uid, sid, at, nrs, timing, pain, ctx in rating_rows
        ]
        event_rows = conn.execute(
            text(
                "SELECT e.id, e.session_id, e.wall_time, e.kind, e.payload "
                "FROM events AS e JOIN chains AS c ON c.id = e.chain_id "
                f"WHERE c.patient_id = :pid AND {schema.review_kinds_sql('e')} "
                f"AND {window.sql('e.wall_time')} ORDER BY e.wall_time, e.id"
            ),
            params,
        ).all()
        events = [_event(r, uid_of) for r in event_rows]
        devices = [
            DeviceRow(
                id=str(r.id),
                model=str(r.model),
                serial=str(r.serial_number),
                firmware=str(r.firmware),
                manufacturer=_manufacturer(str(r.info)),
                simulated=bool(r.is_simulator),
            )
            for r in conn.execute(
                select(d.id, d.model, d.serial_number, d.firmware, d.info, d.is_simulator)
                .where(d.id.in_(sorted(device_ids)))
                .order_by(d.id)
            )
        ]
    adverse = [
        AdverseEventRow(
            id=a.uid,
            at=a.at,
            kind=a.kind.value,
            note=a.notes,
            severity=a.severity.value,
            session_id=a.session,
        )
        for a in store.adverse_events(patient.pseudonym)
    ]
    treatments = [
        TreatmentRow(
            id=t.uid,
            start=local_day(t.start, zone),
            kind=t.kind.value,
            description=t.notes,
            end=None if t.end is None else local_day(t.end, zone),
        )
        for t in store.diary_entries(patient.pseudonym)
        if t.kind.value not in NOT_TREATMENTS
    ]
    prescriptions = []
    for rx in store.prescriptions(patient.pseudonym):
        row = prescription_row(rx.toml, rx.created_at, f"prescription version {rx.version}")
        if row is not None:
            prescriptions.append(row)
    return PatientData(
        patient=PatientRow(id=patient.uid, pseudonym=patient.pseudonym),
        sessions=tuple(sessions),
        ratings=tuple(_link(ratings, sessions)),
        prescriptions=tuple(prescriptions),
        devices=tuple(devices),
        events=tuple(events),
        adverse_events=tuple(adverse),
        treatments=tuple(treatments),
        period_from=period_from,
        period_to=period_to,
        extra={"database": str(store.path)},
    )


def _minutes(start: datetime, end: datetime | None) -> float:
    """Minutes from start to end, to the millisecond (as the SQL of the patient list)."""
    if end is None:
        return 0.0
    return max(0.0, round((end - start).total_seconds(), 3)) / 60.0


def prescription_row(toml: str, valid_from: datetime, source: str) -> PrescriptionRow | None:
    """The schedule of a stored prescription: sessions a day (or, without one, as many
    sessions as fit the daily minutes), session minutes, daily minutes. ``None`` (and a
    warning in the log) when it cannot be read or prescribes no daily schedule."""
    try:
        rx = parse_prescription(toml, source)
    except PrescriptionError as error:
        log.warning("review ignores %s: %s", source, error)
        return None
    per_day = rx.sessions_per_day
    if per_day is None and rx.minutes_per_day is not None:
        per_day = max(1, rx.minutes_per_day // rx.session_minutes)
    if per_day is None:
        return None
    return PrescriptionRow(
        valid_from=valid_from,
        sessions_per_day=int(per_day),
        session_minutes=float(rx.session_minutes),
        minutes_per_day=None if rx.minutes_per_day is None else float(rx.minutes_per_day),
    )


def _manufacturer(info: str) -> str | None:
    try:
        value = json.loads(info).get("manufacturer")
    except (ValueError, AttributeError):
        return None
    return None if value in (None, "") else str(value)


def _event(r: Any, uid_of: dict[int, str]) -> EventRow:
    try:
        payload = json.loads(r.payload)
    except ValueError:
        payload = {}
    session = None if r.session_id is None else uid_of.get(int(r.session_id))
    at = parse_utc(r.wall_time)
    if r.kind == "fault":
        code = str(payload.get("fault") or "fault")
        return EventRow(str(r.id), at, "fault", code, str(payload.get("detail") or ""), session)
    code = str(payload.get("parameter") or payload.get("command") or "rejected")
    return EventRow(str(r.id), at, "rejection", code, str(payload.get("message") or ""), session)


_WHENS: dict[str, When] = {
    "before": "before",
    "during": "during",
    "after": "after",
    "plus_30_min": "plus_30_min",
    "diary": "diary",
}
_PAINS: dict[str, PainKind] = {
    "phantom": "phantom",
    "residual_limb": "residual_limb",
    "other": "other",
}
_POSTURES: dict[str, Posture] = {"rest": "rest", "movement": "movement"}


def _when(value: str) -> When:
    return _WHENS.get(value, "diary")


def _pain(value: str) -> PainKind:
    return _PAINS.get(value, "other")


def _posture(value: str) -> Posture:
    return _POSTURES.get(value, "rest")


# --- many patients at once --------------------------------------------------------------------

TOLERANCE_DAYS = 10
"""The patient list checks the tolerance rule on each patient's last 10 days only (two 5-day
blocks): reading every session's amplitude log for every patient would be too slow."""


def day_sql(column: str, tz: Zone) -> str:
    """SQL for the local calendar day of an ISO time column, in ``tz``: ``'localtime'`` for the
    system zone (``None``), or a fixed offset. Other zones raise ``ValueError``."""
    if tz is None:
        return f"date({column}, 'localtime')"
    offset = tz.utcoffset(None)
    if offset is None:
        raise ValueError(f"time zone {tz} has no fixed offset; use the local zone (None)")
    minutes = int(offset.total_seconds() // 60)
    return f"date({column}, '{minutes:+d} minutes')"


PAIRS_SQL = """
WITH cand AS (
    SELECT s.id AS sid, r.pain AS pain, r.context AS ctx, r.timing AS timing,
           r.at || '|' || r.nrs AS at_nrs
    FROM sessions AS s JOIN pain_ratings AS r ON r.session_id = s.id
    WHERE r.nrs IS NOT NULL AND r.timing IN ('before', 'after', 'plus_30_min')
      AND {window}
    UNION ALL
    SELECT s.id, r.pain, r.context, r.timing, r.at || '|' || r.nrs
    FROM sessions AS s JOIN pain_ratings AS r
      ON r.patient_id = s.patient_id
     AND r.at >= strftime('%Y-%m-%dT%H:%M:%f', s.started_at, '-{before} minutes')
     AND r.at <= strftime('%Y-%m-%dT%H:%M:%f', COALESCE(s.ended_at, s.started_at),
                          '+{plus30} minutes')
    WHERE +r.session_id IS NULL AND r.nrs IS NOT NULL AND {window} AND (
            (r.timing = 'before' AND r.at <= s.started_at)
         OR (r.timing = 'after' AND r.at >= s.ended_at
             AND r.at <= strftime('%Y-%m-%dT%H:%M:%f', s.ended_at, '+{after} minutes'))
         OR (r.timing = 'plus_30_min' AND r.at >= s.ended_at))
),
pair AS (
    SELECT sid, pain, ctx,
           MAX(CASE WHEN timing = 'before' THEN at_nrs END) AS b,
           MAX(CASE WHEN timing = 'after' THEN at_nrs END) AS a,
           MAX(CASE WHEN timing = 'plus_30_min' THEN at_nrs END) AS p
    FROM cand GROUP BY sid, pain, ctx
),
val AS (
    SELECT sid, pain, ctx, substr(b, 1, instr(b, '|') - 1) AS b_at,
           CAST(substr(b, instr(b, '|') + 1) AS INTEGER) AS b,
           CAST(substr(a, instr(a, '|') + 1) AS INTEGER) AS a,
           CAST(substr(p, instr(p, '|') + 1) AS INTEGER) AS p
    FROM pair WHERE b IS NOT NULL
)
SELECT s.patient_id AS pid, val.pain, val.ctx, {day} AS d,
       SUM(a - b) AS cs, COUNT(a - b) AS cn, SUM(p - b) AS ps, COUNT(p - b) AS pn
FROM val JOIN sessions AS s ON s.id = val.sid
GROUP BY s.patient_id, val.pain, val.ctx, d
"""


def load_aggregates(
    store: Store,
    *,
    period_from: date | None = None,
    period_to: date | None = None,
    tz: Zone = None,
    tolerance_days: int = TOLERANCE_DAYS,
) -> list[Aggregates]:
    """Every patient's :class:`~tens_control.review.analytics.Aggregates`, computed with SQL
    ``GROUP BY`` (one pass per table, no per-row Python), for the patient list. The same rules
    as :func:`load_patient` + :func:`~tens_control.review.analytics.aggregate`, except that
    session amplitudes are read for each patient's last ``tolerance_days`` days only."""
    window = Window.of(period_from, period_to, tz)
    params = window.params()
    aggs: dict[int, Aggregates] = {}
    with reading(store) as conn:
        for pid, uid, name in conn.execute(text("SELECT id, uid, pseudonym FROM patients")):
            aggs[int(pid)] = Aggregates(
                patient=PatientRow(id=str(uid), pseudonym=str(name)),
                period_from=period_from,
                period_to=period_to,
            )

        days_seen: dict[str, date] = {}

        def day(text_day: str) -> date:
            found = days_seen.get(text_day)
            if found is None:
                found = days_seen[text_day] = date.fromisoformat(text_day)
            return found

        sessions_sql = (
            f"SELECT patient_id, {day_sql('started_at', tz)} AS d, COUNT(*), "
            "SUM(CASE WHEN ended_at IS NULL THEN 0.0 "
            "ELSE MAX(0.0, ROUND((julianday(ended_at) - julianday(started_at)) * 86400.0, 3)) "
            "/ 60.0 END), "
            "COALESCE(end_reason, 'not ended') AS why "
            f"FROM sessions WHERE {window.sql('started_at')} GROUP BY patient_id, d, why"
        )
        for pid, d, n, minutes, why in conn.execute(text(sessions_sql), params):
            agg = aggs[int(pid)]
            sd = agg.session_days.setdefault(day(d), SessionDay())
            sd.sessions += int(n)
            sd.minutes += float(minutes)
            agg.end_reasons[str(why)] = agg.end_reasons.get(str(why), 0) + int(n)
            agg.see_day(day(d))

        ratings_sql = (
            f"SELECT patient_id, pain, context, timing, {day_sql('at', tz)} AS d, "
            "COUNT(*), COUNT(nrs), SUM(nrs) FROM pain_ratings "
            f"WHERE {window.sql('at')} GROUP BY patient_id, pain, context, timing, d"
        )
        for pid, pain, ctx, timing, d, n, n_rated, total in conn.execute(text(ratings_sql), params):
            agg = aggs[int(pid)]
            agg.ratings_total += int(n)
            agg.ratings_missing += int(n) - int(n_rated)
            agg.see_day(day(d))
            if timing in BACKGROUND_WHENS and n_rated:
                key = (_pain(pain), _posture(ctx))
                days = agg.background.setdefault(key, {})
                s0, n0 = days.get(day(d), (0, 0))
                days[day(d)] = (s0 + int(total), n0 + int(n_rated))

        pairs_sql = PAIRS_SQL.format(
            window=window.sql("s.started_at"),
            day=day_sql("val.b_at", tz),
            before=int(BEFORE_LINK.total_seconds() // 60),
            after=int(AFTER_LINK.total_seconds() // 60),
            plus30=int(PLUS_30_LINK.total_seconds() // 60),
        )
        for pid, pain, ctx, d, cs, cn, ps, pn in conn.execute(text(pairs_sql), params):
            agg = aggs[int(pid)]
            key = (_pain(pain), _posture(ctx))
            if cn:
                agg.change.setdefault(key, {})[day(d)] = (int(cs), int(cn))
            if pn:
                agg.change_30.setdefault(key, {})[day(d)] = (int(ps), int(pn))

        events_sql = (
            "SELECT c.patient_id, e.kind, json_extract(e.payload, '$.fault'), "
            "json_extract(e.payload, '$.parameter'), json_extract(e.payload, '$.command') "
            "FROM events AS e JOIN chains AS c ON c.id = e.chain_id "
            f"WHERE {schema.review_kinds_sql('e')} AND {window.sql('e.wall_time')}"
        )
        for pid, kind, fault, parameter, command in conn.execute(text(events_sql), params):
            agg = aggs[int(pid)]
            if kind == "fault":
                code = str(fault or "fault")
                agg.faults[code] = agg.faults.get(code, 0) + 1
            else:
                code = str(parameter or command or "rejected")
                agg.rejections[code] = agg.rejections.get(code, 0) + 1

        adverse_sql = (
            "SELECT a.patient_id, a.uid, a.at, a.kind, a.severity, a.notes, s.uid "
            "FROM adverse_events AS a LEFT JOIN sessions AS s ON s.id = a.session_id "
            f"WHERE {window.sql('a.at')} ORDER BY a.at, a.id"
        )
        for pid, uid, at, kind, severity, notes, suid in conn.execute(text(adverse_sql), params):
            agg = aggs[int(pid)]
            moment = parse_utc(at)
            agg.adverse_events.append(
                AdverseEventRow(str(uid), moment, str(kind), str(notes), str(severity), suid)
            )
            agg.see_day(local_day(moment, tz))

        treatments_sql = (
            'SELECT patient_id, uid, kind, start, "end", notes FROM diary_entries '
            "WHERE kind != 'pain_episode' ORDER BY start, id"
        )
        for pid, uid, kind, start, end, notes in conn.execute(text(treatments_sql)):
            first = local_day(parse_utc(start), tz)
            last = None if end is None else local_day(parse_utc(end), tz)
            if period_to is not None and first > period_to:
                continue
            if period_from is not None and (last or first) < period_from:
                continue
            aggs[int(pid)].treatments.append(
                TreatmentRow(str(uid), first, str(kind), str(notes), last)
            )

        for pid, toml, created, version in conn.execute(
            text("SELECT patient_id, toml, created_at, version FROM prescriptions ORDER BY id")
        ):
            row = prescription_row(toml, parse_utc(created), f"prescription version {version}")
            if row is not None:
                aggs[int(pid)].prescriptions.append((local_day(row.valid_from, tz), row))

        for pid, agg in aggs.items():
            agg.prescriptions.sort(key=lambda t: t[0])
            end = agg.period_to or agg.last_day
            if end is None:
                continue
            agg.amplitude_from = end - timedelta(days=tolerance_days - 1)
            recent = Window.of(
                max(agg.amplitude_from, agg.period_from or agg.amplitude_from), end, tz
            )
            means = {
                sid: mean_ma
                for sid, (mean_ma, _) in _amplitudes(conn, pid, recent).items()
                if mean_ma is not None
            }
            if not means:
                continue
            starts = conn.execute(
                select(schema.sessions.c.id, schema.sessions.c.started_at).where(
                    schema.sessions.c.id.in_(sorted(means))
                )
            ).all()
            for sid, started in starts:
                sd = agg.session_days.setdefault(local_day(parse_utc(started), tz), SessionDay())
                sd.amp_sum += float(means[int(sid)])
                sd.amp_n += 1
    return list(aggs.values())


def load_summaries(
    store: Store,
    *,
    period_from: date | None = None,
    period_to: date | None = None,
    tz: Zone = None,
) -> list[PatientSummary]:
    """A quick summary of every patient (no per-day lists), e.g. for the clinician's patient
    list; see :func:`load_aggregates` for how it differs from a full report."""
    return summarize_many(
        load_aggregates(store, period_from=period_from, period_to=period_to, tz=tz)
    )
