"""The clinician's figures (DESIGN.md §9), computed from plain rows; the rules are in
docs/review.md, and each rule's wording is in :data:`RULES`.

Two steps, so that one patient (from rows) and a hundred patients (from SQL ``GROUP BY``) share
the same rules:

1. :func:`aggregate` reduces one patient's rows (:class:`~tens_control.review.model.PatientData`)
   to per-day sums (:class:`Aggregates`). The store adapter can build the same
   :class:`Aggregates` directly in SQL.
2. :func:`summarize` turns :class:`Aggregates` into a :class:`PatientSummary`: adherence,
   per-session change, weekly means and percent change from the baseline week, IMMPACT bands,
   responder status, 7-day rolling means, the tolerance flag, faults, rejections, adverse events
   and other treatments.

A skipped rating (``value is None``) is counted as missing, never as 0. A figure without enough
data is returned with ``available=False`` and ``reason`` = "not enough data: <rule>".
Pain means are exact fractions until they are reported, so band boundaries (30 %, 50 %) are
decided exactly.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Literal

from pydantic import TypeAdapter

from tens_control.review.model import (
    PAIN_KINDS,
    POSTURES,
    AdverseEventRow,
    PainKind,
    PatientData,
    PatientRow,
    Posture,
    PrescriptionRow,
    SeriesKey,
    TreatmentRow,
    series_label,
)

# --- the rules -------------------------------------------------------------------------------

MIN_RATED_DAYS_PER_WEEK = 3
MIN_RATED_DAYS_ROLLING = 3
MIN_PAIRED_SESSIONS = 3
TOLERANCE_BLOCK_DAYS = 5
TOLERANCE_MIN_SESSIONS = 3
TOLERANCE_RISE = Fraction(1, 5)  # +20 % mean session amplitude
RESPONDER_30 = Fraction(3, 10)
RESPONDER_50 = Fraction(1, 2)
MINIMAL = Fraction(1, 10)

BACKGROUND_WHENS = frozenset({"before", "diary"})
"""Ratings that measure the pain the patient lives with (weekly means, bands, responders).
Ratings during, just after and 30 min after a session measure the session's immediate effect
and are used only for the per-session change."""

RULES: dict[str, str] = {
    "adherence": "needs a prescription in force on at least 1 day of the period",
    "session_change": "needs ≥ 3 sessions rated both before and after (same pain, same posture)",
    "baseline": "needs ≥ 3 rated days in the baseline week",
    "week": "needs ≥ 3 rated days in the week",
    "follow_up": "needs a week after the baseline week with ≥ 3 rated days",
    "baseline_zero": "the baseline weekly mean is 0, so a percent change is undefined",
    "rolling": "needs ≥ 3 rated days in the 7-day window",
    "tolerance": (
        "needs two consecutive 5-day blocks, each with ≥ 3 sessions with a recorded amplitude "
        "and ≥ 3 sessions rated before and after"
    ),
    "no_data": "needs at least one session or rating in the period",
}
"""Each figure's minimum-data rule, word for word as in docs/review.md."""


def not_enough(rule: str) -> str:
    return f"not enough data: {RULES[rule]}"


Band = Literal["none", "minimal", "moderate", "substantial"]
BAND_LABELS: dict[Band, str] = {
    "none": "no important change (< 10 %)",
    "minimal": "minimal (10 % to < 30 %)",
    "moderate": "moderate (30 % to < 50 %)",
    "substantial": "substantial (≥ 50 %)",
}


def immpact_band(reduction: Fraction) -> Band:
    """The IMMPACT band of a pain reduction (a fraction: 0.3 = 30 % less pain).

    The band is the highest threshold reached: ≥ 50 % substantial, ≥ 30 % moderate, ≥ 10 %
    minimal, below 10 % (or worse) none. IMMPACT calls 10–20 % "minimally important"; a 20–30 %
    reduction passes the minimal threshold but not the moderate one, so it is also "minimal".
    """
    if reduction >= RESPONDER_50:
        return "substantial"
    if reduction >= RESPONDER_30:
        return "moderate"
    if reduction >= MINIMAL:
        return "minimal"
    return "none"


# --- aggregates ------------------------------------------------------------------------------

