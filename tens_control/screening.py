"""The contraindication screen (DESIGN.md S12).

Before the first session on a real device the patient answers :data:`QUESTIONS`. Any "yes"
blocks stimulation until a clinician records an override (who, when, why); the override covers
exactly the answers it was recorded for, so a later "yes" to something new blocks again.
A device that identifies as the simulator delivers no current and may run without screening;
:func:`screening_log_note` gives the line the session log records when it does.

These are plain data: the store (``tens_control.store``) persists them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from tens_control.errors import TensControlError


class ScreeningError(TensControlError):
    """A screening record or override cannot be made. The message says why."""


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]


class ClinicianOverride(BaseModel):
    """A clinician's recorded decision to allow something a safety rule would block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Name
    """Who decided (name and role, e.g. "Dr A. Smith, pain clinic")."""
    at: AwareDatetime
    """When (with a time zone)."""
    reason: Reason
    """Why it is safe for this patient."""


class Question(StrEnum):
    ACTIVE_IMPLANT = "active_implant"
    PREGNANCY = "pregnancy"
    EPILEPSY = "epilepsy"
    HEART_DISEASE = "heart_disease"
    CANCER_AT_SITE = "cancer_at_site"
    THROMBOSIS = "thrombosis"
    BLEEDING_DISORDER = "bleeding_disorder"
    SKIN_AT_SITE = "skin_at_site"
    CANNOT_GIVE_FEEDBACK = "cannot_give_feedback"


QUESTIONS: dict[Question, str] = {
    Question.ACTIVE_IMPLANT: (
        "Do you have a pacemaker, a defibrillator (ICD) or any other electronic implant, "
        "such as a pump or a nerve stimulator?"
    ),
    Question.PREGNANCY: "Are you pregnant, or could you be?",
    Question.EPILEPSY: "Do you have epilepsy or have you ever had a seizure?",
    Question.HEART_DISEASE: (
        "Do you have a heart condition, such as an irregular heartbeat or heart failure?"
    ),
    Question.CANCER_AT_SITE: (
        "Do you have cancer, or are you being checked for cancer, where the pads would go?"
    ),
    Question.THROMBOSIS: "Do you have a blood clot (thrombosis) now, for example in a leg?",
    Question.BLEEDING_DISORDER: (
        "Do you have a bleeding disorder, or do you bleed or bruise very easily?"
    ),
    Question.SKIN_AT_SITE: (
        "Is the skin where the pads would go broken, sore, irritated or numb "
        "(you cannot feel touch there)?"
    ),
    Question.CANNOT_GIVE_FEEDBACK: (
        "Would you find it hard to tell if the stimulation became uncomfortable, or to "
        "switch it off yourself?"
    ),
}
"""Each question in plain words; a "yes" to any of them needs a clinician's review."""

SHORT_LABELS: dict[Question, str] = {
    Question.ACTIVE_IMPLANT: "pacemaker, ICD or other active implant",
    Question.PREGNANCY: "pregnancy",
    Question.EPILEPSY: "epilepsy",
    Question.HEART_DISEASE: "heart disease",
    Question.CANCER_AT_SITE: "cancer at the site",
    Question.THROMBOSIS: "thrombosis",
    Question.BLEEDING_DISORDER: "bleeding disorder",
    Question.SKIN_AT_SITE: "broken or numb skin at the site",
    Question.CANNOT_GIVE_FEEDBACK: "unable to give feedback",
}

CONTACT_CLINICIAN = (
    "Please do not use TENS yet. Contact your clinician and tell them which answers were "
    '"yes". Stimulation stays blocked until they have reviewed your answers and recorded '
    "that it is safe for you."
)


class ScreeningMethod(StrEnum):
    INTERACTIVE = "interactive"
    """The patient answered each question."""
    NONE_REPORTED = "none_reported"
    """The patient reported none of the conditions (``tens-control screening --none``)."""


class ScreeningOverride(ClinicianOverride):
    """A clinician override of a screening, covering the answers listed in ``covers``."""

    covers: Annotated[tuple[Question, ...], Field(min_length=1)]


