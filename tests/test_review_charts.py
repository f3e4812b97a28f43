"""The report's charts (tens_control/review/charts.py): what each one plots, read back from its
SVG — every rated session, a skipped rating never drawn as 0, gaps in the rolling mean, weeks
without a mean, the baseline and reduction lines, tolerance shading, adverse events and faults —
the "not enough data" cases, the text alternatives, and the date axis."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tens_control.review import charts
from tens_control.review.charts import (
    AFTER,
    BEFORE,
    INK,
    SHADE,
    TREATMENT,
    Chart,
    build_charts,
    date_ticks,
    text_width,
)
from tens_control.review.model import PatientData
from tens_control.review.report import FONT_DIR, build_report
from tests.fixtures.review_data import Builder, sample_patient, weekly_pattern, year_patient

NS = {"svg": "http://www.w3.org/2000/svg"}
NUM = r"(-?\d+(?:\.\d+)?)"


def _charts(data: PatientData) -> dict[str, Chart]:
    report = build_report(data, tz=UTC)
    return build_charts(report.data, report.summary, report.tz)


def _svg(chart: Chart) -> ET.Element:
    """The chart's drawing, without its legend (whose swatches are drawn like the data)."""
    root = ET.fromstring(chart.svg())
    for parent in list(root.iter()):
        for child in list(parent):
            if child.attrib.get("class") == "legend":
                parent.remove(child)
    return root


def _paths(root: ET.Element, **attrs: str) -> list[str]:
    """The ``d`` of every path whose attributes include ``attrs`` (``stroke=...``, ...)."""
    return [
        p.attrib["d"]
        for p in root.iter(f"{{{NS['svg']}}}path")
        if all(p.attrib.get(k.replace("_", "-")) == v for k, v in attrs.items())
    ]


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{{{NS['svg']}}}text")]


def _value_of(root: ET.Element, y: float, ticks: tuple[float, float]) -> float:
    """The data value at plot coordinate ``y``, from two labelled ticks of the value axis."""
    pos: dict[float, float] = {}
    for t in root.iter(f"{{{NS['svg']}}}text"):
        if t.attrib.get("text-anchor") == "end" and t.text and re.fullmatch(NUM, t.text):
            pos[float(t.text)] = float(t.attrib["y"]) - 2.6
    (v0, v1) = ticks
    return v0 + (y - pos[v0]) / (pos[v1] - pos[v0]) * (v1 - v0)


def _dots(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(rf"M{NUM} {NUM}h0", d)]


def _three_sessions() -> Builder:
    b = Builder().prescribe()
    b.session(0, before=6, after=3)
    b.session(1, before=None, after=2)  # before skipped: missing, never 0
    b.session(2, before=5, after=None)  # after skipped
    return b


@pytest.mark.parametrize(
    "data",
    [sample_patient(), year_patient(), _three_sessions().build(), Builder().build()],
    ids=["sample", "year", "three-sessions", "empty"],
)
def test_every_chart_is_an_accessible_svg_image(data: PatientData) -> None:
    found = _charts(data)
    assert list(found) == list(charts.CHART_NAMES)
    for name, chart in found.items():
        root = _svg(chart)  # well-formed XML
        assert root.attrib["role"] == "img"
        title = root.find("svg:title", NS)
        desc = root.find("svg:desc", NS)
        assert title is not None
        assert desc is not None
        assert root.attrib["aria-labelledby"] == f"{title.attrib['id']} {desc.attrib['id']}"
        assert title.text == chart.title
        assert desc.text == chart.description
        assert len(chart.description) > len(chart.title)
        assert root.attrib["viewBox"] == f"0 0 {chart.width:g} {chart.height:g}"
        assert chart.title in _texts(root), name  # the title is drawn too
        assert root.find(".//svg:g[@class='legend']", NS) is None
        bare = ET.fromstring(chart.svg(accessible=False))  # the PDF's copy
        assert bare.find("svg:title", NS) is None
        assert "role" not in bare.attrib