SumCount = tuple[int, int]
"""(sum, count) of integer values."""


US_PER_MINUTE = 60_000_000


def stim_us(minutes: float) -> int:
    """A session's stimulation time in whole microseconds (the store gives minutes as
    microseconds / 60,000,000, which this turns back exactly)."""
    return round(minutes * US_PER_MINUTE)


def amplitude_ua(mean_ma: float) -> int:
    """A session's mean amplitude in whole microamperes (0.0005 mA rounds up), the unit in which
    the tolerance rule adds amplitudes. The patient list's SQL computes the very same number:
    ``CAST(mean_amplitude_ma * 1000 + 0.5 AS INTEGER)``."""
    return int(mean_ma * 1000 + 0.5)


@dataclass(slots=True)
class SessionDay:
    """One day's sessions: how many, stimulation time (exact, in microseconds), and the sum and
    count of the sessions' mean amplitudes (exact, in microamperes: :func:`amplitude_ua`).

    Integers, so that a day's figures do not depend on the order its sessions are added in:
    the per-patient path (rows) and the patient list (SQL) give the very same numbers."""

    sessions: int = 0
    stim_us: int = 0
    amp_ua: int = 0
    amp_n: int = 0

    @property
    def minutes(self) -> float:
        return self.stim_us / US_PER_MINUTE


@dataclass(slots=True)
class Aggregates:
    """One patient's data reduced to per-day sums; the input of :func:`summarize`.

    ``background[key][day]`` is the (sum, count) of that day's non-missing before-session and
    diary ratings of that pain series. ``change[key][day]`` is the (sum, count) of after − before
    over the sessions of that day rated both before and after (same pain, same posture);
    ``change_30`` the same for +30 min − before. Days are the patient's local calendar days.
    """

    patient: PatientRow
    background: dict[SeriesKey, dict[date, SumCount]] = field(default_factory=dict)
    change: dict[SeriesKey, dict[date, SumCount]] = field(default_factory=dict)
    change_30: dict[SeriesKey, dict[date, SumCount]] = field(default_factory=dict)
    session_days: dict[date, SessionDay] = field(default_factory=dict)
    prescriptions: list[tuple[date, PrescriptionRow]] = field(default_factory=list)
    ratings_total: int = 0
    ratings_missing: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    end_reasons: dict[str, int] = field(default_factory=dict)
    adverse_events: list[AdverseEventRow] = field(default_factory=list)
    treatments: list[TreatmentRow] = field(default_factory=list)
    first_day: date | None = None
    last_day: date | None = None
    period_from: date | None = None
    period_to: date | None = None

    def see_day(self, day: date) -> None:
        """Widen the data extent to include ``day``."""
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if self.last_day is None or day > self.last_day:
            self.last_day = day


Zone = tzinfo | None
"""A time zone for calendar days; ``None`` is this computer's local zone (with its daylight
saving rules, as SQLite's ``'localtime'``)."""


