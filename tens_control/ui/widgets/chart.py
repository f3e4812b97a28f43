"""A small bar chart with a fixed scale (pain 0–10), drawn with block characters.

Textual's Sparkline scales to the data's own minimum and maximum, which makes a change from 6 to
5 look as large as one from 10 to 0. Pain needs a fixed scale, so this draws each value as a bar
of eighth-blocks against 0..``top`` with the axis labelled.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"


def bar_rows(values: Sequence[float], height: int, top: float) -> list[str]:
    """The chart's rows, top row first; one column per value."""
    levels = height * 8
    rows = [[" "] * len(values) for _ in range(height)]
    for x, value in enumerate(values):
        filled = round(max(0.0, min(top, value)) / top * levels) if top > 0 else 0
        if value > 0 and filled == 0:
            filled = 1  # a rating of 1 is visible, and differs from 0
        for row in range(height):
            # row 0 is the top
            from_bottom = height - 1 - row
            part = filled - from_bottom * 8
            rows[row][x] = BLOCKS[max(0, min(8, part))]
    return ["".join(r) for r in rows]


class ScaleChart(Widget):
    """Bars for ``values`` on a fixed 0..``top`` scale (the newest value at the right).

    ``axis=False``: no axis labels (the caller labels the scale), one column per value."""

    DEFAULT_CSS = """
    ScaleChart {
        height: 3;
        width: 1fr;
    }
    """

    def __init__(
        self,
        values: Sequence[float] = (),
        *,
        top: float = 10.0,
        axis: bool = True,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.values: list[float] = list(values)
        self.top = top
        self.axis = axis

    def set_values(self, values: Sequence[float], top: float | None = None) -> None:
        new = list(values)
        if new == self.values and (top is None or top == self.top):
            return
        self.values = new
        if top is not None:
            self.top = top
        self.refresh()

    def render(self) -> Text:
        height = max(1, self.size.height)
        if not self.axis:
            width = max(1, self.size.width)
            rows = bar_rows(self.values[-width:], height, self.top)
            return Text("\n".join(rows), no_wrap=True, overflow="crop")
        width = max(1, self.size.width - 4)
        gap = 1 if len(self.values) * 2 <= width else 0
        per = 1 + gap
        shown = self.values[-max(1, width // per) :]
        rows = bar_rows(shown, height, self.top)
        labels = [f"{self.top:>2g} " if i == 0 else "   " for i in range(height)]
        if height > 1:
            labels[-1] = " 0 "
        text = Text(no_wrap=True, overflow="crop")
        for i, row in enumerate(rows):
            line = (" " * gap).join(row) if gap else row
            text.append(labels[i] + "┤", style="dim")
            text.append(line)
            if i < len(rows) - 1:
                text.append("\n")
        return text
