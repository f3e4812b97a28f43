"""One session: plan and end, ratings, adverse events, the amplitude set on each channel over
time (from the log) and the measured current (from the telemetry), and every logged event."""

from __future__ import annotations

import asyncio
from datetime import tzinfo
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tens_control.review.model import WHEN_LABELS, series_label
from tens_control.review.wording import Line, end_reason_text, num
from tens_control.store import EndReason
from tens_control.ui.review import plot
from tens_control.ui.review.data import SessionDetail
from tens_control.ui.review.widgets import Drawer, LinesView, PlotView

if TYPE_CHECKING:
    from tens_control.ui.review.app import ReviewApp


WARN_END_REASONS = frozenset(
    {
        EndReason.EMERGENCY_STOP,
        EndReason.LEAD_OFF,
        EndReason.COMMS_LOST,
        EndReason.DEVICE_FAULT,
        EndReason.OUTPUT_MISMATCH,
        EndReason.HOST_CRASH,
    }
)
"""End reasons that mean something went wrong (marked ⚠)."""


def end_level(reason: EndReason | None) -> str:
    if reason is None or reason in WARN_END_REASONS:
        return "warn"
    return "ok" if reason is EndReason.COMPLETED else "info"


def overview_lines(d: SessionDetail, tz: tzinfo | None) -> list[Line]:
    """What the session was, how it ended, its ratings and adverse events, in words (times in
    ``tz``)."""
    info = d.info
    start = info.started_at.astimezone(tz)
    end = "not ended" if info.ended_at is None else f"{info.ended_at.astimezone(tz):%H:%M:%S}"
    minutes = info.minutes
    ended = end_reason_text(None if info.end_reason is None else info.end_reason.value)
    lines = [
        Line(
            "Session",
            f"{start:%a} {start.day} {start:%b %Y %H:%M:%S} – {end} "
            f"({'–' if minutes is None else f'{minutes:.0f}'} of {info.planned_minutes:.0f} "
            f"planned min) · program {info.program}",
        ),
        Line("Ended", ended, end_level(info.end_reason)),
    ]
    device = info.device
    if device is not None:
        sim = " (simulator)" if info.simulator else ""
        lead = "" if device.reports_impedance else " · no lead-off detection"
        lines.append(
            Line(
                "Device",
                f"{device.model} {device.serial_number} fw {device.firmware}{sim}{lead}",
            )
        )
    for ch in info.plan.channels:
        st = ch.settings
        cap = f", cap {ch.cap_ma:g} mA" if ch.cap_ma is not None else ""
        area = f", {ch.area_cm2:g} cm²" if ch.area_cm2 is not None else ""
        lines.append(
            Line(
                f"Channel {ch.channel}",
                f"{st.frequency_hz:g} Hz {st.pulse_width_us} µs "
                f"{st.waveform.value.replace('_', ' ')} {st.pattern.value} · "
                f"{ch.site.replace('_', ' ')}{area}{cap}",
            )
        )
    if d.row is not None and d.row.mean_amplitude_ma is not None:
        lines.append(
            Line(
                "Amplitude",
                f"mean {num(d.row.mean_amplitude_ma)} mA while stimulating, highest "
                f"{num(d.row.max_amplitude_ma)} mA",
            )
        )
    if not d.ratings:
        lines.append(Line("Ratings", "none linked to this session"))
    for r in d.ratings:
        value = "skipped (missing, not 0)" if r.value is None else f"{r.value} / 10"
        lines.append(
            Line(
                f"Pain {r.when.replace('plus_30_min', '+30 min')}",
                f"{value} · {series_label((r.pain, r.posture))} · "
                f"{WHEN_LABELS[r.when]} at {r.at.astimezone(tz):%H:%M}",
            )
        )
    for a in d.adverse_events:
        sev = f" ({a.severity})" if a.severity else ""
        note = f": {a.note}" if a.note else ""
        lines.append(Line("Adverse event", f"{a.kind.replace('_', ' ')}{sev}{note}", "warn"))
    return lines


