"""Clinician-review analytics on hand-built fixtures with known answers (DESIGN.md §9): the
period, the run-in baseline, the fixed time points (intention to treat), responders in percent
and in points, the low-baseline and concurrent-treatment flags, the headline series, PEG and
PGIC, adherence, per-session change, rolling means and the tolerance flag."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest

from tens_control.review.analytics import (
    RULES,
    PainOutcome,
    TimePoint,
    aggregate,
    immpact_band,
    summarize,
    summarize_data,
    summary_json,
)
from tens_control.review.model import PatientData
from tests.fixtures.review_data import Builder, on, sample_patient, weekly_pattern

DOCS = Path(__file__).resolve().parent.parent / "docs" / "review.md"


def _primary(data: PatientData) -> PainOutcome:
    o = summarize_data(data, tz=UTC).primary
    assert o is not None
    return o


def _week(o: PainOutcome, week: int) -> TimePoint:
    tp = o.time_point(week)
    assert tp is not None
    return tp


def endpoint_patient(baseline: int, week4: int, today: int = 28) -> PatientData:
    """A run-in week (days −7..−1) of diary ratings at ``baseline``, a session every day from
    day 0, and diary ratings at ``week4`` in week 4 (days 21–27)."""
    b = Builder().prescribe(-7, 1, 30)
    weekly_pattern(b, [[baseline] * 7], start_day=-7)
    weekly_pattern(b, [[week4] * 7], start_day=21)
    for d in range(28):
        b.session(d, rated=False)
    return b.build(today=today)


# --- IMMPACT bands and responders -------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "week4", "band", "r30", "r50", "r2"),
    [
        (10, 7, "moderate", True, False, True),  # exactly 30 %, 3 points
        (8, 4, "substantial", True, True, True),  # exactly 50 %
        (6, 5, "minimal", False, False, False),  # 16.7 %, 1 point
        (8, 6, "minimal", False, False, True),  # 25 %: past minimal, short of moderate; 2 points
        (10, 9, "minimal", False, False, False),  # exactly 10 %
        (6, 6, "none", False, False, False),  # no change
        (5, 7, "none", False, False, False),  # worse
    ],
)
def test_responders_in_percent_and_in_points_and_the_band(
    baseline: int, week4: int, band: str, r30: bool, r50: bool, r2: bool
) -> None:
    o = _primary(endpoint_patient(baseline, week4))
    assert (o.pain, o.posture) == ("phantom", "rest")
    assert o.baseline.kind == "run_in"
    assert o.baseline.mean == baseline
    tp = _week(o, 4)
    assert tp.status == "rated"
    assert tp.mean == week4
    assert tp.change_points == week4 - baseline
    assert tp.pct_change == pytest.approx((week4 - baseline) / baseline * 100)
    assert (tp.band, tp.responder_30, tp.responder_50, tp.responder_points) == (band, r30, r50, r2)
    assert o.endpoint is tp


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
    # run-in daily means 5,5,5,5,5,5,6 -> 36/7; week 4 must be 36/7 * 0.7 = 25.2/7
    b = Builder().prescribe(-7, 1, 30)
    weekly_pattern(b, [[5, 5, 5, 5, 5, 5, 6]], start_day=-7)
    # week 4: 5 days (3 + 4 + 4 + 4 + 3) / 5 = 18/5 = 3.6 = 25.2/7 exactly
    weekly_pattern(b, [[3, 4, 4, 4, 3]], start_day=21)
    b.session(0, rated=False)
    tp = _week(_primary(b.build(today=28)), 4)
    assert tp.reduction_pct == pytest.approx(30.0)
    assert tp.band == "moderate"
    assert tp.responder_30 is True


def test_the_baseline_is_the_mean_of_daily_means() -> None:
    b = Builder().prescribe(-7, 1, 30)
    # day −7: two ratings (4 and 8 -> daily mean 6); days −6..−1: 3 -> (6 + 6*3)/7
    b.rate(-7, 4, hour=8)
    b.rate(-7, 8, hour=20)
    weekly_pattern(b, [[None, 3, 3, 3, 3, 3, 3]], start_day=-7)
    b.session(0, rated=False)
    base = _primary(b.build()).baseline
    assert (base.kind, base.start, base.end, base.rated_days) == ("run_in", on(-7), on(-1), 7)
    assert base.mean == pytest.approx(24 / 7)


# --- the baseline: run-in, or the first week of use -------------------------------------------


def test_a_run_in_of_the_prescribed_length() -> None:
    b = Builder().prescribe(-14, 1, 30, run_in_days=14)
    weekly_pattern(
        b, [[8, None, None, None, None, None, None], [6, None, 6, None, 6, None, 6]], -14
    )
    b.session(0, rated=False)
    base = _primary(b.build()).baseline
    # days −14..−1: 8 and four 6s -> (8 + 24) / 5
    assert (base.kind, base.start, base.run_in_days, base.rated_days) == ("run_in", on(-14), 14, 5)
    assert base.mean == pytest.approx(32 / 5)


def test_without_a_run_in_the_first_week_of_use_is_the_baseline_labelled_so() -> None:
    b = Builder().prescribe(-7, 1, 30)
    weekly_pattern(b, [[9, None, 9]], start_day=-7)  # 2 run-in days: not enough
    weekly_pattern(b, [[7, 7, 7, 7]], start_day=0)
    b.session(0, rated=False)
    base = _primary(b.build()).baseline
    assert (base.kind, base.start, base.end, base.mean) == ("first_week", on(0), on(6), 7.0)
    assert base.run_in_rated_days == 2
    assert base.label == "first week of use (no run-in baseline)"


def test_run_in_days_zero_means_the_first_week_of_use() -> None:
    b = Builder().prescribe(-7, 1, 30, run_in_days=0)
    weekly_pattern(b, [[9] * 7], start_day=-7)
    weekly_pattern(b, [[5] * 7], start_day=0)
    b.session(0, rated=False)
    base = _primary(b.build()).baseline
    assert (base.kind, base.mean, base.run_in_days) == ("first_week", 5.0, 0)


def test_no_baseline_says_which_days_were_rated() -> None:
    b = Builder().prescribe(-7, 1, 30)
    b.rate(-3, 6)
    b.session(0, before=6, after=4)
    o = _primary(b.build(today=10))
    assert o.baseline.kind == "none"
    assert o.baseline.reason == f"not enough data: {RULES['baseline']}"
    assert (o.baseline.run_in_rated_days, o.baseline.rated_days) == (1, 1)
    assert not o.available


def test_before_the_first_session_there_is_only_the_run_in() -> None:
    b = Builder().prescribe(0, 1, 30)
    weekly_pattern(b, [[6, 6, 6]])
    s = summarize_data(b.build(today=3), tz=UTC)
    assert s.primary is not None
    assert s.primary.baseline.reason == RULES["no_session"]
    assert s.primary.time_points == ()
    assert s.adherence.reason == RULES["no_session"]
    assert s.first_session is None


@pytest.mark.parametrize(("value", "low"), [(4, False), (3, True)])
def test_a_baseline_under_4_is_flagged(value: int, low: bool) -> None:
    assert _primary(endpoint_patient(value, 1)).baseline.low is low


def test_a_baseline_of_zero_has_no_percent_change_and_no_responder() -> None:
    tp = _week(_primary(endpoint_patient(0, 2)), 4)
    assert tp.status == "rated"
    assert tp.change_points == 2
    assert (tp.pct_change, tp.band) == (None, None)
    assert (tp.responder_30, tp.responder_50, tp.responder_points) == (False, False, False)
    assert tp.reason == RULES["baseline_zero"]


# --- time points, intention to treat ----------------------------------------------------------


def test_time_points_are_weeks_4_8_12_from_the_first_session() -> None:
    o = _primary(endpoint_patient(8, 4, today=90))
    assert [(t.week, t.start, t.end) for t in o.time_points] == [
        (4, on(21), on(27)),
        (8, on(49), on(55)),
        (12, on(77), on(83)),
    ]
    # weeks 8 and 12 have no ratings: non-responders, never "no data"
    assert [t.status for t in o.time_points] == ["rated", "missing", "missing"]
    assert [t.responder_30 for t in o.time_points] == [True, False, False]
    assert o.endpoint is not None
    assert o.endpoint.week == 12


def test_a_week_that_ends_today_is_not_over() -> None:
    assert _week(_primary(endpoint_patient(8, 4, today=27)), 4).status == "due"
    assert _week(_primary(endpoint_patient(8, 4, today=28)), 4).status == "rated"
    due = _week(_primary(endpoint_patient(8, 4, today=27)), 4)
    assert (due.responder_30, due.responder_50, due.responder_points) == (None, None, None)


def test_a_week_with_two_rated_days_is_a_non_responder() -> None:
    b = Builder().prescribe(-7, 1, 30)
    weekly_pattern(b, [[6] * 7], start_day=-7)
    weekly_pattern(b, [[None, None, 2, None, 2, None, None]], start_day=21)
    b.session(0, rated=False)
    tp = _week(_primary(b.build(today=28)), 4)
    assert (tp.status, tp.rated_days, tp.mean) == ("missing", 2, None)
    assert tp.responder_30 is False
    assert tp.reason == RULES["missing"]


def test_the_latest_complete_week_is_shown_but_is_not_an_endpoint() -> None:
    o = _primary(endpoint_patient(8, 4, today=20))  # 20 complete days: 2 weeks
    assert o.endpoint is None
    assert o.latest is not None
    assert (o.latest.week, o.latest.endpoint, o.latest.status) == (2, False, "missing")


def test_other_treatments_between_the_baseline_and_the_week_are_flagged() -> None:
    data = endpoint_patient(8, 4)
    b = Builder()
    b.treatment(-9, "mirror_therapy", "ended the day before the run-in", end=-8)
    b.treatment(-8, "physiotherapy", "its last day is the run-in's first", end=-7)
    b.treatment(27, "ketamine_infusion", "the last day of week 4")
    b.treatment(28, "medication_change", "the day after week 4")
    tp = _week(_primary(dataclasses.replace(data, treatments=tuple(b.treatments))), 4)
    assert [t.kind for t in tp.concurrent] == ["physiotherapy", "ketamine_infusion"]


# --- the headline series ----------------------------------------------------------------------


def test_the_headline_is_the_prescriptions_series_not_the_most_rated() -> None:
    b = Builder().prescribe(-7, 1, 30)
    for d in range(-7, 0):
        b.rate(d, 5, pain="residual_limb")
    for d in range(-7, 0, 2):
        b.rate(d, 7, pain="phantom")
    b.session(0, rated=False)
    s = summarize_data(b.build(), tz=UTC)
    assert s.headline == ("phantom", "rest")
    assert s.primary is not None
    assert (s.primary.pain, s.primary.headline) == ("phantom", True)
    assert [(o.pain, o.headline) for o in s.outcomes] == [
        ("phantom", True),
        ("residual_limb", False),
    ]
    other = Builder().prescribe(-7, 1, 30, headline=("residual_limb", "rest"))
    other.ratings, other.sessions = b.ratings, b.sessions
    s = summarize_data(other.build(), tz=UTC)
    assert s.primary is not None
    assert s.primary.pain == "residual_limb"
    forced = summarize(aggregate(b.build(), UTC), primary=("residual_limb", "rest"))
    assert forced.primary is not None
    assert forced.primary.pain == "residual_limb"


def test_the_headline_is_reported_even_without_ratings_of_it() -> None:
    b = Builder().prescribe(-7, 1, 30, headline=("residual_limb", "movement"))
    weekly_pattern(b, [[5] * 7], start_day=-7)  # phantom, at rest
    b.session(0, rated=False)
    s = summarize_data(b.build(today=28), tz=UTC)
    assert s.primary is not None
    assert (s.primary.pain, s.primary.posture, s.primary.rated_days) == (
        "residual_limb",
        "movement",
        0,
    )
    assert _week(s.primary, 4).status == "no_baseline"


# --- the period and the last use --------------------------------------------------------------


def test_the_period_runs_to_today_and_says_when_the_patient_last_used_tens() -> None:
    b = Builder().prescribe(0, 1, 30)
    for d in range(5):
        b.session(d, 9, before=6, after=4)
    s = summarize_data(b.build(today=40), tz=UTC)
    assert (s.period_start, s.period_end, s.today) == (on(0), on(40), on(40))
    assert (s.first_session, s.last_session_day, s.days_since_session) == (on(0), on(4), 36)
    assert (s.last_rating_day, s.days_since_rating) == (on(4), 36)
    a = s.adherence
    # days 0..39: 5 sessions of 40
    assert (a.first_day, a.last_day, a.days, a.sessions_done) == (on(0), on(39), 40, 5)
    assert a.days_without_session == 35


def test_a_skipped_rating_is_not_a_last_rating() -> None:
    b = Builder().prescribe(0, 1, 30)
    b.session(0, before=6, after=4)
    b.rate(3, None)
    s = summarize_data(b.build(today=5), tz=UTC)
    assert s.last_rating_day == on(0)


def test_the_period_asked_for_is_the_period() -> None:
    b = Builder().prescribe(0, 1, 30)
    weekly_pattern(b, [[9] * 7, [6] * 7, [3] * 7])
    for d in range(21):
        b.session(d, rated=False)
    s = summarize_data(b.build(period_from=on(7), period_to=on(20), today=60), tz=UTC)
    assert (s.period_start, s.period_end) == (on(7), on(20))
    assert s.sessions == 14
    assert s.first_session == on(7)
    assert s.adherence.days == 14
    assert s.days_since_session == 40  # counted from today, whatever the period


# --- adherence --------------------------------------------------------------------------------


def test_adherence_against_the_prescription() -> None:
    b = Builder().prescribe(0, sessions_per_day=3, session_minutes=30)
    done = [3, 3, 2, 0, 3, 4, 3]
    for d, n in enumerate(done):
        for k in range(n):
            b.session(d, 8 + 3 * k, minutes=30 if k < 2 else 15, rated=False)
    a = summarize_data(b.build(today=7), tz=UTC).adherence
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


def test_today_counts_once_its_sessions_are_done() -> None:
    b = Builder().prescribe(0, 2, 30)
    b.session(0, 8, rated=False)
    b.session(0, 18, rated=False)
    b.session(1, 8, rated=False)
    a = summarize_data(b.build(today=1), tz=UTC).adherence
    assert (a.days, a.last_day, a.today_counted, a.today_sessions) == (1, on(0), False, 1)
    b.session(1, 12, rated=False)
    a = summarize_data(b.build(today=1), tz=UTC).adherence
    assert (a.days, a.last_day, a.today_counted, a.sessions_done) == (2, on(1), True, 4)


def test_on_the_first_day_there_is_no_complete_day_yet() -> None:
    b = Builder().prescribe(0, 2, 30)
    b.session(0, 8, rated=False)
    a = summarize_data(b.build(today=0), tz=UTC).adherence
    assert not a.available
    assert a.reason == RULES["no_day"]
    assert a.today_sessions == 1


def test_a_session_across_midnight_counts_on_the_day_it_started() -> None:
    b = Builder().prescribe(0, 1, 30)
    for d in range(3):
        b.session(d, 23.75, minutes=30, before=6, after=3)  # 23:45 to 00:15, after at 00:18
    s = summarize_data(b.build(today=3), tz=UTC)
    a = s.adherence
    # the after rating at 00:18 on day 3 is in day 3, and day 3 (today) is not a day without a
    # session: today is not over
    assert (a.days, a.sessions_done, a.days_without_session) == (3, 3, 0)
    (change,) = s.session_change
    assert (change.sessions, change.mean_change) == (3, -3.0)


def test_adherence_follows_the_prescription_in_force_each_day() -> None:
    b = Builder().prescribe(0, 2, 30).prescribe(3, 4, 20)
    for d in range(6):
        b.session(d, 9, rated=False)
    a = summarize_data(b.build(today=6), tz=UTC).adherence
    assert [d.prescribed_sessions for d in a.daily] == [2, 2, 2, 4, 4, 4]
    assert a.sessions_prescribed == 18
    assert a.sessions_pct == pytest.approx(6 / 18 * 100)


def test_adherence_without_a_prescription_is_not_available() -> None:
    b = Builder()
    b.session(0, rated=False)
    a = summarize_data(b.build(today=2), tz=UTC).adherence
    assert not a.available
    assert a.reason == f"not enough data: {RULES['adherence']}"


# --- ratings ----------------------------------------------------------------------------------


def test_missing_ratings_never_count_as_zero() -> None:
    b = Builder().prescribe(-7, 1, 30)
    # every day one real rating and one skipped one; 0 would halve the means
    for d in range(-7, 28):
        b.rate(d, 6 if d < 0 else 4, hour=9)
        b.rate(d, None, hour=21)
    b.session(0, rated=False)
    s = summarize_data(b.build(today=28), tz=UTC)
    o = s.primary
    assert o is not None
    assert o.baseline.mean == 6
    tp = _week(o, 4)
    assert tp.mean == 4
    assert tp.reduction_pct == pytest.approx(100 / 3)
    assert s.ratings == 70
    assert s.ratings_missing == 35


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


def test_weekly_means_use_before_and_diary_ratings_only() -> None:
    b = Builder().prescribe(-7, 1, 30)
    weekly_pattern(b, [[6] * 7], start_day=-7)
    for d in range(28):
        b.session(d, before=6 if d < 21 else 3, after=1, plus_30=2)
    s = summarize_data(b.build(today=28), tz=UTC)
    o = s.primary
    assert o is not None
    assert (o.baseline.mean, _week(o, 4).mean) == (6, 3)
    assert [w.mean for w in o.weeks] == [6, 6, 6, 3, None]  # week 5 has only begun (today)
    (c,) = s.session_change
    assert c.sessions == 28
    assert c.mean_change == pytest.approx((21 * -5 + 7 * -2) / 28)
    assert c.sessions_30 == 28
    assert c.mean_change_30 == pytest.approx((21 * -4 + 7 * -1) / 28)


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
    o = _primary(b.build())
    means = {p.day: p.mean for p in o.rolling}
    assert means[on(0)] is None
    assert means[on(2)] is None  # 2 rated days
    assert means[on(7)] is None  # window days 1..7: days 2 and 7 only
    b.rate(5, 6)
    o = _primary(b.build())
    means = {p.day: p.mean for p in o.rolling}
    assert means[on(5)] == pytest.approx(5.0)  # 6, 3, 6
    assert means[on(7)] == pytest.approx(6.0)  # 3, 6, 9


# --- tolerance --------------------------------------------------------------------------------


def _tolerance_patient(amp_late: float, relief_late: int) -> PatientData:
    b = Builder().prescribe()
    for d in range(10):
        late = d >= 5
        for h in (8, 13, 18):
            relief = relief_late if late else 3
            b.session(d, h, amplitude=amp_late if late else 20.0, before=6, after=6 - relief)
    return b.build(today=9)


def test_tolerance_pattern_is_flagged() -> None:
    t = summarize_data(_tolerance_patient(25.0, 1), tz=UTC).tolerance
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
    assert summarize_data(_tolerance_patient(24.0, 2), tz=UTC).tolerance.flagged


@pytest.mark.parametrize(
    ("amp", "relief"),
    [(23.5, 1), (25.0, 3), (25.0, 4)],  # rise 17.5 %; relief unchanged; relief better
)
def test_no_tolerance_flag(amp: float, relief: int) -> None:
    t = summarize_data(_tolerance_patient(amp, relief), tz=UTC).tolerance
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


# --- what else the patient logged -------------------------------------------------------------


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
    assert [(a.kind, a.day) for a in s.adverse_events] == [("skin_redness", on(1))]
    assert [(t.kind, t.start, t.end) for t in s.treatments] == [("ketamine_infusion", on(0), on(2))]


def test_peg_pgic_and_pain_episodes() -> None:
    b = Builder().prescribe(-7, 1, 30)
    b.peg(-3, 8, 7, None)  # before treatment, no score (an item skipped)
    b.peg(-1, 8, 7, 6)  # the last before treatment: the first PEG compared
    b.session(0, rated=False)
    b.peg(20, 5, 4, 3)
    b.pgic(20, 3)
    b.pgic(27, None)  # skipped: the latest given answer is still the one on day 20
    b.episode(4, 9, pain="residual_limb", minutes=90, note="after a long walk")
    s = summarize_data(b.build(), tz=UTC)
    p = s.peg
    assert p.count == 3
    assert p.first_before_treatment
    assert p.first is not None
    assert p.first.day == on(-1)
    assert p.first.score == pytest.approx(7.0)
    assert p.latest is not None
    assert p.latest.score == pytest.approx(4.0)
    assert p.change == pytest.approx(-3.0)
    g = s.pgic
    assert (g.count, g.improved) == (2, False)
    assert g.latest is not None
    assert (g.latest.value, g.latest.label, g.latest.day) == (3, "minimally improved", on(20))
    (e,) = s.episodes
    assert (e.pain, e.nrs, e.minutes, e.note) == ("residual_limb", 9, 90.0, "after a long walk")


def test_no_data_at_all() -> None:
    s = summarize_data(Builder().build(), tz=UTC)
    assert not s.available
    assert s.reason == f"not enough data: {RULES['no_data']}"
    assert not s.adherence.available
    assert not s.tolerance.available
    assert s.primary is None


def test_days_are_local_calendar_days() -> None:
    b = Builder()
    b.rate(0, 5, hour=23.5)  # 23:30 UTC on day 0 is day 1 in UTC+2
    assert aggregate(b.build(), UTC).first_day == on(0)
    assert aggregate(b.build(), timezone(timedelta(hours=2))).first_day == on(1)


def test_sample_patient_summary() -> None:
    s = summarize_data(sample_patient(), tz=UTC)
    o = s.primary
    assert o is not None
    assert o.baseline.kind == "run_in"
    tp = o.endpoint
    assert tp is not None
    assert tp.week == 4
    assert tp.responder_30
    assert tp.band in ("moderate", "substantial")
    assert [t.kind for t in tp.concurrent] == ["mirror_therapy", "medication_change"]
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
    assert s.primary is not None
    assert doc["primary"]["baseline"]["mean"] == s.primary.baseline.mean
    assert doc["adherence"]["sessions_done"] == s.adherence.sessions_done
    assert s.period_start is not None
    assert doc["period_start"] == s.period_start.isoformat()


def test_every_rule_is_written_in_the_docs() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())  # lines wrap anywhere
    for name, rule in RULES.items():
        assert rule in text, f"docs/review.md lacks the rule {name!r}: {rule}"
