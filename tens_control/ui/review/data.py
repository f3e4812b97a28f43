"""What the review screens show, read from the store (no Textual here).

Every figure comes from the review analytics (:func:`tens_control.review.analytics.summarize`)
and every sentence about a figure from :mod:`tens_control.review.wording`, so the screens say
exactly what the report says. This module only selects, groups and labels: patient status rows
for the list, a patient's rows with their summary, a session's events and amplitude trajectory,
and the export (which calls the report functions).

:class:`ReviewSource` is used from worker threads, one call at a time per screen; its caches
are plain dicts filled under a lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, Literal, get_args

from tens_control.review.analytics import (
    PatientSummary,
    TimePoint,
    local_day,
    per_session_changes,
    summarize_data,
)
from tens_control.review.comparison import ComparisonResult, compare_data
from tens_control.review.model import (
    AdverseEventRow,
    EventRow,
    PatientData,
    RatingRow,
    SeriesKey,
    SessionRow,
)
from tens_control.review.source import list_patients, load_patient, load_summaries
from tens_control.review.wording import (
    STOPPED_DAYS,
    ago_text,
    code_text,
    end_reason_text,
    endpoint_status,
    num,
    responder_text,
    short_day,
)
from tens_control.store import SessionInfo, Store, StoredEvent, VerifyReport
from tens_control.store.records import FAULT_KINDS, ZEROING_KINDS

ExportFormat = Literal["html", "pdf", "csv", "json", "fhir"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
EXPORT_SUFFIX: dict[ExportFormat, str] = {
    "html": ".html",
    "pdf": ".pdf",
    "csv": ".csv",
    "json": ".json",
    "fhir": ".fhir.json",
}
EXPORT_LABELS: dict[ExportFormat, str] = {
    "html": "HTML summary (2 pages)",
    "pdf": "PDF summary (2 pages)",
    "csv": "CSV: sessions, ratings, diary",
    "json": "JSON: every figure",
    "fhir": "FHIR R4B bundle",
}


# --- the patient list --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientStatus:
    """One line of the patient list, taken from the patient's summary."""

    summary: PatientSummary

    @property
    def pseudonym(self) -> str:
        return self.summary.pseudonym

    @property
    def sessions(self) -> int:
        return self.summary.sessions

    @property
    def adherence_pct(self) -> float | None:
        a = self.summary.adherence
        return a.sessions_pct if a.available else None

    @property
    def endpoint(self) -> TimePoint | None:
        """The headline series' latest time point reached (weeks 12, 8, 4), if any."""
        o = self.summary.primary
        return None if o is None else o.endpoint

    @property
    def pain_pct(self) -> float | None:
        """Percent change of the headline series at its latest time point reached."""
        tp = self.endpoint
        return None if tp is None else tp.pct_change

    @property
    def responder_30(self) -> bool | None:
        """≥ 30 % less pain at the latest time point (intention to treat: a time point without
        enough ratings is ``False``); ``None`` before week 4 has ended."""
        tp = self.endpoint
        return None if tp is None else tp.responder_30

    @property
    def responder_50(self) -> bool | None:
        tp = self.endpoint
        return None if tp is None else tp.responder_50

    @property
    def responder_points(self) -> bool | None:
        tp = self.endpoint
        return None if tp is None else tp.responder_points

    @property
    def enough_data(self) -> bool:
        """True when a time point has been reached (so the responder status is yes or no)."""
        return self.endpoint is not None

    @property
    def pain_text(self) -> str:
        """The headline endpoint in a few words (``week 4: −50 % (...)``)."""
        return endpoint_status(self.summary.primary)

    @property
    def last_use_text(self) -> str:
        s = self.summary
        if s.last_session_day is None:
            return "no session"
        return f"{short_day(s.last_session_day)} ({ago_text(s.days_since_session)})"

    @property
    def pain_reason(self) -> str:
        """Why there is no verdict yet ("" when there is one)."""
        if self.enough_data:
            return ""
        o = self.summary.primary
        if o is not None:
            return responder_text(o)
        return self.summary.reason or "not enough data: no before-session or diary ratings"

    @property
    def stopped(self) -> bool:
        d = self.summary.days_since_session
        return d is not None and d >= STOPPED_DAYS

    @property
    def low_baseline(self) -> bool:
        o = self.summary.primary
        return o is not None and o.baseline.low

    @property
    def concurrent(self) -> bool:
        o = self.summary.primary
        tp = None if o is None else (o.endpoint or o.latest)
        return tp is not None and bool(tp.concurrent)

    @property
    def tolerance(self) -> bool:
        """The latest tolerance window is flagged (a current pattern)."""
        return self.summary.tolerance.current

    @property
    def adverse_events(self) -> int:
        return len(self.summary.adverse_events)

    @property
    def faults(self) -> int:
        return self.summary.fault_count

    @property
    def warning_count(self) -> int:
        flags = int(self.tolerance) + int(self.stopped) + int(self.low_baseline)
        return flags + int(self.concurrent) + self.adverse_events + self.faults

    def warnings_text(self) -> str:
        """``⚠ stopped? · low baseline · other treatment · tolerance · 1 adverse event ·
        2 faults``, or ``none``."""
        parts = []
        if self.stopped:
            parts.append("stopped?")
        if self.low_baseline:
            parts.append("low baseline")
        if self.concurrent:
            parts.append("other treatment")
        if self.tolerance:
            parts.append("tolerance")
        elif self.summary.tolerance.flagged:
            parts.append("tolerance earlier")
        if self.adverse_events:
            n = self.adverse_events
            parts.append(f"{n} adverse event{'s' if n != 1 else ''}")
        if self.faults:
            parts.append(f"{self.faults} fault{'s' if self.faults != 1 else ''}")
        return "⚠ " + " · ".join(parts) if parts else "none"


