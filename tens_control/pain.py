"""Pain ratings, the weekly PEG, the PGIC, diary entries and adverse events (DESIGN.md §7).

Plain data, no storage code. The field names and values are those of the store's records
(``tens_control.store.records``), so ``Record.model_validate(model.model_dump())`` turns one of
these into the stored record (the store adds the ``uid`` and, where relevant, the session).

A pain rating is an NRS 0–10 whole number. A rating the patient skipped is *missing*
(``nrs=None``), never 0: 0 means "no pain", which is an answer. Times carry a time zone.

The PEG items below are our own short wording of the three PEG domains (average pain,
interference with enjoyment of life, interference with general activity). We do not ship the
Brief Pain Inventory's wording, which is licensed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tens_control.errors import TensControlError

NRS_MIN = 0
NRS_MAX = 10

Nrs = Annotated[int, Field(ge=NRS_MIN, le=NRS_MAX, strict=True)]
"""An NRS 0–10 rating: a whole number (3.5, "7" and True are refused)."""

Notes = Annotated[str, Field(max_length=10_000)]


class PainRatingError(TensControlError):
    """A pain rating is not a whole number from 0 to 10."""


def nrs(value: object) -> int:
    """``value`` as an NRS score, or :class:`PainRatingError` saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PainRatingError(f"a pain rating must be a whole number from 0 to 10 (got {value!r})")
    if not NRS_MIN <= value <= NRS_MAX:
        raise PainRatingError(
            "a pain rating must be a whole number from 0 (no pain) to 10 (worst pain you can "
            f"think of); got {value}"
        )
    return value


SKIP_WORDS = frozenset({"", "-", "skip", "skipped", "none", "n/a", "na"})


def parse_nrs(text: str) -> int | None:
    """Read a typed rating: ``"7"`` -> 7; ``""``/``"skip"``/``"-"`` -> None (missing, not 0)."""
    cleaned = text.strip().lower()
    if cleaned in SKIP_WORDS:
        return None
    if not cleaned.isascii() or not cleaned.lstrip("+-").isdigit():
        raise PainRatingError(
            f"a pain rating must be a whole number from 0 to 10, or 'skip' (got {text!r})"
        )
    return nrs(int(cleaned, 10))


class RatingTime(StrEnum):
    BEFORE = "before"
    DURING = "during"
    AFTER = "after"
    PLUS_30_MIN = "plus_30_min"
    DIARY = "diary"


class PainSite(StrEnum):
    """Which pain a rating is about."""

    PHANTOM = "phantom"
    RESIDUAL_LIMB = "residual_limb"
    OTHER = "other"


class PainContext(StrEnum):
    """At rest or on movement."""

    REST = "rest"
    MOVEMENT = "movement"


PAIN_SITE_WORDS: dict[PainSite, str] = {
    PainSite.PHANTOM: "pain in the missing limb (phantom pain)",
    PainSite.RESIDUAL_LIMB: "pain in the remaining limb (stump pain)",
    PainSite.OTHER: "other pain",
}


def rating_prompt(pain: PainSite, context: PainContext = PainContext.REST) -> str:
    """The question shown before a rating."""
    where = "when you move" if context is PainContext.MOVEMENT else "at rest"
    return (
        f"How bad is your {PAIN_SITE_WORDS[pain]} right now, {where}? "
        "0 = no pain, 10 = worst you can think of"
    )


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PainRating(_Frozen):
    """One NRS rating. ``nrs=None`` is a skipped (missing) rating, never 0."""

    at: AwareDatetime
    when: RatingTime
    pain: PainSite = PainSite.PHANTOM
    context: PainContext = PainContext.REST
    nrs: Nrs | None
    """0–10, or None when the patient skipped it. Required, so missing is always explicit."""
    note: Notes = ""

    @property
    def missing(self) -> bool:
        return self.nrs is None


# --------------------------------------------------------------------------- PEG


class PegItem(StrEnum):
    """The three PEG items (values are the :class:`PegScore` field names)."""

    PAIN = "pain"
    ENJOYMENT = "enjoyment"
    ACTIVITY = "activity"


PEG_ITEMS: dict[PegItem, str] = {
    PegItem.PAIN: (
        "Over the last 7 days, how bad was your pain on average? "
        "0 = no pain, 10 = worst you can think of"
    ),
    PegItem.ENJOYMENT: (
        "Over the last 7 days, how much did pain spoil your enjoyment of life? "
        "0 = not at all, 10 = it took all enjoyment away"
    ),
    PegItem.ACTIVITY: (
        "Over the last 7 days, how much did pain get in the way of your everyday activities? "
        "0 = not at all, 10 = it stopped them completely"
    ),
}
"""Our own wording of the three PEG domains (not the licensed BPI wording)."""


