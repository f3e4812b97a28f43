"""Clinician-review analytics on hand-built fixtures with known answers (DESIGN.md §9)."""

from __future__ import annotations

import json
from datetime import UTC
from fractions import Fraction
from pathlib import Path

import pytest

from tens_control.review.analytics import (
    RULES,
    aggregate,
    immpact_band,
    summarize,
    summarize_data,
    summary_json,
)
from tests.fixtures.review_data import Builder, on, responder, sample_patient, weekly_pattern

DOCS = Path(__file__).resolve().parent.parent / "docs" / "review.md"


def test_baseline_week_is_the_mean_of_daily_means() -> None:
    b = Builder()
    # day 0: two ratings (4 and 8 -> daily mean 6); days 1..6: 3 -> weekly mean (6 + 6*3)/7
    b.rate(0, 4, hour=8)
    b.rate(0, 8, hour=20)
    weekly_pattern(b, [[None, 3, 3, 3, 3, 3, 3], [3] * 7])
    s = summarize_data(b.build(), tz=UTC)
    primary = s.primary
    assert primary is not None
    assert primary.baseline_start == on(0)
    assert primary.weeks[0].rated_days == 7
    assert primary.baseline_mean == pytest.approx(24 / 7)


@pytest.mark.parametrize(
    ("baseline", "follow_up", "band", "r30", "r50"),
    [
        (10, 7, "moderate", True, False),  # exactly 30 %
        (8, 4, "substantial", True, True),  # exactly 50 %
        (6, 5, "minimal", False, False),  # 16.7 %
        (8, 6, "minimal", False, False),  # 25 %: past minimal, short of moderate
        (10, 9, "minimal", False, False),  # exactly 10 %
        (6, 6, "none", False, False),  # no change
        (5, 7, "none", False, False),  # worse
    ],
)
def test_responder_status_and_immpact_band(
    baseline: int, follow_up: int, band: str, r30: bool, r50: bool
) -> None:
    s = summarize_data(responder(baseline, follow_up), tz=UTC)
    o = s.primary
    assert o is not None
    assert o.available, o.reason
    assert (o.pain, o.posture) == ("phantom", "rest")
    assert o.baseline_mean == baseline
    assert o.latest_mean == follow_up
    assert o.latest_week == 1
    assert o.band == band
    assert o.responder_30 is r30
    assert o.responder_50 is r50
    assert o.pct_change == pytest.approx((follow_up - baseline) / baseline * 100)
    assert o.change_points == follow_up - baseline


def test_band_boundaries_are_exact() -> None:
    assert immpact_band(Fraction(1, 2)) == "substantial"
    assert immpact_band(Fraction(49, 100)) == "moderate"
    assert immpact_band(Fraction(3, 10)) == "moderate"
    assert immpact_band(Fraction(29, 100)) == "minimal"
    assert immpact_band(Fraction(1, 5)) == "minimal"
    assert immpact_band(Fraction(1, 10)) == "minimal"
    assert immpact_band(Fraction(9, 100)) == "none"
    assert immpact_band(Fraction(-1, 2)) == "none"


def test_thirty_percent_from_uneven_days_is_decided_exactly() -> None:
    # baseline daily means 5,5,5,5,5,5,6 -> 36/7; follow-up must be 36/7 * 0.7 = 25.2/7
    b = Builder()
    weekly_pattern(b, [[5, 5, 5, 5, 5, 5, 6]])
    # follow-up: 5 days (3 + 4 + 4 + 4 + 3) / 5 = 18/5 = 3.6 = 25.2/7 exactly
    weekly_pattern(b, [[3, 4, 4, 4, 3]], start_day=7)
    o = summarize_data(b.build(), tz=UTC).primary
    assert o is not None
    assert o.reduction_pct == pytest.approx(30.0)
    assert o.band == "moderate"
    assert o.responder_30 is True


def test_missing_ratings_never_count_as_zero() -> None:
    b = Builder()
    # every day one real rating and one skipped one; 0 would halve the means
    for d in range(14):
        b.rate(d, 6 if d < 7 else 4, hour=9)
        b.rate(d, None, hour=21)
    s = summarize_data(b.build(), tz=UTC)
    o = s.primary
    assert o is not None
    assert o.baseline_mean == 6
    assert o.latest_mean == 4
    assert o.reduction_pct == pytest.approx(100 / 3)
    assert s.ratings == 28
    assert s.ratings_missing == 14


