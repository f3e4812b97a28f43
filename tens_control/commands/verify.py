"""``tens-control verify``: check the session log (or an export bundle) for tampering.

Exit 0 when intact, 1 naming the first broken link, 2 when the file cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tens_control.errors import TensControlError
from tens_control.store import Store, VerifyReport, add_db_argument, verify_bundle
from tens_control.store.errors import BundleError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check the session log for edited, inserted or deleted records",
        description="Walk every hash chain of the session log and check every session, rating, "
        "diary entry and telemetry segment against it. Exit 0 if intact, 1 naming the first "
        "broken link.",
    )
    add_db_argument(p)
    p.add_argument(
        "--bundle",
        metavar="FILE",
        default=None,
        help="verify an export bundle (JSON file) instead of the database",
    )
    p.add_argument(
        "--all", action="store_true", help="list every problem found, not only the first"
    )
    p.set_defaults(command="verify")


def _print_report(report: VerifyReport, show_all: bool) -> int:
    if report.ok:
        print(report.summary())
        for head in report.heads:
            print(
                f"  chain {head.chain[:8]} (patient {head.patient}): head seq {head.seq}, "
                f"hash {head.hash}"
            )
        return 0
    print(report.summary())
    if show_all:
        for problem in report.problems[1:]:
            print(f"  also: {problem}")
    return 1


def _load_bundle(path: Path) -> Any:
    try:
        with path.open("rb") as fp:
            return json.load(fp)
    except FileNotFoundError:
        raise TensControlError(f"there is no file {path}") from None
    except (OSError, ValueError) as error:
        raise BundleError(f"{path} is not a readable JSON bundle ({error})") from None


def run(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        path = Path(args.bundle)
        try:
            report = verify_bundle(_load_bundle(path))
        except BundleError as error:
            raise BundleError(f"{path}: {error}") from None
        report.source = str(path)
        return _print_report(report, args.all)
    with Store.open_to_read(args.db) as store:
        integrity = store.integrity_check()
        if integrity != "ok":
            print(f"{store.path}: BROKEN: SQLite integrity check failed: {integrity}")
            return 1
        return _print_report(store.verify(), args.all)
