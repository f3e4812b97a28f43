"""Clinician keys and signatures (DESIGN.md §12): Ed25519 with ``cryptography``.

A clinician's **private key file** (``tens-control clinician keygen``) is a small TOML file,
owner-only (mode 0600), holding the key holder's name, the key id and the 32-byte private key
encrypted with ChaCha20-Poly1305 under a key derived from the passphrase with scrypt
(N = 2^15, r = 8, p = 1; a random salt and nonce each). The passphrase is never stored.
The **public key file** next to it (``<file>.pub``) is what the clinic puts in a patient's
enrolment. Neither is ever written into a patient database: only public keys travel, inside the
enrolment.

A **key id** is the first 16 hex digits of SHA-256 over the raw 32-byte public key.

A :class:`Signature` covers the canonical bytes of what is signed (see :func:`signed_bytes`):
a purpose string (what kind of document), the document's content as canonical JSON, the
signer's key id and name, the patient's pseudonym and the signing time. Changing any of them,
or any byte of the content, makes the signature fail.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import os
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from drivers.tsp.codec import cap_message
from tens_control import toml_out
from tens_control.errors import TensControlError
from tens_control.store.canonical import canonical_json, iso_utc

ENV_PASSPHRASE = "TENS_CONTROL_KEY_PASSPHRASE"
"""Environment variable holding the key passphrase, for scripts (else it is asked for)."""
MIN_PASSPHRASE = 10
"""The shortest passphrase ``keygen`` accepts."""
KEY_FORMAT = 1

_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Holder = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_ONE_LINE)
]
Pseudonym = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
PublicKeyText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
SignatureText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class TrustError(TensControlError):
    """A key, signature or enrolment is missing, wrong or not trusted; the message says which
    and what to do."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- public keys


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey | bytes | str) -> str:
    """The key id: first 16 hex digits of SHA-256 over the raw public key."""
    if isinstance(public, str):
        raw = base64.b64decode(public)
    elif isinstance(public, bytes):
        raw = public
    else:
        raw = public_bytes(public)
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_public(key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_bytes(key)).decode("ascii")


def decode_public(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise TrustError(
            f"{text[:12]!r}... is not an Ed25519 public key (44 characters of base64)"
        ) from None


class PublicKey(_Frozen):
    """A clinician's public key as it travels (the ``.pub`` file, an enrolment entry)."""

    holder: Holder
    key_id: KeyId
    public_key: PublicKeyText

    def key(self) -> Ed25519PublicKey:
        return decode_public(self.public_key)

    def check(self, source: str) -> None:
        """Raise :class:`TrustError` if ``key_id`` is not the id of ``public_key``."""
        if key_id_of(self.public_key) != self.key_id:
            raise TrustError(
                f"{source}: key id {self.key_id} does not belong to its public key (the file "
                "was changed); ask for the public key file again"
            )


# --------------------------------------------------------------------------- signatures


class Signature(_Frozen):
    """An Ed25519 signature and what it binds besides the content (see :func:`signed_bytes`)."""

    algorithm: Literal["ed25519"] = "ed25519"
    key_id: KeyId
    signed_by: Holder
    """The key holder's name, as in their key file (also covered by the signature)."""
    patient: Pseudonym
    """The pseudonym of the patient this is for (covered by the signature)."""
    signed_at: AwareDatetime
    value: SignatureText
    """The 64-byte signature, base64."""

    @property
    def when(self) -> str:
        return self.signed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def signed_bytes(
    purpose: str,
    content: Mapping[str, Any],
    *,
    key_id: str,
    signed_by: str,
    patient: str,
    signed_at: datetime,
) -> bytes:
    """The exact bytes a signature is made over: the canonical JSON (sorted keys, no
    whitespace, UTF-8; ``store.canonical.canonical_json``) of
    ``{"purpose", "content", "algorithm", "key_id", "signed_by", "patient", "signed_at"}``,
    with ``signed_at`` as fixed-width UTC (``2026-03-01T09:30:00.000000Z``)."""
    return canonical_json(
        {
            "purpose": purpose,
            "content": dict(content),
            "algorithm": "ed25519",
            "key_id": key_id,
            "signed_by": signed_by,
            "patient": patient,
            "signed_at": iso_utc(signed_at),
        }
    ).encode("utf-8")


def verify_signature(
    signature: Signature, purpose: str, content: Mapping[str, Any], key: Ed25519PublicKey
) -> bool:
    """True if ``signature`` is ``key``'s signature over this content, patient and time."""
    if key_id_of(key) != signature.key_id:
        return False
    message = signed_bytes(
        purpose,
        content,
        key_id=signature.key_id,
        signed_by=signature.signed_by,
        patient=signature.patient,
        signed_at=signature.signed_at,
    )
    try:
        key.verify(base64.b64decode(signature.value), message)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- private keys


@dataclass(frozen=True)
class ClinicianKey:
    """A loaded (decrypted) private key with its holder's name. Lives in memory only."""

    holder: str
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.private.public_key())

    @property
    def public(self) -> PublicKey:
        return PublicKey(
            holder=self.holder,
            key_id=self.key_id,
            public_key=encode_public(self.private.public_key()),
        )

    def sign_device_cap(self, serial: str, max_ma: float, issued: int) -> str:
        """The signature a device holding this key checks before it enforces ``max_ma``
        (TSP/2 §16), as 128 hex digits."""
        return self.private.sign(cap_message(serial, max_ma, issued)).hex()

    def sign(
        self,
        purpose: str,
        content: Mapping[str, Any],
        *,
        patient: str,
        at: datetime | None = None,
    ) -> Signature:
        when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        message = signed_bytes(
            purpose,
            content,
            key_id=self.key_id,
            signed_by=self.holder,
            patient=patient,
            signed_at=when,
        )
        value = base64.b64encode(self.private.sign(message)).decode("ascii")
        return Signature(
            key_id=self.key_id, signed_by=self.holder, patient=patient, signed_at=when, value=value
        )


SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class _KeyFile(_Frozen):
    format: Literal[1] = 1
    holder: Holder
    key_id: KeyId
    created_at: AwareDatetime
    kdf: Literal["scrypt"] = "scrypt"
    kdf_n: Annotated[int, Field(ge=2**14, le=2**20)] = SCRYPT_N
    kdf_r: Annotated[int, Field(ge=1, le=32)] = SCRYPT_R
    kdf_p: Annotated[int, Field(ge=1, le=16)] = SCRYPT_P
    salt: Annotated[str, Field(min_length=1, max_length=100)]
    cipher: Literal["chacha20-poly1305"] = "chacha20-poly1305"
    nonce: Annotated[str, Field(min_length=1, max_length=100)]
    private_key: Annotated[str, Field(min_length=1, max_length=200)]
    """The encrypted raw private key (and its tag), base64."""

    def _cipher(self, passphrase: str) -> ChaCha20Poly1305:
        kdf = Scrypt(
            salt=base64.b64decode(self.salt), length=32, n=self.kdf_n, r=self.kdf_r, p=self.kdf_p
        )
        return ChaCha20Poly1305(kdf.derive(passphrase.encode("utf-8")))

    def _aad(self) -> bytes:
        return f"tens-control key {self.key_id} {self.holder}".encode()

    @classmethod
    def seal(cls, key: ClinicianKey, passphrase: str, created: datetime) -> _KeyFile:
        blank = cls(
            holder=key.holder,
            key_id=key.key_id,
            created_at=created,
            salt=base64.b64encode(os.urandom(16)).decode("ascii"),
            nonce=base64.b64encode(os.urandom(12)).decode("ascii"),
            private_key="-",
        )
        raw = key.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        sealed = blank._cipher(passphrase).encrypt(base64.b64decode(blank.nonce), raw, blank._aad())
        return blank.model_copy(update={"private_key": base64.b64encode(sealed).decode("ascii")})

    def open(self, passphrase: str) -> Ed25519PrivateKey:
        """The private key; ValueError for a wrong passphrase or a changed file."""
        try:
            raw = self._cipher(passphrase).decrypt(
                base64.b64decode(self.nonce), base64.b64decode(self.private_key), self._aad()
            )
        except (InvalidTag, binascii.Error) as error:
            raise ValueError("wrong passphrase") from error
        return Ed25519PrivateKey.from_private_bytes(raw)


class _PublicFile(PublicKey):
    format: Literal[1] = 1
    created_at: AwareDatetime


