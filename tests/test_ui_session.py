"""Pilot tests of the patient UI on the in-process simulator in virtual time.

Every step is asserted on what the SIMULATOR DELIVERED (its record) and on the stored log, not
only on what the screen says."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.safety import LeadOff
from tens_control.session import SessionState
from tens_control.store.records import (
    AdverseKind,
    AmplitudeChanged,
    EndReason,
    Note,
    PainContext,
    PainSite,
    RatingTime,
    Severity,
    StateChanged,
)
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


def _states(rig: UiRig, session: str) -> list[str]:
    return [
        r.to_state for r in rig.records("state_changed", session) if isinstance(r, StateChanged)
    ]


async def test_a_whole_session_from_the_keyboard(tmp_path: Path) -> None:
    """Connect, screening, pre-rating, raise, pause/resume, lead-off, stop, post-rating."""
    rig = make_ui_rig(tmp_path, rx=prescription(), screened=False)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            # ---- first run: the safety questions come first; every answer is "no"
            text = screen_text(app)
            assert "Question 1 of 9" in text
            assert "SIMULATOR — no stimulation is delivered" in text
            await press(pilot, app, *["n"] * 9)
            assert "you may use TENS" in screen_text(app)
            await press(pilot, app, "enter")
            screening = rig.store.latest_screening()
            assert screening is not None
            assert len(screening.answers) == 9
            assert not any(screening.answers.values())

            # ---- connect: the connect screen, the simulator chosen from the list
            assert "Home" in screen_text(app)
            await press(pilot, app, "c")
            await wait_for(pilot, app, lambda: "Built-in simulator" in screen_text(app), "list")
            before = len(rig.opened)
            await press(pilot, app, "enter")
            await wait_for(pilot, app, lambda: "Home" in screen_text(app), "back home")
            assert len(rig.opened) == before + 1
            assert state(rig) is SessionState.CONNECTED
            assert rig.opened[-1].info.is_simulator
            assert "SIMULATOR — no stimulation is delivered" in screen_text(app)
            connects = [
                r
                for r in rig.records("state_changed")
                if isinstance(r, StateChanged) and r.to_state == "connected"
            ]
            assert len(connects) == 2  # at start, and again from the connect screen
            assert rig.store.devices()[-1].is_simulator
            assert rig.record.max_level() == 0.0  # connecting never stimulates

            # ---- setup and pre-rating (phantom 7, residual limb skipped)
            await press(pilot, app, "n")
            assert "Conventional" in screen_text(app)
            await press(pilot, app, "enter")
            await wait_for(pilot, app, lambda: "Pain rating" in screen_text(app), "rating")
            assert state(rig) is SessionState.READY
            await press(pilot, app, "7", "s")
            assert "Press Enter to start" in screen_text(app)
            await press(pilot, app, "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            session = rig.controller.snapshot().session_id
            assert session is not None
            assert rig.record.max_level() == 0.0  # S1: starts at 0

            # ---- raise intensity: six steps of 0.5 mA on channel 1, ramped by the governor
            await press_up(pilot, rig, 6)
            await advance(pilot, rig, 5.0)
            now = rig.clock.now()
            assert rig.record.level_at(1, now) == pytest.approx(3.0)
            assert rig.record.level_at(2, now) == 0.0
            steps = [b - a for _, a, b in rig.record.steps(1)]
            assert max(steps) <= 1.0 + 1e-9  # S2 on the device's side
            text = screen_text(app)
            assert "■ STIMULATING" in text
            assert "1: 3 mA" in text
            changes = [
                r
                for r in rig.records("amplitude_changed", session)
                if isinstance(r, AmplitudeChanged)
            ]
            assert changes[-1].to_ma == pytest.approx(3.0)
            assert changes[-1].who.value == "patient"

            # ---- pause: every output 0 at once; resume starts again from 0 (S1)
            t_pause = rig.clock.now()
            await press(pilot, app, "p")
            await advance(pilot, rig, 0.2)
            zero = rig.record.all_zero_at(t_pause)
            assert zero is not None
            assert zero - t_pause <= 0.1
            assert state(rig) is SessionState.PAUSED
            assert "PAUSED" in screen_text(app)
            await press(pilot, app, "p")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "resumed")
            await advance(pilot, rig, 1.0)
            assert rig.record.level_at(1, rig.clock.now()) == 0.0
            for _ in range(4):
                await press_up(pilot, rig)
            await advance(pilot, rig, 3.0)
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(2.0)

            # ---- lead-off injected on the device: channel 1 to 0, paused, banner says what to do
            t_off = rig.clock.now()
            rig.sim.inject("leadoff", channel=1)
            await advance(pilot, rig, 0.2)
            zero = rig.record.zero_at(1, t_off)
            assert zero is not None
            assert zero - t_off <= 0.1
            assert state(rig) is SessionState.PAUSED
            text = screen_text(app)
            assert "ALARM — Electrode off on channel 1" in text
            assert "then resume" in text
            faults = [r for r in rig.records("lead_off", session) if isinstance(r, LeadOff)]
            assert any(f.channel == 1 for f in faults)
            rig.sim.inject("leadon", channel=1)
            await advance(pilot, rig, 0.5)
            await press(pilot, app, "p")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "resumed")
            await advance(pilot, rig, 1.0)
            assert "Electrode off" not in screen_text(app)
            assert rig.record.level_at(1, rig.clock.now()) == 0.0  # from 0 again

            # ---- stop: the session ends (stopped by user) and the ratings follow
            for _ in range(2):
                await press_up(pilot, rig)
            await advance(pilot, rig, 2.0)
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(1.0)
            t_stop = rig.clock.now()
            await press(pilot, app, "x")
            await advance(pilot, rig, 0.2)
            zero = rig.record.all_zero_at(t_stop)
            assert zero is not None
            assert zero - t_stop <= 0.1
            await wait_for(
                pilot, app, lambda: "After the session" in screen_text(app), "post rating"
            )
            assert "Session stopped" in screen_text(app)

            # ---- post-rating, an adverse event and a note, then finish
            await press(pilot, app, "4", "3")
            assert "anything unusual" in screen_text(app)
            await press(pilot, app, "r", "1")
            assert "Skin redness — mild" in screen_text(app)
            await press(pilot, app, "n")
            await pilot.press(*"calm")
            await press(pilot, app, "enter", "f")
            await wait_for(pilot, app, lambda: "Home" in screen_text(app), "home")
            assert state(rig) is SessionState.CONNECTED
            end_record = rig.record.max_between(1, t_stop + 0.1, rig.clock.now() + 1)
            assert end_record == 0.0
        _check_the_log(rig, session)
    finally:
        rig.close()


def _check_the_log(rig: UiRig, session: str) -> None:
    info = rig.store.session(session)
    assert info.end_reason is EndReason.STOPPED_BY_USER
    assert info.program == "conventional"
    before = info.rating(RatingTime.BEFORE, PainSite.PHANTOM, PainContext.REST)
    skipped = info.rating(RatingTime.BEFORE, PainSite.RESIDUAL_LIMB, PainContext.REST)
    after = info.rating(RatingTime.AFTER, PainSite.PHANTOM, PainContext.REST)
    after_limb = info.rating(RatingTime.AFTER, PainSite.RESIDUAL_LIMB, PainContext.REST)
    assert before is not None
    assert before.nrs == 7
    assert skipped is not None
    assert skipped.nrs is None
    assert after is not None
    assert after.nrs == 4
    assert after_limb is not None
    assert after_limb.nrs == 3
    (adverse,) = rig.store.adverse_events(session=session)
    assert adverse.kind is AdverseKind.SKIN_REDNESS
    assert adverse.severity is Severity.MILD
    notes = [r.text for r in rig.records("note", session) if isinstance(r, Note)]
    assert "calm" in notes
    states = _states(rig, session)
    assert states.count("paused") == 2  # the patient's pause and the lead-off
    assert states[-1] == "ended"


async def test_controls_stop_at_the_cap_and_say_which_limit(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(max_amplitude_ma=2.0))
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            for _ in range(6):  # 3 mA asked, 2 mA allowed
                await press_up(pilot, rig)
            await advance(pilot, rig, 5.0)
            assert rig.record.max_level(1) == pytest.approx(2.0)
            text = screen_text(app)
            assert "AT LIMIT 2 mA (your prescription's limit)" in text
            assert "Channel 1 is at its highest allowed level" in text
            session = rig.controller.snapshot().session_id
            assert session is not None
            assert any(
                e.kind == "rejected" and e.payload.get("parameter") == "amplitude"
                for e in rig.events(session)
            )
    finally:
        rig.close()


async def test_comms_loss_banner_says_what_happened_and_what_to_do(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            for _ in range(4):
                await press_up(pilot, rig)
            await advance(pilot, rig, 3.0)
            rig.sim.inject("mute")
            await advance(pilot, rig, 3.0)
            assert state(rig) is SessionState.ENDED
            text = screen_text(app)
            assert "The connection to the device was lost" in text
            assert "reconnect" in text
            assert rig.record.level_at(1, rig.clock.now()) == 0.0  # the device's own watchdog
            session = rig.controller.snapshot().session_id
            assert session is not None
            assert rig.store.session(session).end_reason is EndReason.COMMS_LOST
    finally:
        rig.close()


async def test_habituation_prompt_is_asked_and_answered(tmp_path: Path) -> None:
    rx = prescription(habituation_prompt=True, habituation_prompt_minutes=5)
    rig = make_ui_rig(tmp_path, rx=rx, session_minutes=10)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            await press_up(pilot, rig, 2)
            await advance(pilot, rig, 301.0)
            assert "still strong but comfortable" in screen_text(app)
            await press(pilot, app, "n")
            assert "still strong but comfortable" not in screen_text(app)
            await press_up(pilot, rig)
            await advance(pilot, rig, 2.0)
            session = rig.controller.snapshot().session_id
            assert session is not None
            responses = [e.payload.get("response") for e in rig.events(session)]
            assert "asked" in responses
            assert any(str(r).startswith("no") for r in responses)
            changes = [
                r
                for r in rig.records("amplitude_changed", session)
                if isinstance(r, AmplitudeChanged)
            ]
            assert changes[-1].why.startswith("habituation adjustment")
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(1.5)
    finally:
        rig.close()


async def test_a_completed_session_goes_to_ratings_and_history(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription(), session_minutes=1)
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "8", "6", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            await press_up(pilot, rig, 4)
            await advance(pilot, rig, 61.0)
            assert rig.record.level_at(1, rig.clock.now()) == 0.0
            assert "Session complete" in screen_text(app)
            await press(pilot, app, "5", "t")
            await press(pilot, app, "f")
            await wait_for(pilot, app, lambda: "Home" in screen_text(app), "home")
            await press(pilot, app, "h")
            await wait_for(pilot, app, lambda: "completed" in screen_text(app), "history")
            text = screen_text(app)
            assert "8 → 5" in text
            assert "6 → 10" in text
        (info,) = rig.store.sessions()
        assert info.end_reason is EndReason.COMPLETED
    finally:
        rig.close()


async def test_a_yes_in_screening_blocks_a_real_unit_and_says_contact_the_clinician(
    tmp_path: Path,
) -> None:
    # a simulator that reports itself as a real unit, so the screening gate applies
    from drivers.clock import Clock
    from tens_control.device import OpenedDevice, open_device
    from tests.session_support import WrappedDriver

    rig = make_ui_rig(tmp_path, rx=prescription(), screened=False)

    def opener(
        url: str | None, clock: Clock, *, protocol: str | None = None, profile: str | None = None
    ) -> OpenedDevice:
        real = open_device("sim://tsp?seed=7", clock)
        driver = WrappedDriver(real.driver, is_simulator=False)
        opened = OpenedDevice(real.url, driver, real.profile, driver.info, port=real.port)
        rig.opened.append(opened)
        return opened

    rig.controller._opener = opener
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "y", *["n"] * 8)
            text = screen_text(app)
            assert "pacemaker, ICD or other active implant" in text
            assert "Contact your clinician" in text
            assert "practise" not in text  # not the simulator
            await press(pilot, app, "enter")
            assert "Stimulation is blocked" in screen_text(app)
            await press(pilot, app, "n", "enter")
            await wait_for(pilot, app, lambda: "cannot start" in screen_text(app), "refused")
            assert "stimulation is blocked" in screen_text(app).lower()
            assert state(rig) is SessionState.CONNECTED
            assert rig.record.max_level() == 0.0
    finally:
        rig.close()


async def test_quitting_stops_the_output_first(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            for _ in range(4):
                await press_up(pilot, rig)
            await advance(pilot, rig, 3.0)
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(2.0)
            t_quit = rig.clock.now()
            await pilot.press("ctrl+q")
        rig.clock.advance(0.05)
        zero = rig.record.all_zero_at(t_quit)
        assert zero is not None
        assert zero - t_quit <= 0.05
    finally:
        rig.close()


async def test_a_crash_in_the_ui_stops_the_output_first(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    t_crash = 0.0
    crashed: BaseException | None = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            for _ in range(4):
                await press_up(pilot, rig)
            await advance(pilot, rig, 3.0)
            assert rig.record.level_at(1, rig.clock.now()) == pytest.approx(2.0)
            t_crash = rig.clock.now()

            def boom() -> None:
                raise ZeroDivisionError("a bug in a screen")

            app.call_later(boom)
            await pilot.pause()
    except ZeroDivisionError as error:
        crashed = error
    assert isinstance(crashed, ZeroDivisionError)  # Textual re-raises it after exiting
    try:
        rig.clock.advance(0.05)
        zero = rig.record.all_zero_at(t_crash)
        assert zero is not None
        assert zero - t_crash <= 0.05
    finally:
        rig.close()


async def test_eighty_by_twenty_four_shows_the_running_session(tmp_path: Path) -> None:
    rig = make_ui_rig(tmp_path, rx=prescription())
    app = rig.app
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            await press(pilot, app, "n", "enter", "5", "5", "enter")
            await wait_for(pilot, app, lambda: state(rig) is SessionState.RUNNING, "running")
            await press_up(pilot, rig, 2)
            await advance(pilot, rig, 2.0)
            text = screen_text(app)
            for words in ("STOP: Esc or Space", "SIMULATOR", "■ STIMULATING", "time left"):
                assert words in text
            assert "Channel 1" in text
            assert "Channel 2" in text
            assert "MEASURED mA" in text
    finally:
        rig.close()
