"""``tens-control delete-patient``: remove every trace of one patient from the database."""

from __future__ import annotations

import argparse
from typing import Any

from tens_control.store import Store, add_db_argument, add_patient_argument


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "delete-patient",
        help="delete all of a patient's data (asks for confirmation)",
        description="Delete every session, event, telemetry sample, rating, diary entry, "
        "adverse event, prescription and screening of one patient. This cannot be undone: "
        "export first if the data may be needed (tens-control export).",
    )
    add_db_argument(p)
    add_patient_argument(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    p.set_defaults(command="delete-patient")


def run(args: argparse.Namespace) -> int:
    with Store.open(args.db, create=False, recover=False) as store:
        patient = store.pick_patient(args.patient)
        name = patient.pseudonym
        if not args.yes:
            sessions = len(store.sessions(name, with_ratings=False))
            ratings = len(store.pain_ratings(name))
            print(
                f"This deletes ALL data of patient {name} from {store.path}: {sessions} "
                f"session(s), {ratings} pain rating(s), and every event, telemetry sample, "
                "diary entry, adverse event, prescription and screening. It cannot be undone; "
                "export first if the data may be needed."
            )
            try:
                answer = input(f"Type the pseudonym ({name}) to delete, or press Enter to keep: ")
            except EOFError:
                answer = ""
            if answer.strip() != name:
                print("Nothing was deleted.")
                return 1
        result = store.delete_patient(name)
    counts = ", ".join(f"{count} {table}" for table, count in result.deleted.items() if count)
    print(f"Deleted patient {name}: {counts or 'no rows'}.")
    return 0
