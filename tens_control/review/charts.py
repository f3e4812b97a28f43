"""The report's charts, drawn with matplotlib (Agg canvas, no pyplot, no global state).

Four charts, each a :class:`matplotlib.figure.Figure` sized for a column of an A4 page:

- ``pain``: pain before and after each session (headline series) with the 7-day rolling mean;
- ``weekly``: weekly means against the baseline, with the 30 % and 50 % reduction lines;
- ``amplitude``: each session's mean amplitude, with flagged tolerance windows shaded;
- ``timeline``: daily pain next to other treatments, adverse events and faults.

Nothing relies on colour alone: before/after use different markers, lines differ in style.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import matplotlib
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tens_control.review.analytics import PatientSummary, Zone, local_day, per_session_changes
from tens_control.review.model import PatientData, series_label

WIDTH_IN = 7.3  # 186 mm: an A4 page less 12 mm margins
CHART_NAMES = ("pain", "weekly", "amplitude", "timeline")
CHART_HEIGHTS_IN: dict[str, float] = {
    "pain": 2.7,
    "weekly": 2.2,
    "amplitude": 2.0,
    "timeline": 2.3,
}
STYLE: dict[Any, Any] = {
    "font.size": 7.5,
    "axes.titlesize": 8.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "svg.fonttype": "none",
    "svg.hashsalt": "tens-control",
    "pdf.fonttype": 42,
}
INK = "#1f2933"
BEFORE = "#b83232"
AFTER = "#1f6fb2"
MUTED = "#8a94a0"
SHADE = "#f3c26b"


def _x(moment: datetime) -> float:
    """matplotlib's date number of a naive datetime."""
    return float(mdates.date2num(moment))  # type: ignore[no-untyped-call]


def _local(moment: datetime, tz: Zone) -> float:
    """A local time as a plot coordinate (the axis shows local days)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz).replace(tzinfo=None)
    return _x(moment)


def _day(d: date, hour: int = 0) -> float:
    """The plot coordinate of ``hour`` o'clock on day ``d``."""
    return _x(datetime.combine(d, time(hour)))


def _midday(d: date) -> float:
    return _day(d, 12)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=MUTED)
    ax.set_yticks([])
    ax.set_xticks([])


def _dates_axis(ax: Axes, start: date | None, end: date | None) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    if start is not None and end is not None:
        ax.set_xlim(_day(start), _day(end + timedelta(days=1)))


