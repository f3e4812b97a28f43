"""Helpers for the UI tests (tests/test_ui_*.py): a TensApp on the in-process simulator in
virtual time, with its store in a temporary directory, the simulated device (for what it
DELIVERED) and the screen as plain text."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.worker import WorkerCancelled, WorkerFailed

from drivers.clock import Clock, VirtualClock
from simulator.device import SimDevice
from simulator.firmware import DeliveredRecord
from tens_control.device import OpenedDevice, open_device
from tens_control.prescription import Prescription, prescription_from_dict
from tens_control.session import SessionController, SessionState
from tens_control.store.records import AnyLogRecord
from tens_control.store.store import Store, StoredEvent, virtual_wall_clock
from tens_control.ui.app import TensApp, make_app
from tests.trust_support import enrol_and_prescribe

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""Virtual time 0 is this wall time (a Monday morning)."""

SIM_URL = "sim://tsp?seed=7"
SIZE = (100, 32)


def prescription(**changes: Any) -> Prescription:
    """A prescription for the simulator: two channels, 40 mA cap, 30-minute sessions."""
    data: dict[str, Any] = {
        "written_by": "Dr A. Example",
        "written_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        "reason": "phantom-limb pain",
        "programs": ["conventional", "acupuncture-like", "burst"],
        "max_amplitude_ma": 40.0,
        "session_minutes": 30,
        "sessions_per_day": 4,
        "habituation_prompt": False,
        "rate_phantom_and_residual_separately": True,
        "run_in_days": 0,
        "channels": [
            {"channel": 1, "site": "residual_limb", "side": "left", "pad": "5x5 cm"},
            {"channel": 2, "site": "transected_nerve", "side": "left", "pad": "5x5 cm"},
        ],
    }
    data.update(changes)
    return prescription_from_dict(data)


@dataclass
class UiRig:
    tmp: Path
    clock: VirtualClock
    store: Store
    controller: SessionController
    app: TensApp
    opened: list[OpenedDevice] = field(default_factory=list)

    @property
    def sim(self) -> SimDevice:
        port = self.opened[-1].port
        device = getattr(port, "device", None)
        assert isinstance(device, SimDevice)
        return device

    @property
    def record(self) -> DeliveredRecord:
        return self.sim.record

    def events(self, session: str | None = None) -> list[StoredEvent]:
        if session is not None:
            return self.store.events(session=session)
        return self.store.events(self.controller.patient)

    def records(self, kind: str, session: str | None = None) -> list[AnyLogRecord]:
        return [e.record for e in self.events(session) if e.kind == kind]

    def close(self) -> None:
        self.app.calls.close()
        self.controller.close()
        self.store.close()


def make_ui_rig(
    tmp: Path,
    *,
    rx: Prescription | None = None,
    screened: bool = True,
    default_url: str = SIM_URL,
    **options: Any,
) -> UiRig:
    """A UI on a fresh database and the simulator, in virtual time. ``screened``: a clear
    screening is on record (so the first-run questions do not appear)."""
    clock = VirtualClock()
    wall = virtual_wall_clock(clock, START)
    # telemetry committed every 10 s of virtual time (not 0.25 s): the UI tests do not test
    # the store's durability, and each commit is a real fsync
    store = Store.open(tmp / "tens.sqlite3", clock=clock, wall=wall, flush_interval_s=10.0)
    store.ensure_patient()
    if rx is not None:  # as a clinic prescribes: enrolled, and signed by the clinic's key
        enrol_and_prescribe(store, rx)
    if screened:
        from tens_control.screening import Question

        store.save_screening({q.value: False for q in Question}, recorded_by="patient")
    opened: list[OpenedDevice] = []

    def opener(
        url: str | None, clock: Clock, *, protocol: str | None = None, profile: str | None = None
    ) -> OpenedDevice:
        device = open_device(url or default_url, clock, protocol=protocol, profile=profile)
        opened.append(device)
        return device

    controller = SessionController(store, clock, wall=wall, opener=opener)
    values: dict[str, Any] = {"live": False, "tz": UTC, "cursor_blink": False, "wall": wall}
    values.update(options)
    app = make_app(controller, store=store, clock=clock, **values)
    return UiRig(tmp, clock, store, controller, app, opened)


def screen_text(app: TensApp) -> str:
    """What the terminal shows now, as plain text."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    render = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True
    )
    console.print(render)
    return console.export_text()


async def settle(pilot: Pilot[Any], app: TensApp) -> None:
    """Let the app process everything pending: workers, queued calls, messages."""
    for _ in range(3):
        for worker in list(app.workers):
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await worker.wait()
        app.wait_calls()
        await pilot.pause()


async def advance(pilot: Pilot[Any], rig: UiRig, seconds: float) -> None:
    """Virtual time passes (the device and the controller run), then the UI catches up."""
    rig.clock.advance(seconds)
    await settle(pilot, rig.app)
    rig.app.redraw()  # what the redraw timer does in real time
    await pilot.pause()


async def press(pilot: Pilot[Any], app: TensApp, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot, app)


PRESS_INTERVAL_S = 0.6
"""A patient's deliberate presses, one ramp step (0.5 s at 2 mA/s) apart: each one raises the
intensity by a step (S16: presses queued faster than the ramp are absorbed, not stored up)."""


async def press_up(pilot: Pilot[Any], rig: UiRig, times: int = 1) -> None:
    """Press up ``times`` times, as a person does: waiting for each step to be felt."""
    for _ in range(times):
        await pilot.press("up")
        await advance(pilot, rig, PRESS_INTERVAL_S)


async def wait_for(
    pilot: Pilot[Any], app: TensApp, check: Callable[[], bool], what: str, tries: int = 50
) -> None:
    """Settle until ``check()`` holds (it depends only on messages being handled)."""
    for _ in range(tries):
        if check():
            return
        await settle(pilot, app)
    raise AssertionError(f"never happened: {what}\n{screen_text(app)}")


def state(rig: UiRig) -> SessionState:
    return rig.controller.state
