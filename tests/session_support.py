"""Helpers for the session-controller tests: a controller on the in-process simulator in virtual
time, with its store, the simulated device (for the DELIVERED record) and every update."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.base import (
    ChannelSettings,
    DeviceInfo,
    DeviceLimits,
    Pending,
    ReportHandler,
    TensDriver,
)
from drivers.clock import Clock, VirtualClock
from drivers.limits import get_profile
from simulator.device import SimDevice
from simulator.firmware import DeliveredRecord
from tens_control.device import OpenedDevice, open_device
from tens_control.prescription import Prescription, prescription_from_dict
from tens_control.session import (
    SessionController,
    SessionState,
    StateUpdate,
    Update,
)
from tens_control.store.records import AnyLogRecord
from tens_control.store.store import Store, StoredEvent, virtual_wall_clock
from tests.trust_support import enrol_and_prescribe

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""Virtual time 0 is this wall time (a Monday morning, so a day has room for sessions)."""


def prescription(**changes: Any) -> Prescription:
    """A valid prescription for the simulator (two channels on the residual limb), changed."""
    data: dict[str, Any] = {
        "written_by": "Dr A. Example",
        "written_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        "reason": "phantom-limb pain",
        "programs": ["conventional", "acupuncture-like", "burst"],
        "max_amplitude_ma": 40.0,
        "session_minutes": 30,
        "sessions_per_day": 4,
        "habituation_prompt": False,
        "channels": [
            {"channel": 1, "site": "residual_limb", "side": "left", "pad": "5x5 cm"},
            {"channel": 2, "site": "transected_nerve", "side": "left", "pad": "5x5 cm"},
        ],
    }
    data.update(changes)
    return prescription_from_dict(data)


@dataclass
class Rig:
    tmp: Path
    clock: VirtualClock
    store: Store
    controller: SessionController
    wall: Callable[[], datetime]
    updates: list[Update] = field(default_factory=list)
    opened: list[OpenedDevice] = field(default_factory=list)

    @property
    def c(self) -> SessionController:
        return self.controller

    @property
    def sim(self) -> SimDevice:
        """The simulated unit behind the current connection."""
        opened = self.opened[-1]
        assert opened.port is not None
        device = getattr(opened.port, "device", None)
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

    def states(self) -> list[tuple[str, str]]:
        """Every logged state transition (from, to), in order."""
        out: list[tuple[str, str]] = []
        for e in self.events():
            if e.kind == "state_changed":
                out.append((str(e.payload["from_state"]), str(e.payload["to_state"])))
        return out

    def state_updates(self) -> list[SessionState]:
        return [u.state for u in self.updates if isinstance(u, StateUpdate)]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def run_session(
        self, program: str = "conventional", minutes: float = 1.0, target: float = 4.0
    ) -> str:
        """Prepare, start, ramp channel 1 to ``target`` and run to completion; the session id."""
        c = self.controller
        if c.state is SessionState.ENDED:
            c.finish()
        c.prepare(program, minutes)
        c.start()
        session = c.snapshot().session_id
        assert session is not None
        assert c.set_target(1, target).accepted
        self.advance(minutes * 60.0 + 0.5)
        assert c.state is SessionState.ENDED
        return session

    def close(self) -> None:
        self.controller.close()
        self.store.close()


def sim_opener(rig_holder: list[Rig]) -> Callable[..., OpenedDevice]:
    def opener(
        url: str | None, clock: Clock, *, protocol: str | None = None, profile: str | None = None
    ) -> OpenedDevice:
        opened = open_device(url, clock, protocol=protocol, profile=profile)
        rig_holder[0].opened.append(opened)
        return opened

    return opener