def test_pain_chart_plots_each_rated_session_and_never_a_skipped_rating_as_zero() -> None:
    chart = _charts(_three_sessions().build())["pain"]
    root = _svg(chart)
    before = [_dots(d) for d in _paths(root, stroke=BEFORE)]
    assert len(before) == 1
    values = sorted(round(_value_of(root, y, (0, 10)), 1) for _x, y in before[0])
    assert values == [5.0, 6.0]  # sessions 1 and 3; the skipped one is not a 0
    (after,) = _paths(root, fill=AFTER)
    tips = re.findall(rf"M{NUM} {NUM}h{NUM}l{NUM} {NUM}z", after)
    assert len(tips) == 2  # sessions 1 and 2
    xs_before = sorted(x for x, _y in before[0])
    xs_after = sorted(float(m[0]) + float(m[2]) / 2 for m in tips)
    assert xs_before[0] == pytest.approx(xs_after[0], abs=0.11)  # session 1 has both
    assert xs_before[1] > xs_after[1]  # session 3 (day 2) has no after, session 2 (day 1) one
    links = re.findall(rf"M{NUM} {NUM}V{NUM}", "".join(_paths(root, stroke=charts.MUTED)))
    assert len(links) == 1  # only the session rated both before and after is joined
    assert "2 sessions rated before, 2 after, 1 both" in chart.description


def test_pain_chart_of_a_year_keeps_every_session() -> None:
    data = year_patient()
    chart = _charts(data)["pain"]
    assert "1095 sessions rated before, 1095 after, 1095 both" in chart.description
    root = _svg(chart)
    (links,) = _paths(root, stroke=charts.MUTED)
    assert links.count("V") == 1095
    # the same rating at 8:00 and 13:00 on one day are distinct points: nothing is averaged
    (before,) = _paths(root, stroke=BEFORE)
    assert len(_dots(before)) == 1095


def test_rolling_mean_has_a_gap_where_a_day_has_no_value() -> None:
    b = Builder().prescribe()
    weekly_pattern(b, [[6] * 7, [], [4] * 7])
    for d in [*range(7), *range(14, 21)]:  # nothing rated in week 1
        b.session(d, before=5, after=3)
    root = _svg(_charts(b.build())["pain"])
    (line,) = _paths(root, stroke=INK, stroke_width="1.4")
    runs = line.split("M")[1:]
    assert len(runs) == 2  # no value on the days whose 7-day window has < 3 rated days


def test_weekly_chart_marks_weeks_without_a_mean_and_the_reduction_lines() -> None:
    b = Builder().prescribe(-7)
    weekly_pattern(b, [[8] * 7, [6, None, None, None, None, None, 6], [4] * 7], start_day=-7)
    for d in range(14):
        b.session(d, rated=False)
    chart = _charts(b.build(today=14))["weekly"]
    root = _svg(chart)
    texts = _texts(root)
    assert texts.count("n/a") == 1  # week 1: 2 rated days
    assert [t for t in texts if t in ("8.0", "6.0", "4.0")] == ["8.0", "4.0"]
    assert "baseline (run-in before the first session, 23 Feb – 1 Mar 2026) 8.0" in (
        chart.description
    )
    assert "week 1 (2 Mar 2026) no mean (2 rated days)" in chart.description
    assert "30 % less than the baseline is 5.6, 50 % less is 4.0." in chart.description
    ys: dict[str, float] = {}
    for p in root.iter(f"{{{NS['svg']}}}path"):
        m = re.fullmatch(rf"M{NUM} {NUM}L{NUM} {NUM}", p.attrib["d"])
        if m and m[2] == m[4] and p.attrib.get("stroke-width") == "0.8":  # not the x axis
            ys[p.attrib.get("stroke-dasharray", "solid")] = float(m[2])
    assert {k: _value_of(root, v, (0, 10)) for k, v in ys.items()} == {
        "3 2": pytest.approx(5.6, abs=0.02),  # coordinates have one decimal
        "1 1.5": pytest.approx(4.0, abs=0.02),
    }
    # the hatched baseline bar stands over the run-in's days, week 2's bar over its 7 days
    hatched = [r for r in root.iter(f"{{{NS['svg']}}}rect") if r.attrib["fill"] == charts.BASE_FILL]
    (blue,) = _paths(root, fill=AFTER)
    (bar,) = re.findall(rf"M{NUM} {NUM}V{NUM}H{NUM}", blue)
    assert len(hatched) == 1
    baseline_w = float(hatched[0].attrib["width"])
    assert float(bar[3]) - float(bar[0]) == pytest.approx(baseline_w, abs=0.11)