def _new(name: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(WIDTH_IN, CHART_HEIGHTS_IN[name]), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def pain_chart(data: PatientData, s: PatientSummary, tz: Zone) -> Figure:
    """Pain before and after each session of the headline series, and its 7-day rolling mean."""
    fig, ax = _new("pain")
    o = s.primary
    if o is None:
        ax.set_title("Pain before and after each session")
        _empty(ax, s.reason or "not enough data: no before-session or diary ratings")
        return fig
    key = (o.pain, o.posture)
    ax.set_title(f"Pain before and after each session — {series_label(key)} (NRS 0–10)")
    starts = {x.id: _local(x.start, tz) for x in data.sessions}
    pairs = per_session_changes(data, key)
    xb: list[float] = []
    yb: list[int] = []
    xa: list[float] = []
    ya: list[int] = []
    for sid, (before, after) in pairs.items():
        x = starts.get(sid)
        if x is None:
            continue
        if before is not None:
            xb.append(x)
            yb.append(before)
        if after is not None:
            xa.append(x)
            ya.append(after)
        if before is not None and after is not None:
            ax.plot([x, x], [before, after], color=MUTED, linewidth=0.6, zorder=1)
    small = 9 if len(xb) < 150 else 4
    ax.scatter(xb, yb, s=small, marker="o", color=BEFORE, label="before", zorder=2)
    ax.scatter(xa, ya, s=small, marker="v", color=AFTER, label="after", zorder=3)
    rx = [_midday(p.day) for p in o.rolling if p.mean is not None]
    ry = [p.mean for p in o.rolling if p.mean is not None]
    if rx:
        ax.plot(rx, ry, color=INK, linewidth=1.4, label="7-day mean (before + diary)")
    ax.set_ylim(-0.3, 10.3)
    ax.set_yticks(range(0, 11, 2))
    ax.set_ylabel("NRS")
    ax.grid(axis="y", color="#e5e8eb", linewidth=0.5)
    _dates_axis(ax, s.period_start, s.period_end)
    ax.legend(loc="upper right", ncols=3)
    return fig


def weekly_chart(data: PatientData, s: PatientSummary, tz: Zone) -> Figure:
    """Weekly means of the headline series against the baseline week."""
    fig, ax = _new("weekly")
    o = s.primary
    if o is None or not o.weeks:
        ax.set_title("Weekly mean pain")
        _empty(ax, s.reason or "not enough data: no before-session or diary ratings")
        return fig
    ax.set_title(f"Weekly mean pain — {series_label((o.pain, o.posture))}")
    labels = [f"wk {w.index}\n{w.start.day} {w.start:%b}" for w in o.weeks]
    xs = list(range(len(o.weeks)))
    for x, w in zip(xs, o.weeks, strict=True):
        if w.mean is None:
            ax.bar(x, 0.15, color="white", edgecolor=MUTED, hatch="///", linewidth=0.5)
            if len(o.weeks) <= 16:
                ax.text(x, 0.35, "n/a", ha="center", va="bottom", fontsize=6.5, color=MUTED)
            continue
        base = w.index == 0
        ax.bar(
            x,
            w.mean,
            color="#d9dee3" if base else AFTER,
            edgecolor=INK,
            linewidth=0.5,
            hatch="..." if base else None,
        )
        if len(o.weeks) <= 16:
            ax.text(x, w.mean + 0.2, f"{w.mean:.1f}", ha="center", va="bottom", fontsize=6.5)
    if o.baseline_mean is not None and o.baseline_mean > 0:
        b = o.baseline_mean
        ax.axhline(b, color=INK, linewidth=0.8, linestyle="-", label="baseline")
        ax.axhline(0.7 * b, color=INK, linewidth=0.8, linestyle="--", label="30 % less")
        ax.axhline(0.5 * b, color=INK, linewidth=0.8, linestyle=":", label="50 % less")
        ax.legend(loc="upper right", ncols=3)
    ax.set_xticks(xs, labels)
    step = max(1, len(xs) // 14)
    for i, lab in enumerate(ax.get_xticklabels()):
        lab.set_visible(i % step == 0)
    ax.set_ylim(0, 10.5)
    ax.set_ylabel("NRS")
    return fig


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


def amplitude_chart(data: PatientData, s: PatientSummary, tz: Zone) -> Figure:
    """Each session's mean amplitude and the daily mean; flagged tolerance windows shaded."""
    fig, ax = _new("amplitude")
    ax.set_title("Amplitude — mean set current per session (mA)")
    pts = [
        (_local(x.start, tz), local_day(x.start, tz), x.mean_amplitude_ma)
        for x in data.sessions
        if x.mean_amplitude_ma is not None
        and (s.period_start is None or local_day(x.start, tz) >= s.period_start)
        and (s.period_end is None or local_day(x.start, tz) <= s.period_end)
    ]
    if not pts:
        _empty(ax, "no session with a recorded amplitude")
        return fig
    for a, b in flagged_spans(s):
        ax.axvspan(_day(a), _day(b + timedelta(days=1)), color=SHADE, alpha=0.35, linewidth=0)
    if s.tolerance.flagged_windows:
        ax.plot([], [], color=SHADE, linewidth=6, alpha=0.5, label="tolerance pattern")
    ax.scatter(
        [p[0] for p in pts], [p[2] for p in pts], s=5, color=MUTED, label="session", zorder=2
    )
    daily: dict[date, list[float]] = {}
    for _pos, day, amp in pts:
        daily.setdefault(day, []).append(amp)
    days = sorted(daily)
    ax.plot(
        [_midday(d) for d in days],
        [sum(daily[d]) / len(daily[d]) for d in days],
        color=INK,
        linewidth=1.2,
        label="daily mean",
    )
    ax.set_ylim(bottom=0)
    ax.set_ylabel("mA")
    ax.grid(axis="y", color="#e5e8eb", linewidth=0.5)
    _dates_axis(ax, s.period_start, s.period_end)
    ax.legend(loc="lower right", ncols=3)
    return fig


def timeline_chart(data: PatientData, s: PatientSummary, tz: Zone) -> Figure:
    """Daily pain (headline series) above other treatments, adverse events and faults."""
    fig = Figure(figsize=(WIDTH_IN, CHART_HEIGHTS_IN["timeline"]), layout="constrained")
    FigureCanvasAgg(fig)
    top, low = fig.subplots(2, 1, sharex=True, height_ratios=[1.5, 1])
    top.set_title("Pain and other treatments")
    o = s.primary
    if o is not None:
        rx = [_midday(p.day) for p in o.rolling if p.mean is not None]
        ry = [p.mean for p in o.rolling if p.mean is not None]
        top.plot(
            rx,
            ry,
            color=INK,
            linewidth=1.2,
            label=f"7-day mean, {series_label((o.pain, o.posture))}",
        )
        top.legend(loc="upper right")
    top.set_ylim(0, 10.3)
    top.set_yticks([0, 5, 10])
    top.set_ylabel("NRS")
    rows: list[tuple[str, Callable[[float], None]]] = []
    kinds = sorted({t.kind for t in s.treatments})
    for kind in kinds:

        def draw(y: float, kind: str = kind) -> None:
            for t in s.treatments:
                if t.kind != kind:
                    continue
                a = _day(t.start)
                b = _day((t.end or t.start) + timedelta(days=1))
                low.barh(y, b - a, left=a, height=0.6, color=AFTER, alpha=0.7)

        rows.append((kind.replace("_", " "), draw))
    if s.adverse_events:

        def draw_ae(y: float) -> None:
            low.scatter(
                [_local(a.at, tz) for a in s.adverse_events],
                [y] * len(s.adverse_events),
                marker="X",
                s=30,
                color=BEFORE,
            )

        rows.append(("adverse event", draw_ae))
    faults = [e for e in data.events if e.kind == "fault"]
    if s.period_start is not None and s.period_end is not None:
        lo, hi = s.period_start, s.period_end
        faults = [e for e in faults if lo <= local_day(e.at, tz) <= hi]
    if faults:

        def draw_faults(y: float) -> None:
            low.scatter(
                [_local(e.at, tz) for e in faults],
                [y] * len(faults),
                marker="^",
                s=18,
                color=INK,
            )

        rows.append(("fault", draw_faults))
    if not rows:
        low.text(
            0.5,
            0.5,
            "no other treatments, adverse events or faults recorded",
            ha="center",
            va="center",
            transform=low.transAxes,
            color=MUTED,
        )
        low.set_yticks([])
    else:
        for i, (_label, fn) in enumerate(rows):
            fn(float(len(rows) - 1 - i))
        low.set_yticks([float(len(rows) - 1 - i) for i in range(len(rows))], [r[0] for r in rows])
        low.set_ylim(-0.7, len(rows) - 0.3)
    _dates_axis(low, s.period_start, s.period_end)
    return fig


BUILDERS: dict[str, Callable[[PatientData, PatientSummary, Zone], Figure]] = {
    "pain": pain_chart,
    "weekly": weekly_chart,
    "amplitude": amplitude_chart,
    "timeline": timeline_chart,
}


def build_charts(data: PatientData, summary: PatientSummary, tz: Zone) -> dict[str, Figure]:
    """All four charts, by name (:data:`CHART_NAMES` order)."""
    with matplotlib.rc_context(STYLE):
        return {name: BUILDERS[name](data, summary, tz) for name in CHART_NAMES}


def to_svg(fig: Figure) -> str:
    """The chart as an SVG document (no date stamp, so output is reproducible)."""
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def to_png(fig: Figure, dpi: int = 200) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
