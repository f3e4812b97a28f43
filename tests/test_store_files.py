"""The database file: owner-only, recognised before it is touched, schema versions, migration,
and corrupt or foreign files refused with one clear message and left byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from drivers.clock import VirtualClock
from tens_control.cli import main
from tens_control.store import (
    Actor,
    AmplitudeChanged,
    DatabaseCorruptError,
    DatabaseMissingError,
    EndReason,
    Fault,
    MigrationError,
    NewerSchemaError,
    NotATensControlDatabaseError,
    StateChanged,
    Store,
    StoreError,
    amplitude,
    default_db_path,
    migrations,
    resolve_db_path,
    schema,
)
from tens_control.store.database import inspect_file
from tens_control.store.records import CommsLost, LeadOff
from tests.store_support import PLAN, open_virtual, raw, run_session


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def filled_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("filled") / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        for _ in range(3):
            run_session(store, clock, samples=600)
    return path


@pytest.fixture
def filled(filled_once: Path, tmp_path: Path) -> Path:
    """A private copy of a closed log with some sessions (a few hundred kB)."""
    path = tmp_path / "log.sqlite3"
    shutil.copy(filled_once, path)
    return path


# --------------------------------------------------------------------------- permissions


@pytest.mark.usefixtures("permissive_umask")
def test_database_wal_and_directory_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "log.sqlite3"
    clock = VirtualClock()
    store = open_virtual(path, clock)
    try:
        run_session(store, clock)
        assert mode(path.parent) == 0o700
        for file in (path, path.with_name("log.sqlite3-wal"), path.with_name("log.sqlite3-shm")):
            assert file.exists(), file
            assert mode(file) == 0o600, file
        assert mode(path.with_name("log.sqlite3.lock")) == 0o600
    finally:
        store.close()
    assert mode(path) == 0o600


def test_loose_permissions_are_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    Store.open(path).close()
    os.chmod(path, 0o644)
    Store.open(path).close()
    assert mode(path) == 0o600


def test_connections_use_wal_and_full_synchronous_commits(tmp_path: Path) -> None:
    with Store.open(tmp_path / "log.sqlite3") as store, store._reading() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


# --------------------------------------------------------------------------- where the file is


def test_path_comes_from_option_then_environment_then_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    assert default_db_path() == tmp_path / "xdg" / "tens-control" / "tens-control.sqlite3"
    assert resolve_db_path(None) == default_db_path()
    monkeypatch.setenv("TENS_CONTROL_DB", str(tmp_path / "env.sqlite3"))
    assert resolve_db_path(None) == tmp_path / "env.sqlite3"
    assert resolve_db_path(tmp_path / "opt.sqlite3") == tmp_path / "opt.sqlite3"
    with Store.open() as store:
        assert store.path == tmp_path / "env.sqlite3"
    monkeypatch.delenv("TENS_CONTROL_DB")
    with Store.open() as store:
        assert store.path == default_db_path()
        assert mode(store.path.parent) == 0o700


def test_a_missing_database_is_not_created_when_not_asked(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissingError, match="no database"):
        Store.open(tmp_path / "nope.sqlite3", create=False)
    assert not (tmp_path / "nope.sqlite3").exists()


# --------------------------------------------------------------------------- bad files


def _assert_refused_unchanged(path: Path, error: type[StoreError], match: str) -> None:
    before = digest(path)
    with pytest.raises(error, match=match) as raised:
        Store.open(path)
    assert "was not changed" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert digest(path) == before


def test_random_bytes_are_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    path.write_bytes(os.urandom(5000))
    _assert_refused_unchanged(path, NotATensControlDatabaseError, "not a tens-control database")


def test_an_empty_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    path.write_bytes(b"")
    _assert_refused_unchanged(path, NotATensControlDatabaseError, "not a tens-control")


def test_another_programs_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('hello')")
    conn.close()
    _assert_refused_unchanged(path, NotATensControlDatabaseError, "not a tens-control")


def test_a_truncated_database_is_refused_and_left_alone(filled: Path) -> None:
    data = filled.read_bytes()
    assert len(data) > 64 * 1024
    filled.write_bytes(data[: len(data) // 3])
    _assert_refused_unchanged(filled, DatabaseCorruptError, "truncated")


def test_a_database_cut_inside_its_header_is_refused(filled: Path) -> None:
    filled.write_bytes(filled.read_bytes()[:60])
    _assert_refused_unchanged(filled, DatabaseCorruptError, "truncated")


def test_a_damaged_page_is_reported_by_verify_and_the_file_left_alone(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(filled.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = os.urandom(4096)
    filled.write_bytes(bytes(data))
    before = digest(filled)
    code = main(["verify", "--db", str(filled)])
    captured = capsys.readouterr()
    assert code in (1, 2)
    assert "Traceback" not in captured.err + captured.out
    assert "BROKEN" in captured.out or "cannot be read" in captured.err
    assert digest(filled) == before


def test_corrupt_file_through_the_command_line_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    before = digest(path)
    assert main(["export", "--db", str(path), "-o", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tens-control: error: ")
    assert digest(path) == before
    assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------- schema versions


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with Store.open(path) as store:
        store.ensure_patient()
    with raw(path) as conn:
        conn.execute(
            "INSERT INTO schema_version VALUES (?, '2030-01-01T00:00:00.000000Z', 'future')",
            (schema.SCHEMA_VERSION + 1,),
        )
    before = digest(path)
    with pytest.raises(NewerSchemaError, match="newer tens-control") as raised:
        Store.open(path)
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in str(raised.value)
    assert digest(path) == before


def _add_locale(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE patients ADD COLUMN locale TEXT NOT NULL DEFAULT 'en'")


def _v1_database(path: Path) -> dict[str, tuple[float | None, float | None]]:
    """A schema version 1 database: two completed sessions with amplitude changes, one ended
    without any, and one left running (as after a crash). Written by this code, then taken
    back to the version 1 layout (no amplitude columns, no partial index, none of the tables and
    columns of versions 3 and 4, version 1).
    Returns the figures each session should get, by uid."""
    clock = VirtualClock()
    with open_virtual(path, clock, recover=False) as store:
        done = [run_session(store, clock), run_session(store, clock, samples=25)]
        quiet = store.begin_session(PLAN)
        clock.advance(5.0)
        store.end_session(quiet, EndReason.COMPLETED)
        running = store.begin_session(PLAN)
        for level in (2.0, 5.0):
            store.append_event(
                running,
                AmplitudeChanged(
                    time=0.0, channel=2, from_ma=0.0, to_ma=level, who=Actor.PATIENT, why="up"
                ),
            )
            clock.advance(2.0)
        store.append_event(running, StateChanged(from_state="running", to_state="paused"))
        store._active.discard(running)  # as if the process had died: recovery may close it
    with raw(path) as conn:
        conn.execute("DROP TABLE pgic_ratings")  # version 4
        conn.execute("DROP TABLE enrolments")  # version 3
        conn.execute("DROP TABLE anchors")
        conn.execute("ALTER TABLE sessions DROP COLUMN odometer_sessions")
        conn.execute("ALTER TABLE sessions DROP COLUMN odometer_seconds")
        conn.execute("DROP INDEX ix_events_review_kinds")
        conn.execute("ALTER TABLE sessions DROP COLUMN mean_amplitude_ma")
        conn.execute("ALTER TABLE sessions DROP COLUMN max_amplitude_ma")
        conn.execute("UPDATE schema_version SET version = 1")
    assert inspect_file(path) == 1
    # run_session: 1, 2, 3, 4 mA for 1 s each (samples=25: 1, 2 for 1 s and 3 for 0.5 s);
    # the running one ends (host crash) at its last event: 2 mA for 2 s, 5 mA for 2 s
    return {
        done[0]: (2.5, 4.0),
        done[1]: ((1.0 + 2.0 + 3.0 * 0.5) / 2.5, 3.0),
        quiet: (None, None),
        running: (3.5, 5.0),
    }


def _rows(path: Path, table: str, columns: str = "*") -> list[tuple[object, ...]]:
    with raw(path) as conn:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


V1_SESSION_COLUMNS = (
    "id, uid, patient_id, device_id, program, plan, planned_minutes, prescription_version, "
    "simulator, started_at, started_mono, ended_at, ended_mono, end_reason"
)


def _fresh_sql(tmp_path: Path, name: str) -> str:
    """The SQL of table or index ``name`` in a database created by this version."""
    path = tmp_path / "fresh" / "log.sqlite3"
    if not path.exists():
        path.parent.mkdir()
        with Store.open(path):
            pass
    with raw(path) as conn:
        return str(
            conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
        )


def test_a_version_1_database_is_migrated_with_a_backup_and_still_verifies(
    tmp_path: Path,
) -> None:
    """The real steps 1 -> 2 -> 3 -> 4: amplitude columns added and filled from the log, the
    partial index created, the enrolment and anchor tables and the odometer columns added, the
    PGIC table added; nothing else changed, every chain still verifies."""
    path = tmp_path / "log.sqlite3"
    expected = _v1_database(path)
    before = {
        table: _rows(path, table)
        for table in ("patients", "chains", "events", "telemetry", "pain_ratings", "devices")
    }
    sessions_before = _rows(path, "sessions", V1_SESSION_COLUMNS)
    with Store.open(path, recover=False) as store:
        assert inspect_file(path) == schema.SCHEMA_VERSION == 4
        for table, rows in before.items():
            assert _rows(path, table) == rows, table
        assert _rows(path, "sessions", V1_SESSION_COLUMNS) == sessions_before
        report = store.verify()
        assert report.ok, report.summary()
    with raw(path) as conn:
        versions = conn.execute("SELECT version, description FROM schema_version").fetchall()
        figures = {
            uid: (mean_ma, max_ma)
            for uid, mean_ma, max_ma, ended in conn.execute(
                "SELECT uid, mean_amplitude_ma, max_amplitude_ma, ended_at FROM sessions"
            )
            if ended is not None
        }
        index_sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_events_review_kinds'"
        ).fetchone()[0]
    assert [v for v, _ in versions] == [1, 2, 3, 4]
    assert versions[1][1] == migrations.STEPS[1][0]
    assert versions[2][1] == migrations.STEPS[2][0]
    assert versions[3][1] == migrations.STEPS[3][0]
    with raw(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"odometer_sessions", "odometer_seconds"} <= columns
    assert {"enrolments", "anchors", "ix_enrolment_patient_at"} <= tables
    assert {"pgic_ratings", "ix_pgic_patient_at"} <= tables
    assert index_sql == _fresh_sql(tmp_path, "ix_events_review_kinds")
    assert "WHERE kind IN ('comms_lost', 'fault', 'lead_off', 'output_mismatch', 'rejected')" in (
        index_sql
    )
    assert len(figures) == 3  # the running session has no end, so no figures yet
    for uid, (mean_ma, max_ma) in figures.items():
        want_mean, want_max = expected[uid]
        assert mean_ma == (None if want_mean is None else pytest.approx(want_mean, abs=1e-3)), uid
        assert max_ma == want_max, uid
    backup = migrations.backup_path(path, 1)
    assert backup.exists()
    assert mode(backup) == 0o600
    assert inspect_file(backup) == 1
    # the next start closes the crashed session and stores its figures too
    with Store.open(path) as store:
        running = [uid for uid in expected if uid not in figures]
        assert store.verify().ok
    with raw(path) as conn:
        row = conn.execute(
            "SELECT mean_amplitude_ma, max_amplitude_ma, end_reason FROM sessions WHERE uid = ?",
            (running[0],),
        ).fetchone()
    assert row == (
        pytest.approx(expected[running[0]][0], abs=1e-3),
        expected[running[0]][1],
        "host_crash",
    )


def test_the_migrated_figures_are_those_a_new_database_stores(tmp_path: Path) -> None:
    """Backfilled (migration) and stored-at-end figures agree with each other and with the
    figures computed from the log."""
    path = tmp_path / "log.sqlite3"
    _v1_database(path)
    with Store.open(path, recover=False) as store, store.reading() as conn:
        stored = {
            int(sid): (mean_ma, max_ma)
            for sid, mean_ma, max_ma in conn.exec_driver_sql(
                "SELECT id, mean_amplitude_ma, max_amplitude_ma FROM sessions "
                "WHERE ended_at IS NOT NULL AND max_amplitude_ma IS NOT NULL"
            )
        }
        assert stored == amplitude.compute(conn, stored)
        every = [int(x) for x in conn.exec_driver_sql("SELECT id FROM sessions").scalars()]
    fresh = tmp_path / "fresh.sqlite3"
    clock = VirtualClock()
    with open_virtual(fresh, clock) as store:
        run_session(store, clock)
    with raw(fresh) as conn:
        assert conn.execute(
            "SELECT mean_amplitude_ma, max_amplitude_ma FROM sessions"
        ).fetchall() == [(pytest.approx(2.5, abs=1e-3), 4.0)]
    assert len(every) == 4


def test_a_failing_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.sqlite3"
    _v1_database(path)
    before = digest(path)

    def broken(conn: Connection) -> None:
        _add_locale(conn)
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(migrations.STEPS, 1, ("broken step", broken))
    with pytest.raises(MigrationError, match="was not changed"):
        Store.open(path)
    assert inspect_file(path) == 1
    assert digest(path) == before
    with raw(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(patients)")]
    assert "locale" not in columns
    monkeypatch.undo()
    with Store.open(path, recover=False) as store:
        assert store.verify().ok
    assert inspect_file(path) == schema.SCHEMA_VERSION


def test_a_version_3_database_gets_the_pgic_table_and_the_governor_faults_in_its_index(
    tmp_path: Path,
) -> None:
    """The step 3 -> 4: an empty PGIC table, and the partial index recreated to hold the
    governor's fault kinds beside the old ``fault`` records; nothing else changed. PGIC answers
    stored afterwards are hash-chained like every record and verify."""
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    _v1_database(path)
    with open_virtual(path, clock, recover=False) as store:  # 1 -> 4
        sid = store.begin_session(PLAN)
        store.append_event(sid, Fault(fault="lead_off", channel=1))  # an old log's fault
        clock.advance(1.0)
        store.append_event(sid, LeadOff(time=1.0, channel=2, impedance_ohm=9000.0))
        clock.advance(1.0)
        store.append_event(sid, CommsLost(time=2.0))
        store.end_session(sid, EndReason.COMMS_LOST)
    with raw(path) as conn:  # back to version 3
        conn.execute("DROP TABLE pgic_ratings")
        conn.execute("DROP INDEX ix_events_review_kinds")
        conn.execute(
            "CREATE INDEX ix_events_review_kinds ON events (chain_id, wall_time) "
            "WHERE kind IN ('fault', 'rejected')"
        )
        conn.execute("DELETE FROM schema_version WHERE version = 4")
    assert inspect_file(path) == 3
    before = {table: _rows(path, table) for table in ("events", "sessions", "pain_ratings")}
    with Store.open(path, recover=False) as store:
        assert inspect_file(path) == 4
        for table, rows in before.items():
            assert _rows(path, table) == rows, table
        store.add_pgic(2, at=datetime(2026, 3, 1, 20, tzinfo=UTC))
        store.add_pgic(None, at=datetime(2026, 3, 8, 20, tzinfo=UTC))
        assert [r.value for r in store.pgic_ratings()] == [2, None]
        assert store.verify().ok
    with raw(path) as conn:
        for name in ("ix_events_review_kinds", "pgic_ratings", "ix_pgic_patient_at"):
            (sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
            ).fetchone()
            if name != "pgic_ratings":  # the table's text differs in layout, not in meaning
                assert sql == _fresh_sql(tmp_path, name), name
        query = (
            "SELECT e.kind FROM events AS e JOIN chains AS c ON c.id = e.chain_id "
            f"WHERE c.patient_id = 1 AND {schema.review_kinds_sql('e')} ORDER BY e.wall_time"
        )
        kinds = [r[0] for r in conn.execute(query)]
    assert kinds == ["fault", "lead_off", "comms_lost"]  # the old fault and the new kinds
    with raw(path) as conn:
        conn.execute("UPDATE pgic_ratings SET value = 1 WHERE value = 2")  # an edit
    with Store.open(path, recover=False) as store:
        assert not store.verify().ok


def test_a_version_without_a_migration_step_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.sqlite3"
    _v1_database(path)
    before = digest(path)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 5)
    with pytest.raises(MigrationError, match="no step from version 4"):
        Store.open(path)
    assert digest(path) == before


def test_the_review_queries_use_the_partial_index_only_for_faults(tmp_path: Path) -> None:
    """Faults and refused requests are found through the partial index; the amplitude query
    stays on the per-session index (a plain index on kind made SQLite pick it: 30x slower)."""
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        run_session(store, clock)
    with raw(path) as conn:
        faults = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT e.id FROM events AS e JOIN chains AS c "
                f"ON c.id = e.chain_id WHERE c.patient_id = 1 AND {schema.review_kinds_sql('e')} "
                "ORDER BY e.wall_time, e.id"
            )
        )
        amp = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN "
                + amplitude.AMPLITUDE_SQL.format(where="e.session_id IN (1, 2)")
            )
        )
    assert "ix_events_review_kinds" in faults
    assert "ix_events_review_kinds" not in amp
    assert "ix_events_session" in amp


def test_a_read_only_store_reads_and_never_writes(filled: Path) -> None:
    before = digest(filled)
    with Store.open(filled, read_only=True) as store:
        assert store.read_only
        assert len(store.sessions()) == 3
        assert store.verify().ok
        with pytest.raises(StoreError, match="read-only"):
            store.ensure_patient("p-9")
        with pytest.raises(StoreError, match="read-only"):
            store.begin_session(PLAN)
        with pytest.raises(StoreError, match="read-only"):
            store.delete_patient("patient-1")
        with store.reading() as conn, pytest.raises(DBAPIError):
            conn.exec_driver_sql("DELETE FROM pain_ratings")
    assert digest(filled) == before
    assert not filled.with_name(filled.name + ".lock").exists()
    with pytest.raises(DatabaseMissingError):
        Store.open(filled.with_name("nope.sqlite3"), read_only=True)
