"""History: past sessions with pain before and after, and the trend as sparklines."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import fmt_nrs
from tens_control.ui.widgets.chart import ScaleChart

if TYPE_CHECKING:
    from tens_control.store.store import SessionInfo, Store

log = logging.getLogger(__name__)

END_WORDS = {
    "completed": "completed",
    "stopped_by_user": "stopped",
    "emergency_stop": "EMERGENCY STOP",
    "lead_off": "electrode off",
    "comms_lost": "connection lost",
    "device_fault": "device fault",
    "output_mismatch": "output mismatch",
    "limit_reached": "limit reached",
    "host_crash": "program crashed",
}
SITES = ("phantom", "residual_limb", "other")
SITE_HEADINGS = {"phantom": "Phantom", "residual_limb": "Stump", "other": "Pain"}
MAX_ROWS = 200


@dataclass(frozen=True)
class HistoryData:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    site: str = "phantom"
    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    summary: str = ""
    pgic: str = ""
    """The latest impression of change (or that there is none yet)."""


def _pair(info: SessionInfo, site: str) -> tuple[str, int | None, int | None, bool]:
    from tens_control.store.records import PainContext, PainSite, RatingTime

    pain = PainSite(site)
    before = info.rating(RatingTime.BEFORE, pain, PainContext.REST)
    after = info.rating(RatingTime.AFTER, pain, PainContext.REST)
    if before is None and after is None:
        return "·", None, None, False
    b = before.nrs if before is not None else None
    a = after.nrs if after is not None else None
    text = f"{fmt_nrs(b, before is not None)} → {fmt_nrs(a, after is not None)}"
    return text, b, a, True


def load_history(store: Store, patient: str, tz: tzinfo | None) -> HistoryData:
    """Read the sessions and shape them for the screen (any thread)."""
    sessions = store.sessions(patient)[-MAX_ROWS:]
    used = [s for s in SITES if any(_pair(info, s)[3] for info in sessions)] or ["phantom"]
    columns = ("When", "Program", "Min", "Ended", *(SITE_HEADINGS[s] for s in used))
    rows: list[tuple[str, ...]] = []
    for info in reversed(sessions):
        start = info.started_at.astimezone(tz) if tz is not None else info.started_at.astimezone()
        minutes = "…" if info.minutes is None else f"{info.minutes:.0f}"
        ended = "still open" if info.end_reason is None else END_WORDS[info.end_reason.value]
        sim = " (sim)" if info.simulator else ""
        rows.append(
            (
                start.strftime("%d %b %H:%M"),
                f"{info.program}{sim}",
                minutes,
                ended,
                *(_pair(info, s)[0] for s in used),
            )
        )
    site = used[0]
    before: list[float] = []
    after: list[float] = []
    changes: list[int] = []
    for info in sessions:
        _, b, a, _ = _pair(info, site)
        if b is not None:
            before.append(float(b))
        if a is not None:
            after.append(float(a))
        if a is not None and b is not None:
            changes.append(a - b)
    summary = f"{len(sessions)} session(s)."
    if changes:
        recent = changes[-7:]
        mean = sum(recent) / len(recent)
        direction = "lower" if mean < 0 else ("higher" if mean > 0 else "the same")
        summary += (
            f" Over the last {len(recent)} rated session(s), {SITE_HEADINGS[site].lower()} pain "
            f"after a session was on average {abs(mean):.1f} point(s) {direction} than before."
        )
    from tens_control.ui.screens.pgic import last_pgic_text

    answers = store.pgic_ratings(patient)
    last = answers[-1] if answers else None
    when = "" if last is None else last.at.astimezone(tz).strftime("%d %b")
    pgic = last_pgic_text(last, when)
    return HistoryData(rows, columns, site, before, after, summary, pgic)


class HistoryScreen(TensScreen):
    TITLE_TEXT = "History"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b,h", "back", "Back", key_display="B"),
        Binding("g", "pgic", "Change since start", key_display="G"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data: HistoryData | None = None

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="history-body", can_focus=False):
            yield Static("", id="history-summary", classes="hint", markup=False)
            yield Static("", id="history-pgic", classes="hint", markup=False)
            with Vertical(id="history-trend", classes="card"):
                yield Static("", id="trend-before-label", classes="trend-label", markup=False)
                yield ScaleChart(id="trend-before")
                yield Static("", id="trend-after-label", classes="trend-label", markup=False)
                yield ScaleChart(id="trend-after")
            yield DataTable(id="history-table", zebra_stripes=True, cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#history-trend").border_title = "Pain trend, oldest to newest (0–10)"
        self._load()

    @work(thread=True, exit_on_error=False, exclusive=True, group="history")
    def _load(self) -> None:
        store, controller = self.tapp.store, self.tapp.controller
        if store is None or controller is None:
            return
        try:
            data = load_history(store, controller.patient, self.tapp.options.tz)
        except Exception:
            log.exception("could not read the history")
            data = HistoryData(summary="The history could not be read.")
        self.app.call_from_thread(self._loaded, data)

    def _loaded(self, data: HistoryData) -> None:
        self.data = data
        table = self.query_one("#history-table", DataTable)
        table.clear(columns=True)
        if data.columns:
            table.add_columns(*data.columns)
            table.add_rows(data.rows)
        table.focus()
        self.refresh_view()

    def refresh_body(self) -> None:
        data = self.data
        if data is None:
            self.query_one("#history-summary", Static).update("Reading…")
            return
        if not data.rows:
            self.query_one("#history-summary", Static).update(
                "No sessions yet. Your sessions appear here with your pain before and after."
            )
        else:
            self.query_one("#history-summary", Static).update(data.summary)
        self.query_one("#history-pgic", Static).update(data.pgic)
        name = SITE_HEADINGS[data.site].lower()
        for which, values in (("before", data.before), ("after", data.after)):
            last = " ".join(str(int(v)) for v in values[-10:]) or "none yet"
            self.query_one(f"#trend-{which}-label", Static).update(
                f"{name} pain {which} sessions — latest: {last}"
            )
            self.query_one(f"#trend-{which}", ScaleChart).set_values(values)

    def action_pgic(self) -> None:
        from tens_control.ui.screens.pgic import ask_pgic

        ask_pgic(self.tapp)

    def task_done(self, message: object) -> None:
        if getattr(message, "task", "") == "pgic":
            self._load()

    def action_back(self) -> None:
        self.app.pop_screen()
