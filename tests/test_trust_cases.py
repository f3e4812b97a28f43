"""Issue 13's measured cases, each done as the issue did it (edit the file, run the SQL on the
database, cut the bundle) and, where a session is involved, checked on what the simulator
delivered."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.clock import Clock, VirtualClock
from simulator.device import SimDevice
from tens_control.cli import main
from tens_control.device import OpenedDevice, open_device
from tens_control.prescription import dump_prescription
from tens_control.screening import Question
from tens_control.store import (
    EndReason,
    RewrittenHistoryError,
    Store,
    bundle,
)
from tens_control.store.records import Odometer
from tests.session_support import make_rig, prescription
from tests.store_support import DEVICE, PLAN, open_virtual, run_session
from tests.trust_support import enrol_and_prescribe

# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


@pytest.fixture
def devices(monkeypatch: pytest.MonkeyPatch) -> list[OpenedDevice]:
    """Every device ``tens-control run`` opens in this process (for the delivered record)."""
    opened: list[OpenedDevice] = []

    def opener(url: str, clock: Clock, **kwargs: Any) -> OpenedDevice:
        device = open_device(url, clock, **kwargs)
        opened.append(device)
        return device

    monkeypatch.setattr("tens_control.commands.run.open_device", opener)
    return opened


def delivered_max(opened: OpenedDevice) -> float:
    sim = getattr(opened.port, "device", None)
    assert isinstance(sim, SimDevice)
    return max(sim.record.max_level(ch) for ch in (1, 2))


def run(db: Path, *args: str) -> int:
    return main(["run", "--virtual-time", "--db", str(db), "--program", "conventional", *args])


def sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


WIDE = """\
written_by = "Dr Nobody"
written_at = 2026-03-01T09:30:00Z
reason = "more"
programs = ["conventional"]
max_amplitude_ma = 100.0
session_minutes = 60
"""


# --------------------------------------------------------------------------- 1. unsigned import


def test_an_unsigned_100_ma_60_min_prescription_is_refused_and_shows_who_wrote_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite3"
    rx = write(tmp_path / "rx.toml", WIDE)
    code = main(["prescription", "import", str(rx), "--author", "Dr Nobody", "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2
    assert "is not signed and widens a limit: session_minutes: 60 is longer than the 30" in err
    # enrolled with a signed 40 mA prescription: the unsigned 100 mA one is refused as well
    with Store.open(db, recover=False) as store:
        enrol_and_prescribe(store, prescription())
    code = main(["prescription", "import", str(rx), "--author", "Dr Nobody", "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2
    assert "channel 1 may reach 100 mA, above the 40 mA of the signed prescription version 1" in err
    # narrowing is what an unsigned prescription may do (the patient's own comfort limits)
    text = dump_prescription(prescription(max_amplitude_ma=25.0)).replace('"Dr A. Example"', '"me"')
    narrow = write(tmp_path / "narrow.toml", text)
    assert main(["prescription", "import", str(narrow), "--db", str(db)]) == 0
    assert "unsigned: it narrows the signed prescription version 1" in capsys.readouterr().out
    assert main(["prescription", "show", "--current", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "not signed (it may only narrow the limits in force)" in out
    assert "unsigned prescription version 2, narrowing the signed prescription version 1" in out


def test_an_import_no_device_profile_can_satisfy_is_refused_at_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rx = write(tmp_path / "rx.toml", WIDE.replace("100.0", "150.0").replace("60\n", "20\n"))
    code = main(["prescription", "import", str(rx), "--db", str(tmp_path / "db.sqlite3")])
    err = capsys.readouterr().err
    assert code == 2
    assert "fits no device profile: max_amplitude_ma (150 mA) is above the" in err
    assert not (tmp_path / "db.sqlite3").exists()  # nothing was stored


# --------------------------------------------------------------------------- 2. screening override


def test_an_override_typed_on_the_patients_machine_does_not_unblock_a_pacemaker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", str(tmp_path / "db.sqlite3")]
    answers = iter(["y"] + ["n"] * (len(Question) - 1))
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["screening", *db]) == 0
    capsys.readouterr()
    code = main(["screening", "--override", "--by", "Dr X", "--reason", "it is fine", *db])
    err = capsys.readouterr().err
    assert code == 2
    assert "--override needs --key FILE" in err
    # an unsigned override written into the database directly does not count either
    with Store.open(tmp_path / "db.sqlite3", recover=False) as store:
        latest = store.latest_screening()
        assert latest is not None
        from tens_control.store.records import ScreeningOverride

        store.save_screening(
            latest.answers,
            recorded_by="patient",
            overrides=[
                ScreeningOverride(
                    question="active_implant", who="Dr X", at=datetime.now(UTC), why="fine"
                )
            ],
        )
    assert main(["screening", "--show", *db]) == 0
    out = capsys.readouterr().out
    assert "override of pacemaker, ICD or other active implant by Dr X (unsigned)" in out
    assert "not enrolled with a clinic" in out
    assert out.rstrip().splitlines()[-1].startswith("Stimulation: blocked")


# --------------------------------------------------------------------------- 3. SQL edit of the cap


def test_a_prescription_edited_in_the_database_refuses_the_session_and_nothing_is_delivered(
    tmp_path: Path, devices: list[OpenedDevice], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite3"
    with Store.open(db, recover=False) as store:
        enrol_and_prescribe(store, prescription(max_amplitude_ma=20.0))
    # first, the prescription works: 15 mA is delivered
    assert run(db, "--minutes", "0.2", "--target-ma", "15") == 0
    assert delivered_max(devices[-1]) == 15.0
    capsys.readouterr()
    sql(
        db,
        "update prescriptions set toml=replace(toml,'max_amplitude_ma = 20.0',"
        "'max_amplitude_ma = 95.0')",
    )
    code = run(db, "--minutes", "0.2", "--target-ma", "40")
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "the stored prescription version 1 differs from its copy in the log" in err
    assert "ask your clinic for a new signed prescription" in err
    assert delivered_max(devices[-1]) == 0.0  # the simulator delivered nothing
    with Store.open(db, create=False, recover=False) as store:
        assert len(store.sessions()) == 1  # no second session was started
        refused = [e.payload for e in store.events(kinds=["rejected"])]
        assert refused[-1]["parameter"] == "prescription"
        assert refused[-1]["source"] == "trust"


def test_a_signed_prescription_edited_in_both_row_and_log_is_still_refused(tmp_path: Path) -> None:
    """Editing the row and its log copy alike breaks the chain link or the signature."""
    rig = make_rig(tmp_path, rx=prescription(max_amplitude_ma=20.0))
    try:
        rig.c.connect("sim://tsp")
        sql(
            tmp_path / "tens.sqlite3",
            "update prescriptions set toml=replace(toml,'max_amplitude_ma = 20.0',"
            "'max_amplitude_ma = 95.0')",
            "update events set payload=replace(payload,'max_amplitude_ma = 20.0',"
            "'max_amplitude_ma = 95.0') where kind='prescription_saved'",
        )
        from tens_control.session import PreconditionError

        with pytest.raises(PreconditionError) as error:
            rig.c.prepare("conventional", 1)
        assert "no longer matches its hash" in str(error.value)
        assert rig.record.max_level(1) == 0.0
    finally:
        rig.close()


# --------------------------------------------------------------------------- 4. cut tail


def _cut_last_session(db: Path) -> None:
    """The issue's four statements: the last session's rows go, the chain head moves back to
    the event before its start (no hashing needed)."""
    last = "(select max(id) from sessions)"
    first_event = f"(select min(seq) from events where session_id = {last})"
    sql(
        db,
        f"delete from telemetry where session_id = {last}",
        f"delete from pain_ratings where session_id = {last}",
        "update chains set head_seq = "
        f"{first_event} - 1, head_hash = (select hash from events where seq = {first_event} - 1)",
        f"delete from events where seq >= {first_event}",
        # (the session row itself: a fifth, harmless statement once its events are gone)
    )
    sql(db, f"delete from sessions where id = {last}")


def _odometer_session(store: Store, clock: VirtualClock, count: int, seconds: float) -> str:
    sid = store.begin_session(
        PLAN, device=DEVICE, odometer=Odometer(sessions=count, stimulation_s=seconds)
    )
    clock.advance(60)
    store.end_session(sid, EndReason.COMPLETED)
    return sid


def test_a_cut_tail_shows_as_missing_sessions_once_the_device_reports_its_odometer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify alone cannot see a cut tail; the device's session counter at the next session
    does. (The odometer values are written through the store API; the device reports them
    once its firmware does.)"""
    db = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(db, clock) as store:
        store.ensure_patient()
        first = _odometer_session(store, clock, 10, 3600.0)
        _odometer_session(store, clock, 11, 3660.0)
    _cut_last_session(db)
    with open_virtual(db, clock) as store:
        assert store.verify().ok  # the documented limit of a chain kept in the same file
        third = _odometer_session(store, clock, 12, 3720.0)
        report = store.verify()
    assert not report.ok
    problem = report.first
    assert problem is not None
    assert problem.kind == "missing"
    assert (problem.after, problem.session) == (first, third)
    assert "ran 1 session(s) between session" in str(problem)
    assert main(["verify", "--db", str(db)]) == 1
    assert "INCOMPLETE: missing sessions" in capsys.readouterr().out


