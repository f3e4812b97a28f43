"""The report's charts, written directly as SVG (no plotting library).

Four charts, each a :class:`Chart` sized for the full width of an A4 page less its margins:

- ``pain``: pain before and after each session (headline series) with the 7-day rolling mean;
- ``weekly``: weekly means against the baseline, with the 30 % and 50 % reduction lines;
- ``amplitude``: each session's mean amplitude and the daily mean, flagged tolerance windows
  shaded;
- ``timeline``: the 7-day mean pain above other treatments, adverse events and faults.

The HTML report inlines :meth:`Chart.svg` (with a ``<title>`` and a ``<desc>`` that says in words
what the chart shows, for screen readers); the PDF places the same drawing as vector graphics
(fpdf2 reads the SVG) with :attr:`Chart.description` as its alternative text.

Why no matplotlib: these are simple charts (dots, lines, bars, a date axis) and matplotlib spent
about 1.4 s drawing them for a year of sessions (one artist per session, a layout solver, text
layout for every tick; bench/p4_report.py). Written directly, every series is one ``<path>``
and the four charts of a year take about 30 ms.

Nothing relies on colour alone: before/after use different markers (● ▼), the reference lines
differ in style (solid, dashed, dotted), the baseline (run-in) is hatched, a week without a mean and
a tolerance window have dashed outlines, adverse events (✖) and faults (▲) have their own rows.

Coordinates are points (1/72 in). Text is DejaVu Sans (the PDF embeds it), measured with its own
advance widths (:data:`_ADVANCE`), so labels are placed without a font library.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tens_control.review.analytics import (
    PainOutcome,
    PatientSummary,
    RollingPoint,
    Zone,
    local_day,
    per_session_changes,
)
from tens_control.review.model import PatientData, series_label
from tens_control.review.wording import day_text, num, plural, span_text

CHART_NAMES = ("pain", "weekly", "amplitude", "timeline")
WIDTH = 526.0
"""Chart width in points: 186 mm, an A4 page less 12 mm margins."""
HEIGHTS: dict[str, float] = {"pain": 194.0, "weekly": 158.0, "amplitude": 144.0, "timeline": 166.0}

FONT_FAMILY = "DejaVu Sans, Arial, Helvetica, sans-serif"
FONT = 7.5
TITLE_FONT = 8.5
LEGEND_FONT = 7.0
SMALL_FONT = 6.5

INK = "#1f2933"
BEFORE = "#b83232"
AFTER = "#1f6fb2"
MUTED = "#8a94a0"
GRID = "#e5e8eb"
BASE_FILL = "#d9dee3"
SHADE = "#fbeacb"  # #f3c26b at 35 % on white (no transparency: the PDF draws it the same)
TREATMENT = "#629ac9"  # AFTER at 70 % on white

# --- text metrics -----------------------------------------------------------------------------

_FIRST = 0x20
_ADVANCE: dict[bool, tuple[int, ...]] = {
    # DejaVu Sans / DejaVu Sans Bold 2.35 advance widths of U+0020..U+007E, in 1/2048 em
    # (tests/test_review_charts.py checks them against the font the PDF embeds).
    False: (
        *(651, 821, 942, 1716, 1303, 1946, 1597, 563, 799, 799, 1024, 1716, 651, 739, 651, 690),
        *(1303,) * 10,
        *(690, 690, 1716, 1716, 1716, 1087, 2048, 1401, 1405, 1430, 1577, 1294, 1178, 1587),
        *(1540, 604, 604, 1343, 1141, 1767, 1532, 1612, 1235, 1612, 1423, 1300, 1251, 1499),
        *(1401, 2025, 1403, 1251, 1403, 799, 690, 799, 1716, 1024, 1024, 1255, 1300, 1126),
        *(1300, 1260, 721, 1300, 1298, 569, 569, 1186, 569, 1995, 1298, 1253, 1300, 1300),
        *(842, 1067, 803, 1298, 1212, 1675, 1212, 1212, 1075, 1303, 690, 1303, 1716),
    ),
    True: (
        *(713, 934, 1067, 1716, 1425, 2052, 1786, 627, 936, 936, 1071, 1716, 778, 850, 778, 748),
        *(1425,) * 10,
        *(819, 819, 1716, 1716, 1716, 1188, 2048, 1585, 1561, 1503, 1700, 1399, 1399, 1681),
        *(1714, 762, 762, 1587, 1305, 2038, 1714, 1741, 1501, 1741, 1577, 1475, 1397, 1663),
        *(1585, 2259, 1579, 1483, 1485, 936, 748, 936, 1716, 1024, 1024, 1382, 1466, 1214),
        *(1466, 1389, 891, 1466, 1458, 702, 702, 1362, 702, 2134, 1458, 1407, 1466, 1466),
        *(1010, 1219, 979, 1458, 1335, 1892, 1321, 1335, 1192, 1458, 748, 1458, 1716),
    ),
}
_WIDE = 1716  # other characters (–, ≥, ×, →: 1024–2048): a generous average


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width of ``text`` in points at ``size`` points (DejaVu Sans)."""
    table = _ADVANCE[bold]
    units = 0
    for ch in text:
        i = ord(ch) - _FIRST
        units += table[i] if 0 <= i < len(table) else _WIDE
    return units * size / 2048


