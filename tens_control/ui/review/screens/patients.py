"""The patient list: one line of status per patient, sortable and filterable by keyboard."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from tens_control.review.wording import pct, signed
from tens_control.ui.review.data import (
    FILTER_KEYS,
    FILTER_LABELS,
    SORT_KEYS,
    SORT_LABELS,
    FilterKey,
    PatientStatus,
    SortKey,
    filter_statuses,
    sort_statuses,
)
from tens_control.ui.review.widgets import RowTable

if TYPE_CHECKING:
    from tens_control.ui.review.app import ReviewApp

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("patient", "Patient", 10),
    ("last", "Last session", 13),
    ("adherence", "Adher.", 6),
    ("pain", "Pain", 10),
    ("r30", "≥30%", 4),
    ("r50", "≥50%", 4),
    ("r2", "≥2pt", 4),
    ("warnings", "Warnings", 18),
)
NOT_ENOUGH = "–"
PROGRESS_EVERY = 10
"""While loading, redraw the list after every this many patients."""
SORT_ORDER: dict[SortKey, tuple[str, str]] = {
    "patient": ("A to Z", "Z to A"),
    "adherence": ("lowest first", "highest first"),
    "pain": ("largest fall first", "largest rise first"),
    "warnings": ("most first", "fewest first"),
}
"""How each sort orders the list, and reversed (patients without a value are always last)."""


def yes_no(value: bool | None) -> str:
    return NOT_ENOUGH if value is None else "yes" if value else "no"


def pain_cell(r: PatientStatus) -> str:
    """The headline endpoint: ``−50 % wk4``, ``n/r wk12`` (a non-responder for want of
    ratings or of a baseline), ``–`` before week 4 has ended."""
    tp = r.endpoint
    if tp is None:
        return NOT_ENOUGH
    if tp.status != "rated":
        return f"n/r wk{tp.week}"
    change = (
        f"{signed(tp.pct_change, 0)} %"
        if tp.pct_change is not None
        else f"{signed(tp.change_points or 0)}pt"
    )
    return f"{change} wk{tp.week}"


def last_cell(r: PatientStatus) -> str:
    s = r.summary
    if s.last_session_day is None:
        return "none"
    return f"{s.last_session_day.day} {s.last_session_day:%b} · {s.days_since_session} d"


def row_cells(r: PatientStatus) -> list[Text]:
    """The cells of one patient's line (numbers right-aligned; ``–`` = not enough data)."""
    adherence = NOT_ENOUGH if r.adherence_pct is None else pct(r.adherence_pct)
    return [
        Text(r.pseudonym),
        Text(last_cell(r), style="bold" if r.stopped else ""),
        Text(adherence, justify="right"),
        Text(pain_cell(r), justify="right"),
        Text(yes_no(r.responder_30), justify="center"),
        Text(yes_no(r.responder_50), justify="center"),
        Text(yes_no(r.responder_points), justify="center"),
        Text(r.warnings_text(), style="bold" if r.warning_count else ""),
    ]


class PatientsScreen(Screen[None]):
    """Every patient in the database with a one-line status."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("f", "filter", "Filter"),
        Binding("slash", "search", "Search"),
        Binding("e", "export", "Export"),
        Binding("d", "download", "Download HTML"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__(id="patients-screen")
        self.statuses: list[PatientStatus] = []
        self.shown: list[PatientStatus] = []
        self.sort_key: SortKey = "patient"
        self.sort_reverse = False
        self.filter_key: FilterKey = "all"
        self.search = ""
        self.loaded = False
        self.total = 0

    @property
    def review(self) -> ReviewApp:
        from tens_control.ui.review.app import ReviewApp

        assert isinstance(self.app, ReviewApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="patients-body"):
            yield Static("Loading the patients…", id="list-state")
            yield Input(
                placeholder="search a pseudonym (enter: done, esc: clear)",
                id="search",
                compact=True,
            )
            table = RowTable(id="patients")
            yield table
            yield Static(
                "– = no time point yet (open the patient for why) · Pain: the headline "
                "series at the latest time point (weeks 4, 8, 12) vs the baseline; n/r = "
                "non-responder (no ratings or no baseline) · Adher.: % of prescribed sessions",
                id="legend",
            )
        yield Static("", id="export-state")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#patients", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        box = self.query_one("#search", Input)
        box.display = False
        box.cursor_blink = self.review.cursor_blink
        table.focus()
        self.load()

    @work(exclusive=True, group="patients", exit_on_error=False)
    async def load(self) -> None:
        """Read every patient's status, one patient at a time in a thread (the database is
        blocking); the list fills in as they come."""
        source = self.review.source
        try:
            names = await asyncio.to_thread(source.pseudonyms)
            self.total = len(names)
            for i, name in enumerate(names):
                self.statuses.append(await asyncio.to_thread(source.status, name))
                if i == 0 or (i + 1) % PROGRESS_EVERY == 0:
                    self.refresh_rows()
        except Exception as error:  # shown on screen; the log is not touched
            self.query_one("#list-state", Static).update(f"Could not read the patients: {error}")
            raise
        self.loaded = True
        self.refresh_rows()

    def refresh_rows(self, keep: str | None = None) -> None:
        """Fill the table from the statuses with the current sort and filter, keeping the
        cursor on ``keep`` (default: the selected patient) when it is still shown."""
        table = self.query_one("#patients", DataTable)
        if keep is None:
            keep = self.selected()
        rows = sort_statuses(
            filter_statuses(self.statuses, self.filter_key, self.search),
            self.sort_key,
            self.sort_reverse,
        )
        self.shown = rows
        table.clear()
        for r in rows:
            table.add_row(*row_cells(r), key=r.pseudonym, height=None)
        names = [r.pseudonym for r in rows]
        if keep in names:
            table.move_cursor(row=names.index(keep))
        self.query_one("#list-state", Static).update(self.state_text())

    def state_text(self) -> str:
        order = SORT_ORDER[self.sort_key][int(self.sort_reverse)]
        search = f" · name contains “{self.search}”" if self.search else ""
        reading = "" if self.loaded else f"reading {len(self.statuses)} of {self.total}… · "
        return (
            f"{reading}{len(self.shown)} of {len(self.statuses)} patients · showing "
            f"{FILTER_LABELS[self.filter_key]}{search} · sorted by "
            f"{SORT_LABELS[self.sort_key]}, {order}"
        )

    def selected(self) -> str | None:
        table = self.query_one("#patients", DataTable)
        if not self.shown or table.row_count == 0:
            return None
        row = min(max(0, table.cursor_row), len(self.shown) - 1)
        return self.shown[row].pseudonym

    # --- actions --------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#patients")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        name = self.selected()
        if name is not None:
            self.review.open_patient(name)

    def action_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.refresh_rows()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.refresh_rows()

    def action_filter(self) -> None:
        self.filter_key = FILTER_KEYS[(FILTER_KEYS.index(self.filter_key) + 1) % len(FILTER_KEYS)]
        self.refresh_rows()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    def action_export(self) -> None:
        name = self.selected()
        if name is not None:
            self.review.export_patient(name)

    def action_download(self) -> None:
        name = self.selected()
        if name is not None:
            self.review.download_report(name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # a download goes to the browser: the key is there only in the served review
        return self.app.is_web if action == "download" else True

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search = event.value
        self.refresh_rows()

    @on(Input.Submitted, "#search")
    def _search_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#search", Input)
        if not box.value:
            box.display = False
        self.query_one("#patients", DataTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#search", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_one("#patients", DataTable).focus()
