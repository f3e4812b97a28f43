"""CSV export: one row per session, pain rating, diary pain episode, session note, PEG, PGIC,
other treatment, adverse event, night's sleep, mood, dose taken and diary edit or deletion, in
time order.

The columns are :data:`CSV_COLUMNS`; docs/review.md has the same table (a test checks it).
``record`` says what a row is; columns that do not apply to it are empty. A skipped rating
has an empty ``nrs`` and ``missing`` = 1: it is never written as 0. Times are UTC (ISO 8601);
``date`` is the patient's local calendar day the figures use.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, time
from typing import TextIO

from tens_control.review.analytics import Zone, local_day
from tens_control.review.model import PatientData

RECORDS = (
    "session",
    "rating",
    "pain_episode",
    "session_note",
    "peg",
    "pgic",
    "treatment",
    "adverse_event",
    "sleep",
    "mood",
    "medication_taken",
    "diary_change",
)

CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    (
        "record",
        "`session`, `rating`, `pain_episode`, `session_note`, `peg`, `pgic`, `treatment`, "
        "`adverse_event`, `sleep`, `mood`, `medication_taken` or `diary_change` (an edit or "
        "deletion of a diary entry)",
    ),
    ("patient", "the patient's pseudonym"),
    (
        "session_id",
        "the session (on a rating, note or adverse event: the session it belongs to; empty for "
        "diary entries)",
    ),
    ("rating_id", "the rating (empty on other rows)"),
    (
        "entry_id",
        "the record on `pain_episode`, `session_note`, `peg`, `pgic`, `treatment`, "
        "`adverse_event`, `sleep`, `mood` and `medication_taken` rows; on `diary_change` the "
        "entry changed",
    ),
    ("date", "local calendar day (YYYY-MM-DD) of the session start, rating or entry"),
    ("time_utc", "session start, rating or entry time, UTC, ISO 8601 (empty for a treatment)"),
    ("end_utc", "session or pain episode end, UTC, ISO 8601 (empty if none)"),
    ("end_date", "last day of a treatment over several days (empty for one day)"),
    ("program", "stimulation program"),
    ("device", "device model and serial number"),
    ("stim_minutes", "minutes from the session's start to its end"),
    ("end_reason", "how the session ended (completed, stopped_by_user, lead_off, ...)"),
    ("mean_amplitude_ma", "time-weighted mean set amplitude while stimulating, mA"),
    ("max_amplitude_ma", "highest set amplitude in the session, mA"),
    ("electrode_site", "where the pads were"),
    ("faults", "faults recorded during the session"),
    ("rejections", "requests refused by the safety layer during the session"),
    ("when", "`before`, `during`, `after`, `plus_30_min` or `diary`"),
    ("pain", "`phantom`, `residual_limb` or `other` (a rating or a pain episode)"),
    ("posture", "`rest` or `movement`"),
    ("nrs", "the rating, 0–10 (a pain episode: its worst); empty when skipped or not given"),
    ("missing", "1 when the patient skipped the rating, else 0"),
    (
        "kind",
        "a treatment's kind (`medication_change`, `ketamine_infusion`, `mirror_therapy`, "
        "`physiotherapy`, `other`) or an adverse event's (`skin_redness`, `burn`, `headache`, "
        "`other`); on `diary_change`, the kind of the entry changed",
    ),
    ("severity", "an adverse event's severity (`mild`, `moderate`, `severe`)"),
    (
        "text",
        "the patient's words: a note, a treatment's description, an episode's or adverse "
        "event's notes",
    ),
    ("peg_pain", "PEG: average pain over the last week, 0–10 (empty when skipped)"),
    ("peg_enjoyment", "PEG: interference with enjoyment of life, 0–10"),
    ("peg_activity", "PEG: interference with general activity, 0–10"),
    ("peg_score", "PEG score: the mean of the three items (empty unless all three answered)"),
    ("pgic", "PGIC, 1 (very much improved) to 7 (very much worse); empty when skipped"),
    ("pgic_label", "the PGIC answer in words"),
    ("log", "`damaged` when the row comes from the damaged range of a log `verify` found broken"),
    (
        "written_utc",
        "diary entries: when the current version was written, UTC (`time_utc` is when it "
        "happened; on `diary_change`, when the change was written)",
    ),
    ("edited", "diary entries: 1 when the entry was edited (its history: `diary_change` rows)"),
    (
        "body_regions",
        "a pain episode's body map, `;`-separated (`phantom_digits`, `phantom_hand_foot`, "
        "`phantom_middle`, `phantom_whole`, `stump_end`, `stump_scar`, `stump_front`, "
        "`stump_back`)",
    ),
    ("sleep_hours", "hours slept (a `sleep` row)"),
    ("sleep_quality", "how well the patient slept, 0 (very poor) to 10 (very good)"),
    ("mood", "mood, 0 (very low) to 10 (very good)"),
    ("medication", "a medicine's name (`medication_taken`, `treatment` medication changes)"),
    ("dose", "the dose, as the patient wrote it (e.g. `300 mg`)"),
    (
        "change",
        "on `diary_change`: `edited` or `deleted`; `text` is the entry before, `now` after",
    ),
    ("now", "on an `edited` `diary_change`: the entry after the edit, in words"),
)
"""(column, meaning), in file order."""

HEADER: tuple[str, ...] = tuple(name for name, _ in CSV_COLUMNS)


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _int(value: int | None) -> str:
    return "" if value is None else str(value)


def csv_rows(data: PatientData, tz: Zone) -> list[dict[str, str]]:
    """Every row of the CSV (as column -> text), in time order."""
    from tens_control.pain import pgic_text

    lo, hi = data.period_from, data.period_to

    def inside(moment: datetime) -> bool:
        day = local_day(moment, tz)
        return (lo is None or day >= lo) and (hi is None or day <= hi)

    devices = {d.id: f"{d.model} {d.serial}" for d in data.devices}
    faults: Counter[str] = Counter()
    rejections: Counter[str] = Counter()
    for e in data.events:
        if e.session_id is not None:
            (faults if e.kind == "fault" else rejections)[e.session_id] += 1
    rows: list[tuple[datetime, int, dict[str, str]]] = []
    who = data.patient.pseudonym

    def damaged(session_id: str | None) -> str:
        return "damaged" if session_id in data.damaged_sessions else ""

    def add(at: datetime, record: str, fields: dict[str, str]) -> None:
        row = {
            "record": record,
            "patient": who,
            "date": local_day(at, tz).isoformat(),
            "time_utc": _utc(at),
            **fields,
        }
        rows.append((at, RECORDS.index(record), row))

    for s in data.sessions:
        if inside(s.start):
            add(
                s.start,
                "session",
                {
                    "session_id": s.id,
                    "end_utc": _utc(s.end),
                    "program": s.program or "",
                    "device": devices.get(s.device_id or "", s.device_id or ""),
                    "stim_minutes": _num(round(s.stim_minutes, 3)),
                    "end_reason": s.end_reason or "",
                    "mean_amplitude_ma": _num(s.mean_amplitude_ma),
                    "max_amplitude_ma": _num(s.max_amplitude_ma),
                    "electrode_site": s.electrode_site or "",
                    "faults": str(faults[s.id]),
                    "rejections": str(rejections[s.id]),
                    "log": damaged(s.id),
                },
            )
    for r in data.ratings:
        if inside(r.at):
            add(
                r.at,
                "rating",
                {
                    "session_id": r.session_id or "",
                    "rating_id": r.id,
                    "when": r.when,
                    "pain": r.pain,
                    "posture": r.posture,
                    "nrs": _int(r.value),
                    "missing": "1" if r.value is None else "0",
                    "log": damaged(r.session_id),
                },
            )
    for ep in data.episodes:
        if inside(ep.start):
            add(
                ep.start,
                "pain_episode",
                {
                    "entry_id": ep.id,
                    "end_utc": _utc(ep.end),
                    "pain": ep.pain,
                    "nrs": _int(ep.nrs),
                    "text": ep.note,
                    "written_utc": _utc(ep.written),
                    "edited": "1" if ep.edited else "0",
                    "body_regions": ";".join(ep.regions),
                },
            )
    for n in data.notes:
        if inside(n.at):
            add(
                n.at,
                "session_note",
                {
                    "entry_id": n.id,
                    "session_id": n.session_id or "",
                    "text": n.text,
                    "log": damaged(n.session_id),
                },
            )
    for g in data.pegs:
        if inside(g.at):
            add(
                g.at,
                "peg",
                {
                    "entry_id": g.id,
                    "peg_pain": _int(g.pain),
                    "peg_enjoyment": _int(g.enjoyment),
                    "peg_activity": _int(g.activity),
                    "peg_score": "" if g.score is None else f"{g.score:.4g}",
                },
            )
    for c in data.pgics:
        if inside(c.at):
            add(
                c.at,
                "pgic",
                {"entry_id": c.id, "pgic": _int(c.value), "pgic_label": pgic_text(c.value)},
            )
    for t in data.treatments:
        if (hi is None or t.start <= hi) and (lo is None or (t.end or t.start) >= lo):
            midnight = datetime.combine(t.start, time(0))
            start = midnight.astimezone() if tz is None else midnight.replace(tzinfo=tz)
            add(
                start,
                "treatment",
                {
                    "entry_id": t.id,
                    "date": t.start.isoformat(),
                    "time_utc": "",
                    "end_date": "" if t.end is None or t.end == t.start else t.end.isoformat(),
                    "kind": t.kind,
                    "text": t.description,
                },
            )
    for a in data.adverse_events:
        if inside(a.at):
            add(
                a.at,
                "adverse_event",
                {
                    "entry_id": a.id,
                    "session_id": a.session_id or "",
                    "kind": a.kind,
                    "severity": a.severity or "",
                    "text": a.note,
                    "log": damaged(a.session_id),
                },
            )
    for d in data.diary:
        if inside(d.at):
            add(
                d.at,
                d.kind,
                {
                    "entry_id": d.id,
                    "written_utc": _utc(d.written),
                    "edited": "1" if d.edited else "0",
                    "sleep_hours": _num(d.sleep_hours),
                    "sleep_quality": _int(d.sleep_quality),
                    "mood": _int(d.mood),
                    "medication": d.medication,
                    "dose": d.dose,
                    "text": d.note,
                },
            )
    for change in data.diary_changes:
        if inside(change.at):
            add(
                change.at,
                "diary_change",
                {
                    "entry_id": change.id,
                    "written_utc": _utc(change.at),
                    "kind": change.kind,
                    "change": change.change,
                    "text": change.was + (f" (why: {change.reason})" if change.reason else ""),
                    "now": change.now,
                },
            )
    rows.sort(key=lambda t: (t[0].astimezone(UTC), t[1]))
    return [row for _at, _order, row in rows]


def write_csv(data: PatientData, out: TextIO, tz: Zone) -> int:
    """Write the CSV to ``out``; returns the number of data rows."""
    rows = csv_rows(data, tz)
    if data.integrity:  # the first line says so, before the header
        out.write(f"# {data.integrity}\r\n")
    writer = csv.DictWriter(out, fieldnames=HEADER, restval="", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return len(rows)


def csv_text(data: PatientData, tz: Zone) -> str:
    """The CSV as one string."""
    buf = io.StringIO()
    write_csv(data, buf, tz)
    return buf.getvalue()
