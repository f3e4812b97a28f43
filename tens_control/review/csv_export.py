"""CSV export: one row per session and one row per pain rating, in time order.

The columns are :data:`CSV_COLUMNS`; docs/review.md has the same table (a test checks it). A
skipped rating has an empty ``nrs`` and ``missing`` = 1: it is never written as 0. Times are
UTC (ISO 8601); ``date`` is the patient's local calendar day the figures use.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime
from typing import TextIO

from tens_control.review.analytics import Zone, local_day
from tens_control.review.model import PatientData

CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("record", "`session` or `rating`"),
    ("patient", "the patient's pseudonym"),
    ("session_id", "the session (on a rating: the session it belongs to; empty for diary)"),
    ("rating_id", "the rating (empty on session rows)"),
    ("date", "local calendar day (YYYY-MM-DD) of the session start or the rating"),
    ("time_utc", "session start or rating time, UTC, ISO 8601"),
    ("end_utc", "session end, UTC, ISO 8601 (empty if the session never ended)"),
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
    ("pain", "`phantom`, `residual_limb` or `other`"),
    ("posture", "`rest` or `movement`"),
    ("nrs", "the rating, 0–10; empty when skipped"),
    ("missing", "1 when the patient skipped the rating, else 0"),
    ("log", "`damaged` when the row comes from the damaged range of a log `verify` found broken"),
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


def write_csv(data: PatientData, out: TextIO, tz: Zone) -> int:
    """Write the CSV to ``out``; returns the number of data rows."""
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
    for s in data.sessions:
        if not inside(s.start):
            continue
        rows.append(
            (
                s.start,
                0,
                {
                    "record": "session",
                    "patient": who,
                    "session_id": s.id,
                    "date": local_day(s.start, tz).isoformat(),
                    "time_utc": _utc(s.start),
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
                    "log": "damaged" if s.id in data.damaged_sessions else "",
                },
            )
        )
    for r in data.ratings:
        if not inside(r.at):
            continue
        rows.append(
            (
                r.at,
                1,
                {
                    "record": "rating",
                    "patient": who,
                    "session_id": r.session_id or "",
                    "rating_id": r.id,
                    "date": local_day(r.at, tz).isoformat(),
                    "time_utc": _utc(r.at),
                    "when": r.when,
                    "pain": r.pain,
                    "posture": r.posture,
                    "nrs": "" if r.value is None else str(r.value),
                    "missing": "1" if r.value is None else "0",
                    "log": "damaged" if r.session_id in data.damaged_sessions else "",
                },
            )
        )
    rows.sort(key=lambda t: (_utc(t[0]), t[1]))
    if data.integrity:  # the first line says so, before the header
        out.write(f"# {data.integrity}\r\n")
    writer = csv.DictWriter(out, fieldnames=HEADER, restval="", lineterminator="\r\n")
    writer.writeheader()
    for _at, _order, row in rows:
        writer.writerow(row)
    return len(rows)


def csv_text(data: PatientData, tz: Zone) -> str:
    """The CSV as one string."""
    buf = io.StringIO()
    write_csv(data, buf, tz)
    return buf.getvalue()
