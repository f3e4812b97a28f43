"""The pad placement picture (tens_control.ui.pads) from a prescription's placements, and the
Ready screen showing it (pilot at 80×24 and 100×30, with snapshots)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tens_control.sites import ChannelPlacement, PadSize, Side, Site
from tens_control.ui.pads import pad_picture
from tests.ui_support import UiRig, make_ui_rig, prescription, screen_text, settle

PAD = PadSize.rectangle(5, 5)
SnapCompare = Callable[..., bool]


def placed(site: Site, second: Site | None = None, **fields: Any) -> ChannelPlacement:
    return ChannelPlacement(site=site, second_site=second, pad=PAD, **fields)


def rows(picture: str) -> list[str]:
    return picture.splitlines()


def test_residual_limb_nerve_and_mirror_pads_are_drawn_where_they_go() -> None:
    picture = pad_picture(
        [
            (1, placed(Site.RESIDUAL_LIMB, side=Side.LEFT)),
            (2, placed(Site.TRANSECTED_NERVE, Site.RESIDUAL_LIMB)),
            (3, placed(Site.CONTRALATERAL, side=Side.RIGHT)),
        ]
    )
    lines = rows(picture)
    assert lines[0].split() == ["residual", "limb", "(left)", "intact", "limb", "(right)"]
    stump = [line[2:16] for line in lines[2:5]]  # the residual limb's three rows
    limb = [line[22:36] for line in lines[2:5]]
    assert "[2] nerve" in stump[0]  # channel 2: one pad over the nerve ...
    assert "[1]" in stump[1]
    assert "[1][2]" in stump[2]  # ... the other low on the residual limb, beside channel 1's
    assert "[3]" in limb[1]
    assert "[3]" in limb[2]
    assert "[3]" not in "".join(stump)


def test_other_sites_are_named_not_drawn() -> None:
    assert pad_picture([(1, placed(Site.LOWER_BACK))]) == ""
    picture = pad_picture(
        [(1, placed(Site.RESIDUAL_LIMB)), (2, placed(Site.THIGH, side=Side.LEFT))]
    )
    assert picture.splitlines()[-1] == "  also: [2] left thigh, 5x5 cm pads (25.0 cm²)"
    assert "[2]" not in "".join(picture.splitlines()[1:-1])


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    the_rig = make_ui_rig(tmp_path, rx=prescription())
    try:
        yield the_rig
    finally:
        the_rig.close()


async def _to_ready(pilot: Pilot[Any], rig: UiRig) -> None:
    await settle(pilot, rig.app)
    for key in ("n", "enter", "6", "s"):
        await pilot.press(key)
        await settle(pilot, rig.app)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_ready_screen_draws_the_prescribed_placement(
    rig: UiRig, size: tuple[int, int]
) -> None:
    async with rig.app.run_test(size=size) as pilot:
        await _to_ready(pilot, rig)
        text = screen_text(rig.app)
    assert "residual limb (left)" in text
    assert "[2] nerve" in text
    assert "[1]" in text


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
def test_snapshot_ready(snap_compare: SnapCompare, rig: UiRig, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _to_ready(pilot, rig)

    assert snap_compare(rig.app, terminal_size=size, run_before=run_before)
