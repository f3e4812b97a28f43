"""``tens-control clinician keygen|enrolment``: the clinic's side of trust (docs/prescription.md,
"Keys, enrolment and signatures").

``keygen`` makes a clinician's Ed25519 key pair: the private key file (owner-only, encrypted with
a passphrase) and its public ``.pub`` file. ``enrolment`` writes a patient's signed enrolment
file: the clinic's name, the patient's pseudonym and the public keys that may sign for them (a
newer one, ``--after`` the previous file, rotates or revokes keys).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tens_control.prescription import write_new_file
from tens_control.store import resolve_db_path
from tens_control.store.paths import check_pseudonym
from tens_control.trust.enrolment import (
    Enrolment,
    PinnedKey,
    RevokedKey,
    dump_enrolment,
    load_enrolment,
    sign_enrolment,
)
from tens_control.trust.keys import (
    ENV_PASSPHRASE,
    TrustError,
    check_not_beside_database,
    generate_key,
    load_private_key,
    load_public_key,
    public_path,
    read_passphrase,
)

DEFAULT_KEY = "tens-control-clinician.key"
DEFAULT_YEARS = 3


def add_key_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--key",
        metavar="FILE",
        required=True,
        help=f"your private key file (from `tens-control clinician keygen`) to sign {what}; "
        f"the passphrase is asked for, or read from ${ENV_PASSPHRASE}",
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "clinician",
        help="clinicians: make a signing key, write a patient's enrolment file",
        description="The clinic's side of trust: a clinician's signing key and a patient's "
        "enrolment file. See docs/prescription.md.",
    )
    p.set_defaults(command="clinician")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    keygen = actions.add_parser(
        "keygen",
        help="make your signing key (private file, passphrase-protected) and its public file",
    )
    keygen.add_argument("--name", required=True, help='your name and role, e.g. "Dr A. Example"')
    keygen.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=DEFAULT_KEY,
        help=f"the private key file (default {DEFAULT_KEY}); the public one is FILE.pub",
    )

    enrol = actions.add_parser(
        "enrolment", help="write a patient's signed enrolment file (clinic keys, pseudonym)"
    )
    enrol.add_argument("--clinic", help="the clinic's name (default: --after's)")
    enrol.add_argument("--patient", help="the patient's pseudonym (default: --after's)")
    enrol.add_argument(
        "--pub",
        metavar="FILE",
        action="append",
        default=[],
        help="a clinician's public key file (.pub) to pin; repeat for each clinician (the "
        "signing key is always included)",
    )
    enrol.add_argument(
        "--after",
        metavar="FILE",
        help="the patient's current enrolment file: the new one gets the next serial and keeps "
        "its keys (sign with one of them)",
    )
    enrol.add_argument(
        "--revoke",
        metavar="KEYID",
        action="append",
        default=[],
        help="a key id to revoke (removed, and refused from then on); repeat as needed",
    )
    enrol.add_argument(
        "--years",
        type=int,
        default=DEFAULT_YEARS,
        help=f"how long newly added keys stay valid (default {DEFAULT_YEARS})",
    )
    add_key_argument(enrol, "the enrolment")
    enrol.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write it")
    enrol.add_argument("--force", action="store_true", help="replace FILE if it exists")


def run(args: argparse.Namespace) -> int:
    if args.action == "keygen":
        return _keygen(args)
    return _enrolment(args)


def _keygen(args: argparse.Namespace) -> int:
    path = Path(args.output).expanduser()
    check_not_beside_database(path, resolve_db_path(None))
    if path.exists():
        raise TrustError(f"{path} already exists; a key file is never replaced: choose another")
    passphrase = read_passphrase("Passphrase for the new key: ", confirm=True)
    key = generate_key(args.name, path, passphrase)
    print(f"Made the signing key of {key.holder}: key id {key.key_id}.")
    print(f"  private key: {path} (owner-only; keep it secret and never on a patient's computer)")
    print(f"  public key:  {public_path(path)} (goes into your patients' enrolment files)")
    return 0


def _enrolment(args: argparse.Namespace) -> int:
    key = load_private_key(Path(args.key).expanduser(), read_passphrase("Key passphrase: "))
    now = datetime.now(UTC).replace(microsecond=0)
    until = now + timedelta(days=365 * args.years)
    previous = load_enrolment(Path(args.after)) if args.after else None
    clinic = args.clinic or (previous.clinic if previous else None)
    patient = args.patient or (previous.patient if previous else None)
    if not clinic or not patient:
        raise TrustError("give --clinic NAME and --patient PSEUDONYM (or --after FILE)")
    try:
        check_pseudonym(patient)
    except ValueError as error:
        raise TrustError(str(error)) from None
    keys: dict[str, PinnedKey] = {k.key_id: k for k in (previous.keys if previous else ())}
    for pub_file in [*args.pub, None]:
        public = key.public if pub_file is None else load_public_key(Path(pub_file))
        if public.key_id not in keys:
            keys[public.key_id] = PinnedKey(
                **public.model_dump(), valid_from=now - timedelta(minutes=5), valid_until=until
            )
    revoked = list(previous.revoked if previous else ())
    for kid in args.revoke:
        if keys.pop(kid, None) is None and all(r.key_id != kid for r in revoked):
            raise TrustError(f"--revoke {kid}: no key with that id is in the enrolment")
        if kid == key.key_id:
            raise TrustError("you cannot revoke the key you sign with; sign with another key")
        revoked.append(RevokedKey(key_id=kid, revoked_at=now, reason="revoked by the clinic"))
    enrolment = Enrolment(
        clinic=clinic,
        patient=patient,
        serial=(previous.serial + 1) if previous else 1,
        issued_at=now,
        keys=tuple(keys.values()),
        revoked=tuple(revoked),
    )
    signed = sign_enrolment(enrolment, key, at=now)
    output = Path(args.output).expanduser()
    write_new_file(output, dump_enrolment(signed), overwrite=bool(args.force))
    print(
        f"Wrote enrolment {signed.serial} of {patient} with {clinic} to {output}, signed by "
        f"{key.holder} (key {key.key_id}); pinned keys: {', '.join(signed.key_ids)}."
    )
    print(f"The patient runs: tens-control enrol {output.name}")
    return 0
