"""The clinician report: a summary readable in a minute, as HTML or PDF (at most two A4 pages),
and the dispatch to the other formats (CSV, JSON, FHIR).

Page 1 leads with the answer: when the patient last used TENS, adherence, the headline series'
baseline, its time points (weeks 4, 8, 12: intention to treat, responders in percent and in
points, other treatments in the comparison window beside the figure), the other pain series,
the per-session change, PEG and PGIC and what else the patient logged; then the warnings and
the pain charts. Page 2 has the amplitude trend, the treatments timeline, every pain series in
a table, the diary (pain episodes, session notes, PEG, PGIC, other treatments, adverse events)
and the latest sessions. All four charts share one date axis (the same days, the same left and
right edges). The HTML is self-contained (inline CSS and SVG charts); the PDF draws the same SVG
charts as vector graphics (fpdf2), full width, and is laid out on fixed coordinates, so it never
runs past two pages.
"""

from __future__ import annotations

import html
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter

from tens_control import __version__
from tens_control.diary import REGION_SHORT
from tens_control.errors import TensControlError
from tens_control.review import charts as charts_mod
from tens_control.review.analytics import (
    BACKDATED_AFTER,
    NoteItem,
    PainOutcome,
    PatientSummary,
    TimePoint,
    Zone,
    aggregate,
    diary_figures,
    local_day,
    per_session_changes,
    report_json,
    session_notes,
    summarize,
)
from tens_control.review.comparison import ComparisonResult, compare_data, comparison_line
from tens_control.review.comparison_chart import comparison_chart
from tens_control.review.model import PAIN_LABELS, PatientData, SeriesKey, series_label
from tens_control.review.wording import (
    Line,
    answer_lines,
    day_text,
    duration_text,
    end_reason_text,
    num,
    plural,
    signed,
    span_text,
    warning_lines,
)

if TYPE_CHECKING:
    from fpdf import FPDF

Format = Literal["html", "pdf", "csv", "json", "fhir"]
FORMATS: tuple[Format, ...] = ("html", "pdf", "csv", "json", "fhir")
COMPARISON_ADAPTER: TypeAdapter[ComparisonResult] = TypeAdapter(ComparisonResult)
MAX_SESSION_ROWS = 22
"""The session table shows at most this many of the latest sessions (all are in the CSV)."""
MAX_DIARY_ROWS = 30
"""The diary table shows at most this many of the latest entries (all are in CSV and FHIR)."""


class ReportError(TensControlError):
    """The report cannot be written (the output exists, or the folder is not writable)."""


@dataclass(frozen=True, slots=True)
class SessionLine:
    """One row of the compact session table."""

    day: str
    start: str
    program: str
    minutes: str
    end: str
    amplitude: str
    before: str
    after: str
    notes: str


@dataclass(frozen=True, slots=True)
class SeriesLine:
    """One row of the table of pain series."""

    series: str
    baseline: str
    week4: str
    week8: str
    week12: str
    per_session: str


@dataclass(frozen=True, slots=True)
class DiaryLine:
    """One row of the diary table (pain episodes, notes, PEG, PGIC, treatments, adverse
    events), in time order."""

    day: str
    what: str
    detail: str


def point_cell(tp: TimePoint | None) -> str:
    """A time point in a table cell: ``3.5, −50 %: 30/50/2pt`` (the responder thresholds it
    meets), ``non-resp.: 2 d rated``, ``due``; ``⚠`` when another treatment may explain it."""
    if tp is None:
        return "–"
    if tp.status == "due":
        return "due"
    flag = " ⚠" if tp.concurrent else ""
    if tp.status == "missing":
        return f"non-resp.: {tp.rated_days} d rated{flag}"
    if tp.status == "no_baseline":
        return f"non-resp.: no baseline{flag}"
    change = (
        f"{signed(tp.pct_change, 0)} %"
        if tp.pct_change is not None
        else f"{signed(tp.change_points or 0)} pt"
    )
    thresholds = (("30", tp.responder_30), ("50", tp.responder_50), ("2pt", tp.responder_points))
    hits = "/".join(n for n, hit in thresholds if hit)
    return f"{num(tp.mean)}, {change}: {hits or 'no'}{flag}"


