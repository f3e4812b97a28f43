"""``tens-control import``: take a patient's exported bundle into this database, after
verifying its hash chains and checking it against the heads earlier imports of the same patient
received (the clinic anchor: a bundle whose history was cut or rewritten since is refused and
kept aside). Sessions a device odometer says the log lacks are reported, not refused (docs/data.md,
"Import (clinician side)")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tens_control.commands.storage import open_to_write
from tens_control.errors import TensControlError
from tens_control.store import BundleError, add_db_argument, verify_bundle
from tens_control.store.bundle import tampering


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
    try:
        report = verify_bundle(bundle)
    except BundleError as error:  # not a bundle at all, or a damaged one
        raise BundleError(f"{path} was refused and nothing was imported: {error}") from None
    broken = tampering(report)
    if broken:
        more = len(broken) - 1
        extra = f" (and {more}{'+' if report.truncated else ''} more problem(s))" if more else ""
        raise TensControlError(
            f"{path} was refused and nothing was imported: {broken[0]}{extra}; "
            "ask the patient for a fresh export"
        )
    with open_to_write(args.db, create=True, recover=False) as store:
        result = store.import_bundle(bundle, pseudonym=args.pseudonym)
    checked = (
        f"verified {report.events} event(s) in {report.chains} chain(s), "
        f"{report.sessions} session(s), {report.records} record(s)"
    )
    for gap in report.problems:
        if gap.kind == "missing":
            print(f"warning: {gap}")
    if not result.changed:
        print(
            f"{path}: {checked}; nothing new for patient {result.patient} (already imported, or "
            "an older export than one imported before)"
        )
        return 0
    added = ", ".join(f"{n} {what}" for what, n in result.added.items() if n)
    print(f"{path}: {checked}; imported into patient {result.patient}: {added}")
    return 0