def test_weekly_bars_of_a_year_are_on_the_date_axis() -> None:
    root = _svg(_charts(year_patient())["weekly"])
    labels = [t.text for t in root.iter(f"{{{NS['svg']}}}text") if (t.text or "").startswith("wk ")]
    assert labels == ["wk 4", "wk 8", "wk 12"]  # the time points are named
    (blue,) = _paths(root, fill=AFTER)
    bars = re.findall(rf"M{NUM} {NUM}V{NUM}H{NUM}", blue)
    assert len(bars) == 52  # every week of the year (week 53 has begun, with 1 rated day)
    lefts = [float(b[0]) for b in bars]
    assert lefts == sorted(lefts)


def test_amplitude_chart_shades_the_flagged_tolerance_windows() -> None:
    chart = _charts(sample_patient())["amplitude"]
    root = _svg(chart)
    shaded = [r for r in root.iter(f"{{{NS['svg']}}}rect") if r.attrib["fill"] == SHADE]
    assert len(shaded) == 1
    assert "Tolerance pattern shaded: " in chart.description
    assert "115 sessions, from 18.0 to 38.0 mA" in chart.description
    plain = _charts(_three_sessions().build())["amplitude"]
    assert not [r for r in _svg(plain).iter(f"{{{NS['svg']}}}rect") if r.attrib["fill"] == SHADE]
    assert "No tolerance pattern flagged." in plain.description


def test_timeline_shows_treatments_adverse_events_and_faults() -> None:
    chart = _charts(sample_patient())["timeline"]
    root = _svg(chart)
    texts = _texts(root)
    for row in ("medication change", "mirror therapy", "adverse event", "fault"):
        assert row in texts
    assert len(_paths(root, fill=TREATMENT)) == 2
    assert len(_paths(root, stroke=BEFORE)) == 1  # the adverse event's ✖
    assert "mirror therapy: 16–29 Mar 2026" in chart.description
    assert "1 adverse event: skin redness on 1 Apr 2026" in chart.description
    assert "1 fault on 1 day: 11 Mar 2026" in chart.description
    quiet = _charts(_three_sessions().build())["timeline"]
    assert "no other treatments, adverse events or faults recorded" in _texts(_svg(quiet))


def test_not_enough_data_is_said_with_the_rule() -> None:
    empty = _charts(Builder().build())
    for chart in empty.values():
        said = " ".join(_texts(_svg(chart)))
        assert "needs at least one session or rating in the period" in said or (
            chart.name == "amplitude" and "no session with a recorded amplitude" in said
        ), chart.name
    b = Builder().prescribe()
    b.session(0, before=6, after=4)
    few = _charts(b.build())
    assert "no 7-day mean (needs ≥ 3 rated days in the 7-day window)" in few["pain"].description
    assert "needs ≥ 3 rated days in the run-in" in few["weekly"].description


def _axis_x(chart: Chart) -> float:
    """The x of the plot's left edge: the vertical axis line."""
    for p in _svg(chart).iter(f"{{{NS['svg']}}}path"):
        m = re.fullmatch(rf"M{NUM} {NUM}L{NUM} {NUM}", p.attrib["d"])
        if m and m[1] == m[3] and float(m[4]) > float(m[2]) + 30:
            return float(m[1])
    raise AssertionError(f"no value axis in {chart.name}")


def _tick_x(chart: Chart, label: str) -> float:
    return next(
        float(t.attrib["x"]) for t in _svg(chart).iter(f"{{{NS['svg']}}}text") if t.text == label
    )


def test_the_four_charts_share_one_date_axis() -> None:
    """Issue 14: the "Pain and other treatments" chart was shifted by the width of its row
    labels; every chart now starts its plot where the widest label needs it to."""
    found = _charts(sample_patient())
    lefts = {name: _axis_x(chart) for name, chart in found.items()}
    assert len(set(lefts.values())) == 1, lefts
    assert lefts["pain"] > charts.LEFT  # moved right for "medication change"
    for label in ("2 Mar", "16 Mar", "6 Apr"):
        xs = {name: _tick_x(chart, label) for name, chart in found.items()}
        assert len(set(xs.values())) == 1, (label, xs)