def baseline_cell(o: PainOutcome) -> str:
    b = o.baseline
    if b.mean is None:
        return "none"
    kind = "run-in" if b.kind == "run_in" else "1st wk"
    return f"{b.mean:.1f} {kind}{' ⚠ low' if b.low else ''}"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a rendered report shows, computed once."""

    data: PatientData
    summary: PatientSummary
    tz: Zone
    generated: datetime
    notes: tuple[NoteItem, ...] = ()
    comparison: ComparisonResult | None = None
    """The N-of-1 program comparison the prescription set up, if any."""

    @property
    def title(self) -> str:
        return f"TENS review — {self.summary.pseudonym}"

    def context_line(self) -> str:
        s = self.summary
        parts = [
            f"Period {span_text(s.period_start, s.period_end)} (made {day_text(s.today)})",
            f"{plural(s.sessions, 'session')}, {duration_text(s.stim_minutes)} of stimulation",
        ]
        rx = prescription_text(self.data)
        if rx:
            parts.append(rx)
        devs = device_text(self.data)
        if devs:
            parts.append(devs)
        return " · ".join(parts)

    def footer_line(self) -> str:
        stamp = self.generated.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
        return (
            f"tens-control {__version__} · generated {stamp} · rules of every figure: "
            "docs/review.md · every session and rating: CSV or FHIR export"
        )

    def answers(self) -> list[Line]:
        s = self.summary
        figures = diary_figures(self.data, self.tz, s.period_start, s.period_end)
        lines = answer_lines(s, notes=len(self.notes), diary=figures)
        if self.comparison is not None:
            lines.append(comparison_line(self.comparison))
        return lines

    def warnings(self) -> list[Line]:
        return warning_lines(self.summary)

    def series_lines(self) -> list[SeriesLine]:
        s = self.summary
        changes = {(c.pain, c.posture): c for c in s.session_change}
        rows: list[SeriesLine] = []
        for o in s.outcomes:
            key: SeriesKey = (o.pain, o.posture)
            c = changes.get(key)
            per = "–"
            if c is not None and c.available and c.mean_change is not None:
                per = f"{signed(c.mean_change)} (n={c.sessions})"
            elif c is not None:
                per = f"n={c.sessions}: too few"
            rows.append(
                SeriesLine(
                    series=f"{PAIN_SHORT[o.pain]}, {o.posture}" + (" *" if o.headline else ""),
                    baseline=baseline_cell(o),
                    week4=point_cell(o.time_point(4)),
                    week8=point_cell(o.time_point(8)),
                    week12=point_cell(o.time_point(12)),
                    per_session=per,
                )
            )
        return rows

    def diary_lines(self, limit: int = MAX_DIARY_ROWS) -> tuple[list[DiaryLine], int]:
        """The latest ``limit`` diary entries (oldest first) and how many are left out."""
        return diary_rows(self.summary, self.notes, self.tz, limit, data=self.data)

    def session_lines(self, limit: int = MAX_SESSION_ROWS) -> tuple[list[SessionLine], int]:
        """The latest ``limit`` sessions in the period (oldest first), and how many are left
        out."""
        s = self.summary
        tz = self.tz
        lo, hi = s.period_start or date.min, s.period_end or date.max
        inside = [x for x in self.data.sessions if lo <= local_day(x.start, tz) <= hi]
        inside.sort(key=lambda x: x.start)
        shown = inside[-limit:] if limit > 0 else []
        key = (s.primary.pain, s.primary.posture) if s.primary is not None else None
        pairs = per_session_changes(self.data, key) if key is not None else {}
        faults: dict[str, Counter[str]] = {}
        for e in self.data.events:
            if e.session_id is not None:
                faults.setdefault(e.session_id, Counter())[e.code.lower()] += 1
        adverse = {a.session_id for a in self.data.adverse_events if a.session_id}
        written: dict[str, list[str]] = {}
        for n in self.notes:
            if n.session_id is not None:
                written.setdefault(n.session_id, []).append(f"“{n.text}”")
        lines = []
        for x in shown:
            local = x.start.astimezone(tz) if x.start.tzinfo else x.start
            before, after = pairs.get(x.id, (None, None))
            notes = [
                f"{code}{f' ×{n}' if n > 1 else ''}"
                for code, n in sorted(faults.get(x.id, Counter()).items())
            ]
            if x.id in adverse:
                notes.insert(0, "adverse event")
            if x.id in self.data.damaged_sessions:
                notes.insert(0, DAMAGED_MARK)
            notes += written.get(x.id, [])
            lines.append(
                SessionLine(
                    day=f"{local:%a} {local.day} {local:%b}",
                    start=f"{local:%H:%M}",
                    program=x.program or "–",
                    minutes=f"{x.stim_minutes:.0f}",
                    end=end_reason_text(x.end_reason),
                    amplitude=num(x.mean_amplitude_ma),
                    before="–" if before is None else str(before),
                    after="–" if after is None else str(after),
                    notes=", ".join(notes),
                )
            )
        return lines, len(inside) - len(shown)


def diary_rows(
    s: PatientSummary,
    notes: Sequence[NoteItem],
    tz: Zone,
    limit: int = MAX_DIARY_ROWS,
    *,
    data: PatientData | None = None,
) -> tuple[list[DiaryLine], int]:
    """What else the patient logged, in time order: pain episodes (with the body map), session
    notes, PEG, PGIC, other treatments and adverse events, and from ``data`` sleep, mood, doses
    taken and every edit or deletion of a diary entry; the latest ``limit`` (oldest first) and
    how many are left out. A diary entry written a day or more after it happened says when it
    was written."""
    rows: list[tuple[datetime, DiaryLine]] = []

    def day(moment: datetime) -> str:
        return day_text(local_day(moment, tz))

    def inside(moment: datetime) -> bool:
        d = local_day(moment, tz)
        return (s.period_start is None or d >= s.period_start) and (
            s.period_end is None or d <= s.period_end
        )

    def kept(at: datetime, written: datetime | None, edited: bool) -> str:
        marks = []
        if written is not None and written - at > BACKDATED_AFTER:
            marks.append(f"written {day(written)}")
        if edited:
            marks.append("edited")
        return f" ({', '.join(marks)})" if marks else ""

    episodes = {(e.start, e.pain): e for e in data.episodes} if data is not None else {}
    for e in s.episodes:
        how = "–" if e.nrs is None else f"{e.nrs}/10"
        long = "" if e.minutes is None else f", {duration_text(e.minutes)}"
        note = f": {e.note}" if e.note else ""
        row = episodes.get((e.start, e.pain))
        where = ""
        mark = ""
        if row is not None:
            if row.regions:
                where = " at " + ", ".join(REGION_SHORT.get(r, r) for r in row.regions)
            mark = kept(row.start, row.written, row.edited)
        detail = f"{PAIN_LABELS[e.pain]}{where}, worst {how}{long}{note}{mark}"
        rows.append((e.start, DiaryLine(day(e.start), "pain episode", detail)))
    if data is not None:
        for d in data.diary:
            if not inside(d.at):
                continue
            what = {"sleep": "sleep", "mood": "mood", "medication_taken": "medicine taken"}[d.kind]
            if d.kind == "sleep":
                got = []
                if d.sleep_hours is not None:
                    got.append(f"{d.sleep_hours:g} h")
                if d.sleep_quality is not None:
                    got.append(f"slept {d.sleep_quality}/10")
                detail = ", ".join(got)
            elif d.kind == "mood":
                detail = f"{d.mood}/10"
            else:
                local = d.at.astimezone(tz)
                detail = " ".join(p for p in (d.medication, d.dose) if p) + f" at {local:%H:%M}"
            note = f": {d.note}" if d.note else ""
            rows.append(
                (d.at, DiaryLine(day(d.at), what, detail + note + kept(d.at, d.written, d.edited)))
            )
        for c in data.diary_changes:
            if not inside(c.at):
                continue
            why = f" (why: {c.reason})" if c.reason else ""
            detail = f"was {c.was}" + (f"; now {c.now}" if c.now else "") + why
            rows.append((c.at, DiaryLine(day(c.at), f"diary entry {c.change}", detail)))
    for n in notes:
        rows.append((n.at, DiaryLine(day(n.at), "session note", n.text)))
    for g in s.peg.items:
        items = f"pain {num(g.pain, 0)}, enjoyment {num(g.enjoyment, 0)}, "
        items += f"activity {num(g.activity, 0)}"
        rows.append((g.at, DiaryLine(day(g.at), "PEG", f"{num(g.score)} ({items})")))
    for p in s.pgic.items:
        value = "" if p.value is None else f" ({p.value} of 7)"
        rows.append((p.at, DiaryLine(day(p.at), "PGIC", f"{p.label}{value}")))
    for t in s.treatments:
        when = span_text(t.start, t.end) if t.end and t.end != t.start else day_text(t.start)
        moment = datetime.combine(t.start, datetime.min.time(), tzinfo=UTC)
        rows.append((moment, DiaryLine(when, t.kind.replace("_", " "), t.description)))
    for a in s.adverse_events:
        sev = f" ({a.severity})" if a.severity else ""
        detail = a.kind.replace("_", " ") + (f": {a.note}" if a.note else "")
        rows.append((a.at, DiaryLine(day(a.at), f"adverse event{sev}", detail)))
    rows.sort(key=lambda t: t[0])
    shown = [line for _at, line in rows[-limit:]] if limit > 0 else []
    return shown, len(rows) - len(shown)


def prescription_text(data: PatientData) -> str:
    if not data.prescriptions:
        return "no prescription on record"
    p = max(data.prescriptions, key=lambda p: p.valid_from)
    text = f"prescribed {p.sessions_per_day} × {p.session_minutes:.0f} min a day"
    if p.minutes_per_day is not None:
        text += f" (≤ {p.minutes_per_day:.0f} min a day)"
    text += f"; run-in {plural(p.run_in_days, 'day')}" if p.run_in_days else "; no run-in"
    return text


def device_text(data: PatientData) -> str:
    parts = []
    for d in data.devices:
        sim = " (simulator)" if d.simulated else ""
        parts.append(f"{d.model} {d.serial} fw {d.firmware}{sim}")
    return "; ".join(parts)


def build_report(
    data: PatientData,
    tz: Zone = None,
    generated: datetime | None = None,
    primary: SeriesKey | None = None,
) -> Report:
    """Summarise ``data`` for a report (``generated`` defaults to now)."""
    zone = tz
    summary = summarize(aggregate(data, zone), primary=primary)
    return Report(
        data=data,
        summary=summary,
        tz=zone,
        generated=generated if generated is not None else datetime.now(UTC),
        notes=session_notes(data, zone),
        comparison=compare_data(data, zone),
    )


# --- HTML -------------------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1f2933;
       font-size: 9.5pt; line-height: 1.35; margin: 0 auto; max-width: 186mm; }
h1 { font-size: 15pt; margin: 0 0 2pt; }
h2 { font-size: 10.5pt; margin: 8pt 0 3pt; border-bottom: 1px solid #cfd5db; }
.context, .footer { color: #52606d; font-size: 8pt; }
.footer { margin-top: 6pt; }
dl.answer { display: grid; grid-template-columns: 34mm 1fr; gap: 2pt 6pt; margin: 0; }
dl.answer dt { font-weight: bold; }
dl.answer dd { margin: 0; }
dd.ok::before { content: "✓ "; }
dd.warn::before { content: "⚠ "; font-weight: bold; }
dl.warnings dt { color: #8a4b00; }
p.damaged { color: #a00000; font-weight: bold; border: 2px solid #a00000; padding: 4px; }
figure { margin: 4pt 0; }
figure svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 7.5pt; }
th, td { text-align: left; padding: 1pt 4pt; border-bottom: 1px solid #e5e8eb; }
th { background: #f1f3f5; }
td.num, th.num { text-align: right; }
.page2 { break-before: page; page-break-before: always; }
.muted { color: #52606d; }
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _dl(lines: Sequence[Line], cls: str) -> str:
    items = "".join(
        f'<dt>{_e(x.label)}</dt><dd class="{_e(x.level)}">{_e(x.text)}</dd>' for x in lines
    )
    return f'<dl class="answer {cls}">{items}</dl>'


DAMAGED_MARK = "DAMAGED LOG"
"""The note on a session whose figures come from the damaged range of a log (``integrity``)."""


def _table_html(cls: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, charts as inline SVG)."""
    charts = charts_mod.build_charts(report.data, report.summary, report.tz)
    svg = {name: chart.svg() for name, chart in charts.items()}
    warnings = report.warnings()
    series = report.series_lines()
    diary, earlier = report.diary_lines()
    rows, hidden = report.session_lines()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(report.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        *([f'<p class="damaged">{_e(report.data.integrity)}</p>'] if report.data.integrity else []),
        '<section class="page1">',
        f"<h1>{_e(report.title)}</h1>",
        f'<p class="context">{_e(report.context_line())}</p>',
        "<h2>The answer</h2>",
        _dl(report.answers(), "main"),
        "<h2>Warnings</h2>",
        _dl(warnings, "warnings") if warnings else '<p class="muted">None.</p>',
        f'<figure id="chart-pain" class="chart">{svg["pain"]}</figure>',
        f'<figure id="chart-weekly" class="chart">{svg["weekly"]}</figure>',
        "</section>",
        '<section class="page2">',
        *(
            [f'<figure id="chart-comparison" class="chart">{comparison_chart(c).svg()}</figure>']
            if (c := report.comparison) is not None
            else []
        ),
        f'<figure id="chart-amplitude" class="chart">{svg["amplitude"]}</figure>',
        f'<figure id="chart-timeline" class="chart">{svg["timeline"]}</figure>',
        "<h2>Pain series</h2>",
        _series_table_html(series),
        "<h2>Diary, notes, PEG and PGIC</h2>",
        _diary_table_html(diary, earlier),
        "<h2>Latest sessions</h2>",
        _session_table_html(rows, hidden, report),
        f'<p class="footer">{_e(report.footer_line())}</p>',
        "</section></body></html>",
    ]
    return "\n".join(parts)


