"""Start-up (DESIGN.md P6): the home screen is drawn first, whole, with "Loading…"; the back end
opens on a thread only after that first frame; the keys work before it is ready; the screen fills
in when it is; an error while opening is one clear message.

The app is built as the ``tens-control`` command builds it (no controller, no store). Its
:meth:`TensApp.open_backend` is replaced by one that waits until the test lets it go and then
returns a controller and store on the simulator in virtual time, so that every step is
deterministic (no sleeping, no timing).
"""

from __future__ import annotations

import threading
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from drivers.clock import Clock
from tens_control.errors import TensControlError
from tens_control.session import SessionController, SessionState
from tens_control.store.store import Store
from tens_control.ui.app import TensApp, make_app
from tens_control.ui.screens.help import HelpScreen
from tens_control.ui.screens.home import HomeScreen
from tests.ui_support import SIZE, UiRig, make_ui_rig, screen_text, settle, wait_for

LOADER_TIMEOUT_S = 30.0
"""Bound on waiting for the loader thread (it only waits for the test)."""


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


class HeldBackend:
    """An ``open_backend`` that records when it is called and waits for :meth:`release`."""

    def __init__(self, app: TensApp, rig: UiRig) -> None:
        self.app = app
        self.rig = rig
        self.called = threading.Event()
        self.go = threading.Event()
        self.painted_when_called: bool | None = None
        self.home_composed_when_called: bool | None = None
        self.error: Exception | None = None

    def __call__(self) -> tuple[SessionController, Store, Clock]:
        self.painted_when_called = self.app.first_paint_done
        self.home_composed_when_called = bool(self.app.screen_stack) and isinstance(
            self.app.screen_stack[0], HomeScreen
        )
        self.called.set()
        if not self.go.wait(LOADER_TIMEOUT_S):
            raise TensControlError("the test never released the back end")
        if self.error is not None:
            raise self.error
        return self.rig.controller, self.rig.store, self.rig.clock

    def release(self) -> None:
        self.go.set()