def local_day(moment: datetime, tz: Zone) -> date:
    """The calendar day of ``moment`` in ``tz`` (``None``: local time; a naive datetime is read
    as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(tz).date()


def _add(table: dict[SeriesKey, dict[date, SumCount]], key: SeriesKey, day: date, v: int) -> None:
    days = table.setdefault(key, {})
    s, n = days.get(day, (0, 0))
    days[day] = (s + v, n + 1)


def aggregate(data: PatientData, tz: Zone = None) -> Aggregates:
    """Reduce one patient's rows to :class:`Aggregates` (rows outside the period are ignored;
    days in ``tz``, default local time)."""
    zone = tz
    lo, hi = data.period_from, data.period_to

    def inside(day: date) -> bool:
        return (lo is None or day >= lo) and (hi is None or day <= hi)

    agg = Aggregates(patient=data.patient, period_from=lo, period_to=hi)
    agg.prescriptions = sorted(
        ((local_day(p.valid_from, zone), p) for p in data.prescriptions), key=lambda t: t[0]
    )

    for s in data.sessions:
        day = local_day(s.start, zone)
        if not inside(day):
            continue
        agg.see_day(day)
        sd = agg.session_days.setdefault(day, SessionDay())
        sd.sessions += 1
        sd.stim_us += stim_us(s.stim_minutes)
        if s.mean_amplitude_ma is not None:
            sd.amp_ua += amplitude_ua(s.mean_amplitude_ma)
            sd.amp_n += 1
        reason = s.end_reason or "not ended"
        agg.end_reasons[reason] = agg.end_reasons.get(reason, 0) + 1

    # per session and series: the last before, after and +30 min values (and the before's day)
    pairs: dict[tuple[str, SeriesKey], dict[str, tuple[date, int]]] = defaultdict(dict)
    for r in sorted(data.ratings, key=lambda r: r.at):
        day = local_day(r.at, zone)
        if not inside(day):
            continue
        agg.see_day(day)
        agg.ratings_total += 1
        if r.value is None:
            agg.ratings_missing += 1
            continue
        key: SeriesKey = (r.pain, r.posture)
        if r.when in BACKGROUND_WHENS:
            _add(agg.background, key, day, r.value)
        if r.session_id is not None and r.when in ("before", "after", "plus_30_min"):
            pairs[(r.session_id, key)][r.when] = (day, r.value)
    for (_sid, key), got in pairs.items():
        if "before" not in got:
            continue
        day, before = got["before"]
        if "after" in got:
            _add(agg.change, key, day, got["after"][1] - before)
        if "plus_30_min" in got:
            _add(agg.change_30, key, day, got["plus_30_min"][1] - before)

    for e in data.events:
        day = local_day(e.at, zone)
        if not inside(day):
            continue
        table = agg.faults if e.kind == "fault" else agg.rejections
        table[e.code] = table.get(e.code, 0) + 1
    agg.adverse_events = sorted(
        (a for a in data.adverse_events if inside(local_day(a.at, zone))), key=lambda a: a.at
    )
    for a in agg.adverse_events:
        agg.see_day(local_day(a.at, zone))
    agg.treatments = sorted(
        (
            t
            for t in data.treatments
            if (hi is None or t.start <= hi) and (lo is None or (t.end or t.start) >= lo)
        ),
        key=lambda t: t.start,
    )
    return agg


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdherenceDay:
    day: date
    sessions: int
    minutes: float
    prescribed_sessions: int
    prescribed_minutes: float


@dataclass(frozen=True, slots=True)
class Adherence:
    """Sessions and minutes per day against the prescription in force that day.

    ``sessions_pct`` = Σ min(done, prescribed) / Σ prescribed over the days with a prescription
    (so extra sessions one day do not hide missed days); ``minutes_pct`` likewise.
    """

    available: bool
    reason: str | None = None
    days: int = 0
    sessions_done: int = 0
    sessions_prescribed: int = 0
    sessions_pct: float | None = None
    minutes_done: float = 0.0
    minutes_prescribed: float = 0.0
    minutes_pct: float | None = None
    days_fully_adherent: int = 0
    days_without_session: int = 0
    days_over_prescription: int = 0
    sessions_per_day: float | None = None
    """Mean sessions per prescribed day."""
    minutes_per_day: float | None = None
    """Mean stimulation minutes per prescribed day."""
    daily: tuple[AdherenceDay, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionChange:
    """Mean per-session change (after − before; negative = less pain) for one pain series."""

    pain: PainKind
    posture: Posture
    available: bool
    reason: str | None = None
    sessions: int = 0
    mean_change: float | None = None
    sessions_30: int = 0
    mean_change_30: float | None = None
    """Mean of (+30 min − before), when at least one session has both."""


@dataclass(frozen=True, slots=True)
class WeekMean:
    """One week (7 days from the baseline start): the mean of its daily means."""

    index: int
    """0 = the baseline week."""
    start: date
    end: date
    rated_days: int
    mean: float | None
    """``None`` when the week has fewer than 3 rated days."""
    pct_change: float | None = None
    """Percent change from the baseline week's mean (negative = less pain)."""


@dataclass(frozen=True, slots=True)
class RollingPoint:
    day: date
    mean: float | None
    """Mean of daily means over the 7 days ending on ``day``; ``None`` with < 3 rated days."""