def test_odometer_stimulation_the_log_cannot_account_for_is_reported(tmp_path: Path) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        store.ensure_patient()
        _odometer_session(store, clock, 3, 100.0)
        _odometer_session(store, clock, 4, 100.0 + 60 + 600)  # 10 min more than logged
        report = store.verify()
    assert [p.message.split(":")[0] for p in report.problems] == ["missing stimulation"]


def _export(db: Path, out: Path) -> Path:
    assert main(["export", "--db", str(db), "-o", str(out)]) == 0
    return out


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, VirtualClock]:
    db = tmp_path / "home.sqlite3"
    clock = VirtualClock()
    with open_virtual(db, clock) as store:
        run_session(store, clock)
        clock.advance(3600)
        run_session(store, clock)
    return db, clock


def test_a_bundle_whose_history_was_cut_is_refused_against_the_clinic_anchor(
    home: tuple[Path, VirtualClock], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, clock = home
    clinic = tmp_path / "clinic.sqlite3"
    assert main(["import", str(_export(db, tmp_path / "1.json")), "--db", str(clinic)]) == 0
    capsys.readouterr()
    # the patient cuts the last session off the log (four SQL statements) and exports again
    _cut_last_session(db)
    with Store.open(db, recover=False) as store:
        assert store.verify().ok
    cut = _export(db, tmp_path / "2.json")
    before = clinic.read_bytes()
    code = main(["import", str(cut), "--db", str(clinic)])
    err = capsys.readouterr().err
    assert code == 2
    assert "rewritten history: chain" in err
    assert "were cut from the patient's log" in err
    kept = list((tmp_path / "clinic.sqlite3.rewritten").iterdir())
    assert len(kept) == 1
    assert json.loads(kept[0].read_text())["digest"] == json.loads(cut.read_text())["digest"]
    assert oct(kept[0].stat().st_mode & 0o777) == "0o600"
    assert clinic.read_bytes() == before  # nothing overwritten
    # ... and also once the patient carries on with new sessions after the cut
    with open_virtual(db, clock) as store:
        run_session(store, clock)
    with Store.open(clinic, recover=False) as store, pytest.raises(RewrittenHistoryError) as error:
        store.import_bundle(_load(_export(db, tmp_path / "3.json")))
    assert "differs at seq" in str(error.value)
    with Store.open(clinic, recover=False) as store:
        assert len(store.sessions()) == 2
        assert store.verify().ok


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_the_same_cut_done_on_the_exported_bundle_is_refused(
    home: tuple[Path, VirtualClock], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = home
    clinic = tmp_path / "clinic.sqlite3"
    full = _load(_export(db, tmp_path / "full.json"))
    with Store.open(clinic) as store:
        store.import_bundle(full)
    # cut the last session out of a later export of the same log, recompute the digest
    later = _load(_export(db, tmp_path / "later.json"))
    assert later["exported_at"] > full["exported_at"]
    last = later["sessions"][-1]["uid"]
    chain = later["chains"][0]
    start = next(ev["seq"] for ev in chain["events"] if ev["session"] == last)
    chain["events"] = [ev for ev in chain["events"] if ev["seq"] < start]
    chain["head_seq"], chain["head_hash"] = start - 1, chain["events"][-1]["hash"]
    later["sessions"] = later["sessions"][:-1]
    later["telemetry"] = [seg for seg in later["telemetry"] if seg["session"] != last]
    kept_ratings = [r for r in later["records"]["pain_ratings"] if r.get("session") != last]
    logged = {
        ev["payload"]["record"]["uid"] for ev in chain["events"] if ev["kind"] == "pain_rated"
    }
    later["records"]["pain_ratings"] = [r for r in kept_ratings if r["uid"] in logged]
    later["digest"] = bundle.bundle_digest(later)
    cut = write(tmp_path / "cut.json", json.dumps(later))
    assert main(["verify", "--bundle", str(cut)]) == 0  # the bundle alone looks intact
    capsys.readouterr()
    code = main(["import", str(cut), "--db", str(clinic)])
    assert code == 2
    assert "rewritten history" in capsys.readouterr().err
    # an older file imported again is harmless: nothing new, not an error
    assert main(["import", str(tmp_path / "full.json"), "--db", str(clinic)]) == 0
    assert "nothing new" in capsys.readouterr().out


# --------------------------------------------------------------------------- 5. derived column


def test_an_edited_max_amplitude_column_is_named_by_verify(
    home: tuple[Path, VirtualClock], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = home
    sql(db, "update sessions set max_amplitude_ma = 2.0 where id = 1")
    assert main(["verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN: edited record: sessions.max_amplitude_ma of session" in out


# --------------------------------------------------------------------------- 6. two runs


def test_a_second_run_on_the_same_database_is_refused_naming_the_other_program(
    tmp_path: Path, devices: list[OpenedDevice], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite3"
    other = Store.open(db, recover=False)  # another program, in the middle of a session
    try:
        other.ensure_patient()
        running = other.begin_session(PLAN, device=DEVICE)
        code = run(db, "--minutes", "0.2", "--target-ma", "5")
        err = capsys.readouterr().err
        assert code == 2
        assert "another program is running a session on this database: pid" in err
        assert f"pid {os.getpid()} (" in err
        assert delivered_max(devices[-1]) == 0.0
        other.end_session(running, EndReason.COMPLETED)
        assert run(db, "--minutes", "0.2", "--target-ma", "5") == 0  # free again
        assert delivered_max(devices[-1]) == 5.0
    finally:
        other.close()
    with Store.open(db, create=False, recover=False) as store:
        assert [s.end_reason for s in store.sessions()] == [EndReason.COMPLETED] * 2
        # the refused attempt is logged
        refused = [e.payload["parameter"] for e in store.events(kinds=["rejected"])]
        assert refused == ["session lock"]


def test_the_store_itself_refuses_a_second_session_from_another_program(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with Store.open(path) as first, Store.open(path) as second:
        first.ensure_patient()
        sid = first.begin_session(PLAN)
        from tens_control.store import StoreBusyError

        with pytest.raises(StoreBusyError, match="only one session at a time"):
            second.begin_session(PLAN)
        first.end_session(sid, EndReason.COMPLETED)
        second.end_session(second.begin_session(PLAN), EndReason.COMPLETED)


# --------------------------------------------------------------------------- 7. reports


def test_reports_over_a_damaged_log_say_so_first_and_mark_the_figures(
    home: tuple[Path, VirtualClock], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = home
    sql(db, "UPDATE pain_ratings SET nrs=0")
    out = tmp_path / "r"
    assert main(["report", "--db", str(db), "--format", "csv", "-o", f"{out}.csv"]) == 0
    assert "warning: LOG DAMAGED" in capsys.readouterr().err
    lines = Path(f"{out}.csv").read_text().splitlines()
    assert lines[0].startswith("# LOG DAMAGED: tens-control verify found")
    header = lines[1].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[2:]]
    assert rows
    assert all(r["log"] == "damaged" for r in rows if r["record"] == "session")
    assert all(r["log"] == "damaged" for r in rows if r["nrs"] == "0")
    assert main(["report", "--db", str(db), "--format", "html", "-o", f"{out}.html"]) == 0
    html = Path(f"{out}.html").read_text()
    body = html.split("<body>", 1)[1]
    assert body.lstrip().startswith('<p class="damaged">LOG DAMAGED')
    assert "DAMAGED LOG" in body  # the sessions' notes
    assert main(["report", "--db", str(db), "--format", "json", "-o", f"{out}.json"]) == 0
    summary = json.loads(Path(f"{out}.json").read_text())
    assert next(iter(summary)) == "log_damaged"
    assert len(summary["damaged_sessions"]) == 2
    capsys.readouterr()
    assert main(["report", "--db", str(db), "--format", "fhir", "-o", f"{out}.fhir"]) == 2
    assert "no FHIR export of a damaged log" in capsys.readouterr().err
    assert main(["export", "--db", str(db), "-o", str(tmp_path / "b.json")]) == 0
    assert capsys.readouterr().err.startswith("warning: LOG DAMAGED")


def test_the_review_shows_a_damaged_log_first(home: tuple[Path, VirtualClock]) -> None:
    from tens_control.ui.review.data import ReviewSource

    db, _ = home
    sql(db, "UPDATE pain_ratings SET nrs=0")
    source = ReviewSource(Store.open(db, read_only=True))
    try:
        data = source.patient("patient-1").data
    finally:
        source.close()
    assert data.integrity.startswith("LOG DAMAGED")
    assert len(data.damaged_sessions) == 2


def test_an_intact_log_reports_as_before(home: tuple[Path, VirtualClock], tmp_path: Path) -> None:
    db, _ = home
    out = tmp_path / "r.csv"
    assert main(["report", "--db", str(db), "--format", "csv", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("record,patient,")
    assert all(line.endswith(",") for line in lines[1:])  # the log column is empty


def test_a_self_managed_session_says_so_in_its_log(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.c.connect("sim://tsp")
        session = rig.run_session(minutes=0.2)
        notes = [e.payload for e in rig.events(session) if e.kind == "note"]
        trust = [n for n in notes if "trust" in n["data"]]
        assert trust[0]["text"].startswith("Self-managed (not enrolled with a clinic)")
        assert trust[0]["data"]["trust"]["mode"] == "self-managed"
    finally:
        rig.close()
    rig = make_rig(tmp_path / "enrolled", rx=prescription())
    try:
        rig.c.connect("sim://tsp")
        session = rig.run_session(minutes=0.2)
        note = next(e.payload for e in rig.events(session) if e.kind == "note")
        data = note["data"]["trust"]
        assert data["mode"] == "enrolled"
        assert data["signed_by_key"] in data["pinned_keys"]
    finally:
        rig.close()
