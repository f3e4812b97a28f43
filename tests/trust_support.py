"""Helpers for tests that need a clinic: in-memory clinician keys, a signed enrolment pinned in
a store, signed prescriptions and overrides (the commands' own tests use real key files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tens_control.prescription import Prescription, dump_prescription, sign_prescription
from tens_control.store import Store
from tens_control.trust.enrolment import Enrolment, PinnedKey, dump_enrolment, sign_enrolment
from tens_control.trust.keys import ClinicianKey

CLINIC = "Example pain clinic"
KEY_FROM = datetime(2025, 1, 1, tzinfo=UTC)
SIGNED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def clinician(holder: str = "Dr A. Example") -> ClinicianKey:
    """A fresh key pair, in memory only."""
    return ClinicianKey(holder=holder, private=Ed25519PrivateKey.generate())


def pinned(key: ClinicianKey, *, until: datetime | None = None) -> PinnedKey:
    return PinnedKey(**key.public.model_dump(), valid_from=KEY_FROM, valid_until=until)


def enrolment(
    patient: str,
    *keys: ClinicianKey,
    serial: int = 1,
    signer: ClinicianKey | None = None,
    issued_at: datetime = KEY_FROM + timedelta(days=1),
    **changes: object,
) -> Enrolment:
    """A signed enrolment of ``patient`` with ``keys`` (signed by ``signer``, default the first
    key; ``signer`` may be a key outside the enrolment, for tests of forged files)."""
    data: dict[str, object] = {
        "clinic": CLINIC,
        "patient": patient,
        "serial": serial,
        "issued_at": issued_at,
        "keys": tuple(pinned(k) for k in keys),
    }
    data.update(changes)
    unsigned = Enrolment.model_validate(data)
    by = signer or keys[0]
    if unsigned.key(by.key_id) is not None:
        return sign_enrolment(unsigned, by, at=issued_at)
    sig = by.sign("tens-control enrolment", unsigned.content(), patient=patient, at=issued_at)
    return unsigned.model_copy(update={"signature": sig})


def pin(store: Store, found: Enrolment, patient: str | None = None) -> None:
    """Pin ``found`` in ``store`` as ``tens-control enrol`` does (without its checks)."""
    store.save_enrolment(
        dump_enrolment(found),
        clinic=found.clinic,
        clinic_patient=found.patient,
        serial=found.serial,
        patient=patient,
    )


def signed(
    rx: Prescription, key: ClinicianKey, patient: str, at: datetime = SIGNED_AT
) -> Prescription:
    return sign_prescription(rx, key, patient, at=at)


def enrol_and_prescribe(
    store: Store, rx: Prescription, patient: str | None = None, key: ClinicianKey | None = None
) -> ClinicianKey:
    """Enrol ``patient`` (default: the store's default patient) with a new clinic key and store
    ``rx`` signed by it; returns the key."""
    who = store.ensure_patient(patient).pseudonym
    key = key or clinician()
    pin(store, enrolment(who, key), who)
    store.save_prescription(
        dump_prescription(signed(rx, key, who)), author=rx.written_by, reason="test", patient=who
    )
    return key
