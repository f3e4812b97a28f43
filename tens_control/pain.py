"""Pain ratings, the weekly PEG, diary entries and adverse events (DESIGN.md §7).

Plain data, no storage code: ``tens_control.store`` persists these models.

A pain rating is an NRS 0–10 whole number. A rating the patient skipped is *missing*
(``score=None``), never 0: 0 means "no pain", which is an answer. Times carry a time zone.

The PEG items below are our own short wording of the three PEG domains (average pain,
interference with enjoyment of life, interference with general activity). We do not ship the
Brief Pain Inventory's wording, which is licensed.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tens_control.errors import TensControlError

NRS_MIN = 0
NRS_MAX = 10

NrsScore = Annotated[int, Field(ge=NRS_MIN, le=NRS_MAX, strict=True)]
"""An NRS 0–10 rating: a whole number (3.5, "7" and True are refused)."""


class PainRatingError(TensControlError):
    """A pain rating is not a whole number from 0 to 10."""


def nrs(value: object) -> int:
    """``value`` as an NRS score, or :class:`PainRatingError` saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PainRatingError(f"a pain rating must be a whole number from 0 to 10 (got {value!r})")
    if not NRS_MIN <= value <= NRS_MAX:
        raise PainRatingError(
            "a pain rating must be a whole number from 0 (no pain) to 10 (worst pain you can "
            f"think of); "
            f"got {value}"
        )
    return value


SKIP_WORDS = frozenset({"", "-", "skip", "skipped", "none", "n/a", "na"})


def parse_nrs(text: str) -> int | None:
    """Read a typed rating: ``"7"`` -> 7; ``""``/``"skip"``/``"-"`` -> None (missing, not 0)."""
    cleaned = text.strip().lower()
    if cleaned in SKIP_WORDS:
        return None
    try:
        value = int(cleaned, 10)
    except ValueError:
        raise PainRatingError(
            f"a pain rating must be a whole number from 0 to 10, or 'skip' (got {text!r})"
        ) from None
    return nrs(value)


class RatingTime(StrEnum):
    BEFORE = "before"
    DURING = "during"
    AFTER = "after"
    PLUS_30_MIN = "plus_30_min"
    DIARY = "diary"


class PainKind(StrEnum):
    PHANTOM = "phantom"
    RESIDUAL_LIMB = "residual_limb"
    OTHER = "other"


class Activity(StrEnum):
    REST = "rest"
    MOVEMENT = "movement"


PAIN_KIND_WORDS: dict[PainKind, str] = {
    PainKind.PHANTOM: "pain in the missing limb (phantom pain)",
    PainKind.RESIDUAL_LIMB: "pain in the remaining limb (stump pain)",
    PainKind.OTHER: "other pain",
}

NRS_QUESTION = (
    "How bad is your {pain} right now{activity}? 0 = no pain, 10 = worst you can think of"
)


def rating_prompt(pain: PainKind, activity: Activity) -> str:
    """The question shown before a rating."""
    where = " when you move" if activity is Activity.MOVEMENT else " at rest"
    return NRS_QUESTION.format(pain=PAIN_KIND_WORDS[pain], activity=where)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PainRating(_Frozen):
    """One NRS rating. ``score=None`` is a skipped (missing) rating."""

    at: AwareDatetime
    when: RatingTime
    pain: PainKind = PainKind.PHANTOM
    activity: Activity = Activity.REST
    score: NrsScore | None
    """0–10, or None when the patient skipped it (missing, never 0)."""

    @property
    def missing(self) -> bool:
        return self.score is None


# --------------------------------------------------------------------------- PEG


class PegItem(StrEnum):
    PAIN_AVERAGE = "pain_average"
    ENJOYMENT = "enjoyment"
    GENERAL_ACTIVITY = "general_activity"