SortKey = Literal["patient", "adherence", "pain", "warnings"]
SORT_KEYS: tuple[SortKey, ...] = get_args(SortKey)
SORT_LABELS: dict[SortKey, str] = {
    "patient": "patient",
    "adherence": "adherence",
    "pain": "pain change",
    "warnings": "warnings",
}

FilterKey = Literal["all", "responders", "non_responders", "not_enough", "warnings"]
FILTER_KEYS: tuple[FilterKey, ...] = get_args(FilterKey)
FILTER_LABELS: dict[FilterKey, str] = {
    "all": "all patients",
    "responders": "30 % responders",
    "non_responders": "non-responders",
    "not_enough": "not enough data",
    "warnings": "with warnings",
}


def _none_last(value: float | None, reverse: bool) -> tuple[int, float]:
    """Sort values ascending (or descending) with the patients without a value always last."""
    if value is None:
        return (1, 0.0)
    return (0, -value if reverse else value)


def sort_statuses(
    rows: Sequence[PatientStatus], key: SortKey, reverse: bool = False
) -> list[PatientStatus]:
    """The rows sorted by ``key`` (ties by pseudonym); rows without a value sort last either
    way. ``pain`` ascending puts the largest fall in pain first."""
    by_name = sorted(rows, key=lambda r: r.pseudonym.lower(), reverse=reverse and key == "patient")
    if key == "patient":
        return by_name
    value: Callable[[PatientStatus], float | None] = {
        "adherence": lambda r: r.adherence_pct,
        "pain": lambda r: r.pain_pct,
        "warnings": lambda r: float(r.warning_count),
    }[key]
    # warnings: most first unless reversed
    descending = (key == "warnings") != reverse
    return sorted(by_name, key=lambda r: _none_last(value(r), descending))


