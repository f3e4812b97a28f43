"""The figures in words: the report's answer lines, its warnings, and one-line patient status.

Shared by the HTML/PDF report and the clinician UI, so both say the same thing the same way.
Numbers use a real minus sign (−) and a space before %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tens_control.review.analytics import (
    BAND_LABELS,
    PainOutcome,
    PatientSummary,
    SessionChange,
)
from tens_control.review.model import series_label

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
    if a.year == b.year and a.month == b.month:
        return f"{a.day}–{b.day} {b:%b %Y}"
    if a.year == b.year:
        return f"{a.day} {a:%b} – {b.day} {b:%b %Y}"
    return f"{day_text(a)} – {day_text(b)}"


def end_reason_text(reason: str | None) -> str:
    if reason is None:
        return "not ended"
    return END_REASON_LABELS.get(reason, reason.replace("_", " "))


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the answer: a label and its text; ``level`` ok/info/warn for styling."""

    label: str
    text: str
    level: str = "info"


def adherence_line(s: PatientSummary) -> Line:
    a = s.adherence
    if not a.available or a.sessions_pct is None:
        return Line("Adherence", a.reason or "not enough data", "info")
    per_day = f"{a.sessions_per_day:.1f}" if a.sessions_per_day is not None else "–"
    mins = f"{a.minutes_per_day:.0f}" if a.minutes_per_day is not None else "–"
    text = (
        f"{pct(a.sessions_pct)} of prescribed sessions ({a.sessions_done} of "
        f"{a.sessions_prescribed} over {a.days} days; {per_day} a day), "
        f"{pct(a.minutes_pct)} of prescribed minutes ({mins} min a day); "
        f"{a.days_without_session} day{'s' if a.days_without_session != 1 else ''} "
        "without a session"
    )
    level = "ok" if a.sessions_pct >= 80 else "warn"
    return Line("Adherence", text, level)


def outcome_text(o: PainOutcome) -> str:
    """``7.3 → 3.7 (−3.6 points, −49 %), baseline week 2–8 Mar 2026 vs week 5 (...)``."""
    if not o.available:
        if o.baseline_mean is not None and o.latest_mean is not None:
            return (
                f"{num(o.baseline_mean)} → {num(o.latest_mean)} "
                f"({signed(o.change_points or 0)} points); {o.reason}"
            )
        return o.reason or "not enough data"
    week = next(w for w in o.weeks if w.index == o.latest_week)
    base = o.weeks[0]
    return (
        f"{num(o.baseline_mean)} → {num(o.latest_mean)} "
        f"({signed(o.change_points or 0)} points, {signed(o.pct_change or 0, 0)} %): "
        f"baseline week {span_text(base.start, base.end)} vs week {week.index} "
        f"{span_text(week.start, week.end)}"
    )


def responder_text(o: PainOutcome) -> str:
    if not o.available or o.band is None:
        return o.reason or "not enough data"
    r30 = "yes" if o.responder_30 else "no"
    r50 = "yes" if o.responder_50 else "no"
    return f"30 % responder: {r30}; 50 % responder: {r50}; IMMPACT band: {BAND_LABELS[o.band]}"


def change_text(c: SessionChange) -> str:
    if not c.available or c.mean_change is None:
        return c.reason or "not enough data"
    text = (
        f"{signed(c.mean_change)} points from before to after a session on average "
        f"({c.sessions} sessions rated both)"
    )
    if c.mean_change_30 is not None:
        text += f"; {signed(c.mean_change_30)} at +30 min ({c.sessions_30})"
    return text


def answer_lines(s: PatientSummary) -> list[Line]:
    """The answer the report leads with: adherence, pain change, responder status, per-session
    change."""
    lines = [adherence_line(s)]
    o = s.primary
    if o is None:
        reason = s.reason or "not enough data: no before-session or diary ratings"
        lines.append(Line("Pain change", reason))
        lines.append(Line("Responder", reason))
    else:
        label = series_label((o.pain, o.posture))
        good = o.available and bool(o.responder_30)
        lines.append(Line("Pain change", f"{label}: {outcome_text(o)}", "ok" if good else "info"))
        lines.append(Line("Responder", responder_text(o), "ok" if good else "info"))
        change = next(
            (c for c in s.session_change if (c.pain, c.posture) == (o.pain, o.posture)), None
        )
        if change is not None:
            lines.append(Line("Each session", change_text(change)))
    return lines


def warning_lines(s: PatientSummary, limit: int = 6) -> list[Line]:
    """Warnings, most serious first: adverse events, tolerance, faults, rejections, skipped
    ratings. At most ``limit`` lines (the last one says how many more)."""
    out: list[Line] = []
    if s.adverse_events:
        kinds = ", ".join(
            f"{a.kind.replace('_', ' ')}{f' ({a.severity})' if a.severity else ''} "
            f"on {day_text(a.at.date())}"
            for a in s.adverse_events[-3:]
        )
        more = len(s.adverse_events) - 3
        extra = f" and {more} earlier" if more > 0 else ""
        n = len(s.adverse_events)
        out.append(
            Line("Adverse events", f"{n} recorded: {kinds}{extra}", "warn"),
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


def status_line(s: PatientSummary) -> str:
    """One line for a patient list: adherence, pain change, responder, warnings."""
    parts = [s.pseudonym]
    a = s.adherence
    parts.append(f"adherence {pct(a.sessions_pct)}" if a.available else "adherence –")
    o = s.primary
    if o is not None and o.available and o.pct_change is not None:
        resp = "50 % responder" if o.responder_50 else "30 % responder" if o.responder_30 else ""
        parts.append(f"pain {signed(o.pct_change, 0)} % ({o.band}{', ' + resp if resp else ''})")
    else:
        parts.append("pain: not enough data")
    flags = []
    if s.adverse_events:
        flags.append(
            f"{len(s.adverse_events)} adverse event{'s' if len(s.adverse_events) > 1 else ''}"
        )
    if s.tolerance.current:
        flags.append("tolerance")
    if s.faults:
        flags.append(f"{s.fault_count} fault{'s' if s.fault_count > 1 else ''}")
    if flags:
        parts.append("⚠ " + ", ".join(flags))
    return " · ".join(parts)