SERIES_HEADERS = ("Pain (* headline)", "Baseline", "Week 4", "Week 8", "Week 12", "Per session")
SERIES_WIDTHS = (33.0, 21.0, 35.0, 35.0, 35.0, 27.0)
PAIN_SHORT = {"phantom": "phantom", "residual_limb": "residual limb", "other": "other"}
DIARY_HEADERS = ("Day", "What", "Detail")
DIARY_WIDTHS = (24.0, 40.0, 122.0)
SESSION_HEADERS = ("Day", "Start", "Program", "Min", "Ended", "mA", "Before", "After", "Notes")
SESSION_WIDTHS = (20.0, 11.0, 26.0, 9.0, 30.0, 11.0, 12.0, 11.0, 56.0)


def _series_rows(rows: Sequence[SeriesLine]) -> list[list[str]]:
    return [[r.series, r.baseline, r.week4, r.week8, r.week12, r.per_session] for r in rows]


def _series_table_html(rows: Sequence[SeriesLine]) -> str:
    if not rows:
        return '<p class="muted">No pain ratings in this period.</p>'
    return _table_html("series", SERIES_HEADERS, _series_rows(rows))


def _diary_table_html(rows: Sequence[DiaryLine], earlier: int) -> str:
    if not rows:
        return '<p class="muted">Nothing in the diary in this period.</p>'
    note = (
        f'<p class="muted">{earlier} earlier entries are in the CSV and FHIR exports.</p>'
        if earlier
        else ""
    )
    return _table_html("diary", DIARY_HEADERS, [[r.day, r.what, r.detail] for r in rows]) + note


