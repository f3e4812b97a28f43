"""The diary screen and its dialog, key by key, at 80×24 and 100×30 (Textual pilot), with
snapshots of every step (pytest-textual-snapshot; update with ``--snapshot-update`` after
looking at the report).

Issue 12 point 12: the cancel key the dialog names really cancels (B where no text box is typed
in, Ctrl+X always; Esc stays the emergency stop); Enter on an empty note asks once instead of
saving; entries are edited and deleted (new records, the history kept) and backdated (both
times stored, at most 7 days). Point 19: sleep, mood, the doses taken and the body map.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tens_control import diary
from tens_control.pain import BodyRegion
from tens_control.store.records import DiaryItem, DiaryKind, PainSite
from tens_control.ui.screens.diary import DeleteModal, DiaryEntryModal, DiaryScreen
from tests.ui_support import START, UiRig, make_ui_rig, prescription, screen_text, settle

SIZES = [(80, 24), (100, 30)]
SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[UiRig]:
    the_rig = make_ui_rig(tmp_path, rx=prescription())
    try:
        yield the_rig
    finally:
        the_rig.close()


async def _keys(pilot: Pilot[Any], rig: UiRig, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot, rig.app)


async def _open_diary(pilot: Pilot[Any], rig: UiRig) -> None:
    await settle(pilot, rig.app)
    await _keys(pilot, rig, "d")
    assert isinstance(rig.app.screen, DiaryScreen)


def _entries(rig: UiRig) -> list[diary.EntryHistory]:
    return diary.histories(rig.store)


@pytest.mark.parametrize("size", SIZES)
async def test_cancel_keys_cancel_and_say_so(rig: UiRig, size: tuple[int, int]) -> None:
    async with rig.app.run_test(size=size) as pilot:
        await _open_diary(pilot, rig)
        # on a key step, the hint names B, and B cancels
        await _keys(pilot, rig, "a")
        assert "B = cancel" in screen_text(rig.app)
        await _keys(pilot, rig, "b")
        assert isinstance(rig.app.screen, DiaryScreen)
        # in the note box B is a letter: the hint names Ctrl+X, which cancels
        await _keys(pilot, rig, "a", "8", "enter", *"bike")
        assert isinstance(rig.app.screen, DiaryEntryModal)
        text = screen_text(rig.app)
        assert "Ctrl+X = cancel" in text
        assert "B = cancel" not in text
        assert rig.app.screen.query_one("#diary-notes").value == "bike"  # type: ignore[attr-defined]
        await _keys(pilot, rig, "ctrl+x")
        assert isinstance(rig.app.screen, DiaryScreen)
        # Esc is still the emergency stop, not a cancel: the dialog stays
        await _keys(pilot, rig, "a", "escape")
        assert isinstance(rig.app.screen, DiaryEntryModal)
        await _keys(pilot, rig, "b")
    assert _entries(rig) == []


@pytest.mark.parametrize("size", SIZES)
async def test_enter_on_an_empty_note_asks_before_saving(rig: UiRig, size: tuple[int, int]) -> None:
    async with rig.app.run_test(size=size) as pilot:
        await _open_diary(pilot, rig)
        await _keys(pilot, rig, "a", "7", "enter", "enter")
        assert isinstance(rig.app.screen, DiaryEntryModal)
        assert "Enter again = save without a note" in screen_text(rig.app)
        assert _entries(rig) == []
        await _keys(pilot, rig, "enter")
        assert isinstance(rig.app.screen, DiaryScreen)
        # "something else" needs words: Enter never saves it empty
        await _keys(pilot, rig, "a", "9", "enter", "enter", "enter")
        assert isinstance(rig.app.screen, DiaryEntryModal)
        assert "Please write what it was." in screen_text(rig.app)
        await _keys(pilot, rig, "ctrl+x")
    (entry,) = _entries(rig)
    assert entry.current.kind is DiaryKind.MIRROR_THERAPY
    assert entry.current.notes == ""


@pytest.mark.parametrize("size", SIZES)
async def test_a_pain_episode_backdated_with_the_body_map(
    rig: UiRig, size: tuple[int, int]
) -> None:
    async with rig.app.run_test(size=size) as pilot:
        await _open_diary(pilot, rig)
        # two days and an hour back, phantom pain in the fingers/toes and hand/foot, worst 7
        await _keys(pilot, rig, "a", "1", "left", "left", "down", "down", "down", "down")
        assert "Sat 28 Feb 07:00" in screen_text(rig.app)
        await _keys(pilot, rig, "enter", "p", "1", "2", "3", "3")
        assert "1■ fingers or toes" in screen_text(rig.app)
        assert "3□" in screen_text(rig.app)
        await _keys(pilot, rig, "enter", "7", *"after a walk", "enter")
        assert isinstance(rig.app.screen, DiaryScreen)
        text = screen_text(rig.app)
        assert "7/10 phantom: fingers/toes, hand/foot" in text
        assert "written 02 Mar" in text
    (entry,) = _entries(rig)
    item = entry.current
    assert item.start == START - timedelta(days=2, hours=1)
    assert abs(item.written_at - START) < timedelta(seconds=1)
    assert item.regions == (BodyRegion.PHANTOM_DIGITS, BodyRegion.PHANTOM_HAND_FOOT)
    assert item.nrs == 7
    assert item.notes == "after a walk"


async def test_backdating_stops_at_seven_days_and_now(rig: UiRig) -> None:
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await _open_diary(pilot, rig)
        await _keys(pilot, rig, "a", "3", *["left"] * 9)
        assert "At most 7 days back" in screen_text(rig.app)
        await _keys(pilot, rig, "enter", "5", *"x", "enter")
        await _keys(pilot, rig, "a", "3", "up", "right")  # not into the future
        assert "(now)" in screen_text(rig.app)
        await _keys(pilot, rig, "enter", "6", *"y", "enter")
    first, second = _entries(rig)
    assert abs(first.current.start - (START - timedelta(days=7))) < timedelta(minutes=1)
    assert abs(second.current.start - START) < timedelta(seconds=1)


@pytest.mark.parametrize("size", SIZES)
async def test_sleep_mood_and_a_dose_taken(rig: UiRig, size: tuple[int, int]) -> None:
    async with rig.app.run_test(size=size) as pilot:
        await _open_diary(pilot, rig)
        await _keys(pilot, rig, "a", "2", "enter", *"6,5", "enter", "4", "enter", "enter")
        await _keys(pilot, rig, "a", "3", "enter", "t", *"good day", "enter")
        await _keys(pilot, rig, "a", "4", "down", "down", "enter", "enter")
        assert "Please write the medicine's name" in screen_text(rig.app)
        await _keys(pilot, rig, *"gabapentin", "enter", *"300 mg", "enter", "enter", "enter")
        assert isinstance(rig.app.screen, DiaryScreen)
        text = screen_text(rig.app)
        assert "gabapentin 300 mg" in text
        assert "mood 10/10" in text
        assert "6.5 h, slept 4/10" in text
    items = {h.current.kind: h.current for h in _entries(rig)}
    assert items[DiaryKind.SLEEP].sleep_hours == 6.5
    assert items[DiaryKind.SLEEP].sleep_quality == 4
    assert items[DiaryKind.MOOD].mood == 10
    assert items[DiaryKind.MOOD].notes == "good day"
    taken = items[DiaryKind.MEDICATION_TAKEN]
    assert (taken.medication, taken.dose) == ("gabapentin", "300 mg")
    assert taken.start == START - timedelta(minutes=30)  # 08:00 and 8 ms, 30 min back


def _seed(rig: UiRig) -> DiaryItem:
    item = DiaryItem(
        kind=DiaryKind.PAIN_EPISODE,
        start=START - timedelta(hours=3),
        written_at=START - timedelta(hours=3),
        pain=PainSite.RESIDUAL_LIMB,
        nrs=5,
        regions=(BodyRegion.STUMP_END,),
        notes="socket rubbing",
    )
    diary.write(rig.store, item)
    diary.write(
        rig.store,
        DiaryItem(
            kind=DiaryKind.MOOD,
            start=START - timedelta(hours=1),
            written_at=START - timedelta(hours=1),
            mood=6,
        ),
    )
    return item


@pytest.mark.parametrize("size", SIZES)
async def test_edit_keeps_what_is_not_changed_and_delete_asks(
    rig: UiRig, size: tuple[int, int]
) -> None:
    episode = _seed(rig)
    async with rig.app.run_test(size=size) as pilot:
        await _open_diary(pilot, rig)
        # the list is latest first: the mood, then the episode
        await _keys(pilot, rig, "down", "e")
        assert "Edit — Pain episode" in screen_text(rig.app)
        await _keys(pilot, rig, "enter")  # the time as it was
        assert "Enter = keep residual limb" in screen_text(rig.app)
        await _keys(pilot, rig, "enter", "2", "enter", "3")  # add the scar, worst 3
        await _keys(pilot, rig, "ctrl+u", *"better with a new liner", "enter")
        assert "edited" in screen_text(rig.app)
        # delete the mood: asks first; N keeps it, Y deletes it
        await _keys(pilot, rig, "up", "delete")
        assert isinstance(rig.app.screen, DeleteModal)
        await _keys(pilot, rig, "n")
        assert len(diary.current(rig.store)) == 2
        await _keys(pilot, rig, "up", "delete", "y")
        assert "Deleted. 1 entry." in screen_text(rig.app)
    kept, gone = _entries(rig)
    assert kept.uid == episode.uid
    assert [v.nrs for v in kept.versions] == [5, 3]
    assert kept.current.regions == (BodyRegion.STUMP_END, BodyRegion.STUMP_SCAR)
    assert kept.current.start == episode.start  # happened: unchanged
    assert abs(kept.current.written_at - START) < timedelta(seconds=1)  # this version: now
    assert kept.versions[0].notes == "socket rubbing"  # the history is kept
    assert gone.retracted


# --- snapshots ----------------------------------------------------------------------------------


def _steps(rig: UiRig, *keys: str, seed: bool = False) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        if seed:
            _seed(rig)
        await settle(pilot, rig.app)
        await _keys(pilot, rig, "d", *keys)

    return run_before


SNAPSHOTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "kinds": (("a",), False),
    "when": (("a", "1", "left", "down"), False),
    "body_map_phantom": (("a", "1", "enter", "p", "1", "3"), False),
    "body_map_residual": (("a", "1", "enter", "l", "1", "2"), False),
    "sleep_hours": (("a", "2", "enter", "7"), False),
    "dose": (("a", "4", "enter", *"gabapentin", "enter"), False),
    "empty_note": (("a", "7", "enter", "enter"), False),
    "list": ((), True),
    "delete": (("delete",), True),
    "edit": (("down", "e", "enter"), True),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(SNAPSHOTS))
def test_snapshot(snap_compare: SnapCompare, rig: UiRig, name: str, size: tuple[int, int]) -> None:
    keys, seed = SNAPSHOTS[name]
    assert snap_compare(rig.app, terminal_size=size, run_before=_steps(rig, *keys, seed=seed))
