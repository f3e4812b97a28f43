"""Enrolment: the clinic's public keys, pinned on the patient's computer (DESIGN.md §12).

The clinic writes an **enrolment file** (``tens-control clinician enrolment``): the clinic's name,
the patient's pseudonym, a serial number, the public keys of the clinicians who may sign for
this patient (each with its validity period), the keys it revokes, and a signature by one of its
own keys. ``tens-control enrol FILE`` pins it in the patient database. From then on a
prescription or a screening override counts only if a pinned key signed it for this patient.

A **newer enrolment** (a higher serial, signed by a key the current one pins) replaces the
pinned keys: that is how a clinic adds a clinician, rotates a key or revokes one. An enrolment
signed by a key that is not pinned is refused, unless the patient explicitly replaces the
enrolment (``enrol --replace``, e.g. on moving to another clinic): that is recorded in the log,
and every later session names the keys in force, so the clinic sees it.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from tens_control import toml_out
from tens_control.trust.keys import (
    ClinicianKey,
    Holder,
    KeyId,
    Pseudonym,
    PublicKey,
    Signature,
    TrustError,
    _Frozen,
    read_text,
    verify_signature,
)

ENROLMENT_FORMAT = 1
PURPOSE = "tens-control enrolment"
CLOCK_SKEW = timedelta(minutes=10)
"""How far in the future a signature's time may be (the two computers' clocks differ)."""


class PinnedKey(PublicKey):
    """A clinician key the clinic trusts for this patient, and when."""

    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None
    """After this moment the key signs nothing new (None: until revoked)."""


class RevokedKey(_Frozen):
    key_id: KeyId
    revoked_at: AwareDatetime
    reason: Annotated[str, Field(max_length=2000)] = ""


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class Enrolment(_Frozen):
    """One version of a patient's enrolment with a clinic."""

    format: Literal[1] = 1
    clinic: Holder
    patient: Pseudonym
    """The patient's pseudonym at the clinic (every signature names it)."""
    serial: Annotated[int, Field(ge=1)]
    """1 for the first enrolment; each newer one has a higher number."""
    issued_at: AwareDatetime
    keys: Annotated[tuple[PinnedKey, ...], Field(min_length=1)]
    revoked: tuple[RevokedKey, ...] = ()
    signature: Signature | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Enrolment:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("keys: a key is listed twice")
        for k in self.keys:
            k.check(f"keys ({k.holder})")
            if k.valid_until is not None and k.valid_until <= k.valid_from:
                raise ValueError(f"keys ({k.holder}): valid_until is not after valid_from")
        gone = {r.key_id for r in self.revoked}
        both = gone & set(ids)
        if both:
            raise ValueError(f"key {sorted(both)[0]} is both pinned and revoked")
        return self

    # ---- content and lookup
    def content(self) -> dict[str, Any]:
        """What the enrolment's signature covers: everything but the signature."""
        return self.model_dump(mode="json", exclude={"signature"})

    def key(self, key_id: str) -> PinnedKey | None:
        for k in self.keys:
            if k.key_id == key_id:
                return k
        return None

    def revocation(self, key_id: str) -> RevokedKey | None:
        for r in self.revoked:
            if r.key_id == key_id:
                return r
        return None

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.keys)

    def describe(self) -> str:
        who = ", ".join(f"{k.holder} ({k.key_id})" for k in self.keys)
        return f"{self.clinic}, enrolment {self.serial} for {self.patient}: keys {who}"

    # ---- signatures
    def signature_problem(
        self,
        signature: Signature | None,
        purpose: str,
        content: dict[str, Any],
        *,
        patient: str | None = None,
        now: datetime | None = None,
    ) -> str | None:
        """Why this enrolment does not accept ``signature`` over ``content``, or None if it
        does: the key must be pinned and not revoked, valid at the signing time, the signature
        for this enrolment's patient, not dated in the future, and correct over the content."""
        if signature is None:
            return "it is not signed"
        kid = signature.key_id
        revoked = self.revocation(kid)
        if revoked is not None:
            return (
                f"it is signed by key {kid} ({signature.signed_by}), which {self.clinic} revoked "
                f"on {_when(revoked.revoked_at)}"
            )
        pinned = self.key(kid)
        if pinned is None:
            return (
                f"it is signed by key {kid} ({signature.signed_by}), which is not one of the "
                f"keys of {self.clinic} pinned at enrolment"
            )
        at = signature.signed_at
        if at < pinned.valid_from:
            return f"key {kid} was not yet valid when it signed ({signature.when})"
        if pinned.valid_until is not None and at > pinned.valid_until:
            return (
                f"key {kid} ({pinned.holder}) had expired on {_when(pinned.valid_until)} when it "
                f"signed ({signature.when})"
            )
        if now is not None and at > now + CLOCK_SKEW:
            return f"its signing time ({signature.when}) is in the future"
        expected = self.patient if patient is None else patient
        if signature.patient != expected:
            return f"it is signed for patient {signature.patient}, not {expected}"
        if not verify_signature(signature, purpose, content, pinned.key()):
            return "its signature does not match its content (it was changed after signing)"
        return None

    def self_signature_problem(self, now: datetime | None = None) -> str | None:
        """Why this enrolment's own signature (by one of its keys) does not hold, or None."""
        return self.signature_problem(self.signature, PURPOSE, self.content(), now=now)

    def successor_problem(self, new: Enrolment, now: datetime | None = None) -> str | None:
        """Why ``new`` may not replace this enrolment without ``--replace``, or None."""
        if new.patient != self.patient:
            return (
                f"it is for patient {new.patient}, but this computer is enrolled as {self.patient}"
            )
        if new.serial <= self.serial:
            return (
                f"it is enrolment {new.serial}, not newer than the pinned enrolment "
                f"{self.serial} of {self.clinic} (an old file sent again?)"
            )
        problem = self.signature_problem(new.signature, PURPOSE, new.content(), now=now)
        if problem is not None:
            return f"{problem}; a newer enrolment must be signed by a key already pinned"
        return None