PEG_ITEMS: dict[PegItem, str] = {
    PegItem.PAIN_AVERAGE: (
        "Over the last 7 days, how bad was your pain on average? "
        "0 = no pain, 10 = worst you can think of"
    ),
    PegItem.ENJOYMENT: (
        "Over the last 7 days, how much did pain spoil your enjoyment of life? "
        "0 = not at all, 10 = it took all enjoyment away"
    ),
    PegItem.GENERAL_ACTIVITY: (
        "Over the last 7 days, how much did pain get in the way of your everyday activities? "
        "0 = not at all, 10 = it stopped them completely"
    ),
}
"""Our own wording of the three PEG domains (not the licensed BPI wording)."""


class PegRating(_Frozen):
    """The weekly three-item PEG. An item the patient skipped is None."""

    at: AwareDatetime
    pain_average: NrsScore | None
    enjoyment: NrsScore | None
    general_activity: NrsScore | None

    @property
    def items(self) -> dict[PegItem, int | None]:
        return {
            PegItem.PAIN_AVERAGE: self.pain_average,
            PegItem.ENJOYMENT: self.enjoyment,
            PegItem.GENERAL_ACTIVITY: self.general_activity,
        }

    @property
    def score(self) -> float | None:
        """The PEG score: the mean of the three items, or None if any item is missing."""
        values = [self.pain_average, self.enjoyment, self.general_activity]
        if any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None) / 3.0

    @property
    def interference(self) -> float | None:
        """Mean of the two interference items, or None if either is missing."""
        if self.enjoyment is None or self.general_activity is None:
            return None
        return (self.enjoyment + self.general_activity) / 2.0


# --------------------------------------------------------------------------- diary


def _needs_notes(kind: Any, other: Any, notes: str, what: str) -> None:
    if kind == other and not notes.strip():
        raise ValueError(f"{what} 'other' needs notes saying what it was")


class PainEpisode(_Frozen):
    """A pain episode outside a session, entered in the diary."""

    started_at: AwareDatetime
    duration_minutes: Annotated[float, Field(ge=0, le=7 * 24 * 60)] | None = None
    """How long it lasted, if known."""
    severity: NrsScore | None = None
    """Worst NRS 0–10 during the episode, if given (missing is not 0)."""
    pain: PainKind = PainKind.PHANTOM
    notes: Annotated[str, Field(max_length=4000)] = ""


class TreatmentKind(StrEnum):
    MEDICATION_CHANGE = "medication_change"
    KETAMINE_INFUSION = "ketamine_infusion"
    MIRROR_THERAPY = "mirror_therapy"
    PHYSIOTHERAPY = "physiotherapy"
    OTHER = "other"


class OtherTreatment(_Frozen):
    """Another treatment in the diary (a change of medication, a ketamine infusion, ...)."""

    kind: TreatmentKind
    started_on: date
    ended_on: date | None = None
    """Last day, for treatments over several days (None: a single day, or ongoing)."""
    notes: Annotated[str, Field(max_length=4000)] = ""

    @model_validator(mode="after")
    def _check(self) -> OtherTreatment:
        if self.ended_on is not None and self.ended_on < self.started_on:
            raise ValueError("ended_on is before started_on")
        _needs_notes(self.kind, TreatmentKind.OTHER, self.notes, "treatment")
        return self


class AdverseEventKind(StrEnum):
    SKIN_REDNESS = "skin_redness"
    BURN = "burn"
    HEADACHE = "headache"
    OTHER = "other"


class Severity(StrEnum):
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class AdverseEvent(_Frozen):
    """Something unwanted the patient noticed (during or after a session, or in the diary)."""

    at: AwareDatetime
    kind: AdverseEventKind
    severity: Severity
    channel: Annotated[int, Field(ge=1, le=16)] | None = None
    notes: Annotated[str, Field(max_length=4000)] = ""

    @model_validator(mode="after")
    def _check(self) -> AdverseEvent:
        _needs_notes(self.kind, AdverseEventKind.OTHER, self.notes, "adverse event")
        return self
