"""``tens-control prescription new|show|sign|import``: the clinician's prescription as TOML.

``compare`` adds an N-of-1 program comparison (``tens_control.comparison``), ``new`` writes a
commented template to edit (never over an existing file without ``--force``),
``show`` checks a file (or the current prescription) and prints it in plain words, ``sign``
signs a file for one patient with a clinician's key, ``import`` checks a file and stores it as
the patient's next prescription version: a signed one if a pinned clinic key signed it, an
unsigned one only if it narrows the limits in force (see ``tens_control.trust.check``).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from drivers.limits import DeviceProfile, builtin_profiles, get_profile
from tens_control.commands.clinician import add_key_argument
from tens_control.commands.storage import open_to_write
from tens_control.comparison import ProgramComparison
from tens_control.prescription import (
    Prescription,
    PrescriptionError,
    dump_prescription,
    fitting_profile_problem,
    load_prescription,
    over_the_counter,
    parse_prescription,
    prescription_from_dict,
    sign_prescription,
    template,
    write_new_file,
)
from tens_control.store import DatabaseMissingError, Store, add_db_argument, add_patient_argument
from tens_control.trust.check import InForce, check_import, prescription_in_force
from tens_control.trust.keys import TrustError, load_private_key, read_passphrase

DEFAULT_FILE = "prescription.toml"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prescription",
        help="write, check and import a clinician's prescription (TOML)",
        description="A prescription sets the programs, amplitude caps, session schedule and "
        "electrode sites for one patient. See docs/prescription.md.",
    )
    p.set_defaults(command="prescription")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    new = actions.add_parser("new", help="write a commented template to edit")
    new.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=DEFAULT_FILE,
        help=f"where to write it (default {DEFAULT_FILE}; '-' prints it)",
    )
    new.add_argument("--force", action="store_true", help="replace FILE if it exists")

    show = actions.add_parser("show", help="check a prescription and print it in plain words")
    which = show.add_mutually_exclusive_group(required=True)
    which.add_argument("file", nargs="?", metavar="FILE", help="a prescription file")
    which.add_argument(
        "--current", action="store_true", help="the patient's current stored prescription"
    )
    show.add_argument("--toml", action="store_true", help="print it as TOML instead")
    _add_profile_argument(show)
    _add_store_arguments(show)

    sign = actions.add_parser("sign", help="clinicians: sign a prescription file for a patient")
    sign.add_argument("file", metavar="FILE")
    sign.add_argument(
        "--patient", metavar="PSEUDONYM", help="the patient's pseudonym (default: the file's)"
    )
    add_key_argument(sign, "the prescription")
    sign.add_argument(
        "--device-serial",
        action="append",
        default=[],
        metavar="SERIAL",
        help="also sign the amplitude cap for this device, which then enforces it itself (a "
        "TSP/2 unit holding the clinic's key; repeatable)",
    )
    sign.add_argument(
        "-o", "--output", metavar="OUT", help="the signed file (default: FILE.signed.toml)"
    )
    sign.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _add_profile_argument(sign)

    compare = actions.add_parser(
        "compare",
        help="clinicians: set up an N-of-1 comparison of programs in a prescription file",
        description="Draws a randomised, balanced block schedule (each cycle one block of every "
        "program, in a random order) and writes it into the prescription; with --key it is "
        "signed at once. The patient is offered each day's program; the review analyses the "
        "blocks. See docs/review.md, 'Which program helps this patient'.",
    )
    compare.add_argument("file", metavar="FILE", help="the prescription to add it to")
    compare.add_argument(
        "--programs",
        required=True,
        metavar="A,B[,C,D]",
        help="two to four of the prescribed programs, comma-separated",
    )
    compare.add_argument(
        "--block-days", type=int, default=7, metavar="N", help="days per block (2-28, default 7)"
    )
    compare.add_argument(
        "--blocks",
        type=int,
        default=3,
        metavar="N",
        help="blocks per program (2-8, default 3)",
    )
    compare.add_argument(
        "--washout-days",
        type=int,
        default=0,
        metavar="N",
        help="days at the start of every later block left out of the analysis (0-3, default 0)",
    )
    compare.add_argument(
        "--seed", type=int, metavar="N", help="the schedule's seed (default: a random one)"
    )
    compare.add_argument(
        "--start", metavar="YYYY-MM-DD", help="the first day of the first block (default: tomorrow)"
    )
    compare.add_argument(
        "--patient", metavar="PSEUDONYM", help="the patient's pseudonym (default: the file's)"
    )
    compare.add_argument(
        "--key",
        metavar="FILE",
        help="your private key: sign the result at once (else sign it with `prescription sign`)",
    )
    compare.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="the file written (default: FILE.signed.toml with --key, else FILE.compare.toml)",
    )
    compare.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _add_profile_argument(compare)

    imp = actions.add_parser("import", help="check a file and store it as the next version")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument(
        "--author", metavar="NAME", help="who wrote it (default: the file's written_by)"
    )
    imp.add_argument("--reason", metavar="TEXT", help="why it changed (default: the file's reason)")
    _add_profile_argument(imp)
    _add_store_arguments(imp)


def _add_profile_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        metavar="ID",
        help="also check it fits this device profile (default: the file's device_profile)",
    )


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    add_db_argument(parser)
    add_patient_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.action == "new":
        return _new(args)
    if args.action == "show":
        return _show(args)
    if args.action == "sign":
        return _sign(args)
    if args.action == "compare":
        return _compare(args)
    return _import(args)


# --------------------------------------------------------------------------- actions


def _new(args: argparse.Namespace) -> int:
    text = template()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    write_new_file(path, text, overwrite=bool(args.force))
    print(f"Wrote a prescription template to {path}.")
    print(f"Edit it, check it with `tens-control prescription show {path}`, then import it.")
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.current:
        stored = current_prescription(args)
        if stored is None:
            print("No prescription on record: the over-the-counter defaults apply.\n")
            profile = _profile_for(args, None)
            rx = over_the_counter(profile)
        else:
            rx = stored
    else:
        rx = load_prescription(Path(args.file))
    profile = _profile_for(args, rx)
    if args.toml:
        sys.stdout.write(dump_prescription(rx))
    else:
        print(describe(rx, profile))
        if args.current:
            print("")
            print(trust_line(args, profile))
    if profile is not None:
        rx.validate_for(profile)
    return 0


def _check_fits(rx: Prescription, profile: DeviceProfile | None, source: str) -> None:
    """Refuse what no device can deliver: the named profile, else every known one."""
    if profile is not None:
        rx.validate_for(profile)
        return
    problem = fitting_profile_problem(rx, builtin_profiles())
    if problem is not None:
        raise PrescriptionError(
            f"{source} fits no device profile: {problem}; change it to fit the patient's device"
        )


def _sign(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rx = load_prescription(path)
    patient = args.patient or rx.patient
    if patient is None:
        raise PrescriptionError(
            f"prescription {path} names no patient; add --patient PSEUDONYM (a signature is "
            "for one patient)"
        )
    _check_fits(rx, _profile_for(args, rx), f"prescription {path}")
    key = load_private_key(Path(args.key).expanduser(), read_passphrase("Key passphrase: "))
    signed = sign_prescription(rx, key, patient, device_serials=tuple(args.device_serial))
    output = Path(args.output) if args.output else path.with_name(f"{path.stem}.signed.toml")
    write_new_file(output, dump_prescription(signed), overwrite=bool(args.force))
    print(
        f"Signed {path} for {patient} as {key.holder} (key {key.key_id}): {output}. The patient "
        f"imports it with: tens-control prescription import {output.name}"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rx = load_prescription(path)
    programs = tuple(p.strip() for p in str(args.programs).split(",") if p.strip())
    try:
        tomorrow = datetime.now(UTC).astimezone().date() + timedelta(days=1)
        start = date.fromisoformat(args.start) if args.start else tomorrow
    except ValueError:
        raise PrescriptionError(
            f"--start {args.start!r} is not a date; write it as YYYY-MM-DD"
        ) from None
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    data = rx.model_dump()
    data.update(
        signature=None,
        device_caps=(),
        comparison={
            "programs": programs,
            "start": start,
            "block_days": args.block_days,
            "blocks_per_program": args.blocks,
            "seed": seed,
            "washout_days": args.washout_days,
        },
    )
    updated = prescription_from_dict(data, f"the comparison for {path}")
    comparison = updated.comparison
    assert comparison is not None
    _check_fits(updated, _profile_for(args, updated), f"prescription {path}")
    serials = tuple(c.serial for c in rx.device_caps)
    if args.key:
        patient = args.patient or rx.patient
        if patient is None:
            raise PrescriptionError(
                f"prescription {path} names no patient; add --patient PSEUDONYM (a signature "
                "is for one patient)"
            )
        key = load_private_key(Path(args.key).expanduser(), read_passphrase("Key passphrase: "))
        updated = sign_prescription(updated, key, patient, device_serials=serials)
    suffix = "signed" if args.key else "compare"
    output = Path(args.output) if args.output else path.with_name(f"{path.stem}.{suffix}.toml")
    write_new_file(output, dump_prescription(updated), overwrite=bool(args.force))
    print(f"Program comparison: {comparison.describe()}.")
    print(schedule_text(comparison))
    if args.key:
        print(
            f"Signed for {updated.patient}: {output}. The patient imports it with: "
            f"tens-control prescription import {output.name}"
        )
    else:
        again = " (its device caps too: add --device-serial for each)" if serials else ""
        print(
            f"Wrote {output} (not signed{again}). Sign it with: tens-control prescription sign "
            f"{output.name} --key KEY"
        )
    return 0


def schedule_text(comparison: ProgramComparison) -> str:
    """The schedule, one block a line, for the clinician (and the patient's printout)."""
    lines = ["Schedule:"]
    for b in comparison.schedule():
        washout = (
            f" (wash-out to {b.washout_until:%a %d %b})" if b.washout_until is not None else ""
        )
        lines.append(
            f"  block {b.index + 1:>2} (cycle {b.cycle + 1}): {b.first_day:%a %d %b %Y} to "
            f"{b.last_day:%a %d %b %Y}  {b.program}{washout}"
        )
    return "\n".join(lines)


def _import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rx = load_prescription(path)
    if rx.is_signed and (args.author or args.reason):
        raise PrescriptionError(
            f"prescription {path} is signed: --author and --reason would change what was signed; "
            "leave them out"
        )
    if not rx.is_signed and rx.patient is not None and args.patient not in (None, rx.patient):
        raise PrescriptionError(
            f"prescription {path} is for patient {rx.patient!r}, not {args.patient!r}; "
            "check you have the right file"
        )
    profile = _profile_for(args, rx)
    _check_fits(rx, profile, f"prescription {path}")
    version, trusted = store_prescription(
        args,
        rx,
        author=args.author or rx.written_by,
        reason=args.reason or rx.reason,
        profile=profile,
    )
    how = (
        f"signed by {trusted.signed_by}"
        if trusted.signed_by
        else f"unsigned: it narrows {trusted.baseline}"
    )
    print(f"Stored {path} as prescription version {version} ({how}).")
    return 0


def _profile_for(args: argparse.Namespace, rx: Prescription | None) -> DeviceProfile | None:
    profile_id = getattr(args, "profile", None) or (rx.device_profile if rx else None)
    return get_profile(profile_id) if profile_id else None


# --------------------------------------------------------------------------- storage
# Every use of the store is in these two functions.


def current_prescription(args: argparse.Namespace) -> Prescription | None:
    """The patient's current stored prescription, or None if there is none."""
    try:
        with Store.open_to_read(args.db) as store:
            if args.patient is None and not store.patients():
                return None
            patient = store.pick_patient(args.patient).pseudonym
            stored = store.latest_prescription(patient)
    except DatabaseMissingError:
        return None
    if stored is None:
        return None
    rx = parse_prescription(stored.toml, f"stored prescription version {stored.version}")
    return rx if rx.version == stored.version else rx.revised(version=stored.version)


def trust_line(args: argparse.Namespace, profile: DeviceProfile | None) -> str:
    """Whether the prescription in force may be used, in one line."""
    try:
        with Store.open_to_read(args.db) as store:
            if args.patient is None and not store.patients():
                return "Self-managed (not enrolled with a clinic)."
            patient = store.pick_patient(args.patient).pseudonym
            return prescription_in_force(store, patient, profile, datetime.now(UTC)).describe()
    except DatabaseMissingError:
        return "Self-managed (not enrolled with a clinic)."
    except TrustError as error:
        return f"NOT USABLE: {error}"


def store_prescription(
    args: argparse.Namespace,
    rx: Prescription,
    *,
    author: str,
    reason: str,
    profile: DeviceProfile | None = None,
) -> tuple[int, InForce]:
    """Store ``rx`` as the patient's next prescription version, if it may be (a signed one
    signed by a pinned key for this patient, an unsigned one narrowing the limits in force);
    return the version number and why it may be used.

    The patient is ``--patient``, else the file's ``patient``, else the current patient. A new
    database, and the patient, are created if needed; but a file naming a patient the database
    does not have is refused unless ``--patient`` confirms it. A signed file is stored as signed
    (only its version number is the store's); its patient is the one its signature names, which
    the trust check compares with the enrolment.
    """
    with open_to_write(args.db, create=True, recover=False) as store:
        known = {p.pseudonym for p in store.patients()}
        if args.patient is not None:
            patient = store.ensure_patient(args.patient).pseudonym
        elif rx.is_signed and known:
            patient = store.pick_patient(None).pseudonym
        elif rx.patient is not None:
            if known and rx.patient not in known:
                raise PrescriptionError(
                    f"the prescription is for patient {rx.patient!r}, who is not in "
                    f"{store.path}; add --patient {rx.patient} to add them"
                )
            patient = store.ensure_patient(rx.patient).pseudonym
        elif not known:
            patient = store.ensure_patient().pseudonym
        else:
            patient = store.pick_patient(None).pseudonym
        versions = [p.version for p in store.prescriptions(patient)]
        version = max(versions, default=0) + 1
        if rx.is_signed:
            revised = rx.revised(version=version)
            author, reason = rx.written_by, rx.reason
        else:
            revised = rx.revised(version=version, written_by=author, reason=reason, patient=patient)
        trusted = check_import(store, patient, revised, profile, datetime.now(UTC))
        stored = store.save_prescription(
            dump_prescription(revised), author=author, reason=reason, patient=patient
        )
        return stored.version, trusted


# --------------------------------------------------------------------------- plain words


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe(rx: Prescription, profile: DeviceProfile | None = None) -> str:
    """The prescription in plain words, for clinicians and patients."""
    lines: list[str] = []
    who = f" for {rx.patient}" if rx.patient else ""
    if rx.is_over_the_counter:
        lines.append("Over-the-counter defaults (no prescription)")
    else:
        lines.append(f"Prescription version {rx.version}{who}")
        lines.append(f"  written by {rx.written_by}, {_when(rx.written_at)}")
        sig = rx.signature
        lines.append(
            "  not signed (it may only narrow the limits in force)"
            if sig is None
            else f"  signed by {sig.signed_by} (key {sig.key_id}) for {sig.patient}, {sig.when}"
        )
    lines.append(f"  reason: {rx.reason}")
    if rx.device_profile:
        lines.append(f"  written for device profile: {rx.device_profile}")

    lines.append("")
    lines.append("Programs (the first is the usual one):")
    for program in rx.all_programs():
        refusal = None if profile is None else program.refusal_for(profile)
        mark = f"  [not offered on this device: {refusal}]" if refusal else ""
        lines.append(f"  {program.name}: {program.title} ({program.summary()}){mark}")
        lines.append(f"      {program.description}")

    lines.append("")
    lines.append("Limits:")
    if rx.max_amplitude_ma is not None:
        lines.append(f"  amplitude: at most {rx.max_amplitude_ma:g} mA on every channel")
    else:
        lines.append("  amplitude: the device's own maximum")
    session = f"  sessions: {rx.session_minutes} minutes each"
    if rx.sessions_per_day is not None:
        session += f"; at most {rx.sessions_per_day} a day"
    if rx.minutes_per_day is not None:
        session += f"; at most {rx.minutes_per_day} minutes a day"
    if rx.min_gap_minutes:
        session += f"; at least {rx.min_gap_minutes} minutes between sessions"
    lines.append(session)
    if rx.habituation_interval_s is None:
        lines.append('  "still strong but comfortable?" prompt: off')
    else:
        lines.append(
            f'  "still strong but comfortable?" prompt: every {rx.habituation_prompt_minutes} '
            "minutes"
        )
    override = rx.current_density_override
    if override is None:
        lines.append("  current density above 2 mA/cm²: not allowed")
    else:
        lines.append(
            f"  current density above 2 mA/cm²: allowed by {override.who}, {_when(override.at)}: "
            f"{override.why}"
        )

    lines.append("")
    ratings = (
        "phantom and stump pain asked separately"
        if rx.rate_phantom_and_residual_separately
        else "one pain rating"
    )
    moves = "at rest and on movement" if rx.rate_on_movement else "at rest"
    lines.append(f"Pain ratings: {ratings}; {moves}")
    pain, on_movement = rx.headline_series
    run_in = f"{rx.run_in_days} days of daily ratings" if rx.run_in_days else "none"
    lines.append(
        f"Review: headline {pain.value.replace('_', ' ')} pain "
        f"{'on movement' if on_movement else 'at rest'}; run-in before the first session: {run_in}"
    )

    lines.append("")
    if rx.channels:
        lines.append("Channels:")
        for c in sorted(rx.channels, key=lambda c: c.channel):
            cap = rx.amplitude_cap(c.channel)
            cap_text = f"; at most {cap:g} mA" if cap is not None else ""
            lines.append(f"  {c.channel}: {c.describe()}{cap_text}")
    else:
        lines.append("Channels: no electrode sites on record")
    if rx.comparison is not None:
        lines.extend(["", f"Program comparison: {rx.comparison.describe()}"])
        lines.append(schedule_text(rx.comparison))
    if rx.notes:
        lines.extend(["", f"Notes: {rx.notes}"])
    if profile is not None:
        problems = rx.problems_for(profile)
        lines.append("")
        if problems:
            lines.append(f"Does NOT fit {profile.name}:")
            lines.extend(f"  - {p}" for p in problems)
        else:
            lines.append(f"Fits {profile.name}.")
    return "\n".join(lines)