def filter_statuses(
    rows: Sequence[PatientStatus], which: FilterKey, text: str = ""
) -> list[PatientStatus]:
    """The rows matching the preset ``which`` and containing ``text`` in the pseudonym."""
    needle = text.strip().lower()
    out = []
    for r in rows:
        if needle and needle not in r.pseudonym.lower():
            continue
        if which == "responders" and r.responder_30 is not True:
            continue
        if which == "non_responders" and r.responder_30 is not False:
            continue
        if which == "not_enough" and r.enough_data:
            continue
        if which == "warnings" and r.warning_count == 0:
            continue
        out.append(r)
    return out


# --- one patient -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionLine:
    """One session in the patient's session table."""

    row: SessionRow
    day: date
    before: int | None
    after: int | None
    faults: tuple[str, ...]
    rejections: int
    adverse: int

    def notes(self) -> str:
        parts = []
        if self.adverse:
            parts.append("adverse event" if self.adverse == 1 else f"{self.adverse} adverse")
        for code, n in sorted(Counter(self.faults).items()):
            parts.append(f"{code_text(code)}{f' ×{n}' if n > 1 else ''}")
        if self.rejections:
            parts.append(f"{self.rejections} refused")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class PatientView:
    """One patient's rows and the summary the analytics made of them."""

    data: PatientData
    summary: PatientSummary
    tz: tzinfo | None
    """Time zone of the days and times shown (None: this computer's local time)."""
    comparison: ComparisonResult | None = None
    """The N-of-1 program comparison the prescription set up, if any."""

    @property
    def primary_key(self) -> SeriesKey | None:
        o = self.summary.primary
        return None if o is None else (o.pain, o.posture)

    def in_period(self, moment: datetime) -> bool:
        day = local_day(moment, self.tz)
        s = self.summary
        return (s.period_start is None or day >= s.period_start) and (
            s.period_end is None or day <= s.period_end
        )

    def session_lines(self) -> list[SessionLine]:
        """Every session in the period, oldest first, with the headline series' before and
        after ratings (``None``: skipped or not asked)."""
        key = self.primary_key
        pairs = per_session_changes(self.data, key) if key is not None else {}
        faults: dict[str, list[str]] = {}
        rejections: Counter[str] = Counter()
        for e in self.data.events:
            if e.session_id is None:
                continue
            if e.kind == "fault":
                faults.setdefault(e.session_id, []).append(e.code)
            else:
                rejections[e.session_id] += 1
        adverse = Counter(a.session_id for a in self.data.adverse_events if a.session_id)
        out = []
        for s in sorted(self.data.sessions, key=lambda s: s.start):
            if not self.in_period(s.start):
                continue
            before, after = pairs.get(s.id, (None, None))
            out.append(
                SessionLine(
                    row=s,
                    day=local_day(s.start, self.tz),
                    before=before,
                    after=after,
                    faults=tuple(faults.get(s.id, ())),
                    rejections=rejections[s.id],
                    adverse=adverse[s.id],
                )
            )
        return out

    def prescription_text(self) -> str:
        if not self.data.prescriptions:
            return "no prescription on record"
        p = max(self.data.prescriptions, key=lambda p: p.valid_from)
        text = f"prescribed {p.sessions_per_day} × {p.session_minutes:.0f} min a day"
        if p.minutes_per_day is not None:
            text += f" (≤ {p.minutes_per_day:.0f} min a day)"
        return text

    def device_text(self) -> str:
        parts = []
        for d in self.data.devices:
            sim = " (simulator)" if d.simulated else ""
            parts.append(f"{d.model} {d.serial} fw {d.firmware}{sim}")
        return "; ".join(parts) or "no device on record"


# --- one session -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventLine:
    """One logged event of a session, in words."""

    at: datetime
    offset_s: float
    kind: str
    text: str
    important: bool = False
    """A fault, a refused request or a failed command."""


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """A session: its plan and end, its events in words, the amplitude set on each channel over
    time, the measured current (when the device reports it), its ratings and adverse events."""

    info: SessionInfo
    row: SessionRow | None
    events: tuple[EventLine, ...]
    trajectory: dict[int, tuple[tuple[float, float], ...]]
    """Channel -> (seconds from the start, set mA) at every change, from the log."""
    measured: dict[int, tuple[tuple[float, float], ...]]
    """Channel -> (seconds from the start, measured mA), from the telemetry."""
    duration_s: float
    ratings: tuple[RatingRow, ...]
    adverse_events: tuple[AdverseEventRow, ...]
    faults: tuple[EventRow, ...] = field(default=())


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


