"""``tens-control report``: the clinician report of one patient, as HTML, PDF, CSV, JSON or
FHIR (docs/review.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from tens_control.errors import TensControlError
from tens_control.store import Store, add_db_argument, add_patient_argument

FORMATS = ("html", "pdf", "csv", "json", "fhir")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-03-02"
        ) from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a patient's clinician report (html, pdf, csv, json or fhir)",
        description="Summarise one patient's log for a clinician, up to today: last use, "
        "adherence, pain at weeks 4, 8 and 12 against the run-in baseline (responders by "
        "intention to treat, in percent and in points), other treatments beside the figures, "
        "PEG, PGIC, the diary and session notes, tolerance, adverse events and faults "
        "(html/pdf: at most two A4 pages), or export them as CSV, JSON or a FHIR R4B bundle. "
        "The rules of every figure are in docs/review.md. Read-only.",
    )
    add_db_argument(p)
    add_patient_argument(p)
    p.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    p.add_argument(
        "--from", dest="period_from", metavar="DATE", type=_day, help="first day (YYYY-MM-DD)"
    )
    p.add_argument(
        "--to",
        dest="period_to",
        metavar="DATE",
        type=_day,
        help="last day (YYYY-MM-DD; default: today)",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="output file ('-': standard output)"
    )
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(command="report")


def run(args: argparse.Namespace) -> int:
    # imported here so that `tens-control --help` does not load fpdf2 and fhir.resources
    from tens_control.review.report import render, write_output
    from tens_control.review.source import load_patient

    if args.period_from and args.period_to and args.period_from > args.period_to:
        raise TensControlError(
            f"--from {args.period_from} is after --to {args.period_to}; swap them"
        )
    path = None if args.output == "-" else Path(args.output).expanduser()
    if path is not None and path.exists() and not args.force:
        raise TensControlError(
            f"{path} already exists; choose another file name or add --force to replace it"
        )
    with Store.open_to_read(args.db) as store:  # review never changes the log
        data = load_patient(
            store, args.patient, period_from=args.period_from, period_to=args.period_to
        )
        # reports refuse to lie: verify first, and say so and mark the figures if damaged
        data = data.with_damage(store.damage(store.verify(), data.patient.pseudonym))
    content = render(data, args.format)
    if path is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return 0
    write_output(path, content, force=args.force)
    if data.integrity:
        print(f"warning: {data.integrity}", file=sys.stderr)
    print(
        f"wrote the {args.format} report of patient {data.patient.pseudonym} "
        f"({len(data.sessions)} sessions, {len(data.ratings)} ratings) to {path}"
    )
    return 0
