"""``tens-control`` with no command opens the UI; its options; the saved device; start-up imports;
the app opening its own store and controller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tens_control import cli
from tens_control.config import update_config
from tens_control.session import SessionState
from tens_control.ui import app as ui_app
from tens_control.ui.app import TensApp, make_app
from tests.ui_support import SIZE, make_ui_rig, screen_text, settle, wait_for


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[TensApp]:
    apps: list[TensApp] = []

    def fake_run(app: TensApp) -> int:
        apps.append(app)
        return 0

    monkeypatch.setattr(ui_app, "run_ui", fake_run)
    return apps


def test_no_command_opens_the_ui(started: list[TensApp]) -> None:
    assert cli.main([]) == 0
    (app,) = started
    assert app.options.device is None  # the saved device, else the simulator
    assert app.controller is None  # opened by the app itself, after the first screen


def test_options_alone_go_to_the_ui(started: list[TensApp], tmp_path: Path) -> None:
    db = str(tmp_path / "x.sqlite3")
    assert cli.main(["--device", "/dev/ttyUSB7", "--db", db, "--patient", "p-9"]) == 0
    (app,) = started
    assert app.options.device == "/dev/ttyUSB7"
    assert app.options.db == db
    assert app.options.patient == "p-9"


def test_simulator_flag_and_short_sessions(started: list[TensApp]) -> None:
    assert cli.main(["ui", "--simulator", "--session-minutes", "0.5"]) == 0
    (app,) = started
    assert app.options.device == "sim://tsp"
    assert app.options.session_minutes == 0.5


def test_bad_options_are_one_line_errors(
    started: list[TensApp], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--simulator", "--device", "/dev/ttyUSB0"]) == 2
    assert cli.main(["--session-minutes", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tens-control: error: give either --device or --simulator, not both",
        "tens-control: error: --session-minutes must be a positive number of minutes",
    ]
    assert started == []


def test_the_first_screen_needs_no_store_or_session_imports() -> None:
    """Start-up speed (P6): the UI module and the command do not pull in the store, SQLAlchemy,
    pydantic, the device layer or matplotlib before the first screen (the loader thread imports
    them after it)."""
    code = (
        "import sys, tens_control.cli as c; c.build_parser(only='ui');"
        "import tens_control.ui.app, tens_control.ui.screens.home;"
        "bad = [m for m in ('sqlalchemy', 'pydantic', 'matplotlib', 'tens_control.session',"
        " 'tens_control.store', 'tens_control.config', 'tens_control.screening', 'drivers',"
        " 'serial') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


async def test_the_saved_device_is_used(tmp_path: Path) -> None:
    update_config(device="sim://tsp?seed=3")
    rig = make_ui_rig(tmp_path)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await wait_for(pilot, app, lambda: bool(rig.opened), "connected")
            assert rig.opened[-1].url == "sim://tsp?seed=3"
            assert "SIMULATOR — no stimulation is delivered" in screen_text(app)
    finally:
        rig.close()


async def test_the_app_opens_its_own_store_and_connects_to_the_simulator(tmp_path: Path) -> None:
    """Without a controller (as from the command line), in real time: the store opens on a
    worker, the simulator connects, the screen says so."""
    db = tmp_path / "own.sqlite3"
    app = make_app(db=str(db), live=False, screening_on_start=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(
                pilot,
                app,
                lambda: (
                    app.controller is not None and app.controller.state is SessionState.CONNECTED
                ),
                "connected",
                tries=200,
            )
            await settle(pilot, app)
            assert "SIMULATOR — no stimulation is delivered" in screen_text(app)
            assert app.owns_backend
    finally:
        if app.controller is not None:
            app.controller.close()
        if app.store is not None:
            app.store.close()
        app.calls.close()
    assert db.exists()
