"""S10: the emergency stop works on every screen, inside every dialog and text box.

For each screen (and each text box, with the keyboard focus in it) a session is stimulating
on the simulator; the stop key is pressed; the simulator's DELIVERED record must show every
channel at 0 mA within 50 ms of virtual time, and the log must say emergency stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.screen import Screen
from textual.widgets import Input

from tens_control.session import SessionState
from tens_control.store.records import EndReason
from tens_control.ui.app import TensApp
from tens_control.ui.screens.connect import ConnectScreen
from tens_control.ui.screens.diary import DiaryEntryModal, DiaryScreen
from tens_control.ui.screens.habituation import HabituationModal
from tens_control.ui.screens.help import HelpScreen
from tens_control.ui.screens.history import HistoryScreen
from tens_control.ui.screens.home import HomeScreen
from tens_control.ui.screens.post import PostSessionScreen, SeverityModal
from tens_control.ui.screens.rating import RatingScreen
from tens_control.ui.screens.ready import ReadyScreen
from tens_control.ui.screens.running import RunningScreen
from tens_control.ui.screens.screening import ScreeningScreen
from tens_control.ui.screens.setup import SetupScreen
from tests.ui_support import (
    SIZE,
    UiRig,
    advance,
    make_ui_rig,
    prescription,
    screen_text,
    settle,
)

S10_DEADLINE_S = 0.050


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))


ScreenFactory = Callable[[TensApp], Screen[Any] | None]

# name -> (make the screen (None: stay where we are), keys to press first, widget to focus)
SCREENS: dict[str, tuple[ScreenFactory, tuple[str, ...], str | None]] = {
    "home": (lambda app: None, (), None),
    "running": (lambda app: RunningScreen(), (), None),
    "help": (lambda app: HelpScreen(), (), None),
    "connect": (lambda app: ConnectScreen(), (), None),
    "connect-address-box": (lambda app: ConnectScreen(), (), "#connect-url"),
    "setup": (lambda app: SetupScreen(), (), None),
    "rating": (lambda app: RatingScreen.before_session(app), (), None),
    "ready": (lambda app: ReadyScreen(), (), None),
    "screening": (lambda app: ScreeningScreen(), (), None),
    "history": (lambda app: HistoryScreen(), (), None),
    "diary": (lambda app: DiaryScreen(), (), None),
    "diary-entry-dialog": (lambda app: DiaryEntryModal(), (), None),
    "diary-entry-note-box": (lambda app: DiaryEntryModal(), ("7", "enter"), "#diary-notes"),
    "habituation-dialog": (lambda app: HabituationModal("Still strong?"), (), None),
    "post-session": (lambda app: PostSessionScreen("Session complete.", "completed"), (), None),
    "post-session-note-box": (
        lambda app: PostSessionScreen("Session complete.", "completed"),
        (),
        "#post-notes",
    ),
    "adverse-event-dialog": (lambda app: SeverityModal("burn"), (), None),
    "adverse-event-text-box": (lambda app: SeverityModal("other"), (), "#adverse-notes"),
}

TEXT_BOXES = [name for name, (_, _, focus) in SCREENS.items() if focus is not None]
OTHERS = [name for name, (_, _, focus) in SCREENS.items() if focus is None]
KEYS = ("escape", "space", "ctrl+e")

CASES = [(name, key) for name in TEXT_BOXES for key in ("escape", "space")] + [
    (name, KEYS[i % len(KEYS)]) for i, name in enumerate(OTHERS)
]


async def _stimulating(rig: UiRig) -> str:
    """A session stimulating at 3 mA on channel 1 (set up through the controller)."""
    c = rig.controller
    c.prepare("conventional")
    c.start()
    assert c.set_target(1, 3.0).accepted
    rig.clock.advance(3.0)
    assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(3.0)
    session = c.snapshot().session_id
    assert session is not None
    return session


@pytest.mark.parametrize(("where", "key"), CASES)
async def test_the_stop_key_zeroes_every_output_within_the_s10_deadline(
    tmp_path: Path, where: str, key: str
) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    factory, keys, focus = SCREENS[where]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            session = await _stimulating(rig)
            await settle(pilot, app)
            screen = factory(app)
            if screen is not None:
                app.push_screen(screen)
                await settle(pilot, app)
            for k in keys:
                await pilot.press(k)
                await settle(pilot, app)
            box: Input | None = None
            if focus is not None:
                box = app.screen.query_one(focus, Input)
                box.focus()
                await settle(pilot, app)
                assert app.focused is box
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(3.0)
            assert "■ STIMULATING" in screen_text(app)

            t_key = rig.clock.now()
            await pilot.press(key)
            rig.clock.advance(S10_DEADLINE_S)
            zero = rig.record.all_zero_at(t_key)
            assert zero is not None, f"output still on after {key} on {where}"
            assert zero - t_key <= S10_DEADLINE_S + 1e-9
            if box is not None:
                assert box.value == ""  # the key stopped; it typed nothing
            await advance(pilot, rig, 0.1)
            assert rig.controller.state is SessionState.ENDED
            assert rig.store.session(session).end_reason is EndReason.EMERGENCY_STOP
    finally:
        rig.close()


async def test_space_types_a_space_in_a_text_box_when_no_session_runs(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            app.push_screen(DiaryScreen())
            await settle(pilot, app)
            await pilot.press("a", "5", "enter")
            await settle(pilot, app)
            await pilot.press(*"new pills")
            await settle(pilot, app)
            box = app.screen.query_one("#diary-notes", Input)
            assert box.value == "new pills"
            # Escape still stops (nothing runs: the output stays 0 and nothing is logged as a
            # session), and the text box keeps its text
            await pilot.press("escape")
            await settle(pilot, app)
            assert box.value == "new pills"
            assert rig.record.max_level() == 0.0
            assert isinstance(app.screen, DiaryEntryModal)
    finally:
        rig.close()


async def test_home_is_where_an_emergency_stop_without_a_session_leaves_you(
    tmp_path: Path,
) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            rig.controller.prepare("conventional")
            await settle(pilot, app)
            await pilot.press("space")
            await advance(pilot, rig, 0.1)
            assert isinstance(app.screen, HomeScreen)
            assert rig.controller.state in (SessionState.CONNECTED, SessionState.READY)
            assert rig.record.max_level() == 0.0
            assert rig.store.sessions() == []
    finally:
        rig.close()
