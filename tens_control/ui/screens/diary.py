"""Diary: pain episodes between sessions (with a body map of where it hurts), sleep, mood, the
doses of medicine taken and other treatments, kept with the sessions for the clinician.

Entries can be dated back (at most 7 days), edited and deleted. The log is append-only: an
edit is a new version and a delete a retraction (``tens_control.diary``); the clinician sees
every version. Esc and Space stay the emergency stop everywhere; the dialog is cancelled with
B (while no text box is being typed in) or Ctrl+X (always).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, ClassVar

from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static

from tens_control.diary import BACKDATE_LIMIT, EntryHistory, backdate_problem, describe
from tens_control.pain import BODY_REGIONS, MOOD_WORDS, SLEEP_QUALITY_WORDS
from tens_control.store.records import BodyRegion, DiaryItem, DiaryKind, PainSite
from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensModal, TensScreen
from tens_control.ui.widgets.inputs import SafeInput

if TYPE_CHECKING:
    from tens_control.store.store import Store

log = logging.getLogger(__name__)

KINDS: tuple[tuple[str, DiaryKind, str], ...] = (
    ("1", DiaryKind.PAIN_EPISODE, "Pain episode (where and how bad)"),
    ("2", DiaryKind.SLEEP, "Last night's sleep"),
    ("3", DiaryKind.MOOD, "Mood today"),
    ("4", DiaryKind.MEDICATION_TAKEN, "Medicine taken (name, dose, time)"),
    ("5", DiaryKind.MEDICATION_CHANGE, "Medication change"),
    ("6", DiaryKind.KETAMINE_INFUSION, "Ketamine infusion"),
    ("7", DiaryKind.MIRROR_THERAPY, "Mirror therapy"),
    ("8", DiaryKind.PHYSIOTHERAPY, "Physiotherapy"),
    ("9", DiaryKind.OTHER, "Something else"),
)
KIND_NAMES: dict[DiaryKind, str] = {
    DiaryKind.PAIN_EPISODE: "Pain episode",
    DiaryKind.SLEEP: "Sleep",
    DiaryKind.MOOD: "Mood",
    DiaryKind.MEDICATION_TAKEN: "Medicine taken",
    DiaryKind.MEDICATION_CHANGE: "Medication change",
    DiaryKind.KETAMINE_INFUSION: "Ketamine infusion",
    DiaryKind.MIRROR_THERAPY: "Mirror therapy",
    DiaryKind.PHYSIOTHERAPY: "Physiotherapy",
    DiaryKind.OTHER: "Something else",
}
_SHORTER: dict[DiaryKind, str] = {
    DiaryKind.PAIN_EPISODE: "Pain",
    DiaryKind.MEDICATION_TAKEN: "Medicine",
    DiaryKind.MEDICATION_CHANGE: "Med. change",
    DiaryKind.KETAMINE_INFUSION: "Ketamine",
    DiaryKind.PHYSIOTHERAPY: "Physio",
    DiaryKind.OTHER: "Other",
}
"""The list's names where the dialog's are too long for 80 columns."""
SHORT_NAMES = {**KIND_NAMES, **_SHORTER}
TIME_STEP = timedelta(minutes=15)
TEXT_STEPS = frozenset({"hours", "medication", "dose", "notes"})
"""Steps typed into the text box (where letters are text, not keys)."""


def steps_for(kind: DiaryKind, pain: PainSite | None) -> tuple[str, ...]:
    """The dialog's steps after the kind: when it happened, what kind of entry asks, a note."""
    own: tuple[str, ...] = ()
    if kind is DiaryKind.PAIN_EPISODE:
        own = ("pain", "nrs") if pain is PainSite.OTHER else ("pain", "map", "nrs")
    elif kind is DiaryKind.SLEEP:
        own = ("hours", "quality")
    elif kind is DiaryKind.MOOD:
        own = ("mood",)
    elif kind in (DiaryKind.MEDICATION_TAKEN, DiaryKind.MEDICATION_CHANGE):
        own = ("medication", "dose")
    return ("when", *own, "notes")


