"""Helpers for the store tests (tests/test_store_*.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from drivers.base import ChannelSettings, DeviceInfo, DeviceLimits, Telemetry
from drivers.clock import VirtualClock
from tens_control.store import (
    Actor,
    AmplitudeChanged,
    ChannelPlan,
    EndReason,
    PainSite,
    RatingTime,
    SessionPlan,
    StateChanged,
    Store,
    virtual_wall_clock,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

DEVICE = DeviceInfo(
    protocol="tsp",
    protocol_version="1.0",
    model="TENS-SIM",
    serial_number="SIM-0001",
    firmware="1.2.3",
    channels=2,
    limits=DeviceLimits(
        max_amplitude_ma=80,
        amplitude_step_ma=0.5,
        min_frequency_hz=1,
        max_frequency_hz=150,
        min_pulse_width_us=50,
        max_pulse_width_us=300,
    ),
    reports_current=True,
    reports_impedance=True,
    is_simulator=True,
)

PLAN = SessionPlan(
    program="conventional",
    channels=(
        ChannelPlan(
            channel=1,
            settings=ChannelSettings(frequency_hz=90, pulse_width_us=150),
            site="residual_limb",
            area_cm2=20.0,
            cap_ma=40.0,
        ),
        ChannelPlan(
            channel=2,
            settings=ChannelSettings(frequency_hz=90, pulse_width_us=150),
            site="contralateral_mirror",
            area_cm2=20.0,
        ),
    ),
    caps={"ch1": {"max_ma": 40.0, "source": "prescription"}},
    planned_minutes=30,
    prescription_version=1,
)


def open_virtual(path: Path, clock: VirtualClock | None = None, **kwargs: object) -> Store:
    """A store on a virtual clock whose wall time starts at T0."""
    the_clock = clock if clock is not None else VirtualClock()
    return Store.open(
        path,
        clock=the_clock,
        wall=virtual_wall_clock(the_clock, T0),
        **kwargs,  # type: ignore[arg-type]
    )


def run_session(store: Store, clock: VirtualClock, *, samples: int = 40) -> str:
    """A short session: pre-rating, start, ramps, telemetry at 10 Hz on 2 channels, end,
    post-rating. Returns the session id."""
    store.ensure_patient()
    store.add_pain_rating(7, RatingTime.BEFORE, PainSite.PHANTOM)
    sid = store.begin_session(PLAN, device=DEVICE)
    store.append_event(sid, StateChanged(from_state="ready", to_state="running"))
    writer = store.telemetry_writer(sid)
    amplitude = 0.0
    for i in range(samples):
        if i % 10 == 0:
            store.append_event(
                sid,
                AmplitudeChanged(
                    time=0.0,
                    channel=1,
                    from_ma=amplitude,
                    to_ma=amplitude + 1,
                    who=Actor.PATIENT,
                    why="up",
                ),
            )
            amplitude += 1
        for channel in (1, 2):
            writer.add(Telemetry(clock.now(), channel, amplitude, amplitude * 0.98, 510.0))
        clock.advance(0.1)
    store.end_session(sid, EndReason.COMPLETED)
    store.add_pain_rating(4, RatingTime.AFTER, PainSite.PHANTOM, session=sid)
    return sid


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection (autocommit), as a tamperer would use."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def count(path: Path, table: str) -> int:
    with raw(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
