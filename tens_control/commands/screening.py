"""``tens-control screening``: the contraindication questions before the first session (S12).

Without options it asks each question on the terminal. ``--none`` records that the patient
reports none of the conditions. ``--override --key FILE --reason TEXT`` is for clinicians: it
records, signed with the clinician's key, that the "yes" answers were reviewed and stimulation
may go ahead (only an override signed by a key pinned at enrolment counts). With ``-o FILE`` it
writes the signed override to a file instead, for a patient at home to ``--apply``. ``--show``
prints the latest screening.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tens_control import toml_out
from tens_control.commands.storage import open_to_write
from tens_control.errors import TensControlError
from tens_control.prescription import write_new_file
from tens_control.screening import (
    CONTACT_CLINICIAN,
    QUESTIONS,
    SHORT_LABELS,
    Question,
    Screening,
    ScreeningError,
    ScreeningOverride,
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
from tens_control.trust.check import override_problem, pinned_enrolment, trusted_screening
from tens_control.trust.enrolment import Enrolment
from tens_control.trust.keys import ClinicianKey, load_private_key, read_passphrase

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
        help='clinicians: record, signed, that the "yes" answers were reviewed (needs --key and '
        "--reason)",
    )
    mode.add_argument(
        "--apply",
        metavar="FILE",
        help="record the signed override file your clinic sent (from --override -o FILE)",
    )
    mode.add_argument("--show", action="store_true", help="print the latest screening")
    p.add_argument("--key", metavar="FILE", help="with --override: your private key file")
    p.add_argument("--by", metavar="NAME", help="with --override: who decides (default: the key's)")
    p.add_argument("--reason", metavar="TEXT", help="with --override: why it is safe")
    p.add_argument(
        "--question",
        action="append",
        choices=[q.value for q in Question],
        default=[],
        help="with --override -o: a question whose yes you reviewed (repeat for each)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="with --override: write the signed override to FILE for the patient to --apply",
    )
    add_db_argument(p)
    add_patient_argument(p)


def run(args: argparse.Namespace) -> int:
    if (args.by or args.reason or args.key or args.output or args.question) and not args.override:
        raise TensControlError("--key, --by, --reason, --question and -o go with --override")
    if args.override and (not args.key or not args.reason):
        raise TensControlError(
            "--override needs --key FILE (your clinician key: the override is signed) and "
            "--reason TEXT (why it is safe)"
        )
    if args.show:
        return _show(args)
    if args.override and args.output:
        return _override_file(args)
    with _open(args, create=not (args.override or args.apply)) as (store, patient):
        if args.override:
            return _override(store, patient, args)
        if args.apply:
            return _apply(store, patient, Path(args.apply))
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


def _key(args: argparse.Namespace) -> ClinicianKey:
    return load_private_key(Path(args.key).expanduser(), read_passphrase("Key passphrase: "))


def _enrolled(store: Store, patient: str) -> Enrolment:
    enrolment = pinned_enrolment(store, patient)
    if enrolment is None:
        raise ScreeningError(
            f"{patient} is not enrolled with a clinic on this computer, so no override can be "
            "checked: the clinic enrols the patient first (`tens-control enrol FILE`)"
        )
    return enrolment


def _latest(store: Store, patient: str) -> Screening:
    latest = latest_screening(store, patient)
    if latest is None:
        raise ScreeningError(
            f"there is no screening on record for {patient} to override; the patient answers "
            "it first (`tens-control screening`)"
        )
    return latest


def _record_overrides(
    store: Store, patient: str, enrolment: Enrolment, updated: Screening, added: list[Question]
) -> int:
    now = datetime.now(UTC)
    for o in updated.overrides:
        problem = override_problem(o, enrolment, now) if o.question in added else None
        if problem is not None:
            raise ScreeningError(f"not recorded: {problem}")
    save_screening(store, patient, updated)
    labels = ", ".join(SHORT_LABELS[q] for q in added)
    who = ", ".join(sorted({o.who for o in updated.overrides if o.question in added}))
    print(
        f"Recorded the signed override by {who} for {patient}: {labels}. Stimulation is no "
        "longer blocked."
    )
    return 0


def _override(store: Store, patient: str, args: argparse.Namespace) -> int:
    enrolment = _enrolled(store, patient)
    latest = _latest(store, patient)
    trusted, _ = trusted_screening(latest, enrolment, datetime.now(UTC))
    key = _key(args)
    todo = trusted.uncovered
    updated = latest.with_override(
        args.by or key.holder,
        args.reason,
        at=datetime.now(UTC),
        key=key,
        patient=enrolment.patient,
        questions=todo,
    )
    return _record_overrides(store, patient, enrolment, updated, list(todo))


def _override_file(args: argparse.Namespace) -> int:
    """A signed override for a patient elsewhere: the questions and pseudonym are given."""
    if not args.question or not args.patient:
        raise TensControlError(
            "--override -o FILE needs --patient PSEUDONYM and a --question for each reviewed yes"
        )
    key = _key(args)
    when = datetime.now(UTC).replace(microsecond=0)
    try:
        overrides = [
            ScreeningOverride(
                question=Question(q), who=args.by or key.holder, at=when, why=args.reason
            ).signed(key, args.patient, at=when)
            for q in dict.fromkeys(args.question)
        ]
    except ValidationError as error:
        raise ScreeningError(f"override: {error.errors()[0]['msg']}") from None
    text = toml_out.dumps(
        {"overrides": [o.model_dump(exclude_none=True) for o in overrides]},
        (f"tens-control screening override for {args.patient}, signed by {key.holder}",),
    )
    write_new_file(Path(args.output), text)
    print(
        f"Wrote the signed override for {args.patient} to {args.output}; the patient runs: "
        f"tens-control screening --apply {Path(args.output).name}"
    )
    return 0


def _apply(store: Store, patient: str, path: Path) -> int:
    enrolment = _enrolled(store, patient)
    latest = _latest(store, patient)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        overrides = [ScreeningOverride.model_validate(o) for o in data["overrides"]]
    except FileNotFoundError:
        raise ScreeningError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
        raise ScreeningError(f"{path} is not a screening override file ({error})") from None
    except ValidationError as error:
        raise ScreeningError(f"{path}: {error.errors()[0]['msg']}") from None
    asked = [o.question for o in overrides]
    unasked = [q for q in asked if not latest.answers.get(q, False)]
    if unasked:
        raise ScreeningError(
            f"{path} overrides {SHORT_LABELS[unasked[0]]}, which the latest screening of "
            f"{patient} answered no; nothing was recorded"
        )
    kept = tuple(o for o in latest.overrides if o.question not in asked)
    updated = latest.model_copy(update={"overrides": kept + tuple(overrides)})
    return _record_overrides(store, patient, enrolment, updated, asked)


def _show(args: argparse.Namespace) -> int:
    dropped: tuple[str, ...] = ()
    trusted: Screening | None = None
    try:
        with _open(args, create=False) as (store, patient):
            latest = latest_screening(store, patient)
            if latest is not None:
                trusted, dropped = trusted_screening(
                    latest, pinned_enrolment(store, patient), datetime.now(UTC)
                )
    except DatabaseMissingError:
        latest = None
    if latest is None:
        print("No screening on record. Run `tens-control screening` before the first session.")
        return 0
    print(describe(latest, trusted, dropped))
    return 0


def describe(
    screening: Screening, trusted: Screening | None = None, dropped: tuple[str, ...] = ()
) -> str:
    """The screening in plain words; the verdict counts only the ``trusted`` overrides (those
    a pinned clinic key signed), and ``dropped`` says why the others do not count."""
    lines = [f"Screening of {screening.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"]
    if screening.notes:
        lines.append(f"  {screening.notes}")
    for question in Question:
        answer = "yes" if screening.answers[question] else "no"
        lines.append(f"  {SHORT_LABELS[question]}: {answer}")
    for o in screening.overrides:
        signed = "unsigned" if o.signature is None else f"signed, key {o.signature.key_id}"
        lines.append(
            f"  override of {SHORT_LABELS[o.question]} by {o.who} ({signed}), "
            f"{o.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {o.why}"
        )
    reason = screening_gate(trusted or screening, device_is_simulator=False)
    lines.extend(f"  {why}" for why in dropped)
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
    with open_to_write(args.db, create=create, recover=False) as store:
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
            StoredOverride.model_validate(o.model_dump(mode="json")) for o in screening.overrides
        ],
        notes=screening.notes,
        patient=patient,
        at=screening.at,
    )
