"""Durability classes, batch commit timing (virtual clock), sealing, and crash recovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.base import Telemetry
from drivers.clock import RealClock, VirtualClock
from tens_control.store import (
    Actor,
    AmplitudeChanged,
    EndReason,
    Note,
    StateChanged,
    Store,
    StoreClosedError,
)
from tens_control.store.records import SessionEnded, TelemetrySealed
from tests.store_support import DEVICE, PLAN, count, open_virtual, raw

REPO = Path(__file__).resolve().parent.parent


def committed_kinds(path: Path) -> list[str]:
    """Event kinds a separate connection sees (i.e. committed), in chain order."""
    with raw(path) as conn:
        return [r[0] for r in conn.execute("SELECT kind FROM events ORDER BY chain_id, seq")]


def test_a_safety_event_is_committed_before_append_returns(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with open_virtual(path) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN, device=DEVICE)
        assert "session_started" in committed_kinds(path)
        stored = store.append_event(
            sid,
            AmplitudeChanged(time=0.0, channel=1, from_ma=0, to_ma=1, who=Actor.PATIENT, why="up"),
        )
        assert committed_kinds(path)[-1] == "amplitude_changed"
        assert stored.seq == len(committed_kinds(path))
        store.end_session(sid, EndReason.EMERGENCY_STOP)
        assert committed_kinds(path)[-1] == "session_ended"


def test_non_safety_events_are_batched_but_keep_their_place_in_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        assert store.append_event(sid, Note(text="screen shown"), safety=False) is None
        clock.advance(0.2)
        assert "note" not in committed_kinds(path)
        clock.advance(0.05)
        assert committed_kinds(path)[-1] == "note"
        # a queued event is written before any later safety event
        store.append_event(sid, Note(text="prompt shown"), safety=False)
        store.append_event(sid, StateChanged(from_state="running", to_state="paused"))
        assert committed_kinds(path)[-2:] == ["note", "state_changed"]
        store.append_event(sid, Note(text="last words"), safety=False)
    assert committed_kinds(path)[-1] == "note"  # close commits the queue


def test_telemetry_is_committed_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        writer = store.telemetry_writer(sid)
        writer.add(Telemetry(clock.now(), 1, 1.0, 1.0, 500.0))
        clock.advance(0.1)
        writer.add(Telemetry(clock.now(), 1, 1.0, 1.0, 500.0))
        clock.advance(0.149)
        assert count(path, "telemetry") == 0
        assert writer.pending == 2
        clock.advance(0.001)  # 250 ms after the first sample
        assert count(path, "telemetry") == 2
        assert writer.pending == 0
        # a steady 10 Hz stream is never more than 250 ms behind
        for _ in range(50):
            writer.add(Telemetry(clock.now(), 1, 2.0, 2.0, 500.0))
            clock.advance(0.1)
            assert writer.pending <= 3
            assert count(path, "telemetry") + writer.pending == writer.committed + writer.pending
        assert writer.committed >= 50


def test_a_full_batch_is_committed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock, batch_rows=100) as store:
        store.ensure_patient()
        writer = store.telemetry_writer(store.begin_session(PLAN))
        writer.add_many([Telemetry(0.0, 1, 0.0, 0.0, 500.0)] * 99)
        assert count(path, "telemetry") == 0
        writer.add(Telemetry(0.0, 1, 0.0, 0.0, 500.0))
        assert count(path, "telemetry") == 100


def test_closing_the_store_commits_and_seals_pending_telemetry(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    store = open_virtual(path, clock)
    store.ensure_patient()
    sid = store.begin_session(PLAN)
    writer = store.telemetry_writer(sid)
    for i in range(7):
        writer.add(Telemetry(i * 0.01, 1, 3.0, 2.9, 480.0))
    store.close()
    assert count(path, "telemetry") == 7
    assert committed_kinds(path)[-1] == "telemetry_sealed"
    with Store.open(path, recover=False) as again:
        report = again.verify()
        assert report.ok, report.summary()
        assert (report.telemetry_rows, report.unsealed_rows) == (7, 0)


def test_segments_are_sealed_by_time_by_size_and_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock, seal_interval_s=10.0, seal_rows=150) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        writer = store.telemetry_writer(sid)
        for _ in range(25 * 10):  # 25 s at 10 Hz, one channel
            writer.add(Telemetry(clock.now(), 1, 5.0, 5.0, 500.0))
            clock.advance(0.1)
        sealed_so_far = [e.record for e in store.events(session=sid, kinds=["telemetry_sealed"])]
        counts = [s.count for s in sealed_so_far if isinstance(s, TelemetrySealed)]
        # 10 s of 10 Hz samples, give or take the commit that crosses the 10 s mark
        assert len(counts) == 2
        assert all(100 <= n <= 105 for n in counts)
        writer_again = store.telemetry_writer(sid)
        assert writer_again is writer
        store.end_session(sid, EndReason.COMPLETED)
        seals = [
            e.record
            for e in store.events(session=sid, kinds=["telemetry_sealed"])
            if isinstance(e.record, TelemetrySealed)
        ]
        assert [s.segment for s in seals] == [1, 2, 3]
        assert sum(s.count for s in seals) == 250
        assert store.events(session=sid)[-1].kind == "session_ended"
        writer.add(Telemetry(clock.now(), 1, 5.0, 5.0, 500.0))
        assert writer.dropped == 1
        report = store.verify()
        assert report.ok
        assert (report.telemetry_rows, report.telemetry_segments) == (250, 3)

    with open_virtual(tmp_path / "rows.sqlite3", clock, seal_rows=150) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        writer = store.telemetry_writer(sid)
        writer.add_many([Telemetry(0.0, 1, 1.0, 1.0, 500.0)] * 400)
        store.flush()
        seal = store.events(session=sid, kinds=["telemetry_sealed"])[0].record
        assert isinstance(seal, TelemetrySealed)
        assert seal.count == 400  # sealed at the first commit at or above seal_rows


def test_the_background_flusher_commits_in_real_time(tmp_path: Path) -> None:
    """With a real clock a background thread commits; bounded wait, no timing assertion."""
    path = tmp_path / "log.sqlite3"
    with Store.open(path, clock=RealClock(), flush_interval_s=0.02) as store:
        store.ensure_patient()
        writer = store.telemetry_writer(store.begin_session(PLAN))
        writer.add(Telemetry(0.0, 1, 1.0, 1.0, 500.0))
        deadline = time.monotonic() + 30
        while count(path, "telemetry") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert count(path, "telemetry") == 1


def test_using_a_closed_store_is_a_clear_error(tmp_path: Path) -> None:
    store = open_virtual(tmp_path / "log.sqlite3")
    store.ensure_patient()
    sid = store.begin_session(PLAN)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError, match="closed"):
        store.append_event(sid, Note(text="too late"))


# --------------------------------------------------------------------------- crash recovery

_CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime
    from drivers.base import Telemetry
    from drivers.clock import VirtualClock
    from tens_control.store import Actor, AmplitudeChanged, StateChanged, Store
    from tens_control.store import virtual_wall_clock
    from tests.store_support import DEVICE, PLAN

    clock = VirtualClock()
    store = Store.open(sys.argv[1], clock=clock,
                       wall=virtual_wall_clock(clock, datetime(2025, 3, 3, 9, tzinfo=UTC)))
    store.ensure_patient()
    sid = store.begin_session(PLAN, device=DEVICE)
    store.append_event(sid, StateChanged(from_state="ready", to_state="running"))
    writer = store.telemetry_writer(sid)
    for i in range(30):
        writer.add(Telemetry(clock.now(), 1, float(i // 10), float(i // 10), 500.0))
        if i % 10 == 0:
            store.append_event(sid, AmplitudeChanged(
                time=0.0,
                channel=1, from_ma=i // 10, to_ma=i // 10 + 1, who=Actor.PATIENT, why="up"))
        clock.advance(0.1)
    clock.advance(1.0)
    print(sid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_process_leaves_a_session_closed_as_host_crash_at_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr
    sid = proc.stdout.strip()
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = conn.execute(
            "SELECT seq, kind, hash FROM events ORDER BY chain_id, seq"
        ).fetchall()
        last_wall = conn.execute(
            "SELECT wall_time FROM events WHERE session_id IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
    assert [k for _, k, _ in before].count("amplitude_changed") == 3
    assert count(path, "telemetry") == 30  # committed within 250 ms, though not yet sealed

    with Store.open(path) as store:
        info = store.session(sid)
        assert info.end_reason is EndReason.HOST_CRASH
        assert info.ended_at == datetime.fromisoformat(last_wall)
        after = store.events(session=sid)
        ended = after[-1].record
        assert isinstance(ended, SessionEnded)
        assert ended.recovered
        assert ended.reason is EndReason.HOST_CRASH
        seal = after[-2].record
        assert isinstance(seal, TelemetrySealed)
        assert seal.recovered
        assert seal.count == 30
        report = store.verify()
        assert report.ok, report.summary()
        assert report.telemetry_rows == 30
    with raw(path) as conn:
        kept = conn.execute("SELECT seq, kind, hash FROM events ORDER BY chain_id, seq").fetchall()
    assert kept[: len(before)] == before  # every committed safety event is still there
    with Store.open(path) as store:
        assert store.recover_unfinished_sessions() == []  # nothing left to recover


def test_a_session_of_a_live_process_is_not_taken_for_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    running = Store.open(path)
    try:
        running.ensure_patient()
        sid = running.begin_session(PLAN)
        with Store.open(path) as other:  # e.g. a second window, while a session runs
            assert other.recover_unfinished_sessions() == []
            assert other.session(sid).ended_at is None
        running.end_session(sid, EndReason.COMPLETED)
        assert running.session(sid).end_reason is EndReason.COMPLETED
    finally:
        running.close()


def test_a_session_left_open_by_a_closed_store_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        clock.advance(90)
        event = store.append_event(sid, Note(text="last thing logged"))
    with Store.open(path) as store:
        info = store.session(sid)
        assert info.end_reason is EndReason.HOST_CRASH
        assert info.ended_at == event.wall_time
        assert info.minutes == pytest.approx(1.5)
        assert store.verify().ok
    assert datetime.now(UTC) > event.wall_time  # recovered with the last event's time, not now


def test_odd_numbers_in_telemetry_are_stored_so_that_the_log_still_verifies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        writer = store.telemetry_writer(sid)
        writer.add(Telemetry(1, 1, -0.0, float("nan"), float("inf")))
        writer.add(Telemetry(1.5, 2, 3, 2, 400))
        store.end_session(sid, EndReason.COMPLETED)
        assert store.telemetry(sid) == [
            Telemetry(1.0, 1, 0.0, None, None),
            Telemetry(1.5, 2, 3.0, 2.0, 400.0),
        ]
        report = store.verify()
        assert report.ok, report.summary()
        assert report.telemetry_rows == 2


def test_no_stray_timer_is_left_on_a_virtual_clock_after_a_session(tmp_path: Path) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        writer = store.telemetry_writer(sid)
        writer.add(Telemetry(clock.now(), 1, 1.0, 1.0, 500.0))
        store.append_event(sid, Note(text="queued"), safety=False)
        assert clock.pending() == 1
        store.end_session(sid, EndReason.COMPLETED)
        assert clock.pending() == 0