# --- SVG --------------------------------------------------------------------------------------


def _f(v: float) -> str:
    """A coordinate: one decimal, no ``.0``."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: its name, title, a description in words and its SVG drawing."""

    name: str
    title: str
    description: str
    """What the chart shows, in words (the text alternative for screen readers)."""
    width: float
    height: float
    body: str
    """The drawing: SVG elements in points, without the ``<svg>`` element."""

    def svg(self, accessible: bool = True) -> str:
        """The chart as one ``<svg>`` element. ``accessible``: an image role with the title
        and the description as ``<title>`` and ``<desc>`` (HTML); without them for the PDF,
        which takes the description as the alternative text of the drawing."""
        w, h = _f(self.width), _f(self.height)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
            f'width="{w}" height="{h}"'
        )
        if accessible:
            tid, did = f"chart-{self.name}-title", f"chart-{self.name}-desc"
            head += (
                f' role="img" aria-labelledby="{tid} {did}">'
                f'<title id="{tid}">{_esc(self.title)}</title>'
                f'<desc id="{did}">{_esc(self.description)}</desc>'
            )
        else:
            head += ">"
        return f"{head}{self.body}</svg>"


class Canvas:
    """SVG elements collected in drawing order."""

    def __init__(self) -> None:
        self.parts: list[str] = [
            f'<g font-family="{FONT_FAMILY}" font-size="{FONT}" fill="{INK}" stroke="none">'
        ]

    def body(self) -> str:
        return "".join([*self.parts, "</g>"])

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = FONT,
        anchor: str = "start",
        bold: bool = False,
        color: str | None = None,
    ) -> None:
        attrs = f' x="{_f(x)}" y="{_f(y)}"'
        if size != FONT:
            attrs += f' font-size="{size}"'
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        if bold:
            attrs += ' font-weight="bold"'
        if color is not None:
            attrs += f' fill="{color}"'
        self.parts.append(f"<text{attrs}>{_esc(text)}</text>")

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        color: str = INK,
        width: float = 0.8,
        dash: str | None = None,
    ) -> None:
        self.stroke(f"M{_f(x1)} {_f(y1)}L{_f(x2)} {_f(y2)}", color, width, dash)

    def stroke(
        self,
        d: str,
        color: str,
        width: float,
        dash: str | None = None,
        cap: str | None = None,
    ) -> None:
        if not d:
            return
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        if cap:
            extra += f' stroke-linecap="{cap}" stroke-linejoin="{cap}"'
        self.parts.append(
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{extra}/>'
        )

    def fill(self, d: str, color: str, outline: str | None = None, width: float = 0.5) -> None:
        if not d:
            return
        extra = f' stroke="{outline}" stroke-width="{width}"' if outline else ""
        self.parts.append(f'<path d="{d}" fill="{color}"{extra}/>')

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        color: str,
        outline: str | None = None,
        width: float = 0.5,
        dash: str | None = None,
    ) -> None:
        extra = f' stroke="{outline}" stroke-width="{width}"' if outline else ""
        if dash:
            extra += f' stroke-dasharray="{dash}"'
        self.parts.append(
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" '
            f'fill="{color}"{extra}/>'
        )


# --- markers: one path per series (a dot is a zero-length line with round caps) -------------


def dots(points: Iterable[tuple[float, float]]) -> str:
    """Path data for round dots (stroke it with round caps; the stroke width is the size)."""
    seen = {f"M{_f(x)} {_f(y)}h0" for x, y in points}
    return "".join(sorted(seen))


def triangles_down(points: Iterable[tuple[float, float]], r: float) -> str:
    """Path data for ▼ markers of half-width ``r`` centred on each point (fill it)."""
    seen = {
        f"M{_f(x - r)} {_f(y - 0.6 * r)}h{_f(2 * r)}l{_f(-r)} {_f(1.7 * r)}z" for x, y in points
    }
    return "".join(sorted(seen))


def triangles_up(points: Iterable[tuple[float, float]], r: float) -> str:
    """Path data for ▲ markers of half-width ``r`` centred on each point (fill it)."""
    seen = {
        f"M{_f(x - r)} {_f(y + 0.6 * r)}h{_f(2 * r)}l{_f(-r)} {_f(-1.7 * r)}z" for x, y in points
    }
    return "".join(sorted(seen))


