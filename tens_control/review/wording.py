"""The figures in words: the report's answer lines, its warnings, and one-line patient status.

Shared by the HTML/PDF report and the clinician UI, so both say the same thing the same way.
Numbers use a real minus sign (−) and a space before %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tens_control.review.analytics import (
    BAND_LABELS,
    RULES,
    DiaryFigures,
    PainOutcome,
    PatientSummary,
    SessionChange,
    TimePoint,
    TreatmentItem,
)

END_REASON_LABELS: dict[str, str] = {
    "completed": "completed",
    "stopped_by_user": "stopped by the patient",
    "user_stop": "stopped by the patient",
    "emergency_stop": "emergency stop",
    "lead_off": "electrode off",
    "comms_lost": "connection lost",
    "device_fault": "device fault",
    "output_mismatch": "output mismatch",
    "limit_reached": "limit reached",
    "host_crash": "program crashed",
    "not ended": "not ended",
}


CODE_LABELS: dict[str, str] = {
    "LEADOFF": "electrode off",
    "LEAD_OFF": "electrode off",
    "COMMS_LOST": "connection lost",
    "WDT": "device watchdog tripped",
    "WATCHDOG": "device watchdog tripped",
    "FAULT": "device fault",
    "DEVICE_FAULT": "device fault",
    "RESET": "device restarted",
    "OUTPUT_MISMATCH": "output mismatch",
    "HOST_CRASH": "program crashed",
    "BATLOW": "battery low",
    "LIMIT": "above a limit",
    "PARAM": "parameter out of range",
    "STATE": "not allowed in that state",
    "DOSE": "dose limit",
}


def code_text(code: str) -> str:
    """A fault or rejection code in words (``LEADOFF`` -> ``electrode off``)."""
    return CODE_LABELS.get(code.upper(), code.lower().replace("_", " "))


def counts_text(counts: dict[str, int]) -> str:
    """``{"LEADOFF": 2, "WDT": 1}`` -> ``3: electrode off ×2, device watchdog tripped ×1``."""
    total = sum(counts.values())
    kinds = ", ".join(f"{code_text(c)} ×{n}" for c, n in counts.items())
    return f"{total}: {kinds}"


def signed(value: float, digits: int = 1) -> str:
    """``-1.25`` -> ``−1.3``; ``2`` -> ``+2.0``; zero has no sign."""
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return text
    return ("−" if value < 0 else "+") + text


def num(value: float | None, digits: int = 1) -> str:
    """A plain number, or an en dash when there is none."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} %"


def day_text(d: date | None) -> str:
    """``2 Mar 2026``."""
    return "–" if d is None else f"{d.day} {d:%b %Y}"


def span_text(a: date | None, b: date | None) -> str:
    """``2–8 Mar 2026``, ``28 Feb – 6 Mar 2026``."""
    if a is None or b is None:
        return "–"
    if a == b:
        return day_text(a)
    if a.year == b.year and a.month == b.month:
        return f"{a.day}–{b.day} {b:%b %Y}"
    if a.year == b.year:
        return f"{a.day} {a:%b} – {b.day} {b:%b %Y}"
    return f"{day_text(a)} – {day_text(b)}"


def end_reason_text(reason: str | None) -> str:
    if reason is None:
        return "not ended"
    return END_REASON_LABELS.get(reason, reason.replace("_", " "))


