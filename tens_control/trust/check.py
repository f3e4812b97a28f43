"""Which prescription is in force, and may it be trusted? (DESIGN.md §12, docs/prescription.md)

Checked before every session (the session controller calls :func:`check_before_session` among
its preconditions), at ``prescription import`` (:func:`check_import`) and by ``prescription show
--current``:

- **Enrolled** (a clinic enrolment is pinned, ``tens-control enrol``): a signed prescription
  counts if a pinned, unrevoked key signed it for this patient while valid, and it is not older
  than another valid signed prescription on record (a replayed older one). An unsigned
  prescription may only narrow the last valid signed one (or, before any, the over-the-counter
  defaults).
- **Self-managed** (not enrolled: someone using an over-the-counter unit on their own): the
  manufacturer's limits and the over-the-counter defaults apply, and an unsigned prescription
  (the patient's own comfort limits) may only narrow them. A signed prescription cannot be
  checked without an enrolment, so it is refused.
- The stored record of the prescription in force, and of the enrolment, must be as the hash
  chain logged them (``Store.record_problem``).

Anything that fails is a :class:`~tens_control.trust.keys.TrustError` whose one line says what
failed and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from drivers.limits import DeviceProfile
from tens_control.prescription import (
    SIGNATURE_PURPOSE,
    Prescription,
    PrescriptionError,
    over_the_counter,
    parse_prescription,
    widening,
)
from tens_control.screening import OVERRIDE_PURPOSE, Screening, ScreeningOverride
from tens_control.store.records import Enrolment as EnrolmentRecord
from tens_control.store.records import Prescription as PrescriptionRecord
from tens_control.store.store import Store
from tens_control.trust.enrolment import Enrolment, parse_enrolment
from tens_control.trust.keys import TrustError

ASK_CLINIC = "ask your clinic for a new signed prescription"
ASK_ENROLMENT = "ask your clinic for a new enrolment file"

Mode = Literal["enrolled", "self-managed"]


@dataclass(frozen=True)
class InForce:
    """The prescription in force and why it may be trusted."""

    prescription: Prescription
    mode: Mode
    enrolment: Enrolment | None = None
    baseline: str = ""
    """For an unsigned prescription: what it narrows."""
    notes: tuple[str, ...] = field(default=())

    @property
    def signed_by(self) -> str | None:
        sig = self.prescription.signature
        return None if sig is None else f"{sig.signed_by} (key {sig.key_id})"

    def describe(self) -> str:
        """One line for the patient and the log."""
        rx = self.prescription
        if self.mode == "self-managed":
            head = (
                "Self-managed (not enrolled with a clinic): the manufacturer's limits and the "
                "over-the-counter defaults apply"
            )
            if not rx.is_over_the_counter:
                head += f", narrowed by your own prescription version {rx.version}"
            return head
        assert self.enrolment is not None
        clinic = f"Enrolled with {self.enrolment.clinic} as {self.enrolment.patient}"
        if rx.is_over_the_counter:
            return f"{clinic}: no prescription yet, the over-the-counter defaults apply"
        if self.signed_by is not None:
            return f"{clinic}: prescription version {rx.version} signed by {self.signed_by}"
        return f"{clinic}: unsigned prescription version {rx.version}, narrowing {self.baseline}"

    def log_data(self) -> dict[str, Any]:
        """What a session logs about it (the key ids make a replaced enrolment visible)."""
        sig = self.prescription.signature
        data: dict[str, Any] = {
            "mode": self.mode,
            "prescription_version": None
            if self.prescription.is_over_the_counter
            else self.prescription.version,
            "signed_by_key": None if sig is None else sig.key_id,
            "signed_at": None if sig is None else sig.signed_at.astimezone(UTC).isoformat(),
        }
        if self.enrolment is not None:
            data |= {
                "clinic": self.enrolment.clinic,
                "clinic_patient": self.enrolment.patient,
                "enrolment_serial": self.enrolment.serial,
                "pinned_keys": list(self.enrolment.key_ids),
            }
        return data


# --------------------------------------------------------------------------- enrolment


def pinned_enrolment(store: Store, patient: str) -> Enrolment | None:
    """The enrolment in force for ``patient`` (the latest pinned), checked against the log;
    None when not enrolled."""
    record = store.latest_enrolment(patient)
    if record is None:
        return None
    return _checked_enrolment(store, record)


def _checked_enrolment(store: Store, record: EnrolmentRecord) -> Enrolment:
    problem = store.record_problem(record)
    if problem is not None:
        raise TrustError(
            f"the clinic enrolment on record (enrolment {record.serial} of {record.clinic}) "
            f"{problem}; no session can start until it is pinned again: {ASK_ENROLMENT}"
        )
    enrolment = parse_enrolment(record.text, f"the pinned enrolment {record.serial}")
    why = enrolment.self_signature_problem()
    if why is not None:
        raise TrustError(
            f"the pinned enrolment of {enrolment.clinic} does not hold: {why}; {ASK_ENROLMENT}"
        )
    return enrolment


# --------------------------------------------------------------------------- prescriptions


def _parse(record: PrescriptionRecord) -> Prescription:
    rx = parse_prescription(record.toml, f"stored prescription version {record.version}")
    return rx if rx.version == record.version else rx.revised(version=record.version)


def signature_problem(
    rx: Prescription, enrolment: Enrolment | None, now: datetime | None
) -> str | None:
    """Why ``rx``'s signature is not accepted here, or None (signed and accepted)."""
    if rx.signature is None:
        return "it is not signed"
    if enrolment is None:
        return (
            f"it is signed by {rx.signature.signed_by} (key {rx.signature.key_id}), but this "
            "computer is not enrolled with a clinic, so no signature can be checked: run "
            "`tens-control enrol FILE` with the enrolment file from your clinic"
        )
    return enrolment.signature_problem(
        rx.signature, SIGNATURE_PURPOSE, rx.signed_content(), now=now
    )


