"""Each session's mean and highest amplitude, derived from its log and stored with it (schema
version 2): written at the end, on crash recovery, on import and after a late amplitude event;
never part of the hash chain; always equal to what the log gives."""

from __future__ import annotations

from pathlib import Path

from drivers.clock import VirtualClock
from tens_control.store import (
    Actor,
    AmplitudeChanged,
    EndReason,
    Store,
    amplitude,
)
from tests.store_support import PLAN, open_virtual, raw, run_session

Figures = tuple[float | None, float | None]


def about(figures: Figures, mean_ma: float, max_ma: float) -> bool:
    """Mean to the microsecond resolution of the log's times, highest exactly."""
    got_mean, got_max = figures
    return got_mean is not None and abs(got_mean - mean_ma) < 1e-3 and got_max == max_ma


def stored(path: Path) -> dict[str, Figures]:
    with raw(path) as conn:
        return {
            str(uid): (mean_ma, max_ma)
            for uid, mean_ma, max_ma in conn.execute(
                "SELECT uid, mean_amplitude_ma, max_amplitude_ma FROM sessions"
            )
        }


def from_log(store: Store) -> dict[str, Figures]:
    """The figures computed from the log now, by session uid."""
    with store.reading() as conn:
        uid_of = {int(i): str(u) for i, u in conn.exec_driver_sql("SELECT id, uid FROM sessions")}
        computed = amplitude.compute(conn, uid_of)
    return {uid_of[sid]: figures for sid, figures in computed.items()}


def test_end_session_stores_the_figures_and_a_running_session_has_none(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        done = run_session(store, clock)  # 1, 2, 3, 4 mA for 1 s each
        running = store.begin_session(PLAN)
        store.append_event(
            running,
            AmplitudeChanged(
                time=0.0, channel=1, from_ma=0.0, to_ma=3.0, who=Actor.PATIENT, why="up"
            ),
        )
        clock.advance(1.0)
        figures = stored(path)
        assert about(figures[done], 2.5, 4.0)
        assert figures[running] == (None, None)
        assert figures[done] == from_log(store)[done]
        store.end_session(running, EndReason.STOPPED_BY_USER)
        assert about(stored(path)[running], 3.0, 3.0)


def test_a_session_without_amplitude_changes_has_no_figures(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        clock.advance(3.0)
        store.end_session(sid, EndReason.LEAD_OFF)
    assert stored(path)[sid] == (None, None)


def test_a_late_amplitude_event_updates_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        sid = run_session(store, clock)
        store.append_event(
            sid,
            AmplitudeChanged(
                time=0.0, channel=1, from_ma=4.0, to_ma=9.0, who=Actor.SYSTEM, why="late"
            ),
        )
        assert stored(path)[sid][1] == 9.0
        assert stored(path)[sid] == from_log(store)[sid]


def test_crash_recovery_stores_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock, recover=False) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN)
        for level in (2.0, 6.0):
            store.append_event(
                sid,
                AmplitudeChanged(time=0.0, channel=1, from_ma=0.0, to_ma=level, who=Actor.PATIENT),
            )
            clock.advance(1.0)
        store.append_event(
            sid, AmplitudeChanged(time=0.0, channel=1, from_ma=6.0, to_ma=0.0, who=Actor.SYSTEM)
        )
        store._active.discard(sid)  # as if the process had died
    assert stored(path)[sid] == (None, None)
    with open_virtual(path, clock) as store:
        assert store.session(sid).end_reason == EndReason.HOST_CRASH
        assert about(stored(path)[sid], 4.0, 6.0)
        assert stored(path)[sid] == from_log(store)[sid]


def test_import_stores_the_figures_and_they_are_not_exported(tmp_path: Path) -> None:
    home = tmp_path / "home.sqlite3"
    clock = VirtualClock()
    with open_virtual(home, clock) as store:
        sids = [run_session(store, clock), run_session(store, clock, samples=25)]
        bundle = store.export_patient()
    assert not any("mean_amplitude_ma" in s or "max_amplitude_ma" in s for s in bundle["sessions"])
    clinic = tmp_path / "clinic.sqlite3"
    with Store.open(clinic) as store:
        store.import_bundle(bundle)
        assert store.verify().ok
        figures = stored(clinic)
        assert figures == {sid: stored(home)[sid] for sid in sids}
        assert figures == from_log(store)


def test_editing_the_figures_is_caught_by_verify(tmp_path: Path) -> None:
    """Derived, not hash-chained, and never trusted: verify recomputes them from the log, so an
    edited figure the review would show is named (issue 13's measured case)."""
    path = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        sid = run_session(store, clock)
        assert store.verify().ok
    with raw(path) as conn:
        conn.execute("UPDATE sessions SET max_amplitude_ma = 95.0")
    with Store.open(path, read_only=True) as store:
        report = store.verify()
    assert not report.ok
    first = report.first
    assert first is not None
    assert (first.kind, first.table, first.session) == ("edited", "sessions", sid)
    assert "sessions.max_amplitude_ma" in str(first)
    assert "95.0" in str(first)
    with raw(path) as conn:
        conn.execute("UPDATE sessions SET max_amplitude_ma = 4.0, mean_amplitude_ma = 99")
    with Store.open(path, read_only=True) as store:
        report = store.verify()
    assert [p.message.split(" of ")[0] for p in report.problems] == [
        "edited record: sessions.mean_amplitude_ma"
    ]
