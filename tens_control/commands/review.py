"""``tens-control review``: the clinician review UI (docs/review.md, "Clinician review UI").

Opens the database read-only: a patient list with each patient's status, a summary per patient
with charts, session detail, and report exports. Textual and the review modules load only when
the command runs. ``--serve`` serves the same review to browsers
(:mod:`tens_control.review.serve`; docs/review.md, "In a browser").
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from tens_control.commands.report import _day
from tens_control.errors import TensControlError
from tens_control.store import add_db_argument


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "review",
        help="clinicians: review patients' sessions, pain and faults, and export reports",
        description="Open the clinician review UI on a database, read-only: every patient "
        "with adherence, pain change, responder status and warnings; per patient the figures, "
        "charts of pain and amplitude, weekly means and every session; per session the "
        "amplitude over time, every logged event and the ratings; and report exports (html, "
        "pdf, csv, json, fhir). The rules of every figure are in docs/review.md. With --serve, "
        "the same review in a browser: every browser tab runs its own review, and the address "
        "printed at start (with its token) is needed to open it.",
    )
    add_db_argument(p)
    p.add_argument(
        "--patient",
        metavar="ID",
        default=None,
        help="open this patient's summary first (default: the patient list)",
    )
    p.add_argument(
        "--to",
        dest="period_to",
        metavar="DATE",
        type=_day,
        default=None,
        help="review as of this day (YYYY-MM-DD; default: today)",
    )
    web = p.add_argument_group("in a browser")
    web.add_argument(
        "--serve",
        action="store_true",
        help="serve the review to browsers (textual-serve) until Ctrl-C, instead of opening "
        "it here; prints the address to open, with its token",
    )
    web.add_argument(
        "--host",
        default=None,
        help="address to listen on (default: 127.0.0.1, this machine only; any other address "
        "needs --allow-remote)",
    )
    web.add_argument(
        "--port", type=int, default=None, help="port to listen on (default: 8000; 0: any free port)"
    )
    web.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that other machines can reach (plain HTTP: a trusted network only)",
    )
    web.add_argument(
        "--max-tabs",
        type=int,
        default=None,
        metavar="N",
        help="browser tabs open at once (each is a process; default: 8)",
    )
    web.add_argument(
        "--clinic-config",
        metavar="FILE",
        default=None,
        help="the clinic's configuration, whose [review.serve] password_hash lets a browser "
        "in with a password instead of the token (default: $TENS_CONTROL_CLINIC_CONFIG, else "
        "clinic.toml in the user configuration directory)",
    )
    web.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (twice) and print the password_hash line for the clinic's "
        "configuration, then exit",
    )
    p.set_defaults(command="review")


def _read_password() -> str:
    if not sys.stdin.isatty():  # a pipe: one line
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password for the served review: ")
        if getpass.getpass("the same password again: ") != password:
            raise TensControlError("the two passwords differ; nothing was printed, try again")
    if len(password) < 12:
        raise TensControlError("the password is shorter than 12 characters; choose a longer one")
    return password


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        from tens_control.review.serve import hash_password

        stored = hash_password(_read_password())
        print(f'[review.serve]\npassword_hash = "{stored}"')
        return 0
    web_only = {
        "--host": args.host,
        "--port": args.port,
        "--max-tabs": args.max_tabs,
        "--clinic-config": args.clinic_config,
    }
    given = [name for name, value in web_only.items() if value is not None]
    if args.allow_remote:
        given.append("--allow-remote")
    if not args.serve:
        if given:
            raise TensControlError(f"{', '.join(given)} only apply with --serve; add --serve")
        from tens_control.ui.review.app import run_review

        return run_review(args.db, patient=args.patient, today=args.period_to)

    from tens_control.review import serve
    from tens_control.store import resolve_db_path

    settings = serve.load_serve_settings(serve.clinic_config_path(args.clinic_config))
    options = serve.ServeOptions(
        db=resolve_db_path(args.db),
        host=args.host or serve.DEFAULT_HOST,
        port=serve.DEFAULT_PORT if args.port is None else args.port,
        allow_remote=args.allow_remote,
        max_tabs=serve.DEFAULT_MAX_TABS if args.max_tabs is None else args.max_tabs,
        today=args.period_to,
        patient=args.patient,
        password_hash=settings.password_hash,
    )
    return serve.serve_review(options)
