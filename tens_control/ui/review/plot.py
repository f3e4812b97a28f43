"""Charts drawn as text (block characters), for a terminal of any width.

Every chart has a fixed scale (pain 0–10; amplitude 0 to a round number above the highest value)
and a labelled axis, so a change from 6 to 5 does not look like one from 10 to 0. A missing
value is drawn as ``·`` on the baseline, never as a 0 (a 0 is an empty column). The functions
return lines of text; :mod:`tens_control.ui.review.widgets` puts them on screen.

Time runs left to right on a linear axis: by day over a patient's period (each column one day,
or several days when the period is wider than the chart), by seconds over a session.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

BLOCKS = " ▁▂▃▄▅▆▇█"
MISSING = "·"
GUTTER = 14
"""Width of the left column of every chart: a row label, then the scale."""
SCALE_W = 4
"""Width of the scale numbers at the right of the gutter."""


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def nice_top(value: float, step: float = 5.0) -> float:
    """The next multiple of ``step`` at or above ``value`` (at least ``step``)."""
    return max(step, math.ceil(value / step) * step)


def bar_rows(values: Sequence[float | None], height: int, top: float) -> list[str]:
    """The rows of a bar chart (top row first), one column per value on the scale 0..``top``:
    eighth-blocks, at least one eighth for any value above 0; ``None`` is ``·`` on the bottom
    row."""
    levels = height * 8
    rows = [[" "] * len(values) for _ in range(height)]
    for x, value in enumerate(values):
        if value is None:
            rows[-1][x] = MISSING
            continue
        filled = round(max(0.0, min(top, value)) / top * levels) if top > 0 else 0
        if value > 0 and filled == 0:
            filled = 1
        for row in range(height):
            part = filled - (height - 1 - row) * 8
            rows[row][x] = BLOCKS[max(0, min(8, part))]
    return ["".join(r) for r in rows]


def scale_label(value: float) -> str:
    return f"{value:g}"


def with_gutter(rows: Sequence[str], label: str, top: float, gutter: int = GUTTER) -> list[str]:
    """``rows`` with a left gutter: ``label`` on the middle row (the first of two), the
    scale's top on the first row and 0 on the last, and an axis line."""
    out = []
    n = len(rows)
    label_w = gutter - SCALE_W - 1
    for i, row in enumerate(rows):
        if i == 0:
            mark, tick = scale_label(top), "┤"
        elif i == n - 1:
            mark, tick = "0", "┤"
        else:
            mark, tick = "", "│"
        text = label if i == (n - 1) // 2 else ""
        out.append(f"{text[:label_w]:<{label_w}}{mark:>{SCALE_W}} {tick}{row}")
    return out


