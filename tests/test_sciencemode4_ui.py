"""A whole session on the emulated P24 (``sim://sciencemode4``) from the patient UI, in virtual
time. Every step is asserted on what the emulated device DELIVERED (its record) and on the
stored log, not only on what the screen says."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.safety import LeadOff
from tens_control.session import SessionState
from tens_control.store.records import EndReason
from tests.ui_support import (
    SIZE,
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

P24_URL = "sim://sciencemode4?seed=7"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


async def test_a_session_on_the_emulated_p24_from_the_keyboard(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(), default_url=P24_URL)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            assert state(rig) is SessionState.CONNECTED
            opened = rig.opened[-1]
            assert (opened.profile.id, opened.info.model) == ("p24", "P24")
            text = screen_text(app)
            assert "SIMULATOR — no stimulation is delivered" in text
            assert "cannot detect an electrode coming off" in text  # no impedance reports

            await press(pilot, app, "n")
            await press(pilot, app, "enter")
            await wait_for(pilot, app, lambda: "Pain rating" in screen_text(app), "rating")
            await press(pilot, app, "6", "s")
            await press(pilot, app, "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            session = rig.controller.snapshot().session_id
            assert session is not None
            assert rig.record.max_level() == 0.0  # S1: starts at 0

            # raise to 16 mA in the P24's 0.5 mA steps, ramped by the governor (S2)
            await press_up(pilot, rig, 32)
            await advance(pilot, rig, 3.0)
            now = rig.clock.now()
            assert rig.record.level_at(1, now) == pytest.approx(16.0)
            assert max(b - a for _, a, b in rig.record.steps(1)) <= 1.0 + 1e-9
            assert "1: 16 mA" in screen_text(app)

            # an electrode off at 16 mA: the P24 sees it (>= 15 mA), the session pauses (S7)
            t_off = rig.clock.now()
            rig.sim.inject("leadoff", channel=1)
            await advance(pilot, rig, 0.2)
            zero = rig.record.all_zero_at(t_off)
            assert zero is not None
            assert zero - t_off <= 0.1
            assert state(rig) is SessionState.PAUSED
            assert "ALARM — Electrode off on channel 1" in screen_text(app)
            faults = [r for r in rig.records("lead_off", session) if isinstance(r, LeadOff)]
            assert [f.channel for f in faults] == [1]
            rig.sim.inject("leadon", channel=1)
            await advance(pilot, rig, 0.5)
            await press(pilot, app, "p")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "resumed")
            await advance(pilot, rig, 1.0)
            assert rig.record.level_at(1, rig.clock.now()) == 0.0  # from 0 again (S1)
            await press_up(pilot, rig, 4)
            await advance(pilot, rig, 2.0)
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(2.0)

            # stop: every output 0 at once, then the ratings
            t_stop = rig.clock.now()
            await press(pilot, app, "x")
            await advance(pilot, rig, 0.2)
            zero = rig.record.all_zero_at(t_stop)
            assert zero is not None
            assert zero - t_stop <= 0.05
            await wait_for(
                pilot, app, lambda: "After the session" in screen_text(app), "post rating"
            )
            await press(pilot, app, "3", "s", "enter", "f")
            await wait_for(pilot, app, lambda: "Home" in screen_text(app), "home")
            assert rig.record.max_between(1, t_stop + 0.05, rig.clock.now()) == 0.0
        info = rig.store.session(session)
        assert info.end_reason is EndReason.STOPPED_BY_USER
        (device,) = {d.model for d in rig.store.devices()}
        assert device == "P24"
    finally:
        rig.close()
