"""Export dialogs: choose a format and a file; confirm before replacing an existing file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tens_control.ui.review.data import (
    EXPORT_FORMATS,
    EXPORT_LABELS,
    ExportFormat,
    default_export_name,
)


def format_label(fmt: ExportFormat, chosen: bool) -> str:
    """A format's line in the dialog; the chosen one is marked in words, not only by colour."""
    return f"{'▶' if chosen else ' '} {fmt:<5} {EXPORT_LABELS[fmt]}{'  ← chosen' if chosen else ''}"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What the clinician confirmed: the format, the file, and whether it may be replaced."""

    pseudonym: str
    fmt: ExportFormat
    path: Path
    replace: bool


class ConfirmReplace(ModalScreen[bool]):
    """``FILE already exists. Replace it?`` -- y replaces, n or Esc keeps it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, replace it"),
        Binding("n", "answer(False)", "No, keep it"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, path: Path) -> None:
        super().__init__(id="confirm-replace")
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label("Replace the file?", classes="dialog-title")
            yield Static(
                f"{self.path}\nalready exists. Replace it with the new report?\n\n"
                "y  yes, replace it        n  no, keep it (choose another name)"
            )
        yield Footer()

    def action_answer(self, replace: bool) -> None:
        self.dismiss(replace)


class ExportDialog(ModalScreen[ExportRequest | None]):
    """Choose the report format (arrow keys, space) and the file (relative names are in
    ``folder``); Enter on the file name writes it. An existing file is replaced only after
    :class:`ConfirmReplace`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "write", "Write", priority=True),
    ]

    def __init__(self, pseudonym: str, folder: Path, fmt: ExportFormat = "html") -> None:
        super().__init__(id="export-dialog")
        self.pseudonym = pseudonym
        self.folder = folder
        self.fmt: ExportFormat = fmt

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box", classes="dialog"):
            yield Label(f"Export the report of {self.pseudonym}", classes="dialog-title")
            yield OptionList(
                *(Option(format_label(f, f == self.fmt), id=f) for f in EXPORT_FORMATS),
                id="formats",
            )
            yield Label(f"File (in {self.folder} unless you give a full path):")
            yield Input(default_export_name(self.pseudonym, self.fmt), id="export-path")
            yield Static("", id="export-error")
            yield Static(
                "↑↓ format, enter: file name · enter on the file name or ctrl+s: write · "
                "esc: cancel. An existing file is never replaced without asking.",
                id="export-help",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).cursor_blink = bool(
            getattr(self.app, "cursor_blink", True)
        )
        formats = self.query_one("#formats", OptionList)
        formats.highlighted = EXPORT_FORMATS.index(self.fmt)
        formats.focus()

    @on(OptionList.OptionHighlighted, "#formats")
    def _format_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """The highlighted format is the chosen one (marked in words, and the file name's
        suffix follows it unless the clinician typed a name)."""
        new = next((f for f in EXPORT_FORMATS if f == event.option_id), self.fmt)
        box = self.query_one("#export-path", Input)
        if box.value.strip() in ("", default_export_name(self.pseudonym, self.fmt)):
            box.value = default_export_name(self.pseudonym, new)
        self.fmt = new
        formats = self.query_one("#formats", OptionList)
        for fmt in EXPORT_FORMATS:
            formats.replace_option_prompt(fmt, format_label(fmt, fmt == new))

    @on(OptionList.OptionSelected, "#formats")
    def _format_selected(self) -> None:
        self.query_one("#export-path", Input).focus()

    def target(self) -> Path | None:
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.folder / path

    @on(Input.Submitted, "#export-path")
    def _submitted(self) -> None:
        self.action_write()

    def action_write(self) -> None:
        error = self.query_one("#export-error", Static)
        path = self.target()
        if path is None:
            error.update("⚠ Give a file name.")
            return
        if path.is_dir():
            error.update(f"⚠ {path} is a folder; give a file name.")
            return
        if not path.parent.is_dir():
            error.update(f"⚠ The folder {path.parent} does not exist.")
            return
        if path.exists():

            def answered(replace: bool | None) -> None:
                if replace:
                    self.dismiss(ExportRequest(self.pseudonym, self.fmt, path, replace=True))
                else:
                    error.update("Kept the existing file; choose another name.")
                    self.query_one("#export-path", Input).focus()

            self.app.push_screen(ConfirmReplace(path), answered)
            return
        self.dismiss(ExportRequest(self.pseudonym, self.fmt, path, replace=False))

    def action_cancel(self) -> None:
        self.dismiss(None)