def body_map(pain: PainSite, chosen: tuple[BodyRegion, ...]) -> str:
    """The body map for one pain as a small drawing: numbered parts, ■ chosen, □ not."""

    def box(n: int) -> str:
        region = BODY_REGIONS[pain][n - 1]
        return f"{n}{'■' if region in chosen else '□'}"

    if pain is PainSite.PHANTOM:
        return "\n".join(
            (
                "  ┌──────────┐  your residual limb",
                "  ╰──────────╯",
                f"   ┊        ┊   {box(3)} wrist/forearm or ankle/lower leg",
                f"   ┊        ┊   {box(4)} the whole missing limb",
                f"   ╰┄┄┄┄┄┄┄┄╯   {box(2)} hand or foot",
                f"    ┊┊┊┊┊┊┊     {box(1)} fingers or toes",
            )
        )
    return "\n".join(
        (
            f"   {box(3)} front       {box(4)} back",
            "  ┌──────────┐  ┌──────────┐",
            "  │          │  │          │  your residual limb",
            "  │          │  │          │",
            f"  ╰──╌╌╌╌╌╌──╯  ╰──────────╯  {box(2)} along the scar",
            f"       {box(1)} end of the residual limb",
        )
    )


def when_text(moment: datetime, now: datetime, tz: tzinfo | None) -> str:
    """``today 14:30 (now)``, ``yesterday 09:15``, ``Mon 01 Dec 09:15``."""
    local = moment.astimezone(tz)
    today = now.astimezone(tz).date()
    days = (today - local.date()).days
    day = {0: "today", 1: "yesterday"}.get(days, local.strftime("%a %d %b"))
    clock = local.strftime("%H:%M")
    return f"{day} {clock}" + (" (now)" if abs(now - moment) < timedelta(minutes=1) else "")


def load_diary(store: Store, patient: str) -> list[EntryHistory]:
    """The patient's current entries, latest first."""
    from tens_control import diary

    return list(reversed(diary.current(store, patient)))


def table_row(h: EntryHistory, tz: tzinfo | None) -> tuple[str, ...]:
    item = h.current
    when = item.start.astimezone(tz).strftime("%d %b %H:%M")
    written = ""
    if item.start < item.written_at - timedelta(hours=1):
        written = "written " + item.written_at.astimezone(tz).strftime("%d %b")
    if h.edited:
        written = f"{written}, edited" if written else "edited"
    what = SHORT_NAMES.get(item.kind, item.kind.value)
    return (when, what, describe(item), written, item.notes[:30])