STOP_REASONS: dict[str, str] = {
    "emergency": "emergency stop",
    "duration": "session time reached",
    "lead_off": "electrode off",
    "comms_lost": "connection lost",
    "device_fault": "device fault",
    "device_reset": "the device restarted",
    "emergency_switch": "the device's emergency switch",
    "watchdog": "device watchdog tripped",
    "output_mismatch": "output mismatch",
    "limit": "the device refused a level as over its limit",
    "closed": "the program closed the connection",
}
"""The safety governor's stop and pause reasons (``drivers.safety.StopReason``) in words."""


def _halted(verb: str, p: dict[str, Any]) -> str:
    """``output stopped by the user``, ``output paused: electrode off`` ..."""
    reason = str(p.get("reason") or "")
    if reason in ("", "user"):
        return f"output {verb} by the user"
    return f"output {verb}: {STOP_REASONS.get(reason, reason.replace('_', ' '))}"


def _ch(p: dict[str, Any]) -> str:
    return f" ch{p['channel']}" if p.get("channel") is not None else ""


def _change(p: dict[str, Any], what: str = "") -> str:
    """``ch1 0.0 → 6.0 mA (patient, target set)`` (with ``what`` before the levels)."""
    why = f", {p['why']}" if p.get("why") else ""
    return (
        f"ch{p.get('channel')} {what}{num(p.get('from_ma'))} → {num(p.get('to_ma'))} mA "
        f"({p.get('who') or ''}{why})"
    )


def _ohm(p: dict[str, Any]) -> str:
    value = p.get("impedance_ohm")
    return "" if value is None else f" ({num(value, 0)} Ω)"


def _governor_line(kind: str, p: dict[str, Any]) -> tuple[str, str, bool] | None:
    """(kind label, text, important) of one of the safety governor's events (the logs written
    since its events are typed; older logs have ``fault`` and ``command`` records instead);
    None for any other kind."""
    detail = f": {p['detail']}" if p.get("detail") else ""
    if kind == "lead_off":
        return "FAULT", f"electrode off{_ch(p)}{_ohm(p)}{detail}", True
    if kind == "output_mismatch":
        measured = p.get("measured_ma")
        got = "nothing measured" if measured is None else f"measured {num(measured)} mA"
        return (
            "FAULT",
            f"output mismatch{_ch(p)}: set {num(p.get('set_ma'))} mA, {got}{detail}",
            True,
        )
    if kind == "comms_lost":
        return "FAULT", f"connection lost{detail}", True
    if kind == "emergency_stop":
        sent = "" if p.get("sent", True) else " (the stop could not be sent to the port)"
        return "E-STOP", f"emergency stop: every output to 0{sent}", True
    if kind == "stopped":
        return "stop", _halted("stopped", p), False
    if kind == "paused":
        return "pause", f"{_halted('paused', p)} (every channel at 0)", False
    if kind == "resumed":
        left = p.get("remaining_s")
        rest = "" if left is None else f", {num(float(left) / 60.0)} min left"
        return "resume", f"resumed from 0 mA{rest}", False
    if kind == "started":
        minutes = p.get("duration_s")
        length = "" if minutes is None else f" for {num(float(minutes) / 60.0)} min"
        return "start", f"output started at 0 mA{length}", False
    if kind == "target_changed":
        return "target", _change(p, "target "), False
    if kind == "configured":
        settings = p.get("settings") or {}
        return (
            "configure",
            f"ch{p.get('channel')} {num(settings.get('frequency_hz'))} Hz, "
            f"{settings.get('pulse_width_us')} µs, {settings.get('pattern') or 'continuous'}; "
            f"cap {num(p.get('max_ma'))} mA ({str(p.get('max_source') or '').replace('_', ' ')})",
            False,
        )
    if kind == "device_rejected":
        return (
            "FAILED",
            f"{p.get('command')}{_ch(p)}: the device refused it ({p.get('code')})",
            True,
        )
    if kind == "lead_on":
        return "lead-on", f"electrode contact restored{_ch(p)}{_ohm(p)}", False
    if kind == "connected":
        sim = ", simulator" if p.get("simulator") else ""
        return (
            "device",
            f"connected: {p.get('model')} {p.get('serial')} fw {p.get('firmware')} "
            f"({p.get('protocol')}, profile {p.get('profile')}{sim})",
            False,
        )
    if kind == "caps_changed":
        caps = ", ".join(
            f"ch{c.get('channel')} ≤ {num(c.get('max_ma'))} mA" for c in p.get("caps") or ()
        )
        session = num(p.get("max_session_min"), 0)
        return "caps", f"caps now {caps or 'unchanged'}, session ≤ {session} min{detail}", False
    if kind == "no_lead_off_detection":
        return "device", "this device cannot detect electrode lead-off", False
    if kind == "no_readback":
        return "device", "this device does not report measured current (no read-back)", False
    if kind == "closed":
        return "device", f"connection closed{detail}", False
    return None


