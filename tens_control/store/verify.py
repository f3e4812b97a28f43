"""Verification of hash chains and of the tables they protect, shared by ``Store.verify()``
(rows read from SQLite) and ``verify_bundle()`` (an exported JSON bundle).

What is checked, in this order (the report's first problem is the first found):

1. **Chains.** Each chain is walked in sequence order. A record whose content does not hash to
   its stored hash was *edited*; a gap in the sequence, a chain shorter than its recorded head, or
   a link to a record that is gone means records were *deleted*; a record the next record links
   past, a repeated sequence number or a record beyond the chain's recorded head was *inserted*.
2. **Sessions** against their ``session_started``/``session_ended`` records.
3. **Clinical records** (ratings, PEG, diary, adverse events, prescriptions, screenings) against
   the copy carried by their log record: a row without one was inserted, a differing row was
   edited, a logged record without a row was deleted.
4. **Telemetry** segments against their ``telemetry_sealed`` records (row count and digest).
5. **Derived columns** (a database only): each session's ``program``, ``planned_minutes`` and
   ``prescription_version`` against its logged plan, its ``mean_amplitude_ma`` /
   ``max_amplitude_ma`` against the figures computed again from its ``amplitude_changed``
   events, and each device row's columns against the identity it reported.
6. **Device odometers.** Sessions that logged a device odometer are ordered per device; a jump
   in its session counter is sessions this log does not have (*missing*), a counter that goes
   back or stimulation time the log cannot account for is reported too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

from pydantic import ValidationError

from tens_control.store.canonical import GENESIS_HASH, chain_hash, event_body, parse_utc
from tens_control.store.records import RECORD_KINDS, parse_log_record, payload_of

ProblemKind = Literal["edited", "inserted", "deleted", "missing", "unreadable"]

MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    """One broken link, named precisely. ``str(problem)`` is a full sentence."""

    kind: ProblemKind
    table: str
    message: str
    chain: str | None = None
    seq: int | None = None
    row_id: int | None = None
    session: str | None = None
    record: str | None = None
    after: str | None = None
    """For *missing* sessions: the logged session they are missing after (the gap lies
    between ``after`` and ``session``)."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ChainHead:
    patient: str
    chain: str
    origin: str
    seq: int
    hash: str


@dataclass
class VerifyReport:
    """What was checked, and every problem found (the first is the one to look at)."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    chains: int = 0
    events: int = 0
    sessions: int = 0
    records: int = 0
    telemetry_rows: int = 0
    telemetry_segments: int = 0
    unsealed_rows: int = 0
    heads: list[ChainHead] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def add(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.truncated = True

    def summary(self) -> str:
        counts = (
            f"{self.chains} chain(s), {self.events} event(s), {self.sessions} session(s), "
            f"{self.records} record(s), {self.telemetry_rows} telemetry row(s) in "
            f"{self.telemetry_segments} sealed segment(s)"
        )
        if self.unsealed_rows:
            counts += f", {self.unsealed_rows} unsealed row(s) of a session still open"
        if self.ok:
            return f"{self.source}: intact: {counts}"
        more = len(self.problems) - 1
        extra = f" (and {more}{'+' if self.truncated else ''} more problem(s))" if more else ""
        state = "INCOMPLETE" if all(p.kind == "missing" for p in self.problems) else "BROKEN"
        return f"{self.source}: {state}: {self.problems[0]}{extra}; checked {counts}"


# --------------------------------------------------------------------------- chains


@dataclass(frozen=True)
class ChainInfo:
    uid: str
    patient: str
    """The patient's uid."""
    pseudonym: str
    origin: str
    head_seq: int | None
    head_hash: str | None

    @property
    def label(self) -> str:
        return f"{self.uid[:8]} (patient {self.pseudonym})"


@dataclass(frozen=True)
class ChainRow:
    """One event as stored. ``row_id`` is the local id (database) or position (bundle)."""

    row_id: int | None
    seq: Any
    session: str | None
    wall_time: Any
    mono_time: Any
    kind: Any
    payload: Any
    """Parsed JSON payload, or the raw text if it is not valid JSON."""
    prev_hash: Any
    hash: Any
    session_missing: bool = False
    """The row names a session (by local id) that no longer exists."""


def _describe(row: ChainRow) -> str:
    where = f"event seq {row.seq} (id {row.row_id}, {row.kind}"
    if row.session:
        where += f", session {row.session}"
    return where + ")"