def _newest_signed(
    rxs: list[Prescription], enrolment: Enrolment | None, now: datetime | None
) -> Prescription | None:
    valid = [
        (rx.signature.signed_at, rx.version, rx)
        for rx in rxs
        if rx.signature is not None and signature_problem(rx, enrolment, now) is None
    ]
    return max(valid, key=lambda item: (item[0], item[1]))[2] if valid else None


def _label(rx: Prescription) -> str:
    if rx.is_over_the_counter:
        return "the over-the-counter defaults"
    assert rx.signature is not None
    return f"the signed prescription version {rx.version}"


def _judge(
    rx: Prescription,
    earlier: list[Prescription],
    enrolment: Enrolment | None,
    profile: DeviceProfile | None,
    now: datetime | None,
) -> InForce:
    """Whether ``rx`` may be in force, given the prescriptions stored before it."""
    mode: Mode = "self-managed" if enrolment is None else "enrolled"
    what = "the prescription" if rx.version == 0 else f"prescription version {rx.version}"
    if rx.signature is not None:
        why = signature_problem(rx, enrolment, now)
        if why is not None:
            raise TrustError(f"{what} cannot be used: {why}; {ASK_CLINIC}")
        newer = _newest_signed(earlier, enrolment, now)
        if (
            newer is not None
            and newer.signature
            and newer.signature.signed_at > rx.signature.signed_at
        ):
            raise TrustError(
                f"{what} cannot be used: it was signed on {rx.signature.when}, before "
                f"prescription version {newer.version} (signed on {newer.signature.when}); an "
                f"older prescription may not replace a newer one; {ASK_CLINIC}"
            )
        return InForce(rx, mode, enrolment)
    base = _newest_signed(earlier, enrolment, now) or over_the_counter(profile)
    problems = widening(rx, base, _label(base))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TrustError(
            f"{what} is not signed and widens a limit: {problems[0]}{more}; an unsigned "
            f"prescription may only narrow the limits; {ASK_CLINIC}"
        )
    return InForce(rx, mode, enrolment, baseline=_label(base))


def prescription_in_force(
    store: Store,
    patient: str,
    profile: DeviceProfile | None = None,
    now: datetime | None = None,
) -> InForce:
    """The prescription in force for ``patient`` (the latest stored, or the over-the-counter
    defaults), checked; raises :class:`TrustError` naming what failed."""
    enrolment = pinned_enrolment(store, patient)
    records = store.prescriptions(patient)
    if not records:
        return InForce(
            over_the_counter(profile),
            "self-managed" if enrolment is None else "enrolled",
            enrolment,
        )
    latest = records[-1]
    problem = store.record_problem(latest)
    if problem is not None:
        raise TrustError(
            f"the stored prescription version {latest.version} {problem}; no session can start "
            f"with it: {ASK_CLINIC}"
        )
    try:
        parsed = [_parse(r) for r in records]
    except PrescriptionError as error:
        raise TrustError(f"{error}; {ASK_CLINIC}") from None
    return _judge(parsed[-1], parsed[:-1], enrolment, profile, now)


def check_before_session(
    store: Store,
    patient: str,
    loaded: Prescription,
    profile: DeviceProfile,
    now: datetime,
) -> InForce:
    """The check the session controller runs before every session: the prescription in force
    is trusted (see the module docstring), and it is the one the controller loaded."""
    found = prescription_in_force(store, patient, profile, now)
    if found.prescription != loaded and not (
        found.prescription.is_over_the_counter and loaded.is_over_the_counter
    ):
        raise TrustError(
            "the prescription changed since the session was prepared; choose the program again"
        )
    return found


def check_import(
    store: Store, patient: str, rx: Prescription, profile: DeviceProfile | None, now: datetime
) -> InForce:
    """Whether ``rx`` may become ``patient``'s next prescription version (before it is
    stored); raises :class:`TrustError` naming what failed."""
    enrolment = pinned_enrolment(store, patient)
    try:
        earlier = [_parse(r) for r in store.prescriptions(patient)]
    except PrescriptionError:
        earlier = []
    return _judge(rx, earlier, enrolment, profile, now)


# --------------------------------------------------------------------------- screening


def override_problem(
    override: ScreeningOverride, enrolment: Enrolment | None, now: datetime | None = None
) -> str | None:
    """Why an override does not unblock stimulation here, or None when it does: only an
    override a pinned key signed for this patient counts."""
    who = f"the override by {override.who}"
    if enrolment is None:
        return (
            f"{who} cannot be checked: this computer is not enrolled with a clinic (only an "
            "enrolled clinic's signed override can unblock stimulation)"
        )
    why = enrolment.signature_problem(
        override.signature, OVERRIDE_PURPOSE, override.signed_content(), now=now
    )
    return None if why is None else f"{who} does not count: {why}"


def trusted_screening(
    screening: Screening, enrolment: Enrolment | None, now: datetime | None = None
) -> tuple[Screening, tuple[str, ...]]:
    """``screening`` with only the overrides that count, and why each other one does not."""
    kept: list[ScreeningOverride] = []
    dropped: list[str] = []
    for override in screening.overrides:
        why = override_problem(override, enrolment, now)
        if why is None:
            kept.append(override)
        else:
            dropped.append(why)
    if not dropped:
        return screening, ()
    return screening.model_copy(update={"overrides": tuple(kept)}), tuple(dropped)


__all__ = [
    "InForce",
    "check_before_session",
    "check_import",
    "override_problem",
    "pinned_enrolment",
    "prescription_in_force",
    "signature_problem",
    "trusted_screening",
]
