"""Batch-committed telemetry and the flusher that commits batched work on time.

Durability class "batched": a sample handed to :meth:`TelemetryWriter.add` is committed within
``flush_interval_s`` (250 ms by default) of its arrival, or sooner when ``batch_rows`` samples
are waiting. ``add`` never touches the database, so it is safe to call from a driver's I/O
thread or a clock callback.

Hash chaining: the rows of a session are grouped into *segments*; each commit extends the running
digest of the open segment, and the segment is *sealed* -- a ``telemetry_sealed`` record with
the row count and the SHA-256 digest goes into the patient's hash chain -- once it spans
``seal_interval_s`` (60 s) or ``seal_rows`` (10,000) rows, and when the writer is closed (at the
latest when its session ends). Rows committed but not yet sealed are durable but not yet
tamper-evident; after a crash, recovery seals them (marked ``recovered``).

Timing comes from an injectable :class:`drivers.clock.Clock`. With a ``VirtualClock`` the flusher
schedules its deadline on that clock and commits inline (single-threaded, deterministic); with
a real clock a background thread (``tens-store-flush``) waits for the deadline.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from drivers.base import Report, Telemetry
from drivers.clock import Clock, TimerHandle
from tens_control.store import schema
from tens_control.store.canonical import TelemetryDigest, TelemetryRow
from tens_control.store.records import TelemetrySealed

if TYPE_CHECKING:
    from tens_control.store.store import Store

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
VIRTUAL_FLUSH_INTERVAL_S = 60.0
"""The flush interval for a store on a ``VirtualClock`` (a test, a benchmark, ``run
--virtual-time``). The durability promise -- telemetry committed within 250 ms -- is about a
crash in *real* time; a virtual hour runs in a few seconds of real time, so 60 s of virtual time
is a few tens of milliseconds of real time and keeps that promise with room, where 250 ms of
virtual time would be 14,400 commits an hour each costing a synced transaction."""
BATCH_ROWS = 5_000
SEAL_INTERVAL_S = 60.0
SEAL_ROWS = 10_000

_COLUMNS = ["session_id", "segment", "t", "channel", "set_ma", "measured_ma", "impedance_ohm"]
_INSERT = insert(schema.telemetry).compile(dialect=sqlite_dialect(), column_keys=_COLUMNS)
if list(_INSERT.positiontup or ()) != _COLUMNS:  # pragma: no cover - a SQLAlchemy change
    raise RuntimeError("telemetry INSERT parameters are not in the expected order")
_INSERT_TEMPLATE = str(_INSERT).replace("VALUES (?, ?, ", "VALUES ({session_id:d}, {segment:d}, ")
"""The Core-compiled INSERT with the session and segment as integer literals, so the buffered
5-tuples are the executemany parameters as they are (no per-row copying). Run through
``Connection.exec_driver_sql``: the fastest path Core offers."""


def to_row(sample: Telemetry) -> TelemetryRow:
    """A sample as stored and digested: numbers as float (so the stored REAL values read back
    digest the same), negative zero as zero, and any NaN or infinity replaced (a set current by
    0, a reading by "not reported"), which is logged."""
    measured, impedance = sample.measured_ma, sample.impedance_ohm
    t = float(sample.time) + 0.0
    set_ma = float(sample.set_ma) + 0.0
    m = None if measured is None else float(measured) + 0.0
    z = None if impedance is None else float(impedance) + 0.0
    total = t + set_ma + (m or 0.0) + (z or 0.0)
    if total - total != 0.0:  # some value is NaN or infinite (or the sum overflowed)
        log.warning("non-finite telemetry value in %r stored as not reported", sample)
        t = t if math.isfinite(t) else 0.0
        set_ma = set_ma if math.isfinite(set_ma) else 0.0
        m = m if m is None or math.isfinite(m) else None
        z = z if z is None or math.isfinite(z) else None
    return (t, int(sample.channel), set_ma, m, z)


class Flusher:
    """Commits batched work (telemetry, non-safety events) by its deadline."""

    def __init__(self, clock: Clock, flush: Callable[[], None], *, background: bool) -> None:
        self._clock = clock
        self._flush = flush
        self._background = background
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._timer: TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._flushing = False

    def due(self, when: float) -> None:
        """Something pending must be committed by ``when`` (clock time)."""
        if self._background:
            with self._cond:
                if self._closed:
                    return
                if self._deadline is None or when < self._deadline:
                    self._deadline = when
                    self._cond.notify_all()
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="tens-store-flush", daemon=True
                    )
                    self._thread.start()
            return
        if self._closed:
            return
        if self._timer is not None and not self._timer.cancelled and self._timer.when <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_at(when, self._on_timer)

    def idle(self) -> None:
        """Nothing is pending any more: drop a scheduled virtual-clock deadline (so a virtual
        clock holds no stray timer of ours)."""
        if not self._background and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def kick(self) -> None:
        """Commit as soon as possible (a batch is full)."""
        if self._background:
            self.due(self._clock.now())
        elif not self._flushing:
            self._flush_now()

    def _on_timer(self) -> None:
        self._timer = None
        self._flush_now()

    def _flush_now(self) -> None:
        self._flushing = True
        try:
            self._flush()
        finally:
            self._flushing = False

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._deadline is None:
                        self._cond.wait(1.0)
                        continue
                    remaining = self._deadline - self._clock.now()
                    if remaining <= 0:
                        self._deadline = None
                        break
                    self._cond.wait(remaining)
            self._flush()

    def close(self) -> None:
        """Stop the thread/timer. The caller commits what is left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10.0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class TelemetryWriter:
    """Batches one session's telemetry into the database. Get one from
    ``Store.telemetry_writer(session)``; ``close()`` it (or end the session) when done."""

    def __init__(
        self,
        store: Store,
        *,
        session: str,
        session_id: int,
        patient_id: int,
        segment: int,
        clock: Clock,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        batch_rows: int = BATCH_ROWS,
        seal_interval_s: float = SEAL_INTERVAL_S,
        seal_rows: int = SEAL_ROWS,
    ) -> None:
        self.session = session
        self._store = store
        self._session_id = session_id
        self._patient_id = patient_id
        self._clock = clock
        self._flush_interval = flush_interval_s
        self._batch_rows = batch_rows
        self._seal_interval = seal_interval_s
        self._seal_rows = seal_rows
        self._lock = threading.Lock()
        self._buffer: list[TelemetryRow] = []
        self._segment = segment
        self._digest = TelemetryDigest()
        self._segment_started: float | None = None
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._closed = False
        self.committed = 0
        """Rows committed so far by this writer."""
        self.dropped = 0
        """Samples refused because the writer was already closed."""

    # ---- producer side (any thread, never blocks on the database)
    def add(self, sample: Telemetry) -> None:
        """Queue one sample; committed within the flush interval."""
        row = to_row(sample)
        with self._lock:
            if self._closed:
                self.dropped += 1
                log.debug("telemetry for closed writer of session %s dropped", self.session)
                return
            self._buffer.append(row)
            size = len(self._buffer)
        if size == 1:
            self._store._flusher.due(self._clock.now() + self._flush_interval)
        elif size == self._batch_rows:
            self._store._flusher.kick()

    def add_many(self, samples: list[Telemetry]) -> None:
        rows = [to_row(sample) for sample in samples]
        with self._lock:
            if self._closed:
                self.dropped += len(rows)
                return
            was_empty = not self._buffer
            self._buffer.extend(rows)
            size = len(self._buffer)
        if was_empty and size:
            self._store._flusher.due(self._clock.now() + self._flush_interval)
        if size >= self._batch_rows > size - len(rows):
            self._store._flusher.kick()

    def handle_report(self, report: Report) -> None:
        """A driver report handler: stores telemetry, ignores device events."""
        if isinstance(report, Telemetry):
            self.add(report)

    @property
    def pending(self) -> int:
        """Samples waiting to be committed."""
        with self._lock:
            return len(self._buffer)

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- committing (under the store's write lock)
    def flush(self, *, seal: bool = False) -> int:
        """Commit waiting samples now (and seal the segment if due or asked). Returns the number
        of rows committed."""
        store = self._store
        with store._write_lock:
            with self._lock:
                rows, self._buffer = self._buffer, []
            now = self._clock.now()
            digest = self._digest.copy()
            digest.update(rows)
            started = self._segment_started
            if rows and started is None:
                started = now
            t_first = self._t_first if self._t_first is not None or not rows else rows[0][0]
            t_last = rows[-1][0] if rows else self._t_last
            seal_now = digest.count > 0 and (
                seal
                or digest.count >= self._seal_rows
                or (started is not None and now - started >= self._seal_interval)
            )
            if not rows and not seal_now:
                return 0
            try:
                with store._transaction() as conn:
                    if rows:
                        sql = _INSERT_TEMPLATE.format(
                            session_id=self._session_id, segment=self._segment
                        )
                        conn.exec_driver_sql(sql, rows)
                    if seal_now:
                        record = TelemetrySealed(
                            session=self.session,
                            segment=self._segment,
                            count=digest.count,
                            digest=digest.hexdigest(),
                            t_first=t_first,
                            t_last=t_last,
                        )
                        store._append(conn, self._patient_id, self._session_id, record)
            except Exception:
                with self._lock:
                    self._buffer[:0] = rows
                raise
            self.committed += len(rows)
            if seal_now:
                self._segment += 1
                self._digest = TelemetryDigest()
                self._segment_started = None
                self._t_first = self._t_last = None
            else:
                self._digest = digest
                self._segment_started = started
                self._t_first, self._t_last = t_first, t_last
            return len(rows)

    def abandon_pending(self) -> int:
        """Give up the samples waiting to be committed (they cannot be written: the disk is
        full), so that what was committed can still be sealed. Returns how many."""
        with self._lock:
            lost = len(self._buffer)
            self._buffer.clear()
            self.dropped += lost
        return lost

    def close(self) -> None:
        """Commit and seal what is left; later samples are dropped. Idempotent."""
        with self._store._write_lock:
            if self._closed:
                return
            with self._lock:
                self._closed = True
            try:
                self.flush(seal=True)
            finally:
                self._store._writer_closed(self)