class DiaryEntryModal(TensModal[DiaryItem | None]):
    """Add or edit an entry in a few keys: what (1-9), when, what it asks for, then a note."""

    TITLE_TEXT = "Diary — entry"
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(str(n), f"digit({n})", show=False) for n in range(10)],
        Binding("t", "digit(10)", show=False),
        Binding("s", "skip", "Skip", show=False),
        Binding("p", "pain('phantom')", show=False),
        Binding("l", "pain('residual_limb')", show=False),
        Binding("o", "pain('other')", show=False),
        Binding("n", "now", show=False),
        Binding("left", "shift_day(-1)", show=False),
        Binding("right", "shift_day(1)", show=False),
        Binding("up", "shift_time(1)", show=False),
        Binding("down", "shift_time(-1)", show=False),
        Binding("b", "cancel", "Cancel", key_display="B"),
        Binding("ctrl+x", "cancel", "Cancel", show=False, priority=True),
        Binding("enter", "next", "Next", show=False),
    ]

    def __init__(self, edit: EntryHistory | None = None) -> None:
        super().__init__()
        self.edit = edit
        self.kind: DiaryKind | None = None
        self.pain: PainSite | None = None
        self.regions: tuple[BodyRegion, ...] = ()
        self.values: dict[str, object] = {}
        self.start: datetime | None = None
        self.step_index = 0
        self.problem = ""
        self.empty_enter = False
        if edit is not None:
            item = edit.current
            self.kind, self.pain, self.regions = item.kind, item.pain, item.regions
            self.start = item.start
            self.values = {
                "nrs": item.nrs,
                "sleep_hours": item.sleep_hours,
                "sleep_quality": item.sleep_quality,
                "mood": item.mood,
                "medication": item.medication,
                "dose": item.dose,
                "notes": item.notes,
            }

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog", id="diary-dialog"):
            yield Static("", id="diary-step", classes="dialog-title", markup=False)
            yield Static("", id="diary-choices", markup=False)
            yield SafeInput(id="diary-notes")
            yield Static("", id="diary-problem", markup=False)
            yield Static("", id="diary-hint", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.now = self.tapp.now()
        if self.start is None:
            self.start = self.now
        self.first_written = self.now if self.edit is None else self.edit.first_written
        self.query_one("#diary-notes", SafeInput).display = False
        self.refresh_view()

    # ------------------------------------------------------------------ steps
    def step(self) -> str:
        if self.kind is None:
            return "kind"
        steps = steps_for(self.kind, self.pain)
        return steps[min(self.step_index, len(steps) - 1)]

    def advance(self) -> None:
        self.step_index += 1
        self.problem = ""
        self.empty_enter = False
        box = self.query_one("#diary-notes", SafeInput)
        step = self.step()
        if step in TEXT_STEPS:
            key = {"hours": "sleep_hours"}.get(step, step)
            value = self.values.get(key)
            box.value = (
                "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
            )
            box.placeholder = {
                "hours": "hours slept, e.g. 6.5 (Enter with nothing: not sure)",
                "medication": "the medicine's name, e.g. gabapentin",
                "dose": "the dose, e.g. 300 mg or 2 tablets",
                "notes": "a note (what, how much, how long)",
            }[step]
            box.display = True
            box.focus()
        else:
            box.display = False
        self.refresh_view()

    def refresh_body(self) -> None:
        step = self.step()
        title = self.query_one("#diary-step", Static)
        choices = self.query_one("#diary-choices", Static)
        name = "" if self.kind is None else KIND_NAMES[self.kind]
        cancel = "Ctrl+X = cancel" if step in TEXT_STEPS else "B = cancel"
        hint = f"Enter = done · {cancel}" if step in ("when", "map") else cancel
        kept = self._kept(step)
        if kept is not None:
            hint = f"Enter = keep {kept} · {cancel}"
        if step == "kind":
            title.update("What do you want to note? Press a number:")
            choices.update("\n".join(f"{key}  {words}" for key, _, words in KINDS))
        elif step == "when":
            assert self.start is not None
            when = when_text(self.start, self.now, self.tapp.options.tz)
            verb = "Edit — " if self.edit is not None else ""
            title.update(f"{verb}{name}: when was it?  {when}")
            choices.update(
                "Enter = this time    N = now\n"
                "← → a day earlier / later    ↓ ↑ 15 minutes earlier / later\n"
                f"(at most {BACKDATE_LIMIT.days} days back)"
            )
        elif step == "pain":
            title.update("Which pain?")
            choices.update(
                "P  phantom pain (in the missing limb)\n"
                "L  residual-limb (stump) pain\n"
                "O  other pain"
            )
        elif step == "map":
            assert self.pain is not None
            where = "the missing limb" if self.pain is PainSite.PHANTOM else "the residual limb"
            title.update(f"Where in {where}? Press the numbers (again to undo), then Enter")
            choices.update(body_map(self.pain, self.regions))
        elif step in ("nrs", "quality", "mood"):
            question = {
                "nrs": "How bad was it at its worst? 0 = no pain, 10 = worst imaginable",
                "quality": f"How well did you sleep? {SLEEP_QUALITY_WORDS}",
                "mood": f"How has your mood been? {MOOD_WORDS}",
            }[step]
            title.update(question)
            choices.update("0–9, T for 10, S to skip" if step != "mood" else "0–9, T for 10")
        else:
            title.update(self._summary_title(name))
            choices.update(
                {
                    "hours": "How many hours did you sleep? Type it, then Enter.",
                    "medication": "Which medicine? Type its name, then Enter.",
                    "dose": "How much? Type the dose, then Enter (Enter with nothing: not given).",
                    "notes": "Write a note"
                    + (" (needed for 'something else')" if self.kind is DiaryKind.OTHER else "")
                    + ", then press Enter to save.",
                }[step]
            )
            hint = f"Enter = {'save' if step == 'notes' else 'next'} · {cancel}"
        self.query_one("#diary-problem", Static).update(self.problem)
        self.query_one("#diary-hint", Static).update(hint)

    def _summary_title(self, name: str) -> str:
        item = self._item(partial=True)
        detail = "" if item is None else describe(item)
        return f"{name}{f' ({detail})' if detail else ''}"

    # ------------------------------------------------------------------ keys
    def action_digit(self, number: int) -> None:
        step = self.step()
        if step == "kind" and 1 <= number <= len(KINDS):
            self.kind = KINDS[number - 1][1]
            self.step_index = -1
            self.advance()
        elif step == "map" and self.pain is not None:
            regions = BODY_REGIONS[self.pain]
            if 1 <= number <= len(regions):
                region = regions[number - 1]
                if region in self.regions:
                    self.regions = tuple(r for r in self.regions if r != region)
                else:
                    self.regions = tuple(r for r in regions if r in self.regions or r == region)
                self.refresh_view()
        elif step in ("nrs", "quality", "mood"):
            self.values[{"quality": "sleep_quality"}.get(step, step)] = number
            self.advance()

    def action_skip(self) -> None:
        step = self.step()
        if step in ("nrs", "quality"):
            self.values[{"quality": "sleep_quality"}.get(step, step)] = None
            self.advance()

    def action_pain(self, pain: str) -> None:
        if self.step() == "pain":
            site = PainSite(pain)
            if site is not self.pain:
                self.regions = ()
            self.pain = site
            self.advance()

    def action_now(self) -> None:
        if self.step() == "when":
            self.start = self.now
            self.refresh_view()

    def _move(self, by: timedelta) -> None:
        if self.step() != "when" or self.start is None:
            return
        moved = (self.start + by).replace(second=0, microsecond=0)  # a time on the clock
        earliest = self.first_written - BACKDATE_LIMIT
        self.start = max(earliest, min(self.now, moved))
        self.problem = (
            ""
            if self.start == moved
            else f"At most {BACKDATE_LIMIT.days} days back, never in the future."
        )
        self.refresh_view()

    def action_shift_day(self, days: int) -> None:
        self._move(timedelta(days=days))

    def action_shift_time(self, steps: int) -> None:
        self._move(TIME_STEP * steps)

    def _kept(self, step: str) -> str | None:
        """What an edit keeps when Enter is pressed on a step with a choice already made."""
        if step == "pain" and self.pain is not None:
            return self.pain.value.replace("_", " ")
        key = {"quality": "sleep_quality"}.get(step, step)
        if step in ("nrs", "quality", "mood") and key in self.values:
            value = self.values[key]
            return "skipped" if value is None else str(value)
        return None

    def action_next(self) -> None:
        step = self.step()
        if step in ("when", "map") or self._kept(step) is not None:
            self.advance()

    @on(Input.Submitted, "#diary-notes")
    def _submitted(self) -> None:
        step = self.step()
        text = self.query_one("#diary-notes", SafeInput).value.strip()
        if step == "hours":
            if not text:
                self.values["sleep_hours"] = None
            else:
                try:
                    hours = float(text.replace(",", "."))
                except ValueError:
                    hours = -1.0
                if not 0 <= hours <= 24:
                    self.problem = "Please type the hours as a number from 0 to 24 (e.g. 6.5)."
                    self.refresh_view()
                    return
                self.values["sleep_hours"] = hours
            self.advance()
        elif step == "medication":
            if not text and self.kind is DiaryKind.MEDICATION_TAKEN:
                self.problem = "Please write the medicine's name."
                self.refresh_view()
                return
            self.values["medication"] = text
            self.advance()
        elif step == "dose":
            self.values["dose"] = text
            self.advance()
        elif step == "notes":
            self._save(text)

    def _item(self, *, partial: bool = False) -> DiaryItem | None:
        if self.kind is None or self.start is None:
            return None
        fields: dict[str, object] = {
            "kind": self.kind,
            "start": self.start,
            "written_at": self.tapp.now(),
            "notes": str(self.values.get("notes") or ""),
        }
        if self.edit is not None:
            fields["uid"] = self.edit.uid
        if self.kind is DiaryKind.PAIN_EPISODE:
            fields |= {"pain": self.pain, "regions": self.regions, "nrs": self.values.get("nrs")}
        elif self.kind is DiaryKind.SLEEP:
            fields |= {k: self.values.get(k) for k in ("sleep_hours", "sleep_quality")}
        elif self.kind is DiaryKind.MOOD:
            fields["mood"] = self.values.get("mood")
        elif self.kind in (DiaryKind.MEDICATION_TAKEN, DiaryKind.MEDICATION_CHANGE):
            fields |= {k: str(self.values.get(k) or "") for k in ("medication", "dose")}
        try:
            return DiaryItem.model_validate(fields)
        except ValidationError as error:
            if not partial:
                self.problem = "Not saved: " + "; ".join(
                    str(e["msg"]).removeprefix("Value error, ") for e in error.errors()
                )
            return None

    def _save(self, notes: str) -> None:
        if not notes and self.kind is DiaryKind.OTHER:
            self.problem = "Please write what it was."
            self.refresh_view()
            return
        if not notes and not self.empty_enter and self.kind is not DiaryKind.OTHER:
            # a stray Enter must not write a permanent record: ask once
            self.empty_enter = True
            self.problem = "Nothing written. Enter again = save without a note."
            self.refresh_view()
            return
        self.values["notes"] = notes
        item = self._item()
        if item is None:
            self.refresh_view()
            return
        problem = backdate_problem(item.start, item.written_at, self.first_written)
        if problem is not None:
            self.problem = f"Not saved: {problem}."
            self.refresh_view()
            return
        self.dismiss(item)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DeleteModal(TensModal[bool]):
    """Are you sure? A deleted entry stops counting; the clinician still sees it, marked."""

    TITLE_TEXT = "Diary — delete entry"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Delete", key_display="Y"),
        Binding("n,b", "answer(False)", "Keep it", key_display="N"),
    ]

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Delete this entry?", classes="dialog-title")
            yield Static(self.what, markup=False)
            yield Static(
                "It will no longer count anywhere. Your clinician still sees that it was "
                "written and deleted.\nY = delete    N = keep it",
                markup=False,
            )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class DiaryScreen(TensScreen):
    TITLE_TEXT = "Diary"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a,n", "add", "Add entry", key_display="A"),
        Binding("e", "edit", "Edit", key_display="E"),
        Binding("delete,x", "delete", "Delete", key_display="Del"),
        Binding("b,d", "back", "Back", key_display="B"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[EntryHistory] | None = None
        self.note = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="diary-body", can_focus=False):
            yield Static(
                "Pain episodes, sleep, mood, medicines and other treatments, for your "
                "clinician. A = add, ↑ ↓ choose, E = edit, Del = delete.",
                classes="hint",
            )
            yield Static("", id="diary-note", classes="hint", markup=False)
            yield DataTable(id="diary-table", zebra_stripes=True, cursor_type="row")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exit_on_error=False, exclusive=True, group="diary")
    def _load(self) -> None:
        store, controller = self.tapp.store, self.tapp.controller
        if store is None or controller is None:
            return
        try:
            entries = load_diary(store, controller.patient)
        except Exception:
            log.exception("could not read the diary")
            entries = []
        self.app.call_from_thread(self._loaded, entries)

    def _loaded(self, entries: list[EntryHistory]) -> None:
        self.entries = entries
        table = self.query_one("#diary-table", DataTable)
        rows = [table_row(h, self.tapp.options.tz) for h in entries]
        table.clear(columns=True)
        # widths from every row, set here: a DataTable measures new rows only when idle, and a
        # frame drawn before that (a reload after a save) kept the narrow widths
        for i, label in enumerate(("When", "What", "Details", "", "Notes")):
            table.add_column(label, width=max([len(label), *(len(r[i]) for r in rows)]))
        table.add_rows(rows)
        if entries and not table.has_focus:
            table.focus()
        self.refresh_view()

    def refresh_body(self) -> None:
        if self.entries is None:
            text = "Reading…"
        elif not self.entries:
            text = "No entries yet."
        else:
            n = len(self.entries)
            text = f"{n} entr{'y' if n == 1 else 'ies'}."
        if self.note:
            text = f"{self.note} {text}"
        self.query_one("#diary-note", Static).update(text)

    def _selected(self) -> EntryHistory | None:
        if not self.entries:
            return None
        row = self.query_one("#diary-table", DataTable).cursor_row
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def action_add(self) -> None:
        self.app.push_screen(DiaryEntryModal(), self._saved)

    def action_edit(self) -> None:
        chosen = self._selected()
        if chosen is not None:
            self.app.push_screen(DiaryEntryModal(edit=chosen), self._saved)

    def action_delete(self) -> None:
        chosen = self._selected()
        if chosen is None:
            return
        item = chosen.current
        what = " · ".join(p for p in (table_row(chosen, self.tapp.options.tz)[:3]) if p)

        def answered(yes: bool | None) -> None:
            if yes:
                self._retract(item.uid)

        self.app.push_screen(DeleteModal(what), answered)

    def _saved(self, item: DiaryItem | None) -> None:
        from tens_control import diary

        if item is None:
            return
        if self.entries is not None and any(h.uid == item.uid for h in self.entries):
            self._change(lambda store, who: diary.revise(store, item, patient=who), "Changed.")
        else:
            self._change(lambda store, who: diary.write(store, item, patient=who), "Saved.")

    def _retract(self, uid: str) -> None:
        from tens_control import diary

        at = self.tapp.now()
        self._change(lambda store, who: diary.retract(store, uid, at, patient=who), "Deleted.")

    @work(thread=True, exit_on_error=False, group="diary-save")
    def _change(self, change: Callable[[Store, str], object], done: str) -> None:
        """Write one diary record on a worker thread (committed before "Saved." shows)."""
        store, controller = self.tapp.store, self.tapp.controller
        try:
            if store is None or controller is None:
                raise RuntimeError("the session log is not open")
            change(store, controller.patient)
        except Exception as error:
            log.exception("could not change the diary")
            self.post_message(TaskDone("diary-saved", error=str(error)))
            return
        self.post_message(TaskDone("diary-saved", result=done))

    def on_task_done(self, message: TaskDone) -> None:
        if message.task != "diary-saved":
            return
        message.stop()
        if message.error is None:
            self.note = str(message.result or "Saved.")
        else:
            self.note = f"Not saved: {message.error.removeprefix('Not saved: ').rstrip('.')}."
        self._load()
        self.refresh_view()

    def action_back(self) -> None:
        self.app.pop_screen()