STOPPED_DAYS = 7
"""No session for this many days is a warning (the patient may have stopped)."""


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 session``, ``2 sessions``, ``0 sessions``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def duration_text(minutes: float) -> str:
    """``30 min``, ``1 h 5 min``, ``14 h`` (to the nearest minute)."""
    total = round(minutes)
    hours, rest = divmod(total, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h" if not rest else f"{hours} h {rest} min"


def ago_text(days: int | None) -> str:
    """``today``, ``yesterday``, ``12 days ago``."""
    if days is None:
        return "–"
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days == -1:
        return "tomorrow"
    if days < 0:
        return f"in {-days} days"
    return f"{days} days ago"


def short_day(d: date | None) -> str:
    """``2 Mar``."""
    return "–" if d is None else f"{d.day} {d:%b}"


def treatment_text(t: TreatmentItem) -> str:
    """``ketamine infusion 12–14 Mar 2026``."""
    when = span_text(t.start, t.end) if t.end and t.end != t.start else day_text(t.start)
    return f"{t.kind.replace('_', ' ')} {when}"


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the answer: a label and its text; ``level`` ok/info/warn for styling."""

    label: str
    text: str
    level: str = "info"


def use_line(s: PatientSummary) -> Line:
    """When the patient last used TENS and last rated pain, and how long ago."""
    if s.last_session_day is None:
        rated = (
            f"last pain rating {day_text(s.last_rating_day)} ({ago_text(s.days_since_rating)})"
            if s.last_rating_day is not None
            else "no pain rating yet"
        )
        return Line("Last use", f"no session yet; {rated}", "info")
    text = (
        f"last session {day_text(s.last_session_day)} ({ago_text(s.days_since_session)}); "
        + (
            f"last pain rating {day_text(s.last_rating_day)} ({ago_text(s.days_since_rating)})"
            if s.last_rating_day is not None
            else "no pain rating"
        )
        + f"; first session {day_text(s.first_session)}"
    )
    stopped = s.days_since_session is not None and s.days_since_session >= STOPPED_DAYS
    return Line("Last use", text, "warn" if stopped else "info")


def adherence_line(s: PatientSummary) -> Line:
    a = s.adherence
    if not a.available or a.sessions_pct is None:
        text = a.reason or "not enough data"
        if a.today_sessions:
            text += f"; today so far {plural(a.today_sessions, 'session')}"
        return Line("Adherence", text, "info")
    per_day = f"{a.sessions_per_day:.1f}" if a.sessions_per_day is not None else "–"
    mins = duration_text(a.minutes_per_day) if a.minutes_per_day is not None else "–"
    text = (
        f"{pct(a.sessions_pct)} of prescribed sessions ({a.sessions_done} of "
        f"{a.sessions_prescribed} over {plural(a.days, 'day')}, "
        f"{span_text(a.first_day, a.last_day)}; {per_day} a day), "
        f"{pct(a.minutes_pct)} of prescribed minutes ({mins} a day); "
        f"{plural(a.days_without_session, 'day')} without a session"
    )
    today, end = s.today, s.period_end
    if (
        not a.today_counted
        and a.today_sessions
        and today is not None
        and end is not None
        and (end >= today)
    ):
        text += (
            f"; today so far {plural(a.today_sessions, 'session')} (counted once the "
            "prescribed sessions are done)"
        )
    level = "ok" if a.sessions_pct >= 80 else "warn"
    return Line("Adherence", text, level)


def baseline_text(o: PainOutcome) -> str:
    """``7.0/10: run-in 23 Feb – 1 Mar 2026 (7 of 7 days rated)``."""
    b = o.baseline
    if b.mean is None:
        if b.reason == RULES["no_session"]:
            return f"{b.reason} ({plural(o.rated_days, 'rated day')} so far)"
        tried = (
            f"run-in {b.run_in_rated_days} of {b.run_in_days} days rated, first week of use "
            f"{b.rated_days} of 7"
            if b.run_in_days
            else f"no run-in; first week of use {b.rated_days} of 7 days rated"
        )
        return f"{b.reason} ({tried})"
    if b.kind == "run_in":
        text = (
            f"{b.mean:.1f}/10: run-in {span_text(b.start, b.end)} "
            f"({b.rated_days} of {b.run_in_days} days rated)"
        )
    else:
        why = (
            f"run-in {b.run_in_rated_days} of {b.run_in_days} days rated"
            if b.run_in_days
            else "no run-in prescribed"
        )
        text = (
            f"{b.mean:.1f}/10: first week of use {span_text(b.start, b.end)} "
            f"({b.rated_days} of 7 days rated; not a run-in baseline: {why})"
        )
    if b.low:
        text += (
            "; ⚠ low baseline (below 4/10): a percent change from it misleads, read the change "
            "in points"
        )
    return text


def baseline_line(o: PainOutcome) -> Line:
    b = o.baseline
    level = "warn" if b.low or b.mean is None or b.kind == "first_week" else "info"
    return Line("Baseline", f"{o.label}: {baseline_text(o)}", level)


def yes_no(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


def responders_text(tp: TimePoint) -> str:
    """``≥ 30 %: yes · ≥ 50 %: no · ≥ 2 points: yes``."""
    return (
        f"≥ 30 %: {yes_no(tp.responder_30)} · ≥ 50 %: {yes_no(tp.responder_50)} · "
        f"≥ 2 points: {yes_no(tp.responder_points)}"
    )


def concurrent_text(tp: TimePoint) -> str:
    """``⚠ other treatment since the baseline: ketamine infusion 12–14 Mar 2026`` or ``""``."""
    if not tp.concurrent:
        return ""
    what = ", ".join(treatment_text(t) for t in tp.concurrent)
    return f"⚠ other treatment since the baseline: {what}"


def time_point_text(tp: TimePoint) -> str:
    """One week against the baseline, in words (intention to treat)."""
    span = span_text(tp.start, tp.end)
    if tp.status == "due":
        return f"due: {span} has not ended yet"
    if tp.status == "missing":
        text = (
            f"{span}: {tp.rated_days} of 7 days rated (a mean needs 3): non-responder "
            "(intention to treat)"
        )
    elif tp.status == "no_baseline":
        mean = f"{tp.mean:.1f}, " if tp.mean is not None else ""
        text = f"{span}: {mean}no baseline: non-responder (intention to treat)"
    else:
        assert tp.mean is not None
        change = f"{signed(tp.change_points or 0)} points"
        if tp.pct_change is not None:
            change += f", {signed(tp.pct_change, 0)} %"
        band = f"; IMMPACT {BAND_LABELS[tp.band]}" if tp.band is not None else ""
        zero = f" ({tp.reason})" if tp.reason else ""
        text = f"{tp.mean:.1f} ({change}), {span}: {responders_text(tp)}{band}{zero}"
    extra = concurrent_text(tp)
    return f"{text}; {extra}" if extra else text


def time_point_line(tp: TimePoint) -> Line:
    label = f"Week {tp.week}" if tp.endpoint else f"Latest week ({tp.week})"
    if tp.concurrent and tp.reached:
        level = "warn"
    elif tp.responder_30:
        level = "ok"
    elif tp.reached:
        level = "warn" if tp.status != "rated" else "info"
    else:
        level = "info"
    return Line(label, time_point_text(tp), level)


def responder_text(o: PainOutcome) -> str:
    """The verdict at the latest time point reached (weeks 12, 8, 4), intention to treat."""
    tp = o.endpoint
    if tp is None:
        first = next(iter(o.time_points), None)
        if first is None:
            return o.reason or RULES["no_session"]
        return f"no time point reached yet (week {first.week} ends {day_text(first.end)})"
    verdict = (
        "50 % responder"
        if tp.responder_50
        else "30 % responder"
        if tp.responder_30
        else "non-responder"
    )
    why = ""
    if tp.status == "missing":
        why = f" ({tp.rated_days} of 7 days rated that week)"
    elif tp.status == "no_baseline":
        why = " (no baseline)"
    points = "" if tp.responder_points is None else f"; ≥ 2 points: {yes_no(tp.responder_points)}"
    return f"week {tp.week}: {verdict}{why}{points}"


def outcome_summary(o: PainOutcome) -> str:
    """A series in one line: baseline, and the latest time point reached (or the latest week)."""
    b = f"baseline {o.baseline.mean:.1f}" if o.baseline.mean is not None else "no baseline"
    tp = o.endpoint or o.latest
    if tp is None:
        return f"{o.label}: {b}"
    if tp.status == "rated" and tp.mean is not None:
        change = f"{signed(tp.change_points or 0)} points"
        if tp.pct_change is not None:
            change += f", {signed(tp.pct_change, 0)} %"
        what = f"week {tp.week} {tp.mean:.1f} ({change})"
    elif tp.status == "due":
        what = f"week {tp.week} due"
    else:
        what = f"week {tp.week}: non-responder"
    low = " ⚠ low baseline" if o.baseline.low else ""
    return f"{o.label}: {b}{low}, {what}"


def change_text(c: SessionChange) -> str:
    if not c.available or c.mean_change is None:
        return c.reason or "not enough data"
    text = (
        f"{signed(c.mean_change)} points from before to after a session on average "
        f"({plural(c.sessions, 'session')} rated both)"
    )
    if c.mean_change_30 is not None:
        text += f"; {signed(c.mean_change_30)} at +30 min ({c.sessions_30})"
    return text


def peg_text(s: PatientSummary) -> str:
    p = s.peg
    if not p.count or p.first is None or p.latest is None:
        return "no PEG answered"
    first = f"{num(p.first.score)} ({'before treatment' if p.first_before_treatment else 'first'}"
    first += f", {day_text(p.first.day)})"
    if p.latest is p.first or p.count == 1:
        return f"PEG {first}"
    change = f", {signed(p.change)}" if p.change is not None else ""
    return (
        f"PEG {first} → {num(p.latest.score)} ({day_text(p.latest.day)}{change}; "
        f"{plural(p.count, 'answer')})"
    )


def pgic_text(s: PatientSummary) -> str:
    g = s.pgic
    if g.latest is None or g.latest.value is None:
        return "no PGIC answered" if not g.count else f"PGIC skipped ({plural(g.count, 'time')})"
    return (
        f"PGIC {day_text(g.latest.day)}: {g.latest.label} ({g.latest.value} of 7, "
        "1 = very much improved)"
    )


def logbook_text(s: PatientSummary, notes: int) -> str:
    """What else the patient logged: pain episodes, notes, other treatments."""
    parts = []
    eps = s.episodes
    if eps:
        worst = max((e.nrs for e in eps if e.nrs is not None), default=None)
        text = plural(len(eps), "pain episode")
        if worst is not None:
            text += f" (worst {worst}/10)"
        parts.append(text + f", latest {day_text(eps[-1].day)}")
    else:
        parts.append("no pain episodes")
    parts.append(plural(notes, "session note"))
    if s.treatments:
        parts.append("other treatments: " + ", ".join(treatment_text(t) for t in s.treatments))
    return "; ".join(parts)


def diary_text(f: DiaryFigures) -> str:
    """Sleep, mood and medicines in one line, and how the diary was kept."""
    parts = []
    if f.nights:
        sleep = plural(f.nights, "night")
        got = []
        if f.mean_sleep_hours is not None:
            got.append(f"mean {f.mean_sleep_hours:.1f} h")
        if f.mean_sleep_quality is not None:
            got.append(f"slept {f.mean_sleep_quality:.1f}/10")
        parts.append(f"sleep: {sleep}" + (f", {', '.join(got)}" if got else ""))
    else:
        parts.append("no sleep recorded")
    if f.moods:
        parts.append(f"mood: {plural(f.moods, 'day')}, mean {num(f.mean_mood)}/10")
    if f.doses:
        parts.append("medicines taken: " + ", ".join(f"{name} ×{n}" for name, n in f.doses.items()))
    kept = []
    if f.backdated:
        kept.append(f"{f.backdated} written a day or more later")
    if f.edited:
        kept.append(f"{plural(f.edited, 'entry', 'entries')} edited")
    if f.deleted:
        kept.append(f"{f.deleted} deleted")
    if kept:
        parts.append("diary entries: " + ", ".join(kept))
    return "; ".join(parts)


def answer_lines(
    s: PatientSummary, notes: int = 0, diary: DiaryFigures | None = None
) -> list[Line]:
    """The answer the report leads with: last use, adherence, the headline series' baseline,
    its time points (weeks 4, 8, 12) and the latest week, the responder verdict, the other
    series, the per-session change, PEG and PGIC, and what else the patient logged."""
    lines = [use_line(s), adherence_line(s)]
    o = s.primary
    if o is None:
        reason = s.reason or RULES["no_data"]
        lines.append(Line("Pain", reason))
        if diary is not None and not diary.empty:
            lines.append(Line("Sleep, mood", diary_text(diary)))
        return lines
    lines.append(baseline_line(o))
    lines.extend(time_point_line(t) for t in o.time_points)
    if o.latest is not None and o.latest.week not in {t.week for t in o.time_points}:
        lines.append(time_point_line(o.latest))
    end = o.endpoint
    lines.append(
        Line(
            "Responder",
            f"{o.label}, {responder_text(o)}",
            "ok" if end is not None and end.responder_30 else "info",
        )
    )
    others = [x for x in s.outcomes if not x.headline and x.rated_days]
    if others:
        lines.append(Line("Other pain", "; ".join(outcome_summary(x) for x in others)))
    change = next((c for c in s.session_change if (c.pain, c.posture) == (o.pain, o.posture)), None)
    if change is not None:
        lines.append(Line("Each session", change_text(change)))
    lines.append(Line("PEG, PGIC", f"{peg_text(s)}; {pgic_text(s)}"))
    lines.append(Line("Diary, notes", logbook_text(s, notes)))
    if diary is not None and not diary.empty:
        lines.append(Line("Sleep, mood", diary_text(diary)))
    return lines


def warning_lines(s: PatientSummary, limit: int = 6) -> list[Line]:
    """Warnings, most serious first: adverse events, stopped use, other treatments beside the
    headline endpoint, a low baseline, tolerance, faults, rejections, skipped ratings. At most
    ``limit`` lines (the last one says how many more)."""
    out: list[Line] = []
    if s.adverse_events:
        kinds = ", ".join(
            f"{a.kind.replace('_', ' ')}{f' ({a.severity})' if a.severity else ''} "
            f"on {day_text(a.day)}"
            for a in s.adverse_events[-3:]
        )
        more = len(s.adverse_events) - 3
        extra = f" and {more} earlier" if more > 0 else ""
        n = len(s.adverse_events)
        out.append(Line("Adverse events", f"{n} recorded: {kinds}{extra}", "warn"))
    if s.days_since_session is not None and s.days_since_session >= STOPPED_DAYS:
        out.append(
            Line(
                "Stopped?",
                f"no session for {s.days_since_session} days (last {day_text(s.last_session_day)})",
                "warn",
            )
        )
    o = s.primary
    if o is not None:
        tp = o.endpoint or o.latest
        if tp is not None and tp.concurrent:
            out.append(Line("Other treatment", concurrent_text(tp).removeprefix("⚠ "), "warn"))
        if o.baseline.low:
            out.append(
                Line(
                    "Low baseline",
                    f"{o.label} {o.baseline.mean:.1f}/10 (below 4): read changes in points",
                    "warn",
                )
            )
    t = s.tolerance
    if t.flagged and t.flagged_windows:
        w = t.flagged_windows[-1]
        state = "current" if t.current else "earlier"
        out.append(
            Line(
                "Tolerance",
                f"{state} pattern: mean amplitude {w.amplitude_prev:.1f} → "
                f"{w.amplitude_last:.1f} mA ({signed(w.rise_pct, 0)} %) while relief fell "
                f"{w.relief_prev:.1f} → {w.relief_last:.1f} points "
                f"({span_text(w.start, w.end)}); consider mixed or alternating frequency",
                "warn",
            )
        )
    if s.faults:
        out.append(Line("Faults", counts_text(s.faults), "warn"))
    if s.rejections:
        out.append(Line("Refused requests", counts_text(s.rejections), "info"))
    if s.ratings_missing:
        out.append(
            Line(
                "Skipped ratings",
                f"{s.ratings_missing} of {s.ratings} (left out of every mean, never counted as 0)",
                "info",
            )
        )
    if len(out) > limit:
        rest = len(out) - limit + 1
        out = [*out[: limit - 1], Line("More", f"{rest} more warnings in the JSON export")]
    return out


def endpoint_status(o: PainOutcome | None) -> str:
    """The headline endpoint for a patient list: ``week 4: −50 % (30 %, 50 %, 2 points)``,
    ``week 12: non-responder (no ratings)``, ``week 4 due 29 Mar``."""
    if o is None:
        return "pain: no data"
    tp = o.endpoint
    if tp is None:
        first = next(iter(o.time_points), None)
        return (
            "no session yet" if first is None else f"week {first.week} due {short_day(first.end)}"
        )
    if tp.status == "missing":
        return f"week {tp.week}: non-responder ({tp.rated_days} of 7 days rated)"
    if tp.status == "no_baseline":
        return f"week {tp.week}: non-responder (no baseline)"
    hits = [
        name
        for name, hit in (
            ("≥ 30 %", tp.responder_30),
            ("≥ 50 %", tp.responder_50),
            ("≥ 2 points", tp.responder_points),
        )
        if hit
    ]
    change = (
        f"{signed(tp.pct_change, 0)} %"
        if tp.pct_change is not None
        else f"{signed(tp.change_points or 0)} points"
    )
    return f"week {tp.week}: {change} ({', '.join(hits) if hits else 'non-responder'})"


def status_line(s: PatientSummary) -> str:
    """One line for a patient list: last use, adherence, the headline endpoint, warnings."""
    parts = [s.pseudonym]
    if s.last_session_day is None:
        parts.append("no session yet")
    else:
        parts.append(
            f"last session {short_day(s.last_session_day)} ({ago_text(s.days_since_session)})"
        )
    a = s.adherence
    parts.append(f"adherence {pct(a.sessions_pct)}" if a.available else "adherence –")
    parts.append(endpoint_status(s.primary))
    flags = []
    o = s.primary
    if s.days_since_session is not None and s.days_since_session >= STOPPED_DAYS:
        flags.append("stopped?")
    if o is not None and o.baseline.low and o.baseline.mean is not None:
        flags.append(f"low baseline {o.baseline.mean:.1f}")
    tp = None if o is None else (o.endpoint or o.latest)
    if tp is not None and tp.concurrent:
        flags.append("other treatment: " + ", ".join(treatment_text(t) for t in tp.concurrent))
    if s.adverse_events:
        flags.append(plural(len(s.adverse_events), "adverse event"))
    if s.tolerance.current:
        flags.append("tolerance")
    if s.faults:
        flags.append(plural(s.fault_count, "fault"))
    if flags:
        parts.append("⚠ " + ", ".join(flags))
    return " · ".join(parts)
