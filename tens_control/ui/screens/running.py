"""The running session: big STIMULATING indicator, time left, each channel's set and measured
current, the ramp, the limit in force, live sparklines; up/down, pause/resume, stop.

Every key here only asks the controller; what the screen shows comes from the controller's
snapshot (the device's acknowledged and measured values), never from what was asked.

↑ raises while it is held and stops when it is let go (S16, ``tens_control.ui.hold``); any
other key stops a rise at once. Q (and Ctrl+C) stop the session first, then quit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, VerticalScroll
from textual.widgets import Static

from tens_control.ui.hold import RaiseKey
from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import STOP_KEYS, fmt_clock, fmt_ma, level_text
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
        Binding("x", "end", "End"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected = 1
        self.resuming = False
        self.error = ""
        self._channels: tuple[int, ...] = ()
        self._raise: RaiseKey | None = None

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="running-body", can_focus=False):
            yield Static("", id="stim-indicator", markup=False)
            yield Static("", id="session-line", markup=False)
            yield Static("", id="running-error", markup=False)
            yield Container(id="channels")

    def on_mount(self) -> None:
        snapshot = self.tapp.snapshot
        channels: tuple[int, ...] = ()
        if snapshot is not None:
            channels = tuple(c.channel for c in snapshot.channels if c.active)
        self._channels = channels or (1,)
        self.selected = self._channels[0]
        self.query_one("#channels", Container).mount_all([ChannelPanel(n) for n in self._channels])
        controller = self.tapp.controller
        if controller is not None:
            self._raise = RaiseKey(controller.clock, self._increase, self._hold)
        self.call_after_refresh(self.refresh_view)

    def on_unmount(self) -> None:
        if self._raise is not None:
            self._raise.close()

    def _increase(self, channel: int, done: Callable[[], None]) -> None:
        controller = self.tapp.controller
        if controller is None:
            done()
            return

        def call() -> object:
            try:
                return controller.increase(channel)
            finally:
                done()

        self.tapp.queue_call("intensity", call)

    def _hold(self, channel: int) -> None:
        controller = self.tapp.controller
        if controller is not None:
            self.tapp.queue_call("hold", lambda: controller.hold(channel))

    def _stop_rise(self) -> None:
        """Another key than ↑: the rise of the selected channel stops at once (S16)."""
        if self._raise is not None:
            self._raise.other_key(self.selected)

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
        if snapshot.stopping:
            # S11: stopped, but the device has not confirmed 0 mA yet (never "stimulating")
            indicator.update("■ STOPPING — waiting for the device to confirm 0 mA")
            indicator.set_classes("stopping")
        elif snapshot.stimulating:
            values = "   ".join(
                f"channel {c.channel}: {fmt_ma(c.set_ma)} mA ({level_text(c.set_ma)})"
                for c in active
            )
            indicator.update(f"■ STIMULATING ■   {values}")
            indicator.set_classes("stimulating")
        elif state == "paused" and snapshot.paused_for_lead_off:
            indicator.update("‖ PAUSED: electrode off — output 0 mA. Pad back on, then P")
            indicator.set_classes("paused")
        elif state == "paused":
            indicator.update("‖ PAUSED — output 0 mA. P resumes (from 0 mA)")
            indicator.set_classes("paused")
        elif state == "running":
            indicator.update("Running — output at 0 mA. Press ↑ to raise the intensity.")
            indicator.set_classes("off")
        else:
            indicator.update(f"Output off — session {state}")
            indicator.set_classes("off")
        program = snapshot.program.title if snapshot.program is not None else "Session"
        extra = " · resuming…" if self.resuming else ""
        line.update(
            f"{program} · time left {fmt_clock(snapshot.remaining_s)} · {state.upper()}"
            f" · STOP: {STOP_KEYS}{extra}"
        )
        error = self.query_one("#running-error", Static)
        # a refusal (a resume while the pad is still off) on its own line, wrapped: it says
        # what to do, and must not be cut at 80 columns
        error.update(self.error)
        error.display = bool(self.error) and state != "ended"
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
        if self._raise is not None:
            self._raise.pressed(self.selected)

    def action_lower(self) -> None:
        self._stop_rise()
        controller = self.tapp.controller
        if controller is not None:
            channel = self.selected
            self.tapp.queue_call("intensity", lambda: controller.decrease(channel))

    def action_zero(self) -> None:
        self._stop_rise()
        controller = self.tapp.controller
        if controller is not None:
            channel = self.selected
            self.tapp.queue_call(
                "intensity",
                lambda: controller.set_target(channel, 0.0, why="patient set channel to 0"),
            )

    def action_move(self, step: int) -> None:
        self._stop_rise()
        if self.selected in self._channels:
            index = self._channels.index(self.selected)
            self.selected = self._channels[(index + step) % len(self._channels)]
        self.refresh_view()

    def action_select(self, channel: int) -> None:
        self._stop_rise()
        if channel in self._channels:
            self.selected = channel
            self.refresh_view()

    def action_pause(self) -> None:
        controller = self.tapp.controller
        snapshot = self.tapp.snapshot
        if controller is None or snapshot is None or self.resuming:
            return
        self._stop_rise()
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

    def task_done(self, message: TaskDone) -> None:
        if message.task == "resume":
            self.resuming = False
            error = "" if message.error is None else message.error.rstrip()
            if error and not error.endswith((".", "!", "?")):
                error += ". Press P to try again."
            self.error = error
        elif message.task == "intensity" and message.error is None:
            result = message.result
            channel = getattr(result, "channel", None)
            if getattr(result, "accepted", False) and isinstance(channel, int):
                self.tapp.limit_messages.pop(channel, None)
        self.refresh_view()
