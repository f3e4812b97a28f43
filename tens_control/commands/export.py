"""``tens-control export``: all of one patient's data as a self-verifying JSON bundle."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tens_control.errors import TensControlError
from tens_control.store import Store, add_db_argument, add_patient_argument


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write all of a patient's data to a self-verifying JSON file",
        description="Write everything stored about one patient (sessions, events with their "
        "hashes, telemetry, ratings, diary, adverse events, prescriptions, screenings) to a JSON "
        "bundle that can be re-verified on its own (tens-control verify --bundle FILE).",
    )
    add_db_argument(p)
    add_patient_argument(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="output file ('-' for standard output; default: "
        "tens-control-<patient>-<date>.json in the current directory)",
    )
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument(
        "--no-telemetry",
        action="store_true",
        help="leave out the telemetry samples (much smaller; the log still records what existed)",
    )
    p.set_defaults(command="export")


def _write_new(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` owner-only; never replace an existing file unless ``force``."""
    if path.exists() and not force:
        raise TensControlError(f"{path} exists; choose another file or add --force to replace it")
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(tmp, 0o600)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: nothing replaced
            except FileExistsError:
                raise TensControlError(
                    f"{path} exists; choose another file or add --force to replace it"
                ) from None
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    with Store.open_to_read(args.db) as store:
        patient = store.pick_patient(args.patient)
        damage = store.damage(store.verify(), patient.pseudonym)  # exports verify first
        bundle = store.export_patient(patient.pseudonym, telemetry=not args.no_telemetry)
    if damage is not None:
        # the first line says so; the bundle carries the log as it is, and the clinic's import
        # names the same broken record
        print(f"warning: {damage.line}", file=sys.stderr)
    text = json.dumps(bundle, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    sessions = len(bundle["sessions"])
    events = sum(len(chain["events"]) for chain in bundle["chains"])
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    name = args.output or (f"tens-control-{patient.pseudonym}-{datetime.now(UTC):%Y%m%d}.json")
    path = Path(name).expanduser()
    try:
        _write_new(path, text, args.force)
    except OSError as error:
        raise TensControlError(f"cannot write {path} ({error.strerror or error})") from None
    print(
        f"exported patient {patient.pseudonym} to {path}: {sessions} session(s), {events} "
        f"logged event(s). It holds health data: keep it private. Check it with: "
        f"tens-control verify --bundle {path}"
    )
    if bundle.get("unsealed_rows"):
        print(
            f"note: {bundle['unsealed_rows']} telemetry row(s) of a session still running were "
            "not exported"
        )
    return 0
