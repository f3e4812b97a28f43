"""Hold ↑ to raise, release to stop (DESIGN.md S16; issue 12, point 1), checked on what the
simulator delivered: the key handling of the running screen (``tens_control.ui.hold``) on a real
session controller and the in-process simulator, in virtual time. A terminal reports presses,
never releases: a held key is its auto-repeat, a release is the repeats stopping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tens_control.session import SessionState
from tens_control.ui.hold import REPEAT_GAP_S, RaiseKey
from tests.session_support import Rig, make_rig, prescription

STEP = 0.5  # the simulator's amplitude step (mA)
REPEAT_S = 0.033  # a terminal's auto-repeat: 30 presses a second


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path, rx=prescription(max_amplitude_ma=50.0))
    try:
        rig.c.connect("sim://tsp")
        rig.c.prepare("conventional", 30)
        rig.c.start()
        assert rig.c.state is SessionState.RUNNING
        yield rig
    finally:
        rig.close()


def _key(rig: Rig) -> RaiseKey:
    c = rig.c

    def increase(channel: int, done: Callable[[], None]) -> None:
        try:
            c.increase(channel)
        finally:
            done()

    return RaiseKey(rig.clock, increase, lambda channel: c.hold(channel))


def _delivered(rig: Rig) -> float:
    return rig.record.level_at(1, rig.clock.now())


def test_holding_up_raises_and_releasing_stops_within_one_step(rig: Rig) -> None:
    key = _key(rig)
    for _ in range(int(3.0 / REPEAT_S)):  # held for three seconds
        key.pressed(1)
        rig.advance(REPEAT_S)
    assert key.held(1)
    at_release = _delivered(rig)
    assert at_release >= 2.0  # it did rise while held
    rig.advance(30.0)  # let go; nothing else pressed
    assert not key.held(1)
    after = rig.record.max_between(1, rig.clock.now() - 30.0, rig.clock.now())
    assert after <= at_release + STEP + 1e-9  # at most the step already on its way
    assert rig.c.snapshot().channel(1).target_ma <= at_release + STEP + 1e-9


def test_110_quick_presses_never_queue(rig: Rig) -> None:
    """The case of the issue: 110 presses in under a second at 4.5 mA then no input; on main the
    current went on climbing to the 50 mA limit."""
    assert rig.c.set_target(1, 4.5).accepted
    rig.advance(5.0)
    assert _delivered(rig) == 4.5
    key = _key(rig)
    for _ in range(110):
        key.pressed(1)
        rig.advance(0.008)
    released = rig.clock.now()
    rig.advance(30.0)
    most = rig.record.max_between(1, released, rig.clock.now())
    # under a second of presses ramps at most 2 mA/s, plus the one step on its way
    assert most <= 4.5 + 2.0 + STEP + 1e-9
    assert _delivered(rig) == most  # and it stayed there: no queued press kept raising it


def test_separate_presses_are_one_step_each(rig: Rig) -> None:
    key = _key(rig)
    for _ in range(4):
        key.pressed(1)
        rig.advance(REPEAT_GAP_S + 0.5)  # a deliberate press, then a pause
    assert _delivered(rig) == 4 * STEP


def test_another_key_stops_the_rise_at_once(rig: Rig) -> None:
    key = _key(rig)
    for _ in range(30):
        key.pressed(1)
        rig.advance(REPEAT_S)
    now = _delivered(rig)
    key.other_key(1)  # for example ↓ or a channel key while ↑ is still held
    rig.advance(10.0)
    assert _delivered(rig) <= now + STEP + 1e-9