def crosses(points: Iterable[tuple[float, float]], r: float) -> str:
    """Path data for ✖ markers (stroke it)."""
    return "".join(
        f"M{_f(x - r)} {_f(y - r)}l{_f(2 * r)} {_f(2 * r)}m0 {_f(-2 * r)}l{_f(-2 * r)} {_f(2 * r)}"
        for x, y in points
    )


def polyline(runs: Iterable[Sequence[tuple[float, float]]]) -> str:
    """Path data for lines through each run of points (a new run leaves a gap)."""
    out: list[str] = []
    for run in runs:
        if not run:
            continue
        (x0, y0), rest = run[0], run[1:]
        out.append(f"M{_f(x0)} {_f(y0)}")
        out.extend(f"L{_f(x)} {_f(y)}" for x, y in rest)
        if not rest:
            out.append("h0")  # a lone point still shows (round caps)
    return "".join(out)


def hatch(x: float, y: float, w: float, h: float, gap: float = 2.5) -> str:
    """Path data for diagonal hatching (/) inside the rectangle."""
    out: list[str] = []
    k = x + y + gap
    while k < x + w + y + h:
        ax = max(x, k - (y + h))
        bx = min(x + w, k - y)
        if bx > ax:
            out.append(f"M{_f(ax)} {_f(k - ax)}L{_f(bx)} {_f(k - bx)}")
        k += gap
    return "".join(out)