def test_one_day_of_data_is_drawn_in_the_middle_of_a_week() -> None:
    b = Builder().prescribe()
    b.session(0, 9, before=6, after=3)
    chart = _charts(b.build(today=0))["pain"]
    root = _svg(chart)
    ((x, _y),) = _dots(_paths(root, stroke=BEFORE)[0])
    left = _axis_x(chart)
    right = charts.RIGHT
    assert left + (right - left) * 3 / 7 < x < left + (right - left) * 4 / 7
    labels = [
        t.text
        for t in root.iter(f"{{{NS['svg']}}}text")
        if re.fullmatch(r"\d+ \w{3}", t.text or "")
    ]
    assert labels == ["27 Feb", "28 Feb", "1 Mar", "2 Mar", "3 Mar", "4 Mar", "5 Mar"]


def test_date_ticks_name_the_year_once_and_where_it_changes() -> None:
    year = date_ticks(date(2025, 1, 6), date(2026, 1, 5), 9)
    assert [t[1] for t in year] == ["Mar", "May", "Jul", "Sep", "Nov", "Jan"]
    assert [t[2] for t in year] == ["2025", "", "", "", "", "2026"]
    weeks = date_ticks(date(2026, 3, 2), date(2026, 4, 12), 9)
    assert [t[1] for t in weeks] == ["2 Mar", "9 Mar", "16 Mar", "23 Mar", "30 Mar", "6 Apr"]
    assert all(t[0].weekday() == 0 for t in weeks)
    assert [t[2] for t in weeks] == ["2026", "", "", "", "", ""]
    days = date_ticks(date(2026, 3, 2), date(2026, 3, 4), 9)
    assert [t[0].day for t in days] == [2, 3, 4]


@pytest.mark.parametrize("bold", [False, True], ids=["regular", "bold"])
def test_text_widths_are_those_of_the_font_the_pdf_embeds(bold: bool) -> None:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    font = TTFont(str(Path(FONT_DIR) / name), lazy=True)
    cmap = font.getBestCmap()
    advance = font["hmtx"].metrics
    units = font["head"].unitsPerEm
    for code in range(0x20, 0x7F):
        want = advance[cmap[code]][0] * 10 / units
        assert text_width(chr(code), 10, bold) == pytest.approx(want), chr(code)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sessions=st.lists(
        st.tuples(
            st.integers(0, 60),  # day
            st.floats(0, 23.4),  # hour
            st.one_of(st.none(), st.floats(0, 80)),  # mean amplitude (0 and none included)
            st.one_of(st.none(), st.integers(0, 10)),  # before (none: skipped)
            st.one_of(st.none(), st.integers(0, 10)),  # after
        ),
        max_size=40,
    ),
    diary=st.lists(st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(0, 10)))),
    extras=st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["fault", "ae", "tx"]))),
)
def test_any_patient_gets_four_well_formed_charts(
    sessions: list[tuple[int, float, float | None, int | None, int | None]],
    diary: list[tuple[int, int | None]],
    extras: list[tuple[int, str]],
) -> None:
    b = Builder().prescribe()
    for day, hour, amp, before, after in sessions:
        b.session(day, hour, amplitude=amp, before=before, after=after)
    for day, value in diary:
        b.rate(day, value)
    for day, kind in extras:
        if kind == "fault":
            b.event(day, "fault", "LEADOFF")
        elif kind == "ae":
            b.adverse_event(day, "burn")
        else:
            b.treatment(day, "physiotherapy", "physio", end=day + 3)
    for chart in _charts(b.build()).values():
        root = ET.fromstring(chart.svg())
        assert chart.description
        for el in root.iter():
            for name in ("x", "y", "width", "height"):
                if name in el.attrib:
                    assert re.fullmatch(NUM, el.attrib[name]), (name, el.attrib)
            assert "nan" not in el.attrib.get("d", "")
            assert "inf" not in el.attrib.get("d", "")
