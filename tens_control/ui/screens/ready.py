"""Ready to start: what will run, where the pads go, and how the intensity works."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import STOP_KEYS, fmt_minutes


class ReadyScreen(TensScreen):
    TITLE_TEXT = "Ready to start"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,g", "start", "Start", key_display="Enter"),
        Binding("b", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.starting = False
        self.error = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="ready-body", can_focus=False):
            yield Static("", id="ready-what", classes="big-prompt", markup=False)
            yield Static("", id="ready-pads", classes="hint", markup=False)
            yield Static("", id="ready-picture", markup=False)
            yield Static(
                "When you start, the output is at 0 mA. Press ↑ to raise it one small step at a "
                "time until it feels strong but comfortable — never painful. ↓ lowers it at "
                f"once. {STOP_KEYS} stops everything immediately.",
                id="ready-how",
                classes="hint",
            )
            yield Static("", id="ready-status", markup=False)

    def refresh_body(self) -> None:
        snapshot = self.tapp.snapshot
        if snapshot is None or snapshot.program is None:
            what = "The session is not prepared any more. Press B to go back."
        else:
            what = (
                f"{snapshot.program.title} for {fmt_minutes((snapshot.planned_s or 0) / 60)}\n"
                "Press Enter to start."
            )
        self.query_one("#ready-what", Static).update(what)
        pads = ""
        if snapshot is not None:
            pads = "\n".join(
                f"Channel {c.channel}: {c.site}" for c in snapshot.channels if c.active
            )
        self.query_one("#ready-pads", Static).update(
            f"Check that the pads are on:\n{pads}" if pads else ""
        )
        self.query_one("#ready-picture", Static).update(self._picture(snapshot))
        status = self.query_one("#ready-status", Static)
        if self.starting:
            status.update("Starting…")
            status.set_classes("ok-box")
        elif self.error:
            status.update(f"The session did not start: {self.error}")
            status.set_classes("error-box")
        else:
            status.update("")
            status.set_classes("")

    def _picture(self, snapshot: object) -> str:
        """The prescription's placement of the active channels, drawn (``ui.pads``)."""
        from tens_control.ui.pads import pad_picture

        controller = self.tapp.controller
        channels = getattr(snapshot, "channels", ())
        active = {c.channel for c in channels if c.active}
        if controller is None or not active:
            return ""
        return pad_picture(
            [(c.channel, c) for c in controller.prescription.channels if c.channel in active]
        )

    def action_start(self) -> None:
        controller = self.tapp.controller
        snapshot = self.tapp.snapshot
        if controller is None or self.starting or snapshot is None:
            return
        if str(snapshot.state) != "ready":
            self.error = "the session is not prepared; press B and choose the program again"
            self.refresh_view()
            return
        self.starting = True
        self.error = ""
        app = self.tapp

        def start() -> object:
            app.calls.wait_idle(60.0)  # the ratings before the session are given first
            return controller.start()

        self.tapp.run_task("start", start)
        self.refresh_view()

    def task_done(self, message: TaskDone) -> None:
        if message.task != "start":
            return
        self.starting = False
        if message.error is not None:
            self.error = message.error
            self.refresh_view()
            return
        from tens_control.ui.screens.running import RunningScreen

        snapshot = self.tapp.snapshot
        if snapshot is not None and str(snapshot.state) == "ended":
            return  # ended at once (e.g. an emergency stop): the app shows the ratings
        self.tapp.replace_flow(RunningScreen())

    def action_back(self) -> None:
        from tens_control.ui.screens.setup import SetupScreen

        if not self.starting:
            self.tapp.replace_flow(SetupScreen())