# --- scales and axes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Box:
    """The plot area, in points."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass(frozen=True, slots=True)
class Linear:
    """A value axis: ``lo``..``hi`` onto the box, bottom to top."""

    lo: float
    hi: float
    box: Box

    def __call__(self, v: float) -> float:
        return self.box.bottom - (v - self.lo) / (self.hi - self.lo) * self.box.height


@dataclass(frozen=True, slots=True)
class Days:
    """A time axis: local days ``first``..``last`` (whole days) onto the box, left to right."""

    first: date
    last: date
    box: Box

    @property
    def span(self) -> int:
        return (self.last - self.first).days + 1

    def at(self, day: date, hour: float = 0.0) -> float:
        pos = (day - self.first).days + hour / 24
        return self.box.left + pos / self.span * self.box.width

    def local(self, local: datetime) -> float:
        """A local time (see :func:`to_local`), placed at its time of day."""
        hour = local.hour + local.minute / 60 + local.second / 3600
        return self.at(local.date(), hour)

    def moment(self, when: datetime, tz: Zone) -> float:
        return self.local(to_local(when, tz))

    def inside(self, day: date) -> bool:
        return self.first <= day <= self.last


def to_local(when: datetime, tz: Zone) -> datetime:
    """``when`` in ``tz`` (``None``: this computer's zone; a naive datetime is read as UTC),
    as :func:`tens_control.review.analytics.local_day` reads it."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz)


MONTH_STEPS = (1, 2, 3, 6, 12)


def date_ticks(first: date, last: date, max_ticks: int) -> list[tuple[date, str, str]]:
    """Ticks for a date axis: (day, label, second line) — the second line names the year on the
    first tick and wherever the year changes."""
    span = (last - first).days + 1
    days: list[date] = []
    for step in (1, 2, 7, 14):
        if span / step <= max_ticks:
            start = first if step < 7 else first + timedelta(days=(7 - first.weekday()) % 7)
            days = [start + timedelta(days=i) for i in range(0, (last - start).days + 1, step)]
            break
    by_month = not days
    if by_month:
        for step in MONTH_STEPS:
            months = (last.year - first.year) * 12 + last.month - first.month + 1
            if months / step <= max_ticks or step == MONTH_STEPS[-1]:
                break
        m = first.year * 12 + first.month - 1
        if date(m // 12, m % 12 + 1, 1) < first:
            m += 1
        m += (-m) % step  # months aligned on the step (Jan, Apr, Jul, Oct for 3)
        while date(m // 12, m % 12 + 1, 1) <= last:
            days.append(date(m // 12, m % 12 + 1, 1))
            m += step
    out: list[tuple[date, str, str]] = []
    year = None
    for d in days:
        label = f"{d:%b}" if by_month else f"{d.day} {d:%b}"
        out.append((d, label, str(d.year) if d.year != year else ""))
        year = d.year
    return out


def draw_date_axis(c: Canvas, axis: Days, max_ticks: int = 9) -> None:
    box = axis.box
    c.line(box.left, box.bottom, box.right, box.bottom, INK, 0.6)
    ticks = date_ticks(axis.first, axis.last, max_ticks)
    marks = []
    for d, label, year in ticks:
        x = axis.at(d)
        marks.append(f"M{_f(x)} {_f(box.bottom)}v2.5")
        half = max(text_width(label, FONT), text_width(year, FONT)) / 2
        tx = min(x, WIDTH - half)  # the last label stays on the chart
        c.text(tx, box.bottom + 10, label, anchor="middle")
        if year:
            c.text(tx, box.bottom + 18, year, anchor="middle", color="#52606d")
    c.stroke("".join(marks), INK, 0.6)


def draw_value_axis(
    c: Canvas,
    scale: Linear,
    ticks: Sequence[float],
    unit: str,
    grid: bool = True,
    labels: Sequence[str] | None = None,
) -> None:
    box = scale.box
    if grid:
        c.stroke(
            "".join(f"M{_f(box.left)} {_f(scale(v))}H{_f(box.right)}" for v in ticks if v),
            GRID,
            0.5,
        )
    c.line(box.left, box.top, box.left, box.bottom, INK, 0.6)
    c.stroke("".join(f"M{_f(box.left - 2.5)} {_f(scale(v))}h2.5" for v in ticks), INK, 0.6)
    for i, v in enumerate(ticks):
        label = labels[i] if labels is not None else f"{v:g}"
        c.text(box.left - 4, scale(v) + 2.6, label, anchor="end")
    if unit:
        c.text(box.left - 4, box.top - 6, unit, anchor="end", size=SMALL_FONT, color="#52606d")


def nice_ticks(hi: float, most: int = 6) -> list[float]:
    """0, step, 2·step, … up to at least ``hi``, with a 1-2-5 step and at most ``most`` ticks
    (at least 0 and 1)."""
    hi = max(hi, 1.0)
    step = 1.0
    while True:
        for m in (1, 2, 5):
            s = step * m
            n = int(-(-hi // s))
            if n + 1 <= most:
                return [i * s for i in range(n + 1)]
        step *= 10


# --- title and legend -------------------------------------------------------------------------

LegendItem = tuple[str, Callable[[Canvas, float, float], None]]


def swatch_line(
    color: str, width: float = 1.4, dash: str | None = None
) -> Callable[[Canvas, float, float], None]:
    def draw(c: Canvas, x: float, y: float) -> None:
        c.line(x, y, x + 14, y, color, width, dash)

    return draw


def swatch_dot(color: str, size: float = 3.0) -> Callable[[Canvas, float, float], None]:
    def draw(c: Canvas, x: float, y: float) -> None:
        c.stroke(dots([(x + 7, y)]), color, size, cap="round")

    return draw


def swatch_fill(color: str) -> Callable[[Canvas, float, float], None]:
    def draw(c: Canvas, x: float, y: float) -> None:
        c.rect(x, y - 3.5, 14, 7, color, INK, 0.4, "2 1.5")

    return draw


def swatch_hatched(color: str) -> Callable[[Canvas, float, float], None]:
    def draw(c: Canvas, x: float, y: float) -> None:
        c.rect(x, y - 3.5, 14, 7, color, INK, 0.5)
        c.stroke(hatch(x, y - 3.5, 14, 7), INK, 0.3)

    return draw


def swatch_triangle(color: str) -> Callable[[Canvas, float, float], None]:
    def draw(c: Canvas, x: float, y: float) -> None:
        c.fill(triangles_down([(x + 7, y)], 2.2), color)

    return draw


SWATCH = 14.0


def legend_width(items: Sequence[LegendItem]) -> float:
    return sum(SWATCH + 3 + text_width(label, LEGEND_FONT) + 10 for label, _ in items) - 10


def header(c: Canvas, title: str, items: Sequence[LegendItem] = ()) -> float:
    """Draw the title (top left) and the legend (top right, or on a line of its own when it
    does not fit beside the title); return where the plot may start."""
    c.text(0, 9, title, size=TITLE_FONT, bold=True)
    if not items:
        return 26.0
    lw = legend_width(items)
    beside = text_width(title, TITLE_FONT, bold=True) + 16 + lw <= RIGHT
    y = 6.5 if beside else 19.0
    x = RIGHT - lw
    c.parts.append('<g class="legend">')
    for label, draw in items:
        draw(c, x, y)
        x += SWATCH + 3
        c.text(x, y + 2.5, label, size=LEGEND_FONT)
        x += text_width(label, LEGEND_FONT) + 10
    c.parts.append("</g>")
    return 26.0 if beside else 37.0


def empty(c: Canvas, box: Box, text: str) -> None:
    c.text(
        (box.left + box.right) / 2,
        (box.top + box.bottom) / 2,
        text,
        anchor="middle",
        color="#52606d",
    )


MIN_AXIS_DAYS = 7
"""A date axis covers at least this many days, the period centred on it, so that one day of
data is drawn in the middle of a week, not stretched over (or crammed into) the whole width."""


def period(s: PatientSummary) -> tuple[date, date] | None:
    if s.period_start is None or s.period_end is None:
        return None
    return s.period_start, s.period_end


def axis_days(s: PatientSummary) -> tuple[date, date] | None:
    """The days of the charts' shared date axis: the period, widened (centred) to at least
    :data:`MIN_AXIS_DAYS` days."""
    span = period(s)
    if span is None:
        return None
    first, last = span
    short = MIN_AXIS_DAYS - ((last - first).days + 1)
    if short > 0:
        first -= timedelta(days=short // 2)
        last += timedelta(days=short - short // 2)
    return first, last


def _rolling_runs(
    points: Sequence[RollingPoint], axis: Days, scale: Linear
) -> list[list[tuple[float, float]]]:
    """The rolling mean as runs of consecutive days with a value (a day without one is a gap)."""
    runs: list[list[tuple[float, float]]] = []
    prev: date | None = None
    for p in points:
        if p.mean is None or not axis.inside(p.day):
            prev = None
            continue
        if prev is None or (p.day - prev).days != 1:
            runs.append([])
        runs[-1].append((axis.at(p.day, 12), scale(p.mean)))
        prev = p.day
    return runs


def _rolling_text(o: PainOutcome) -> str:
    vals = [p for p in o.rolling if p.mean is not None]
    if not vals:
        return "no 7-day mean (needs ≥ 3 rated days in the 7-day window)"
    lo = min(vals, key=lambda p: p.mean or 0.0)
    hi = max(vals, key=lambda p: p.mean or 0.0)
    return (
        f"7-day mean {num(vals[0].mean)} on {day_text(vals[0].day)}, "
        f"{num(vals[-1].mean)} on {day_text(vals[-1].day)} "
        f"(lowest {num(lo.mean)} on {day_text(lo.day)}, highest {num(hi.mean)} on "
        f"{day_text(hi.day)})"
    )


LEFT = 34.0  # the least room for value labels left of the plot
RIGHT = WIDTH - 4.0
DATE_ROOM = 22.0  # below the plot: tick labels and the year


@dataclass(frozen=True, slots=True)
class Frame:
    """What the four charts share, so that their date axes line up: the plot's left and right
    edges (points) and the days of the axis."""

    left: float
    right: float
    days: tuple[date, date] | None

    def axis(self, top: float, bottom: float) -> Days | None:
        if self.days is None:
            return None
        return Days(self.days[0], self.days[1], Box(self.left, top, self.right, bottom))


def treatment_rows(data: PatientData, s: PatientSummary, tz: Zone) -> list[str]:
    """The timeline's row labels: each kind of other treatment, then adverse events, faults."""
    rows = [k.replace("_", " ") for k in sorted({t.kind for t in s.treatments})]
    span = period(s)
    if span is not None:
        if any(span[0] <= local_day(a.at, tz) <= span[1] for a in s.adverse_events):
            rows.append("adverse event")
        if any(
            e.kind == "fault" and span[0] <= local_day(e.at, tz) <= span[1] for e in data.events
        ):
            rows.append("fault")
    return rows


def frame_of(data: PatientData, s: PatientSummary, tz: Zone) -> Frame:
    """The shared frame: the left edge leaves room for the widest timeline row label."""
    left = max([LEFT, *(text_width(r, FONT) + 8 for r in treatment_rows(data, s, tz))])
    return Frame(left, RIGHT, axis_days(s))


# --- the four charts --------------------------------------------------------------------------


def pain_chart(
    data: PatientData, s: PatientSummary, tz: Zone, frame: Frame, h: float = HEIGHTS["pain"]
) -> Chart:
    """Pain before and after each session of the headline series, and its 7-day rolling mean."""
    c = Canvas()
    o = s.primary
    if o is None or frame.days is None:
        title = "Pain before and after each session"
        reason = s.reason or "not enough data: no before-session or diary ratings"
        top = header(c, title)
        empty(c, Box(frame.left, top, frame.right, h - DATE_ROOM), reason)
        return Chart("pain", title, f"{title}: {reason}.", WIDTH, h, c.body())
    key = (o.pain, o.posture)
    label = series_label(key)
    title = f"Pain before and after each session — {label} (NRS 0–10)"
    pairs = per_session_changes(data, key)
    small = sum(1 for b, _a in pairs.values() if b is not None) >= 150
    size = 2.2 if small else 3.2
    legend: list[LegendItem] = [
        ("before", swatch_dot(BEFORE, size + 0.4)),
        ("after", swatch_triangle(AFTER)),
        ("7-day mean (before + diary)", swatch_line(INK)),
    ]
    top = header(c, title, legend)
    axis = frame.axis(top + 4, h - DATE_ROOM)
    assert axis is not None
    box = axis.box
    y = Linear(-0.3, 10.3, box)
    draw_value_axis(c, y, [0, 2, 4, 6, 8, 10], "NRS")
    before: list[tuple[float, float]] = []
    after: list[tuple[float, float]] = []
    links: list[str] = []
    n_both = 0
    for x in data.sessions:
        b, a = pairs.get(x.id, (None, None))
        if b is None and a is None:
            continue
        local = to_local(x.start, tz)
        if not axis.inside(local.date()):
            continue
        px = axis.local(local)
        if b is not None:
            before.append((px, y(b)))
        if a is not None:
            after.append((px, y(a)))
        if b is not None and a is not None:
            n_both += 1
            links.append(f"M{_f(px)} {_f(y(b))}V{_f(y(a))}")
    c.stroke("".join(links), MUTED, 0.6)
    c.stroke(dots(before), BEFORE, size, cap="round")
    c.fill(triangles_down(after, size * 0.6), AFTER)
    c.stroke(polyline(_rolling_runs(o.rolling, axis, y)), INK, 1.4, cap="round")
    draw_date_axis(c, axis)
    span = period(s) or frame.days
    desc = (
        f"{title}, {span_text(*span)}: {len(before)} sessions rated before, {len(after)} "
        f"after, {n_both} both (a grey line joins the two ratings of a session). "
        f"{_rolling_text(o)}."
    )
    if not before and not after:
        empty(c, box, "no session rated before or after in this series")
    return Chart("pain", title, desc, WIDTH, h, c.body())


def weekly_chart(
    data: PatientData, s: PatientSummary, tz: Zone, frame: Frame, h: float = HEIGHTS["weekly"]
) -> Chart:
    """The headline series' baseline and weekly means on the shared date axis: one bar per week
    of treatment over its 7 days, the baseline hatched over its days, the time points (weeks 4,
    8, 12) labelled."""
    c = Canvas()
    o = s.primary
    if o is None or frame.days is None or (not o.weeks and o.baseline.mean is None):
        title = "Weekly mean pain"
        reason = (
            (o.reason if o is not None else None)
            or s.reason
            or "not enough data: no before-session or diary ratings"
        )
        top = header(c, title)
        empty(c, Box(frame.left, top, frame.right, h - DATE_ROOM), reason)
        return Chart("weekly", title, f"{title}: {reason}.", WIDTH, h, c.body())
    title = f"Weekly mean pain — {series_label((o.pain, o.posture))} (NRS 0–10)"
    base = o.baseline
    b = base.mean
    legend: list[LegendItem] = [("baseline", swatch_hatched(BASE_FILL))]
    if b is not None and b > 0:
        legend += [
            ("30 % less", swatch_line(INK, 0.8, "3 2")),
            ("50 % less", swatch_line(INK, 0.8, "1 1.5")),
        ]
    top = header(c, title, legend)
    axis = frame.axis(top + 4, h - DATE_ROOM)
    assert axis is not None
    box = axis.box
    y = Linear(0, 10.5, box)
    draw_value_axis(c, y, [0, 2, 4, 6, 8, 10], "NRS", grid=False)
    points = {t.week: t for t in o.time_points}
    blue: list[str] = []
    said: list[str] = []

    def span_x(first: date, last: date) -> tuple[float, float] | None:
        a, z = max(first, axis.first), min(last, axis.last)
        if a > z:
            return None
        x0, x1 = axis.at(a), axis.at(z + timedelta(days=1))
        pad = min(1.5, (x1 - x0) * 0.1)
        return x0 + pad, x1 - pad

    if b is not None and base.start is not None and base.end is not None:
        xs = span_x(base.start, base.end)
        if xs is not None:
            x0, x1 = xs
            c.rect(x0, y(b), x1 - x0, y(0) - y(b), BASE_FILL, INK, 0.5)
            c.stroke(hatch(x0, y(b), x1 - x0, y(0) - y(b)), INK, 0.3)
            if x1 - x0 >= 12:
                c.text((x0 + x1) / 2, y(b) - 2, f"{b:.1f}", size=SMALL_FONT, anchor="middle")
        said.append(f"baseline ({base.label}, {span_text(base.start, base.end)}) {b:.1f}")
    elif base.reason:
        said.append(f"baseline: {base.reason}")
    labelled = len(o.weeks) <= 16
    for w in o.weeks:
        xs = span_x(w.start, w.end)
        tp = points.get(w.index)
        ongoing = s.today is not None and w.end >= s.today
        if xs is None or (ongoing and w.mean is None):
            continue  # a week not over yet has no "n/a"
        x0, x1 = xs
        if w.mean is None:
            c.rect(x0, y(0.3), x1 - x0, y(0) - y(0.3), "white", MUTED, 0.6, "1.5 1")
            if labelled or tp is not None:
                c.text((x0 + x1) / 2, y(0.3) - 2, "n/a", size=SMALL_FONT, anchor="middle")
        else:
            top_y = y(w.mean)
            blue.append(f"M{_f(x0)} {_f(y(0))}V{_f(top_y)}H{_f(x1)}V{_f(y(0))}z")
            if labelled or tp is not None:
                c.text((x0 + x1) / 2, top_y - 2, f"{w.mean:.1f}", size=SMALL_FONT, anchor="middle")
        if tp is not None and tp.reached:
            c.text(
                (x0 + x1) / 2,
                box.top + 7,
                f"wk {w.index}",
                size=SMALL_FONT,
                anchor="middle",
                bold=True,
            )
        said.append(
            f"week {w.index} ({day_text(w.start)}) "
            + (
                f"{w.mean:.1f}"
                if w.mean is not None
                else f"no mean ({plural(w.rated_days, 'rated day')})"
            )
        )
    c.fill("".join(blue), AFTER, INK, 0.4)
    lines = ""
    if b is not None and b > 0:
        c.line(box.left, y(0.7 * b), box.right, y(0.7 * b), INK, 0.8, "3 2")
        c.line(box.left, y(0.5 * b), box.right, y(0.5 * b), INK, 0.8, "1 1.5")
        lines = f" 30 % less than the baseline is {0.7 * b:.1f}, 50 % less is {0.5 * b:.1f}."
    draw_date_axis(c, axis)
    desc = (
        f"{title}, one bar a week of treatment on the days it covers (the time points weeks 4, "
        f"8 and 12 are labelled): " + "; ".join(said) + f".{lines}"
    )
    return Chart("weekly", title, desc, WIDTH, h, c.body())


def flagged_spans(s: PatientSummary) -> list[tuple[date, date]]:
    """The second blocks of the flagged tolerance windows, merged into (first, last) day spans."""
    spans: list[tuple[date, date]] = []
    for w in s.tolerance.flagged_windows:
        a, b = w.start + timedelta(days=5), w.end
        if spans and a <= spans[-1][1] + timedelta(days=1):
            spans[-1] = (spans[-1][0], max(b, spans[-1][1]))
        else:
            spans.append((a, b))
    return spans


def amplitude_chart(
    data: PatientData, s: PatientSummary, tz: Zone, frame: Frame, h: float = HEIGHTS["amplitude"]
) -> Chart:
    """Each session's mean amplitude and the daily mean; flagged tolerance windows shaded."""
    c = Canvas()
    title = "Amplitude — mean set current per session (mA)"
    span = period(s)
    pts: list[tuple[datetime, date, float]] = []
    if span is not None:
        for x in data.sessions:
            if x.mean_amplitude_ma is None:
                continue
            local = to_local(x.start, tz)
            if span[0] <= local.date() <= span[1]:
                pts.append((local, local.date(), x.mean_amplitude_ma))
    if span is None or not pts or frame.days is None:
        reason = "no session with a recorded amplitude"
        top = header(c, title)
        empty(c, Box(frame.left, top, frame.right, h - DATE_ROOM), reason)
        return Chart("amplitude", title, f"{title}: {reason}.", WIDTH, h, c.body())
    spans = flagged_spans(s)
    legend: list[LegendItem] = []
    if spans:
        legend.append(("tolerance pattern", swatch_fill(SHADE)))
    legend += [("session", swatch_dot(MUTED)), ("daily mean", swatch_line(INK, 1.2))]
    top = header(c, title, legend)
    axis = frame.axis(top + 4, h - DATE_ROOM)
    assert axis is not None
    box = axis.box
    ticks = nice_ticks(max(p[2] for p in pts) * 1.05)
    y = Linear(0, ticks[-1], box)
    for a, b in spans:
        a, b = max(a, axis.first), min(b, axis.last)
        if a <= b:
            x0, x1 = axis.at(a), axis.at(b + timedelta(days=1))
            c.rect(x0, box.top, x1 - x0, box.height, SHADE, INK, 0.4, "2 1.5")
    draw_value_axis(c, y, ticks, "mA")
    c.stroke(dots((axis.local(t), y(v)) for t, _d, v in pts), MUTED, 2.2, cap="round")
    daily: dict[date, list[float]] = {}
    for _t, day, v in pts:
        daily.setdefault(day, []).append(v)
    means = {d: sum(v) / len(v) for d, v in sorted(daily.items())}
    c.stroke(polyline([[(axis.at(d, 12), y(v)) for d, v in means.items()]]), INK, 1.2, cap="round")
    draw_date_axis(c, axis)
    values = [p[2] for p in pts]
    first, last = next(iter(means.items())), list(means.items())[-1]
    shaded = (
        "Tolerance pattern shaded: " + "; ".join(span_text(a, b) for a, b in spans) + "."
        if spans
        else "No tolerance pattern flagged."
    )
    desc = (
        f"{title}, {span_text(*span)}: {len(pts)} sessions, from {min(values):.1f} to "
        f"{max(values):.1f} mA; daily mean {first[1]:.1f} mA on {day_text(first[0])}, "
        f"{last[1]:.1f} mA on {day_text(last[0])}. {shaded}"
    )
    return Chart("amplitude", title, desc, WIDTH, h, c.body())


def timeline_chart(
    data: PatientData, s: PatientSummary, tz: Zone, frame: Frame, h: float = HEIGHTS["timeline"]
) -> Chart:
    """The 7-day mean pain (headline series) above other treatments, adverse events and
    faults, on the same days."""
    c = Canvas()
    title = "Pain and other treatments"
    span = period(s)
    if span is None or frame.days is None:
        reason = s.reason or "needs at least one session or rating in the period"
        top = header(c, title)
        empty(c, Box(frame.left, top, frame.right, h - DATE_ROOM), reason)
        return Chart("timeline", title, f"{title}: {reason}.", WIDTH, h, c.body())
    o = s.primary
    legend: list[LegendItem] = []
    if o is not None:
        legend.append((f"7-day mean, {series_label((o.pain, o.posture))}", swatch_line(INK, 1.2)))
    treatments = sorted({t.kind for t in s.treatments})
    faults = [e for e in data.events if e.kind == "fault"]
    faults = [e for e in faults if span[0] <= local_day(e.at, tz) <= span[1]]
    adverse = [a for a in s.adverse_events if span[0] <= local_day(a.at, tz) <= span[1]]
    rows = treatment_rows(data, s, tz)
    top = header(c, title, legend)
    row_h = 9.0
    low_h = max(len(rows), 2) * row_h + 4
    bottom = h - DATE_ROOM
    lower_axis = frame.axis(bottom - low_h, bottom)
    assert lower_axis is not None
    axis, lower = lower_axis, lower_axis.box
    upper = Box(frame.left, top + 4, frame.right, bottom - low_h - 8)
    y = Linear(0, 10.3, upper)
    draw_value_axis(c, y, [0, 5, 10], "NRS")
    c.line(upper.left, upper.bottom, upper.right, upper.bottom, INK, 0.6)
    if o is not None:
        c.stroke(polyline(_rolling_runs(o.rolling, axis, y)), INK, 1.2, cap="round")
        pain = _rolling_text(o)
    else:
        reason = s.reason or "not enough data: no before-session or diary ratings"
        empty(c, upper, reason)
        pain = f"pain: {reason}"
    c.line(lower.left, lower.top, lower.left, lower.bottom, INK, 0.6)
    said: list[str] = []
    for i, row in enumerate(rows):
        cy = lower.top + 2 + (i + 0.5) * row_h
        c.text(lower.left - 4, cy + 2.6, row, anchor="end")
        if i < len(treatments):
            kind = treatments[i]
            items = [t for t in s.treatments if t.kind == kind]
            bars = []
            for t in items:
                a, b = max(t.start, axis.first), min(t.end or t.start, axis.last)
                if a > b:
                    continue
                x0 = axis.at(a)
                x1 = max(axis.at(b + timedelta(days=1)), x0 + 1.5)
                bars.append(f"M{_f(x0)} {_f(cy - 3)}H{_f(x1)}v6H{_f(x0)}z")
            c.fill("".join(bars), TREATMENT)
            said.append(
                f"{row}: "
                + ", ".join(
                    (span_text(t.start, t.end) if t.end and t.end != t.start else day_text(t.start))
                    for t in items
                )
            )
        elif row.startswith("adverse"):
            c.stroke(crosses(((axis.moment(a.at, tz), cy) for a in adverse), 2.6), BEFORE, 1.5)
            said.append(
                f"{len(adverse)} adverse event{'s' if len(adverse) != 1 else ''}: "
                + ", ".join(
                    f"{a.kind.replace('_', ' ')} on {day_text(local_day(a.at, tz))}"
                    for a in adverse
                )
            )
        else:
            c.fill(triangles_up(((axis.moment(e.at, tz), cy) for e in faults), 2.6), INK)
            days = sorted({local_day(e.at, tz) for e in faults})
            said.append(
                f"{len(faults)} fault{'s' if len(faults) != 1 else ''} on {len(days)} "
                f"day{'s' if len(days) != 1 else ''}: " + ", ".join(day_text(d) for d in days)
            )
    if not rows:
        empty(c, lower, "no other treatments, adverse events or faults recorded")
        said.append("no other treatments, adverse events or faults recorded")
    draw_date_axis(c, axis)
    desc = f"{title}, {span_text(*span)}. {pain}. " + ". ".join(said) + "."
    return Chart("timeline", title, desc, WIDTH, h, c.body())


Builder = Callable[[PatientData, PatientSummary, Zone, Frame, float], Chart]
BUILDERS: dict[str, Builder] = {
    "pain": pain_chart,
    "weekly": weekly_chart,
    "amplitude": amplitude_chart,
    "timeline": timeline_chart,
}


def build_charts(
    data: PatientData,
    summary: PatientSummary,
    tz: Zone,
    heights: Mapping[str, float] | None = None,
    names: Sequence[str] = CHART_NAMES,
) -> dict[str, Chart]:
    """The charts ``names`` (default all four), by name, on one date axis (the same days and
    the same left and right edges); ``heights`` (points) overrides the natural ones."""
    frame = frame_of(data, summary, tz)
    wanted = {**HEIGHTS, **(heights or {})}
    return {name: BUILDERS[name](data, summary, tz, frame, wanted[name]) for name in names}
