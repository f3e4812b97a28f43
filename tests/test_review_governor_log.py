"""The review reads the safety governor's typed events (``lead_off``, ``paused``,
``emergency_stop``, ``stopped`` ...) as it read the older logs' ``fault`` and ``command`` records:
a session logged for real on the simulator (SessionController on sim://, virtual time) with a
lead-off and an emergency stop is counted and shown in every output, and its amplitude trajectory
is what the simulator delivered."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.clock import VirtualClock
from drivers.safety.events import StopReason
from tens_control.review.analytics import summarize_data
from tens_control.review.csv_export import csv_text
from tens_control.review.fhir_check import bundle_problems
from tens_control.review.fhir_export import bundle_dict
from tens_control.review.model import PatientData
from tens_control.review.report import render
from tens_control.review.source import load_patient, load_summaries
from tens_control.store import Actor, AmplitudeChanged, CommandSent, EndReason, Fault, Store
from tens_control.store.records import (
    EmergencyStop,
    LeadOff,
    Paused,
    Resumed,
    Started,
    Stopped,
)
from tens_control.ui.review.data import ReviewSource, trajectory_of
from tests.session_support import START, Rig, make_rig, prescription
from tests.store_support import PLAN, open_virtual

GENERATED = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
TOLERANCE_S = 0.01
"""Log wall times and the simulator's delivery times differ by the link's few milliseconds."""


@dataclass
class Logged:
    rig: Rig
    patient: str
    faulty: str
    """The session with a lead-off (resumed) and then an emergency stop."""
    clean: str
    """A session that ran to its end."""
    lead_off_at: float
    """Virtual time of the lead-off."""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    rig = make_rig(tmp_path_factory.mktemp("governor-log"), rx=prescription())
    try:
        c = rig.c
        c.connect("sim://tsp")
        clean = rig.run_session(minutes=1.0, target=3.0)
        c.finish()
        rig.advance(3600.0)  # the prescription's gap between sessions
        c.prepare("conventional", 10)
        c.start()
        faulty = c.snapshot().session_id
        assert faulty is not None
        assert c.set_target(1, 6.0).accepted
        rig.advance(4.0)
        lead_off_at = rig.clock.now()
        rig.sim.inject("leadoff", channel=1)
        rig.advance(0.5)
        assert c.snapshot().paused_for_lead_off
        rig.sim.inject("leadon", channel=1)
        rig.advance(0.2)  # the device's telemetry says the pad is back on
        c.resume()
        rig.advance(1.0)
        assert c.set_target(1, 4.0).accepted
        rig.advance(3.0)
        c.emergency_stop()
        rig.advance(1.0)
        c.finish()
        patient = c.patient
        assert patient is not None
        yield Logged(rig, patient, faulty, clean, lead_off_at)
    finally:
        rig.close()


def _data(logged: Logged) -> PatientData:
    return load_patient(logged.rig.store, logged.patient, tz=UTC, today=START.date())


def test_the_log_has_the_governors_kinds_and_no_old_ones(logged: Logged) -> None:
    """The premise: this session is logged with the new kinds (so the tests below test them)."""
    kinds = [e.kind for e in logged.rig.events(logged.faulty)]
    assert {"lead_off", "paused", "resumed", "emergency_stop", "stopped"} <= set(kinds)
    assert "fault" not in kinds
    assert "command" not in kinds
    assert logged.rig.store.session(logged.faulty).end_reason is EndReason.EMERGENCY_STOP


def test_patient_figures_and_the_patient_list_count_the_lead_off(logged: Logged) -> None:
    data = _data(logged)
    (fault,) = data.events
    assert (fault.kind, fault.code, fault.session_id) == ("fault", "lead_off", logged.faulty)
    summary = summarize_data(data, UTC)
    assert summary.sessions == 2
    assert summary.faults == {"lead_off": 1}
    assert summary.end_reasons == {"completed": 1, "emergency_stop": 1}
    (listed,) = load_summaries(logged.rig.store, tz=UTC, today=START.date())
    assert listed.faults == {"lead_off": 1}
    assert listed.end_reasons == summary.end_reasons
    report = json.loads(render(data, "json", tz=UTC, generated=GENERATED))
    assert report["summary"]["faults"] == {"lead_off": 1}


def test_the_session_table_and_the_session_detail_show_them(logged: Logged) -> None:
    source = ReviewSource(logged.rig.store, tz=UTC, today=START.date())
    lines = {x.row.id: x for x in source.patient(logged.patient).session_lines()}
    assert lines[logged.faulty].faults == ("lead_off",)
    assert lines[logged.faulty].notes() == "electrode off"
    assert lines[logged.clean].faults == ()

    detail = source.session(logged.patient, logged.faulty)
    marked = [(e.kind, e.text) for e in detail.events if e.important]
    assert [kind for kind, _ in marked] == ["FAULT", "E-STOP", "END"]
    assert marked[0][1].startswith("electrode off ch1")
    assert marked[1][1] == "emergency stop: every output to 0"
    texts = [(e.kind, e.text) for e in detail.events]
    assert ("pause", "output paused: electrode off (every channel at 0)") in texts
    assert ("resume", "resumed from 0 mA, 9.9 min left") in texts
    assert ("stop", "output stopped: emergency stop") in texts
    assert ("start", "output started at 0 mA for 10.0 min") in texts
    assert any(k == "lead-on" and t.startswith("electrode contact restored ch1") for k, t in texts)
    # every governor event has its own line in words, none the generic "kind: k=v" fallback
    governor = {"started", "target_changed", "paused", "resumed", "lead_off", "lead_on"}
    governor |= {"emergency_stop", "stopped", "amplitude_changed"}
    stored = logged.rig.events(logged.faulty)
    for event, line in zip(stored, detail.events, strict=True):
        if event.kind in governor:
            assert "=" not in line.text, (event.kind, line.text)
    assert [f.code for f in detail.faults] == ["lead_off"]


def test_the_trajectory_is_what_the_simulator_delivered(logged: Logged) -> None:
    """From the log alone the review draws channel 1 up to 6 mA, to 0 at the lead-off, up to
    4 mA after the resume and to 0 at the emergency stop: each point is a change the simulator
    delivered, at the same moment (to the link's few milliseconds), and none is missing."""
    rig = logged.rig
    detail = ReviewSource(rig.store, tz=UTC).session(logged.patient, logged.faulty)
    start = (rig.store.session(logged.faulty).started_at - START).total_seconds()
    assert set(detail.trajectory) == {1}
    drawn = detail.trajectory[1]
    assert drawn[0] == (0.0, 0.0)
    end = start + detail.duration_s
    delivered = [
        d for d in rig.record.changes(1) if start - TOLERANCE_S <= d.time <= end + TOLERANCE_S
    ]
    assert len(drawn) - 1 == len(delivered)
    for (t, ma), d in zip(drawn[1:], delivered, strict=True):
        assert ma == d.ma
        assert abs(start + t - d.time) <= TOLERANCE_S, (t, d)
    levels = [ma for _, ma in drawn]
    assert max(levels[: levels.index(0.0, 1)]) == 6.0
    lead_off = next(t for t, ma in drawn[1:] if ma == 0.0)
    assert abs(start + lead_off - logged.lead_off_at) <= TOLERANCE_S
    assert levels[-2:] == [4.0, 0.0]
    assert drawn[-1][0] == pytest.approx(detail.duration_s, abs=TOLERANCE_S)


def _csv(data: PatientData) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_text(data, UTC))))