def record_notices(app: TensApp) -> list[str]:
    """Every message the app shows as a notification (toast), in order."""
    shown: list[str] = []
    notify = app.notify

    def recording(message: str, *args: Any, **kwargs: Any) -> None:
        shown.append(message)
        notify(message, *args, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return shown


def startup_app(tmp_path: Path) -> tuple[TensApp, HeldBackend, UiRig]:
    rig = make_ui_rig(tmp_path)
    app = make_app(
        db=str(tmp_path / "unused.sqlite3"),
        live=False,
        tz=UTC,
        cursor_blink=False,
        wall=rig.app.options.wall,
    )
    held = HeldBackend(app, rig)
    app.open_backend = held  # type: ignore[method-assign]
    return app, held, rig


def finish(app: TensApp, held: HeldBackend, rig: UiRig) -> None:
    held.release()
    app.calls.close()
    app.close_owned_backend(LOADER_TIMEOUT_S)
    rig.app.calls.close()
    rig.controller.close()
    rig.store.close()


async def loader_started(pilot: Pilot[Any], app: TensApp, held: HeldBackend) -> None:
    await wait_for(pilot, app, held.called.is_set, "the back end started loading")


async def test_the_first_frame_is_the_home_screen_saying_loading(tmp_path: Path) -> None:
    app, held, rig = startup_app(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loader_started(pilot, app, held)
            # the back end started only once the home screen had been drawn whole
            assert held.painted_when_called is True
            assert held.home_composed_when_called is True
            assert isinstance(app.screen, HomeScreen)
            assert app.loading
            assert app.controller is None
            text = screen_text(app)
            assert "tens-control › Home" in text
            assert "Loading…" in text
            assert "Esc/Space STOP" in text  # the key line is there from the first frame
            assert "q Quit" in text
            assert "No pain ratings yet" not in text  # not known yet: not claimed
            assert "Sessions today" not in text
    finally:
        finish(app, held, rig)


async def test_keys_work_before_the_back_end_is_ready(tmp_path: Path) -> None:
    app, held, rig = startup_app(tmp_path)
    try:
        notices = record_notices(app)
        async with app.run_test(size=SIZE) as pilot:
            await loader_started(pilot, app, held)
            # emergency stop with nothing connected: a no-op that says so, never a crash
            for key in ("escape", "space", "ctrl+e"):
                await pilot.press(key)
                await pilot.pause()
            assert app.is_running
            assert notices == ["STOP: every output is off (no session was running)."] * 3
            assert "EMERGENCY STOP" not in screen_text(app)  # no session was running: no alarm
            # keys that need the back end say it is still starting
            notices.clear()
            for key in ("n", "c", "h", "d", "s"):
                await pilot.press(key)
                await pilot.pause()
                assert isinstance(app.screen, HomeScreen), key
            assert len(notices) == 5
            assert all(n.startswith("tens-control is still starting") for n in notices)
            # help opens and closes
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("b")
            await pilot.pause()
            assert isinstance(app.screen, HomeScreen)
            assert not held.go.is_set()
            assert app.controller is None
    finally:
        finish(app, held, rig)


async def test_the_home_screen_fills_in_when_the_back_end_is_ready(tmp_path: Path) -> None:
    app, held, rig = startup_app(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loader_started(pilot, app, held)
            assert "Loading…" in screen_text(app)
            held.release()
            await wait_for(
                pilot,
                app,
                lambda: (
                    app.controller is not None and app.controller.state is SessionState.CONNECTED
                ),
                "connected",
            )
            await wait_for(
                pilot,
                app,
                lambda: "Sessions today: 0" in screen_text(app),
                "the home screen filled in",
            )
            await settle(pilot, app)
            text = screen_text(app)
            assert "SIMULATOR — no stimulation is delivered" in text
            assert "the built-in SIMULATOR" in text
            assert "No pain ratings yet" in text
            assert "Loading…" not in text
            assert "N  start a session" in text
            assert app.owns_backend
            assert not app.loading
            # and the keys that needed it work now
            await pilot.press("h")
            await settle(pilot, app)
            assert "History" in screen_text(app)
    finally:
        finish(app, held, rig)
    assert rig.store.closed  # the app opened it, so the app closed it


async def test_quitting_while_loading_closes_what_the_loader_opens(tmp_path: Path) -> None:
    app, held, rig = startup_app(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loader_started(pilot, app, held)
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0
        held.release()  # the loader finishes after the UI has gone
        app.calls.close()
        app.close_owned_backend(LOADER_TIMEOUT_S)
        assert rig.store.closed
        assert rig.controller.device is None  # never connected
    finally:
        finish(app, held, rig)


async def test_an_error_while_loading_is_one_clear_message(tmp_path: Path) -> None:
    app, held, rig = startup_app(tmp_path)
    held.error = TensControlError(
        "the database /x/tens.sqlite3 is in use by another tens-control; close it first."
    )
    notices = record_notices(app)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loader_started(pilot, app, held)
            held.release()
            await wait_for(pilot, app, lambda: bool(app.backend_error), "the error shown")
            await settle(pilot, app)
            text = screen_text(app)
            assert text.count("could not start") == 1
            assert (
                "ALARM — tens-control could not start: The database /x/tens.sqlite3 is in use "
                "by another tens-control; close it first. Press Q to quit."
            ) in " ".join(text.split())
            assert "Traceback" not in text
            assert "Loading…" not in text  # it is not coming
            assert "Not started" in text
            await pilot.press("n")
            await pilot.pause()
            assert isinstance(app.screen, HomeScreen)
            assert notices[-1].startswith("tens-control could not start")
            await pilot.press("escape")  # still harmless
            await pilot.pause()
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0
    finally:
        finish(app, held, rig)


async def test_a_real_store_error_is_one_clear_message(tmp_path: Path) -> None:
    """Without a stand-in: the database path is a directory."""
    app = make_app(db=str(tmp_path), live=False, cursor_blink=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(
                pilot, app, lambda: bool(app.backend_error), "the error shown", tries=200
            )
            await settle(pilot, app)
            text = " ".join(screen_text(app).split())
            assert text.count("could not start") == 1
            assert "Press Q to quit" in text
            assert "Traceback" not in text
            assert "Something went wrong" not in text  # a user error, said in its own words
    finally:
        app.calls.close()
        app.close_owned_backend(LOADER_TIMEOUT_S)