@dataclass(frozen=True, slots=True)
class DayAxis:
    """How days map to columns: ``days_per_col`` days in a column, ``cols_per_day`` columns for
    a day (one of the two is 1)."""

    start: date
    end: date
    days_per_col: int
    cols_per_day: int

    @staticmethod
    def fit(start: date, end: date, width: int, max_cols_per_day: int = 4) -> DayAxis:
        days = (end - start).days + 1
        width = max(1, width)
        if days <= width:
            return DayAxis(start, end, 1, max(1, min(max_cols_per_day, width // days)))
        return DayAxis(start, end, math.ceil(days / width), 1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def buckets(self) -> int:
        return math.ceil(self.days / self.days_per_col)

    @property
    def width(self) -> int:
        return self.buckets * self.cols_per_day

    def bucket(self, day: date) -> int | None:
        i = (day - self.start).days
        if i < 0 or day > self.end:
            return None
        return i // self.days_per_col

    def bucket_start(self, i: int) -> date:
        return self.start + timedelta(days=i * self.days_per_col)

    def spread(self, values: Sequence[float | None]) -> list[float | None]:
        """One value per bucket -> one per column (a day drawn ``cols_per_day`` wide, with a
        one-column gap when it is at least 3 wide)."""
        if self.cols_per_day == 1:
            return list(values)
        out: list[float | None] = []
        gap = self.cols_per_day >= 3
        for v in values:
            if gap:
                out.extend([v] * (self.cols_per_day - 1))
                out.append(_GAP)
            else:
                out.extend([v] * self.cols_per_day)
        return out

    def spread_text(self, marks: Sequence[str]) -> str:
        if self.cols_per_day == 1:
            return "".join(marks)
        return "".join(
            m * (self.cols_per_day - 1) + (" " if self.cols_per_day >= 3 else m) for m in marks
        )

    def scale_line(self, gutter: int = GUTTER) -> str:
        """Dates under the chart: the first day at the left, the last at the right."""
        first = f"{self.start.day} {self.start:%b}"
        last_day = self.bucket_start(self.buckets - 1)
        last = f"{last_day.day} {last_day:%b}"
        width = self.width
        if width < len(first) + len(last) + 1:
            body = first  # whole, even if wider than a narrow chart (never "7 De")
        else:
            body = first + " " * (width - len(first) - len(last)) + last
        return " " * (gutter + 1) + body

    def unit_text(self) -> str:
        if self.days_per_col == 1:
            return "one column = 1 day"
        return f"one column = {self.days_per_col} days"


_GAP = -1.0
"""A column left blank between days (drawn as a space, not as a missing value)."""


def bucket_values(
    axis: DayAxis,
    values: Mapping[date, Sequence[float]],
    summary: Callable[[Sequence[float]], float] = mean,
) -> list[float | None]:
    """One value per bucket of ``axis``: ``summary`` of every value of its days, or ``None``
    when none of its days has a value."""
    groups: list[list[float]] = [[] for _ in range(axis.buckets)]
    for day, vs in values.items():
        i = axis.bucket(day)
        if i is not None:
            groups[i].extend(vs)
    return [summary(g) if g else None for g in groups]


def day_chart(
    axis: DayAxis,
    values: Sequence[float | None],
    *,
    label: str,
    top: float,
    height: int,
    gutter: int = GUTTER,
) -> list[str]:
    """A bar chart over ``axis`` (``values``: one per bucket)."""
    cols = axis.spread(values)
    rows = bar_rows([None if v == _GAP else v for v in cols], height, top)
    if axis.cols_per_day >= 3:
        # the gap columns are blank, not missing
        rows = ["".join(" " if cols[i] == _GAP else ch for i, ch in enumerate(r)) for r in rows]
    return with_gutter(rows, label, top, gutter)


def lane(
    axis: DayAxis, spans: Sequence[tuple[date, date]], mark: str, label: str, gutter: int = GUTTER
) -> str:
    """One row of the timeline: ``mark`` in every bucket that a span (first day, last day)
    touches, ``─`` elsewhere."""
    marks = ["─"] * axis.buckets
    for first, last in spans:
        lo = max(first, axis.start)
        hi = min(last, axis.end)
        if lo > hi:
            continue
        a, b = axis.bucket(lo), axis.bucket(hi)
        if a is None or b is None:
            continue
        for i in range(a, b + 1):
            marks[i] = mark
    return f"{label[: gutter - 1]:<{gutter - 1}} │{axis.spread_text(marks)}"


def step_values(
    points: Sequence[tuple[float, float]], duration: float, columns: int
) -> list[float | None]:
    """A step function (time, level) sampled into ``columns`` equal slices of
    [0, ``duration``]: each column shows the highest level held during its slice."""
    if columns <= 0:
        return []
    if not points:
        return [None] * columns
    span = duration if duration > 0 else max(1.0, points[-1][0])
    out: list[float | None] = []
    pts = sorted(points)
    for c in range(columns):
        t0 = span * c / columns
        t1 = span * (c + 1) / columns
        level = 0.0
        for t, v in pts:
            if t <= t0:
                level = v
        top = level
        for t, v in pts:
            if t0 < t < t1:
                top = max(top, v)
        out.append(top)
    return out


def sample_values(
    samples: Sequence[tuple[float, float]], duration: float, columns: int
) -> list[float | None]:
    """Samples (time, value) averaged into ``columns`` equal slices of [0, ``duration``]
    (``None`` for a slice without a sample)."""
    if columns <= 0:
        return []
    span = duration if duration > 0 else max((t for t, _ in samples), default=1.0) or 1.0
    groups: list[list[float]] = [[] for _ in range(columns)]
    for t, v in samples:
        i = min(columns - 1, max(0, int(t / span * columns)))
        groups[i].append(v)
    return [mean(g) if g else None for g in groups]


def clock_text(seconds: float) -> str:
    """``12:05`` (minutes:seconds), ``1:02:03`` past an hour."""
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def time_scale_line(duration: float, columns: int, gutter: int = GUTTER) -> str:
    """``0:00`` at the left, the session's length at the right."""
    first, last = "0:00", clock_text(duration)
    if columns < len(first) + len(last) + 1:
        body = first[:columns]
    else:
        body = first + " " * (columns - len(first) - len(last)) + last
    return " " * (gutter + 1) + body


def hbar(value: float, top: float, width: int) -> str:
    """A horizontal bar of ``value`` on 0..``top`` in ``width`` cells (eighth-cell ends)."""
    eighths = "▏▎▍▌▋▊▉█"
    cells = max(0.0, min(top, value)) / top * width if top > 0 else 0.0
    full = int(cells)
    rest = round((cells - full) * 8)
    bar = "█" * full
    if rest > 0 and full < width:
        bar += eighths[rest - 1]
    if value > 0 and not bar:
        bar = "▏"
    return bar