# --------------------------------------------------------------------------- files


def sign_enrolment(
    enrolment: Enrolment, key: ClinicianKey, at: datetime | None = None
) -> Enrolment:
    if enrolment.key(key.key_id) is None:
        raise TrustError(
            f"key {key.key_id} ({key.holder}) is not one of the enrolment's keys; add its public "
            "key with --pub, or sign with one of them"
        )
    signature = key.sign(PURPOSE, enrolment.content(), patient=enrolment.patient, at=at)
    return enrolment.model_copy(update={"signature": signature})


def dump_enrolment(enrolment: Enrolment) -> str:
    return toml_out.dumps(
        enrolment.model_dump(exclude_none=True),
        (
            f"tens-control enrolment, format {ENROLMENT_FORMAT}: {enrolment.clinic} for patient "
            f"{enrolment.patient}",
            "Give it to the patient; they run `tens-control enrol FILE`. Editing it breaks its "
            "signature.",
        ),
    )


def parse_enrolment(text: str, source: str) -> Enrolment:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TrustError(
            f"{source}: not valid TOML ({error}); ask the clinic for the file again"
        ) from None
    try:
        return Enrolment.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise TrustError(
            f"{source}: not a valid enrolment file (field {where}: {msg}); ask the clinic for "
            "the file again"
        ) from None


def load_enrolment(path: Path) -> Enrolment:
    return parse_enrolment(read_text(path, "enrolment"), f"enrolment {path}")


__all__ = [
    "PURPOSE",
    "Enrolment",
    "PinnedKey",
    "RevokedKey",
    "dump_enrolment",
    "load_enrolment",
    "parse_enrolment",
    "sign_enrolment",
]