def _session_table_html(rows: Sequence[SessionLine], hidden: int, report: Report) -> str:
    if not rows:
        return '<p class="muted">No sessions in this period.</p>'
    o = report.summary.primary
    which = f" ({series_label((o.pain, o.posture))})" if o is not None else ""
    head = (
        "<tr><th>Day</th><th>Start</th><th>Program</th><th class='num'>Min</th>"
        "<th>Ended</th><th class='num'>mA</th>"
        f"<th class='num'>Before{_e(which)}</th><th class='num'>After</th><th>Notes</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r.day)}</td><td>{_e(r.start)}</td><td>{_e(r.program)}</td>"
        f"<td class='num'>{_e(r.minutes)}</td><td>{_e(r.end)}</td>"
        f"<td class='num'>{_e(r.amplitude)}</td><td class='num'>{_e(r.before)}</td>"
        f"<td class='num'>{_e(r.after)}</td><td>{_e(r.notes)}</td></tr>"
        for r in rows
    )
    note = (
        f'<p class="muted">{hidden} earlier sessions are in the CSV and FHIR exports.</p>'
        if hidden
        else ""
    )
    return f"<table class='sessions'>{head}{body}</table>{note}"


# --- PDF --------------------------------------------------------------------------------------

PAGE_W, PAGE_H, MARGIN = 210.0, 297.0, 12.0
BODY_W = PAGE_W - 2 * MARGIN
BOTTOM = PAGE_H - MARGIN - 6.0  # leaves room for the footer line
FONT = "DejaVu Sans"
"""The PDF's font family; the charts' SVG names it first (charts.FONT_FAMILY)."""
ROW_H = 3.9
HEAD_H = 4.2
MIN_CHART_PT = {"pain": 120.0, "weekly": 96.0}
"""The least height (points) of the page-1 charts when the answer is long."""


