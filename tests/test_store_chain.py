"""The hash chain and the cross-checks name the first edited, inserted or deleted record.

Every test builds a real log, closes it, tampers with the SQLite file directly through the
``sqlite3`` module (as someone with the file would), and runs ``verify``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.clock import VirtualClock
from tens_control.cli import main
from tens_control.store import Store, VerifyReport
from tens_control.store.canonical import canonical_json, chain_hash, event_body
from tests.store_support import open_virtual, raw, run_session


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed log with two patients, three sessions, ratings and telemetry."""
    path = tmp_path_factory.mktemp("pristine") / "log.sqlite3"
    clock = VirtualClock()
    store = open_virtual(path, clock)
    run_session(store, clock)
    clock.advance(3600)
    run_session(store, clock)
    store.ensure_patient("p-2")
    store.default_patient = "p-2"
    run_session(store, clock)
    store.close()
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture
def log(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "log.sqlite3"
    shutil.copy(pristine, copy)
    return copy


def verify(path: Path) -> VerifyReport:
    with Store.open(path, create=False, recover=False) as store:
        return store.verify()


def events(path: Path) -> list[dict[str, Any]]:
    """Events of the first chain, in sequence order, with their chain and session uids."""
    with raw(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT e.*, c.uid AS chain_uid, s.uid AS session_uid FROM events e "
            "JOIN chains c ON c.id = e.chain_id LEFT JOIN sessions s ON s.id = e.session_id "
            "WHERE e.chain_id = 1 ORDER BY e.seq"
        ).fetchall()
    return [dict(row) for row in rows]


def of_kind(path: Path, kind: str, n: int = 0) -> dict[str, Any]:
    return [e for e in events(path) if e["kind"] == kind][n]


def rehash(row: dict[str, Any], prev_hash: str) -> str:
    body = event_body(
        chain=row["chain_uid"],
        seq=row["seq"],
        session=row["session_uid"],
        wall_time=row["wall_time"],
        mono_time=row["mono_time"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
    )
    return chain_hash(prev_hash, body)


def shift_seqs_up(conn: sqlite3.Connection, after_seq: int) -> None:
    """Make room at ``after_seq + 1`` (two steps, around the unique (chain, seq) index)."""
    conn.execute("UPDATE events SET seq = -(seq + 1) WHERE chain_id = 1 AND seq > ?", (after_seq,))
    conn.execute("UPDATE events SET seq = -seq WHERE chain_id = 1 AND seq < 0")


def test_an_untouched_log_verifies(log: Path) -> None:
    report = verify(log)
    assert report.ok, report.summary()
    assert report.chains == 2
    assert report.sessions == 3
    assert report.telemetry_rows == 3 * 80
    assert report.unsealed_rows == 0
    assert "intact" in report.summary()


def test_an_edited_event_payload_is_named(log: Path) -> None:
    target = of_kind(log, "amplitude_changed", 1)
    payload = json.loads(target["payload"])
    payload["to_ma"] = 30.0
    with raw(log) as conn:
        conn.execute(
            "UPDATE events SET payload = ? WHERE id = ?", (canonical_json(payload), target["id"])
        )
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.table, first.seq, first.row_id) == (
        "edited",
        "events",
        target["seq"],
        target["id"],
    )
    assert first.session == target["session_uid"]
    assert f"event seq {target['seq']}" in str(first)
    assert "does not match its hash" in str(first)


@pytest.mark.parametrize("column", ["wall_time", "mono_time", "kind", "session_id"])
def test_editing_any_hashed_column_is_detected(log: Path, column: str) -> None:
    target = of_kind(log, "state_changed")
    value = {"wall_time": "2025-03-03T08:00:00.000000Z", "mono_time": 1.5, "kind": "note"}
    with raw(log) as conn:
        if column == "session_id":
            conn.execute("UPDATE events SET session_id = 2 WHERE id = ?", (target["id"],))
        else:
            conn.execute(
                f"UPDATE events SET {column} = ? WHERE id = ?", (value[column], target["id"])
            )
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.seq) == ("edited", target["seq"])