def public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def _write_exclusive(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise TrustError(
            f"{path} already exists; a key file is never replaced: choose another file name"
        ) from None
    except OSError as error:
        raise TrustError(f"cannot write {path} ({error.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fp:
        fp.write(text)
    os.chmod(path, mode)


def generate_key(
    holder: str, path: Path, passphrase: str, *, now: datetime | None = None
) -> ClinicianKey:
    """Make a new key pair: ``path`` (private, 0600, encrypted with ``passphrase``) and
    ``path.pub`` (public). Neither file may exist yet."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise TrustError(f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters")
    private = Ed25519PrivateKey.generate()
    key = ClinicianKey(holder=holder, private=private)
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    secret = _KeyFile.seal(key, passphrase, created)
    pub = _PublicFile(created_at=created, **key.public.model_dump())
    pub_path = public_path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if pub_path.exists():
        raise TrustError(f"{pub_path} already exists; choose another file name")
    _write_exclusive(
        path,
        toml_out.dumps(
            secret.model_dump(),
            (
                "tens-control clinician PRIVATE key. Keep it secret: never send it, never copy",
                "it to a patient's computer. It is encrypted with your passphrase.",
            ),
        ),
        0o600,
    )
    _write_exclusive(
        pub_path,
        toml_out.dumps(
            pub.model_dump(),
            ("tens-control clinician public key: put it in your patients' enrolment files",),
        ),
        0o644,
    )
    return key


def read_text(path: Path, what: str) -> str:
    """A UTF-8 file's text, or one :class:`TrustError` naming ``what`` and the problem."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TrustError(f"{what} {path}: file not found") from None
    except UnicodeDecodeError:
        raise TrustError(f"{what} {path}: not a text file") from None
    except OSError as error:
        raise TrustError(f"{what} {path}: cannot read it ({error.strerror})") from None


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path, what))
    except tomllib.TOMLDecodeError as error:
        raise TrustError(f"{what} {path}: not a valid key file ({error})") from None


def load_public_key(path: Path) -> PublicKey:
    """A public key file (``.pub``), checked (its key id matches its key)."""
    data = _read_toml(path, "public key")
    try:
        found = _PublicFile.model_validate(data)
    except ValueError as error:
        raise TrustError(f"public key {path}: not a tens-control public key ({error})") from None
    found.check(f"public key {path}")
    return PublicKey(holder=found.holder, key_id=found.key_id, public_key=found.public_key)


def load_private_key(path: Path, passphrase: str) -> ClinicianKey:
    """Decrypt a private key file. Refused if other users can read it (like ssh does)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise TrustError(f"private key {path}: file not found") from None
    if mode & 0o077 and os.name == "posix":
        raise TrustError(
            f"private key {path} can be read by other users (mode {mode:o}); make it "
            f"owner-only with `chmod 600 {path}` and try again"
        )
    data = _read_toml(path, "private key")
    try:
        found = _KeyFile.model_validate(data)
    except ValueError:
        raise TrustError(f"{path} is not a tens-control private key file") from None
    try:
        private = found.open(passphrase)
    except ValueError:
        raise TrustError(
            f"private key {path}: wrong passphrase (or the file was changed); try again"
        ) from None
    key = ClinicianKey(holder=found.holder, private=private)
    if key.key_id != found.key_id:
        raise TrustError(f"private key {path}: its key id does not match its key (file changed)")
    return key


def read_passphrase(prompt: str, *, confirm: bool = False) -> str:
    """``$TENS_CONTROL_KEY_PASSPHRASE`` if set, else asked on the terminal (twice with
    ``confirm``). Never echoed, never stored."""
    from_env = os.environ.get(ENV_PASSPHRASE)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise TrustError(
            f"a passphrase is needed and there is no terminal to ask for it; set {ENV_PASSPHRASE}"
        )
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Type it again: ") != first:
        raise TrustError("the two passphrases differ; nothing was written, try again")
    return first


def check_not_beside_database(path: Path, database: Path) -> None:
    """Refuse a key file inside the folder of a patient database (keys never live there)."""
    if path.resolve().parent == database.resolve().parent:
        raise TrustError(
            f"{path} is in the folder of the patient database {database}; keep clinician keys "
            "elsewhere (for example in your home folder) and try again"
        )


__all__ = [
    "ENV_PASSPHRASE",
    "ClinicianKey",
    "PublicKey",
    "Signature",
    "TrustError",
    "check_not_beside_database",
    "decode_public",
    "encode_public",
    "generate_key",
    "key_id_of",
    "load_private_key",
    "load_public_key",
    "public_path",
    "read_passphrase",
    "signed_bytes",
    "verify_signature",
]