FONT_DIR = Path(__file__).resolve().parent / "fonts"
"""DejaVu Sans and DejaVu Sans Bold 2.35 (free licence: fonts/LICENSE), shipped with the package
so that the PDF has ⚠, ✓, ≥ and every other character of the report whatever is installed."""


def _fonts(pdf: FPDF) -> None:
    pdf.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))


class _Pdf:
    """A two-page layout on fixed coordinates (automatic page breaks off)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        from fpdf import FPDF  # here: an HTML report does not load fpdf2 (0.3 s of imports)

        pdf = FPDF(orientation="portrait", unit="mm", format="A4")
        pdf.set_auto_page_break(False)
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_creation_date(report.generated)
        pdf.set_title(report.title)
        pdf.set_creator(f"tens-control {__version__}")
        _fonts(pdf)
        self.pdf = pdf

    def page(self) -> None:
        self.pdf.add_page()
        self.pdf.set_xy(MARGIN, MARGIN)
        self.pdf.set_font(FONT, "", 7)
        self.pdf.set_text_color(82, 96, 109)
        self.pdf.text(MARGIN, PAGE_H - MARGIN + 2, self.report.footer_line())
        self.pdf.text(PAGE_W - MARGIN - 10, PAGE_H - MARGIN + 2, f"page {self.pdf.page_no()} of 2")
        self.pdf.set_text_color(31, 41, 51)

    def heading(self, text: str) -> None:
        pdf = self.pdf
        pdf.set_y(pdf.get_y() + 1.5)
        pdf.set_font(FONT, "B", 10)
        pdf.cell(BODY_W, 5.5, text, new_x="LMARGIN", new_y="NEXT")
        pdf.set_draw_color(207, 213, 219)
        pdf.line(MARGIN, pdf.get_y(), PAGE_W - MARGIN, pdf.get_y())
        pdf.set_y(pdf.get_y() + 1)

    def lines(self, items: Sequence[Line], label_w: float = 30.0, size: float = 8.0) -> None:
        pdf = self.pdf
        lh = size * 0.48
        for x in items:
            y = pdf.get_y()
            mark = "⚠ " if x.level == "warn" else "✓ " if x.level == "ok" else ""
            pdf.set_font(FONT, "B", size)
            n_label = self.count_lines(label_w - 2, lh, x.label)
            if x.level == "warn":
                pdf.set_text_color(138, 75, 0)
            pdf.set_xy(MARGIN, y)
            pdf.multi_cell(label_w - 2, lh, x.label, align="L")
            pdf.set_text_color(31, 41, 51)
            pdf.set_font(FONT, "", size)
            text = mark + x.text
            n_text = self.count_lines(BODY_W - label_w, lh, text)
            pdf.set_xy(MARGIN + label_w, y)
            pdf.multi_cell(BODY_W - label_w, lh, text, align="L")
            pdf.set_xy(MARGIN, y + max(n_label, n_text) * lh + 0.6)

    def count_lines(self, width: float, height: float, text: str) -> int:
        """How many lines ``text`` takes in a cell ``width`` wide, in the current font."""
        lines = self.pdf.multi_cell(width, height, text, dry_run=True, output="LINES")
        return len(lines) if isinstance(lines, list) else 1

    def chart(self, chart: charts_mod.Chart) -> None:
        """Draw a chart at the full body width (its drawing keeps its proportions)."""
        pdf = self.pdf
        h = chart_height(chart)
        pdf.image(
            io.BytesIO(chart.svg(accessible=False).encode("utf-8")),
            x=MARGIN,
            y=pdf.get_y(),
            w=BODY_W,
            h=h,
            title=chart.title,
            alt_text=chart.description,
        )
        pdf.set_y(pdf.get_y() + h + 1.5)

    def table(self, headers: Sequence[str], widths: Sequence[float], rows: list[list[str]]) -> None:
        pdf = self.pdf
        pdf.set_font(FONT, "B", 7)
        pdf.set_fill_color(241, 243, 245)
        for h, w in zip(headers, widths, strict=True):
            pdf.cell(w, HEAD_H, h, border="B", fill=True)
        pdf.ln(HEAD_H)
        pdf.set_font(FONT, "", 7)
        for row in rows:
            for text, w in zip(row, widths, strict=True):
                pdf.cell(w, ROW_H, _fit(pdf, text, w - 1), border="B")
            pdf.ln(ROW_H)

    def note(self, text: str) -> None:
        self.pdf.set_font(FONT, "", 7)
        self.pdf.cell(BODY_W, 4, text, new_x="LMARGIN", new_y="NEXT")


def _fit(pdf: FPDF, text: str, width: float) -> str:
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def chart_height(chart: charts_mod.Chart) -> float:
    """The height in mm of a chart drawn at the full body width."""
    return BODY_W * chart.height / chart.width


def _points(mm: float) -> float:
    """A height in mm on the page as chart points (charts are drawn at the full body width)."""
    return mm * charts_mod.WIDTH / BODY_W


def render_pdf(report: Report) -> bytes:
    """The report as a PDF of at most two A4 pages."""
    doc = _Pdf(report)
    pdf = doc.pdf

    # page 1: the answer, the warnings, the pain charts (full width, shorter if need be)
    doc.page()
    if report.data.integrity:
        pdf.set_font(FONT, "B", 8)
        pdf.set_text_color(160, 0, 0)
        pdf.multi_cell(BODY_W, 3.8, report.data.integrity, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(31, 41, 51)
    pdf.set_font(FONT, "B", 15)
    pdf.cell(BODY_W, 7, report.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 7.5)
    pdf.set_text_color(82, 96, 109)
    pdf.multi_cell(BODY_W, 3.6, report.context_line(), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(31, 41, 51)
    doc.heading("The answer")
    doc.lines(report.answers())
    doc.heading("Warnings")
    warnings = report.warnings()
    if warnings:
        doc.lines(warnings)
    else:
        pdf.set_font(FONT, "", 8)
        pdf.cell(BODY_W, 4.5, "None.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(pdf.get_y() + 1)
    space = _points(BOTTOM - pdf.get_y() - 3 - 2 * 1.5)
    natural = charts_mod.HEIGHTS["pain"] + charts_mod.HEIGHTS["weekly"]
    scale = min(1.0, space / natural)
    heights = {
        name: max(MIN_CHART_PT[name], charts_mod.HEIGHTS[name] * scale) for name in MIN_CHART_PT
    }
    first = charts_mod.build_charts(
        report.data, report.summary, report.tz, heights, names=("pain", "weekly")
    )
    if pdf.get_y() + chart_height(first["pain"]) + chart_height(first["weekly"]) <= BOTTOM:
        doc.chart(first["pain"])
        doc.chart(first["weekly"])
    else:  # an answer too long for the charts: they are on page 2 of the HTML too
        doc.note("The pain charts did not fit on this page; see the HTML report.")

    # page 2: amplitude, timeline, series table, diary, latest sessions
    doc.page()
    if report.comparison is not None:
        doc.chart(comparison_chart(report.comparison))
    second = charts_mod.build_charts(
        report.data, report.summary, report.tz, names=("amplitude", "timeline")
    )
    doc.chart(second["amplitude"])
    doc.chart(second["timeline"])
    series = report.series_lines()
    doc.heading("Pain series (time points: weeks 4, 8, 12 from the first session)")
    if series:
        doc.table(SERIES_HEADERS, SERIES_WIDTHS, _series_rows(series[:6]))
    else:
        doc.note("No pain ratings in this period.")
    sessions_all, _ = report.session_lines(limit=1)
    room = BOTTOM - pdf.get_y()
    # the diary takes up to half of what is left, the sessions the rest
    diary_rows = int(((room / 2 if sessions_all else room) - 12) // ROW_H)
    diary, earlier = report.diary_lines(limit=max(0, min(MAX_DIARY_ROWS, diary_rows)))
    doc.heading("Diary, notes, PEG and PGIC")
    if diary:
        doc.table(DIARY_HEADERS, DIARY_WIDTHS, [[r.day, r.what, r.detail] for r in diary])
        if earlier:
            doc.note(f"{earlier} earlier entries are in the CSV and FHIR exports.")
    else:
        doc.note("Nothing in the diary in this period.")
    doc.heading("Latest sessions")
    room_rows = int((BOTTOM - pdf.get_y() - HEAD_H - 5) // ROW_H)
    rows, hidden = report.session_lines(limit=max(0, min(MAX_SESSION_ROWS, room_rows)))
    if rows:
        doc.table(
            SESSION_HEADERS,
            SESSION_WIDTHS,
            [
                [
                    r.day,
                    r.start,
                    r.program,
                    r.minutes,
                    r.end,
                    r.amplitude,
                    r.before,
                    r.after,
                    r.notes,
                ]
                for r in rows
            ],
        )
        if hidden:
            doc.note(f"{hidden} earlier sessions are in the CSV and FHIR exports.")
    else:
        doc.note("No sessions in this period.")
    return bytes(pdf.output())


# --- every format -----------------------------------------------------------------------------


def render(
    data: PatientData,
    fmt: Format,
    tz: Zone = None,
    generated: datetime | None = None,
) -> bytes:
    """The report of ``data`` in ``fmt``, as bytes ready to write."""
    if fmt == "csv":
        from tens_control.review.csv_export import csv_text

        return csv_text(data, tz).encode("utf-8")
    if fmt == "fhir":
        from tens_control.review.fhir_export import bundle_json

        if data.integrity:
            raise ReportError(
                f"no FHIR export of a damaged log: {data.integrity}. FHIR goes into other "
                "systems without a person reading a warning; export csv or html, which mark "
                "the damaged figures"
            )

        return bundle_json(data, tz=tz, generated=generated).encode("utf-8")
    report = build_report(data, tz=tz, generated=generated)
    if fmt == "json":
        document = report_json(report.summary, report.notes)
        if not data.integrity and report.comparison is None:
            return document
        marked: dict[str, Any] = {}
        if data.integrity:
            marked = {
                "log_damaged": data.integrity,
                "damaged_sessions": sorted(data.damaged_sessions),
            }
        whole = marked | json.loads(document)
        if report.comparison is not None:
            whole["program_comparison"] = COMPARISON_ADAPTER.dump_python(
                report.comparison, mode="json"
            )
        return json.dumps(whole, ensure_ascii=False, indent=2).encode("utf-8")
    if fmt == "html":
        return render_html(report).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(report)
    raise ReportError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")


def write_output(path: Path, content: bytes, force: bool = False) -> None:
    """Write ``content`` to ``path``; refuse to replace an existing file unless ``force``.

    With ``force`` the file is replaced atomically (written beside it, then renamed)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ReportError(f"cannot write {path}: folder {folder} does not exist")
    try:
        if not force:
            with path.open("xb") as f:
                f.write(content)
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except FileExistsError:
        raise ReportError(
            f"{path} already exists; choose another file name or add --force to replace it"
        ) from None
    except IsADirectoryError:
        raise ReportError(f"{path} is a folder; give a file name with -o") from None
    except PermissionError:
        raise ReportError(
            f"cannot write {path}: permission denied (the folder {folder} is read-only for this "
            "user); choose a writable place with -o"
        ) from None
    except OSError as error:
        raise ReportError(
            f"cannot write {path}: {error.strerror or error}; choose a writable place with -o"
        ) from None
