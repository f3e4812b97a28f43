"""The clinician report: a summary readable in a minute, as HTML or PDF (at most two A4 pages),
and the dispatch to the other formats (CSV, JSON, FHIR).

Page 1 leads with the answer (adherence, pain change, responder status, per-session change) and
the warnings (adverse events, tolerance, faults), then the pain charts. Page 2 has the amplitude
trend, the treatments timeline, every pain series in a table and the latest sessions. The HTML is
self-contained (inline CSS and SVG charts); the PDF draws the same SVG charts as vector graphics
(fpdf2) and is laid out on fixed coordinates, so it never runs past two pages.
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
from typing import TYPE_CHECKING, Literal

from tens_control import __version__
from tens_control.errors import TensControlError
from tens_control.review import charts as charts_mod
from tens_control.review.analytics import (
    PatientSummary,
    Zone,
    aggregate,
    local_day,
    per_session_changes,
    summarize,
    summary_json,
)
from tens_control.review.model import PatientData, SeriesKey, series_label
from tens_control.review.wording import (
    Line,
    answer_lines,
    end_reason_text,
    num,
    signed,
    span_text,
    warning_lines,
)

if TYPE_CHECKING:
    from fpdf import FPDF

Format = Literal["html", "pdf", "csv", "json", "fhir"]
FORMATS: tuple[Format, ...] = ("html", "pdf", "csv", "json", "fhir")
MAX_SESSION_ROWS = 22
"""The session table shows at most this many of the latest sessions (all are in the CSV)."""


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
    latest: str
    change: str
    band: str
    responder: str
    per_session: str


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a rendered report shows, computed once."""

    data: PatientData
    summary: PatientSummary
    tz: Zone
    generated: datetime

    @property
    def title(self) -> str:
        return f"TENS review — {self.summary.pseudonym}"

    def context_line(self) -> str:
        s = self.summary
        parts = [
            f"Period {span_text(s.period_start, s.period_end)}",
            f"{s.sessions} sessions, {s.stim_minutes / 60:.0f} h of stimulation",
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
        return answer_lines(self.summary)

    def warnings(self) -> list[Line]:
        return warning_lines(self.summary)

    def series_lines(self) -> list[SeriesLine]:
        s = self.summary
        rows: list[SeriesLine] = []
        changes = {(c.pain, c.posture): c for c in s.session_change}
        keys: list[SeriesKey] = [(o.pain, o.posture) for o in s.outcomes]
        keys += [k for k in changes if k not in keys]
        outcomes = {(o.pain, o.posture): o for o in s.outcomes}
        for key in keys:
            o = outcomes.get(key)
            c = changes.get(key)
            per = "–"
            if c is not None and c.available and c.mean_change is not None:
                per = f"{signed(c.mean_change)} (n={c.sessions})"
            elif c is not None:
                per = f"n={c.sessions}: too few"
            if o is None:
                rows.append(SeriesLine(series_label(key), "–", "–", "–", "–", "–", per))
                continue
            resp = "–"
            if o.available:
                resp = "≥ 50 %" if o.responder_50 else "≥ 30 %" if o.responder_30 else "no"
            rows.append(
                SeriesLine(
                    series=series_label(key),
                    baseline=num(o.baseline_mean),
                    latest=(
                        f"{num(o.latest_mean)} (wk {o.latest_week})"
                        if o.latest_mean is not None
                        else "–"
                    ),
                    change=(
                        f"{signed(o.pct_change, 0)} %"
                        if o.pct_change is not None
                        else "not enough data"
                    ),
                    band=o.band or "–",
                    responder=resp,
                    per_session=per,
                )
            )
        return rows

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


def prescription_text(data: PatientData) -> str:
    if not data.prescriptions:
        return "no prescription on record"
    p = max(data.prescriptions, key=lambda p: p.valid_from)
    text = f"prescribed {p.sessions_per_day} × {p.session_minutes:.0f} min a day"
    if p.minutes_per_day is not None:
        text += f" (≤ {p.minutes_per_day:.0f} min a day)"
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


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, charts as inline SVG)."""
    charts = charts_mod.build_charts(report.data, report.summary, report.tz)
    svg = {name: chart.svg() for name, chart in charts.items()}
    warnings = report.warnings()
    series = report.series_lines()
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
        f'<figure id="chart-amplitude" class="chart">{svg["amplitude"]}</figure>',
        f'<figure id="chart-timeline" class="chart">{svg["timeline"]}</figure>',
        "<h2>Pain series</h2>",
        _series_table_html(series),
        "<h2>Latest sessions</h2>",
        _session_table_html(rows, hidden, report),
        f'<p class="footer">{_e(report.footer_line())}</p>',
        "</section></body></html>",
    ]
    return "\n".join(parts)


def _series_table_html(rows: Sequence[SeriesLine]) -> str:
    if not rows:
        return '<p class="muted">No pain ratings in this period.</p>'
    head = (
        "<tr><th>Pain</th><th class='num'>Baseline</th><th class='num'>Latest week</th>"
        "<th class='num'>Change</th><th>IMMPACT band</th><th>Responder</th>"
        "<th class='num'>Per session</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r.series)}</td><td class='num'>{_e(r.baseline)}</td>"
        f"<td class='num'>{_e(r.latest)}</td><td class='num'>{_e(r.change)}</td>"
        f"<td>{_e(r.band)}</td><td>{_e(r.responder)}</td>"
        f"<td class='num'>{_e(r.per_session)}</td></tr>"
        for r in rows
    )
    return f"<table class='series'>{head}{body}</table>"


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

    def lines(self, items: Sequence[Line], label_w: float = 34.0) -> None:
        pdf = self.pdf
        lh = 4.2
        for x in items:
            y = pdf.get_y()
            mark = "⚠ " if x.level == "warn" else "✓ " if x.level == "ok" else ""
            pdf.set_font(FONT, "B", 8.5)
            n_label = self.count_lines(label_w - 2, lh, x.label)
            if x.level == "warn":
                pdf.set_text_color(138, 75, 0)
            pdf.set_xy(MARGIN, y)
            pdf.multi_cell(label_w - 2, lh, x.label, align="L")
            pdf.set_text_color(31, 41, 51)
            pdf.set_font(FONT, "", 8.5)
            text = mark + x.text
            n_text = self.count_lines(BODY_W - label_w, lh, text)
            pdf.set_xy(MARGIN + label_w, y)
            pdf.multi_cell(BODY_W - label_w, lh, text, align="L")
            pdf.set_xy(MARGIN, y + max(n_label, n_text) * lh + 0.8)

    def count_lines(self, width: float, height: float, text: str) -> int:
        """How many lines ``text`` takes in a cell ``width`` wide, in the current font."""
        lines = self.pdf.multi_cell(width, height, text, dry_run=True, output="LINES")
        return len(lines) if isinstance(lines, list) else 1

    def chart(self, chart: charts_mod.Chart, space: float | None = None) -> None:
        """Draw a chart at full width (its natural height), shrunk to fit ``space`` (mm)."""
        pdf = self.pdf
        height = chart_height(chart)
        h = height if space is None else min(height, space)
        w = BODY_W * h / height
        pdf.image(
            io.BytesIO(chart.svg(accessible=False).encode("utf-8")),
            x=MARGIN + (BODY_W - w) / 2,
            y=pdf.get_y(),
            w=w,
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
            pdf.cell(w, 4.2, h, border="B", fill=True)
        pdf.ln(4.2)
        pdf.set_font(FONT, "", 7)
        for row in rows:
            for text, w in zip(row, widths, strict=True):
                pdf.cell(w, 3.9, _fit(pdf, text, w - 1), border="B")
            pdf.ln(3.9)


def _fit(pdf: FPDF, text: str, width: float) -> str:
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


SERIES_HEADERS = ("Pain", "Baseline", "Latest week", "Change", "Band", "Responder", "Per session")
SERIES_WIDTHS = (50.0, 16.0, 24.0, 26.0, 22.0, 20.0, 28.0)
SESSION_HEADERS = ("Day", "Start", "Program", "Min", "Ended", "mA", "Before", "After", "Notes")
SESSION_WIDTHS = (20.0, 11.0, 26.0, 9.0, 30.0, 11.0, 12.0, 11.0, 56.0)


def chart_height(chart: charts_mod.Chart) -> float:
    """The height in mm of a chart drawn at the full body width."""
    return BODY_W * chart.height / chart.width


def render_pdf(report: Report) -> bytes:
    """The report as a PDF of at most two A4 pages."""
    charts = charts_mod.build_charts(report.data, report.summary, report.tz)
    doc = _Pdf(report)
    pdf = doc.pdf

    # page 1: the answer, the warnings, the pain charts
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
        pdf.set_font(FONT, "", 8.5)
        pdf.cell(BODY_W, 4.5, "None.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(pdf.get_y() + 1)
    space = BOTTOM - pdf.get_y() - 3
    total = chart_height(charts["pain"]) + chart_height(charts["weekly"])
    scale = min(1.0, space / total)
    doc.chart(charts["pain"], chart_height(charts["pain"]) * scale)
    doc.chart(charts["weekly"], chart_height(charts["weekly"]) * scale)

    # page 2: amplitude, timeline, series table, latest sessions
    doc.page()
    doc.chart(charts["amplitude"])
    doc.chart(charts["timeline"])
    series = report.series_lines()
    doc.heading("Pain series")
    if series:
        series_rows = [
            [r.series, r.baseline, r.latest, r.change, r.band, r.responder, r.per_session]
            for r in series[:6]
        ]
        doc.table(SERIES_HEADERS, SERIES_WIDTHS, series_rows)
    else:
        pdf.set_font(FONT, "", 8)
        pdf.cell(BODY_W, 4.5, "No pain ratings in this period.", new_x="LMARGIN", new_y="NEXT")
    doc.heading("Latest sessions")
    room = int((BOTTOM - pdf.get_y() - 4.2 - 5) // 3.9)
    rows, hidden = report.session_lines(limit=max(0, min(MAX_SESSION_ROWS, room)))
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
            pdf.set_font(FONT, "", 7)
            pdf.cell(
                BODY_W,
                4,
                f"{hidden} earlier sessions are in the CSV and FHIR exports.",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    else:
        pdf.set_font(FONT, "", 8)
        pdf.cell(BODY_W, 4.5, "No sessions in this period.", new_x="LMARGIN", new_y="NEXT")
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

        return bundle_json(data, generated=generated).encode("utf-8")
    report = build_report(data, tz=tz, generated=generated)
    if fmt == "json":
        if not data.integrity:
            return summary_json(report.summary)
        summary = json.loads(summary_json(report.summary))
        marked = {"log_damaged": data.integrity, "damaged_sessions": sorted(data.damaged_sessions)}
        return json.dumps(marked | summary, ensure_ascii=False, indent=2).encode("utf-8")
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
        raise ReportError(f"cannot write {path}: permission denied") from None
