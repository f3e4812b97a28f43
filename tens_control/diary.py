"""The diary as versioned entries: write, edit, delete and backdate, on an append-only log.

The log is append-only and hash-chained, so nothing written is ever changed. An edit is a new
version of the entry (:class:`~tens_control.store.records.DiaryRevised`) that supersedes the one
before; a delete is a retraction (:class:`~tens_control.store.records.DiaryRetracted`). Readers
(the patient's diary, the clinician's review, CSV, FHIR and the report) use the *current* state
of each entry that :func:`resolve` rebuilds from the log, and the clinician also sees every
earlier version and every deletion, with when it was written.

Every entry keeps two times: when it happened (``start``) and when it was written
(``written_at``). An entry may be backdated by at most :data:`BACKDATE_LIMIT` from the time it
was first written (memory of pain fades within days; an older entry is a recollection, not a
diary); an edit may move it within the same bound. Nothing is dated in the future.

The records go through the store's generic event API (``Store.append_event``), committed before
it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tens_control.errors import TensControlError
from tens_control.pain import BODY_REGION_WORDS
from tens_control.store.records import (
    DIARY_LOG_KINDS,
    DiaryEntry,
    DiaryItem,
    DiaryRetracted,
    DiaryRevised,
    DiaryWritten,
    parse_log_record,
)

if TYPE_CHECKING:
    from tens_control.store.store import Store

BACKDATE_LIMIT = timedelta(days=7)
"""How far before its first writing an entry may say it happened."""
FUTURE_SLACK = timedelta(minutes=5)
"""A clock a little ahead is not "the future"."""


class DiaryError(TensControlError):
    """A diary entry cannot be written, edited or deleted as asked. The message says why."""


@dataclass(frozen=True, slots=True)
class EntryHistory:
    """One diary entry: every version (oldest first) and, if deleted, when and why."""

    uid: str
    versions: tuple[DiaryItem, ...]
    reasons: tuple[str, ...] = ()
    """Why each version after the first was written (``""``: not said)."""
    retracted_at: datetime | None = None
    retract_reason: str = ""

    @property
    def current(self) -> DiaryItem:
        return self.versions[-1]

    @property
    def first_written(self) -> datetime:
        return self.versions[0].written_at

    @property
    def retracted(self) -> bool:
        return self.retracted_at is not None

    @property
    def edited(self) -> bool:
        return len(self.versions) > 1


def resolve(events: Iterable[tuple[datetime, str, Mapping[str, Any]]]) -> list[EntryHistory]:
    """Every diary entry from its log records ``(wall time, kind, payload)`` in log order, in
    the order the entries happened (then were written). A revision or retraction of an entry
    the log does not have (a partial copy) is ignored, as is a revision after a retraction."""
    versions: dict[str, list[DiaryItem]] = {}
    reasons: dict[str, list[str]] = {}
    retracted: dict[str, DiaryRetracted] = {}
    for wall_time, kind, payload in events:
        if kind not in DIARY_LOG_KINDS:
            continue
        try:
            record = parse_log_record(kind, dict(payload))
        except (ValidationError, ValueError, TypeError):
            continue  # a damaged record: verify reports it; the rest of the diary still reads
        if kind == "diary_added":
            entry = getattr(record, "record", None)
            if isinstance(entry, DiaryEntry) and entry.uid not in versions:
                versions[entry.uid] = [DiaryItem.of_entry(entry, wall_time)]
                reasons[entry.uid] = []
        elif isinstance(record, DiaryWritten):
            if record.record.uid not in versions:
                versions[record.record.uid] = [record.record]
                reasons[record.record.uid] = []
        elif isinstance(record, DiaryRevised):
            uid = record.record.uid
            if uid in versions and uid not in retracted:
                versions[uid].append(record.record)
                reasons[uid].append(record.reason)
        elif (
            isinstance(record, DiaryRetracted)
            and record.entry in versions
            and record.entry not in retracted
        ):
            retracted[record.entry] = record
    out = []
    for uid, items in versions.items():
        gone = retracted.get(uid)
        out.append(
            EntryHistory(
                uid,
                tuple(items),
                tuple(reasons[uid]),
                None if gone is None else gone.at,
                "" if gone is None else gone.reason,
            )
        )
    out.sort(key=lambda h: (h.current.start, h.first_written))
    return out


def histories(store: Store, patient: str | None = None) -> list[EntryHistory]:
    """Every diary entry of ``patient`` (default: the current patient), deleted ones too."""
    events = store.events(patient, kinds=sorted(DIARY_LOG_KINDS))
    return resolve((e.wall_time, e.kind, e.payload) for e in events)


def current(store: Store, patient: str | None = None) -> list[EntryHistory]:
    """The entries that are not deleted, in the order they happened."""
    return [h for h in histories(store, patient) if not h.retracted]


PAIN_WORDS = {"phantom": "phantom", "residual_limb": "stump", "other": "other"}

REGION_SHORT = {
    "phantom_digits": "fingers/toes",
    "phantom_hand_foot": "hand/foot",
    "phantom_middle": "wrist-forearm/ankle-leg",
    "phantom_whole": "whole limb",
    "stump_end": "stump end",
    "stump_scar": "scar",
    "stump_front": "stump front",
    "stump_back": "stump back",
}
"""Short names of the body map's regions (tables); ``pain.BODY_REGION_WORDS`` in full."""


