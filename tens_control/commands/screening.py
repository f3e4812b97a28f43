"""``tens-control screening``: the contraindication questions before the first session (S12).

Without options it asks each question on the terminal. ``--none`` records that the patient
reports none of the conditions. ``--override --by NAME --reason TEXT`` is for clinicians: it
records that the "yes" answers were reviewed and stimulation may go ahead. ``--show`` prints
the latest screening.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tens_control.errors import TensControlError
from tens_control.screening import (
    CONTACT_CLINICIAN,
    QUESTIONS,
    SHORT_LABELS,
    Question,
    Screening,
    ScreeningError,
    carry_overrides,
    from_answers,
    none_reported,
    screening_gate,
)
from tens_control.store import (
    DatabaseMissingError,
    Store,
    add_db_argument,
    add_patient_argument,
)
from tens_control.store.records import ScreeningOverride as StoredOverride

YES = frozenset({"y", "yes"})
NO = frozenset({"n", "no"})
MAX_TRIES = 5


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "screening",
        help="answer the safety questions before the first session (clinicians: --override)",
        description="Questions about conditions that make TENS unsafe. Answer each with y or n. "
        'Any "yes" blocks stimulation until your clinician has reviewed it.',
    )
    p.set_defaults(command="screening")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--none",
        action="store_true",
        help="record that the patient has none of the conditions asked about",
    )
    mode.add_argument(
        "--override",
        action="store_true",
        help='clinicians: record that the "yes" answers were reviewed (needs --by and --reason)',
    )
    mode.add_argument("--show", action="store_true", help="print the latest screening")
    p.add_argument("--by", metavar="NAME", help="with --override: the clinician's name and role")
    p.add_argument("--reason", metavar="TEXT", help="with --override: why it is safe")
    add_db_argument(p)
    add_patient_argument(p)


def run(args: argparse.Namespace) -> int:
    if (args.by or args.reason) and not args.override:
        raise TensControlError("--by and --reason go with --override")
    if args.override and (not args.by or not args.reason):
        raise TensControlError(
            "--override needs --by NAME (who decides) and --reason TEXT (why it is safe)"
        )
    if args.show:
        return _show(args)
    with _open(args, create=not args.override) as (store, patient):
        if args.override:
            return _override(store, patient, args.by, args.reason)
        if args.none:
            save_screening(store, patient, none_reported())
            print("Recorded: you report none of the conditions. You may use TENS.")
            return 0
        return _interactive(store, patient)


def _interactive(store: Store, patient: str) -> int:
    print("Before using TENS, please answer these questions with y (yes) or n (no).")
    print("Your answers are kept with your records for your clinician.\n")
    answers = ask(input, print)
    screening = carry_overrides(from_answers(answers), latest_screening(store, patient))
    save_screening(store, patient, screening)
    if screening.blocks:
        labels = ", ".join(SHORT_LABELS[q] for q in screening.uncovered)
        print(f"\nYou answered yes to: {labels}.")
        print(CONTACT_CLINICIAN)
        return 0
    print("\nThank you. Your answers are recorded. You may use TENS.")
    return 0


def ask(read: Callable[[str], str], write: Callable[[str], None]) -> dict[Question, bool]:
    """Ask every question; return the answers. Raises if input ends or stays unclear."""
    answers: dict[Question, bool] = {}
    total = len(QUESTIONS)
    for number, (question, text) in enumerate(QUESTIONS.items(), start=1):
        write(f"{number} of {total}. {text}")
        for _ in range(MAX_TRIES):
            try:
                reply = read("   y/n: ").strip().lower()
            except EOFError:
                raise TensControlError(
                    "the screening was not finished (input ended); nothing was recorded"
                ) from None
            if reply in YES or reply in NO:
                answers[question] = reply in YES
                break
            write("   Please type y for yes or n for no.")
        else:
            raise TensControlError(
                "the screening was not finished (no clear y or n); nothing was recorded"
            )
    return answers


def _override(store: Store, patient: str, who: str, why: str) -> int:
    latest = latest_screening(store, patient)
    if latest is None:
        raise ScreeningError(
            f"there is no screening on record for {patient} to override; the patient answers "
            "it first (`tens-control screening`)"
        )
    updated = latest.with_override(who, why, at=datetime.now(UTC))
    save_screening(store, patient, updated)
    labels = ", ".join(SHORT_LABELS[q] for q in latest.uncovered)
    print(f"Recorded override by {who} for {patient}: {labels}. Stimulation is no longer blocked.")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        with _open(args, create=False) as (store, patient):
            latest = latest_screening(store, patient)
    except DatabaseMissingError:
        latest = None
    if latest is None:
        print("No screening on record. Run `tens-control screening` before the first session.")
        return 0
    print(describe(latest))
    return 0


def describe(screening: Screening) -> str:
    lines = [f"Screening of {screening.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"]
    if screening.notes:
        lines.append(f"  {screening.notes}")
    for question in Question:
        answer = "yes" if screening.answers[question] else "no"
        lines.append(f"  {SHORT_LABELS[question]}: {answer}")
    for o in screening.overrides:
        lines.append(
            f"  override of {SHORT_LABELS[o.question]} by {o.who}, "
            f"{o.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {o.why}"
        )
    reason = screening_gate(screening, device_is_simulator=False)
    lines.append(f"Stimulation: blocked; {reason}" if reason else "Stimulation: allowed")
    return "\n".join(lines)


# --------------------------------------------------------------------------- storage
# Every use of the store is in these three functions.


@contextmanager
def _open(args: argparse.Namespace, *, create: bool) -> Iterator[tuple[Store, str]]:
    """The store and the patient's pseudonym (``--patient``, else the current patient).

    With ``create``, a new database and the default patient are created if needed (a patient
    answering the screening on a new install); otherwise both must exist.
    """
    with Store.open(args.db, create=create, recover=False) as store:
        if args.patient is not None and create:
            patient = store.ensure_patient(args.patient).pseudonym
        elif create and not store.patients():
            patient = store.ensure_patient().pseudonym
        else:
            patient = store.pick_patient(args.patient).pseudonym
        yield store, patient


def latest_screening(store: Store, patient: str) -> Screening | None:
    """The patient's latest screening, or None if there is none."""
    stored = store.latest_screening(patient)
    if stored is None:
        return None
    try:
        return Screening.model_validate(stored.model_dump(mode="python", exclude={"uid"}))
    except ValidationError:
        raise ScreeningError(
            f"the stored screening of {patient} cannot be read by this version of "
            "tens-control; run `tens-control screening` again"
        ) from None


def save_screening(store: Store, patient: str, screening: Screening) -> None:
    """Store a screening as a new record (earlier ones are kept)."""
    store.save_screening(
        {q.value: yes for q, yes in screening.answers.items()},
        recorded_by=screening.recorded_by,
        overrides=[
            StoredOverride(question=o.question.value, who=o.who, at=o.at, why=o.why)
            for o in screening.overrides
        ],
        notes=screening.notes,
        patient=patient,
        at=screening.at,
    )
