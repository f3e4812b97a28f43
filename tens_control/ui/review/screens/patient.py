"""One patient: the figures of DESIGN.md §9, charts of pain and amplitude over time with other
treatments on the same days, weekly means, and every session."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from tens_control.review.analytics import (
    BAND_LABELS,
    PainOutcome,
    diary_figures,
    local_day,
    session_notes,
)
from tens_control.review.comparison import comparison_line, detail_lines
from tens_control.review.model import series_label
from tens_control.review.wording import (
    Line,
    answer_lines,
    duration_text,
    end_reason_text,
    num,
    plural,
    signed,
    span_text,
    warning_lines,
)
from tens_control.ui.review import plot
from tens_control.ui.review.data import PatientView, SessionLine
from tens_control.ui.review.widgets import Drawer, LinesView, PlotView, RowTable

if TYPE_CHECKING:
    from tens_control.ui.review.app import ReviewApp

TABS = ("answer", "charts", "weeks", "sessions")
TREATMENT_MARKS = {
    "ketamine_infusion": ("K", "ketamine"),
    "medication_change": ("M", "medication"),
    "mirror_therapy": ("R", "mirror ther."),
    "physiotherapy": ("P", "physio"),
    "other": ("O", "other treat."),
}


# --- figures -------------------------------------------------------------------------------------


def figure_lines(view: PatientView) -> list[Line]:
    """Every figure in words, each with its "not enough data" rule where it has no value: the
    report's answer lines, then tolerance, faults, refused requests, end reasons, treatments."""
    s = view.summary
    figures = diary_figures(view.data, view.tz, s.period_start, s.period_end)
    lines = answer_lines(s, notes=len(session_notes(view.data, view.tz)), diary=figures)
    if view.comparison is not None:
        lines += [comparison_line(view.comparison), *detail_lines(view.comparison)]
    lines += warning_lines(s, limit=99)
    a = s.adherence
    if a.available:
        lines.append(
            Line(
                "Adherence days",
                f"{a.days_fully_adherent} of {plural(a.days, 'day')} fully adherent; "
                f"{a.days_without_session} without a session; {a.days_over_prescription} over "
                "the prescription",
            )
        )
    t = s.tolerance
    if not t.available:
        lines.append(Line("Tolerance", t.reason or "not enough data"))
    elif not t.flagged:
        lines.append(
            Line(
                "Tolerance",
                f"not flagged (checked {t.windows_evaluated} pairs of consecutive 5-day blocks)",
                "ok",
            )
        )
    if not s.faults:
        lines.append(Line("Faults", "none", "ok"))
    if not s.rejections:
        lines.append(Line("Refused", "none"))
    if s.end_reasons:
        lines.append(
            Line(
                "Sessions ended",
                ", ".join(f"{end_reason_text(k)} ×{n}" for k, n in s.end_reasons.items()),
            )
        )
    return lines


