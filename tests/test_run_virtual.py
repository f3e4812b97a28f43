"""``tens-control run`` in this process on the in-process simulator in virtual time: whole
sessions in seconds, their log, every end reason it reports, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tens_control.cli import main
from tens_control.commands.run import status_line
from tens_control.store import EndReason, PainSite, RatingTime, Store


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


def _run(tmp_path: Path, *args: str) -> int:
    return main(["run", "--virtual-time", "--db", str(tmp_path / "db.sqlite3"), *args])


def _without_note(err: str) -> str:
    """Standard error without the note that a new database was created (each test's is)."""
    return "".join(
        line for line in err.splitlines(keepends=True) if "note: created a new database" not in line
    )


def test_a_whole_session_completes_and_is_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(
        tmp_path,
        "--program",
        "conventional",
        "--minutes",
        "2",
        "--pain-before",
        "7",
        "--pain-after",
        "4",
        "--target-ma",
        "6",
        "--channel",
        "1",
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.err == f"tens-control: note: created a new database at {tmp_path / 'db.sqlite3'}\n"
    lines = out.out.splitlines()
    status = [line for line in lines if line.startswith("time=")]
    assert len(status) >= 120  # one line a second
    assert status[0].startswith("time=0.0 state=running left_s=120.0 ch1_ma=0 ")
    assert any("ch1_ma=6 ch1_target_ma=6" in line for line in status)
    assert "simulator=yes" in lines[0]
    assert lines[-1].startswith("completed session=")
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        (session,) = store.sessions()
        assert session.end_reason is EndReason.COMPLETED
        assert session.program == "conventional"
        assert session.planned_minutes == 2.0
        before = session.rating(RatingTime.BEFORE, PainSite.PHANTOM)
        after = session.rating(RatingTime.AFTER, PainSite.PHANTOM)
        assert before is not None
        assert after is not None
        assert (before.nrs, after.nrs) == (7, 4)
        changes = [
            e.payload for e in store.events(session=session.uid) if e.kind == "amplitude_changed"
        ]
        assert max(float(p["to_ma"]) for p in changes) == 6.0
        assert {p["channel"] for p in changes} == {1}
        assert len(store.telemetry(session.uid)) > 2 * 10 * 100
        assert store.verify().ok


def test_headless_run_reports_lead_off_as_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(
        tmp_path,
        "--device",
        "sim://tsp?faults=leadoff@20:1",
        "--program",
        "burst",
        "--minutes",
        "30",
        "--target-ma",
        "3",
    )
    out = capsys.readouterr()
    assert code == 1
    err = _without_note(out.err).strip()
    assert err.startswith("tens-control: session ended: lead-off")
    assert len(err.splitlines()) == 1
    assert "message lead-off: Electrode off on channel 1" in out.out
    # issue 12 (6): a headless run cannot be resumed, so it ends at once, saying so, instead of
    # waiting out the UI's ten minutes for a resume that cannot come
    assert "cannot be resumed here" in out.out
    assert "then resume" not in out.out
    status = [line for line in out.out.splitlines() if line.startswith("time=")]
    assert all(float(line.split()[0].removeprefix("time=")) < 22.0 for line in status)
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        (session,) = store.sessions()
        assert session.end_reason is EndReason.LEAD_OFF
        assert session.minutes is not None
        assert 19.0 / 60 <= session.minutes <= 21.0 / 60  # the stimulation it had, no more


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        ("fault@5", EndReason.DEVICE_FAULT, "device fault"),
        ("stuck@5:1,jump@6:1", EndReason.OUTPUT_MISMATCH, "output mismatch"),
        ("estop@5", EndReason.EMERGENCY_STOP, "emergency stop"),
        ("mute@5", EndReason.COMMS_LOST, "comms lost"),
    ],
)
def test_headless_run_ends_with_the_device_fault_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    reason: EndReason,
    words: str,
) -> None:
    code = _run(
        tmp_path,
        "--device",
        f"sim://tsp?faults={fault}",
        "--program",
        "conventional",
        "--minutes",
        "1",
        "--target-ma",
        "4",
    )
    err = _without_note(capsys.readouterr().err).strip()
    assert code == 1
    assert err.startswith(f"tens-control: session ended: {words}")
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        (session,) = store.sessions()
        assert session.end_reason is reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--program", "no-such-program"], "no program named 'no-such-program'"),
        (["--program", "conventional", "--pain-before", "11"], "--pain-before: a pain rating"),
        (["--program", "conventional", "--pain-after", "-1"], "--pain-after: a pain rating"),
        (["--program", "conventional", "--pain-before", "7.5"], "--pain-before: a pain rating"),
        (["--program", "conventional", "--device", "/dev/no-such-tty"], "does not exist"),
        (["--program", "conventional", "--minutes", "0"], "--minutes must be a positive"),
        (["--program", "conventional", "--target-ma", "-3"], "--target-ma must be"),
        (["--program", "conventional", "--channel", "1"], "--channel goes with --target-ma"),
        (["--program", "conventional", "--device", "sim://nope"], "not 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = _run(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("tens-control: error: ")
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "db.sqlite3").exists()


def test_a_target_above_the_cap_is_refused_before_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(tmp_path, "--program", "conventional", "--minutes", "1", "--target-ma", "150")
    err = capsys.readouterr().err
    assert code == 2
    assert "above the limit of channel 1: 100 mA (manufacturer profile)" in err
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        assert store.sessions() == []


def test_the_daily_limit_refuses_a_fourth_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        assert _run(tmp_path, "--program", "conventional", "--minutes", "0.1") == 0
    capsys.readouterr()
    code = _run(tmp_path, "--program", "conventional", "--minutes", "0.1")
    err = capsys.readouterr().err
    assert code == 2
    assert "daily limit reached: 3 of 3 sessions" in err
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        assert len(store.sessions()) == 3
        refused = [e for e in store.events() if e.kind == "rejected"]
        assert refused[-1].payload["parameter"] == "daily limit"


def test_the_saved_device_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.toml").write_text(
        'device = "sim://tsp?profile=generic-2ch"\npatient = "p-007"\n', encoding="utf-8"
    )
    assert _run(tmp_path, "--program", "conventional", "--minutes", "0.1") == 0
    out = capsys.readouterr().out
    assert "profile=generic-2ch" in out.splitlines()[0]
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        assert [p.pseudonym for p in store.patients()] == ["p-007"]


def test_print_log_lists_every_committed_safety_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, "--program", "conventional", "--seconds", "5", "--print-log") == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    logged = {p[3].removeprefix("hash=") for p in printed if p and p[0] == "logged"}
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        stored = {e.hash for e in store.events()}
    assert logged
    assert logged <= stored


def test_status_line_marks_missing_readings() -> None:
    from drivers.limits import CapSource
    from tens_control.session import ChannelView, SessionState, Snapshot

    view = ChannelView(1, True, 5.0, 4.0, 4.0, None, None, False, 40.0, CapSource.PRESCRIPTION, "x")
    snap = Snapshot(
        time=12.04,
        state=SessionState.PAUSED,
        program=None,
        planned_s=60.0,
        elapsed_s=12.0,
        remaining_s=48.0,
        channels=(view,),
        device=None,
        banners=(),
        end_reason=None,
        end_detail="",
        session_id=None,
        paused_for_lead_off=False,
        habituation_pending=False,
        output_stopped=True,
        prescription_version=None,
        patient="p",
    )
    assert status_line(snap, 2.0) == (
        "time=10.0 state=paused left_s=48.0 ch1_ma=4 ch1_target_ma=5 ch1_measured_ma=- "
        "ch1_impedance_ohm=-"
    )
