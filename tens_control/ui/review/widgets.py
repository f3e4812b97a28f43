"""Small widgets of the review UI: a text chart that redraws for its width, and labelled lines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import DataTable, Static

from tens_control.review.wording import Line

Drawer = Callable[[int], list[str]]
"""Draws a chart for a width (in cells) as lines of text."""

MARKS = {"ok": "✓ ", "warn": "⚠ ", "info": ""}
"""The mark in front of a line of each level (the level never shows by colour alone)."""


class PlotView(Widget):
    """A chart drawn as text for the widget's current width (see :mod:`..plot`)."""

    DEFAULT_CSS = """
    PlotView {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, draw: Drawer, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._draw = draw

    def lines(self, width: int | None = None) -> list[str]:
        """The chart's lines at ``width`` (default: the widget's width)."""
        return self._draw(max(1, self.size.width if width is None else width))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self._draw(max(1, width))))

    def render(self) -> Text:
        return Text("\n".join(self.lines()), no_wrap=True, overflow="crop")


def lines_table(lines: Sequence[Line], label_width: int = 14) -> Table:
    """Label / text pairs as a two-column grid; warnings and good news carry a mark."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(width=label_width, no_wrap=True)
    grid.add_column(ratio=1)
    for line in lines:
        label = Text(line.label, style="bold")
        grid.add_row(label, Text(MARKS.get(line.level, "") + line.text))
    return grid


class RowTable(DataTable[Text]):
    """A table whose rows are chosen with Enter (shown in the footer as "Open")."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open", show=True),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)


class LinesView(Static):
    """Labelled lines (the answer, the warnings)."""

    DEFAULT_CSS = """
    LinesView {
        height: auto;
    }
    """

    lines: tuple[Line, ...] = ()
    """The lines shown."""

    def show(self, lines: Sequence[Line], empty: str = "None.") -> None:
        self.lines = tuple(lines)
        self.update(lines_table(lines) if lines else Text(empty))
