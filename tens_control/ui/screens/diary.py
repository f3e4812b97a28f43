"""Diary: pain episodes between sessions and other treatments (medication changes, ketamine
infusions, mirror therapy, physiotherapy), kept with the sessions for the clinician."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static

from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensModal, TensScreen
from tens_control.ui.text import fmt_nrs
from tens_control.ui.widgets.inputs import SafeInput

if TYPE_CHECKING:
    from tens_control.store.store import Store

log = logging.getLogger(__name__)

KINDS: tuple[tuple[str, str, str], ...] = (
    ("1", "pain_episode", "Pain episode"),
    ("2", "medication_change", "Medication change"),
    ("3", "ketamine_infusion", "Ketamine infusion"),
    ("4", "mirror_therapy", "Mirror therapy"),
    ("5", "physiotherapy", "Physiotherapy"),
    ("6", "other", "Something else"),
)
KIND_NAMES = {kind: name for _, kind, name in KINDS}
PAIN_KEYS = {"p": "phantom", "l": "residual_limb", "o": "other"}
PAIN_NAMES = {"phantom": "phantom", "residual_limb": "stump", "other": "other"}


@dataclass(frozen=True)
class DiaryDraft:
    kind: str
    nrs: int | None
    pain: str | None
    notes: str


def load_diary(store: Store, patient: str, tz: tzinfo | None) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for entry in reversed(store.diary_entries(patient)):
        when = entry.start.astimezone(tz) if tz is not None else entry.start.astimezone()
        pain = ""
        if entry.kind.value == "pain_episode":
            site = PAIN_NAMES.get(entry.pain.value, "") if entry.pain is not None else ""
            pain = f"{fmt_nrs(entry.nrs)} {site}".strip()
        rows.append(
            (
                when.strftime("%d %b %H:%M"),
                KIND_NAMES.get(entry.kind.value, entry.kind.value),
                pain,
                entry.notes[:60],
            )
        )
    return rows


class DiaryEntryModal(TensModal[DiaryDraft | None]):
    """Add an entry in a few keys: what (1-6), for pain which and how bad, then a note."""

    TITLE_TEXT = "Diary — new entry"
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(str(n), f"digit({n})", show=False) for n in range(10)],
        Binding("t", "digit(10)", show=False),
        Binding("s", "skip", "Skip", show=False),
        Binding("p", "pain('phantom')", show=False),
        Binding("l", "pain('residual_limb')", show=False),
        Binding("o", "pain('other')", show=False),
        Binding("b", "cancel", "Cancel"),
        Binding("enter", "save", "Save", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kind: str | None = None
        self.pain: str | None = None
        self.nrs: int | None = None
        self.nrs_given = False
        self.problem = ""

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="dialog", id="diary-dialog"):
            yield Static("", id="diary-step", classes="dialog-title", markup=False)
            yield Static("", id="diary-choices", markup=False)
            yield SafeInput(placeholder="a note (what, how much, how long)", id="diary-notes")
            yield Static("", id="diary-problem", markup=False)
            yield Static("B = cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#diary-notes", SafeInput).display = False

    def _step(self) -> str:
        if self.kind is None:
            return "kind"
        if self.kind == "pain_episode" and self.pain is None:
            return "pain"
        if self.kind == "pain_episode" and not self.nrs_given:
            return "nrs"
        return "notes"

    def refresh_body(self) -> None:
        step = self._step()
        title = self.query_one("#diary-step", Static)
        choices = self.query_one("#diary-choices", Static)
        notes = self.query_one("#diary-notes", SafeInput)
        if step == "kind":
            title.update("What do you want to note? Press a number:")
            choices.update("\n".join(f"{key}  {name}" for key, _, name in KINDS))
        elif step == "pain":
            title.update("Which pain?")
            choices.update("P  phantom pain\nL  residual-limb (stump) pain\nO  other pain")
        elif step == "nrs":
            title.update("How bad was it at its worst?")
            choices.update("0–9, T for 10, S to skip (0 = no pain, 10 = worst imaginable)")
        else:
            name = KIND_NAMES.get(self.kind or "", "")
            extra = ""
            if self.kind == "pain_episode":
                extra = f" ({PAIN_NAMES.get(self.pain or '', '')} pain {fmt_nrs(self.nrs)})"
            title.update(f"{name}{extra}")
            needed = " (needed for 'something else')" if self.kind == "other" else ""
            choices.update(f"Write a note{needed}, then press Enter to save.")
            if not notes.display:
                notes.display = True
                notes.focus()
        self.query_one("#diary-problem", Static).update(self.problem)

    def action_digit(self, number: int) -> None:
        step = self._step()
        if step == "kind" and 1 <= number <= len(KINDS):
            self.kind = KINDS[number - 1][1]
        elif step == "nrs":
            self.nrs = number
            self.nrs_given = True
        self.refresh_view()

    def action_skip(self) -> None:
        if self._step() == "nrs":
            self.nrs = None
            self.nrs_given = True
            self.refresh_view()

    def action_pain(self, pain: str) -> None:
        if self._step() == "pain":
            self.pain = pain
            self.refresh_view()

    @on(Input.Submitted, "#diary-notes")
    def _submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        if self._step() != "notes" or self.kind is None:
            return
        notes = self.query_one("#diary-notes", SafeInput).value.strip()
        if self.kind == "other" and not notes:
            self.problem = "Please write what it was."
            self.refresh_view()
            return
        self.dismiss(DiaryDraft(self.kind, self.nrs, self.pain, notes))

    def action_cancel(self) -> None:
        self.dismiss(None)


class DiaryScreen(TensScreen):
    TITLE_TEXT = "Diary"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a,n", "add", "Add entry", key_display="A"),
        Binding("b,d", "back", "Back", key_display="B"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, ...]] | None = None
        self.note = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="diary-body", can_focus=False):
            yield Static(
                "Pain episodes between sessions, and other treatments, for your clinician. "
                "Press A to add one.",
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
            rows = load_diary(store, controller.patient, self.tapp.options.tz)
        except Exception:
            log.exception("could not read the diary")
            rows = []
        self.app.call_from_thread(self._loaded, rows)

    def _loaded(self, rows: list[tuple[str, ...]]) -> None:
        self.rows = rows
        table = self.query_one("#diary-table", DataTable)
        table.clear(columns=True)  # column widths from every row, every time
        table.add_columns("When", "What", "Pain", "Notes")
        table.add_rows(rows)
        self.refresh_view()

    def refresh_body(self) -> None:
        if self.rows is None:
            text = "Reading…"
        elif not self.rows:
            text = "No entries yet."
        else:
            text = f"{len(self.rows)} entr{'y' if len(self.rows) == 1 else 'ies'}."
        if self.note:
            text = f"{self.note} {text}"
        self.query_one("#diary-note", Static).update(text)

    def action_add(self) -> None:
        def added(draft: DiaryDraft | None) -> None:
            if draft is not None:
                self._save(draft)

        self.app.push_screen(DiaryEntryModal(), added)

    @work(thread=True, exit_on_error=False, group="diary-save")
    def _save(self, draft: DiaryDraft) -> None:
        from tens_control.store.records import DiaryKind, PainSite

        store, controller = self.tapp.store, self.tapp.controller
        try:
            if store is None or controller is None:
                raise RuntimeError("the session log is not open")
            store.add_diary_entry(
                DiaryKind(draft.kind),
                self.tapp.now(),
                nrs=draft.nrs,
                pain=PainSite(draft.pain) if draft.pain else None,
                notes=draft.notes,
                patient=controller.patient,
            )
        except Exception as error:
            log.exception("could not save the diary entry")
            self.post_message(TaskDone("diary-saved", error=str(error)))
            return
        self.post_message(TaskDone("diary-saved"))

    def on_task_done(self, message: TaskDone) -> None:
        if message.task != "diary-saved":
            return
        message.stop()
        self.note = "Saved." if message.error is None else f"Not saved: {message.error}."
        self._load()
        self.refresh_view()

    def action_back(self) -> None:
        self.app.pop_screen()