def test_an_edited_and_rehashed_event_is_named(log: Path) -> None:
    rows = events(log)
    target = next(r for r in rows if r["kind"] == "amplitude_changed")
    payload = json.loads(target["payload"])
    payload["why"] = "clinician raised it"
    target["payload"] = canonical_json(payload)
    with raw(log) as conn:
        conn.execute(
            "UPDATE events SET payload = ?, hash = ? WHERE id = ?",
            (target["payload"], rehash(target, target["prev_hash"]), target["id"]),
        )
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.seq, first.row_id) == ("edited", target["seq"], target["id"])
    assert "re-hashed" in str(first)


def test_a_deleted_event_is_named(log: Path) -> None:
    target = of_kind(log, "amplitude_changed", 2)
    with raw(log) as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (target["id"],))
    first = verify(log).first
    assert first is not None
    assert first.kind == "deleted"
    assert f"missing event seq {target['seq']} " in str(first)
    assert first.seq == target["seq"] + 1


def test_a_deleted_run_of_events_is_named(log: Path) -> None:
    rows = events(log)
    with raw(log) as conn:
        conn.execute("DELETE FROM events WHERE chain_id = 1 AND seq IN (5, 6, 7)")
    first = verify(log).first
    assert first is not None
    assert first.kind == "deleted"
    assert "missing event seq 5..7" in str(first)
    assert first.row_id == rows[7]["id"]


def test_deleting_the_last_event_is_detected_against_the_chain_head(log: Path) -> None:
    last = events(log)[-1]
    with raw(log) as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (last["id"],))
    first = verify(log).first
    assert first is not None
    assert first.kind == "deleted"
    assert f"seq {last['seq']} is missing" in str(first)


def test_a_deletion_with_renumbering_is_named(log: Path) -> None:
    target = of_kind(log, "amplitude_changed", 1)
    with raw(log) as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (target["id"],))
        conn.execute(
            "UPDATE events SET seq = seq - 1 WHERE chain_id = 1 AND seq > ?", (target["seq"],)
        )
        conn.execute("UPDATE chains SET head_seq = head_seq - 1 WHERE id = 1")
    first = verify(log).first
    assert first is not None
    assert first.kind == "deleted"
    assert first.seq == target["seq"]


def test_an_event_appended_after_the_head_is_named_inserted(log: Path) -> None:
    last = events(log)[-1]
    with raw(log) as conn:
        cursor = conn.execute(
            "INSERT INTO events (chain_id, seq, session_id, wall_time, mono_time, kind, payload, "
            'prev_hash, hash) VALUES (1, ?, NULL, ?, 0.0, \'note\', \'{"data":{},"text":"x"}\', '
            "?, ?)",
            (last["seq"] + 1, last["wall_time"], last["hash"], "f" * 64),
        )
        new_id = cursor.lastrowid
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.seq, first.row_id) == ("inserted", last["seq"] + 1, new_id)
    assert "beyond the chain's recorded head" in str(first)


def test_a_well_forged_event_inserted_mid_chain_is_named(log: Path) -> None:
    """The forger makes room in the sequence and gives the new event a correct hash linking
    to its predecessor; the event after it still links past it."""
    rows = events(log)
    before = next(r for r in rows if r["kind"] == "amplitude_changed")
    forged = {
        "chain_uid": before["chain_uid"],
        "seq": before["seq"] + 1,
        "session_uid": before["session_uid"],
        "wall_time": before["wall_time"],
        "mono_time": before["mono_time"],
        "kind": "amplitude_changed",
        "payload": canonical_json(
            {"channel": 1, "from_ma": 1.0, "to_ma": 60.0, "who": "patient", "why": "up"}
        ),
    }
    forged_hash = rehash(forged, before["hash"])
    with raw(log) as conn:
        shift_seqs_up(conn, before["seq"])
        conn.execute("UPDATE chains SET head_seq = head_seq + 1 WHERE id = 1")
        cursor = conn.execute(
            "INSERT INTO events (chain_id, seq, session_id, wall_time, mono_time, kind, payload, "
            "prev_hash, hash) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                forged["seq"],
                before["session_id"],
                forged["wall_time"],
                forged["mono_time"],
                forged["kind"],
                forged["payload"],
                before["hash"],
                forged_hash,
            ),
        )
        new_id = cursor.lastrowid
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.seq, first.row_id) == ("inserted", forged["seq"], new_id)
    assert "links past it" in str(first)


