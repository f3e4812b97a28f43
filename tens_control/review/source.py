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
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, select, text

from tens_control.diary import EntryHistory, describe, histories, resolve
from tens_control.prescription import PrescriptionError, parse_prescription
from tens_control.review.analytics import (
    US_PER_MINUTE,
    Aggregates,
    PatientSummary,
    SessionDay,
    Zone,
    aggregate,
    amplitude_ua,
    local_day,
    summarize_many,
    today_in,
)
from tens_control.review.model import (
    PAIN_KINDS,
    POSTURES,
    AdverseEventRow,
    DeviceRow,
    DiaryChangeRow,
    DiaryRow,
    EpisodeRow,
    EventKind,
    EventRow,
    NoteRow,
    PainKind,
    PatientData,
    PatientRow,
    PegRow,
    PgicRow,
    Posture,
    PrescriptionRow,
    RatingRow,
    SeriesKey,
    SessionRow,
    TreatmentRow,
    When,
)
from tens_control.store import Store, amplitude, schema
from tens_control.store.canonical import iso_utc, parse_utc
from tens_control.store.records import DIARY_LOG_KINDS, FAULT_KINDS, DiaryItem

log = logging.getLogger(__name__)

BEFORE_LINK = timedelta(minutes=30)
AFTER_LINK = timedelta(minutes=30)
PLUS_30_LINK = timedelta(minutes=90)
NOT_TREATMENTS = frozenset({"pain_episode", "sleep", "mood", "medication_taken"})
"""Diary kinds that are not other treatments."""


def _in_words(item: DiaryItem, tz: Zone) -> str:
    """One version of an entry in words, for the history: when, what, the note."""
    when = item.start.astimezone(tz).strftime("%d %b %H:%M")
    what = describe(item)
    note = f" “{item.notes}”" if item.notes else ""
    return f"{when} {item.kind.value.replace('_', ' ')}{': ' + what if what else ''}{note}"


@dataclass
class DiaryRows:
    """The diary of one patient as review rows: current entries by kind, and the history."""

    treatments: list[TreatmentRow]
    episodes: list[EpisodeRow]
    diary: list[DiaryRow]
    changes: list[DiaryChangeRow]


def diary_rows(histories: Sequence[EntryHistory], tz: Zone) -> DiaryRows:
    """Current versions of the entries not deleted, by kind; every edit and deletion as a
    change (what it was, what it is now)."""
    out = DiaryRows([], [], [], [])
    for h in histories:
        for i, (old, new) in enumerate(zip(h.versions, h.versions[1:], strict=False)):
            out.changes.append(
                DiaryChangeRow(
                    id=h.uid,
                    at=new.written_at,
                    change="edited",
                    kind=old.kind.value,
                    happened=old.start,
                    was=_in_words(old, tz),
                    now=_in_words(new, tz),
                    reason=h.reasons[i] if i < len(h.reasons) else "",
                )
            )
        if h.retracted_at is not None:
            out.changes.append(
                DiaryChangeRow(
                    id=h.uid,
                    at=h.retracted_at,
                    change="deleted",
                    kind=h.current.kind.value,
                    happened=h.current.start,
                    was=_in_words(h.current, tz),
                    reason=h.retract_reason,
                )
            )
            continue
        t = h.current
        kind = t.kind.value
        if kind == "pain_episode":
            out.episodes.append(
                EpisodeRow(
                    t.uid,
                    t.start,
                    _pain(t.pain.value if t.pain else "other"),
                    t.nrs,
                    t.end,
                    t.notes,
                    regions=tuple(r.value for r in t.regions),
                    written=t.written_at,
                    edited=h.edited,
                )
            )
        elif kind in ("sleep", "mood", "medication_taken"):
            out.diary.append(
                DiaryRow(
                    id=t.uid,
                    at=t.start,
                    kind=kind,  # type: ignore[arg-type]
                    written=t.written_at,
                    sleep_hours=t.sleep_hours,
                    sleep_quality=t.sleep_quality,
                    mood=t.mood,
                    medication=t.medication,
                    dose=t.dose,
                    note=t.notes,
                    edited=h.edited,
                )
            )
        else:
            words = " ".join(p for p in (t.medication, t.dose) if p)
            description = f"{words}: {t.notes}" if words and t.notes else (words or t.notes)
            out.treatments.append(
                TreatmentRow(
                    id=t.uid,
                    start=local_day(t.start, tz),
                    kind=kind,
                    description=description,
                    end=None if t.end is None else local_day(t.end, tz),
                )
            )
    out.changes.sort(key=lambda c: c.at)
    return out


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
    today: date | None = None,
) -> PatientData:
    """One patient's rows for the review over the local days ``period_from`` to ``period_to``
    (``None``: unbounded). ``pseudonym`` defaults to the current patient; ``today`` (the day
    the review is made) to today in ``tz``."""
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
                "SELECT uid, session_id, at, nrs, timing, pain, context, note FROM pain_ratings "
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
            for uid, sid, at, nrs, timing, pain, ctx, _note in rating_rows
        ]
        notes = [
            NoteRow(f"r{uid}", _utc(at), str(note), None if sid is None else uid_of.get(int(sid)))
            for uid, sid, at, _nrs, _timing, _pain, _ctx, note in rating_rows
            if note and str(note).strip()
        ]
        notes += _session_notes(conn, pid, margin, uid_of)
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
    diary = diary_rows(histories(store, patient.pseudonym), zone)
    pegs = [
        PegRow(g.uid, g.at, g.pain, g.enjoyment, g.activity)
        for g in store.peg_scores(patient.pseudonym)
    ]
    pgics = [PgicRow(g.uid, g.at, g.value) for g in store.pgic_ratings(patient.pseudonym)]
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
        treatments=tuple(diary.treatments),
        episodes=tuple(diary.episodes),
        notes=tuple(sorted(notes, key=lambda n: n.at)),
        pegs=tuple(pegs),
        pgics=tuple(pgics),
        diary=tuple(diary.diary),
        diary_changes=tuple(diary.changes),
        today=today if today is not None else today_in(zone),
        period_from=period_from,
        period_to=period_to,
        extra={"database": str(store.path)},
    )