def test_csv_and_fhir_count_and_show_them(logged: Logged) -> None:
    data = _data(logged)
    sessions = {r["session_id"]: r for r in _csv(data) if r["record"] == "session"}
    assert sessions[logged.faulty]["faults"] == "1"
    assert sessions[logged.faulty]["end_reason"] == "emergency_stop"
    assert sessions[logged.clean]["faults"] == "0"
    assert sessions[logged.clean]["end_reason"] == "completed"

    bundle = bundle_dict(data, tz=UTC, generated=GENERATED)
    assert bundle_problems(bundle) == []
    procedures = {
        r["identifier"][0]["value"]: r
        for r in (e["resource"] for e in bundle["entry"])
        if r["resourceType"] == "Procedure" and r.get("identifier")
    }
    faulty: dict[str, Any] = procedures[f"{logged.patient}/{logged.faulty}"]
    assert faulty["status"] == "stopped"
    assert faulty["statusReason"] == {"text": "emergency stop"}
    assert "faults 1: electrode off ×1" in faulty["note"][0]["text"]
    clean: dict[str, Any] = procedures[f"{logged.patient}/{logged.clean}"]
    assert clean["status"] == "completed"
    assert "fault" not in clean["note"][0]["text"]


# --------------------------------------------------------------------------- old logs


