"""The clinician review app: :class:`ReviewApp`, :func:`make_review_app` and :func:`run_review`.

Read-only: the store is opened with ``Store.open(read_only=True)``,
so nothing the app does can change the log. Reading runs in workers (``asyncio.to_thread``:
SQLite is blocking) and each worker updates its screen when it has the data, so
``app.workers.wait_for_complete()`` means the screen shows it. Exports call the report functions
of :mod:`tens_control.review.report` in a worker; an existing file is replaced only after the
clinician confirmed it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from datetime import date, tzinfo
from pathlib import Path
from typing import ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static

from tens_control.errors import TensControlError
from tens_control.store import Store
from tens_control.ui.review.data import ExportFormat, ReviewSource, default_export_name
from tens_control.ui.review.screens.export import ExportDialog, ExportRequest
from tens_control.ui.review.screens.patient import PatientScreen
from tens_control.ui.review.screens.patients import PatientsScreen
from tens_control.ui.review.screens.session import SessionScreen

log = logging.getLogger(__name__)


class ReviewApp(App[None]):
    """Patient list → patient (figures, charts, weeks, sessions) → session, and exports."""

    CSS_PATH = "review.tcss"
    TITLE = "tens-control review"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        source: ReviewSource,
        *,
        export_dir: Path | None = None,
        patient: str | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.source = source
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        """Where an export with a relative file name goes."""
        self.start_patient = patient
        self.cursor_blink = cursor_blink
        """Text cursors blink (tests turn it off for deterministic screenshots)."""
        self.last_format: ExportFormat = "html"
        self.last_export: str = ""
        """What the last export did, in words (also shown on the screen)."""
        self.exported: list[Path] = []

    def get_default_screen(self) -> Screen[None]:
        return PatientsScreen()

    def on_mount(self) -> None:
        self.sub_title = f"{self.source.path.name} · read-only"
        if self.start_patient is not None:
            self.open_patient(self.start_patient)

    def on_unmount(self) -> None:
        self.source.close()

    # --- navigation ----------------------------------------------------------------------------

    def open_patient(self, pseudonym: str) -> None:
        self.push_screen(PatientScreen(pseudonym))

    def open_session(self, pseudonym: str, session_id: str) -> None:
        self.push_screen(SessionScreen(pseudonym, session_id))

    # --- export ----------------------------------------------------------------------------------

    def export_patient(self, pseudonym: str) -> None:
        """Ask for the format and file, then write the report."""
        dialog = ExportDialog(pseudonym, self.export_dir, self.last_format)
        self.push_screen(dialog, self._export_chosen)

    def _export_chosen(self, request: ExportRequest | None) -> None:
        if request is None:
            return
        self.last_format = request.fmt
        self.export(request)

    @work(group="export", exit_on_error=False)
    async def export(self, request: ExportRequest) -> None:
        self._show_export(f"Writing the {request.fmt} report of {request.pseudonym}…")
        try:
            size = await asyncio.to_thread(
                self.source.export, request.pseudonym, request.fmt, request.path, request.replace
            )
        except TensControlError as error:
            self._show_export(f"⚠ Not written: {error}", warn=True)
            return
        except OSError as error:
            self._show_export(f"⚠ Not written: {request.path}: {error.strerror}", warn=True)
            return
        self.exported.append(request.path)
        verb = "Replaced" if request.replace else "Wrote"
        self._show_export(
            f"✓ {verb} {request.path} ({request.fmt}, {size:,} bytes) for {request.pseudonym}"
        )

    @work(group="export", exit_on_error=False)
    async def download_report(self, pseudonym: str) -> None:
        """The patient's HTML report to the clinician: a download in a browser (the served
        review), a file in :attr:`export_dir` in a terminal."""
        self._show_export(f"Preparing the HTML report of {pseudonym}…")
        try:
            content = await asyncio.to_thread(self.source.render, pseudonym, "html")
        except TensControlError as error:
            self._show_export(f"⚠ No report: {error}", warn=True)
            return
        name = default_export_name(pseudonym, "html")
        self.deliver_text(
            io.StringIO(content.decode("utf-8")),
            save_directory=self.export_dir,
            save_filename=name,
            open_method="download",
            mime_type="text/html",
            encoding="utf-8",
            name=name,
        )

    def on_delivery_complete(self, event: events.DeliveryComplete) -> None:
        where = "" if event.path is None else f" to {event.path}"
        if event.path is not None:
            self.exported.append(event.path)
        self._show_export(f"✓ Downloaded {event.name or 'the report'}{where}")

    def on_delivery_failed(self, event: events.DeliveryFailed) -> None:
        self._show_export(f"⚠ Not downloaded: {event.exception}", warn=True)

    def _show_export(self, text: str, warn: bool = False) -> None:
        self.last_export = text
        log.info("%s", text)
        for state in self.screen.query("#export-state"):
            if isinstance(state, Static):
                state.update(text)
        self.notify(text, severity="error" if warn else "information")


def make_review_app(
    db: str | os.PathLike[str] | None = None,
    *,
    tz: tzinfo | None = None,
    export_dir: Path | None = None,
    patient: str | None = None,
    cursor_blink: bool = True,
    today: date | None = None,
) -> ReviewApp:
    """The review app on the database ``db`` (``None``: ``$TENS_CONTROL_DB`` or the user data
    directory), opened read-only; ``today`` (the day the figures run to) defaults to today.
    Raises a :class:`~tens_control.store.StoreError` with one clear message when it cannot be
    opened."""
    store = Store.open_to_read(db)
    source = ReviewSource(store, tz, today=today)
    if patient is not None and patient not in source.pseudonyms():
        source.close()
        raise TensControlError(
            f"there is no patient {patient!r} in {store.path}; leave out --patient to choose "
            "from the list"
        )
    return ReviewApp(source, export_dir=export_dir, patient=patient, cursor_blink=cursor_blink)


def run_review(
    db: str | os.PathLike[str] | None = None,
    *,
    patient: str | None = None,
    today: date | None = None,
) -> int:
    """Run the review UI until the clinician quits; the store is closed whatever happens."""
    app = make_review_app(db, patient=patient, today=today)
    try:
        app.run()
    finally:
        app.source.close()
    return 0
