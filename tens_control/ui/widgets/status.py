"""The two lines at the top of every screen, and the banners below them.

Line 1: where you are, and the STOP keys. Line 2: which device (the simulator says so plainly)
and whether any output is on (``■ STIMULATING`` with each channel's mA, or ``Output off``).
Nothing is shown by colour alone: every state is also in words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tens_control.ui.text import LEVEL_WORDS, SIMULATOR_TEXT, STOP_KEYS, fmt_ma

if TYPE_CHECKING:
    from tens_control.session import Snapshot


def device_line(
    snapshot: Snapshot | None, ready: bool, connecting: bool, failed: bool = False
) -> tuple[str, str]:
    """(text, css class) describing the device. ``ready``: the back end is open (or failed to
    open: ``failed``)."""
    if snapshot is None or snapshot.device is None:
        if failed:
            return "Not started — see the message below", "disconnected"
        if not ready:
            return "Loading…", "pending"
        if connecting:
            return "Connecting…", "pending"
        return "No device connected — press C to connect", "disconnected"
    device = snapshot.device
    if device.is_simulator:
        return SIMULATOR_TEXT, "sim"
    return f"Device: {device.model} ({device.serial_number}) on {device.url}", "device"


def output_line(snapshot: Snapshot | None) -> tuple[str, str]:
    """(text, css class) for the output state (S11)."""
    if snapshot is None or not snapshot.channels:
        return "Output off", "off"
    state = str(snapshot.state)
    if snapshot.stopping:
        if snapshot.end_reason is not None and str(snapshot.end_reason) == "comms_lost":
            # STOP was sent but the device cannot confirm it; its own watchdog switches it off
            return "STOP sent — device not answering", "paused"
        # S11: stopped, not yet confirmed by the device: neither stimulating nor off
        return "■ STOPPING — confirming 0 mA", "stopping"
    if snapshot.stimulating:
        parts = [
            f"{ch.channel}: {fmt_ma(ch.set_ma)} mA"
            for ch in snapshot.channels
            if ch.active or ch.set_ma > 0
        ]
        return "■ STIMULATING  " + "  ".join(parts), "stimulating"
    if state == "paused":
        return "‖ PAUSED — output off", "paused"
    return "Output off", "off"


def session_active(snapshot: Snapshot | None) -> bool:
    """A session is running or paused, or output may still be on (not yet confirmed off)."""
    if snapshot is None:
        return False
    state = str(snapshot.state)
    if state in ("running", "paused"):
        return True
    if state in ("ended", "idle") and snapshot.end_reason is not None:
        return False  # the session is over and STOP was sent
    return snapshot.stimulating


class StatusBar(Vertical):
    """Top of every screen (height 2)."""

    def __init__(self, title: str) -> None:
        super().__init__(id="status-bar")
        self._title = title
        self._shown = ("Loading…", "pending", "Output off", "off")
        """What the device and output lines show now (text and class of each)."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="status-row"):
            yield Static(f"tens-control › {self._title}", id="status-title")
            yield Static(f"■ STOP: {STOP_KEYS}", id="status-stop")
        # composed with what is true now (a screen pushed mid-session must not say "Loading…"
        # until the next redraw); before the back end is open that is "Loading…"
        app = self.app
        snapshot = getattr(app, "snapshot", None)
        if snapshot is not None:
            failed = bool(getattr(app, "backend_error", ""))
            device = device_line(snapshot, True, bool(getattr(app, "connecting", False)), failed)
            self._shown = (*device, *output_line(snapshot))
        device_text, device_class, output_text, output_class = self._shown
        with Horizontal(classes="status-row"):
            yield Static(device_text, id="status-device", classes=device_class)
            yield Static(output_text, id="status-output", classes=output_class)

    def on_mount(self) -> None:
        redraw = getattr(self.screen, "refresh_view", None)
        if callable(redraw):
            self.call_after_refresh(redraw)  # in case a redraw came before this was composed

    def show(
        self, snapshot: Snapshot | None, ready: bool, connecting: bool, failed: bool = False
    ) -> None:
        device_text, device_class = device_line(snapshot, ready, connecting, failed)
        output_text, output_class = output_line(snapshot)
        wanted = (device_text, device_class, output_text, output_class)
        if wanted == self._shown:
            return  # nothing changed: no restyle, no repaint
        self._shown = wanted
        device = self.query_one("#status-device", Static)
        device.update(device_text)
        device.set_classes(device_class)
        output = self.query_one("#status-output", Static)
        output.update(output_text)
        output.set_classes(output_class)


class BannerBar(Vertical):
    """Messages that stay until they no longer apply (lead-off, comms lost, end of session...).

    Each banner starts with its level in words (ALARM, Warning, Note)."""

    def __init__(self) -> None:
        super().__init__(id="banners")
        self._shown: tuple[tuple[str, str, str], ...] = ()

    def show(self, banners: list[tuple[str, str, str]]) -> None:
        """``banners``: (key, level, text) in order."""
        wanted = tuple(banners)
        if wanted == self._shown:
            return
        self._shown = wanted
        self.remove_children()
        widgets = []
        for key, level, text in wanted:
            word = LEVEL_WORDS.get(level, "Note")
            widget = Static(f"{word} — {text}", classes=f"banner level-{level}", markup=False)
            widget.tooltip = key
            widgets.append(widget)
        if widgets:
            self.mount_all(widgets)
        self.display = bool(widgets)