NOTES_SQL = """
SELECT e.id, e.session_id, e.wall_time, e.payload
FROM sessions AS s JOIN events AS e ON e.session_id = s.id
WHERE s.patient_id = :pid AND {margin} AND e.kind = 'note'
ORDER BY e.wall_time, e.id
"""
"""The notes logged in the patient's sessions (through the per-session index)."""


def _session_notes(
    conn: Connection, pid: int, margin: Window, uid_of: dict[int, str]
) -> list[NoteRow]:
    """The patient's own notes on their sessions: the ``note`` events without data (the
    program's own notes, about the governor, screening or defaults, carry data)."""
    out: list[NoteRow] = []
    rows = conn.execute(
        text(NOTES_SQL.format(margin=margin.sql("s.started_at"))), {"pid": pid, **margin.params()}
    ).all()
    for eid, sid, wall_time, payload_json in rows:
        try:
            payload = json.loads(payload_json)
        except ValueError:
            continue
        if not isinstance(payload, dict) or payload.get("data"):
            continue
        words = str(payload.get("text") or "").strip()
        if words:
            out.append(NoteRow(f"e{eid}", _utc(wall_time), words, uid_of.get(int(sid))))
    return out


def _minutes(start: datetime, end: datetime | None) -> float:
    """Minutes from start to end, to the microsecond (0 without an end, or if the end is before
    the start), as the SQL of the patient list counts them: a whole number of microseconds
    divided by 60,000,000 (:func:`~tens_control.review.analytics.stim_us` turns it back)."""
    if end is None:
        return 0.0
    return max(0, (end - start) // _MICROSECOND) / US_PER_MINUTE


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
    pain, on_movement = rx.headline_series
    return PrescriptionRow(
        valid_from=valid_from,
        sessions_per_day=int(per_day),
        session_minutes=float(rx.session_minutes),
        minutes_per_day=None if rx.minutes_per_day is None else float(rx.minutes_per_day),
        run_in_days=rx.run_in_days,
        headline=(_pain(pain.value), "movement" if on_movement else "rest"),
        comparison=rx.comparison,
    )


def _manufacturer(info: str) -> str | None:
    try:
        value = json.loads(info).get("manufacturer")
    except (ValueError, AttributeError):
        return None
    return None if value in (None, "") else str(value)


def _event_code(kind: str, payload_json: str) -> tuple[EventKind, str, str]:
    """A fault's or refused request's (kind, code, detail) from its logged payload. A fault's
    code is its kind (``lead_off``, ``output_mismatch``, ``comms_lost``); an old log's ``fault``
    record names it in its ``fault`` field."""
    try:
        payload = json.loads(payload_json)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    if kind in FAULT_KINDS:
        code = str(payload.get("fault") or "fault") if kind == "fault" else kind
        return "fault", code, str(payload.get("detail") or "")
    code = str(payload.get("parameter") or payload.get("command") or "rejected")
    return "rejection", code, str(payload.get("message") or "")


def _event(r: Any, uid_of: dict[int, str]) -> EventRow:
    session = None if r.session_id is None else uid_of.get(int(r.session_id))
    what, code, detail = _event_code(str(r.kind), str(r.payload))
    return EventRow(str(r.id), parse_utc(r.wall_time), what, code, detail, session)


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


# --- many patients at once: the same aggregates from SQL ---------------------------------------
#
# The patient list needs every patient's figures. Building every row in Python (load_patient,
# then aggregate) takes about 40 ms a patient for a year of data; the functions below compute
# the very same Aggregates in SQL instead: per-day sums from one GROUP BY per table, with the
# local calendar day and the rating-to-session links worked out by SQLite. They follow the rules
# of load_patient + aggregate exactly (a test checks that both give equal Aggregates and
# summaries on generated clinics, edge cases included).

_MICROSECOND = timedelta(microseconds=1)
ZONE_STEP = timedelta(hours=6)
"""The zone's UTC offset is sampled this often over the span of the data to find its changes
(daylight saving time); each change is then found to the second."""


class _ZoneNotSupported(Exception):
    """A time zone whose UTC offsets are not whole seconds: the list falls back to rows."""


def _whole_seconds(offset: timedelta | None) -> int:
    if offset is None:
        return 0
    if offset % timedelta(seconds=1):
        raise _ZoneNotSupported(f"UTC offset {offset} is not a whole number of seconds")
    return offset // timedelta(seconds=1)


def _offset_at(unix_s: int, tz: Zone) -> int:
    """The UTC offset (seconds) of ``tz`` (``None``: local time) at a Unix time."""
    return _whole_seconds(datetime.fromtimestamp(unix_s, UTC).astimezone(tz).utcoffset())


def zone_offsets(tz: Zone, first: datetime, last: datetime) -> list[tuple[datetime | None, int]]:
    """The UTC offsets (seconds) of ``tz`` (``None``: this computer's local zone) from ``first``
    to ``last``: ``[(since, offset), ...]`` in time order, the first one ``since=None``. A fixed
    zone has one entry; a zone with daylight saving time one more per change."""
    if isinstance(tz, timezone):
        return [(None, _whole_seconds(tz.utcoffset(None)))]
    step = int(ZONE_STEP.total_seconds())
    t = math.floor(first.timestamp())
    stop = math.ceil(last.timestamp())
    offset = _offset_at(t, tz)
    out: list[tuple[datetime | None, int]] = [(None, offset)]
    while t < stop:
        ahead = min(t + step, stop)
        if _offset_at(ahead, tz) == offset:
            t = ahead
            continue
        lo, hi = t, ahead  # the offset is still `offset` at lo, another one at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset_at(mid, tz) == offset:
                lo = mid
            else:
                hi = mid
        offset = _offset_at(hi, tz)
        out.append((datetime.fromtimestamp(hi, UTC), offset))
        t = hi
    return out


def day_sql(column: str, offsets: Sequence[tuple[datetime | None, int]]) -> str:
    """SQL for the local calendar day (``YYYY-MM-DD``) of a stored UTC time (``iso_utc`` text)
    under ``offsets`` (:func:`zone_offsets`): the UTC date shifted by the offset in force at that
    time. Whole seconds decide (the offsets are whole seconds), as ``datetime.astimezone`` does."""

    def shifted(offset: int) -> str:
        if offset == 0:
            return f"substr({column}, 1, 10)"
        return f"date(substr({column}, 1, 19), '{offset:+d} seconds')"

    if len(offsets) == 1:
        return shifted(offsets[0][1])
    cases = " ".join(
        f"WHEN {column} < '{iso_utc(since)}' THEN {shifted(offsets[i][1])}"
        for i, (since, _) in enumerate(offsets[1:])
        if since is not None
    )
    return f"(CASE {cases} ELSE {shifted(offsets[-1][1])} END)"


def _shift_sql(column: str, seconds: int) -> str:
    """SQL for a stored UTC time moved by whole ``seconds``, as stored text (so that text order
    is still time order)."""
    return (
        f"(strftime('%Y-%m-%dT%H:%M:%S', substr({column}, 1, 19), '{seconds:+d} seconds') "
        f"|| substr({column}, 20))"
    )


def _us_sql(start: str, end: str) -> str:
    """SQL for the exact number of microseconds from one stored UTC time to another: the whole
    seconds from ``julianday`` (which is within a few milliseconds, so rounding makes it exact),
    then the microsecond digits."""
    micros = f"(substr({end}, 21, 6) - substr({start}, 21, 6))"
    return (
        f"(CAST(ROUND((julianday({end}) - julianday({start})) * 86400.0 - {micros} / 1e6)"
        f" AS INTEGER) * 1000000 + {micros})"
    )


SESSIONS_SQL = """
SELECT patient_id, {day} AS d, COALESCE(end_reason, 'not ended') AS why, COUNT(*),
       MAX(started_at),
       CAST(ROUND(SUM({days}) * 86400.0 - SUM({micros}) / 1e6) AS INTEGER) * 1000000
           + SUM({micros}),
       SUM(CASE WHEN ended_at IS NOT NULL
                THEN CAST(mean_amplitude_ma * 1000 + 0.5 AS INTEGER) END),
       COUNT(CASE WHEN ended_at IS NOT NULL THEN mean_amplitude_ma END),
       group_concat(CASE WHEN ended_at IS NULL THEN id END)
FROM sessions WHERE {patients} AND {period}
GROUP BY patient_id, d, why
"""
"""Per patient, local day and end reason: sessions; the latest start; their stimulation time
in microseconds
(start to end; 0 without an end or with an end before the start); the sum (µA) and count of the
stored mean amplitudes of ended sessions; and the ids of sessions without an end (their
amplitudes are computed from the log, as load_patient does).

The stimulation time is exact: the ``julianday`` differences are within a few milliseconds of
the truth (SQLite keeps milliseconds), so after taking away the microsecond digits' differences
they round to the exact whole seconds."""

STIM_DAYS_SQL = (
    "CASE WHEN ended_at >= started_at THEN julianday(ended_at) - julianday(started_at) END"
)
STIM_MICROS_SQL = (
    "CASE WHEN ended_at >= started_at THEN substr(ended_at, 21, 6) - substr(started_at, 21, 6) END"
)


RATINGS_SQL = """
SELECT patient_id, COUNT(*), COUNT(nrs), MIN(d), MAX(d),
       COUNT(CASE WHEN session_id IS NULL AND nrs IS NOT NULL
                   AND timing IN ('after', 'plus_30_min') THEN 1 END),
       MAX(CASE WHEN nrs IS NOT NULL THEN at END)
FROM (SELECT patient_id, nrs, session_id, timing, at, {day} AS d
      FROM pain_ratings WHERE {patients} AND {period})
GROUP BY patient_id
"""
"""Per patient: ratings, rated (not skipped), first and last day, the after/+30 min ratings
saved without their session (only when there are some does the pairing look for sessions by
their end), and the time of the latest rating given."""

BACKGROUND_SQL = """
SELECT patient_id, {series} AS series, {day} AS d, SUM(nrs), COUNT(nrs)
FROM pain_ratings
WHERE timing NOT IN ('during', 'after', 'plus_30_min') AND nrs IS NOT NULL
  AND {patients} AND {period}
GROUP BY patient_id, series, d
"""
"""Per patient, series and local day: the sum and count of before-session and diary ratings."""

SERIES_CODE_SQL = (
    "(CASE {t}pain WHEN 'phantom' THEN 0 WHEN 'residual_limb' THEN 2 ELSE 4 END"
    " + ({t}context = 'movement'))"
)
"""SQL for a rating's pain series as a small number: 2 × the pain (phantom, residual limb,
other: anything else is "other", as :func:`_pain` reads it) + the posture (movement 1, anything
else rest, as :func:`_posture`); :data:`SERIES_OF_CODE` turns it back."""
SERIES_OF_CODE: dict[int, SeriesKey] = {
    2 * i + j: (pain, posture)
    for i, pain in enumerate(PAIN_KINDS)
    for j, posture in enumerate(POSTURES)
}

PAIRS_SQL = """
SELECT pid, sk % 8 AS series, {b_day} AS d,
       SUM(CAST(substr(ak, 40) AS INTEGER) - CAST(substr(bk, 40) AS INTEGER)), COUNT(ak),
       SUM(CAST(substr(pk, 40) AS INTEGER) - CAST(substr(bk, 40) AS INTEGER)), COUNT(pk)
FROM (
    SELECT r.patient_id AS pid,
           COALESCE(r.session_id, CASE r.timing {links} END) * 8 + {series} AS sk,
           MAX(CASE WHEN r.timing = 'before' THEN {k} END) AS bk,
           MAX(CASE WHEN r.timing = 'after' THEN {k} END) AS ak,
           MAX(CASE WHEN r.timing = 'plus_30_min' THEN {k} END) AS pk
    FROM pain_ratings AS r
    WHERE r.nrs IS NOT NULL AND r.timing IN ('before', 'after', 'plus_30_min')
      AND {patients} AND {period}
    GROUP BY pid, sk HAVING sk IS NOT NULL
)
WHERE bk IS NOT NULL AND (ak IS NOT NULL OR pk IS NOT NULL)
GROUP BY pid, series, d
"""
"""Per patient, series and the local day of the *before* rating: the sum and count of
after − before and of +30 min − before over the sessions rated both ways.

Each rating's session is the one it was saved with, else the one it links to (``{links}``, as
:func:`_link`); ``sk`` is the session and series as one number. Per session and series the last
rating of each kind counts (by time, then id, as :func:`~tens_control.review.analytics.aggregate`
reads them in order): ``k`` (:data:`RATING_KEY_SQL`) is the time, the id and the rating as one
string, whose maximum is the last rating."""

RATING_KEY_SQL = "printf('%s%012d%02d', r.at, r.id, r.nrs)"
"""A rating as text that sorts by time, then id: the stored time (27 characters), the id
(12 digits) and the rating (2 digits, from character 40)."""

LINK_BEFORE_SQL = """
WHEN 'before' THEN (
    SELECT CASE WHEN {within} THEN s.id END FROM sessions AS s
    WHERE s.patient_id = r.patient_id AND s.started_at >= r.at AND {margin}
    ORDER BY s.started_at, s.id LIMIT 1)
"""
"""A before rating saved without its session: the first session that starts at or after it,
if that is within :data:`BEFORE_LINK`."""


def _within_sql(earlier: str, later: str, limit: timedelta) -> str:
    """SQL: the stored time ``later`` is at most ``limit`` after ``earlier`` (both ``iso_utc``
    text, ``later`` not before ``earlier``). ``julianday`` decides all but a few milliseconds
    around the limit, where the exact text comparison does."""
    seconds = int(limit.total_seconds())
    diff = f"((julianday({later}) - julianday({earlier})) * 86400.0)"
    return (
        f"({diff} <= {seconds - 0.01} OR ({diff} <= {seconds + 0.01} "
        f"AND {later} <= {_shift_sql(earlier, seconds)}))"
    )


LINK_AFTER_SQL = """
WHEN '{timing}' THEN (
    SELECT s.id FROM sessions AS s
    WHERE s.patient_id = r.patient_id
      AND s.started_at >= {started_from} AND s.started_at <= {started_until}
      AND s.ended_at <= r.at AND s.ended_at >= {ended_from} AND {margin}
    ORDER BY s.ended_at DESC, s.started_at DESC, s.id DESC LIMIT 1)
"""
"""An after (+30 min) rating saved without its session: the last session (by end, then as
sessions are ordered) that ended within :data:`AFTER_LINK` (:data:`PLUS_30_LINK`) before it.
The bounds on ``started_at`` (from the shortest and longest sessions) only let SQLite use the
index; they never exclude a session that ended in that time."""

DURATIONS_SQL = """
SELECT MIN({us}), MAX({us}) FROM sessions WHERE ended_at IS NOT NULL AND {patients}
"""

EVENTS_SQL = """
SELECT c.patient_id, e.kind, e.wall_time, e.payload
FROM events AS e JOIN chains AS c ON c.id = e.chain_id
WHERE {kinds} AND {patients} AND {window}
"""

ADVERSE_SQL = """
SELECT a.patient_id, a.uid, a.at, a.kind, a.severity, a.notes, s.uid
FROM adverse_events AS a LEFT JOIN sessions AS s ON s.id = a.session_id
WHERE {patients} ORDER BY a.patient_id, a.at, a.id
"""

DIARY_SQL = """
SELECT c.patient_id, e.wall_time, e.kind, e.payload
FROM events AS e JOIN chains AS c ON c.id = e.chain_id
WHERE e.kind IN ({kinds}) AND {patients}
ORDER BY c.patient_id, e.wall_time, e.chain_id, e.seq
"""
"""The diary's log records (entries, edits, deletions), in the order ``Store.events`` reads
them, so both paths resolve the same current state."""

PEG_SQL = """
SELECT patient_id, uid, at, pain, enjoyment, activity FROM peg_scores
WHERE {patients} ORDER BY patient_id, at, id
"""

PGIC_SQL = """
SELECT patient_id, uid, at, value FROM pgic_ratings
WHERE {patients} ORDER BY patient_id, at, id
"""

PRESCRIPTIONS_SQL = """
SELECT patient_id, toml, created_at, version FROM prescriptions
WHERE {patients} ORDER BY patient_id, version, id
"""

BOUNDS_SQL = """
SELECT MIN(lo), MAX(hi) FROM (
    SELECT (SELECT MIN(started_at) FROM sessions WHERE patient_id = p.id) AS lo,
           (SELECT MAX(started_at) FROM sessions WHERE patient_id = p.id) AS hi
    FROM patients AS p WHERE {patients}
    UNION ALL
    SELECT (SELECT MIN(at) FROM pain_ratings WHERE patient_id = p.id),
           (SELECT MAX(at) FROM pain_ratings WHERE patient_id = p.id)
    FROM patients AS p WHERE {patients}
)
"""
"""The first and last time a day is computed for (sessions' starts and ratings), per patient
through the indexes."""


def _patients(conn: Connection, uids: Sequence[str] | None) -> dict[int, PatientRow]:
    """The chosen patients by database id, in the order they were added (all for ``None``)."""
    p = schema.patients.c
    query = select(p.id, p.uid, p.pseudonym).order_by(p.id)
    if uids is not None:
        query = query.where(p.uid.in_(uids))
    return {
        int(r.id): PatientRow(id=str(r.uid), pseudonym=str(r.pseudonym))
        for r in conn.execute(query)
    }


def load_aggregates(
    store: Store,
    pseudonyms: Sequence[str] | None = None,
    *,
    period_from: date | None = None,
    period_to: date | None = None,
    tz: Zone = None,
    today: date | None = None,
) -> list[Aggregates]:
    """The :class:`~tens_control.review.analytics.Aggregates` of the given patients (``None``:
    every patient, in the order they were added), computed in SQL: per-day sums, no rows. Equal
    to ``aggregate(load_patient(store, name, ...), tz)`` for each of them."""
    uids = None if pseudonyms is None else [store.pick_patient(n).uid for n in pseudonyms]
    day = today if today is not None else today_in(tz)
    with reading(store) as conn:
        chosen = _patients(conn, uids)
        if not chosen:
            return []
        try:
            aggs = _aggregates(conn, chosen, pseudonyms is None, period_from, period_to, tz, day)
        except _ZoneNotSupported as why:
            log.info("patient list from rows: %s", why)
            aggs = None
    if aggs is None:
        return [
            aggregate(
                load_patient(
                    store,
                    row.pseudonym,
                    period_from=period_from,
                    period_to=period_to,
                    tz=tz,
                    today=day,
                ),
                tz,
            )
            for row in chosen.values()
        ]
    return aggs


def _aggregates(
    conn: Connection,
    chosen: dict[int, PatientRow],
    everyone: bool,
    period_from: date | None,
    period_to: date | None,
    tz: Zone,
    today: date,
) -> list[Aggregates]:
    aggs = {
        pid: Aggregates(
            patient=row, period_from=period_from, period_to=period_to, today=today, zone=tz
        )
        for pid, row in chosen.items()
    }
    ids = ", ".join(str(pid) for pid in chosen)

    def patients(column: str) -> str:
        return "1 = 1" if everyone else f"{column} IN ({ids})"

    # the DB-API cursor of this read transaction: plain tuples, for the larger results
    driver = conn.connection.driver_connection
    assert driver is not None

    def rows(sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(driver.execute(sql, params or {}).fetchall())

    # the zone's offsets over the span of the data
    offsets: list[tuple[datetime | None, int]]
    if isinstance(tz, timezone):
        offsets = zone_offsets(tz, datetime.now(UTC), datetime.now(UTC))
    else:
        lo, hi = rows(BOUNDS_SQL.format(patients=patients("p.id")))[0]
        since = parse_utc(lo) if lo is not None else datetime.now(UTC)
        offsets = zone_offsets(tz, since, parse_utc(hi) if hi is not None else since)

    def day(column: str) -> str:
        return day_sql(column, offsets)

    # the period: a margin of a day in UTC (for the indexes), then exactly by local day
    margin = Window.of(
        None if period_from is None else period_from - timedelta(days=1),
        None if period_to is None else period_to + timedelta(days=1),
        tz,
    )
    params: dict[str, Any] = margin.params()
    if period_from is not None:
        params["day_from"] = period_from.isoformat()
    if period_to is not None:
        params["day_to"] = period_to.isoformat()

    def period(column: str) -> str:
        parts = [margin.sql(column)]
        if period_from is not None:
            parts.append(f"{day(column)} >= :day_from")
        if period_to is not None:
            parts.append(f"{day(column)} <= :day_to")
        return " AND ".join(parts)

    days_seen: dict[str, date] = {}

    def as_day(text_day: str) -> date:
        found = days_seen.get(text_day)
        if found is None:
            found = days_seen[text_day] = date.fromisoformat(text_day)
        return found

    def as_days(rows: list[tuple[Any, ...]], column: int) -> list[date]:
        """The days of one column of ``rows`` (ISO text), parsed once each."""
        return [days_seen.get(r[column]) or as_day(r[column]) for r in rows]

    def inside(d: date) -> bool:
        return (period_from is None or d >= period_from) and (period_to is None or d <= period_to)

    # sessions by day
    running: dict[int, SessionDay] = {}
    sql = SESSIONS_SQL.format(
        day=day("started_at"),
        days=STIM_DAYS_SQL,
        micros=STIM_MICROS_SQL,
        patients=patients("patient_id"),
        period=period("started_at"),
    )
    found = rows(sql, params)
    last_started: dict[int, str] = {}  # stored text compares in time order
    for (pid, _d, why, n, latest, stim_us, amp_ua, amp_n, no_end), on in zip(
        found, as_days(found, 1), strict=True
    ):
        agg = aggs[pid]
        if latest > last_started.get(pid, ""):
            last_started[pid] = latest
        sd = agg.session_days.get(on)
        if sd is None:
            sd = agg.session_days[on] = SessionDay()
            agg.see_day(on)
        sd.sessions += n
        sd.stim_us += stim_us or 0
        sd.amp_ua += amp_ua or 0
        sd.amp_n += amp_n
        reasons = agg.end_reasons
        reasons[why] = reasons.get(why, 0) + n
        if no_end:
            for session_id in str(no_end).split(","):
                running[int(session_id)] = sd
    for pid, latest in last_started.items():
        aggs[pid].last_session = _utc(latest)
    for sid, (mean_ma, _max) in amplitude.compute(conn, sorted(running)).items():
        if mean_ma is not None:
            running[sid].amp_ua += amplitude_ua(float(mean_ma))
            running[sid].amp_n += 1

    # ratings: counts and extent, then background sums by day
    unlinked_after = False
    sql = RATINGS_SQL.format(day=day("at"), patients=patients("patient_id"), period=period("at"))
    for pid, n, rated, first, last, n_unlinked, last_rated in rows(sql, params):
        agg = aggs[int(pid)]
        if last_rated is not None:
            agg.last_rating = _utc(last_rated)
        agg.ratings_total += int(n)
        agg.ratings_missing += int(n) - int(rated)
        if first is not None:
            agg.see_day(as_day(first))
            agg.see_day(as_day(last))
        unlinked_after = unlinked_after or bool(n_unlinked)
    sql = BACKGROUND_SQL.format(
        series=SERIES_CODE_SQL.format(t=""),
        day=day("at"),
        patients=patients("patient_id"),
        period=period("at"),
    )
    found = rows(sql, params)
    for (pid, code, _d, total, rated), on in zip(found, as_days(found, 2), strict=True):
        aggs[pid].background.setdefault(SERIES_OF_CODE[code], {})[on] = (total, rated)

    # per-session change: each rating's session (saved with it, or linked), then the pairs
    session_margin = margin.sql("s.started_at")
    links = LINK_BEFORE_SQL.format(
        within=_within_sql("r.at", "s.started_at", BEFORE_LINK), margin=session_margin
    )
    if unlinked_after:
        shortest, longest = rows(
            DURATIONS_SQL.format(
                us=_us_sql("started_at", "ended_at"), patients=patients("patient_id")
            )
        )[0]
        if longest is not None:
            for timing, limit in (("after", AFTER_LINK), ("plus_30_min", PLUS_30_LINK)):
                limit_s = int(limit.total_seconds())
                links += LINK_AFTER_SQL.format(
                    timing=timing,
                    started_from=_shift_sql("r.at", -(limit_s + math.ceil(longest / 1e6))),
                    started_until=_shift_sql("r.at", -math.floor(shortest / 1e6)),
                    ended_from=_shift_sql("r.at", -limit_s),
                    margin=session_margin,
                )
    sql = PAIRS_SQL.format(
        b_day=day("bk"),
        links=links,
        series=SERIES_CODE_SQL.format(t="r."),
        k=RATING_KEY_SQL,
        patients=patients("r.patient_id"),
        period=period("r.at"),
    )
    found = rows(sql, params)
    for (pid, code, _d, cs, cn, ps, pn), on in zip(found, as_days(found, 2), strict=True):
        agg = aggs[pid]
        key = SERIES_OF_CODE[code]
        if cn:
            agg.change.setdefault(key, {})[on] = (cs, cn)
        if pn:
            agg.change_30.setdefault(key, {})[on] = (ps, pn)

    # faults and refused requests
    window = Window.of(period_from, period_to, tz)
    sql = EVENTS_SQL.format(
        kinds=schema.review_kinds_sql("e"),
        patients=patients("c.patient_id"),
        window=window.sql("e.wall_time"),
    )
    for pid, kind, wall_time, payload in rows(sql, window.params()):
        if (period_from or period_to) and not inside(local_day(parse_utc(wall_time), tz)):
            continue
        agg = aggs[int(pid)]
        what, code, _detail = _event_code(str(kind), str(payload))
        table = agg.faults if what == "fault" else agg.rejections
        table[code] = table.get(code, 0) + 1

    # adverse events, other treatments, prescriptions (a few rows each)
    for pid, uid, at, kind, severity, notes, suid in rows(
        ADVERSE_SQL.format(patients=patients("a.patient_id"))
    ):
        moment = parse_utc(at)
        on = local_day(moment, tz)
        if inside(on):
            agg = aggs[int(pid)]
            agg.adverse_events.append(
                AdverseEventRow(str(uid), moment, str(kind), str(notes), str(severity), suid)
            )
            agg.see_day(on)
    logged: dict[int, list[tuple[datetime, str, dict[str, Any]]]] = {}
    kinds = ", ".join(f"'{k}'" for k in sorted(DIARY_LOG_KINDS))
    for pid, wall_time, kind, payload in rows(
        DIARY_SQL.format(kinds=kinds, patients=patients("c.patient_id"))
    ):
        try:
            body = json.loads(payload)
        except ValueError:
            continue  # a damaged record: verify reports it
        if isinstance(body, dict):
            logged.setdefault(int(pid), []).append((parse_utc(wall_time), kind, body))
    for pid, records in logged.items():
        found_rows = diary_rows(resolve(records), tz)
        aggs[pid].episodes.extend(e for e in found_rows.episodes if inside(local_day(e.start, tz)))
        aggs[pid].treatments.extend(
            t
            for t in found_rows.treatments
            if (period_to is None or t.start <= period_to)
            and (period_from is None or (t.end or t.start) >= period_from)
        )
    for pid, toml, created, version in rows(
        PRESCRIPTIONS_SQL.format(patients=patients("patient_id"))
    ):
        row = prescription_row(toml, parse_utc(created), f"prescription version {version}")
        if row is not None:
            aggs[int(pid)].prescriptions.append((local_day(row.valid_from, tz), row))
    for pid, uid, at, pain, enjoyment, activity in rows(
        PEG_SQL.format(patients=patients("patient_id"))
    ):
        moment = _utc(at)
        if inside(local_day(moment, tz)):
            aggs[int(pid)].pegs.append(PegRow(str(uid), moment, pain, enjoyment, activity))
    for pid, uid, at, value in rows(PGIC_SQL.format(patients=patients("patient_id"))):
        moment = _utc(at)
        if inside(local_day(moment, tz)):
            aggs[int(pid)].pgics.append(PgicRow(str(uid), moment, value))
    for agg in aggs.values():
        agg.treatments.sort(key=lambda t: t.start)
        agg.prescriptions.sort(key=lambda t: t[0])
    return list(aggs.values())


def load_summaries(
    store: Store,
    pseudonyms: Sequence[str] | None = None,
    *,
    period_from: date | None = None,
    period_to: date | None = None,
    tz: Zone = None,
    today: date | None = None,
) -> list[PatientSummary]:
    """Every figure of the given patients (``None``: everyone) without the per-day lists, for a
    patient list: :func:`load_aggregates` then
    :func:`~tens_control.review.analytics.summarize_many`. The same figures as a full report."""
    return summarize_many(
        load_aggregates(
            store, pseudonyms, period_from=period_from, period_to=period_to, tz=tz, today=today
        )
    )


def load_summary(
    store: Store,
    pseudonym: str | None = None,
    *,
    period_from: date | None = None,
    period_to: date | None = None,
    tz: Zone = None,
    today: date | None = None,
) -> PatientSummary:
    """One patient's line in a patient list (default: the current patient), from SQL; see
    :func:`load_summaries`."""
    name = store.pick_patient(pseudonym).pseudonym
    (summary,) = load_summaries(
        store, [name], period_from=period_from, period_to=period_to, tz=tz, today=today
    )
    return summary