def _content_hash(row: ChainRow, chain: ChainInfo) -> str | None:
    if not isinstance(row.payload, dict | list) or not isinstance(row.prev_hash, str):
        return None
    try:
        body = event_body(
            chain=chain.uid,
            seq=row.seq,
            session=row.session,
            wall_time=row.wall_time,
            mono_time=row.mono_time,
            kind=row.kind,
            payload=row.payload,
        )
        return chain_hash(row.prev_hash, body)
    except (TypeError, ValueError):
        return None


class ChainWalker:
    """Walks one chain in order (one record of look-ahead) and names its first broken link."""

    def __init__(
        self, chain: ChainInfo, report: VerifyReport, on_event: Callable[[ChainRow], None]
    ) -> None:
        self.chain = chain
        self.report = report
        self.on_event = on_event
        self.problem: Problem | None = None
        self._pending: ChainRow | None = None
        self._prev: ChainRow | None = None
        self._prev_hash = GENESIS_HASH
        self._expected = 1
        self.count = 0

    def _fail(self, kind: ProblemKind, row: ChainRow | None, message: str) -> None:
        if self.problem is None:
            self.problem = Problem(
                kind,
                "events",
                message,
                chain=self.chain.uid,
                seq=row.seq if row is not None and isinstance(row.seq, int) else None,
                row_id=row.row_id if row is not None else None,
                session=row.session if row is not None else None,
            )
            self.report.add(self.problem)

    def feed(self, row: ChainRow) -> None:
        self.count += 1
        self.report.events += 1
        self.on_event(row)
        if self._pending is not None:
            self._check(self._pending, row)
        self._pending = row

    def finish(self) -> None:
        if self._pending is not None:
            self._check(self._pending, None)
            self._pending = None
        if self.problem is not None:
            return
        label = self.chain.label
        head_seq, head_hash = self.chain.head_seq, self.chain.head_hash
        last = self._expected - 1
        if head_seq is None:
            return
        if last < head_seq:
            missing = f"seq {last + 1}" if last + 1 == head_seq else f"seq {last + 1}..{head_seq}"
            self._fail(
                "deleted",
                None,
                f"deleted record: chain {label} ends at seq {last} but its head records seq "
                f"{head_seq}: event {missing} is missing",
            )
        elif head_hash is not None and self._prev_hash != head_hash and last > 0:
            self._fail(
                "edited",
                self._prev,
                f"edited record: {_describe(self._prev) if self._prev else 'the last event'} of "
                f"chain {label} was altered and re-hashed: it no longer matches the chain's head",
            )

    def _check(self, row: ChainRow, nxt: ChainRow | None) -> None:
        if self.problem is not None:
            return
        label = self.chain.label
        seq = row.seq
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < self._expected:
            self._fail(
                "inserted",
                row,
                f"inserted record: {_describe(row)} in chain {label} repeats or reorders a "
                f"sequence number (expected seq {self._expected})",
            )
            return
        if self.chain.head_seq is not None and seq > self.chain.head_seq:
            self._fail(
                "inserted",
                row,
                f"inserted record: {_describe(row)} in chain {label} lies beyond the chain's "
                f"recorded head (seq {self.chain.head_seq})",
            )
            return
        if seq > self._expected:
            gap = (
                f"seq {self._expected}"
                if seq == self._expected + 1
                else f"seq {self._expected}..{seq - 1}"
            )
            self._fail(
                "deleted",
                row,
                f"deleted record: chain {label} is missing event {gap} (the chain jumps from "
                f"seq {self._expected - 1} to {_describe(row)})",
            )
            return
        if row.session_missing:
            self._fail(
                "deleted",
                row,
                f"deleted record: the session of {_describe(row)} in chain {label} no longer "
                "exists",
            )
            return
        content_ok = _content_hash(row, self.chain) == row.hash
        link_ok = row.prev_hash == self._prev_hash
        skipped_by_next = (
            nxt is not None and nxt.prev_hash == row.prev_hash and nxt.prev_hash != row.hash
        )
        if skipped_by_next and (link_ok or not content_ok):
            self._fail(
                "inserted",
                row,
                f"inserted record: {_describe(row)} in chain {label} does not belong to the "
                "chain (the next event links past it)",
            )
            return
        if not link_ok:
            prev = self._prev
            if prev is not None and row.prev_hash == prev.prev_hash:
                self._fail(
                    "inserted",
                    prev,
                    f"inserted record: {_describe(prev)} in chain {label} does not belong to "
                    "the chain (the next event links past it)",
                )
            elif content_ok and prev is not None:
                self._fail(
                    "edited",
                    prev,
                    f"edited record: {_describe(prev)} of chain {label} was altered and "
                    f"re-hashed: the next event (seq {seq}) no longer links to it",
                )
            else:
                self._fail(
                    "deleted",
                    row,
                    f"deleted record: chain {label} lost the event(s) before {_describe(row)} "
                    "(it links to a record that is gone; later events were renumbered)",
                )
            return
        if not content_ok:
            self._fail(
                "edited",
                row,
                f"edited record: {_describe(row)} of chain {label} does not match its hash",
            )
            return
        if seq == 1 and not self._binds(row):
            self._fail(
                "edited",
                row,
                f"edited record: the first event of chain {label} does not bind it to patient "
                f"{self.chain.pseudonym} and origin {self.chain.origin[:8]}",
            )
            return
        self._prev = row
        self._prev_hash = row.hash
        self._expected = seq + 1

    def _binds(self, row: ChainRow) -> bool:
        payload = row.payload
        return (
            row.kind == "chain_started"
            and isinstance(payload, dict)
            and payload.get("patient") == self.chain.patient
            and payload.get("origin") == self.chain.origin
        )


