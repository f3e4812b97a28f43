"""A text box that never swallows the emergency-stop keys."""

from __future__ import annotations

from textual.widgets import Input


class SafeInput(Input):
    """An :class:`~textual.widgets.Input` for the patient UI.

    Escape and Ctrl+E are App-level priority bindings, so they stop output even while this box
    has focus. Space types a space here, except while a session is running or paused (or any
    output is above 0), when it is the emergency stop like everywhere else.
    """

    def on_mount(self) -> None:
        if not getattr(self.app, "cursor_blink_enabled", True):
            self.cursor_blink = False  # deterministic screenshots

    def check_consume_key(self, key: str, character: str | None) -> bool:
        if key == "space" and getattr(self.app, "session_active", False):
            return False
        return super().check_consume_key(key, character)
