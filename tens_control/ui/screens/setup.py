"""Session setup: a prescribed program and the session length, then the checks.

Pressing Enter asks the controller to prepare the session: it checks every precondition
(screening, prescription, daily limits, electrode sites) and configures the channels at 0 mA.
A refusal is shown as the controller words it (what is wrong and what to do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import fmt_minutes

if TYPE_CHECKING:
    from tens_control.programs import Program

STEP_MINUTES = 5.0


class SetupScreen(TensScreen):
    TITLE_TEXT = "New session"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("minus", "shorter", "Shorter", key_display="-"),
        Binding("plus,equals_sign", "longer", "Longer", key_display="+"),
        Binding("s", "screening", "Safety questions", show=False),
        Binding("b", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.programs: tuple[Program, ...] = ()
        self.scheduled: str | None = None
        self.max_minutes = 30.0
        self.minutes = 30.0
        self.error = ""
        self.check = ""
        self.preparing = False

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="setup-body", can_focus=False):
            yield Static(
                "Choose a program with ↑ ↓ and press Enter. Your clinician chose these for you.",
                classes="hint",
            )
            yield OptionList(id="program-list")
            with Vertical(id="program-card", classes="card"):
                yield Static("", id="program-text", markup=False)
            yield Static("", id="setup-length", classes="big-prompt", markup=False)
            yield Static("", id="setup-pads", classes="hint", markup=False)
            yield Static("", id="setup-error", markup=False)

    def on_mount(self) -> None:
        controller = self.tapp.controller
        if controller is None:
            return
        self.programs = controller.available_programs()
        self.scheduled = controller.scheduled_program()
        rx = controller.prescription
        self.max_minutes = float(rx.session_minutes)
        wanted = self.tapp.options.session_minutes
        self.minutes = min(self.max_minutes, wanted) if wanted else self.max_minutes
        options = self.query_one("#program-list", OptionList)
        options.add_options(
            [
                Option(
                    ("today ▸ " if p.name == self.scheduled else "") + f"{p.title} — {p.summary()}",
                    id=f"program-{p.name}",
                )
                for p in self.programs
            ]
        )
        if self.programs:
            options.highlighted = 0
        options.focus()
        self.query_one("#program-card").border_title = "About this program"
        self.refresh_view()

    @on(OptionList.OptionHighlighted, "#program-list")
    def _highlighted(self) -> None:
        self.refresh_view()

    def _program(self) -> Program | None:
        index = self.query_one("#program-list", OptionList).highlighted
        if index is None or not 0 <= index < len(self.programs):
            return None
        return self.programs[index]

    def refresh_body(self) -> None:
        program = self._program()
        text = (
            "No program is available for this device."
            if program is None
            else (f"{program.title}: {program.description}")
        )
        if program is not None and self.scheduled is not None:
            text += (
                "\n\nYour clinician is comparing programs: today's is the one marked "
                "“today”. Another is allowed (it is noted for your clinician); you can always "
                "lower or stop."
                if program.name == self.scheduled
                else f"\n\nToday's program in your clinician's comparison is {self.scheduled}; "
                "this one is allowed too, and noted."
            )
        self.query_one("#program-text", Static).update(text)
        prescribed = (
            "as prescribed"
            if abs(self.minutes - self.max_minutes) < 1e-9
            else f"prescribed: {fmt_minutes(self.max_minutes)}"
        )
        self.query_one("#setup-length", Static).update(
            f"Session length: {fmt_minutes(self.minutes)} ({prescribed})    - shorter  + longer"
        )
        snapshot = self.tapp.snapshot
        pads = ""
        if snapshot is not None and snapshot.channels:
            pads = "Pads: " + "; ".join(f"channel {c.channel}: {c.site}" for c in snapshot.channels)
        self.query_one("#setup-pads", Static).update(pads)
        error = self.query_one("#setup-error", Static)
        if self.preparing:
            error.update("Checking and preparing the device…")
            error.set_classes("ok-box")
        elif self.error:
            more = ""
            if self.check == "screening":
                more = "\nPress S to answer the safety questions."
            error.update(f"This session cannot start: {self.error}{more}")
            error.set_classes("error-box")
        else:
            error.update("")
            error.set_classes("")

    def action_shorter(self) -> None:
        step = STEP_MINUTES if self.minutes > STEP_MINUTES else 1.0
        self.minutes = max(1.0 if self.max_minutes >= 1 else self.max_minutes, self.minutes - step)
        self.refresh_view()

    def action_longer(self) -> None:
        step = STEP_MINUTES if self.minutes >= STEP_MINUTES else 1.0
        self.minutes = min(self.max_minutes, self.minutes + step)
        self.refresh_view()

    @on(OptionList.OptionSelected, "#program-list")
    def _chosen(self) -> None:
        program = self._program()
        controller = self.tapp.controller
        if program is None or controller is None or self.preparing:
            return
        self.preparing = True
        self.error = ""
        minutes = self.minutes
        self.tapp.run_task("prepare", lambda: controller.prepare(program.name, minutes))
        self.refresh_view()

    def task_done(self, message: TaskDone) -> None:
        if message.task != "prepare":
            return
        self.preparing = False
        if message.error is not None:
            self.error = message.error
            self.check = message.check
            self.refresh_view()
            return
        from tens_control.ui.screens.rating import RatingScreen

        self.tapp.replace_flow(RatingScreen.before_session(self.tapp))

    def action_screening(self) -> None:
        self.tapp.show_screening()

    def action_back(self) -> None:
        self.tapp.go_home()