class Screening(BaseModel):
    """One completed screening: an answer to every question, and any clinician override."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answered_at: AwareDatetime
    answers: dict[Question, bool]
    method: ScreeningMethod = ScreeningMethod.INTERACTIVE
    answered_by: Literal["patient", "clinician"] = "patient"
    override: ScreeningOverride | None = None

    @model_validator(mode="after")
    def _complete(self) -> Screening:
        missing = [q.value for q in Question if q not in self.answers]
        if missing:
            raise ValueError(f"no answer to: {', '.join(missing)}")
        if self.method is ScreeningMethod.NONE_REPORTED and self.positives:
            raise ValueError("a 'none reported' screening cannot have a yes answer")
        return self

    @property
    def positives(self) -> tuple[Question, ...]:
        """The questions answered "yes", in question order."""
        return tuple(q for q in Question if self.answers.get(q, False))

    @property
    def uncovered(self) -> tuple[Question, ...]:
        """ "Yes" answers no clinician override covers."""
        covered = set(self.override.covers) if self.override is not None else set()
        return tuple(q for q in self.positives if q not in covered)

    @property
    def blocks(self) -> bool:
        return bool(self.uncovered)

    def with_override(self, by: str, reason: str, at: datetime | None = None) -> Screening:
        """This screening with a clinician override covering every current "yes".

        Raises :class:`ScreeningError` if there is nothing to override.
        """
        if not self.positives:
            raise ScreeningError(
                "this screening has no 'yes' answer, so there is nothing to override"
            )
        try:
            override = ScreeningOverride(
                by=by, reason=reason, at=at or datetime.now(UTC), covers=self.positives
            )
        except ValueError as error:
            raise ScreeningError(_first_problem(error)) from None
        return Screening(
            answered_at=self.answered_at,
            answers=dict(self.answers),
            method=self.method,
            answered_by=self.answered_by,
            override=override,
        )


def _first_problem(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        what = {"by": "--by NAME", "reason": "--reason TEXT"}.get(field, field)
        return f"override {what}: {first['msg']}"
    return str(error)


def none_reported(at: datetime | None = None) -> Screening:
    """The patient reports none of the conditions."""
    return Screening(
        answered_at=at or datetime.now(UTC),
        answers={q: False for q in Question},
        method=ScreeningMethod.NONE_REPORTED,
    )


def from_answers(answers: dict[Question, bool], at: datetime | None = None) -> Screening:
    """A screening from the patient's answer to every question."""
    try:
        return Screening(answered_at=at or datetime.now(UTC), answers=answers)
    except ValueError as error:
        raise ScreeningError(f"screening incomplete: {_first_problem(error)}") from None


def screening_gate(screening: Screening | None, device_is_simulator: bool) -> str | None:
    """Why stimulation may not start, or None if it may (S12).

    ``screening`` is the patient's latest screening (None if never screened). The simulator
    delivers no current, so it may always run; :func:`screening_log_note` says what to log.
    """
    if device_is_simulator:
        return None
    if screening is None:
        return (
            "the contraindication screening has not been done: run "
            "`tens-control screening` before the first session"
        )
    uncovered = screening.uncovered
    if uncovered:
        labels = ", ".join(SHORT_LABELS[q] for q in uncovered)
        return (
            f"stimulation is blocked: the screening answered yes to {labels}; a clinician "
            "must review it and record an override (`tens-control screening --override "
            "--by NAME --reason TEXT`)"
        )
    return None


def screening_log_note(screening: Screening | None, device_is_simulator: bool) -> str | None:
    """The line the session log records about screening, or None when nothing needs saying."""
    if screening is not None and screening.override is not None and not screening.uncovered:
        o = screening.override
        labels = ", ".join(SHORT_LABELS[q] for q in o.covers)
        return f"screening override by {o.by} at {o.at.isoformat()} ({labels}): {o.reason}"
    if device_is_simulator and screening_gate(screening, False) is not None:
        if screening is None:
            return "simulator: running without contraindication screening"
        return "simulator: running although the contraindication screening blocks stimulation"
    return None
