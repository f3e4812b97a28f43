"""The patient's side of an N-of-1 program comparison (issue 17) in the UI: the day's program is
offered first, marked, and explained; choosing another is allowed and logged as a deviation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tens_control.comparison import ProgramComparison
from tens_control.store import Note
from tests.ui_support import (
    START,
    UiRig,
    make_ui_rig,
    prescription,
    press,
    screen_text,
    settle,
    wait_for,
)

COMPARISON = ProgramComparison(
    programs=("burst", "conventional"), start=START.date(), block_days=7, seed=3
)
TODAY = COMPARISON.program_on(START.date())


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("TENS_CONTROL_DB", raising=False)
    monkeypatch.delenv("TENS_CONTROL_PATIENT", raising=False)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[UiRig]:
    the_rig = make_ui_rig(tmp_path, rx=prescription(comparison=COMPARISON.model_dump(mode="json")))
    try:
        yield the_rig
    finally:
        the_rig.close()


def _comparison_notes(rig: UiRig) -> list[Any]:
    return [
        r.data["comparison"]
        for r in rig.records("note")
        if isinstance(r, Note) and r.data is not None and "comparison" in r.data
    ]


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_the_days_program_comes_first_and_another_is_a_deviation(
    rig: UiRig, size: tuple[int, int]
) -> None:
    assert TODAY == "burst"  # seed 3: the first block; the prescription lists burst last
    app = rig.app
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "n")
        text = screen_text(app)
        assert "today ▸ Burst" in text
        assert "comparing programs" in text
        # the first option is the day's; one down is another program, allowed and noted
        await press(pilot, app, "down")
        assert "Today's program in your clinician's comparison is burst" in screen_text(app)
        await press(pilot, app, "enter")
        await wait_for(pilot, app, lambda: "Pain rating" in screen_text(app), "rating")
        await press(pilot, app, "5", "s", "enter")
        await wait_for(pilot, app, lambda: bool(_comparison_notes(rig)), "session logged")
    (note,) = _comparison_notes(rig)
    assert note["scheduled"] == "burst"
    assert note["deviation"] is True
    assert note["program"] == "conventional"


def test_setup_with_a_comparison(snap_compare: Any, rig: UiRig) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, rig.app)
        await pilot.press("n")
        await settle(pilot, rig.app)

    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=run_before)