def test_a_session_with_a_skipped_after_rating_has_no_change() -> None:
    b = Builder().prescribe()
    b.session(0, before=6, after=3)
    b.session(1, before=6, after=None)  # skipped: not a change of -6
    b.session(2, before=None, after=2)  # skipped before: not a change of +2
    b.session(3, before=7, after=5)
    b.session(4, before=5, after=4)
    s = summarize_data(b.build(), tz=UTC)
    (c,) = s.session_change
    assert c.available
    assert c.sessions == 3
    assert c.mean_change == pytest.approx(-2.0)


def test_a_week_of_skipped_ratings_is_not_enough_data() -> None:
    b = Builder()
    weekly_pattern(b, [[6] * 7, [None, None, 4, None, 4, None, None]])
    o = summarize_data(b.build(), tz=UTC).primary
    assert o is not None
    assert not o.available
    assert o.reason == f"not enough data: {RULES['follow_up']}"
    assert o.weeks[1].rated_days == 2
    assert o.weeks[1].mean is None


def test_too_little_data_in_the_baseline_week_says_so_with_the_rule() -> None:
    b = Builder()
    weekly_pattern(b, [[6, None, None, None, None, None, 6], [3] * 7])
    o = summarize_data(b.build(), tz=UTC).primary
    assert o is not None
    assert not o.available
    assert o.reason == "not enough data: needs ≥ 3 rated days in the baseline week"
    assert o.responder_30 is None
    assert o.band is None


def test_no_data_at_all() -> None:
    s = summarize_data(Builder().build(), tz=UTC)
    assert not s.available
    assert s.reason == f"not enough data: {RULES['no_data']}"
    assert not s.adherence.available
    assert not s.tolerance.available
    assert s.primary is None


def test_baseline_of_zero_has_no_percent_change() -> None:
    o = summarize_data(responder(0, 2), tz=UTC).primary
    assert o is not None
    assert not o.available
    assert o.reason == RULES["baseline_zero"]
    assert o.change_points == 2


def test_the_comparison_week_is_the_latest_week_with_enough_data() -> None:
    b = Builder()
    weekly_pattern(b, [[8] * 7, [6] * 7, [4] * 7, [2, 2]])  # week 3 has only 2 rated days
    o = summarize_data(b.build(), tz=UTC).primary
    assert o is not None
    assert o.latest_week == 2
    assert o.latest_mean == 4
    assert [w.mean for w in o.weeks] == [8, 6, 4, None]
    assert [w.pct_change for w in o.weeks] == [0.0, -25.0, -50.0, None]


def test_weekly_means_use_before_and_diary_ratings_only() -> None:
    b = Builder()
    for d in range(14):
        b.session(d, before=6 if d < 7 else 3, after=1, plus_30=2)
    s = summarize_data(b.build(), tz=UTC)
    o = s.primary
    assert o is not None
    assert (o.baseline_mean, o.latest_mean) == (6, 3)
    (c,) = s.session_change
    assert c.sessions == 14
    assert c.mean_change == pytest.approx((7 * -5 + 7 * -2) / 14)
    assert c.sessions_30 == 14
    assert c.mean_change_30 == pytest.approx((7 * -4 + 7 * -1) / 14)


def test_per_session_change_needs_three_sessions() -> None:
    b = Builder()
    b.session(0, before=6, after=3)
    b.session(1, before=6, after=4)
    (c,) = summarize_data(b.build(), tz=UTC).session_change
    assert not c.available
    assert c.reason == f"not enough data: {RULES['session_change']}"
    assert c.sessions == 2


def test_change_pairs_the_same_pain_and_posture_only() -> None:
    b = Builder()
    for d in range(3):
        sid = b.session(d, before=8, after=None, rated=True)
        b.rate(d, 2, "after", "residual_limb", "rest", 10, sid)  # other pain: no pair
        b.rate(d, 4, "after", "phantom", "movement", 10, sid)  # other posture: no pair
    s = summarize_data(b.build(), tz=UTC)
    assert all(c.sessions == 0 for c in s.session_change)


