"""The chart of an N-of-1 program comparison (issue 17): one bar per block of the schedule, in
schedule order, its height the block's mean daily pain, each program a colour *and* a letter
(A, B, C, D: nothing relies on colour alone), cycles separated by a rule, a block not finished
yet outlined dashed, a wash-out's days left out (the analysis leaves them out too). Drawn with
the primitives of :mod:`tens_control.review.charts`, full width like the others.
"""

from __future__ import annotations

from tens_control.review.charts import (
    AFTER,
    BEFORE,
    INK,
    MUTED,
    SMALL_FONT,
    WIDTH,
    Box,
    Canvas,
    Chart,
    LegendItem,
    Linear,
    draw_value_axis,
    empty,
    header,
    swatch_fill,
)
from tens_control.review.comparison import ComparisonResult
from tens_control.review.model import series_label
from tens_control.review.wording import day_text

HEIGHT = 150.0
COLOURS = (AFTER, BEFORE, "#3f8f4f", "#8a5bb0")
LETTERS = "ABCD"
LEFT = 34.0
RIGHT = WIDTH - 4.0


def comparison_chart(result: ComparisonResult, h: float = HEIGHT) -> Chart:
    c = Canvas()
    plan = result.plan
    letter = {p: LETTERS[i] for i, p in enumerate(plan.programs)}
    colour = {p: COLOURS[i] for i, p in enumerate(plan.programs)}
    title = f"Program comparison — mean daily pain per block, {series_label(result.key)} (NRS)"
    legend: list[LegendItem] = [(f"{letter[p]} {p}", swatch_fill(colour[p])) for p in plan.programs]
    top = header(c, title, legend)
    box = Box(LEFT, top + 4, RIGHT, h - 16)
    y = Linear(0, 10.5, box)
    draw_value_axis(c, y, [0, 2, 4, 6, 8, 10], "NRS", grid=True)
    blocks = result.blocks
    if not blocks:
        empty(c, box, "no blocks")
        return Chart("comparison", title, f"{title}: no blocks.", WIDTH, h, c.body())
    slot = box.width / len(blocks)
    said: list[str] = []
    for i, b in enumerate(blocks):
        x0 = box.left + i * slot + min(2.0, slot * 0.1)
        x1 = box.left + (i + 1) * slot - min(2.0, slot * 0.1)
        mid = (x0 + x1) / 2
        program = b.block.program
        if i and b.block.cycle != blocks[i - 1].block.cycle:
            edge = box.left + i * slot
            c.line(edge, box.top, edge, box.bottom, MUTED, 0.5, "2 2")
        if b.daily_pain is not None:
            top_y = y(b.daily_pain)
            dash = None if b.finished else "2 1.5"
            c.rect(x0, top_y, x1 - x0, y(0) - top_y, colour[program], INK, 0.4, dash)
            c.text(mid, top_y - 2, f"{b.daily_pain:.1f}", size=SMALL_FONT, anchor="middle")
        else:
            c.rect(x0, y(0.3), x1 - x0, y(0) - y(0.3), "white", MUTED, 0.6, "1.5 1")
        c.text(mid, box.bottom + 8, letter[program], size=SMALL_FONT, anchor="middle", bold=True)
        state = "" if b.finished else ", not finished"
        value = f"{b.daily_pain:.1f}" if b.daily_pain is not None else "no rated day"
        said.append(
            f"block {i + 1} ({program}, from {day_text(b.block.first_day)}{state}): {value}"
        )
    c.line(box.left, box.bottom, box.right, box.bottom, INK, 0.6)
    description = f"{title}. {'; '.join(said)}. {result.verdict}."
    return Chart("comparison", title, description, WIDTH, h, c.body())


__all__ = ["HEIGHT", "comparison_chart"]
