"""Clinician keys, enrolment and signed prescriptions through the commands a clinic and a
patient use (issue 13): keygen, enrolment, sign, enrol, import; and every way a signature must
fail: wrong key, wrong patient, expired or revoked key, an edited byte, a replayed older
prescription."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tens_control.cli import main
from tens_control.prescription import dump_prescription, load_prescription
from tens_control.screening import Question
from tens_control.store import Store
from tens_control.trust.check import prescription_in_force
from tens_control.trust.enrolment import load_enrolment
from tens_control.trust.keys import ENV_PASSPHRASE, TrustError, load_private_key
from tests.session_support import prescription
from tests.trust_support import clinician, enrolment, pin, signed

PASS = "a long clinic passphrase"

RX = """\
written_by = "Dr A. Example"
written_at = 2026-03-01T09:30:00Z
reason = "phantom-limb pain"
programs = ["conventional", "burst"]
max_amplitude_ma = {cap}
session_minutes = {minutes}
sessions_per_day = 4

[[channels]]
channel = 1
site = "residual_limb"
side = "left"
pad = "5x5 cm"
"""


@pytest.fixture(autouse=True)
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv(ENV_PASSPHRASE, PASS)
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


def _ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 2, out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err  # one line, never a traceback
    return lines[0]


class Clinic:
    """A clinic folder (keys, enrolment, prescriptions) and a patient's database."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.dir = tmp / "clinic"
        self.dir.mkdir()
        self.db = tmp / "home" / "tens.sqlite3"
        self.db.parent.mkdir()  # a --db in a folder that does not exist is refused
        self.capsys = capsys

    def keygen(self, name: str, file: str) -> Path:
        path = self.dir / file
        _ok(self.capsys, "clinician", "keygen", "--name", name, "-o", str(path))
        return path

    def rx(self, name: str, cap: float = 40.0, minutes: int = 30) -> Path:
        path = self.dir / name
        path.write_text(RX.format(cap=cap, minutes=minutes), encoding="utf-8")
        return path

    def sign(self, rx: Path, key: Path, patient: str = "p-0042") -> Path:
        out = rx.with_name(rx.stem + ".signed.toml")
        _ok(self.capsys, "prescription", "sign", str(rx), "--key", str(key), "--patient", patient)
        return out

    def db_args(self) -> list[str]:
        return ["--db", str(self.db)]


@pytest.fixture
def clinic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Clinic:
    return Clinic(tmp_path, capsys)