def test_rolling_means_need_three_rated_days() -> None:
    b = Builder()
    weekly_pattern(b, [[6, None, 3, None, None, None, None, 9]])
    o = summarize_data(b.build(), tz=UTC).primary
    assert o is not None
    means = {p.day: p.mean for p in o.rolling}
    assert means[on(0)] is None
    assert means[on(2)] is None  # 2 rated days
    assert means[on(7)] is None  # window days 1..7: days 2 and 7 only
    b.rate(5, 6)
    o = summarize_data(b.build(), tz=UTC).primary
    assert o is not None
    means = {p.day: p.mean for p in o.rolling}
    assert means[on(5)] == pytest.approx(5.0)  # 6, 3, 6
    assert means[on(7)] == pytest.approx(6.0)  # 3, 6, 9


def test_adherence_against_the_prescription() -> None:
    b = Builder().prescribe(0, sessions_per_day=3, session_minutes=30)
    done = [3, 3, 2, 0, 3, 4, 3]
    for d, n in enumerate(done):
        for k in range(n):
            b.session(d, 8 + 3 * k, minutes=30 if k < 2 else 15, rated=False)
    a = summarize_data(b.build(), tz=UTC).adherence
    assert a.available
    assert a.days == 7
    assert a.sessions_done == 18
    assert a.sessions_prescribed == 21
    assert a.sessions_pct == pytest.approx(17 / 21 * 100)  # the 4th session on day 5 is capped
    assert a.minutes_prescribed == 7 * 90
    # minutes: 75, 75, 60, 0, 75, 90, 75
    assert a.minutes_done == 450
    assert a.minutes_pct == pytest.approx(450 / 630 * 100)
    assert a.days_without_session == 1
    assert a.days_over_prescription == 1
    assert a.days_fully_adherent == 1  # day 5 only: 4 sessions, 90 minutes
    assert a.sessions_per_day == pytest.approx(18 / 7)


def test_adherence_follows_the_prescription_in_force_each_day() -> None:
    b = Builder().prescribe(0, 2, 30).prescribe(3, 4, 20)
    for d in range(6):
        b.session(d, 9, rated=False)
    a = summarize_data(b.build(), tz=UTC).adherence
    assert [d.prescribed_sessions for d in a.daily] == [2, 2, 2, 4, 4, 4]
    assert a.sessions_prescribed == 18
    assert a.sessions_pct == pytest.approx(6 / 18 * 100)


def test_adherence_without_a_prescription_is_not_available() -> None:
    b = Builder()
    b.session(0, rated=False)
    a = summarize_data(b.build(), tz=UTC).adherence
    assert not a.available
    assert a.reason == f"not enough data: {RULES['adherence']}"


def _tolerance_patient(amp_late: float, relief_late: int) -> Builder:
    b = Builder().prescribe()
    for d in range(10):
        late = d >= 5
        for h in (8, 13, 18):
            relief = relief_late if late else 3
            b.session(d, h, amplitude=amp_late if late else 20.0, before=6, after=6 - relief)
    return b


def test_tolerance_pattern_is_flagged() -> None:
    t = summarize_data(_tolerance_patient(25.0, 1).build(), tz=UTC).tolerance
    assert t.available
    assert t.flagged
    assert t.current
    assert t.windows_evaluated == 1
    w = t.latest
    assert w is not None
    assert (w.start, w.end) == (on(0), on(9))
    assert w.amplitude_prev == 20.0
    assert w.amplitude_last == 25.0
    assert w.rise_pct == pytest.approx(25.0)
    assert (w.relief_prev, w.relief_last) == (3.0, 1.0)


def test_exactly_twenty_percent_counts() -> None:
    assert summarize_data(_tolerance_patient(24.0, 2).build(), tz=UTC).tolerance.flagged


@pytest.mark.parametrize(
    ("amp", "relief"),
    [(23.5, 1), (25.0, 3), (25.0, 4)],  # rise 17.5 %; relief unchanged; relief better
)
def test_no_tolerance_flag(amp: float, relief: int) -> None:
    t = summarize_data(_tolerance_patient(amp, relief).build(), tz=UTC).tolerance
    assert t.available
    assert not t.flagged
    assert not t.current


