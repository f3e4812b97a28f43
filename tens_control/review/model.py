"""Plain input types of the clinician review (DESIGN.md §9).

Analytics, reports and exports read these small frozen dataclasses, never the store's tables.
One adapter (:mod:`tens_control.review.source`) builds them from the store; tests build them by
hand. Everything here is data only.

Times are timezone-aware datetimes (a naive one is read as UTC). A pain rating's ``value`` is an
NRS integer 0–10, or ``None`` when the patient skipped it: missing, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from tens_control.comparison import ProgramComparison

When = Literal["before", "during", "after", "plus_30_min", "diary"]
"""When a rating was taken, relative to a session (``diary``: outside any session)."""
PainKind = Literal["phantom", "residual_limb", "other"]
"""Which pain was rated."""
Posture = Literal["rest", "movement"]
"""Whether the pain was rated at rest or on movement."""
EventKind = Literal["fault", "rejection"]
"""A device/safety fault (lead-off, comms lost, watchdog, mismatch, ...) or a refused request."""

WHENS: tuple[When, ...] = get_args(When)
PAIN_KINDS: tuple[PainKind, ...] = get_args(PainKind)
POSTURES: tuple[Posture, ...] = get_args(Posture)

SeriesKey = tuple[PainKind, Posture]
"""One pain series: which pain, at rest or on movement."""

PAIN_LABELS: dict[PainKind, str] = {
    "phantom": "phantom-limb pain",
    "residual_limb": "residual-limb pain",
    "other": "other pain",
}
POSTURE_LABELS: dict[Posture, str] = {"rest": "at rest", "movement": "on movement"}
WHEN_LABELS: dict[When, str] = {
    "before": "before session",
    "during": "during session",
    "after": "after session",
    "plus_30_min": "30 min after session",
    "diary": "diary",
}


def series_label(key: SeriesKey) -> str:
    """``phantom-limb pain at rest``."""
    return f"{PAIN_LABELS[key[0]]} {POSTURE_LABELS[key[1]]}"


@dataclass(frozen=True, slots=True)
class PatientRow:
    """A patient as the review sees them: a key and a pseudonym, nothing identifying."""

    id: str
    pseudonym: str


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A stimulator a patient used."""

    id: str
    model: str
    serial: str
    firmware: str
    manufacturer: str | None = None
    simulated: bool = False


RUN_IN_DAYS = 7
"""The run-in when no prescription says otherwise (the prescription's default)."""
HEADLINE: SeriesKey = ("phantom", "rest")
"""The headline series when no prescription says otherwise."""


@dataclass(frozen=True, slots=True)
class PrescriptionRow:
    """The prescribed schedule in force from ``valid_from`` until the next prescription.

    ``minutes_per_day`` is the prescribed daily stimulation time; ``None`` means
    ``sessions_per_day × session_minutes``. ``run_in_days``: the days before the first session
    on which the patient is asked for a daily rating (the baseline); ``headline``: the pain
    series the review leads with.
    """

    valid_from: datetime
    sessions_per_day: int
    session_minutes: float
    minutes_per_day: float | None = None
    run_in_days: int = RUN_IN_DAYS
    headline: SeriesKey = HEADLINE
    comparison: ProgramComparison | None = None
    """The N-of-1 program comparison it prescribes (``tens_control.comparison``)."""

    @property
    def daily_minutes(self) -> float:
        if self.minutes_per_day is not None:
            return self.minutes_per_day
        return self.sessions_per_day * self.session_minutes


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session.

    ``stim_minutes`` is the session's length, start to end (as the daily limit counts it).
    ``mean_amplitude_ma`` is the time-weighted mean set amplitude while stimulating, averaged
    over the channels in use; ``None`` when the session never stimulated.
    """

    id: str
    start: datetime
    end: datetime | None
    end_reason: str | None
    stim_minutes: float
    program: str | None = None
    device_id: str | None = None
    mean_amplitude_ma: float | None = None
    max_amplitude_ma: float | None = None
    electrode_site: str | None = None


@dataclass(frozen=True, slots=True)
class RatingRow:
    """One pain rating (NRS 0–10, or ``None`` = skipped)."""

    id: str
    at: datetime
    when: When
    pain: PainKind
    posture: Posture
    value: int | None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    """A fault or a rejected request (S4), with the session it happened in, if any."""

    id: str
    at: datetime
    kind: EventKind
    code: str
    detail: str = ""
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdverseEventRow:
    """An adverse event the patient or clinician recorded (skin redness, burn, headache, ...)."""

    id: str
    at: datetime
    kind: str
    note: str = ""
    severity: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class TreatmentRow:
    """Another treatment from the diary (medication change, ketamine infusion, mirror therapy,
    physiotherapy, ...), on the days ``start`` to ``end`` (``None``: one day, or ongoing)."""

    id: str
    start: date
    kind: str
    description: str = ""
    end: date | None = None


if TYPE_CHECKING:
    from tens_control.store.verify import Damage


@dataclass(frozen=True, slots=True)
class EpisodeRow:
    """A pain episode from the diary: when it started (and ended), how bad it was at worst
    (NRS 0–10, ``None`` if not given), which pain, and the patient's note."""

    id: str
    start: datetime
    pain: PainKind
    nrs: int | None = None
    end: datetime | None = None
    note: str = ""
    regions: tuple[str, ...] = ()
    """Where it hurt (the body map: ``pain.BodyRegion`` values)."""
    written: datetime | None = None
    """When the current version was written (``None``: not known)."""
    edited: bool = False


