"""Export bundles verify themselves, import is idempotent and refuses tampering; deleting a
patient removes every trace."""

from __future__ import annotations

import copy
import io
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from drivers.clock import VirtualClock
from tens_control.cli import main
from tens_control.store import (
    BundleError,
    PainSite,
    RatingTime,
    Store,
    StoreBusyError,
    verify_bundle,
)
from tens_control.store.bundle import bundle_digest
from tests.store_support import count, open_virtual, raw, run_session


@pytest.fixture(scope="module")
def home_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A closed home log (two sessions) and the virtual time it ended at."""
    path = tmp_path_factory.mktemp("home") / "home.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        run_session(store, clock)
        clock.advance(7200)
        run_session(store, clock)
    return path, clock.now()


@pytest.fixture
def source(home_log: tuple[Path, float], tmp_path: Path) -> tuple[Path, VirtualClock]:
    """A private copy of the home log, and a virtual clock where it left off."""
    path = tmp_path / "home.sqlite3"
    shutil.copy(home_log[0], path)
    return path, VirtualClock(start=home_log[1])


def export(path: Path, patient: str | None = None) -> dict[str, Any]:
    with Store.open(path, recover=False) as store:
        return store.export_patient(patient)


def test_a_bundle_verifies_from_its_content_alone(source: tuple[Path, VirtualClock]) -> None:
    bundle = export(source[0])
    assert bundle["format"] == "tens-control-bundle"
    assert bundle["format_version"] == 1
    assert bundle["digest"] == bundle_digest(bundle)
    assert bundle["patient"]["pseudonym"] == "patient-1"
    assert len(bundle["sessions"]) == 2
    assert all("hash" in e and "prev_hash" in e for e in bundle["chains"][0]["events"])
    report = verify_bundle(json.loads(json.dumps(bundle)))  # survives a trip through a file
    assert report.ok, report.summary()
    assert (report.sessions, report.telemetry_rows) == (2, 160)


def test_import_recreates_everything_and_is_idempotent(
    source: tuple[Path, VirtualClock], tmp_path: Path
) -> None:
    bundle = export(source[0])
    clinic = tmp_path / "clinic.sqlite3"
    with Store.open(clinic) as store:
        first = store.import_bundle(bundle)
        assert first.patient == "patient-1"
        assert first.added == {
            "patients": 1,
            "sessions": 2,
            "events": len(bundle["chains"][0]["events"]),
            "records": 4,
            "telemetry": 160,
        }
        again = store.import_bundle(bundle)
        assert not again.changed
        report = store.verify()
        assert report.ok, report.summary()
    with Store.open(source[0], recover=False) as home, Store.open(clinic) as there:
        assert there.sessions() == home.sessions()
        assert there.pain_ratings() == home.pain_ratings()
        assert [(e.seq, e.hash) for e in there.events()] == [(e.seq, e.hash) for e in home.events()]
        for info in home.sessions():
            assert there.telemetry(info.uid) == home.telemetry(info.uid)
        re_exported = there.export_patient()
    for key in ("patient", "chains", "sessions", "records", "telemetry"):
        assert re_exported[key] == bundle[key]


def test_a_later_export_imports_only_what_is_new(
    source: tuple[Path, VirtualClock], tmp_path: Path
) -> None:
    path, clock = source
    clinic = tmp_path / "clinic.sqlite3"
    with Store.open(clinic) as store:
        store.import_bundle(export(path))
    with open_virtual(path, clock) as home:
        clock.advance(86400)
        run_session(home, clock)
    with Store.open(clinic) as store:
        result = store.import_bundle(export(path))
        assert result.added["sessions"] == 1
        assert result.added["patients"] == 0
        assert result.added["telemetry"] == 80
        assert len(store.sessions()) == 3
        assert store.verify().ok


def test_clinic_records_live_in_their_own_chain_and_travel_back(
    source: tuple[Path, VirtualClock], tmp_path: Path
) -> None:
    """A prescription written at the clinic goes into the clinic's chain for that patient; a
    later home export still imports, and the clinic's export carries both chains home."""
    path = source[0]
    clinic = tmp_path / "clinic.sqlite3"
    with Store.open(clinic) as store:
        store.import_bundle(export(path))
        store.save_prescription("version = 1\n", author="Dr A", reason="start")
        to_home = store.export_patient()
    assert len(to_home["chains"]) == 2
    with Store.open(path) as home:
        result = home.import_bundle(to_home)
        assert result.added["records"] == 1
        latest = home.latest_prescription()
        assert latest is not None
        assert latest.author == "Dr A"
        assert home.verify().ok
    with Store.open(clinic) as store:
        assert not store.import_bundle(export(path)).changed
        assert store.verify().ok


