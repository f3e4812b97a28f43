"""The running session: big STIMULATING indicator, time left, each channel's set and measured
current, the ramp, the limit in force, live sparklines; up/down, pause/resume, stop.

Every key here only asks the controller; what the screen shows comes from the controller's
snapshot (the device's acknowledged and measured values), never from what was asked.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, VerticalScroll
from textual.widgets import Static

from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import STOP_KEYS, fmt_clock, fmt_ma
from tens_control.ui.widgets.channel import ChannelPanel

CHANNEL_KEYS = [Binding(str(n), f"select({n})", f"Channel {n}", show=False) for n in range(1, 9)]


class RunningScreen(TensScreen):
    TITLE_TEXT = "Session"
    HIDDEN_BANNERS = frozenset({"simulator"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,plus,equals_sign,k", "raise", "Up", key_display="↑"),
        Binding("down,minus,j", "lower", "Down", key_display="↓"),
        Binding("left", "move(-1)", "Channel", key_display="←→", show=True),
        Binding("right,tab", "move(1)", "Next channel", show=False),
        *CHANNEL_KEYS,
        Binding("0", "zero", "Channel to 0", show=False),
        Binding("p", "pause", "Pause/Resume"),
        Binding("x", "end", "End session"),
        Binding("q", "quit_hint", "Quit", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected = 1
        self.resuming = False
        self.error = ""
        self._channels: tuple[int, ...] = ()

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="running-body", can_focus=False):
            yield Static("", id="stim-indicator", markup=False)
            yield Static("", id="session-line", markup=False)
            yield Container(id="channels")

    def on_mount(self) -> None:
        snapshot = self.tapp.snapshot
        channels: tuple[int, ...] = ()
        if snapshot is not None:
            channels = tuple(c.channel for c in snapshot.channels if c.active)
        self._channels = channels or (1,)
        self.selected = self._channels[0]
        self.query_one("#channels", Container).mount_all([ChannelPanel(n) for n in self._channels])
        self.call_after_refresh(self.refresh_view)

    def refresh_body(self) -> None:
        app = self.tapp
        snapshot = app.snapshot
        indicator = self.query_one("#stim-indicator", Static)
        line = self.query_one("#session-line", Static)
        if snapshot is None:
            indicator.update("…")
            return
        state = str(snapshot.state)
        active = [c for c in snapshot.channels if c.channel in self._channels]
        if snapshot.stimulating:
            values = "   ".join(f"channel {c.channel}: {fmt_ma(c.set_ma)} mA" for c in active)
            indicator.update(f"■ STIMULATING ■   {values}")
            indicator.set_classes("stimulating")
        elif state == "paused":
            why = "electrode off" if snapshot.paused_for_lead_off else "paused"
            indicator.update(f"‖ PAUSED ({why}) — output off, 0 mA — press P to resume")
            indicator.set_classes("paused")
        elif state == "running":
            indicator.update("Running — output at 0 mA. Press ↑ to raise the intensity.")
            indicator.set_classes("off")
        else:
            indicator.update(f"Output off — session {state}")
            indicator.set_classes("off")
        program = snapshot.program.title if snapshot.program is not None else "Session"
        extra = ""
        if self.resuming:
            extra = " · resuming…"
        elif self.error:
            extra = f" · {self.error}"
        line.update(
            f"{program} · time left {fmt_clock(snapshot.remaining_s)} · {state.upper()}"
            f" · STOP: {STOP_KEYS}{extra}"
        )
        reports = snapshot.device.measured_output if snapshot.device is not None else False
        running = state == "running"
        for view in active:
            try:
                panel = self.query_one(f"#channel-{view.channel}", ChannelPanel)
            except Exception:
                continue
            panel.show(
                view,
                selected=view.channel == self.selected,
                running=running,
                message=app.limit_messages.get(view.channel, ""),
                current=list(app.trace.current.get(view.channel, ())),
                impedance=list(app.trace.impedance.get(view.channel, ())),
                reports_current=reports,
            )

    # ------------------------------------------------------------------ keys
    def action_raise(self) -> None:
        controller = self.tapp.controller
        if controller is not None:
            channel = self.selected
            self.tapp.queue_call("intensity", lambda: controller.increase(channel))

    def action_lower(self) -> None:
        controller = self.tapp.controller
        if controller is not None:
            channel = self.selected
            self.tapp.queue_call("intensity", lambda: controller.decrease(channel))

    def action_zero(self) -> None:
        controller = self.tapp.controller
        if controller is not None:
            channel = self.selected
            self.tapp.queue_call(
                "intensity",
                lambda: controller.set_target(channel, 0.0, why="patient set channel to 0"),
            )

    def action_move(self, step: int) -> None:
        if self.selected in self._channels:
            index = self._channels.index(self.selected)
            self.selected = self._channels[(index + step) % len(self._channels)]
        self.refresh_view()

    def action_select(self, channel: int) -> None:
        if channel in self._channels:
            self.selected = channel
            self.refresh_view()

    def action_pause(self) -> None:
        controller = self.tapp.controller
        snapshot = self.tapp.snapshot
        if controller is None or snapshot is None or self.resuming:
            return
        state = str(snapshot.state)
        if state == "running":
            self.tapp.queue_call("call", controller.pause)
        elif state == "paused":
            self.resuming = True
            self.error = ""
            self.tapp.run_task("resume", controller.resume)
        self.refresh_view()

    def action_end(self) -> None:
        controller = self.tapp.controller
        if controller is not None:
            self.tapp.queue_call("call", controller.stop)

    def action_quit_hint(self) -> None:
        self.notify(
            "A session is running: press X to end it first (Ctrl+Q quits at once, stopping it).",
            timeout=6,
        )

    def task_done(self, message: TaskDone) -> None:
        if message.task == "resume":
            self.resuming = False
            self.error = "" if message.error is None else message.error
        elif message.task == "intensity" and message.error is None:
            result = message.result
            channel = getattr(result, "channel", None)
            if getattr(result, "accepted", False) and isinstance(channel, int):
                self.tapp.limit_messages.pop(channel, None)
        self.refresh_view()
