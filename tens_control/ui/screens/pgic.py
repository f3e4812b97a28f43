"""The Patient Global Impression of Change (PGIC): one question, seven answers, one key.

Asked from the history screen at any time, and offered on the home screen once a week after
the first week of sessions. The clinician's review shows the latest answer (DESIGN.md §9)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from tens_control.pain import PGIC_LABELS, PGIC_MAX, PGIC_MIN, PGIC_QUESTION
from tens_control.ui.screens.base import TensModal

if TYPE_CHECKING:
    from tens_control.store.records import PgicRating
    from tens_control.ui.app import TensApp

log = logging.getLogger(__name__)

PGIC_EVERY = timedelta(days=7)
"""The home screen offers the question when the last answer is at least this old (and the
first session at least this long ago)."""


@dataclass(frozen=True)
class PgicChoice:
    value: int | None
    """1-7; ``None``: the patient chose to skip (stored as skipped)."""


def pgic_due(first_session: datetime | None, last: PgicRating | None, now: datetime) -> bool:
    """Whether the home screen should offer the question now."""
    if first_session is None or now - first_session < PGIC_EVERY:
        return False
    return last is None or now - last.at >= PGIC_EVERY


def last_pgic_text(last: PgicRating | None, when: str) -> str:
    """What the history screen says about the question (``when``: the last answer's date)."""
    if last is None:
        return "How has your pain changed since you started TENS? Press G to answer."
    answer = "skipped" if last.value is None else PGIC_LABELS[last.value]
    return f"How your pain has changed since you started: {answer} ({when}). G to answer again."


class PgicModal(TensModal[PgicChoice | None]):
    """One key: 1 (very much improved) to 7 (very much worse), S to skip, B to cancel."""

    TITLE_TEXT = "How has your pain changed?"
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(str(n), f"answer({n})", show=False) for n in range(PGIC_MIN, PGIC_MAX + 1)],
        Binding("s", "answer(0)", "Skip", key_display="S"),
        Binding("b", "cancel", "Cancel", key_display="B"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog", id="pgic-dialog"):
            yield Static(PGIC_QUESTION, classes="dialog-title", markup=False)
            yield Static(
                "\n".join(f"{n}  {label}" for n, label in PGIC_LABELS.items()),
                id="pgic-choices",
                markup=False,
            )
            yield Static("Press 1–7. S = skip, B = cancel.", classes="hint")

    def action_answer(self, value: int) -> None:
        self.dismiss(PgicChoice(value or None))

    def action_cancel(self) -> None:
        self.dismiss(None)


def ask_pgic(app: TensApp) -> None:
    """Show the question; store the answer (off the UI thread, outcome as TaskDone "pgic")."""

    def answered(choice: PgicChoice | None) -> None:
        store, controller = app.store, app.controller
        if choice is None or store is None or controller is None:
            return
        patient, at = controller.patient, app.now()
        app.queue_call("pgic", lambda: store.add_pgic(choice.value, at=at, patient=patient))

    app.push_screen(PgicModal(), answered)
