"""After the session: what happened, notes, and anything unusual (adverse events).

The end message says why the session ended and what to do. Adverse events: R skin redness,
U burn, H headache, O other (each asks how bad). N writes a note. F (or Enter) saves all of it
and gets ready for the next session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensModal, TensScreen
from tens_control.ui.widgets.inputs import SafeInput

ADVERSE_NAMES = {
    "skin_redness": "Skin redness",
    "burn": "Burn",
    "headache": "Headache",
    "other": "Something else",
}
SEVERITIES = {"1": "mild", "2": "moderate", "3": "severe"}


@dataclass(frozen=True)
class Adverse:
    kind: str
    severity: str
    notes: str = ""

    def describe(self) -> str:
        text = f"{ADVERSE_NAMES.get(self.kind, self.kind)} — {self.severity}"
        return f"{text}: {self.notes}" if self.notes else text


class SeverityModal(TensModal[Adverse | None]):
    """How bad was it (1 mild, 2 moderate, 3 severe)? "Other" also asks what happened."""

    TITLE_TEXT = "Something unusual"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "severity('mild')", "Mild"),
        Binding("2", "severity('moderate')", "Moderate"),
        Binding("3", "severity('severe')", "Severe"),
        Binding("b", "cancel", "Cancel"),
    ]

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.problem = ""

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog", id="severity-dialog"):
            yield Static(ADVERSE_NAMES.get(self.kind, self.kind), classes="dialog-title")
            if self.kind == "other":
                yield Static("What happened? Type it, then press Enter.", markup=False)
                yield SafeInput(placeholder="what happened", id="adverse-notes")
            yield Static("How bad was it?  1 = mild   2 = moderate   3 = severe", markup=False)
            yield Static("B = cancel", classes="hint")
            yield Static("", id="severity-problem", markup=False)

    def on_mount(self) -> None:
        if self.kind == "other":
            self.query_one("#adverse-notes", SafeInput).focus()

    @on(Input.Submitted, "#adverse-notes")
    def _typed(self) -> None:
        self.set_focus(None)

    def action_severity(self, severity: str) -> None:
        notes = ""
        if self.kind == "other":
            notes = self.query_one("#adverse-notes", SafeInput).value.strip()
            if not notes:
                self.query_one("#severity-problem", Static).update(
                    "Please say what happened first (type it in the box)."
                )
                self.query_one("#adverse-notes", SafeInput).focus()
                return
        self.dismiss(Adverse(self.kind, severity, notes))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PostSessionScreen(TensScreen):
    TITLE_TEXT = "After the session"
    HIDDEN_BANNERS = frozenset({"simulator", "ended"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "adverse('skin_redness')", "Redness"),
        Binding("u", "adverse('burn')", "Burn"),
        Binding("h", "adverse('headache')", "Headache"),
        Binding("o", "adverse('other')", "Other"),
        Binding("d", "remove_last", "Delete last", show=False),
        Binding("n", "note", "Note"),
        Binding("f,enter", "finish", "Finish", key_display="F"),
    ]

    def __init__(self, end_message: str, reason: str) -> None:
        super().__init__()
        self.end_message = end_message
        self.reason = reason
        self.adverse: list[Adverse] = []
        self.saving = False
        self.error = ""

    def hidden_banner_texts(self) -> frozenset[str]:
        return frozenset({self.end_message})

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="post-body", can_focus=False):
            yield Static(self.end_message, id="post-end", markup=False)
            yield Static(
                "Did you notice anything unusual? Press R skin redness, U burn, H headache, "
                "O something else (D deletes the last one).",
                classes="hint",
            )
            yield Static("", id="post-adverse", markup=False)
            yield Static("A note for your records (optional) — press N to write:", classes="hint")
            yield SafeInput(placeholder="e.g. felt relaxed afterwards", id="post-notes")
            yield Static("", id="post-status", classes="big-prompt", markup=False)

    def on_mount(self) -> None:
        end = self.query_one("#post-end", Static)
        end.set_classes(
            "ok-box" if self.reason in ("completed", "stopped_by_user") else "error-box"
        )
        self.set_focus(None)

    def refresh_body(self) -> None:
        listed = "\n".join(f"• {a.describe()}" for a in self.adverse) or "Nothing unusual noted."
        self.query_one("#post-adverse", Static).update(listed)
        status = self.query_one("#post-status", Static)
        if self.saving:
            status.update("Saving…")
        elif self.error:
            status.update(f"Not saved: {self.error}")
        else:
            status.update("Press F (or Enter) to save and finish.")

    def action_adverse(self, kind: str) -> None:
        def added(result: Adverse | None) -> None:
            if result is not None:
                self.adverse.append(result)
            self.refresh_view()

        self.app.push_screen(SeverityModal(kind), added)

    def action_remove_last(self) -> None:
        if self.adverse:
            self.adverse.pop()
            self.refresh_view()

    def action_note(self) -> None:
        self.query_one("#post-notes", SafeInput).focus()

    @on(Input.Submitted, "#post-notes")
    def _note_done(self) -> None:
        self.set_focus(None)

    def action_finish(self) -> None:
        controller = self.tapp.controller
        if controller is None or self.saving:
            return
        notes = self.query_one("#post-notes", SafeInput).value.strip()
        adverse = list(self.adverse)
        self.saving = True
        self.error = ""

        app = self.tapp

        def save() -> object:
            app.calls.wait_idle(60.0)  # the after-session ratings first, linked to the session
            for event in adverse:
                controller.record_adverse_event(event.kind, event.severity, event.notes)
            return controller.finish(notes)

        self.tapp.run_task("finish", save)
        self.refresh_view()

    def task_done(self, message: TaskDone) -> None:
        if message.task != "finish":
            return
        self.saving = False
        if message.error is not None:
            self.error = message.error
            self.refresh_view()
            return
        self.tapp.notices.pop("estop", None)
        self.tapp.go_home()