# --------------------------------------------------------------------------- cross checks


@dataclass(frozen=True)
class EventRef:
    chain: ChainInfo
    row: ChainRow
    payload: dict[str, Any]

    def describe(self) -> str:
        return f"{_describe(self.row)} of chain {self.chain.label}"


@dataclass(frozen=True)
class SessionFacts:
    """A session row, normalised: ``started`` as a SessionStarted payload, ``ended`` as
    (ended_at, reason) or None."""

    uid: str
    patient: str
    ref: str
    started: dict[str, Any] | None
    """None if the row cannot be read (``error`` says why)."""
    ended: tuple[str, str] | None
    error: str = ""


@dataclass(frozen=True)
class RecordFacts:
    table: str
    uid: str
    patient: str
    ref: str
    data: dict[str, Any] | None
    """The record as JSON (``model_dump(mode="json")``), or None if the row cannot be read."""
    error: str = ""


@dataclass(frozen=True)
class SegmentFacts:
    session: str
    segment: int
    count: int
    digest: str
    ref: str


def _normalise(kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return payload_of(parse_log_record(kind, payload))
    except (ValidationError, TypeError, ValueError):
        return None


class CrossChecker:
    """Checks sessions, clinical records and telemetry against the events that log them."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.records: dict[str, EventRef] = {}
        self.started: dict[str, EventRef] = {}
        self.ended: dict[str, EventRef] = {}
        self.seals: dict[tuple[str, int], EventRef] = {}
        self._seen_records: set[str] = set()
        self._seen_sessions: set[str] = set()
        self._seen_segments: set[tuple[str, int]] = set()

    def see_event(self, chain: ChainInfo, row: ChainRow) -> None:
        if not isinstance(row.payload, dict) or not isinstance(row.kind, str):
            return
        payload = _normalise(row.kind, row.payload)
        if payload is None:
            return
        ref = EventRef(chain, row, payload)
        if row.kind in RECORD_KINDS:
            self.records[str(payload["record"]["uid"])] = ref
        elif row.kind == "session_started":
            self.started[str(payload["session"])] = ref
        elif row.kind == "session_ended":
            self.ended.setdefault(str(payload["session"]), ref)
        elif row.kind == "telemetry_sealed":
            self.seals[(str(payload["session"]), int(payload["segment"]))] = ref

    # ---- sessions
    def check_session(self, facts: SessionFacts) -> None:
        self._seen_sessions.add(facts.uid)
        self.report.sessions += 1
        start = self.started.get(facts.uid)
        where = f"session {facts.uid} ({facts.ref})"
        if start is None:
            self._add("inserted", "sessions", f"inserted record: {where} has no log record", facts)
            return
        if facts.started is None:
            self._add(
                "edited", "sessions", f"edited record: {where} is unreadable ({facts.error})", facts
            )
            return
        logged = {k: v for k, v in start.payload.items() if k != "session"}
        stored = {k: v for k, v in facts.started.items() if k != "session"}
        if logged != stored or start.chain.patient != facts.patient:
            changed = sorted(k for k in logged if logged.get(k) != stored.get(k))
            what = ", ".join(changed) if changed else "patient"
            self._add(
                "edited",
                "sessions",
                f"edited record: {where} differs from its log record {start.describe()} ({what})",
                facts,
            )
            return
        end = self.ended.get(facts.uid)
        if facts.ended is None and end is not None:
            self._add(
                "edited",
                "sessions",
                f"edited record: {where} has no end but {end.describe()} logs its end",
                facts,
            )
        elif facts.ended is not None and end is None:
            self._add(
                "edited",
                "sessions",
                f"edited record: {where} has an end ({facts.ended[1]}) that was never logged",
                facts,
            )
        elif facts.ended is not None and end is not None:
            logged_end = (end.payload["ended_at"], end.payload["reason"])
            if logged_end != facts.ended:
                self._add(
                    "edited",
                    "sessions",
                    f"edited record: the end of {where} ({facts.ended[1]} at {facts.ended[0]}) "
                    f"differs from its log record {end.describe()} ({logged_end[1]} at "
                    f"{logged_end[0]})",
                    facts,
                )

    # ---- clinical records
    def check_record(self, facts: RecordFacts) -> None:
        self._seen_records.add(facts.uid)
        self.report.records += 1
        where = f"{facts.table} record {facts.uid} ({facts.ref})"
        if facts.data is None:
            self._add(
                "edited",
                facts.table,
                f"edited record: {where} is unreadable ({facts.error})",
                facts,
            )
            return
        ref = self.records.get(facts.uid)
        if ref is None or RECORD_KINDS.get(str(ref.row.kind)) != facts.table:
            self._add("inserted", facts.table, f"inserted record: {where} has no log record", facts)
            return
        logged = ref.payload["record"]
        if logged != facts.data or ref.chain.patient != facts.patient:
            changed = sorted(k for k in logged if logged.get(k) != facts.data.get(k))
            what = ", ".join(changed) if changed else "patient"
            self._add(
                "edited",
                facts.table,
                f"edited record: {where} differs from its log record {ref.describe()} ({what})",
                facts,
            )

    # ---- telemetry
    def check_segment(self, facts: SegmentFacts, session_open: bool) -> None:
        key = (facts.session, facts.segment)
        self._seen_segments.add(key)
        seal = self.seals.get(key)
        where = f"telemetry segment {facts.segment} of session {facts.session} ({facts.ref})"
        if seal is None:
            if session_open:
                self.report.unsealed_rows += facts.count
                return
            self._add(
                "inserted",
                "telemetry",
                f"inserted record: {where}: {facts.count} row(s) not covered by any seal",
                facts,
            )
            return
        self.report.telemetry_rows += facts.count
        self.report.telemetry_segments += 1
        count, digest = int(seal.payload["count"]), str(seal.payload["digest"])
        if facts.count < count:
            kind: ProblemKind = "deleted"
            text = f"{count - facts.count} of its {count} sealed row(s) are missing"
        elif facts.count > count:
            kind, text = "inserted", f"it has {facts.count - count} row(s) more than sealed"
        elif facts.digest != digest:
            kind, text = "edited", "its rows do not match the sealed digest"
        else:
            return
        self._add(kind, "telemetry", f"{kind} record: {where}: {text} ({seal.describe()})", facts)

    # ---- what the log has but the tables lack
    def finish(self, *, telemetry_present: bool = True) -> None:
        """Report what the log has but the tables lack. ``telemetry_present=False`` (a bundle
        exported without telemetry): sealed segments are not expected."""
        for uid, ref in self.started.items():
            if uid not in self._seen_sessions:
                self.report.add(
                    Problem(
                        "deleted",
                        "sessions",
                        f"deleted record: session {uid} logged by {ref.describe()} is missing",
                        chain=ref.chain.uid,
                        seq=ref.row.seq,
                        row_id=ref.row.row_id,
                        session=uid,
                    )
                )
        for uid, ref in self.records.items():
            if uid not in self._seen_records:
                table = RECORD_KINDS[str(ref.row.kind)]
                self.report.add(
                    Problem(
                        "deleted",
                        table,
                        f"deleted record: {table} record {uid} logged by {ref.describe()} is "
                        "missing",
                        chain=ref.chain.uid,
                        seq=ref.row.seq,
                        row_id=ref.row.row_id,
                        record=uid,
                    )
                )
        for key, ref in self.seals.items():
            if telemetry_present and key not in self._seen_segments:
                self.report.add(
                    Problem(
                        "deleted",
                        "telemetry",
                        f"deleted record: telemetry segment {key[1]} of session {key[0]} "
                        f"({ref.payload['count']} row(s), sealed by {ref.describe()}) is missing",
                        chain=ref.chain.uid,
                        seq=ref.row.seq,
                        row_id=ref.row.row_id,
                        session=key[0],
                    )
                )

    def _add(
        self,
        kind: ProblemKind,
        table: str,
        message: str,
        facts: SessionFacts | RecordFacts | SegmentFacts,
    ) -> None:
        session = (
            facts.uid
            if isinstance(facts, SessionFacts)
            else facts.session
            if isinstance(facts, SegmentFacts)
            else None
        )
        record = facts.uid if isinstance(facts, RecordFacts) else None
        self.report.add(Problem(kind, table, message, session=session, record=record))


# --------------------------------------------------------------------------- odometers

ODOMETER_SLACK_S = 5.0
"""Stimulation seconds a device may count beyond a session's logged length (its own clock)."""


@dataclass(frozen=True)
class OdometerFacts:
    """A session that logged a device odometer."""

    session: str
    device: str
    """The device's identity (protocol, model, serial number), as one label."""
    started_at: str
    ended_at: str | None
    sessions: int
    stimulation_s: float


def _seconds(start: str, end: str | None) -> float | None:
    if end is None:
        return None
    return (parse_utc(end) - parse_utc(start)).total_seconds()


def check_odometers(report: VerifyReport, facts: list[OdometerFacts]) -> None:
    """Report gaps in each device's odometer as missing sessions (see the module docstring)."""
    by_device: dict[str, list[OdometerFacts]] = {}
    for fact in facts:
        by_device.setdefault(fact.device, []).append(fact)
    for device, runs in by_device.items():
        runs.sort(key=lambda f: (f.started_at, f.sessions))
        for prev, this in pairwise(runs):
            gap = this.sessions - prev.sessions - 1
            where = (
                f"between session {prev.session} (started {prev.started_at}, device session "
                f"{prev.sessions}) and session {this.session} (device session {this.sessions})"
            )
            if gap > 0:
                report.add(
                    Problem(
                        "missing",
                        "sessions",
                        f"missing sessions: {device} ran {gap} session(s) {where} that this log "
                        "does not have (deleted from it, or run from another computer)",
                        session=this.session,
                        after=prev.session,
                    )
                )
            elif gap < 0:
                report.add(
                    Problem(
                        "missing",
                        "sessions",
                        f"odometer went back: {device} counts fewer sessions {where}; the device "
                        "was reset or replaced, or the log's sessions were rearranged",
                        session=this.session,
                        after=prev.session,
                    )
                )
            else:
                length = _seconds(prev.started_at, prev.ended_at)
                counted = this.stimulation_s - prev.stimulation_s
                if length is not None and counted > length + max(ODOMETER_SLACK_S, 0.02 * length):
                    report.add(
                        Problem(
                            "missing",
                            "sessions",
                            f"missing stimulation: {device} stimulated {counted / 60:.1f} min "
                            f"{where}, but the log's session lasted {length / 60:.1f} min",
                            session=this.session,
                            after=prev.session,
                        )
                    )


def parse_payload(text: Any) -> Any:
    """The stored payload text as JSON, or the text itself if it is not JSON."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# --------------------------------------------------------------------------- damage


@dataclass(frozen=True)
class Damage:
    """What a report over a damaged log must say and mark (from a :class:`VerifyReport`).

    ``line`` is the report's first line; ``sessions`` the sessions whose figures come from the
    damaged range (marked, never shown as clean); ``since`` the earliest moment a problem
    touches (everything from then on is in the damaged range), or None when only sessions the
    log lacks were found."""

    line: str
    sessions: frozenset[str]
    since: datetime | None


def damage_of(
    report: VerifyReport,
    spans: dict[str, tuple[datetime, datetime | None]],
    times: Callable[[Problem], datetime | None],
) -> Damage | None:
    """The damage ``report`` shows for one patient (``spans``: that patient's sessions, start
    and end; ``times``: when a problem's record or event happened, if known), or None if
    intact. A session is in the damaged range if it ended (or, without an end, started) at or
    after the earliest problem."""
    if report.ok:
        return None
    missing = [p for p in report.problems if p.kind == "missing"]
    broken = [p for p in report.problems if p.kind != "missing"]
    first_start = min((start for start, _ in spans.values()), default=None)
    since: datetime | None = None
    for problem in broken:
        when = times(problem) or first_start
        if when is not None and (since is None or when < since):
            since = when
    marked = {p.session for p in report.problems if p.session in spans}
    if since is not None:
        marked |= {uid for uid, (start, end) in spans.items() if (end or start) >= since}
    if broken:
        where = "" if since is None else f" from {since:%Y-%m-%d %H:%M} UTC on"
        line = (
            f"LOG DAMAGED: tens-control verify found {len(report.problems)} problem(s) in this "
            f"log, the first: {broken[0]}. Figures{where} come from the damaged range: they are "
            "marked and may be wrong"
        )
    else:
        line = (
            f"LOG INCOMPLETE: {missing[0]}"
            + (f" (and {len(missing) - 1} more gap(s))" if len(missing) > 1 else "")
            + ". The sessions after each gap are marked"
        )
    return Damage(line, frozenset(marked), since)
