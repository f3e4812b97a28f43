"""The contraindication questions before the first session (S12).

One question at a time, Y or N. Any "yes" blocks stimulation on a real unit until a clinician
has reviewed it and recorded an override (``tens-control screening --override``); the screen
says so and asks the patient to contact their clinician. The answers go to the store.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from tens_control.screening import CONTACT_CLINICIAN, QUESTIONS, SHORT_LABELS, Question
from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensScreen

log = logging.getLogger(__name__)


class ScreeningScreen(TensScreen):
    TITLE_TEXT = "Safety questions"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("b", "back", "Back"),
        Binding("l", "later", "Later"),
        Binding("enter", "done", "Continue", show=False),
    ]

    def __init__(self, first_run: bool = False) -> None:
        super().__init__()
        self.first_run = first_run
        self.questions: list[Question] = list(QUESTIONS)
        self.answers: dict[Question, bool] = {}
        self.index = 0
        self.saved = False
        self.saving = False
        self.error = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="screening-body", can_focus=False):
            yield Static("", id="screening-intro", classes="hint", markup=False)
            yield Static("", id="screening-question", classes="big-prompt", markup=False)
            yield Static("", id="screening-keys", classes="hint", markup=False)
            yield Static("", id="screening-result", markup=False)

    def refresh_body(self) -> None:
        intro = self.query_one("#screening-intro", Static)
        question = self.query_one("#screening-question", Static)
        keys = self.query_one("#screening-keys", Static)
        result = self.query_one("#screening-result", Static)
        total = len(self.questions)
        if self.saved or self.saving or self.error:
            intro.update("")
            question.update("")
            keys.update("")
            result.update(self._result_text())
            result.set_classes("error-box" if self._blocked() or self.error else "ok-box")
            return
        first = (
            "Before your first session, please answer these questions about your health. "
            if self.first_run
            else ""
        )
        intro.update(
            f"{first}Your answers are kept with your records for your clinician. "
            "A yes does not mean something is wrong; it means your clinician should check first."
        )
        current = self.questions[self.index]
        question.update(f"Question {self.index + 1} of {total}\n\n{QUESTIONS[current]}")
        keys.update("Y = yes    N = no    B = back    L = later (nothing is saved)")
        result.update("")
        result.set_classes("")

    def _blocked(self) -> bool:
        return any(self.answers.values())

    def _result_text(self) -> str:
        if self.error:
            return f"Your answers could not be saved: {self.error}\nPress Enter to go back."
        if self.saving:
            return "Saving your answers…"
        if self._blocked():
            labels = ", ".join(SHORT_LABELS[q] for q in self.questions if self.answers.get(q))
            snapshot = self.tapp.snapshot
            sim = (
                snapshot is not None
                and snapshot.device is not None
                and (snapshot.device.is_simulator)
            )
            practise = (
                "The simulator delivers no current, so you may still practise with it.\n"
                if sim
                else ""
            )
            return (
                f"You answered yes to: {labels}.\n\n{CONTACT_CLINICIAN}\n\n{practise}"
                "Press Enter to continue."
            )
        return (
            "Thank you. Your answers are saved: none of these conditions applies to you, so "
            "you may use TENS.\nPress Enter to continue."
        )

    def action_answer(self, yes: bool) -> None:
        if self.saved or self.saving:
            return
        self.answers[self.questions[self.index]] = yes
        if self.index + 1 < len(self.questions):
            self.index += 1
        else:
            self.saving = True
            self._save(dict(self.answers))
        self.refresh_view()

    def action_back(self) -> None:
        if self.saved or self.saving:
            return
        if self.index > 0:
            self.index -= 1
            self.refresh_view()
        else:
            self.action_later()

    def action_later(self) -> None:
        if self.saving:
            return
        self.app.pop_screen()

    def action_done(self) -> None:
        if self.saved or self.error:
            self.tapp.needs_screening = False
            self.app.pop_screen()

    @work(thread=True, exit_on_error=False, group="screening-save")
    def _save(self, answers: dict[Question, bool]) -> None:
        store, controller = self.tapp.store, self.tapp.controller
        try:
            if store is None or controller is None:
                raise RuntimeError("the session log is not open")
            store.save_screening(
                {q.value: a for q, a in answers.items()},
                recorded_by="patient",
                patient=controller.patient,
            )
        except Exception as error:
            log.exception("could not save the screening")
            self.post_message(TaskDone("screening-saved", error=str(error)))
            return
        self.post_message(TaskDone("screening-saved"))

    def on_task_done(self, message: TaskDone) -> None:
        if message.task != "screening-saved":
            return
        message.stop()
        self.saving = False
        if message.error is None:
            self.saved = True
        else:
            self.error = message.error
        self.refresh_view()