def regions_text(item: DiaryItem, *, short: bool = True) -> str:
    words = REGION_SHORT if short else {k.value: v for k, v in BODY_REGION_WORDS.items()}
    return ", ".join(words[r.value] for r in item.regions)


def describe(item: DiaryItem) -> str:
    """What an entry says, in a few words (no note, no time): ``7/10 phantom: fingers/toes``,
    ``6.5 h, slept 4/10``, ``mood 5/10``, ``gabapentin 300 mg``."""
    kind = item.kind.value
    if kind == "pain_episode":
        worst = "" if item.nrs is None else f"{item.nrs}/10 "
        where = regions_text(item)
        pain = PAIN_WORDS.get(item.pain.value if item.pain else "other", "other")
        return f"{worst}{pain}{': ' + where if where else ''}"
    if kind == "sleep":
        parts = []
        if item.sleep_hours is not None:
            parts.append(f"{item.sleep_hours:g} h")
        if item.sleep_quality is not None:
            parts.append(f"slept {item.sleep_quality}/10")
        return ", ".join(parts)
    if kind == "mood":
        return f"mood {item.mood}/10"
    return " ".join(p for p in (item.medication, item.dose) if p)


def backdate_problem(start: datetime, written_at: datetime, first_written: datetime) -> str | None:
    """Why ``start`` cannot be the time an entry happened, or None when it can."""
    if start > written_at + FUTURE_SLACK:
        return "it cannot have happened in the future"
    if start < first_written - BACKDATE_LIMIT:
        days = BACKDATE_LIMIT.days
        return f"an entry can be dated at most {days} days before it was first written"
    return None


def _check_time(item: DiaryItem, first_written: datetime) -> None:
    problem = backdate_problem(item.start, item.written_at, first_written)
    if problem is not None:
        raise DiaryError(f"Not saved: {problem}.")


def write(store: Store, item: DiaryItem, *, patient: str | None = None) -> DiaryItem:
    """Store a new entry (committed before this returns)."""
    _check_time(item, item.written_at)
    store.append_event(None, DiaryWritten(record=item), patient=patient, at=item.written_at)
    return item


def _find(store: Store, uid: str, patient: str | None) -> EntryHistory:
    for h in histories(store, patient):
        if h.uid == uid:
            if h.retracted:
                raise DiaryError("This entry was deleted; it cannot be changed.")
            return h
    raise DiaryError(f"There is no diary entry {uid}.")


def revise(
    store: Store, item: DiaryItem, *, reason: str = "", patient: str | None = None
) -> DiaryItem:
    """Store ``item`` as the new version of the entry ``item.uid`` (same kind)."""
    old = _find(store, item.uid, patient)
    if item.kind is not old.current.kind:
        raise DiaryError("An edit keeps the kind of entry; delete it and add a new one instead.")
    if item.written_at < old.current.written_at:
        raise DiaryError("An edit cannot be older than the version it replaces.")
    _check_time(item, old.first_written)
    record = DiaryRevised(record=item, reason=reason)
    store.append_event(None, record, patient=patient, at=item.written_at)
    return item


def retract(
    store: Store, uid: str, at: datetime, *, reason: str = "", patient: str | None = None
) -> None:
    """Delete the entry ``uid``: it stops counting; its history stays."""
    _find(store, uid, patient)
    store.append_event(
        None, DiaryRetracted(entry=uid, at=at, reason=reason), patient=patient, at=at
    )