def series_table(view: PatientView) -> Table | Text:
    """Every pain series: baseline, the time points (weeks 4, 8, 12), the latest week, the
    per-session change (the report's table of pain series)."""
    from tens_control.review.report import baseline_cell, point_cell

    s = view.summary
    if not s.outcomes:
        return Text("No pain ratings in this period.")
    changes = {(c.pain, c.posture): c for c in s.session_change}
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
    for name, justify in (
        ("Pain series", "left"),
        ("Baseline", "right"),
        ("Week 4", "right"),
        ("Week 8", "right"),
        ("Week 12", "right"),
        ("Per session", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for o in s.outcomes:
        c = changes.get((o.pain, o.posture))
        per = "–"
        if c is not None and c.available and c.mean_change is not None:
            per = f"{signed(c.mean_change)} (n={c.sessions})"
        elif c is not None:
            per = f"n={c.sessions}: too few"
        table.add_row(
            series_label((o.pain, o.posture)) + (" *" if o.headline else ""),
            baseline_cell(o),
            point_cell(o.time_point(4)),
            point_cell(o.time_point(8)),
            point_cell(o.time_point(12)),
            per,
        )
    return table


def diary_lines(view: PatientView) -> list[Line]:
    """What else the patient logged, oldest first: pain episodes, session notes, PEG, PGIC,
    other treatments, adverse events, sleep, mood, doses and every edit or deletion of a diary
    entry (the report's diary table)."""
    from tens_control.review.report import diary_rows

    notes = session_notes(view.data, view.tz)
    rows, earlier = diary_rows(view.summary, notes, view.tz, 200, data=view.data)
    out = [
        Line(r.day, f"{r.what}: {r.detail}", "warn" if r.what.startswith("adverse") else "info")
        for r in rows
    ]
    if earlier:
        out.insert(0, Line("Earlier", f"{earlier} earlier entries are in the CSV and FHIR exports"))
    return out


# --- charts --------------------------------------------------------------------------------------


def _values_by_day(view: PatientView, which: str) -> dict[date, list[float]]:
    out: dict[date, list[float]] = {}
    for line in view.session_lines():
        value = line.before if which == "before" else line.after
        if value is not None:
            out.setdefault(line.day, []).append(float(value))
    return out


def _amplitude_by_day(view: PatientView) -> dict[date, list[float]]:
    out: dict[date, list[float]] = {}
    for line in view.session_lines():
        if line.row.mean_amplitude_ma is not None:
            out.setdefault(line.day, []).append(line.row.mean_amplitude_ma)
    return out


def charts_drawer(view: PatientView) -> Drawer:
    """Draws the Charts tab for a width: pain before and after each session (daily means of
    the headline series), the 7-day rolling mean, the mean amplitude per session, and a timeline
    of other treatments, adverse events and faults on the same days."""
    s = view.summary
    before = _values_by_day(view, "before")
    after = _values_by_day(view, "after")
    amplitude = _amplitude_by_day(view)
    o = s.primary

    def draw(width: int) -> list[str]:
        if s.period_start is None or s.period_end is None:
            return [s.reason or "not enough data"]
        axis = plot.DayAxis.fit(s.period_start, s.period_end, width - plot.GUTTER - 1)
        series = series_label((o.pain, o.posture)) if o is not None else "no headline series"
        out = [f"Pain before and after each session: {series} (NRS 0–10, daily mean)"]
        out += plot.day_chart(
            axis, plot.bucket_values(axis, before), label="before", top=10, height=3
        )
        out += plot.day_chart(
            axis, plot.bucket_values(axis, after), label="after", top=10, height=3
        )
        rolling: dict[date, list[float]] = {}
        if o is not None:
            rolling = {p.day: [p.mean] for p in o.rolling if p.mean is not None}
        out += plot.day_chart(
            axis, plot.bucket_values(axis, rolling), label="7-day avg", top=10, height=2
        )
        out.append(axis.scale_line())
        top = plot.nice_top(max((max(v) for v in amplitude.values()), default=0.0))
        out.append("Amplitude: mean set current per session (mA, daily mean)")
        out += plot.day_chart(
            axis, plot.bucket_values(axis, amplitude), label="mA", top=top, height=3
        )
        out.append(axis.scale_line())
        out.append("Other treatments, adverse events (✖) and faults (▲) on the same days")
        out += timeline_lanes(view, axis)
        out.append(
            f"· no value that day · {axis.unit_text()} · "
            "K ketamine, M medication, R mirror therapy, P physiotherapy, O other"
        )
        return out

    return draw


def timeline_lanes(view: PatientView, axis: plot.DayAxis) -> list[str]:
    s = view.summary
    lanes = []
    kinds = sorted({t.kind for t in s.treatments})
    for kind in kinds:
        mark, label = TREATMENT_MARKS.get(kind, ("O", kind.replace("_", " ")))
        spans = [(t.start, t.end or t.start) for t in s.treatments if t.kind == kind]
        lanes.append(plot.lane(axis, spans, mark, label))
    if s.adverse_events:
        days = [local_day(a.at, view.tz) for a in s.adverse_events]
        lanes.append(plot.lane(axis, [(d, d) for d in days], "✖", "adverse ev."))
    faults = [local_day(e.at, view.tz) for e in view.data.events if e.kind == "fault"]
    if faults:
        lanes.append(plot.lane(axis, [(d, d) for d in faults], "▲", "faults"))
    if not lanes:
        lanes.append(" " * (plot.GUTTER + 1) + "no other treatments, adverse events or faults")
    return lanes


def weeks_drawer(o: PainOutcome | None, reason: str) -> Drawer:
    """The headline series' baseline and weekly means as horizontal bars on 0–10, each week
    with its percent change from the baseline, the time points marked, and where the 30 % and
    50 % lines fall."""

    def draw(width: int) -> list[str]:
        if o is None:
            return [reason]
        out = [f"Weekly mean pain: {series_label((o.pain, o.posture))} (NRS, mean of daily means)"]
        bar_w = max(10, width - 44)
        b = o.baseline
        base = b.mean
        if base is not None:
            label = f"base  {span_text(b.start, b.end)[:14]:<14}"
            kind = "run-in" if b.kind == "run_in" else "first week"
            out.append(f"{label} {base:4.1f} {plot.hbar(base, 10.0, bar_w):<{bar_w}} {kind}")
        else:
            out.append(f"baseline: {b.reason or 'none'}")
        points = {t.week: t for t in o.time_points}
        for w in o.weeks:
            tp = points.get(w.index)
            mark = "*" if tp is not None else " "
            label = f"wk {w.index:<2}{mark}{span_text(w.start, w.end)[:14]:<14}"
            if w.mean is None:
                verdict = "non-responder" if tp is not None and tp.reached else "no mean"
                out.append(
                    f"{label}   –  {plural(w.rated_days, 'rated day')} (needs ≥ 3): {verdict}"
                )
                continue
            bar = plot.hbar(w.mean, 10.0, bar_w)
            note = f"{signed(w.pct_change, 0)} %" if w.pct_change is not None else ""
            out.append(f"{label} {w.mean:4.1f} {bar:<{bar_w}} {note}")
        if base is not None and base > 0:
            out.append(
                f"30 % less than the baseline: ≤ {0.7 * base:.1f} · 50 % less: ≤ {0.5 * base:.1f}"
                " · * a time point (weeks 4, 8, 12)"
            )
        tp = o.endpoint
        if tp is not None and tp.band is not None:
            out.append(f"Week {tp.week} vs baseline: IMMPACT band {BAND_LABELS[tp.band]}")
        elif o.reason:
            out.append(o.reason)
        return out

    return draw


# --- the screen ----------------------------------------------------------------------------------

SESSION_COLUMNS: tuple[tuple[str, int], ...] = (
    ("Day", 10),
    ("Start", 5),
    ("Min", 3),
    ("Ended", 12),
    ("mA", 4),
    ("Bef", 3),
    ("Aft", 3),
    ("Notes", 18),
)


def session_cells(line: SessionLine, view: PatientView) -> list[Text]:
    row = line.row
    local = row.start.astimezone(view.tz)
    return [
        Text(f"{local:%a} {local.day} {local:%b}"),
        Text(f"{local:%H:%M}"),
        Text(f"{row.stim_minutes:.0f}", justify="right"),
        Text(end_reason_text(row.end_reason)),
        Text(num(row.mean_amplitude_ma), justify="right"),
        Text("–" if line.before is None else str(line.before), justify="right"),
        Text("–" if line.after is None else str(line.after), justify="right"),
        Text(line.notes(), style="bold" if line.faults or line.adverse else ""),
    ]


class PatientScreen(Screen[None]):
    """One patient's summary, charts, weekly means and sessions (four tabs)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("1", "tab('answer')", "Figures"),
        Binding("2", "tab('charts')", "Charts"),
        Binding("3", "tab('weeks')", "Weeks"),
        Binding("4", "tab('sessions')", "Sessions"),
        Binding("e", "export", "Export"),
        Binding("d", "download", "Download HTML"),
    ]

    def __init__(self, pseudonym: str) -> None:
        super().__init__(id="patient-screen")
        self.pseudonym = pseudonym
        self.view: PatientView | None = None
        self.lines: list[SessionLine] = []

    @property
    def review(self) -> ReviewApp:
        from tens_control.ui.review.app import ReviewApp

        assert isinstance(self.app, ReviewApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"{self.pseudonym}: loading…", id="patient-title")
        with TabbedContent(id="tabs", initial="answer"):
            with TabPane("1 Figures", id="answer"), VerticalScroll(id="answer-scroll"):
                yield LinesView(id="figures")
                yield Static(id="series")
                yield LinesView(id="treatments")
            with TabPane("2 Charts", id="charts"), VerticalScroll(id="charts-scroll"):
                yield Static(id="charts-placeholder")
            with TabPane("3 Weeks", id="weeks"), VerticalScroll(id="weeks-scroll"):
                yield Static(id="weeks-placeholder")
            with TabPane("4 Sessions", id="sessions"):
                table: RowTable = RowTable(id="session-table")
                yield table
        yield Static("", id="export-state")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.pseudonym
        table = self.query_one("#session-table", DataTable)
        for name, width in SESSION_COLUMNS:
            table.add_column(name, width=width)
        self.load()

    @work(exclusive=True, group="patient", exit_on_error=False)
    async def load(self) -> None:
        try:
            view = await asyncio.to_thread(self.review.source.patient, self.pseudonym)
        except Exception as error:
            self.query_one("#patient-title", Static).update(
                f"{self.pseudonym}: could not be read: {error}"
            )
            raise
        await self.show(view)

    async def show(self, view: PatientView) -> None:
        self.view = view
        s = view.summary
        title = (
            f"{s.pseudonym} · {span_text(s.period_start, s.period_end)} · "
            f"{plural(s.sessions, 'session')}, {duration_text(s.stim_minutes)} · "
            f"{view.prescription_text()} · {view.device_text()}"
        )
        if view.data.integrity:  # a damaged log: the first line says so (docs/data.md)
            title = f"[b red]⚠ {escape(view.data.integrity)}[/]\n{title}"
        self.query_one("#patient-title", Static).update(title)
        self.query_one("#figures", LinesView).show(figure_lines(view))
        self.query_one("#series", Static).update(Group(Text(""), series_table(view)))
        self.query_one("#treatments", LinesView).show(
            diary_lines(view),
            empty="Nothing in the diary: no pain episodes, notes, PEG, PGIC, other treatments "
            "or adverse events.",
        )
        charts = self.query_one("#charts-scroll", VerticalScroll)
        await charts.remove_children()
        await charts.mount(PlotView(charts_drawer(view), id="charts-plot"))
        weeks = self.query_one("#weeks-scroll", VerticalScroll)
        await weeks.remove_children()
        reason = s.reason or "not enough data: no before-session or diary ratings"
        await weeks.mount(PlotView(weeks_drawer(s.primary, reason), id="weeks-plot"))
        self.lines = view.session_lines()
        table = self.query_one("#session-table", DataTable)
        table.clear()
        for i, line in enumerate(self.lines):
            table.add_row(*session_cells(line, view), key=str(i), height=None)
        if self.lines:
            table.move_cursor(row=len(self.lines) - 1)

    # --- actions --------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        self._focus_tab(tab)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        if pane is not None:
            self._focus_tab(pane)

    def _focus_tab(self, tab: str) -> None:
        target = {
            "answer": "#answer-scroll",
            "charts": "#charts-scroll",
            "weeks": "#weeks-scroll",
            "sessions": "#session-table",
        }[tab]
        self.query_one(target).focus()

    def action_export(self) -> None:
        self.review.export_patient(self.pseudonym)

    def action_download(self) -> None:
        self.review.download_report(self.pseudonym)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # a download goes to the browser: the key is there only in the served review
        return self.app.is_web if action == "download" else True

    @on(DataTable.RowSelected, "#session-table")
    def _session_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_session(event.cursor_row)

    def open_session(self, index: int) -> None:
        if 0 <= index < len(self.lines):
            self.review.open_session(self.pseudonym, self.lines[index].row.id)