def _log_old_and_new(store: Store, clock: VirtualClock, new: bool) -> str:
    """The same session (ch2 to 5 mA, lead-off on ch2, paused, resumed, ch2 to 3 mA, emergency
    stop) as the governor logs it now (``new``) or as older logs have it."""
    store.ensure_patient()
    sid = store.begin_session(PLAN)

    def at(t: float, record: Any) -> None:
        clock.advance(t - clock.now())
        store.append_event(sid, record)

    at(0.0, Started(time=0.0, duration_s=600.0) if new else CommandSent(command="start"))
    at(1.0, AmplitudeChanged(time=1.0, channel=2, from_ma=0, to_ma=5, who=Actor.PATIENT))
    if new:
        at(10.0, LeadOff(time=10.0, channel=2, impedance_ohm=9000.0))
        at(10.0, Paused(time=10.0, reason=StopReason.LEAD_OFF))
        at(20.0, Resumed(time=20.0, remaining_s=580.0))
    else:
        at(10.0, Fault(fault="lead_off", channel=2))
        at(10.0, CommandSent(command="pause", args={"reason": "lead_off"}))
        at(20.0, CommandSent(command="resume"))
    at(21.0, AmplitudeChanged(time=21.0, channel=2, from_ma=0, to_ma=3, who=Actor.PATIENT))
    if new:
        at(30.0, EmergencyStop(time=30.0))
        at(30.0, Stopped(time=30.0, reason=StopReason.EMERGENCY))
    else:
        at(30.0, CommandSent(command="emergency_stop"))
    clock.advance(5.0)
    store.end_session(sid, EndReason.EMERGENCY_STOP)
    return sid


@pytest.mark.parametrize("new", [False, True], ids=["old log", "new log"])
def test_old_and_new_logs_of_the_same_session_read_the_same(tmp_path: Path, new: bool) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        sid = _log_old_and_new(store, clock, new)
        data = load_patient(store, tz=UTC)
        assert [(e.kind, e.code) for e in data.events] == [("fault", "lead_off")]
        assert summarize_data(data, UTC).faults == {"lead_off": 1}
        assert [s.faults for s in load_summaries(store, tz=UTC)] == [{"lead_off": 1}]
        info = store.session(sid)
        trajectory = trajectory_of(store.events(session=sid), info.started_at, info.ended_at)
        # the stop at 30 s zeroes the channel, not only the session's end at 35 s
        assert trajectory == {2: ((0.0, 0.0), (1.0, 5.0), (10.0, 0.0), (21.0, 3.0), (30.0, 0.0))}
        detail = ReviewSource(store, tz=UTC).session(store.patient().pseudonym, sid)
        first = next(e for e in detail.events if e.important)
        assert (first.kind, first.text.startswith("electrode off ch2")) == ("FAULT", True)
