"""The review's date scale never cuts a date (issue 12, point 18: "7 De")."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tens_control.ui.review.plot import DayAxis


@pytest.mark.parametrize("days", [1, 2, 3, 10, 40, 400])
@pytest.mark.parametrize("width", [4, 8, 12, 60])
def test_the_scale_shows_whole_dates(days: int, width: int) -> None:
    start = date(2026, 12, 7)
    axis = DayAxis.fit(start, start + timedelta(days=days - 1), width)
    line = axis.scale_line(gutter=0)
    assert "7 Dec" in line
    last = axis.bucket_start(axis.buckets - 1)
    if axis.width >= len("7 Dec") + len(f"{last.day} {last:%b}") + 1:
        assert line.rstrip().endswith(f"{last.day} {last:%b}")
    # every word of the scale is a whole day number or a whole month name
    for word in line.split():
        assert word.isdigit() or word in {
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        }