def test_keygen_writes_an_owner_only_passphrase_protected_key_never_beside_the_database(
    clinic: Clinic, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = clinic.keygen("Dr A. Example", "dr-a.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = key.with_name("dr-a.key.pub")
    assert pub.exists()
    text = key.read_text()
    assert "chacha20-poly1305" in text
    assert "scrypt" in text
    loaded = load_private_key(key, PASS)
    assert loaded.holder == "Dr A. Example"
    raw = loaded.private.private_bytes_raw().hex()
    assert raw not in text  # only the sealed key is in the file
    monkeypatch.setenv(ENV_PASSPHRASE, "not the passphrase")
    line = _refused(
        capsys,
        "clinician",
        "enrolment",
        "--clinic",
        "C",
        "--patient",
        "p-1",
        "--key",
        str(key),
        "-o",
        str(clinic.dir / "e.toml"),
    )
    assert "wrong passphrase" in line
    assert not (clinic.dir / "e.toml").exists()
    monkeypatch.setenv(ENV_PASSPHRASE, PASS)
    assert "never replaced" in _refused(
        capsys, "clinician", "keygen", "--name", "X", "-o", str(key)
    )
    monkeypatch.setenv(ENV_PASSPHRASE, "short")
    assert "too short" in _refused(
        capsys, "clinician", "keygen", "--name", "X", "-o", str(clinic.dir / "x.key")
    )
    monkeypatch.setenv(ENV_PASSPHRASE, PASS)
    monkeypatch.setenv("TENS_CONTROL_DB", str(clinic.dir / "patient.sqlite3"))
    assert "folder of the patient database" in _refused(
        capsys, "clinician", "keygen", "--name", "X", "-o", str(clinic.dir / "y.key")
    )
    os.chmod(key, 0o644)
    assert "chmod 600" in _refused(
        capsys,
        "prescription",
        "sign",
        str(clinic.rx("rx.toml")),
        "--key",
        str(key),
        "--patient",
        "p-0042",
    )


def test_a_clinician_enrols_a_patient_and_signs_a_prescription_in_a_few_commands(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's steps: keygen, enrolment, sign; the patient enrols and imports."""
    key = clinic.keygen("Dr A. Example", "dr-a.key")
    colleague = clinic.keygen("Dr B. Example", "dr-b.key")
    enrol_file = clinic.dir / "p-0042-enrolment.toml"
    _ok(
        capsys,
        "clinician",
        "enrolment",
        "--clinic",
        "Example pain clinic",
        "--patient",
        "p-0042",
        "--key",
        str(key),
        "--pub",
        str(colleague) + ".pub",
        "-o",
        str(enrol_file),
    )
    signed_rx = clinic.sign(clinic.rx("rx.toml", cap=60, minutes=45), colleague)
    out = _ok(capsys, "enrol", str(enrol_file), *clinic.db_args())
    assert "Enrolled p-0042 with Example pain clinic" in out
    out = _ok(capsys, "prescription", "import", str(signed_rx), *clinic.db_args())
    assert "signed by Dr B. Example (key " in out
    out = _ok(capsys, "prescription", "show", "--current", *clinic.db_args())
    assert (
        "Enrolled with Example pain clinic as p-0042: prescription version 1 signed by Dr B" in out
    )
    with Store.open(clinic.db, create=False, recover=False) as store:
        rx = prescription_in_force(store, "p-0042").prescription
        assert (rx.max_amplitude_ma, rx.session_minutes) == (60.0, 45)
        assert rx.signature is not None
        db_bytes = clinic.db.read_bytes()
    # no private key material ever reaches the patient database
    for k in (key, colleague):
        raw = load_private_key(k, PASS).private.private_bytes_raw()
        assert raw not in db_bytes
        assert b"PRIVATE" not in db_bytes
    # enrolling the same file again changes nothing
    assert "already pinned" in _ok(capsys, "enrol", str(enrol_file), *clinic.db_args())


@pytest.fixture
def enrolled(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """Dr A's key and the enrolment file, pinned in the patient's database."""
    key = clinic.keygen("Dr A. Example", "dr-a.key")
    file = clinic.dir / "enrolment.toml"
    _ok(
        capsys,
        "clinician",
        "enrolment",
        "--clinic",
        "Example pain clinic",
        "--patient",
        "p-0042",
        "--key",
        str(key),
        "-o",
        str(file),
    )
    _ok(capsys, "enrol", str(file), *clinic.db_args())
    return key, file


def test_a_prescription_signed_by_a_key_the_clinic_did_not_pin_is_refused(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = clinic.keygen("Dr Nobody", "nobody.key")
    forged = clinic.sign(clinic.rx("rx.toml", cap=100, minutes=60), stranger)
    line = _refused(capsys, "prescription", "import", str(forged), *clinic.db_args())
    assert "not one of the keys of Example pain clinic pinned at enrolment" in line
    assert "ask your clinic for a new signed prescription" in line
    with Store.open(clinic.db, create=False, recover=False) as store:
        assert store.prescriptions("p-0042") == []


def test_a_prescription_signed_for_another_patient_is_refused(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = enrolled
    other = clinic.sign(clinic.rx("rx.toml"), key, patient="p-0043")
    line = _refused(capsys, "prescription", "import", str(other), *clinic.db_args())
    assert "signed for patient p-0043, not p-0042" in line


def test_an_edited_byte_breaks_the_signature(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = enrolled
    good = clinic.sign(clinic.rx("rx.toml", cap=40), key)
    text = good.read_bytes()
    assert b"max_amplitude_ma = 40.0" in text
    good.write_bytes(text.replace(b"max_amplitude_ma = 40.0", b"max_amplitude_ma = 90.0"))
    line = _refused(capsys, "prescription", "import", str(good), *clinic.db_args())
    assert "does not match its content (it was changed after signing)" in line
    # the signature's own fields are covered too: the time, the signer's name
    good.write_bytes(text.replace(b'Dr A. Example"\npatient', b'Dr A. Exampel"\npatient'))
    text2 = good.read_bytes()
    assert text2 != text
    assert "changed after signing" in _refused(
        capsys, "prescription", "import", str(good), *clinic.db_args()
    )
    good.write_bytes(text)
    assert "signed by Dr A. Example" in _ok(
        capsys, "prescription", "import", str(good), *clinic.db_args()
    )


def test_expired_and_revoked_keys_sign_nothing(clinic: Clinic, tmp_path: Path) -> None:
    """In the trust check itself: a key used after its validity, a key revoked by a newer
    enrolment (every signature by it fails, also the prescription already in force)."""
    old, new = clinic_keys = (clinician("Dr Old"), clinician("Dr New"))
    path = tmp_path / "db.sqlite3"
    with Store.open(path) as store:
        store.ensure_patient("p-0042")
        until = datetime(2026, 2, 1, tzinfo=UTC)
        first = enrolment("p-0042", *clinic_keys)
        first = enrolment(
            "p-0042",
            *clinic_keys,
            keys=tuple(
                k.model_copy(update={"valid_until": until}) if k.key_id == old.key_id else k
                for k in first.keys
            ),
        )
        pin(store, first, "p-0042")
        late = signed(prescription(), old, "p-0042", at=until + timedelta(days=1))
        store.save_prescription(dump_prescription(late), author="Dr Old", patient="p-0042")
        with pytest.raises(TrustError, match=r"had expired on 2026-02-01 00:00 UTC"):
            prescription_in_force(store, "p-0042")
        in_time = signed(prescription(), old, "p-0042", at=until - timedelta(days=1))
        store.save_prescription(dump_prescription(in_time), author="Dr Old", patient="p-0042")
        assert prescription_in_force(store, "p-0042").signed_by is not None
        # the clinic revokes the old key with a newer enrolment, signed by the new key
        second = enrolment(
            "p-0042",
            new,
            serial=2,
            revoked=({"key_id": old.key_id, "revoked_at": until, "reason": "laptop stolen"},),
        )
        assert first.successor_problem(second) is None
        pin(store, second, "p-0042")
        with pytest.raises(TrustError, match=r"which Example pain clinic revoked on 2026-02-01"):
            prescription_in_force(store, "p-0042")


def test_a_replayed_older_prescription_is_refused(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The clinic lowered the cap from 60 to 30 mA; importing the old 60 mA file again (it
    still carries a valid signature) is refused."""
    key, _ = enrolled
    now = datetime.now(UTC)
    first = clinic.dir / "first.signed.toml"
    earlier = signed(
        load_prescription(clinic.rx("first.toml", cap=60)),
        load_private_key(key, PASS),
        "p-0042",
        at=now - timedelta(minutes=2),
    )
    first.write_text(dump_prescription(earlier), encoding="utf-8")
    _ok(capsys, "prescription", "import", str(first), *clinic.db_args())
    narrow = load_prescription(clinic.rx("second.toml", cap=30))
    later = signed(narrow, load_private_key(key, PASS), "p-0042", at=now)
    later_file = clinic.dir / "second.signed.toml"
    later_file.write_text(dump_prescription(later), encoding="utf-8")
    _ok(capsys, "prescription", "import", str(later_file), *clinic.db_args())
    line = _refused(capsys, "prescription", "import", str(first), *clinic.db_args())
    assert "an older prescription may not replace a newer one" in line
    with Store.open(clinic.db, create=False, recover=False) as store:
        assert prescription_in_force(store, "p-0042").prescription.max_amplitude_ma == 30.0


def test_an_enrolment_from_another_clinic_needs_replace_and_is_recorded(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A patient who controls the machine can enrol themselves: not prevented, but it takes
    --replace, the log records it, and every later session names the keys in force."""
    own = clinic.keygen("Myself", "me.key")
    mine = clinic.dir / "mine.toml"
    _ok(
        capsys,
        "clinician",
        "enrolment",
        "--clinic",
        "My own clinic",
        "--patient",
        "p-0042",
        "--key",
        str(own),
        "-o",
        str(mine),
    )
    line = _refused(capsys, "enrol", str(mine), *clinic.db_args())
    assert "add --replace" in line
    assert "the new file was not pinned" in line
    _ok(capsys, "enrol", str(mine), "--replace", *clinic.db_args())
    with Store.open(clinic.db, create=False, recover=False) as store:
        records = store.enrolments("p-0042")
        assert [(r.clinic, r.replaced) for r in records] == [
            ("Example pain clinic", False),
            ("My own clinic", True),
        ]
        assert store.verify().ok  # the replacement is in the chain, not hidden


def test_a_newer_enrolment_rotates_keys_and_an_old_one_is_not_taken_back(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, file = enrolled
    fresh = clinic.keygen("Dr A. Example (2027)", "dr-a-2027.key")
    rotated = clinic.dir / "enrolment-2.toml"
    _ok(
        capsys,
        "clinician",
        "enrolment",
        "--after",
        str(file),
        "--key",
        str(key),
        "--pub",
        str(fresh) + ".pub",
        "-o",
        str(rotated),
    )
    revoking = clinic.dir / "enrolment-3.toml"
    old_id = load_private_key(key, PASS).key_id
    _ok(
        capsys,
        "clinician",
        "enrolment",
        "--after",
        str(rotated),
        "--key",
        str(fresh),
        "--revoke",
        old_id,
        "-o",
        str(revoking),
    )
    assert load_enrolment(revoking).serial == 3
    _ok(capsys, "enrol", str(rotated), *clinic.db_args())
    _ok(capsys, "enrol", str(revoking), *clinic.db_args())
    line = _refused(capsys, "enrol", str(file), *clinic.db_args())
    assert "not newer than the pinned enrolment 3" in line
    old_signed = clinic.sign(clinic.rx("rx.toml"), key)
    assert "revoked" in _refused(
        capsys, "prescription", "import", str(old_signed), *clinic.db_args()
    )
    assert "signed by Dr A. Example (2027)" in _ok(
        capsys,
        "prescription",
        "import",
        str(clinic.sign(clinic.rx("rx2.toml"), fresh)),
        *clinic.db_args(),
    )


def test_a_signed_override_travels_to_a_patient_at_home_and_an_edited_one_does_not_count(
    clinic: Clinic, enrolled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = enrolled
    with Store.open(clinic.db, recover=False) as store:
        answers = {q.value: q.value == "epilepsy" for q in Question}
        store.save_screening(answers, recorded_by="patient", patient="p-0042")
    file = clinic.dir / "override.toml"
    _ok(
        capsys,
        "screening",
        "--override",
        "--key",
        str(key),
        "--reason",
        "seizure-free 10 years",
        "--patient",
        "p-0042",
        "--question",
        "epilepsy",
        "-o",
        str(file),
    )
    text = file.read_text()
    file.write_text(text.replace("seizure-free 10 years", "seizure-free 1 year"))
    line = _refused(capsys, "screening", "--apply", str(file), *clinic.db_args())
    assert "changed after signing" in line
    file.write_text(text)
    assert "Stimulation is no longer blocked" in _ok(
        capsys, "screening", "--apply", str(file), *clinic.db_args()
    )
    out = _ok(capsys, "screening", "--show", *clinic.db_args())
    assert "override of epilepsy by Dr A. Example (signed, key " in out
    assert out.rstrip().endswith("Stimulation: allowed")
