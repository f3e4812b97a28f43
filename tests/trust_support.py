"""Helpers for tests that need a clinic: in-memory clinician keys, a signed enrolment pinned in
a store, signed prescriptions and overrides (the commands' own tests use real key files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tens_control.prescription import Prescription, sign_prescription
from tens_control.trust.demo import clinician, enrol_and_prescribe, pin
from tens_control.trust.enrolment import Enrolment, PinnedKey, sign_enrolment
from tens_control.trust.keys import ClinicianKey

__all__ = ["clinician", "enrol_and_prescribe", "enrolment", "pin", "pinned", "signed"]

CLINIC = "Example pain clinic"
KEY_FROM = datetime(2025, 1, 1, tzinfo=UTC)
SIGNED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


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


def signed(
    rx: Prescription, key: ClinicianKey, patient: str, at: datetime = SIGNED_AT
) -> Prescription:
    return sign_prescription(rx, key, patient, at=at)