def _tampered(bundle: dict[str, Any], edit: str) -> dict[str, Any]:
    b = copy.deepcopy(bundle)
    events = b["chains"][0]["events"]
    if edit == "rating":
        b["records"]["pain_ratings"][0]["nrs"] = 0
    elif edit == "event":
        amp = next(e for e in events if e["kind"] == "amplitude_changed")
        amp["payload"]["to_ma"] = 55.0
    elif edit == "delete_event":
        del events[3]
    elif edit == "insert_event":
        events.insert(4, copy.deepcopy(events[3]))
    elif edit == "telemetry":
        b["telemetry"][0]["rows"].pop()
    elif edit == "session":
        b["sessions"][0]["end_reason"] = "stopped_by_user"
    elif edit == "metadata":
        b["generator"] = "someone else"
    return b


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("rating", "edited record: pain_ratings record"),
        ("event", "edited record: event seq"),
        ("delete_event", "deleted record: chain"),
        ("insert_event", "inserted record: event seq"),
        ("telemetry", "deleted record: telemetry segment 1"),
        ("session", "edited record: the end of session"),
        ("metadata", "digest does not match"),
    ],
)
@pytest.mark.parametrize("redigest", [False, True])
def test_a_tampered_bundle_is_refused_naming_the_first_broken_record(
    source: tuple[Path, VirtualClock], tmp_path: Path, edit: str, expected: str, redigest: bool
) -> None:
    bundle = _tampered(export(source[0]), edit)
    if redigest:  # a careful tamperer also recomputes the bundle digest
        if edit == "metadata":
            pytest.skip("a re-digested metadata change is not tampering with any record")
        bundle["digest"] = bundle_digest(bundle)
    report = verify_bundle(bundle)
    assert not report.ok
    assert expected in str(report.first)
    clinic = tmp_path / "clinic.sqlite3"
    with Store.open(clinic) as store:
        with pytest.raises(BundleError, match="was not imported") as raised:
            store.import_bundle(bundle)
        assert expected in str(raised.value)
        assert store.patients() == []


def test_malformed_or_newer_bundles_are_one_clear_error() -> None:
    with pytest.raises(BundleError, match="not a tens-control export bundle"):
        verify_bundle({"hello": "world"})
    with pytest.raises(BundleError, match="format version 9"):
        verify_bundle({"format": "tens-control-bundle", "format_version": 9})
    with pytest.raises(BundleError, match="malformed"):
        verify_bundle(
            {
                "format": "tens-control-bundle",
                "format_version": 1,
                "patient": {},
                "chains": [],
                "sessions": [],
                "records": {},
                "telemetry": [],
                "digest": "",
            }
        )


def test_a_pseudonym_taken_by_another_patient_needs_a_new_one(
    source: tuple[Path, VirtualClock], tmp_path: Path
) -> None:
    bundle = export(source[0])
    clinic = tmp_path / "clinic.sqlite3"
    with Store.open(clinic) as store:
        store.ensure_patient("patient-1")  # another home install's patient-1
        with pytest.raises(BundleError, match="already belongs to another patient"):
            store.import_bundle(bundle)
        result = store.import_bundle(bundle, pseudonym="home-2")
        assert result.patient == "home-2"
        assert len(store.sessions("home-2")) == 2
        assert store.sessions("patient-1") == []
        assert store.verify().ok


# --------------------------------------------------------------------------- commands


