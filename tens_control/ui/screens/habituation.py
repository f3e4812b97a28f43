"""The habituation prompt: "Is the feeling still strong but comfortable?" (Y or N).

A "no" tells the controller, which logs the answer and logs the next intensity changes as the
habituation adjustment; the patient then raises the intensity a little with ↑.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from tens_control.ui.screens.base import TensModal


class HabituationModal(TensModal[bool]):
    TITLE_TEXT = "Session — a quick question"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog", id="habituation-dialog"):
            yield Static(self.question, classes="dialog-title", markup=False)
            yield Static(
                "Y = yes, it is still strong but comfortable\n"
                "N = no, it has faded (then raise it a little with ↑)\n\n"
                "The session goes on while this question is shown.",
                markup=False,
            )

    def action_answer(self, still_ok: bool) -> None:
        controller = self.tapp.controller
        if controller is not None:
            self.tapp.queue_call("habituation", lambda: controller.answer_habituation(still_ok))
        self.dismiss(still_ok)
