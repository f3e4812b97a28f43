"""``tens-control import``: take a patient's exported bundle into this database, after
verifying its hash chains (docs/review.md, "Importing a patient's log")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tens_control.errors import TensControlError
from tens_control.store import Store, add_db_argument, verify_bundle


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="import a patient's exported bundle (verified first)",
        description="Import a bundle written by `tens-control export` into this database. The "
        "bundle's hash chains are verified first: a bundle with an edited, inserted or deleted "
        "record is refused, naming the first broken record, and nothing is imported. Importing "
        "the same bundle twice changes nothing.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="the exported JSON file")
    add_db_argument(p)
    p.add_argument(
        "--as",
        dest="pseudonym",
        metavar="PSEUDONYM",
        default=None,
        help="store a new patient under this pseudonym (default: the bundle's)",
    )
    p.set_defaults(command="import")


def read_bundle(path: Path) -> dict[str, Any]:
    """The bundle file as JSON, or one clear error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TensControlError(f"{path}: no such file; give the exported bundle's path") from None
    except IsADirectoryError:
        raise TensControlError(f"{path} is a folder; give the exported bundle file") from None
    except OSError as error:
        raise TensControlError(f"cannot read {path} ({error.strerror or error})") from None
    try:
        bundle = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TensControlError(
            f"{path} is not a tens-control bundle (not JSON); give a file written by "
            "`tens-control export`"
        ) from None
    if not isinstance(bundle, dict):
        raise TensControlError(
            f"{path} is not a tens-control bundle; give a file written by `tens-control export`"
        )
    return bundle


def run(args: argparse.Namespace) -> int:
    path = Path(args.bundle).expanduser()
    bundle = read_bundle(path)
    report = verify_bundle(bundle)  # BundleError if it is not a bundle at all
    if not report.ok:
        more = len(report.problems) - 1
        extra = f" (and {more}{'+' if report.truncated else ''} more problem(s))" if more else ""
        raise TensControlError(
            f"{path} was refused and nothing was imported: {report.first}{extra}; "
            "ask the patient for a fresh export"
        )
    with Store.open(args.db, create=True, recover=False) as store:
        result = store.import_bundle(bundle, pseudonym=args.pseudonym)
    checked = (
        f"verified {report.events} event(s) in {report.chains} chain(s), "
        f"{report.sessions} session(s), {report.records} record(s)"
    )
    if not result.changed:
        print(f"{path}: {checked}; nothing new for patient {result.patient} (already imported)")
        return 0
    added = ", ".join(f"{n} {what}" for what, n in result.added.items() if n)
    print(f"{path}: {checked}; imported into patient {result.patient}: {added}")
    return 0