def test_a_crudely_inserted_event_mid_chain_is_named(log: Path) -> None:
    before = of_kind(log, "state_changed")
    with raw(log) as conn:
        shift_seqs_up(conn, before["seq"])
        cursor = conn.execute(
            "INSERT INTO events (chain_id, seq, session_id, wall_time, mono_time, kind, payload, "
            "prev_hash, hash) VALUES (1, ?, NULL, ?, 0.0, 'note', '{}', ?, ?)",
            (before["seq"] + 1, before["wall_time"], before["hash"], "0" * 64),
        )
        new_id = cursor.lastrowid
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.row_id) == ("inserted", new_id)


def test_a_whole_deleted_session_is_detected(log: Path) -> None:
    with raw(log) as conn:
        sid = conn.execute("SELECT id FROM sessions ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM telemetry WHERE session_id = ?", (sid,))
        conn.execute("DELETE FROM pain_ratings WHERE session_id = ?", (sid,))
        conn.execute("DELETE FROM events WHERE session_id = ?", (sid,))
        conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
    first = verify(log).first
    assert first is not None
    assert first.kind == "deleted"
    assert first.table == "events"


def test_an_edited_pain_rating_is_named(log: Path) -> None:
    with raw(log) as conn:
        row_id, uid = conn.execute(
            "SELECT id, uid FROM pain_ratings WHERE timing = 'after' ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE pain_ratings SET nrs = 0 WHERE id = ?", (row_id,))
    report = verify(log)
    first = report.first
    assert first is not None
    assert (first.kind, first.table, first.record) == ("edited", "pain_ratings", uid)
    assert "(nrs)" in str(first)
    assert len(report.problems) == 1


def test_a_rating_moved_to_another_patient_is_named(log: Path) -> None:
    with raw(log) as conn:
        row_id, uid = conn.execute("SELECT id, uid FROM pain_ratings ORDER BY id").fetchone()
        conn.execute("UPDATE pain_ratings SET patient_id = 2 WHERE id = ?", (row_id,))
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.record) == ("edited", uid)


def test_an_inserted_pain_rating_is_named(log: Path) -> None:
    with raw(log) as conn:
        conn.execute(
            "INSERT INTO pain_ratings (uid, patient_id, session_id, at, nrs, timing, pain, "
            "context, note) VALUES (?, 1, NULL, '2025-03-03T10:00:00.000000Z', 1, 'diary', "
            "'phantom', 'rest', '')",
            ("a" * 32,),
        )
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.table, first.record) == ("inserted", "pain_ratings", "a" * 32)


def test_a_deleted_pain_rating_is_named(log: Path) -> None:
    with raw(log) as conn:
        row_id, uid = conn.execute("SELECT id, uid FROM pain_ratings ORDER BY id").fetchone()
        conn.execute("DELETE FROM pain_ratings WHERE id = ?", (row_id,))
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.table, first.record) == ("deleted", "pain_ratings", uid)
    assert "is missing" in str(first)


def test_an_edited_session_end_is_named(log: Path) -> None:
    with raw(log) as conn:
        uid = conn.execute("SELECT uid FROM sessions ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("UPDATE sessions SET end_reason = 'stopped_by_user' WHERE uid = ?", (uid,))
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.table, first.session) == ("edited", "sessions", uid)
    assert "completed" in str(first)