class PegScore(_Frozen):
    """The weekly three-item PEG, each item 0–10. An item the patient skipped is None."""

    at: AwareDatetime
    pain: Nrs | None
    """Average pain over the last week."""
    enjoyment: Nrs | None
    """Interference with enjoyment of life."""
    activity: Nrs | None
    """Interference with general activity."""

    @property
    def items(self) -> dict[PegItem, int | None]:
        return {
            PegItem.PAIN: self.pain,
            PegItem.ENJOYMENT: self.enjoyment,
            PegItem.ACTIVITY: self.activity,
        }

    @property
    def score(self) -> float | None:
        """The PEG score: the mean of the three items, or None if any item is missing."""
        values = (self.pain, self.enjoyment, self.activity)
        if any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None) / 3.0

    @property
    def interference(self) -> float | None:
        """Mean of the two interference items, or None if either is missing."""
        if self.enjoyment is None or self.activity is None:
            return None
        return (self.enjoyment + self.activity) / 2.0


# --------------------------------------------------------------------------- PGIC

PGIC_MIN = 1
PGIC_MAX = 7

Pgic = Annotated[int, Field(ge=PGIC_MIN, le=PGIC_MAX, strict=True)]
"""A Patient Global Impression of Change: 1 (very much improved) to 7 (very much worse)."""

PGIC_LABELS: dict[int, str] = {
    1: "very much improved",
    2: "much improved",
    3: "minimally improved",
    4: "no change",
    5: "minimally worse",
    6: "much worse",
    7: "very much worse",
}
"""The seven answers of the PGIC (Guy 1976; used by Farrar et al. 2001 and recommended by
IMMPACT, Dworkin et al. 2008), best first."""

PGIC_QUESTION = (
    "Since you started TENS, how would you describe the change in your pain, all things considered?"
)
"""Our own wording of the PGIC question."""


def pgic_text(value: int | None) -> str:
    """``2`` -> ``much improved``; ``None`` -> ``skipped``."""
    return "skipped" if value is None else PGIC_LABELS[value]


class PgicAnswer(_Frozen):
    """One PGIC answer (1-7); ``value=None``: the patient skipped the question."""

    at: AwareDatetime
    value: Pgic | None


# --------------------------------------------------------------------------- diary


class DiaryKind(StrEnum):
    PAIN_EPISODE = "pain_episode"
    MEDICATION_CHANGE = "medication_change"
    KETAMINE_INFUSION = "ketamine_infusion"
    MIRROR_THERAPY = "mirror_therapy"
    PHYSIOTHERAPY = "physiotherapy"
    OTHER = "other"
    SLEEP = "sleep"
    """Last night's sleep: hours and how well (0-10). Written in the app only (log records)."""
    MOOD = "mood"
    """Mood today, 0 (very low) to 10 (very good)."""
    MEDICATION_TAKEN = "medication_taken"
    """A dose taken: the medicine's name, the dose, the time."""


TREATMENT_KINDS: tuple[DiaryKind, ...] = (
    DiaryKind.MEDICATION_CHANGE,
    DiaryKind.KETAMINE_INFUSION,
    DiaryKind.MIRROR_THERAPY,
    DiaryKind.PHYSIOTHERAPY,
    DiaryKind.OTHER,
)
"""Other treatments recorded in the diary (concurrent treatments the review flags)."""

DAILY_KINDS: tuple[DiaryKind, ...] = (
    DiaryKind.SLEEP,
    DiaryKind.MOOD,
    DiaryKind.MEDICATION_TAKEN,
)
"""What a pain diary asks about every day besides pain: sleep, mood, the doses taken."""


class BodyRegion(StrEnum):
    """Where it hurts (the diary's body map): parts of the missing limb (phantom pain) and of
    the residual limb. Limb-neutral words, because the log does not record which limb."""

    PHANTOM_DIGITS = "phantom_digits"
    PHANTOM_HAND_FOOT = "phantom_hand_foot"
    PHANTOM_MIDDLE = "phantom_middle"
    PHANTOM_WHOLE = "phantom_whole"
    STUMP_END = "stump_end"
    STUMP_SCAR = "stump_scar"
    STUMP_FRONT = "stump_front"
    STUMP_BACK = "stump_back"


