"""The habituation prompt: "Is the feeling still strong but comfortable?"

Three answers, one key each: Y yes; N no, it has faded (the patient then raises it a little
with ↑); T no, it is too strong (every channel is lowered one step at once). The controller logs
the answer and logs the next intensity changes as the habituation adjustment.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from tens_control.ui.screens.base import TensModal

ANSWERS = {"comfortable": "Yes", "faded": "Faded", "too_strong": "Too strong"}


class HabituationModal(TensModal[str]):
    TITLE_TEXT = "Session — a quick question"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer('comfortable')", "Yes", key_display="Y"),
        Binding("n,f", "answer('faded')", "Faded", key_display="N"),
        Binding("t,down", "answer('too_strong')", "Too strong", key_display="T"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog", id="habituation-dialog"):
            yield Static(self.question, classes="dialog-title", markup=False)
            yield Static(
                "Y = yes, it is still strong but comfortable\n"
                "N = no, it has faded (then raise it a little with ↑)\n"
                "T = no, it is too strong (it is lowered one step at once)\n\n"
                "The session goes on while this question is shown.",
                markup=False,
            )

    def action_answer(self, answer: str) -> None:
        from tens_control.session import HabituationAnswer

        controller = self.tapp.controller
        choice = HabituationAnswer(answer)
        if controller is not None:
            self.tapp.queue_call("habituation", lambda: controller.answer_habituation(choice))
        self.dismiss(answer)
