"""Snapshot tests of every screen of the patient UI (pytest-textual-snapshot).

Deterministic: the simulator runs on a VirtualClock with a fixed seed, the redraw timer is off,
the cursor does not blink, dates are in UTC from a virtual wall clock, and the port list is
fixed. Update with ``pytest tests/test_ui_snapshots.py --snapshot-update`` after looking at the
report. The README shows ``test_running_session.svg``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tens_control.session import SessionState
from tens_control.store.records import PainSite, RatingTime
from tens_control.ui.screens import connect
from tens_control.ui.screens.habituation import HabituationModal
from tests.ui_support import PRESS_INTERVAL_S, START, UiRig, make_ui_rig, prescription, settle

SnapCompare = Callable[..., bool]
Steps = Callable[[Pilot[Any]], Awaitable[None]]


@pytest.fixture(autouse=True)
def _fixed_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setattr(
        connect,
        "find_choices",
        lambda: (
            [
                connect.Choice(
                    connect.SIMULATOR_URL,
                    "Built-in simulator (sim://tsp) — delivers no stimulation",
                ),
                connect.Choice(
                    "/dev/ttyUSB0",
                    "/dev/ttyUSB0 — FT232R USB UART — USB 0403:6001 — serial A10K3QX — "
                    "looks like: generic-2ch (tsp)",
                ),
            ],
            "",
        ),
    )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[UiRig]:
    the_rig = make_ui_rig(tmp_path, rx=prescription())
    try:
        yield the_rig
    finally:
        the_rig.close()


def _past_sessions(rig: UiRig, ratings: list[tuple[int, int]], gap_s: float = 4 * 3600.0) -> None:
    """Sessions run through the controller before the UI starts (for home and history)."""
    c = rig.controller
    c.connect()
    for before, after in ratings:
        c.prepare("conventional", 1.0)
        c.record_pain(before, when=RatingTime.BEFORE, pain=PainSite.PHANTOM)
        c.record_pain(before - 1, when=RatingTime.BEFORE, pain=PainSite.RESIDUAL_LIMB)
        c.start()
        c.set_target(1, 6.0)
        rig.clock.advance(61.0)
        c.record_pain(after, when=RatingTime.AFTER, pain=PainSite.PHANTOM)
        c.record_pain(None, when=RatingTime.AFTER, pain=PainSite.RESIDUAL_LIMB)
        c.finish()
        # the gap later, the device reconnected (not kept connected: a virtual clock that
        # advances through hours with the simulator polled every few ms takes minutes)
        c.disconnect()
        rig.clock.advance(gap_s)
        c.connect()


def _steps(rig: UiRig, *keys: str, then: Steps | None = None) -> Steps:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = rig.app
        await settle(pilot, app)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, app)
        if then is not None:
            await then(pilot)
        await settle(pilot, app)

    return run_before


def _to_running(rig: UiRig, *, ma: int = 6, more: Steps | None = None) -> Steps:
    async def running(pilot: Pilot[Any]) -> None:
        app = rig.app
        for _ in range(ma):
            await pilot.press("up")
            rig.clock.advance(PRESS_INTERVAL_S)
            await settle(pilot, app)
        await pilot.press("right")
        for _ in range(2):
            await pilot.press("up")
            rig.clock.advance(PRESS_INTERVAL_S)
            await settle(pilot, app)
        rig.clock.advance(12.0)
        await settle(pilot, app)
        assert rig.controller.state is SessionState.RUNNING
        if more is not None:
            await more(pilot)
        app.redraw()
        await settle(pilot, app)

    return _steps(rig, "n", "enter", "6", "4", "enter", then=running)


def test_home(snap_compare: SnapCompare, rig: UiRig) -> None:
    _past_sessions(rig, [(7, 5), (6, 4), (6, 3)])
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig))


def test_home_at_80x24(snap_compare: SnapCompare, rig: UiRig) -> None:
    _past_sessions(rig, [(7, 5), (6, 3)])
    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=_steps(rig))


def test_first_run_screening(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(), screened=False)
    try:
        assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "n", "n"))
    finally:
        rig.close()


def test_screening_yes_says_contact_the_clinician(
    snap_compare: SnapCompare, tmp_path: Path
) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(), screened=False)
    keys = ["n", "y", *(["n"] * 7)]
    try:
        assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, *keys))
    finally:
        rig.close()


def test_connect(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "c"))


def test_session_setup(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "n", "down"))


def test_pre_session_rating(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "n", "enter", "6"))


def test_ready_to_start(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(
        rig.app, terminal_size=(100, 32), run_before=_steps(rig, "n", "enter", "6", "s")
    )


def test_running_session(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_to_running(rig))


def test_running_session_at_80x24(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=_to_running(rig))


def test_running_session_at_the_limit(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(max_amplitude_ma=2.0))
    try:
        assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_to_running(rig))
    finally:
        rig.close()


def test_lead_off(snap_compare: SnapCompare, rig: UiRig) -> None:
    async def lead_off(pilot: Pilot[Any]) -> None:
        rig.sim.inject("leadoff", channel=1)
        rig.clock.advance(0.5)

    assert snap_compare(
        rig.app, terminal_size=(100, 32), run_before=_to_running(rig, more=lead_off)
    )


def test_comms_lost(snap_compare: SnapCompare, rig: UiRig) -> None:
    async def mute(pilot: Pilot[Any]) -> None:
        rig.sim.inject("mute")
        rig.clock.advance(3.0)

    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_to_running(rig, more=mute))


def test_habituation_prompt(snap_compare: SnapCompare, rig: UiRig) -> None:
    async def ask(pilot: Pilot[Any]) -> None:
        rig.app.push_screen(HabituationModal("Is the feeling still strong but comfortable?"))

    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_to_running(rig, more=ask))


def test_post_session(snap_compare: SnapCompare, rig: UiRig) -> None:
    async def stop_and_rate(pilot: Pilot[Any]) -> None:
        app = rig.app
        for key in ("x", "4", "3", "r", "1", "n"):
            await pilot.press(key)
            await settle(pilot, app)
            rig.clock.advance(0.2)
        await pilot.press(*"felt warm")

    assert snap_compare(
        rig.app, terminal_size=(100, 32), run_before=_to_running(rig, more=stop_and_rate)
    )


def test_history(snap_compare: SnapCompare, rig: UiRig) -> None:
    _past_sessions(rig, [(7, 5), (6, 4), (8, 4), (6, 3), (5, 3)])
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "h"))


def test_history_pgic_question(snap_compare: SnapCompare, rig: UiRig) -> None:
    _past_sessions(rig, [(7, 5), (6, 4)])
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "h", "g"))


def test_home_run_in(snap_compare: SnapCompare, tmp_path: Path) -> None:
    """The run-in before the first session: two days rated, today not yet."""
    rig = make_ui_rig(tmp_path, rx=prescription(run_in_days=7))
    wall = rig.app.options.wall
    assert wall is not None
    rig.app.options.wall = lambda: wall() + timedelta(days=2)
    for day in (0, 1):
        rig.store.add_pain_rating(
            5, RatingTime.DIARY, PainSite.PHANTOM, at=START + timedelta(days=day)
        )
    try:
        assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig))
    finally:
        rig.close()


def test_diary(snap_compare: SnapCompare, rig: UiRig) -> None:
    keys = ("d", "a", "1", "enter", "p", "1", "enter", "7", *"after a long walk", "enter")
    keys2 = ("a", "6", "enter", *"second infusion of the week", "enter")
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, *keys, *keys2))


def test_diary_new_entry(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(100, 32), run_before=_steps(rig, "d", "a"))


def test_help(snap_compare: SnapCompare, rig: UiRig) -> None:
    assert snap_compare(rig.app, terminal_size=(100, 40), run_before=_steps(rig, "question_mark"))


# ------------------------------------------------------------ issue 12, at 80×24 and 100×30


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_running_session_with_levels(
    snap_compare: SnapCompare, rig: UiRig, size: tuple[int, int]
) -> None:
    """The level beside the mA, the live current on a fixed 0-to-limit scale."""
    assert snap_compare(rig.app, terminal_size=size, run_before=_to_running(rig, ma=12))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_habituation_prompt_with_too_strong(
    snap_compare: SnapCompare, rig: UiRig, size: tuple[int, int]
) -> None:
    async def ask(pilot: Pilot[Any]) -> None:
        rig.app.push_screen(HabituationModal("Is the feeling still strong but comfortable?"))

    assert snap_compare(rig.app, terminal_size=size, run_before=_to_running(rig, more=ask))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_resume_refused_while_the_pad_is_off(
    snap_compare: SnapCompare, rig: UiRig, size: tuple[int, int]
) -> None:
    async def lead_off_then_p(pilot: Pilot[Any]) -> None:
        rig.sim.inject("leadoff", channel=1)
        rig.clock.advance(0.5)
        await settle(pilot, rig.app)
        await pilot.press("p")
        await settle(pilot, rig.app)
        rig.clock.advance(0.5)
        await settle(pilot, rig.app)

    assert snap_compare(
        rig.app, terminal_size=size, run_before=_to_running(rig, more=lead_off_then_p)
    )


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_home_when_the_day_is_used_up(
    snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]
) -> None:
    """Two sessions of two allowed: home says so instead of offering N; ratings labelled."""
    rig = make_ui_rig(tmp_path, rx=prescription(sessions_per_day=2))
    try:
        _past_sessions(rig, [(7, 5), (6, 3)], gap_s=600.0)
        assert snap_compare(rig.app, terminal_size=size, run_before=_steps(rig))
    finally:
        rig.close()