def describe_event(e: StoredEvent) -> tuple[str, str, bool]:
    """(kind label, text, important) of one stored event."""
    p = e.payload
    kind = e.kind
    if kind == "session_started":
        return "start", "session started", False
    if kind == "session_ended":
        reason = end_reason_text(str(p.get("reason")))
        detail = f" ({p['detail']})" if p.get("detail") else ""
        recovered = " (closed at the next start)" if p.get("recovered") else ""
        completed = p.get("reason") == "completed"
        return "end" if completed else "END", f"{reason}{detail}{recovered}", not completed
    if kind == "state_changed":
        why = f" ({p['reason']})" if p.get("reason") else ""
        return "state", f"{p.get('from_state')} → {p.get('to_state')}{why}", False
    if kind == "command":
        ch = _ch(p)
        args = p.get("args") or {}
        shown = " ".join(f"{k}={_fmt_value(v)}" for k, v in args.items())
        text = f"{p.get('command')}{ch}{' ' + shown if shown else ''}"
        if not p.get("ok", True):
            return "FAILED", f"{text}: {p.get('error') or 'the device refused it'}", True
        return "command", text, False
    if kind == "amplitude_changed":
        return "amplitude", _change(p), False
    if kind == "rejected":
        value = p.get("value")
        limit = p.get("limit")
        vs = ""
        if value is not None and limit is not None:
            vs = f" {_fmt_value(value)} > limit {_fmt_value(limit)}"
        source = f" [{p['source']}]" if p.get("source") else ""
        return "REFUSED", f"{p.get('parameter')}{vs}{source}: {p.get('message')}", True
    if kind == "fault":
        detail = f": {p['detail']}" if p.get("detail") else ""
        return "FAULT", f"{code_text(str(p.get('fault')))}{_ch(p)}{detail}", True
    governor = _governor_line(kind, p)
    if governor is not None:
        return governor
    if kind == "device_event":
        detail = f": {p['detail']}" if p.get("detail") else ""
        return "device", f"{code_text(str(p.get('event')))}{_ch(p)}{detail}", False
    if kind == "habituation_prompt":
        return "prompt", f"still strong but comfortable? {p.get('response') or ''}".strip(), False
    if kind == "note":
        return "note", str(p.get("text") or ""), False
    if kind == "pain_rated":
        r = p.get("record") or {}
        value = "skipped" if r.get("nrs") is None else str(r.get("nrs"))
        return "rating", f"{r.get('when')} {r.get('pain')} {r.get('context')}: {value}", False
    if kind == "adverse_event":
        r = p.get("record") or {}
        return "ADVERSE", f"{r.get('kind')} ({r.get('severity')}) {r.get('notes') or ''}", True
    if kind == "telemetry_sealed":
        return "telemetry", f"{p.get('count')} samples sealed (segment {p.get('segment')})", False
    return kind, ", ".join(f"{k}={_fmt_value(v)}" for k, v in p.items()), False