@dataclass(frozen=True, slots=True)
class DiaryRow:
    """Sleep, mood or a dose of medicine taken, from the diary (current version).
    ``at``: when it happened (the morning after the night, the time the dose was taken);
    ``written``: when the current version was written."""

    id: str
    at: datetime
    kind: Literal["sleep", "mood", "medication_taken"]
    written: datetime
    sleep_hours: float | None = None
    sleep_quality: int | None = None
    """0 very poor … 10 very good."""
    mood: int | None = None
    """0 very low … 10 very good."""
    medication: str = ""
    dose: str = ""
    note: str = ""
    edited: bool = False


@dataclass(frozen=True, slots=True)
class DiaryChangeRow:
    """An edit or a deletion of a diary entry: the history the clinician sees. ``at``: when
    the change was written; ``happened``: when the entry says it happened (before the
    change); ``was`` and ``now``: the entry before and after, in words (``now`` empty for a
    deletion)."""

    id: str
    at: datetime
    change: Literal["edited", "deleted"]
    kind: str
    happened: datetime
    was: str
    now: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NoteRow:
    """A note the patient wrote about a session (after it, or during it)."""

    id: str
    at: datetime
    text: str
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class PegRow:
    """A PEG: average pain, interference with enjoyment of life and with general activity over
    the last week, each 0–10 (``None``: that item was skipped)."""

    id: str
    at: datetime
    pain: int | None
    enjoyment: int | None
    activity: int | None

    @property
    def score(self) -> float | None:
        """The mean of the three items; ``None`` unless all three were answered."""
        items = (self.pain, self.enjoyment, self.activity)
        if any(v is None for v in items):
            return None
        return sum(v for v in items if v is not None) / 3


@dataclass(frozen=True, slots=True)
class PgicRow:
    """A Patient Global Impression of Change: 1 very much improved … 4 no change … 7 very much
    worse (``None``: asked and skipped)."""

    id: str
    at: datetime
    value: int | None


@dataclass(frozen=True, slots=True)
class PatientData:
    """Everything the review reads for one patient over one period."""

    patient: PatientRow
    sessions: tuple[SessionRow, ...] = ()
    ratings: tuple[RatingRow, ...] = ()
    prescriptions: tuple[PrescriptionRow, ...] = ()
    devices: tuple[DeviceRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    adverse_events: tuple[AdverseEventRow, ...] = ()
    treatments: tuple[TreatmentRow, ...] = ()
    episodes: tuple[EpisodeRow, ...] = ()
    notes: tuple[NoteRow, ...] = ()
    pegs: tuple[PegRow, ...] = ()
    pgics: tuple[PgicRow, ...] = ()
    diary: tuple[DiaryRow, ...] = ()
    diary_changes: tuple[DiaryChangeRow, ...] = ()
    today: date | None = None
    """The day the review is made (the patient's local day); ``None``: today."""
    period_from: date | None = None
    """First day asked for (``--from``), or ``None`` for "from the first record"."""
    period_to: date | None = None
    """Last day asked for (``--to``), or ``None`` for "to today"."""
    extra: dict[str, str] = field(default_factory=dict)
    """Free-form context the adapter adds (e.g. the store file), shown in reports' footers."""
    integrity: str = ""
    """Empty when ``verify`` found the log intact; else the line every report starts with
    (``store.Store.damage``)."""
    damaged_sessions: frozenset[str] = frozenset()
    """Sessions whose figures come from the damaged range: marked wherever they are shown."""

    @property
    def comparison(self) -> ProgramComparison | None:
        """The latest program comparison prescribed (kept after a later prescription ends it:
        its blocks are still worth analysing)."""
        for row in reversed(self.prescriptions):
            if row.comparison is not None:
                return row.comparison
        return None

    def with_damage(self, damage: Damage | None) -> PatientData:
        """This data with what ``verify`` found (``Store.damage``); unchanged when intact."""
        if damage is None:
            return self
        return replace(self, integrity=damage.line, damaged_sessions=damage.sessions)