def test_an_edited_session_plan_is_named(log: Path) -> None:
    with raw(log) as conn:
        uid, plan = conn.execute("SELECT uid, plan FROM sessions ORDER BY id LIMIT 1").fetchone()
        data = json.loads(plan)
        data["channels"][0]["area_cm2"] = 80.0
        conn.execute("UPDATE sessions SET plan = ? WHERE uid = ?", (json.dumps(data), uid))
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.table, first.session) == ("edited", "sessions", uid)
    assert "plan" in str(first)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("UPDATE telemetry SET set_ma = 70.0 WHERE id = 5", "edited"),
        ("DELETE FROM telemetry WHERE id = 5", "deleted"),
        (
            "INSERT INTO telemetry (session_id, segment, t, channel, set_ma) "
            "VALUES (1, 1, 3.95, 1, 60.0)",
            "inserted",
        ),
        (
            "INSERT INTO telemetry (session_id, segment, t, channel, set_ma) "
            "VALUES (1, 9, 3.95, 1, 60.0)",
            "inserted",
        ),
        ("DELETE FROM telemetry WHERE session_id = 1", "deleted"),
    ],
)
def test_tampered_telemetry_is_named(log: Path, sql: str, kind: str) -> None:
    with raw(log) as conn:
        conn.execute(sql)
    first = verify(log).first
    assert first is not None
    assert (first.kind, first.table) == (kind, "telemetry")


def test_verify_command_exit_codes(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--db", str(log)]) == 0
    assert "intact" in capsys.readouterr().out
    target = of_kind(log, "session_ended")
    with raw(log) as conn:
        conn.execute(
            "UPDATE events SET payload = replace(payload, 'completed', 'stopped_by_user') "
            "WHERE id = ?",
            (target["id"],),
        )
    assert main(["verify", "--db", str(log)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out
    assert f"edited record: event seq {target['seq']}" in out


def test_verify_command_on_a_missing_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--db", str(tmp_path / "nope.sqlite3")]) == 2
    err = capsys.readouterr().err
    assert "there is no database" in err
    assert "Traceback" not in err
    assert not (tmp_path / "nope.sqlite3").exists()


Tamper = Callable[[sqlite3.Connection, int], None]

_COLUMNS = ["seq", "session_id", "wall_time", "mono_time", "kind", "payload", "prev_hash", "hash"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    row=st.integers(min_value=0, max_value=10_000),
    column=st.sampled_from(_COLUMNS),
    value=st.one_of(
        st.integers(min_value=-5, max_value=500),
        st.text(max_size=20),
        st.floats(allow_nan=False),
        st.none(),
    ),
    action=st.sampled_from(["update", "delete", "replay"]),
)
def test_any_single_change_to_any_event_is_detected(
    pristine: Path,
    tmp_path: Path,
    row: int,
    column: str,
    value: object,
    action: str,
) -> None:
    path = tmp_path / f"h-{row}-{column}-{action}.sqlite3"
    shutil.copy(pristine, path)
    try:
        with raw(path) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
            target = ids[row % len(ids)]
            if action == "delete":
                conn.execute("DELETE FROM events WHERE id = ?", (target,))
            elif action == "replay":
                # a copy of an old event appended as the newest one, chain head moved to match
                conn.execute(
                    "INSERT INTO events (chain_id, seq, session_id, wall_time, mono_time, kind, "
                    "payload, prev_hash, hash) SELECT chain_id, (SELECT max(seq) + 1 FROM events "
                    "AS o WHERE o.chain_id = e.chain_id), session_id, wall_time, mono_time, kind, "
                    "payload, prev_hash, hash FROM events AS e WHERE id = ?",
                    (target,),
                )
                conn.execute(
                    "UPDATE chains SET head_seq = head_seq + 1 WHERE id = "
                    "(SELECT chain_id FROM events WHERE id = ?)",
                    (target,),
                )
            else:
                old = conn.execute(
                    f"SELECT {column} FROM events WHERE id = ?", (target,)
                ).fetchone()
                if old[0] == value:
                    return
                try:
                    conn.execute(f"UPDATE events SET {column} = ? WHERE id = ?", (value, target))
                except sqlite3.IntegrityError:
                    return  # the schema itself refused the change
        report = verify(path)
        assert not report.ok, f"{action} {column}={value!r} on event id {target} went unnoticed"
    finally:
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