ZEROING_COMMANDS = frozenset({"stop", "emergency_stop", "pause"})
"""Commands of older logs (``command`` records) after which every output is 0 (S1, S10); the
governor's events since are :data:`ZEROING_KINDS`."""


def trajectory_of(
    events: Sequence[StoredEvent], start: datetime, end: datetime | None = None
) -> dict[int, tuple[tuple[float, float], ...]]:
    """Channel -> (seconds from ``start``, set mA) at each change, from the log: every logged
    amplitude change; a channel starts at 0 mA (S1); a stop, pause or emergency stop sets every
    channel to 0, a fault its channel (or every channel); the session's ``end`` sets every
    channel to 0. Reads old logs (``command`` and ``fault`` records) and new ones (the
    governor's ``stopped``, ``paused``, ``emergency_stop``, ``lead_off`` ... events) alike."""
    points: dict[int, list[tuple[float, float]]] = {}

    def zero(t: float, channel: int | None) -> None:
        for ch, pts in points.items():
            if (channel is None or ch == channel) and pts[-1][1] != 0.0:
                pts.append((t, 0.0))

    for e in events:
        t = max(0.0, (e.wall_time - start).total_seconds())
        p = e.payload
        if e.kind == "amplitude_changed":
            ch = int(p.get("channel") or 0)
            points.setdefault(ch, [(0.0, 0.0)]).append((t, float(p.get("to_ma") or 0.0)))
        elif e.kind in ZEROING_KINDS or (
            e.kind == "command" and p.get("command") in ZEROING_COMMANDS and p.get("ok", True)
        ):
            zero(t, None)
        elif e.kind in FAULT_KINDS:
            fault_ch = p.get("channel")
            zero(t, None if fault_ch is None else int(fault_ch))
    if end is not None:
        zero(max(0.0, (end - start).total_seconds()), None)
    return {ch: tuple(pts) for ch, pts in sorted(points.items())}


# --- the source --------------------------------------------------------------------------------


