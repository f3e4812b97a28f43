"""The clinician's figures (DESIGN.md §9), computed from plain rows; the rules are in
docs/review.md, and each rule's wording is in :data:`RULES`.

The definitions follow how pain trials report (IMMPACT: Dworkin et al. 2008; Farrar et al.
2001):

- the **period** runs to today (or to ``--to``), never only to the last day with data, and the
  last session and the last rating are always given with the days since;
- the **baseline** of each pain series is the **run-in**: the days before the first session
  (as many as the prescription's ``run_in_days``) with ≥ 3 rated days; without one, the
  **first week of use**, labelled so. A baseline under 4/10 is flagged;
- the **endpoints** are fixed **time points**, weeks 4, 8 and 12 counted from the first session,
  **intention to treat**: a time point that has passed without ≥ 3 rated days (or without a
  baseline) counts as a non-responder, never as "no data";
- **responders** in percent (≥ 30 %, ≥ 50 % less pain) and in points (≥ 2 NRS points less),
  with the IMMPACT band;
- the **headline series** is the one the prescription names (default phantom-limb pain at rest);
  every series has its own figures;
- another treatment (a ketamine infusion, a medication change, ...) inside a comparison window
  is listed with the figure it may explain;
- **adherence** counts a session on the local day it started, from the first session to the
  last complete day (today counts once its prescribed sessions are done).

Two steps, so that one patient (from rows) and a hundred patients (from SQL ``GROUP BY``) share
the same rules:

1. :func:`aggregate` reduces one patient's rows (:class:`~tens_control.review.model.PatientData`)
   to per-day sums (:class:`Aggregates`). The store adapter can build the same
   :class:`Aggregates` directly in SQL.
2. :func:`summarize` turns :class:`Aggregates` into a :class:`PatientSummary`.

A skipped rating (``value is None``) is counted as missing, never as 0. A figure without enough
data is returned with ``available=False`` and ``reason`` = "not enough data: <rule>".
Pain means are exact fractions until they are reported, so thresholds (30 %, 50 %, 2 points,
4/10) are decided exactly.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Literal, TypeVar

from pydantic import TypeAdapter

from tens_control.pain import PGIC_LABELS
from tens_control.review.model import (
    HEADLINE,
    PAIN_KINDS,
    POSTURES,
    RUN_IN_DAYS,
    AdverseEventRow,
    EpisodeRow,
    NoteRow,
    PainKind,
    PatientData,
    PatientRow,
    PegRow,
    PgicRow,
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
RESPONDER_POINTS = 2
MINIMAL = Fraction(1, 10)
LOW_BASELINE = 4
"""A baseline below 4/10 is flagged: percent changes from a low baseline mislead."""
TIME_POINTS = (4, 8, 12)
"""The endpoints: weeks counted from the first session (week 1 = its day and the 6 after)."""
PGIC_IMPROVED = 2
"""PGIC "much improved" or better (1-2): the benchmark Farrar et al. 2001 set ~30 % against."""

BACKGROUND_WHENS = frozenset({"before", "diary"})
"""Ratings that measure the pain the patient lives with (baseline, weekly means, time points,
responders). Ratings during, just after and 30 min after a session measure the session's
immediate effect and are used only for the per-session change."""

RULES: dict[str, str] = {
    "adherence": "needs a prescription in force on at least 1 day from the first session",
    "no_session": "no session yet: adherence and the time points start at the first session",
    "no_day": "no complete day of treatment yet (today counts once its sessions are done)",
    "session_change": "needs ≥ 3 sessions rated both before and after (same pain, same posture)",
    "baseline": (
        "needs ≥ 3 rated days in the run-in (the days before the first session) or in the "
        "first week of use"
    ),
    "week": "needs ≥ 3 rated days in the week",
    "missing": "fewer than 3 rated days in the week: counted as a non-responder",
    "no_baseline": "no baseline: counted as a non-responder",
    "baseline_zero": "the baseline is 0, so a percent change is undefined",
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
    ``last_session`` is the start of the latest session, ``last_rating`` the time of the latest
    pain rating given (not skipped); ``today`` the day the review is made.
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
    episodes: list[EpisodeRow] = field(default_factory=list)
    pegs: list[PegRow] = field(default_factory=list)
    pgics: list[PgicRow] = field(default_factory=list)
    last_session: datetime | None = None
    last_rating: datetime | None = None
    first_day: date | None = None
    last_day: date | None = None
    period_from: date | None = None
    period_to: date | None = None
    today: date | None = None
    zone: tzinfo | None = None
    """The time zone of the days (``None``: this computer's local zone)."""

    def see_day(self, day: date) -> None:
        """Widen the data extent to include ``day``."""
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if self.last_day is None or day > self.last_day:
            self.last_day = day

    def see_session(self, start: datetime) -> None:
        if self.last_session is None or start > self.last_session:
            self.last_session = start

    def see_rating(self, at: datetime) -> None:
        if self.last_rating is None or at > self.last_rating:
            self.last_rating = at


Zone = tzinfo | None
"""A time zone for calendar days; ``None`` is this computer's local zone (with its daylight
saving rules, as SQLite's ``'localtime'``)."""


def local_day(moment: datetime, tz: Zone) -> date:
    """The calendar day of ``moment`` in ``tz`` (``None``: local time; a naive datetime is read
    as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(tz).date()


def today_in(tz: Zone) -> date:
    """Today's date in ``tz`` (``None``: local time)."""
    return datetime.now(UTC).astimezone(tz).date()


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

    agg = Aggregates(
        patient=data.patient,
        period_from=lo,
        period_to=hi,
        today=data.today if data.today is not None else today_in(zone),
        zone=zone,
    )
    agg.prescriptions = sorted(
        ((local_day(p.valid_from, zone), p) for p in data.prescriptions), key=lambda t: t[0]
    )

    for s in data.sessions:
        day = local_day(s.start, zone)
        if not inside(day):
            continue
        agg.see_day(day)
        agg.see_session(s.start)
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
        agg.see_rating(r.at)
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
    agg.episodes = in_period_by_time(data.episodes, lambda x: x.start, inside, zone)
    agg.pegs = in_period_by_time(data.pegs, lambda x: x.at, inside, zone)
    agg.pgics = in_period_by_time(data.pgics, lambda x: x.at, inside, zone)
    return agg


T = TypeVar("T")


def in_period_by_time(
    rows: Iterable[T], when: Callable[[T], datetime], inside: Callable[[date], bool], tz: Zone
) -> list[T]:
    """The rows whose time (``when(row)``) falls on a day ``inside`` the period, in time order
    (ties in the order given)."""
    return sorted((r for r in rows if inside(local_day(when(r), tz))), key=when)


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
    """Sessions and minutes per day against the prescription in force that day, from the first
    session (``first_day``) to the last complete day (``last_day``): yesterday when the period
    runs to today, or today once its prescribed sessions are done (``today_counted``).

    ``sessions_pct`` = Σ min(done, prescribed) / Σ prescribed over the days with a prescription
    (so extra sessions one day do not hide missed days); ``minutes_pct`` likewise.
    """

    available: bool
    reason: str | None = None
    first_day: date | None = None
    last_day: date | None = None
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
    today_sessions: int = 0
    """Sessions started today (when the period runs to today)."""
    today_counted: bool = False
    """Today is counted (its prescribed sessions are done); otherwise it is still in progress."""
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
    """Week ``index`` of treatment (1 = the day of the first session and the 6 after it): the
    mean of its daily means."""

    index: int
    start: date
    end: date
    rated_days: int
    mean: float | None
    """``None`` when the week has fewer than 3 rated days."""
    pct_change: float | None = None
    """Percent change from the baseline (negative = less pain)."""


@dataclass(frozen=True, slots=True)
class RollingPoint:
    day: date
    mean: float | None
    """Mean of daily means over the 7 days ending on ``day``; ``None`` with < 3 rated days."""


BaselineKind = Literal["run_in", "first_week", "none"]
BASELINE_LABELS: dict[BaselineKind, str] = {
    "run_in": "run-in before the first session",
    "first_week": "first week of use (no run-in baseline)",
    "none": "no baseline",
}


@dataclass(frozen=True, slots=True)
class Baseline:
    """A series' baseline: the run-in (the ``run_in_days`` days before the first session) when
    it has ≥ 3 rated days, else the first week of use; the mean of its daily means."""

    kind: BaselineKind
    start: date | None = None
    end: date | None = None
    rated_days: int = 0
    mean: float | None = None
    low: bool = False
    """The baseline is below 4/10: percent changes from it mislead (read the points)."""
    run_in_days: int = 0
    """The run-in the prescription asked for (0: none)."""
    run_in_rated_days: int = 0
    """Rated days in the run-in, enough or not."""
    reason: str | None = None

    @property
    def label(self) -> str:
        return BASELINE_LABELS[self.kind]


@dataclass(frozen=True, slots=True)
class TreatmentItem:
    start: date
    end: date | None
    kind: str
    description: str


TimePointStatus = Literal["due", "rated", "missing", "no_baseline"]


@dataclass(frozen=True, slots=True)
class TimePoint:
    """One week of treatment compared with the baseline: an endpoint (weeks 4, 8, 12) or the
    latest complete week (``endpoint=False``).

    ``status``: ``due`` (the week has not ended yet: no verdict), ``rated`` (≥ 3 rated days),
    ``missing`` (ended with fewer: a non-responder), ``no_baseline`` (the series has no
    baseline: a non-responder). Intention to treat: once a week has ended, every responder
    flag is ``True`` or ``False``, never ``None``.
    """

    week: int
    start: date
    end: date
    status: TimePointStatus
    endpoint: bool = True
    rated_days: int = 0
    mean: float | None = None
    change_points: float | None = None
    """Week mean − baseline (negative = less pain)."""
    pct_change: float | None = None
    reduction_pct: float | None = None
    band: Band | None = None
    responder_30: bool | None = None
    responder_50: bool | None = None
    responder_points: bool | None = None
    """≥ 2 NRS points less than the baseline."""
    concurrent: tuple[TreatmentItem, ...] = ()
    """Other treatments between the start of the baseline and the end of this week."""
    reason: str | None = None

    @property
    def reached(self) -> bool:
        return self.status != "due"


@dataclass(frozen=True, slots=True)
class PainOutcome:
    """One pain series: its baseline, the fixed time points (weeks 4, 8, 12), the latest
    complete week, weekly means and 7-day rolling means."""

    pain: PainKind
    posture: Posture
    label: str
    headline: bool
    baseline: Baseline
    time_points: tuple[TimePoint, ...] = ()
    latest: TimePoint | None = None
    """The latest complete week of treatment (not an endpoint)."""
    weeks: tuple[WeekMean, ...] = ()
    rolling: tuple[RollingPoint, ...] = ()
    rated_days: int = 0

    @property
    def available(self) -> bool:
        """The series has a baseline."""
        return self.baseline.mean is not None

    @property
    def reason(self) -> str | None:
        return self.baseline.reason

    @property
    def endpoint(self) -> TimePoint | None:
        """The latest time point reached (week 12, else 8, else 4), or ``None``."""
        return next((t for t in reversed(self.time_points) if t.reached), None)

    def time_point(self, week: int) -> TimePoint | None:
        return next((t for t in self.time_points if t.week == week), None)


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
    day: date
    """The patient's local day."""
    kind: str
    severity: str | None
    note: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class EpisodeItem:
    """A pain episode from the diary (``day``: the local day it started)."""

    start: datetime
    day: date
    end: datetime | None
    pain: PainKind
    nrs: int | None
    note: str

    @property
    def minutes(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class PegItem:
    at: datetime
    day: date
    pain: int | None
    enjoyment: int | None
    activity: int | None
    score: float | None


@dataclass(frozen=True, slots=True)
class PegSummary:
    """The PEG answers of the period; ``first`` is the last one before the first session
    (``first_before_treatment``), else the first one."""

    count: int = 0
    first: PegItem | None = None
    first_before_treatment: bool = False
    latest: PegItem | None = None
    change: float | None = None
    """Latest − first PEG score (negative = better), when they are two answers with scores."""
    items: tuple[PegItem, ...] = ()


@dataclass(frozen=True, slots=True)
class PgicItem:
    at: datetime
    day: date
    value: int | None
    label: str


@dataclass(frozen=True, slots=True)
class PgicSummary:
    """The PGIC answers of the period and the latest one given."""

    count: int = 0
    latest: PgicItem | None = None
    improved: bool | None = None
    """The latest answer is "much improved" or "very much improved"."""
    items: tuple[PgicItem, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """Every figure for one patient over one period (the JSON report is this, serialised)."""

    patient_id: str
    pseudonym: str
    today: date | None
    period_start: date | None
    period_end: date | None
    available: bool
    reason: str | None
    sessions: int
    stim_minutes: float
    ratings: int
    ratings_missing: int
    first_session: date | None
    """The local day of the first session in the period: the start of treatment."""
    last_session: datetime | None
    last_session_day: date | None
    days_since_session: int | None
    last_rating: datetime | None
    """The latest pain rating given (a skipped one does not count)."""
    last_rating_day: date | None
    days_since_rating: int | None
    adherence: Adherence
    session_change: tuple[SessionChange, ...]
    headline: SeriesKey
    """The series the prescription names (default phantom-limb pain at rest)."""
    outcomes: tuple[PainOutcome, ...]
    primary: PainOutcome | None
    """The headline series' outcome (``None`` without any session or rating)."""
    tolerance: Tolerance
    faults: dict[str, int]
    rejections: dict[str, int]
    end_reasons: dict[str, int]
    adverse_events: tuple[AdverseEventItem, ...]
    treatments: tuple[TreatmentItem, ...]
    episodes: tuple[EpisodeItem, ...] = ()
    peg: PegSummary = field(default_factory=PegSummary)
    pgic: PgicSummary = field(default_factory=PgicSummary)

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


@dataclass(frozen=True, slots=True)
class NoteItem:
    at: datetime
    text: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class ReportDocument:
    """The JSON report: every figure, and the patient's own notes on their sessions."""

    summary: PatientSummary
    session_notes: tuple[NoteItem, ...] = ()


REPORT_ADAPTER: TypeAdapter[ReportDocument] = TypeAdapter(ReportDocument)


def summary_json(summary: PatientSummary, indent: int | None = 2) -> bytes:
    """The summary as JSON (dates ISO 8601; ``null`` where a figure has no value)."""
    return SUMMARY_ADAPTER.dump_json(summary, indent=indent)


def session_notes(data: PatientData, tz: Zone = None) -> tuple[NoteItem, ...]:
    """The patient's session notes of the period, in time order."""
    lo, hi = data.period_from, data.period_to

    def inside(day: date) -> bool:
        return (lo is None or day >= lo) and (hi is None or day <= hi)

    rows: list[NoteRow] = in_period_by_time(data.notes, lambda n: n.at, inside, tz)
    return tuple(NoteItem(n.at, n.text, n.session_id) for n in rows)


def report_json(summary: PatientSummary, notes: Sequence[NoteItem], indent: int = 2) -> bytes:
    """The JSON report: ``{"summary": {...every figure...}, "session_notes": [...]}``."""
    return REPORT_ADAPTER.dump_json(ReportDocument(summary, tuple(notes)), indent=indent)


# --- the figures -----------------------------------------------------------------------------


def _pct(part: Fraction | float, whole: Fraction | float) -> float | None:
    if whole == 0:
        return None
    return float(Fraction(part) / Fraction(whole) * 100)


def in_force(agg: Aggregates, day: date) -> PrescriptionRow | None:
    """The prescription in force on ``day`` (the latest written on or before it)."""
    found = None
    for first, p in agg.prescriptions:
        if first <= day:
            found = p
    return found


def adherence(
    agg: Aggregates,
    first_session: date | None,
    end: date,
    today: date,
    with_daily: bool = True,
) -> Adherence:
    """Sessions and minutes per day against the prescription in force each day, from the first
    session to the last complete day (``with_daily=False``: without the list of days)."""
    if first_session is None:
        return Adherence(available=False, reason=RULES["no_session"])
    no_session = SessionDay()
    last = min(end, today)
    today_sd = agg.session_days.get(today, no_session) if end >= today else no_session
    counted = False
    if last == today:
        rx_today = in_force(agg, today)
        counted = rx_today is not None and today_sd.sessions >= rx_today.sessions_per_day
        if not counted:
            last = today - timedelta(days=1)
    rx = agg.prescriptions
    days: list[AdherenceDay] = []
    n_days = s_done = s_presc = s_capped = 0
    m_done = m_presc = m_capped = 0.0
    full = without = over = 0
    first_counted: date | None = None
    for i, (first, p) in enumerate(rx):
        # this prescription is in force from its day until the day before the next one's
        until = rx[i + 1][0] - timedelta(days=1) if i + 1 < len(rx) else last
        day, stop = max(first, first_session), min(until, last)
        p_sessions, p_minutes = p.sessions_per_day, p.daily_minutes
        while day <= stop:
            if first_counted is None:
                first_counted = day
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
        return Adherence(
            available=False,
            reason=RULES["no_day"] if last < first_session else not_enough("adherence"),
            today_sessions=today_sd.sessions,
        )
    return Adherence(
        available=True,
        first_day=first_counted,
        last_day=last,
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
        today_sessions=today_sd.sessions,
        today_counted=counted,
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


def _between(days: Mapping[date, SumCount], first: date, last: date) -> list[SumCount]:
    """The rated days' (sum, count) from ``first`` to ``last`` (both included)."""
    span = (last - first).days + 1
    if span > len(days):
        return [sc for d, sc in days.items() if first <= d <= last and sc[1]]
    found = (days.get(first + timedelta(days=i)) for i in range(max(span, 0)))
    return [sc for sc in found if sc is not None and sc[1]]


def _pct_of(m: Fraction, base: Fraction) -> float:
    """(m − base) / base × 100, rounded exactly as float(Fraction) would."""
    num = (m.numerator * base.denominator - base.numerator * m.denominator) * 100
    return num / (base.numerator * m.denominator)


def baseline_of(
    days: Mapping[date, SumCount], first_session: date | None, run_in: int, end: date
) -> tuple[Baseline, Fraction | None]:
    """A series' baseline (and its exact mean): the run-in when it has ≥ 3 rated days, else
    the first week of use (so far, when it is still running)."""
    if first_session is None:
        return Baseline(kind="none", run_in_days=run_in, reason=RULES["no_session"]), None
    run_in_rated = 0
    if run_in > 0:
        first = first_session - timedelta(days=run_in)
        last = first_session - timedelta(days=1)
        vals = _between(days, first, last)
        run_in_rated = len(vals)
        if run_in_rated >= MIN_RATED_DAYS_PER_WEEK:
            exact = mean_of_daily_means(vals)
            return (
                Baseline(
                    kind="run_in",
                    start=first,
                    end=last,
                    rated_days=run_in_rated,
                    mean=float(exact),
                    low=exact < LOW_BASELINE,
                    run_in_days=run_in,
                    run_in_rated_days=run_in_rated,
                ),
                exact,
            )
    first, last = first_session, min(first_session + timedelta(days=6), end)
    vals = _between(days, first, last)
    if len(vals) < MIN_RATED_DAYS_PER_WEEK:
        return (
            Baseline(
                kind="none",
                rated_days=len(vals),
                run_in_days=run_in,
                run_in_rated_days=run_in_rated,
                reason=not_enough("baseline"),
            ),
            None,
        )
    exact = mean_of_daily_means(vals)
    return (
        Baseline(
            kind="first_week",
            start=first,
            end=first_session + timedelta(days=6),
            rated_days=len(vals),
            mean=float(exact),
            low=exact < LOW_BASELINE,
            run_in_days=run_in,
            run_in_rated_days=run_in_rated,
        ),
        exact,
    )


def concurrent_treatments(
    treatments: Iterable[TreatmentItem], first: date, last: date
) -> tuple[TreatmentItem, ...]:
    """The treatments on any day from ``first`` to ``last``."""
    return tuple(t for t in treatments if t.start <= last and (t.end or t.start) >= first)


def time_point(
    days: Mapping[date, SumCount],
    first_session: date,
    week: int,
    base: Fraction | None,
    closed: date,
    treatments: Sequence[TreatmentItem],
    window_from: date,
    endpoint: bool = True,
) -> TimePoint:
    """Week ``week`` of treatment against the baseline ``base``. The week has ended when its last
    day is on or before ``closed`` (the last complete day); before that it is ``due``."""
    start = first_session + timedelta(days=7 * (week - 1))
    end = start + timedelta(days=6)
    vals = _between(days, start, end)
    exact = mean_of_daily_means(vals) if len(vals) >= MIN_RATED_DAYS_PER_WEEK else None
    out = TimePoint(
        week=week,
        start=start,
        end=end,
        status="due",
        endpoint=endpoint,
        rated_days=len(vals),
        mean=None if exact is None else float(exact),
        concurrent=concurrent_treatments(treatments, window_from, end),
    )
    if end > closed:
        return out
    if base is None or exact is None:
        status: TimePointStatus = "no_baseline" if base is None else "missing"
        return replace(
            out,
            status=status,
            reason=RULES[status],
            responder_30=False,
            responder_50=False,
            responder_points=False,
        )
    change = exact - base
    rated = replace(
        out,
        status="rated",
        change_points=float(change),
        responder_points=-change >= RESPONDER_POINTS,
    )
    if base == 0:
        return replace(rated, responder_30=False, responder_50=False, reason=RULES["baseline_zero"])
    reduction = -change / base
    return replace(
        rated,
        pct_change=_pct_of(exact, base),
        reduction_pct=float(reduction * 100),
        band=immpact_band(reduction),
        responder_30=reduction >= RESPONDER_30,
        responder_50=reduction >= RESPONDER_50,
    )


def treatment_weeks(
    days: Mapping[date, SumCount], first_session: date, end: date, base: Fraction | None
) -> list[WeekMean]:
    """Weeks 1, 2, ... of treatment up to the week containing ``end``: each week's mean of its
    daily means (≥ 3 rated days) and its percent change from the baseline."""
    out: list[WeekMean] = []
    n_weeks = (end - first_session).days // 7 + 1
    buckets: list[list[SumCount]] = [[] for _ in range(max(n_weeks, 0))]
    for d, sc in days.items():
        i = (d - first_session).days // 7
        if sc[1] and 0 <= i < n_weeks:
            buckets[i].append(sc)
    for i, vals in enumerate(buckets):
        ws = first_session + timedelta(days=7 * i)
        exact = mean_of_daily_means(vals) if len(vals) >= MIN_RATED_DAYS_PER_WEEK else None
        pct = None if exact is None or base is None or base == 0 else _pct_of(exact, base)
        out.append(
            WeekMean(
                index=i + 1,
                start=ws,
                end=ws + timedelta(days=6),
                rated_days=len(vals),
                mean=None if exact is None else float(exact),
                pct_change=pct,
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
    agg: Aggregates,
    key: SeriesKey,
    *,
    headline: bool,
    first_session: date | None,
    run_in: int,
    start: date,
    end: date,
    closed: date,
    treatments: Sequence[TreatmentItem],
    with_rolling: bool = True,
) -> PainOutcome:
    """One series: baseline, time points (weeks 4, 8, 12), the latest complete week, weekly and
    rolling means."""
    days = rated_only(agg.background.get(key, {}))
    base, exact = baseline_of(days, first_session, run_in, end)
    out = PainOutcome(
        pain=key[0],
        posture=key[1],
        label=series_label(key),
        headline=headline,
        baseline=base,
        rolling=tuple(rolling_means(days, start, end)) if with_rolling else (),
        rated_days=len(days),
    )
    if first_session is None:
        return out
    window_from = base.start or first_session
    points = tuple(
        time_point(days, first_session, w, exact, closed, treatments, window_from)
        for w in TIME_POINTS
    )
    complete = ((closed - first_session).days + 1) // 7
    latest = (
        time_point(
            days, first_session, complete, exact, closed, treatments, window_from, endpoint=False
        )
        if complete >= 1
        else None
    )
    return replace(
        out,
        time_points=points,
        latest=latest,
        weeks=tuple(treatment_weeks(days, first_session, end, exact)),
    )


def peg_summary(agg: Aggregates, first_session: date | None) -> PegSummary:
    zone = agg.zone
    items = tuple(
        PegItem(p.at, local_day(p.at, zone), p.pain, p.enjoyment, p.activity, p.score)
        for p in agg.pegs
    )
    if not items:
        return PegSummary()
    before = [p for p in items if first_session is not None and p.day < first_session]
    first = before[-1] if before else items[0]
    latest = items[-1]
    change = None
    if latest is not first and latest.score is not None and first.score is not None:
        change = latest.score - first.score
    return PegSummary(
        count=len(items),
        first=first,
        first_before_treatment=bool(before),
        latest=latest,
        change=change,
        items=items,
    )


def pgic_summary(agg: Aggregates) -> PgicSummary:
    items = tuple(
        PgicItem(
            p.at,
            local_day(p.at, agg.zone),
            p.value,
            "skipped" if p.value is None else PGIC_LABELS[p.value],
        )
        for p in agg.pgics
    )
    given = [p for p in items if p.value is not None]
    latest = given[-1] if given else None
    return PgicSummary(
        count=len(items),
        latest=latest,
        improved=None if latest is None or latest.value is None else latest.value <= PGIC_IMPROVED,
        items=items,
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


def headline_of(agg: Aggregates, end: date) -> SeriesKey:
    """The headline series: the one the prescription in force at the end of the period names
    (else the latest prescription's, else phantom-limb pain at rest)."""
    rx = in_force(agg, end) or (agg.prescriptions[-1][1] if agg.prescriptions else None)
    return HEADLINE if rx is None else rx.headline


def run_in_of(agg: Aggregates, first_session: date | None) -> int:
    """The run-in the prescription in force at the first session asks for (else the first
    prescription's, else 7 days)."""
    rx = None if first_session is None else in_force(agg, first_session)
    if rx is None and agg.prescriptions:
        rx = agg.prescriptions[0][1]
    return RUN_IN_DAYS if rx is None else rx.run_in_days


def summarize(
    agg: Aggregates, primary: SeriesKey | None = None, with_daily: bool = True
) -> PatientSummary:
    """Every figure of DESIGN.md §9 for one patient.

    The period runs from ``period_from`` (else the first day with data) to ``period_to`` (else
    today, or the last day with data if that is later). Treatment starts at the first session
    in the period. ``primary`` overrides the prescription's headline series.
    ``with_daily=False`` leaves out the per-day lists (adherence days, rolling means) for a
    quick status of many patients.
    """
    today = agg.today if agg.today is not None else today_in(agg.zone)
    start = agg.period_from or agg.first_day
    if agg.period_to is not None:
        end = agg.period_to
    else:
        end = today if agg.last_day is None else max(today, agg.last_day)
    first_session = min(agg.session_days) if agg.session_days else None
    zone = agg.zone
    last_session_day = None if agg.last_session is None else local_day(agg.last_session, zone)
    last_rating_day = None if agg.last_rating is None else local_day(agg.last_rating, zone)
    treatments = tuple(TreatmentItem(t.start, t.end, t.kind, t.description) for t in agg.treatments)
    key = primary if primary is not None else headline_of(agg, end)
    base = PatientSummary(
        patient_id=agg.patient.id,
        pseudonym=agg.patient.pseudonym,
        today=today,
        period_start=start,
        period_end=end,
        available=False,
        reason=not_enough("no_data"),
        sessions=sum(sd.sessions for sd in agg.session_days.values()),
        stim_minutes=sum(sd.stim_us for sd in agg.session_days.values()) / US_PER_MINUTE,
        ratings=agg.ratings_total,
        ratings_missing=agg.ratings_missing,
        first_session=first_session,
        last_session=agg.last_session,
        last_session_day=last_session_day,
        days_since_session=None if last_session_day is None else (today - last_session_day).days,
        last_rating=agg.last_rating,
        last_rating_day=last_rating_day,
        days_since_rating=None if last_rating_day is None else (today - last_rating_day).days,
        adherence=Adherence(available=False, reason=not_enough("adherence")),
        session_change=(),
        headline=key,
        outcomes=(),
        primary=None,
        tolerance=Tolerance(available=False, reason=not_enough("tolerance")),
        faults=dict(sorted(agg.faults.items())),
        rejections=dict(sorted(agg.rejections.items())),
        end_reasons=dict(sorted(agg.end_reasons.items())),
        adverse_events=tuple(
            AdverseEventItem(a.at, local_day(a.at, zone), a.kind, a.severity, a.note, a.session_id)
            for a in agg.adverse_events
        ),
        treatments=treatments,
        episodes=tuple(
            EpisodeItem(e.start, local_day(e.start, zone), e.end, e.pain, e.nrs, e.note)
            for e in agg.episodes
        ),
        peg=peg_summary(agg, first_session),
        pgic=pgic_summary(agg),
    )
    if start is None or start > end:
        return base

    # the last complete day: a week (or a day) that ends today is not over yet
    closed = min(end, today - timedelta(days=1))
    run_in = run_in_of(agg, first_session)
    rated = sorted(set(agg.background) | set(agg.change) | set(agg.change_30), key=_series_order)
    outcomes = [
        pain_outcome(
            agg,
            k,
            headline=k == key,
            first_session=first_session,
            run_in=run_in,
            start=start,
            end=end,
            closed=closed,
            treatments=treatments,
            with_rolling=with_daily,
        )
        for k in sorted(set(agg.background) | {key}, key=_series_order)
    ]
    return replace(
        base,
        available=True,
        reason=None,
        adherence=adherence(agg, first_session, end, today, with_daily=with_daily),
        session_change=tuple(session_change(agg, k) for k in rated),
        outcomes=tuple(outcomes),
        primary=next(o for o in outcomes if o.headline),
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


@dataclass(frozen=True, slots=True)
class DiaryFigures:
    """Sleep, mood and medicines over a period, and how the diary was kept: nights recorded,
    their mean hours and mean quality (0 very poor - 10 very good), mood days and their mean
    (0 very low - 10 very good), doses taken by medicine (names as written, case folded), and
    how many entries were written more than a day after they happened, edited or deleted."""

    nights: int = 0
    mean_sleep_hours: float | None = None
    mean_sleep_quality: float | None = None
    moods: int = 0
    mean_mood: float | None = None
    doses: dict[str, int] = field(default_factory=dict)
    backdated: int = 0
    edited: int = 0
    deleted: int = 0

    @property
    def empty(self) -> bool:
        return not (self.nights or self.moods or self.doses or self.edited or self.deleted)


BACKDATED_AFTER = timedelta(days=1)
"""An entry written this long after it happened counts as backdated (a recollection)."""


def diary_figures(
    data: PatientData, tz: Zone, start: date | None, end: date | None
) -> DiaryFigures:
    """The :class:`DiaryFigures` of the local days ``start`` to ``end`` (``None``: unbounded)."""

    def inside(moment: datetime) -> bool:
        day = local_day(moment, tz)
        return (start is None or day >= start) and (end is None or day <= end)

    rows = [d for d in data.diary if inside(d.at)]
    sleep = [d for d in rows if d.kind == "sleep"]
    hours = [d.sleep_hours for d in sleep if d.sleep_hours is not None]
    quality = [d.sleep_quality for d in sleep if d.sleep_quality is not None]
    moods = [d.mood for d in rows if d.kind == "mood" and d.mood is not None]
    doses: dict[str, int] = {}
    for d in rows:
        if d.kind == "medication_taken":
            name = d.medication.strip().casefold()
            doses[name] = doses.get(name, 0) + 1
    written = [(d.at, d.written) for d in rows] + [
        (e.start, e.written) for e in data.episodes if inside(e.start) and e.written is not None
    ]
    changes = [c for c in data.diary_changes if inside(c.at)]

    def mean(values: Sequence[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return DiaryFigures(
        nights=len(sleep),
        mean_sleep_hours=mean(hours),
        mean_sleep_quality=mean([float(q) for q in quality]),
        moods=len(moods),
        mean_mood=mean([float(m) for m in moods]),
        doses=dict(sorted(doses.items())),
        backdated=sum(1 for at, w in written if w is not None and w - at > BACKDATED_AFTER),
        edited=len({c.id for c in changes if c.change == "edited"}),
        deleted=sum(1 for c in changes if c.change == "deleted"),
    )