def trajectory_drawer(d: SessionDetail) -> Drawer:
    """Per channel: the set amplitude over the session (highest level in each column), then the
    measured current when the device reports it."""

    def draw(width: int) -> list[str]:
        columns = max(1, width - plot.GUTTER - 1)
        out: list[str] = []
        if not d.trajectory:
            return ["No amplitude change logged: the session never stimulated."]
        highest = max((v for pts in d.trajectory.values() for _, v in pts), default=0.0)
        top = plot.nice_top(highest)
        out.append("Amplitude set on each channel (mA, from the log)")
        for ch, pts in d.trajectory.items():
            values = plot.step_values(pts, d.duration_s, columns)
            out += plot.with_gutter(plot.bar_rows(values, 3, top), f"ch{ch} set", top, plot.GUTTER)
        out.append(plot.time_scale_line(d.duration_s, columns))
        if d.measured:
            out.append("Measured current (mA, device read-back, mean per column)")
            for ch, samples in d.measured.items():
                values = plot.sample_values(samples, d.duration_s, columns)
                out += plot.with_gutter(
                    plot.bar_rows(values, 2, top), f"ch{ch} meas.", top, plot.GUTTER
                )
            out.append(plot.time_scale_line(d.duration_s, columns))
            out.append("· no reading in that part of the session")
        return out

    return draw


def events_table(d: SessionDetail) -> Table:
    """Every logged event: time from the start, kind, what happened (faults, refusals and
    failed commands in capitals and bold)."""
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("What happened", ratio=1)
    for e in d.events:
        style = "bold" if e.important else ""
        table.add_row(
            f"+{plot.clock_text(e.offset_s)}" if e.offset_s >= 0 else "before",
            Text(e.kind, style=style),
            Text(e.text, style=style),
        )
    return table


class SessionScreen(Screen[None]):
    """One session in detail."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("e", "export", "Export patient"),
    ]

    def __init__(self, pseudonym: str, session_id: str) -> None:
        super().__init__(id="session-screen")
        self.pseudonym = pseudonym
        self.session_id = session_id
        self.detail: SessionDetail | None = None

    @property
    def review(self) -> ReviewApp:
        from tens_control.ui.review.app import ReviewApp

        assert isinstance(self.app, ReviewApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="session-scroll"):
            yield Static("Loading the session…", id="session-state")
            yield LinesView(id="session-overview")
            yield Static(id="trajectory-placeholder")
            yield Static(id="events-title")
            yield Static(id="session-events")
        yield Static("", id="export-state")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.pseudonym} · session"
        self.query_one("#session-scroll").focus()
        self.load()

    @work(exclusive=True, group="session", exit_on_error=False)
    async def load(self) -> None:
        try:
            detail = await asyncio.to_thread(
                self.review.source.session, self.pseudonym, self.session_id
            )
        except Exception as error:
            self.query_one("#session-state", Static).update(
                f"This session could not be read: {error}"
            )
            raise
        self.detail = detail
        start = detail.info.started_at.astimezone(self.review.source.tz)
        self.query_one("#session-state", Static).update(
            Text(
                f"{self.pseudonym} · session of {start:%a} {start.day} {start:%b %Y %H:%M}",
                style="bold",
            )
        )
        self.query_one("#session-overview", LinesView).show(
            overview_lines(detail, self.review.source.tz)
        )
        await self.query_one("#trajectory-placeholder", Static).remove()
        await self.query_one("#session-scroll", VerticalScroll).mount(
            PlotView(trajectory_drawer(detail), id="trajectory"),
            before=self.query_one("#events-title"),
        )
        faults = sum(1 for e in detail.events if e.important)
        self.query_one("#events-title", Static).update(
            Text(
                f"\nEvents: {len(detail.events)} logged, {faults} marked in capitals "
                "(FAULT, REFUSED, FAILED, END, ADVERSE)",
                style="bold",
            )
        )
        self.query_one("#session-events", Static).update(events_table(detail))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_export(self) -> None:
        self.review.export_patient(self.pseudonym)
