"""Issue 12, the patient's hands, in the UI (Textual pilot, in virtual time), asserted on what
the simulator DELIVERED and on the log: ↑ never queues and stops on release (S16), the
habituation prompt's "too strong", Ctrl+C and Q stop the output before quitting, the
STIMULATING indicator never beside an emergency stop, a resume while the pad is still off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tens_control.session import SessionState
from tens_control.store.records import AmplitudeChanged, EndReason
from tests.ui_support import (
    SIZE,
    UiRig,
    advance,
    make_ui_rig,
    prescription,
    press,
    press_up,
    screen_text,
    settle,
    state,
    wait_for,
)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


async def _running(pilot: object, rig: UiRig) -> None:
    app = rig.app
    await settle(pilot, app)  # type: ignore[arg-type]
    await press(pilot, app, "n", "enter", "5", "5", "enter")  # type: ignore[arg-type]
    await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")  # type: ignore[arg-type]


def _delivered(rig: UiRig) -> float:
    return rig.record.level_at(1, rig.clock.now())


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_a_burst_of_up_presses_never_keeps_raising(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """110 presses in under a second at 4.5 mA, then nothing: the current stops rising within
    one step of where it was when the presses stopped (on main it climbed to the limit)."""
    rig = make_ui_rig(tmp_path, rx=prescription(max_amplitude_ma=50.0))
    app = rig.app
    try:
        async with app.run_test(size=size) as pilot:
            await _running(pilot, rig)
            await press_up(pilot, rig, 9)
            await advance(pilot, rig, 3.0)
            assert _delivered(rig) == pytest.approx(4.5)
            for _ in range(110):
                await pilot.press("up")
                await advance(pilot, rig, 0.008)
            released = rig.clock.now()
            at_release = _delivered(rig)
            await advance(pilot, rig, 30.0)
            most = rig.record.max_between(1, released, rig.clock.now())
            assert most <= at_release + 0.5 + 1e-9
            assert most <= 4.5 + 2.0 + 0.5 + 1e-9  # under a second at 2 mA/s, one step more
            assert "rising" not in screen_text(app)
    finally:
        rig.close()


async def test_habituation_too_strong_lowers_at_once(tmp_path: Path) -> None:
    rx = prescription(habituation_prompt=True, habituation_prompt_minutes=5)
    rig = make_ui_rig(tmp_path, rx=rx, session_minutes=10)
    app = rig.app
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await _running(pilot, rig)
            await press_up(pilot, rig, 6)
            await advance(pilot, rig, 301.0)
            text = screen_text(app)
            assert "too strong" in text
            assert _delivered(rig) == pytest.approx(3.0)
            t_answer = rig.clock.now()
            await press(pilot, app, "t")
            await advance(pilot, rig, 0.05)
            assert rig.record.level_at(1, t_answer + 0.05) == pytest.approx(2.5)
            session = rig.controller.snapshot().session_id
            assert session is not None
            responses = [e.payload.get("response") for e in rig.events(session)]
            assert "no: too strong or uncomfortable" in responses
            changes = [
                r
                for r in rig.records("amplitude_changed", session)
                if isinstance(r, AmplitudeChanged)
            ]
            assert changes[-1].why.startswith("habituation adjustment")
    finally:
        rig.close()


@pytest.mark.parametrize("key", ["ctrl+c", "q"])
async def test_ctrl_c_and_q_stop_the_output_first(tmp_path: Path, key: str) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _running(pilot, rig)
            await press_up(pilot, rig, 4)
            await advance(pilot, rig, 3.0)
            assert _delivered(rig) == pytest.approx(2.0)
            session = rig.controller.snapshot().session_id
            t_key = rig.clock.now()
            await pilot.press(key)
        rig.clock.advance(0.05)
        zero = rig.record.all_zero_at(t_key)
        assert zero is not None
        assert zero - t_key <= 0.05
        assert session is not None
        info = rig.store.session(session)
        assert info.end_reason is EndReason.STOPPED_BY_USER
    finally:
        rig.close()


async def test_no_stimulating_indicator_beside_the_emergency_stop(tmp_path: Path) -> None:
    """The device's acknowledgement of the stop (not a redraw) tells the indicator 0 mA: from
    the key to the acknowledgement the screen says STOPPING, never STIMULATING beside E-STOP."""
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _running(pilot, rig)
            await press_up(pilot, rig, 4)
            await advance(pilot, rig, 3.0)
            assert "STIMULATING" in screen_text(app)
            await pilot.press("space")
            for _ in range(6):  # no redraw timer (live=False): only the device's updates
                await settle(pilot, app)
                text = screen_text(app)
                assert not ("STIMULATING" in text and "EMERGENCY STOP" in text), text
                rig.clock.advance(0.02)
            assert rig.record.all_zero_at(rig.clock.now() - 0.12) is not None
            text = screen_text(app)
            assert "STIMULATING" not in text
            assert "STOPPING" not in text
    finally:
        rig.close()


async def test_resume_while_the_pad_is_still_off_keeps_the_alarm(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await _running(pilot, rig)
            await press_up(pilot, rig, 4)
            await advance(pilot, rig, 3.0)
            rig.sim.inject("leadoff", channel=1)
            await advance(pilot, rig, 0.5)
            assert state(rig) is SessionState.PAUSED
            await press(pilot, app, "p")  # the pad is still off
            await advance(pilot, rig, 1.0)
            assert state(rig) is SessionState.PAUSED
            text = screen_text(app)
            assert "Electrode off" in text or "electrode off" in text
            assert "still off" in text, text
            assert "RUNNING" not in text
            assert _delivered(rig) == 0.0
            rig.sim.inject("leadon", channel=1)
            await advance(pilot, rig, 0.5)
            await press(pilot, app, "p")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "resumed")
            await advance(pilot, rig, 2.0)
            assert _delivered(rig) == 0.0  # from 0 again: never back to where it was
    finally:
        rig.close()


SCREENS_80 = {
    "home": (),
    "history": ("h",),
    "diary": ("d",),
    "help": ("question_mark",),
    "connect": ("c",),
    "setup": ("n",),
    "rating": ("n", "enter"),
    "ready": ("n", "enter", "5", "5"),
    "running": ("n", "enter", "5", "5", "enter"),
}


@pytest.mark.parametrize("where", sorted(SCREENS_80))
async def test_every_footer_fits_at_80_columns(tmp_path: Path, where: str) -> None:
    """Issue 12 (18): each key the footer shows is there whole at 80×24 ("b Bac" was cut)."""
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            await press(pilot, app, *SCREENS_80[where])
            await advance(pilot, rig, 0.5)
            footer = screen_text(app).splitlines()[-1]
            shown = [
                binding.description
                for _, binding, _, _ in app.screen.active_bindings.values()
                if binding.show
            ]
            assert shown
            for label in shown:
                assert label in footer, (label, footer)
    finally:
        rig.close()
