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
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from tens_control.errors import TensControlError
from tens_control.trust.keys import ClinicianKey, Signature


class ScreeningError(TensControlError):
    """A screening record or override cannot be made. The message says why."""


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]


class ClinicianOverride(BaseModel):
    """A clinician's recorded decision to allow something a safety rule would block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    who: Name
    """Who decided (name and role, e.g. "Dr A. Smith, pain clinic")."""
    at: AwareDatetime
    """When (with a time zone)."""
    why: Reason
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


NONE_REPORTED_NOTE = "the patient reports none of the conditions (tens-control screening --none)"


OVERRIDE_PURPOSE = "tens-control screening override"


class ScreeningOverride(ClinicianOverride):
    """A clinician's override of one "yes" answer (field names as in the store's record),
    signed by the clinician (``tens-control screening --override --key FILE``). Only an
    override a key pinned at enrolment signed for this patient unblocks stimulation."""

    question: Question
    signature: Signature | None = None

    def signed_content(self) -> dict[str, Any]:
        """What the signature covers: question, who, when and why."""
        return self.model_dump(mode="json", exclude={"signature"})

    def signed(
        self, key: ClinicianKey, patient: str, at: datetime | None = None
    ) -> ScreeningOverride:
        signature = key.sign(OVERRIDE_PURPOSE, self.signed_content(), patient=patient, at=at)
        return self.model_copy(update={"signature": signature})


class Screening(BaseModel):
    """One completed screening: an answer to every question, and any clinician overrides.

    Field names are those of the store's record (``tens_control.store.records.Screening``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    answers: dict[Question, bool]
    overrides: tuple[ScreeningOverride, ...] = ()
    recorded_by: Name = "patient"
    notes: Annotated[str, StringConstraints(max_length=10_000)] = ""

    @model_validator(mode="after")
    def _complete(self) -> Screening:
        missing = [q.value for q in Question if q not in self.answers]
        if missing:
            raise ValueError(f"no answer to: {', '.join(missing)}")
        for o in self.overrides:
            if not self.answers[o.question]:
                raise ValueError(f"override for {o.question.value}, which was answered no")
        return self

    @property
    def positives(self) -> tuple[Question, ...]:
        """The questions answered "yes", in question order."""
        return tuple(q for q in Question if self.answers.get(q, False))

    @property
    def uncovered(self) -> tuple[Question, ...]:
        """ "Yes" answers no clinician override covers."""
        covered = {o.question for o in self.overrides}
        return tuple(q for q in self.positives if q not in covered)

    @property
    def blocks(self) -> bool:
        return bool(self.uncovered)

    def with_override(
        self,
        who: str,
        why: str,
        at: datetime | None = None,
        *,
        key: ClinicianKey | None = None,
        patient: str | None = None,
        questions: tuple[Question, ...] | None = None,
    ) -> Screening:
        """This screening with a clinician override of every "yes" not yet overridden (or of
        ``questions``, replacing any override they had), signed with ``key`` for ``patient``
        when given.

        Raises :class:`ScreeningError` if there is nothing to override.
        """
        todo = self.uncovered if questions is None else questions
        if not todo:
            raise ScreeningError(
                "this screening has no 'yes' answer without an override, so there is "
                "nothing to override"
            )
        when = (at or datetime.now(UTC)).replace(microsecond=0)
        try:
            added = tuple(ScreeningOverride(who=who, why=why, at=when, question=q) for q in todo)
        except ValidationError as error:
            raise ScreeningError(_first_problem(error)) from None
        if key is not None:
            if patient is None:
                raise ScreeningError("a signed override needs the patient's pseudonym")
            added = tuple(o.signed(key, patient, at=when) for o in added)
        kept = tuple(o for o in self.overrides if o.question not in todo)
        return Screening(
            at=self.at,
            answers=dict(self.answers),
            overrides=kept + added,
            recorded_by=self.recorded_by,
            notes=self.notes,
        )


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    what = {"who": "--by NAME", "why": "--reason TEXT"}.get(field, field)
    return f"override {what}: {first['msg']}"


def carry_overrides(new: Screening, previous: Screening | None) -> Screening:
    """``new`` with the clinician overrides of ``previous`` whose answer is still "yes".

    A repeated screening keeps the overrides of conditions already reviewed; a new "yes" is
    not covered and blocks until a clinician reviews it.
    """
    if previous is None or new.overrides:
        return new
    kept = tuple(o for o in previous.overrides if new.answers.get(o.question, False))
    if not kept:
        return new
    return Screening(
        at=new.at,
        answers=dict(new.answers),
        overrides=kept,
        recorded_by=new.recorded_by,
        notes=new.notes,
    )


def none_reported(at: datetime | None = None) -> Screening:
    """The patient reports none of the conditions (``tens-control screening --none``)."""
    return Screening(
        at=at or datetime.now(UTC),
        answers={q: False for q in Question},
        notes=NONE_REPORTED_NOTE,
    )


def from_answers(answers: dict[Question, bool], at: datetime | None = None) -> Screening:
    """A screening from the patient's answer to every question."""
    try:
        return Screening(at=at or datetime.now(UTC), answers=answers)
    except ValidationError as error:
        first = error.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ScreeningError(f"screening incomplete: {msg}") from None


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
            f"stimulation is blocked: the screening answered yes to {labels}; your clinic must "
            "review it and sign an override (`tens-control screening --override --key FILE "
            "--reason TEXT`)"
        )
    return None


def screening_log_note(screening: Screening | None, device_is_simulator: bool) -> str | None:
    """The line the session log records about screening, or None when nothing needs saying."""
    if screening is not None and screening.overrides and not screening.uncovered:
        parts = [
            f"{SHORT_LABELS[o.question]} by {o.who} at {o.at.isoformat()}: {o.why}"
            for o in screening.overrides
        ]
        return "screening overrides: " + "; ".join(parts)
    if device_is_simulator and screening_gate(screening, False) is not None:
        if screening is None:
            return "simulator: running without contraindication screening"
        return "simulator: running although the contraindication screening blocks stimulation"
    return None