class ReviewSource:
    """The review's view of one store (read-only): patient statuses, patients, sessions,
    exports. Loaded patients are cached (the log does not change while review runs)."""

    STATUS_BATCH = 10
    """Patient list lines read together (one SQL pass for several patients is cheaper than one
    per patient, and the list still fills in as it reads)."""

    def __init__(self, store: Store, tz: tzinfo | None = None, today: date | None = None) -> None:
        self.store = store
        self.tz = tz
        self.today = today
        """The day the figures run to (``None``: today)."""
        self._lock = threading.Lock()
        self._patients: dict[str, PatientView] = {}
        self._summaries: dict[str, PatientSummary] = {}
        self._report: VerifyReport | None = None

    @property
    def path(self) -> Path:
        return self.store.path

    def close(self) -> None:
        self.store.close()

    def verified(self) -> VerifyReport:
        """``verify`` of the whole database, once (review is read-only, so it stays true)."""
        with self._lock:
            if self._report is None:
                self._report = self.store.verify()
            return self._report

    def pseudonyms(self) -> list[str]:
        return [p.pseudonym for p in list_patients(self.store)]

    def patient(self, pseudonym: str) -> PatientView:
        """One patient's rows and summary (loaded once)."""
        with self._lock:
            cached = self._patients.get(pseudonym)
        if cached is not None:
            return cached
        data = load_patient(self.store, pseudonym, tz=self.tz, today=self.today)
        data = data.with_damage(self.store.damage(self.verified(), pseudonym))
        view = PatientView(
            data=data,
            summary=summarize_data(data, self.tz),
            tz=self.tz,
            comparison=compare_data(data, self.tz),
        )
        with self._lock:
            self._patients[pseudonym] = view
        return view

    def status(self, pseudonym: str) -> PatientStatus:
        """One patient's line in the patient list: from the patient list's SQL path
        (:func:`~tens_control.review.source.load_summaries`, the same figures as the patient's
        full summary), read with the next few patients of the list that are not read yet."""
        with self._lock:
            view = self._patients.get(pseudonym)
            summary = self._summaries.get(pseudonym)
        if view is not None:
            return PatientStatus(view.summary)
        if summary is None:
            names = self.pseudonyms()
            after = names[names.index(pseudonym) + 1 :] if pseudonym in names else []
            with self._lock:
                batch = [pseudonym] + [n for n in after if n not in self._summaries]
            found = load_summaries(
                self.store, batch[: self.STATUS_BATCH], tz=self.tz, today=self.today
            )
            with self._lock:
                self._summaries.update((s.pseudonym, s) for s in found)
                summary = self._summaries[pseudonym]
        return PatientStatus(summary)

    def statuses(self) -> list[PatientStatus]:
        """The status of every patient, in the order they were added."""
        return [self.status(name) for name in self.pseudonyms()]

    def session(self, pseudonym: str, session_id: str) -> SessionDetail:
        """One session of a patient, with its events, trajectory and ratings."""
        view = self.patient(pseudonym)
        info = self.store.session(session_id)
        stored = self.store.events(session=session_id)
        start = info.started_at
        end = info.ended_at or (stored[-1].wall_time if stored else start)
        lines = []
        start_mono: float | None = None
        for e in stored:
            if e.kind == "session_started":
                start_mono = e.mono_time
            label, text, important = describe_event(e)
            lines.append(
                EventLine(
                    at=e.wall_time,
                    offset_s=(e.wall_time - start).total_seconds(),
                    kind=label,
                    text=text,
                    important=important,
                )
            )
        measured: dict[int, list[tuple[float, float]]] = {}
        for sample in self.store.telemetry(session_id):
            if sample.measured_ma is None:
                continue
            base = start_mono if start_mono is not None else sample.time
            if start_mono is None:
                start_mono = sample.time
            measured.setdefault(sample.channel, []).append((sample.time - base, sample.measured_ma))
        row = next((s for s in view.data.sessions if s.id == session_id), None)
        return SessionDetail(
            info=info,
            row=row,
            events=tuple(lines),
            trajectory=trajectory_of(stored, start, info.ended_at),
            measured={ch: tuple(v) for ch, v in sorted(measured.items())},
            duration_s=max(0.0, (end - start).total_seconds()),
            ratings=tuple(
                sorted(
                    (r for r in view.data.ratings if r.session_id == session_id),
                    key=lambda r: r.at,
                )
            ),
            adverse_events=tuple(a for a in view.data.adverse_events if a.session_id == session_id),
            faults=tuple(e for e in view.data.events if e.session_id == session_id),
        )

    def export(self, pseudonym: str, fmt: ExportFormat, path: Path, force: bool) -> int:
        """Write the patient's report in ``fmt`` to ``path`` with the report functions
        (replacing an existing file only with ``force``). Returns the bytes written."""
        # imported here: the report brings fpdf2 and fhir.resources, which the screens never
        # need
        from tens_control.review.report import write_output

        content = self.render(pseudonym, fmt)
        write_output(path, content, force=force)
        return len(content)

    def render(self, pseudonym: str, fmt: ExportFormat) -> bytes:
        """The patient's report in ``fmt``, with the report functions."""
        from tens_control.review.report import render

        return render(self.patient(pseudonym).data, fmt, tz=self.tz)


def default_export_name(pseudonym: str, fmt: ExportFormat) -> str:
    """``P-014-review.html``."""
    return f"{pseudonym}-review{EXPORT_SUFFIX[fmt]}"
