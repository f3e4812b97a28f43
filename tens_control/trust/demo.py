"""A throwaway clinic for demos, benchmarks and tests: a clinician key that lives in memory
only, an enrolment pinned with it, and prescriptions signed by it. Never for real patients:
a real clinic's keys come from ``tens-control clinician keygen`` and stay on the clinic's
computers (docs/prescription.md, section 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tens_control.prescription import Prescription, dump_prescription, sign_prescription
from tens_control.store.store import Store
from tens_control.trust.enrolment import Enrolment, PinnedKey, dump_enrolment, sign_enrolment
from tens_control.trust.keys import ClinicianKey

DEMO_CLINIC = "Example pain clinic"
VALID_FROM = datetime(2025, 1, 1, tzinfo=UTC)
SIGNED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def clinician(holder: str = "Dr A. Example") -> ClinicianKey:
    """A fresh key pair, in memory only."""
    return ClinicianKey(holder=holder, private=Ed25519PrivateKey.generate())


def demo_enrolment(patient: str, *keys: ClinicianKey, serial: int = 1) -> Enrolment:
    """An enrolment of ``patient`` with ``keys``, signed by the first."""
    issued = VALID_FROM + timedelta(days=1)
    unsigned = Enrolment(
        clinic=DEMO_CLINIC,
        patient=patient,
        serial=serial,
        issued_at=issued,
        keys=tuple(PinnedKey(**k.public.model_dump(), valid_from=VALID_FROM) for k in keys),
    )
    return sign_enrolment(unsigned, keys[0], at=issued)


def pin(store: Store, enrolment: Enrolment, patient: str | None = None) -> None:
    """Pin ``enrolment`` as ``tens-control enrol`` does (without its succession checks)."""
    store.save_enrolment(
        dump_enrolment(enrolment),
        clinic=enrolment.clinic,
        clinic_patient=enrolment.patient,
        serial=enrolment.serial,
        patient=patient,
    )


def enrol_and_prescribe(
    store: Store,
    rx: Prescription,
    patient: str | None = None,
    key: ClinicianKey | None = None,
    *,
    at: datetime = SIGNED_AT,
) -> ClinicianKey:
    """Enrol ``patient`` (default: the store's default patient, created if new) with a demo
    clinic and store ``rx`` signed by its key; returns the key."""
    who = store.ensure_patient(patient).pseudonym
    key = key or clinician()
    pin(store, demo_enrolment(who, key), who)
    signed = sign_prescription(rx, key, who, at=at)
    store.save_prescription(
        dump_prescription(signed), author=rx.written_by, reason=rx.reason, patient=who
    )
    return key