def make_rig(
    tmp: Path,
    *,
    rx: Prescription | None = None,
    opener: Callable[[list[Rig]], Callable[..., OpenedDevice]] = sim_opener,
    **kwargs: Any,
) -> Rig:
    """A controller on a fresh database in virtual time (the store shares the clock)."""
    clock = VirtualClock()
    wall = virtual_wall_clock(clock, START)
    # recover=False: the controller recovers (and reports) crashed sessions itself; a long
    # flush interval keeps virtual-time tests fast (telemetry durability is the store's test)
    store = Store.open(
        tmp / "tens.sqlite3", clock=clock, wall=wall, recover=False, flush_interval_s=5.0
    )
    if rx is not None:  # as a clinic prescribes: enrolled, and signed by the clinic's key
        enrol_and_prescribe(store, rx)
    holder: list[Rig] = []
    controller = SessionController(store, clock, wall=wall, opener=opener(holder), **kwargs)
    rig = Rig(tmp, clock, store, controller, wall)
    holder.append(rig)
    controller.add_listener(rig.updates.append)
    return rig


def rigs(tmp: Path, **kwargs: Any) -> Iterator[Rig]:
    rig = make_rig(tmp, **kwargs)
    try:
        yield rig
    finally:
        rig.close()


# --------------------------------------------------------------------------- a lying driver


class WrappedDriver(TensDriver):
    """Forwards everything to a real driver, but reports a changed identity (tests only):
    other hard limits than the device enforces, or "not a simulator"."""

    def __init__(self, inner: TensDriver, **identity: Any) -> None:
        super().__init__(inner.clock)
        self.inner = inner
        self._changes = identity
        self._info: DeviceInfo | None = None

    def _changed(self, info: DeviceInfo) -> DeviceInfo:
        self._info = info.model_copy(update=self._changes)
        return self._info

    @property
    def info(self) -> DeviceInfo:
        return self._info if self._info is not None else self._changed(self.inner.info)

    def identify(self) -> DeviceInfo:
        return self._changed(self.inner.identify())

    def add_report_handler(self, handler: ReportHandler) -> None:
        self.inner.add_report_handler(handler)

    def remove_report_handler(self, handler: ReportHandler) -> None:
        self.inner.remove_report_handler(handler)

    def request_configure(self, channel: int, settings: ChannelSettings) -> Pending:
        return self.inner.request_configure(channel, settings)

    def request_amplitude(self, channel: int, milliamps: float) -> Pending:
        return self.inner.request_amplitude(channel, milliamps)

    def request_start(self) -> Pending:
        return self.inner.request_start()

    def request_stop(self) -> Pending:
        return self.inner.request_stop()

    def wait(self, pending: Pending) -> None:
        self.inner.wait(pending)

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def _teardown(self, reason: str) -> None:
        self.inner.close()

    @property
    def connected(self) -> bool:
        return self.inner.connected


def wrapped_opener(
    url: str, profile_id: str | None = None, **identity: Any
) -> Callable[[list[Rig]], Callable[..., OpenedDevice]]:
    """An opener for ``url`` whose driver reports ``identity`` changes (and ``profile_id``)."""

    def factory(holder: list[Rig]) -> Callable[..., OpenedDevice]:
        def opener(
            _url: str | None,
            clock: Clock,
            *,
            protocol: str | None = None,
            profile: str | None = None,
        ) -> OpenedDevice:
            real = open_device(url, clock)
            driver = WrappedDriver(real.driver, **identity)
            chosen = get_profile(profile_id) if profile_id else real.profile
            opened = OpenedDevice(
                real.url, driver, chosen, driver.info, real.profile_note, port=real.port
            )
            holder[0].opened.append(opened)
            return opened

        return opener

    return factory


def limits(max_ma: float, step: float = 0.5) -> DeviceLimits:
    return DeviceLimits(
        max_amplitude_ma=max_ma,
        amplitude_step_ma=step,
        min_frequency_hz=1,
        max_frequency_hz=150,
        min_pulse_width_us=50,
        max_pulse_width_us=400,
    )


def zero_within(record: DeliveredRecord, after: float, within: float) -> bool:
    """Every channel delivers 0 at some moment in [after, after + within]."""
    zero = record.all_zero_at(after)
    return zero is not None and zero - after <= within + 1e-9