BODY_REGIONS: dict[PainSite, tuple[BodyRegion, ...]] = {
    PainSite.PHANTOM: (
        BodyRegion.PHANTOM_DIGITS,
        BodyRegion.PHANTOM_HAND_FOOT,
        BodyRegion.PHANTOM_MIDDLE,
        BodyRegion.PHANTOM_WHOLE,
    ),
    PainSite.RESIDUAL_LIMB: (
        BodyRegion.STUMP_END,
        BodyRegion.STUMP_SCAR,
        BodyRegion.STUMP_FRONT,
        BodyRegion.STUMP_BACK,
    ),
    PainSite.OTHER: (),
}
"""The regions the body map offers for each pain, in key order (1, 2, ...)."""

BODY_REGION_WORDS: dict[BodyRegion, str] = {
    BodyRegion.PHANTOM_DIGITS: "fingers or toes (missing limb)",
    BodyRegion.PHANTOM_HAND_FOOT: "hand or foot (missing limb)",
    BodyRegion.PHANTOM_MIDDLE: "wrist, forearm, ankle or lower leg (missing limb)",
    BodyRegion.PHANTOM_WHOLE: "the whole missing limb",
    BodyRegion.STUMP_END: "end of the residual limb",
    BodyRegion.STUMP_SCAR: "along the scar",
    BodyRegion.STUMP_FRONT: "front of the residual limb",
    BodyRegion.STUMP_BACK: "back of the residual limb",
}

SLEEP_QUALITY_WORDS = "0 = very poor, 10 = very good"
MOOD_WORDS = "0 = very low, 10 = very good"


class DiaryEntry(_Frozen):
    """A pain episode outside a session, or another treatment, with its dates and notes.

    A pain episode has a start, optionally an end (its duration), its severity (``nrs``, worst
    NRS during the episode; None if not given) and which pain it was. A treatment has a start,
    optionally an end (for treatments over several days), and notes; ``other`` needs notes.
    """

    kind: DiaryKind
    start: AwareDatetime
    end: AwareDatetime | None = None
    nrs: Nrs | None = None
    pain: PainSite | None = None
    notes: Notes = ""

    @model_validator(mode="after")
    def _check(self) -> DiaryEntry:
        if self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        if self.kind is DiaryKind.PAIN_EPISODE:
            if self.pain is None:
                raise ValueError("a pain episode needs pain (phantom, residual_limb or other)")
        elif self.nrs is not None or self.pain is not None:
            raise ValueError("nrs and pain belong to pain episodes, not to treatments")
        if self.kind is DiaryKind.OTHER and not self.notes.strip():
            raise ValueError("a diary entry of kind 'other' needs notes saying what it was")
        return self

    @property
    def duration(self) -> timedelta | None:
        return None if self.end is None else self.end - self.start

    @classmethod
    def pain_episode(
        cls,
        start: datetime,
        *,
        duration_minutes: float | None = None,
        severity: int | None = None,
        pain: PainSite = PainSite.PHANTOM,
        notes: str = "",
    ) -> DiaryEntry:
        """A pain episode: when it started, how long it lasted, how bad it was (NRS)."""
        if duration_minutes is not None and not 0 <= duration_minutes <= 7 * 24 * 60:
            raise ValueError("duration_minutes must be between 0 and one week")
        end = None if duration_minutes is None else start + timedelta(minutes=duration_minutes)
        return cls(
            kind=DiaryKind.PAIN_EPISODE,
            start=start,
            end=end,
            nrs=severity,
            pain=pain,
            notes=notes,
        )

    @classmethod
    def treatment(
        cls, kind: DiaryKind, start: datetime, *, end: datetime | None = None, notes: str = ""
    ) -> DiaryEntry:
        """Another treatment (medication change, ketamine infusion, mirror therapy, ...)."""
        if kind is DiaryKind.PAIN_EPISODE:
            raise ValueError("use DiaryEntry.pain_episode for pain episodes")
        return cls(kind=kind, start=start, end=end, notes=notes)


class AdverseKind(StrEnum):
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
    kind: AdverseKind
    severity: Severity
    notes: Notes = ""

    @model_validator(mode="after")
    def _check(self) -> AdverseEvent:
        if self.kind is AdverseKind.OTHER and not self.notes.strip():
            raise ValueError("an adverse event of kind 'other' needs notes saying what it was")
        return self