@dataclass(frozen=True, slots=True)
class PainOutcome:
    """Weekly means, percent change from the baseline week, IMMPACT band and responder status
    of one pain series. The comparison week is the latest week with ≥ 3 rated days."""

    pain: PainKind
    posture: Posture
    label: str
    available: bool
    reason: str | None = None
    baseline_start: date | None = None
    baseline_mean: float | None = None
    latest_week: int | None = None
    latest_mean: float | None = None
    change_points: float | None = None
    pct_change: float | None = None
    """(latest − baseline) / baseline × 100; negative = less pain."""
    reduction_pct: float | None = None
    """−pct_change: positive = less pain."""
    band: Band | None = None
    responder_30: bool | None = None
    responder_50: bool | None = None
    rated_days: int = 0
    weeks: tuple[WeekMean, ...] = ()
    rolling: tuple[RollingPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class ToleranceWindow:
    """Two consecutive 5-day blocks: ``prev`` = [start, start+4], ``last`` = [start+5, end]."""

    start: date
    end: date
    amplitude_prev: float
    amplitude_last: float
    rise_pct: float
    relief_prev: float
    """Mean relief (before − after, points) in the first block."""
    relief_last: float
    flagged: bool


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Mean session amplitude up ≥ 20 % from one 5-day block to the next while mean relief
    falls. ``current`` is true when the latest evaluable window is flagged."""

    available: bool
    reason: str | None = None
    series: SeriesKey | None = None
    flagged: bool = False
    current: bool = False
    windows_evaluated: int = 0
    flagged_windows: tuple[ToleranceWindow, ...] = ()
    latest: ToleranceWindow | None = None


@dataclass(frozen=True, slots=True)
class AdverseEventItem:
    at: datetime
    kind: str
    severity: str | None
    note: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class TreatmentItem:
    start: date
    end: date | None
    kind: str
    description: str


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """Every figure for one patient over one period (the JSON report is this, serialised)."""

    patient_id: str
    pseudonym: str
    period_start: date | None
    period_end: date | None
    available: bool
    reason: str | None
    sessions: int
    stim_minutes: float
    ratings: int
    ratings_missing: int
    adherence: Adherence
    session_change: tuple[SessionChange, ...]
    outcomes: tuple[PainOutcome, ...]
    primary: PainOutcome | None
    """The headline series: the one with most rated days in the baseline week."""
    tolerance: Tolerance
    faults: dict[str, int]
    rejections: dict[str, int]
    end_reasons: dict[str, int]
    adverse_events: tuple[AdverseEventItem, ...]
    treatments: tuple[TreatmentItem, ...]

    @property
    def fault_count(self) -> int:
        return sum(self.faults.values())

    @property
    def rejection_count(self) -> int:
        return sum(self.rejections.values())

    def outcome(self, pain: PainKind, posture: Posture) -> PainOutcome | None:
        for o in self.outcomes:
            if o.pain == pain and o.posture == posture:
                return o
        return None


SUMMARY_ADAPTER: TypeAdapter[PatientSummary] = TypeAdapter(PatientSummary)


def summary_json(summary: PatientSummary, indent: int | None = 2) -> bytes:
    """The summary as JSON (dates ISO 8601; ``null`` where a figure has no value)."""
    return SUMMARY_ADAPTER.dump_json(summary, indent=indent)


# --- the figures -----------------------------------------------------------------------------


def _pct(part: Fraction | float, whole: Fraction | float) -> float | None:
    if whole == 0:
        return None
    return float(Fraction(part) / Fraction(whole) * 100)


def adherence(agg: Aggregates, start: date, end: date, with_daily: bool = True) -> Adherence:
    """Sessions and minutes per day against the prescription in force each day
    (``with_daily=False``: without the list of days)."""
    rx = agg.prescriptions
    days: list[AdherenceDay] = []
    n_days = s_done = s_presc = s_capped = 0
    m_done = m_presc = m_capped = 0.0
    full = without = over = 0
    no_session = SessionDay()
    for i, (first, p) in enumerate(rx):
        # this prescription is in force from its day until the day before the next one's
        until = rx[i + 1][0] - timedelta(days=1) if i + 1 < len(rx) else end
        day, last = max(first, start), min(until, end)
        p_sessions, p_minutes = p.sessions_per_day, p.daily_minutes
        while day <= last:
            sd = agg.session_days.get(day, no_session)
            done, minutes = sd.sessions, sd.minutes
            n_days += 1
            s_done += done
            s_presc += p_sessions
            s_capped += min(done, p_sessions)
            m_done += minutes
            m_presc += p_minutes
            m_capped += min(minutes, p_minutes)
            full += done >= p_sessions and minutes >= p_minutes
            without += done == 0
            over += done > p_sessions or minutes > p_minutes
            if with_daily:
                days.append(AdherenceDay(day, done, minutes, p_sessions, p_minutes))
            day += timedelta(days=1)
    if not n_days:
        return Adherence(available=False, reason=not_enough("adherence"))
    return Adherence(
        available=True,
        days=n_days,
        sessions_done=s_done,
        sessions_prescribed=s_presc,
        sessions_pct=_pct(s_capped, s_presc),
        minutes_done=m_done,
        minutes_prescribed=m_presc,
        minutes_pct=_pct(m_capped, m_presc),
        days_fully_adherent=full,
        days_without_session=without,
        days_over_prescription=over,
        sessions_per_day=s_done / n_days,
        minutes_per_day=m_done / n_days,
        daily=tuple(days),
    )


def session_change(agg: Aggregates, key: SeriesKey) -> SessionChange:
    """Mean after − before (and +30 min − before) over the sessions rated both ways."""
    s, n = _total(agg.change.get(key, {}))
    s30, n30 = _total(agg.change_30.get(key, {}))
    mean30 = float(Fraction(s30, n30)) if n30 else None
    if n < MIN_PAIRED_SESSIONS:
        return SessionChange(
            pain=key[0],
            posture=key[1],
            available=False,
            reason=not_enough("session_change"),
            sessions=n,
            sessions_30=n30,
            mean_change_30=mean30,
        )
    return SessionChange(
        pain=key[0],
        posture=key[1],
        available=True,
        sessions=n,
        mean_change=float(Fraction(s, n)),
        sessions_30=n30,
        mean_change_30=mean30,
    )


def _total(days: Mapping[date, SumCount]) -> SumCount:
    s = n = 0
    for ds, dn in days.values():
        s += ds
        n += dn
    return s, n


def rated_only(days: Mapping[date, SumCount]) -> dict[date, SumCount]:
    """The days with at least one rating, with their (sum, count)."""
    return {d: sc for d, sc in days.items() if sc[1]}


def daily_means(days: Mapping[date, SumCount]) -> dict[date, Fraction]:
    """Each rated day's mean rating (exact)."""
    return {d: Fraction(s, n) for d, (s, n) in days.items() if n}


def mean_of_daily_means(days: Iterable[SumCount]) -> Fraction:
    """The mean of the daily means ``sum / count`` of rated days, exactly: over a common
    denominator in integers, then one fraction (the same number as adding a fraction per day)."""
    by_count: dict[int, int] = {}
    k = 0
    for s, n in days:
        by_count[n] = by_count.get(n, 0) + s
        k += 1
    common = math.lcm(*by_count)
    total = sum(s * (common // n) for n, s in by_count.items())
    return Fraction(total, common * k)


def weekly_means(
    days: Mapping[date, SumCount], anchor: date, end: date
) -> list[tuple[WeekMean, Fraction | None]]:
    """Weeks of 7 days from ``anchor`` to the week containing ``end``; each week's mean of its
    daily means (of the rated days in ``days``), or ``None`` with fewer than 3 rated days.
    Returns (week, exact mean) pairs."""
    out: list[tuple[WeekMean, Fraction | None]] = []
    n_weeks = (end - anchor).days // 7 + 1
    buckets: list[list[SumCount]] = [[] for _ in range(max(n_weeks, 0))]
    for d, sc in days.items():
        i = (d - anchor).days // 7
        if sc[1] and 0 <= i < n_weeks:
            buckets[i].append(sc)
    for i, vals in enumerate(buckets):
        ws = anchor + timedelta(days=7 * i)
        exact = mean_of_daily_means(vals) if len(vals) >= MIN_RATED_DAYS_PER_WEEK else None
        out.append(
            (
                WeekMean(
                    index=i,
                    start=ws,
                    end=ws + timedelta(days=6),
                    rated_days=len(vals),
                    mean=float(exact) if exact is not None else None,
                ),
                exact,
            )
        )
    return out


def rolling_means(days: Mapping[date, SumCount], start: date, end: date) -> list[RollingPoint]:
    """For each day, the mean of the daily means of the 7 days ending that day (≥ 3 rated)."""
    out: list[RollingPoint] = []
    day = start
    while day <= end:
        window = [sc for k in range(7) if (sc := days.get(day - timedelta(days=k))) and sc[1]]
        if len(window) >= MIN_RATED_DAYS_ROLLING:
            out.append(RollingPoint(day, float(mean_of_daily_means(window))))
        else:
            out.append(RollingPoint(day, None))
        day += timedelta(days=1)
    return out


def pain_outcome(
    agg: Aggregates, key: SeriesKey, anchor: date, end: date, with_rolling: bool = True
) -> PainOutcome:
    """Weekly means from ``anchor`` (the baseline week's first day), percent change of the latest
    week with ≥ 3 rated days from the baseline week, IMMPACT band and responder status."""
    days = rated_only(agg.background.get(key, {}))
    weeks = weekly_means(days, anchor, end)
    rolling = tuple(rolling_means(days, anchor, end)) if with_rolling else ()
    base_out = PainOutcome(
        pain=key[0],
        posture=key[1],
        label=series_label(key),
        available=False,
        baseline_start=anchor,
        rated_days=len(days),
        rolling=rolling,
        weeks=tuple(w for w, _ in weeks),
    )
    base = weeks[0][1] if weeks else None
    if base is None:
        return replace(base_out, reason=not_enough("baseline"))
    # percent change on every week with a mean
    out_weeks = tuple(_with_pct(w, m, base) for w, m in weeks)
    latest = next(((w, m) for w, m in reversed(weeks[1:]) if m is not None), None)
    if latest is None:
        return replace(
            base_out, reason=not_enough("follow_up"), baseline_mean=float(base), weeks=out_weeks
        )
    week, last = latest
    if base == 0:
        return replace(
            base_out,
            reason=RULES["baseline_zero"],
            baseline_mean=0.0,
            latest_week=week.index,
            latest_mean=float(last),
            change_points=float(last),
            weeks=out_weeks,
        )
    reduction = (base - last) / base
    return replace(
        base_out,
        available=True,
        baseline_mean=float(base),
        latest_week=week.index,
        latest_mean=float(last),
        change_points=float(last - base),
        pct_change=float(-reduction * 100),
        reduction_pct=float(reduction * 100),
        band=immpact_band(reduction),
        responder_30=reduction >= RESPONDER_30,
        responder_50=reduction >= RESPONDER_50,
        weeks=out_weeks,
    )


def _with_pct(w: WeekMean, m: Fraction | None, base: Fraction) -> WeekMean:
    if m is None or base == 0:
        return w
    # (m - base) / base * 100 in integers; int / int rounds exactly as float(Fraction) does
    num = (m.numerator * base.denominator - base.numerator * m.denominator) * 100
    return WeekMean(
        index=w.index,
        start=w.start,
        end=w.end,
        rated_days=w.rated_days,
        mean=w.mean,
        pct_change=num / (base.numerator * m.denominator),
    )


_Block = tuple[int, int, int, int]
"""A 5-day block of the tolerance rule: the sum of its sessions' mean amplitudes (µA) and their
count, the sum of its sessions' relief (before − after, points) and their count."""


def tolerance(agg: Aggregates, key: SeriesKey | None, start: date, end: date) -> Tolerance:
    """Slide two consecutive 5-day blocks over the period (one day at a time); flag a window when
    the mean session amplitude of the second block is ≥ 20 % above the first's and the mean
    relief (before − after, points, of ``key``) of the second block is below the first's.

    Session amplitudes are added in whole microamperes (:func:`amplitude_ua`) and reliefs in
    points, so every block is a sum of integers and every comparison is exact."""
    if key is None:
        return Tolerance(available=False, reason=not_enough("tolerance"))
    block = TOLERANCE_BLOCK_DAYS
    n_days = (end - start).days + 1
    # per day of the period (index 0 = start): amplitude sum/count, relief sum/count
    amp = [0] * n_days
    amp_n = [0] * n_days
    rel = [0] * n_days
    rel_n = [0] * n_days
    for d, sd in agg.session_days.items():
        i = (d - start).days
        if 0 <= i < n_days:
            amp[i] += sd.amp_ua
            amp_n[i] += sd.amp_n
    for d, (cs, cn) in agg.change.get(key, {}).items():
        i = (d - start).days
        if 0 <= i < n_days:
            rel[i] -= cs  # relief = before − after = −change
            rel_n[i] += cn

    def block_sums(values: list[int]) -> list[int]:
        """The sum over each 5-day block, by its first day's index."""
        total = [0, *itertools.accumulate(values)]
        return [total[i + block] - total[i] for i in range(n_days - block + 1)]

    b_amp, b_amp_n, b_rel, b_rel_n = (block_sums(v) for v in (amp, amp_n, rel, rel_n))

    def stats(i: int) -> _Block:
        return b_amp[i], b_amp_n[i], b_rel[i], b_rel_n[i]

    def window(i: int) -> ToleranceWindow:
        b0, b1 = stats(i), stats(i + block)
        a0, a1 = Fraction(b0[0], 1000 * b0[1]), Fraction(b1[0], 1000 * b1[1])
        r0, r1 = Fraction(b0[2], b0[3]), Fraction(b1[2], b1[3])
        rise = (a1 - a0) / a0
        first = start + timedelta(days=i)
        return ToleranceWindow(
            start=first,
            end=first + timedelta(days=2 * block - 1),
            amplitude_prev=float(a0),
            amplitude_last=float(a1),
            rise_pct=float(rise * 100),
            relief_prev=float(r0),
            relief_last=float(r1),
            flagged=rise >= TOLERANCE_RISE and r1 < r0,
        )

    # The test in integers (the same result as with fractions, without building them): with
    # a = S / (1000 n) and the rise limit N / D, (a1 - a0) / a0 >= N / D  <=>
    # D * S1 * n0 >= (N + D) * S0 * n1 (a0 > 0); r1 < r0  <=>  s1 * m0 < s0 * m1 (relief sums s
    # over counts m > 0). Window rows are built only for flagged windows and the latest one.
    big_n, big_d = TOLERANCE_RISE.numerator, TOLERANCE_RISE.denominator
    least = TOLERANCE_MIN_SESSIONS
    evaluated = 0
    flagged: list[ToleranceWindow] = []
    last: int | None = None
    for i in range(max(n_days - 2 * block + 1, 0)):
        j = i + block
        n0, n1, m0, m1 = b_amp_n[i], b_amp_n[j], b_rel_n[i], b_rel_n[j]
        if n0 < least or n1 < least or m0 < least or m1 < least or b_amp[i] <= 0:
            continue
        evaluated += 1
        last = i
        if (
            big_d * b_amp[j] * n0 >= (big_n + big_d) * b_amp[i] * n1
            and b_rel[j] * m0 < b_rel[i] * m1
        ):
            flagged.append(window(i))
    if last is None:
        return Tolerance(available=False, reason=not_enough("tolerance"), series=key)
    last_start = start + timedelta(days=last)
    latest = flagged[-1] if flagged and flagged[-1].start == last_start else window(last)
    return Tolerance(
        available=True,
        series=key,
        flagged=bool(flagged),
        current=latest.flagged,
        windows_evaluated=evaluated,
        flagged_windows=tuple(flagged),
        latest=latest,
    )


def _series_order(key: SeriesKey) -> tuple[int, int]:
    return PAIN_KINDS.index(key[0]), POSTURES.index(key[1])


def choose_primary(agg: Aggregates, anchor: date | None) -> SeriesKey | None:
    """The headline series: most rated days in the baseline week, then most rated days overall,
    then phantom before residual limb before other, rest before movement."""
    if anchor is None:
        return None
    week_end = anchor + timedelta(days=6)
    best: tuple[int, int, tuple[int, int]] | None = None
    chosen: SeriesKey | None = None
    for key, days in agg.background.items():
        rated = [d for d, (_s, n) in days.items() if n]
        if not rated:
            continue
        in_base = sum(1 for d in rated if anchor <= d <= week_end)
        order = _series_order(key)
        score = (-in_base, -len(rated), order)
        if best is None or score < best:
            best, chosen = score, key
    return chosen


def summarize(
    agg: Aggregates, primary: SeriesKey | None = None, with_daily: bool = True
) -> PatientSummary:
    """Every figure of DESIGN.md §9 for one patient.

    The period runs from ``period_from`` (else the first day with data) to ``period_to`` (else
    the last day with data). The baseline week starts on the first day in the period with a
    before-session or diary rating. ``primary`` overrides the headline series.
    ``with_daily=False`` leaves out the per-day lists (adherence days, rolling means) for a
    quick status of many patients.
    """
    start = agg.period_from or agg.first_day
    end = agg.period_to or agg.last_day
    base = PatientSummary(
        patient_id=agg.patient.id,
        pseudonym=agg.patient.pseudonym,
        period_start=start,
        period_end=end,
        available=False,
        reason=not_enough("no_data"),
        sessions=sum(sd.sessions for sd in agg.session_days.values()),
        stim_minutes=sum(sd.stim_us for sd in agg.session_days.values()) / US_PER_MINUTE,
        ratings=agg.ratings_total,
        ratings_missing=agg.ratings_missing,
        adherence=Adherence(available=False, reason=not_enough("adherence")),
        session_change=(),
        outcomes=(),
        primary=None,
        tolerance=Tolerance(available=False, reason=not_enough("tolerance")),
        faults=dict(sorted(agg.faults.items())),
        rejections=dict(sorted(agg.rejections.items())),
        end_reasons=dict(sorted(agg.end_reasons.items())),
        adverse_events=tuple(
            AdverseEventItem(a.at, a.kind, a.severity, a.note, a.session_id)
            for a in agg.adverse_events
        ),
        treatments=tuple(
            TreatmentItem(t.start, t.end, t.kind, t.description) for t in agg.treatments
        ),
    )
    if start is None or end is None or start > end:
        return base

    adh = adherence(agg, start, end, with_daily=with_daily)

    rated_days = [
        d for days in agg.background.values() for d, (_s, n) in days.items() if n and d >= start
    ]
    anchor = min(rated_days) if rated_days else None
    keys = sorted(set(agg.background) | set(agg.change) | set(agg.change_30), key=_series_order)
    outcomes: list[PainOutcome] = []
    if anchor is not None:
        outcomes = [
            pain_outcome(agg, k, anchor, end, with_rolling=with_daily)
            for k in keys
            if k in agg.background
        ]
    key = primary if primary is not None else choose_primary(agg, anchor)
    return replace(
        base,
        available=True,
        reason=None,
        adherence=adh,
        session_change=tuple(session_change(agg, k) for k in keys),
        outcomes=tuple(outcomes),
        primary=next((o for o in outcomes if (o.pain, o.posture) == key), None),
        tolerance=tolerance(agg, key, start, end),
    )


def summarize_data(
    data: PatientData, tz: Zone = None, primary: SeriesKey | None = None
) -> PatientSummary:
    """:func:`aggregate` then :func:`summarize`, for one patient's rows."""
    return summarize(aggregate(data, tz), primary=primary)


def summarize_many(aggs: Iterable[Aggregates]) -> list[PatientSummary]:
    """Quick summaries (no per-day lists) of many patients, e.g. the clinician's patient list."""
    return [summarize(a, with_daily=False) for a in aggs]


def per_session_changes(
    data: PatientData, key: SeriesKey
) -> dict[str, tuple[int | None, int | None]]:
    """Session id -> (before, after) of one pain series (``None`` where missing or absent)."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for r in sorted(data.ratings, key=lambda r: r.at):
        if r.session_id is None or (r.pain, r.posture) != key:
            continue
        before, after = out.get(r.session_id, (None, None))
        if r.when == "before" and r.value is not None:
            before = r.value
        elif r.when == "after" and r.value is not None:
            after = r.value
        out[r.session_id] = (before, after)
    return out


def ordered_series(keys: Sequence[SeriesKey]) -> list[SeriesKey]:
    return sorted(keys, key=_series_order)
