"""``tens-control screening``: the contraindication questions before the first session (S12).

Without options it asks each question on the terminal. ``--none`` records that the patient
reports none of the conditions. ``--override --by NAME --reason TEXT`` is for clinicians: it
records that the "yes" answers were reviewed and stimulation may go ahead. ``--show`` prints
the latest screening.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tens_control.errors import TensControlError
from tens_control.screening import (
    CONTACT_CLINICIAN,
    QUESTIONS,
    SHORT_LABELS,
    Question,
    Screening,
    ScreeningError,
    from_answers,
    none_reported,
    screening_gate,
)

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
    try:
        from tens_control.store.paths import add_db_argument, add_patient_argument
    except ImportError:  # pragma: no cover - the store ships with the application
        return
    add_db_argument(p)
    add_patient_argument(p)


def run(args: argparse.Namespace) -> int:
    if (args.by or args.reason) and not args.override:
        raise TensControlError("--by and --reason go with --override")
    if args.override:
        return _override(args)
    if args.show:
        return _show(args)
    if args.none:
        screening = none_reported()
        save_screening(args, screening)
        print("Recorded: you report none of the conditions. You may use TENS.")
        return 0
    return _interactive(args)


def _interactive(args: argparse.Namespace) -> int:
    print("Before using TENS, please answer these questions with y (yes) or n (no).")
    print("Your answers are kept with your records for your clinician.\n")
    answers = ask(input, print)
    screening = from_answers(answers)
    save_screening(args, screening)
    if screening.blocks:
        labels = ", ".join(SHORT_LABELS[q] for q in screening.positives)
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


def _override(args: argparse.Namespace) -> int:
    if not args.by or not args.reason:
        raise TensControlError(
            "--override needs --by NAME (who decides) and --reason TEXT (why it is safe)"
        )
    latest = latest_screening(args)
    if latest is None:
        raise ScreeningError(
            "there is no screening on record to override; the patient answers it first "
            "(`tens-control screening`)"
        )
    updated = latest.with_override(args.by, args.reason, at=datetime.now(UTC))
    save_screening(args, updated)
    labels = ", ".join(SHORT_LABELS[q] for q in latest.uncovered)
    print(f"Recorded override by {args.by} for: {labels}. Stimulation is no longer blocked.")
    return 0


def _show(args: argparse.Namespace) -> int:
    latest = latest_screening(args)
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
    lines.append(f"Stimulation: {'blocked - ' + reason if reason else 'allowed'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- storage
# Every use of the store is in these two functions.


def latest_screening(args: argparse.Namespace) -> Screening | None:
    """The patient's latest screening, or None if there is none."""
    raise TensControlError("the session store is not available in this build")


def save_screening(args: argparse.Namespace, screening: Screening) -> None:
    """Store a screening (a new record; earlier ones are kept)."""
    raise TensControlError(
        "the session store is not available in this build, so the screening was not recorded"
    )
