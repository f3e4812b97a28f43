"""Help: every key, and the safety reminders."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from tens_control.ui.keys import KEYS
from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import SAFETY_REMINDERS


def keys_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(ratio=1)
    for number, (group, rows) in enumerate(KEYS):
        if number:
            table.add_row("", "")
        table.add_row(Text(group, style="bold"), "")
        for keys, what in rows:
            table.add_row(f"  {keys}", what)
    return table


def safety_text() -> str:
    return "\n".join(f"• {line}" for line in SAFETY_REMINDERS)


class HelpScreen(TensScreen):
    TITLE_TEXT = "Help"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b,q,question_mark,f1,enter", "close", "Back", key_display="B"),
    ]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static("Safety first", classes="heading")
            yield Static(safety_text(), id="help-safety", markup=False)
            yield Static("Keys", classes="heading")
            yield Static(keys_table(), id="help-keys")
            yield Static(
                "A session can also end by itself: when its time is up, when an electrode "
                "comes off and is not put back within 10 minutes, when the connection to the "
                "device is lost, or when the device reports a fault. The message on screen "
                "always says what happened and what to do.",
                id="help-ending",
                markup=False,
            )

    def on_mount(self) -> None:
        self.query_one("#help-body", VerticalScroll).focus()  # ↑ ↓ scroll

    def action_close(self) -> None:
        self.app.pop_screen()
