"""``tens-control review``: the clinician review UI (docs/review.md, "Clinician review UI").

Opens the database read-only: a patient list with each patient's status, a summary per patient
with charts, session detail, and report exports. Textual and the review modules load only when
the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from tens_control.store import add_db_argument


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "review",
        help="clinicians: review patients' sessions, pain and faults, and export reports",
        description="Open the clinician review UI on a database, read-only: every patient "
        "with adherence, pain change, responder status and warnings; per patient the figures, "
        "charts of pain and amplitude, weekly means and every session; per session the "
        "amplitude over time, every logged event and the ratings; and report exports (html, "
        "pdf, csv, json, fhir). The rules of every figure are in docs/review.md.",
    )
    add_db_argument(p)
    p.add_argument(
        "--patient",
        metavar="ID",
        default=None,
        help="open this patient's summary first (default: the patient list)",
    )
    p.set_defaults(command="review")


def run(args: argparse.Namespace) -> int:
    from tens_control.ui.review.app import run_review

    return run_review(args.db, patient=args.patient)
