"""``tens-control enrol FILE``: pin the clinic's enrolment file on the patient's computer.

The first enrolment is pinned as it is (its own signature must hold). A newer one replaces it
only if a key already pinned signed it (the clinic adding, rotating or revoking keys); anything
else is refused unless ``--replace`` is given (moving to another clinic), which the log records.
``--show`` prints the enrolment in force.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tens_control.commands.storage import open_to_write
from tens_control.store import (
    DatabaseMissingError,
    Store,
    add_db_argument,
    add_patient_argument,
)
from tens_control.trust.check import pinned_enrolment
from tens_control.trust.enrolment import Enrolment, parse_enrolment
from tens_control.trust.keys import TrustError, read_text


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "enrol",
        help="pin your clinic's enrolment file (its keys then sign your prescriptions)",
        description="Pin the enrolment file your clinic gave you: from then on only "
        "prescriptions and screening overrides signed by your clinic's keys can raise a limit. "
        "A newer enrolment from the same clinic replaces it. See docs/prescription.md.",
    )
    p.set_defaults(command="enrol")
    p.add_argument("file", nargs="?", metavar="FILE", help="the enrolment file from the clinic")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace an enrolment whose keys did not sign FILE (e.g. a new clinic); recorded "
        "in the log, and your clinic will see it",
    )
    p.add_argument("--show", action="store_true", help="print the enrolment in force")
    add_db_argument(p)
    add_patient_argument(p)


def run(args: argparse.Namespace) -> int:
    if args.show:
        return _show(args)
    if args.file is None:
        raise TrustError("give the enrolment FILE from your clinic (or --show)")
    path = Path(args.file).expanduser()
    text = read_text(path, "enrolment")
    enrolment = parse_enrolment(text, f"enrolment {path}")
    problem = enrolment.self_signature_problem(now=_now())
    if problem is not None:
        raise TrustError(
            f"enrolment {path} was not pinned: {problem}; ask your clinic for the file again"
        )
    with open_to_write(args.db, create=True, recover=False) as store:
        if args.patient is not None:
            patient = store.ensure_patient(args.patient).pseudonym
        elif not store.patients():
            patient = store.ensure_patient(enrolment.patient).pseudonym
        else:
            patient = store.pick_patient(None).pseudonym
        replaced = _check_successor(store, patient, enrolment, replace=bool(args.replace))
        if replaced is None:
            print(f"{path}: already pinned (enrolment {enrolment.serial} of {enrolment.clinic})")
            return 0
        store.save_enrolment(
            text,
            clinic=enrolment.clinic,
            clinic_patient=enrolment.patient,
            serial=enrolment.serial,
            replaced=replaced,
            patient=patient,
        )
    keys = ", ".join(f"{k.holder} ({k.key_id})" for k in enrolment.keys)
    print(
        f"Enrolled {patient} with {enrolment.clinic} as {enrolment.patient} (enrolment "
        f"{enrolment.serial}). Signed prescriptions and overrides of these keys count: {keys}."
    )
    if replaced:
        print("The earlier enrolment was replaced (--replace); the log records it.")
    return 0


def _now() -> datetime:
    return datetime.now(UTC)


def _check_successor(store: Store, patient: str, new: Enrolment, *, replace: bool) -> bool | None:
    """Whether ``new`` replaces an enrolment without its keys' consent (True), follows it
    (False), or is the one already pinned (None); refuses otherwise."""
    try:
        current = pinned_enrolment(store, patient)
    except TrustError:
        if not replace:
            raise
        return True
    if current is None:
        return False
    if current == new:
        return None
    why = current.successor_problem(new, now=_now())
    revoked = {
        r.key_id
        for record in store.enrolments(patient)
        for r in parse_enrolment(record.text, f"pinned enrolment {record.serial}").revoked
    }
    again = sorted(revoked & set(new.key_ids))
    if why is None and again:
        why = f"it pins key {again[0]} again, which the clinic revoked"
    if why is None:
        return False
    if not replace:
        raise TrustError(
            f"this computer is enrolled with {current.clinic} (enrolment {current.serial}) and "
            f"the new file was not pinned: {why}. If you are moving to another clinic, add "
            "--replace (the log records it, and your clinic will see it)"
        )
    return True


def _show(args: argparse.Namespace) -> int:
    try:
        with Store.open(args.db, create=False, recover=False) as store:
            patient = store.pick_patient(args.patient).pseudonym
            current = pinned_enrolment(store, patient)
    except DatabaseMissingError:
        current = None
    if current is None:
        print(
            "Not enrolled with a clinic: self-managed mode (the manufacturer's limits and the "
            "over-the-counter defaults apply; your own prescription may only narrow them)."
        )
        return 0
    print(f"Enrolled with {current.clinic} as {current.patient} (enrolment {current.serial})")
    for k in current.keys:
        until = "" if k.valid_until is None else f", valid until {k.valid_until:%Y-%m-%d}"
        print(f"  key {k.key_id}: {k.holder}{until}")
    for r in current.revoked:
        print(f"  revoked key {r.key_id} on {r.revoked_at:%Y-%m-%d}")
    return 0