def test_export_command_writes_owner_only_and_never_overwrites(
    source: tuple[Path, VirtualClock],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(source[0])
    out = tmp_path / "bundle.json"
    assert main(["export", "--db", db, "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first = out.read_bytes()
    assert verify_bundle(json.loads(first)).ok
    capsys.readouterr()
    assert main(["export", "--db", db, "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == first
    assert main(["export", "--db", db, "-o", str(out), "--force"]) == 0
    assert main(["verify", "--bundle", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", "--db", db, "-o", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "tens-control-bundle"
    tampered = json.loads(first)
    tampered["records"]["pain_ratings"][0]["nrs"] = 10
    out.write_text(json.dumps(tampered))
    assert main(["verify", "--bundle", str(out)]) == 1
    assert "edited record: pain_ratings record" in capsys.readouterr().out


def test_export_command_defaults_to_the_current_patient(
    source: tuple[Path, VirtualClock], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--db", str(source[0])]) == 0
    (written,) = tmp_path.glob("tens-control-patient-1-*.json")
    assert verify_bundle(json.loads(written.read_text())).ok
    with Store.open(source[0], recover=False) as store:
        store.ensure_patient("p-2")
    assert main(["export", "--db", str(source[0]), "--patient", "nobody"]) == 2


def _data_rows(path: Path, patient_uid: str) -> int:
    with raw(path) as conn:
        pid = conn.execute("SELECT id FROM patients WHERE uid = ?", (patient_uid,)).fetchone()
        if pid is None:
            return 0
        return sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE patient_id = ?", pid).fetchone()[0]
            for t in ("sessions", "pain_ratings", "chains")
        )


def test_delete_patient_removes_every_trace_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        run_session(store, clock)
        store.add_pain_rating(
            5, RatingTime.DIARY, PainSite.PHANTOM, note="SECRET-NOTE-4711 about the left leg"
        )
        gone = store.patient().uid
        store.ensure_patient("p-2")
        store.default_patient = "p-2"
        run_session(store, clock)
        result = store.delete_patient("patient-1")
        assert result.deleted["sessions"] == 1
        assert result.deleted["telemetry"] == 80
        assert [p.pseudonym for p in store.patients()] == ["p-2"]
        assert len(store.sessions("p-2")) == 1
        report = store.verify()
        assert report.ok, report.summary()
    assert count(path, "telemetry") == 80
    assert _data_rows(path, gone) == 0
    for file in path.parent.glob("log.sqlite3*"):
        data = file.read_bytes()
        assert b"SECRET-NOTE-4711" not in data, file
        assert gone.encode() not in data, file


def test_delete_patient_is_refused_while_another_process_may_be_running_a_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite3"
    running = Store.open(path)
    try:
        running.ensure_patient()
        with (
            Store.open(path, recover=False) as other,
            pytest.raises(StoreBusyError, match="another tens-control process"),
        ):
            other.delete_patient("patient-1")
    finally:
        running.close()
    with Store.open(path, recover=False) as store:
        store.delete_patient("patient-1")
        assert store.patients() == []


def test_delete_patient_command_asks_for_the_pseudonym(
    source: tuple[Path, VirtualClock],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(source[0])
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert main(["delete-patient", "--db", db]) == 1
    assert "Nothing was deleted" in capsys.readouterr().out
    assert count(source[0], "sessions") == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["delete-patient", "--db", db]) == 1
    assert count(source[0], "sessions") == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("patient-1\n"))
    assert main(["delete-patient", "--db", db]) == 0
    assert "Deleted patient patient-1" in capsys.readouterr().out
    assert count(source[0], "sessions") == 0
    assert main(["delete-patient", "--db", db, "--yes"]) == 2
    assert "no patients" in capsys.readouterr().err


def test_delete_patient_command_with_yes_does_not_ask(
    source: tuple[Path, VirtualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["delete-patient", "--db", str(source[0]), "--patient", "patient-1", "--yes"]) == 0
    assert count(source[0], "patients") == 0


def test_a_bundle_without_telemetry_verifies_but_is_not_imported(
    source: tuple[Path, VirtualClock], tmp_path: Path
) -> None:
    with Store.open(source[0], recover=False) as store:
        light = store.export_patient(telemetry=False)
    assert light["telemetry_included"] is False
    assert light["telemetry"] == []
    report = verify_bundle(light)
    assert report.ok, report.summary()
    light["telemetry_included"] = True  # claiming it is complete is caught
    light["digest"] = bundle_digest(light)
    assert "deleted record: telemetry segment" in str(verify_bundle(light).first)
    light["telemetry_included"] = False
    light["digest"] = bundle_digest(light)
    with Store.open(tmp_path / "clinic.sqlite3") as clinic:
        with pytest.raises(BundleError, match="without telemetry"):
            clinic.import_bundle(light)
        assert clinic.patients() == []


def test_bundle_with_a_non_number_in_its_telemetry_is_refused_plainly(
    source: tuple[Path, VirtualClock],
) -> None:
    """Found by the reliability campaign: this used to escape as struct.error."""
    bundle = export(source[0])
    assert bundle["telemetry"], "the fixture log has telemetry"
    bundle["telemetry"][0]["rows"][0][2] = "twelve"
    with pytest.raises(BundleError, match=r"telemetry\[0\] holds a value that is not a number"):
        verify_bundle(bundle)