def test_tolerance_needs_enough_sessions_per_block() -> None:
    b = Builder().prescribe()
    for d in range(10):
        if d in (0, 1, 5, 6, 7, 8, 9):
            b.session(d, 9, amplitude=20.0 if d < 5 else 30.0, before=6, after=3 if d < 5 else 6)
    t = summarize_data(b.build(), tz=UTC).tolerance
    assert not t.available
    assert t.reason == f"not enough data: {RULES['tolerance']}"


def test_faults_rejections_adverse_events_and_treatments_are_listed() -> None:
    b = Builder().prescribe()
    b.session(0, end_reason="lead_off", rated=False)
    b.session(1, end_reason="completed", rated=False)
    b.event(0, "fault", "LEADOFF")
    b.event(1, "fault", "LEADOFF")
    b.event(1, "fault", "COMMS_LOST")
    b.event(1, "rejection", "LIMIT", "amplitude 45 mA above cap 40 mA")
    b.adverse_event(1, "skin_redness")
    b.treatment(0, "ketamine_infusion", "ketamine 0.5 mg/kg", end=2)
    s = summarize_data(b.build(), tz=UTC)
    assert s.faults == {"COMMS_LOST": 1, "LEADOFF": 2}
    assert s.fault_count == 3
    assert s.rejections == {"LIMIT": 1}
    assert s.end_reasons == {"completed": 1, "lead_off": 1}
    assert [a.kind for a in s.adverse_events] == ["skin_redness"]
    assert [(t.kind, t.start, t.end) for t in s.treatments] == [("ketamine_infusion", on(0), on(2))]


def test_period_limits_what_is_counted() -> None:
    b = Builder().prescribe()
    weekly_pattern(b, [[9] * 7, [6] * 7, [3] * 7])
    for d in range(21):
        b.session(d, rated=False)
    s = summarize_data(b.build(period_from=on(7), period_to=on(20)), tz=UTC)
    assert (s.period_start, s.period_end) == (on(7), on(20))
    assert s.sessions == 14
    o = s.primary
    assert o is not None
    assert o.baseline_start == on(7)
    assert (o.baseline_mean, o.latest_mean) == (6, 3)
    assert s.adherence.days == 14


def test_primary_series_has_most_rated_days_in_the_baseline_week() -> None:
    b = Builder()
    for d in range(7):
        b.rate(d, 5, pain="residual_limb")
    for d in range(0, 7, 2):
        b.rate(d, 7, pain="phantom")
    s = summarize_data(b.build(), tz=UTC)
    assert s.primary is not None
    assert (s.primary.pain, s.primary.posture) == ("residual_limb", "rest")
    assert [(o.pain, o.posture) for o in s.outcomes] == [
        ("phantom", "rest"),
        ("residual_limb", "rest"),
    ]
    forced = summarize(aggregate(b.build(), UTC), primary=("phantom", "rest"))
    assert forced.primary is not None
    assert forced.primary.pain == "phantom"


def test_days_are_local_calendar_days() -> None:
    from datetime import timedelta, timezone

    b = Builder()
    b.rate(0, 5, hour=23.5)  # 23:30 UTC on day 0 is day 1 in UTC+2
    assert aggregate(b.build(), UTC).first_day == on(0)
    assert aggregate(b.build(), timezone(timedelta(hours=2))).first_day == on(1)


def test_sample_patient_summary() -> None:
    s = summarize_data(sample_patient(), tz=UTC)
    o = s.primary
    assert o is not None
    assert o.available
    assert o.responder_30
    assert o.band in ("moderate", "substantial")
    assert s.tolerance.flagged
    assert s.adherence.sessions_pct is not None
    assert 80 < s.adherence.sessions_pct < 100
    assert s.ratings_missing > 0
    assert s.fault_count == 1
    assert s.rejection_count == 1


def test_summary_json_round_trips_through_json() -> None:
    s = summarize_data(sample_patient(), tz=UTC)
    doc = json.loads(summary_json(s))
    assert doc["pseudonym"] == "P-014"
    assert doc["primary"]["band"] == s.primary.band if s.primary else False
    assert doc["adherence"]["sessions_done"] == s.adherence.sessions_done
    assert doc["period_start"] == s.period_start.isoformat() if s.period_start else False


def test_every_rule_is_written_in_the_docs() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())  # lines wrap anywhere
    for name, rule in RULES.items():
        assert rule in text, f"docs/review.md lacks the rule {name!r}: {rule}"
