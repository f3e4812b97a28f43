"""The session store: one SQLite file (SQLAlchemy 2 Core), hash-chained events, two durability
classes, crash recovery, verification, export, import and deletion. See docs/data.md.

Threads: one :class:`Store` is shared by the session controller's thread, the UI's thread and the
store's own flush thread. Every write runs under one process-wide write lock, in its own
``BEGIN IMMEDIATE`` transaction on a pooled connection (so a chain head read inside it cannot
change under it, even from another process). Reads use their own pooled connection and a
``BEGIN`` snapshot, need no lock, and never wait for writers (WAL).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Row, Select, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from drivers.base import DeviceInfo, Telemetry
from drivers.clock import Clock, RealClock, VirtualClock
from tens_control.store import amplitude, migrations, schema
from tens_control.store import bundle as bundle_mod
from tens_control.store import verify as verify_mod
from tens_control.store.canonical import (
    GENESIS_HASH,
    TelemetryDigest,
    canonical_json,
    chain_hash,
    dotted,
    event_body,
    iso_utc,
    new_uid,
    non_finite_at,
    parse_utc,
)
from tens_control.store.convert import TABLE_OF, ClinicalRecord, from_row, has_session, to_row
from tens_control.store.database import (
    WRITE,
    check_writable,
    create_file,
    describe_os_error,
    describe_sqlite_error,
    insert_id,
    inspect_file,
    make_engine,
    make_read_only_engine,
    sidecar_paths,
    tighten_permissions,
)
from tens_control.store.errors import (
    DiskFullError,
    InvalidRecordError,
    NewerSchemaError,
    RewrittenHistoryError,
    StoreBusyError,
    StoreClosedError,
    StoreError,
    UnknownPatientError,
    UnknownSessionError,
)
from tens_control.store.lock import LivenessLock, SessionLock
from tens_control.store.paths import (
    check_pseudonym,
    configured_patient,
    default_db_path,
    resolve_db_path,
)
from tens_control.store.records import (
    CALLER_KINDS,
    AdverseEvent,
    AdverseEventRecorded,
    AdverseKind,
    AnyLogRecord,
    CallerRecord,
    ChainStarted,
    DiaryAdded,
    DiaryEntry,
    DiaryKind,
    EndReason,
    Enrolment,
    EnrolmentPinned,
    LogRecord,
    Odometer,
    PainContext,
    PainRated,
    PainRating,
    PainSite,
    PegRecorded,
    PegScore,
    PgicRating,
    PgicRecorded,
    Prescription,
    PrescriptionSaved,
    RatingTime,
    Screening,
    ScreeningOverride,
    ScreeningSaved,
    SessionEnded,
    SessionPlan,
    SessionStarted,
    Severity,
    TelemetrySealed,
    parse_log_record,
    payload_of,
)
from tens_control.store.telemetry import (
    BATCH_ROWS,
    FLUSH_INTERVAL_S,
    SEAL_INTERVAL_S,
    SEAL_ROWS,
    Flusher,
    TelemetryWriter,
)
from tens_control.store.verify import Damage, Problem, VerifyReport, damage_of

log = logging.getLogger(__name__)

WallClock = Callable[[], datetime]
"""Returns the current moment (timezone-aware)."""


def _describe_validation(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


def virtual_wall_clock(clock: Clock, start: datetime) -> WallClock:
    """A wall clock that follows ``clock``: ``start`` at ``clock.now() == 0``. For sessions run in
    virtual time, so that logged wall times advance with the virtual session."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")

    def wall() -> datetime:
        return start + timedelta(seconds=clock.now())

    return wall


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Patient:
    pseudonym: str
    uid: str
    created_at: datetime


@dataclass(frozen=True)
class StoredEvent:
    """One hash-chained event as stored."""

    id: int
    chain: str
    seq: int
    session: str | None
    wall_time: datetime
    mono_time: float | None
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    @cached_property
    def record(self) -> AnyLogRecord:
        """The payload as its typed log record."""
        return parse_log_record(self.kind, self.payload)


@dataclass(frozen=True)
class SessionInfo:
    """A session with its pain ratings (those linked to it)."""

    uid: str
    patient: str
    plan: SessionPlan
    device: DeviceInfo | None
    simulator: bool
    started_at: datetime
    ended_at: datetime | None
    end_reason: EndReason | None
    ratings: tuple[PainRating, ...] = ()

    @property
    def program(self) -> str:
        return self.plan.program

    @property
    def planned_minutes(self) -> float:
        return self.plan.planned_minutes

    @property
    def minutes(self) -> float | None:
        """Minutes from start to end (None while the session has no end)."""
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds() / 60)

    def rating(
        self,
        when: RatingTime,
        pain: PainSite = PainSite.PHANTOM,
        context: PainContext = PainContext.REST,
    ) -> PainRating | None:
        """The last rating of that kind linked to this session (its ``nrs`` may be None =
        skipped), or None if there is none."""
        found = [
            r for r in self.ratings if r.when == when and r.pain == pain and r.context == context
        ]
        return found[-1] if found else None


@dataclass(frozen=True)
class ImportResult:
    patient: str
    added: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.added.values())


@dataclass(frozen=True)
class DeleteResult:
    patient: str
    deleted: dict[str, int]


@dataclass(frozen=True)
class _PatientRef:
    id: int
    uid: str
    pseudonym: str


@dataclass(frozen=True)
class _SessionRef:
    id: int
    uid: str
    patient_id: int


@dataclass
class _Queued:
    patient_id: int
    session_id: int | None
    record: LogRecord
    wall_time: str
    mono_time: float | None


# --------------------------------------------------------------------------- the store


class Store:
    """Open with :meth:`Store.open`; close with :meth:`close` (or use ``with``)."""

    def __init__(
        self,
        *,
        path: Path,
        engine: Engine,
        installation: str,
        clock: Clock,
        wall: WallClock,
        default_patient: str,
        liveness: LivenessLock,
        flush_interval_s: float,
        background_flush: bool,
        batch_rows: int,
        seal_interval_s: float,
        seal_rows: int,
    ) -> None:
        self.path = path
        self.installation = installation
        """This database's uid: the origin of the chains it writes."""
        self.clock = clock
        self.default_patient = default_patient
        self._engine = engine
        self._wall = wall
        self._liveness = liveness
        self._session_lock = SessionLock(path)
        self._flush_interval = flush_interval_s
        self._batch_rows = batch_rows
        self._seal_interval = seal_interval_s
        self._seal_rows = seal_rows
        self._write_lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._writers: dict[str, TelemetryWriter] = {}
        self._active: set[str] = set()
        self._patients: dict[str, _PatientRef] = {}
        self._sessions: dict[str, _SessionRef] = {}
        self._closed = False
        self._flusher = Flusher(clock, self._flush_batched, background=background_flush)
        self.read_only = False
        """True when opened with ``read_only=True``: every write method raises."""
        self.created = False
        """True when :meth:`open` created this database (a new, empty one)."""
        self._write_failure: Callable[[StoreError], None] | None = None
        self._batch_failing = False

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        recover: bool = True,
        clock: Clock | None = None,
        wall: WallClock | None = None,
        patient: str | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        background_flush: bool | None = None,
        batch_rows: int = BATCH_ROWS,
        seal_interval_s: float = SEAL_INTERVAL_S,
        seal_rows: int = SEAL_ROWS,
        read_only: bool = False,
        make_folders: bool = True,
    ) -> Store:
        """Open (or create) the database.

        ``path``: the file; None means ``$TENS_CONTROL_DB`` or the user data directory.
        ``create``: create a new database if there is none (else raise).
        ``recover``: close sessions left unfinished by a crashed process (only when no other
        live process holds the database's liveness lock). Processes that run sessions pass True;
        read-only tools (verify, export) pass False.
        ``clock``: monotonic time for events and batch deadlines (default: real time).
        ``wall``: a callable returning the current aware datetime (default: UTC now).
        ``patient``: the default patient's pseudonym (default: ``$TENS_CONTROL_PATIENT`` or
        ``patient-1``).
        ``background_flush``: commit batches on a background thread (default: yes, unless
        ``clock`` is a ``VirtualClock``, whose deadlines are run inline on that clock).
        ``read_only``: open an existing database of the current schema for reading only (every
        connection is SQLite ``mode=ro``; nothing is created, migrated, recovered or written,
        and any write method raises :class:`StoreError`). For review and reports.
        ``make_folders``: create the missing folders of a new database's path. False where a
        user typed the path (the CLI's ``--db``, ``$TENS_CONTROL_DB``): then only the default
        data folder is created, and a new database in a folder that does not exist (a typo) is
        refused with :class:`DatabaseFolderMissingError`.
        A database (or folder) this user cannot write raises :class:`DatabaseNotWritableError`
        before anything is written; a full disk :class:`DiskFullError`.
        """
        db_path = resolve_db_path(path)
        if read_only:
            return cls._open_read_only(db_path, clock=clock, wall=wall, patient=patient)
        new = False
        if not db_path.exists():
            if not create:
                inspect_file(db_path)  # raises DatabaseMissingError
            check_writable(db_path, make_folder=make_folders or db_path == default_db_path())
            create_file(db_path)
            new = True
            version = 0
        else:
            version = inspect_file(db_path)
            if version > schema.SCHEMA_VERSION:
                raise NewerSchemaError(
                    f"{db_path} was written by a newer tens-control (schema version {version}; "
                    f"this version understands up to {schema.SCHEMA_VERSION}); the file was not "
                    "changed. Upgrade tens-control to open it"
                )
            check_writable(db_path, make_folder=False)
            tighten_permissions(db_path)
        engine = make_engine(db_path)
        try:
            if new:
                with engine.connect() as conn:
                    conn.execution_options(**WRITE)
                    with conn.begin():
                        migrations.create_schema(conn)
            elif version < schema.SCHEMA_VERSION:
                migrations.migrate(engine, db_path, version)
            with engine.connect() as conn, conn.begin():
                installation = conn.execute(
                    select(schema.meta.c.value).where(schema.meta.c.key == "installation")
                ).scalar_one()
        except BaseException as error:
            engine.dispose()
            if new:  # a half-created database must not be mistaken for one later
                for file in (db_path, *sidecar_paths(db_path)):
                    file.unlink(missing_ok=True)
            if isinstance(error, DBAPIError):
                raise describe_sqlite_error(db_path, error.orig or error) from None
            if isinstance(error, OSError):
                raise describe_os_error(db_path, error) from None
            raise
        tighten_permissions(db_path)
        the_clock = clock if clock is not None else RealClock()
        background = (
            not isinstance(the_clock, VirtualClock)
            if background_flush is None
            else background_flush
        )
        store = cls(
            path=db_path,
            engine=engine,
            installation=str(installation),
            clock=the_clock,
            wall=wall if wall is not None else (lambda: datetime.now(UTC)),
            default_patient=check_pseudonym(patient or configured_patient()),
            liveness=LivenessLock(db_path),
            flush_interval_s=flush_interval_s,
            background_flush=background,
            batch_rows=batch_rows,
            seal_interval_s=seal_interval_s,
            seal_rows=seal_rows,
        )
        store.created = new
        if recover:
            try:
                store.recover_unfinished_sessions()
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def open_to_read(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Clock | None = None,
        wall: WallClock | None = None,
        patient: str | None = None,
    ) -> Store:
        """Open an existing database for a command that only reads it (verify, report, review,
        export, prescription show): read-only, so that it never changes the log and works on
        read-only media. A database of an older schema is upgraded first when it can be
        written (as opening it for writing would); else :meth:`open` explains what to do."""
        db_path = resolve_db_path(path)
        version = inspect_file(db_path)  # raises DatabaseMissingError
        if version < schema.SCHEMA_VERSION:
            try:
                check_writable(db_path, make_folder=False)
            except StoreError:
                pass  # the read-only open says what to do
            else:
                cls.open(db_path, create=False, recover=False, clock=clock, wall=wall).close()
        return cls.open(db_path, read_only=True, clock=clock, wall=wall, patient=patient)

    @classmethod
    def _open_read_only(
        cls,
        db_path: Path,
        *,
        clock: Clock | None,
        wall: WallClock | None,
        patient: str | None,
    ) -> Store:
        version = inspect_file(db_path)
        if version > schema.SCHEMA_VERSION:
            raise NewerSchemaError(
                f"{db_path} was written by a newer tens-control (schema version {version}; "
                f"this version understands up to {schema.SCHEMA_VERSION}); the file was not "
                "changed. Upgrade tens-control to open it"
            )
        if version < schema.SCHEMA_VERSION:
            raise StoreError(
                f"{db_path} has the older schema version {version} and must be upgraded before "
                "it can be read, which needs a writable folder; copy it (with any -wal file "
                "beside it) to a writable folder and open the copy"
            )
        engine = make_read_only_engine(db_path)
        try:
            with engine.connect() as conn, conn.begin():
                installation = conn.execute(
                    select(schema.meta.c.value).where(schema.meta.c.key == "installation")
                ).scalar_one()
        except DBAPIError as error:
            engine.dispose()
            raise describe_sqlite_error(db_path, error.orig or error) from None
        except BaseException:
            engine.dispose()
            raise
        store = cls(
            path=db_path,
            engine=engine,
            installation=str(installation),
            clock=clock if clock is not None else VirtualClock(),
            wall=wall if wall is not None else (lambda: datetime.now(UTC)),
            default_patient=check_pseudonym(patient or configured_patient()),
            liveness=LivenessLock(db_path),
            flush_interval_s=FLUSH_INTERVAL_S,
            background_flush=False,
            batch_rows=BATCH_ROWS,
            seal_interval_s=SEAL_INTERVAL_S,
            seal_rows=SEAL_ROWS,
        )
        store.read_only = True
        return store

    def close(self) -> None:
        """Commit everything pending (sealing telemetry), release the database. Idempotent.

        Sessions still running stay open in the database (the next start closes them as host
        crash, unless ended first)."""
        if self._closed:
            return
        if self.read_only:
            self._closed = True
            self._engine.dispose()
            return
        try:
            self._flusher.close()
            for writer in list(self._writers.values()):
                try:
                    writer.close()
                except Exception:
                    log.exception("could not commit telemetry of session %s", writer.session)
            if self._queue:
                with self._transaction():
                    pass  # drains the queue
        finally:
            self._closed = True
            self._session_lock.release()
            self._liveness.release()
            self._engine.dispose()
            tighten_permissions(self.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ plumbing
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed; open it again")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise StoreError(f"{self.path} was opened read-only; nothing can be written through it")

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction under the write lock; queued (non-safety) events are written
        first, so the chain keeps their order."""
        with self._write_lock:
            self._check_open()
            self._check_writable()
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(**WRITE)
                    with conn.begin():
                        with self._queue_lock:
                            queued = list(self._queue)
                        for item in queued:
                            self._append(
                                conn,
                                item.patient_id,
                                item.session_id,
                                item.record,
                                wall_time=item.wall_time,
                                mono=item.mono_time,
                            )
                        yield conn
                with self._queue_lock:
                    del self._queue[: len(queued)]
            except DBAPIError as error:
                raise describe_sqlite_error(self.path, error.orig or error) from error

    def reading(self) -> AbstractContextManager[Connection]:
        """A connection in one read transaction (a consistent snapshot), for bulk queries with
        SQLAlchemy Core on ``tens_control.store.schema`` (review, reports). Never write through
        it: writes go through the Store's methods, which keep the hash chain."""
        return self._reading()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        self._check_open()
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as error:
            raise describe_sqlite_error(self.path, error.orig or error) from error

    def _now(self, at: datetime | None) -> str:
        moment = at if at is not None else self._wall()
        return iso_utc(moment)

    def _mono(self, mono: float | None) -> float:
        return float(self.clock.now() if mono is None else mono)

    def _append(
        self,
        conn: Connection,
        patient_id: int,
        session_id: int | None,
        record: LogRecord,
        *,
        wall_time: str | None = None,
        mono: float | None = None,
    ) -> StoredEvent:
        """Append one record to the patient's local chain (inside ``conn``'s transaction)."""
        chain_id, chain_uid, head_seq, head_hash = self._local_chain(conn, patient_id)
        stored = self._append_to(
            conn, chain_id, chain_uid, head_seq, head_hash, session_id, record, wall_time, mono
        )
        if session_id is not None and stored.kind == "amplitude_changed":
            # a late amplitude event of an ended session: keep its derived figures current
            ended = conn.execute(
                select(schema.sessions.c.ended_at).where(schema.sessions.c.id == session_id)
            ).scalar()
            if ended is not None:
                amplitude.refresh(conn, [session_id])
        return stored

    def _append_to(
        self,
        conn: Connection,
        chain_id: int,
        chain_uid: str,
        head_seq: int,
        head_hash: str,
        session_id: int | None,
        record: LogRecord,
        wall_time: str | None,
        mono: float | None,
    ) -> StoredEvent:
        session_uid = None
        if session_id is not None:
            session_uid = conn.execute(
                select(schema.sessions.c.uid).where(schema.sessions.c.id == session_id)
            ).scalar_one()
        seq = head_seq + 1
        wall = wall_time if wall_time is not None else self._now(None)
        mono_time = self._mono(mono)
        payload = payload_of(record)
        body = event_body(
            chain=chain_uid,
            seq=seq,
            session=session_uid,
            wall_time=wall,
            mono_time=mono_time,
            kind=record.kind,
            payload=payload,
        )
        bad = non_finite_at(body)
        if bad is not None:
            raise InvalidRecordError(
                f"the {record.kind} record cannot be logged: {dotted(bad[0])} is {bad[1]}, not a "
                "finite number (the log holds no NaN or infinity); nothing was written"
            )
        digest = chain_hash(head_hash, body)
        event_id = insert_id(
            conn.execute(
                insert(schema.events).values(
                    chain_id=chain_id,
                    seq=seq,
                    session_id=session_id,
                    wall_time=wall,
                    mono_time=mono_time,
                    kind=record.kind,
                    payload=canonical_json(payload),
                    prev_hash=head_hash,
                    hash=digest,
                )
            )
        )
        conn.execute(
            update(schema.chains)
            .where(schema.chains.c.id == chain_id)
            .values(head_seq=seq, head_hash=digest)
        )
        return StoredEvent(
            id=int(event_id),
            chain=chain_uid,
            seq=seq,
            session=session_uid,
            wall_time=parse_utc(wall),
            mono_time=mono_time,
            kind=record.kind,
            payload=payload,
            prev_hash=head_hash,
            hash=digest,
        )

    def _local_chain(self, conn: Connection, patient_id: int) -> tuple[int, str, int, str]:
        c = schema.chains.c
        row = conn.execute(
            select(c.id, c.uid, c.head_seq, c.head_hash).where(
                c.patient_id == patient_id, c.origin == self.installation
            )
        ).first()
        if row is not None:
            return int(row.id), str(row.uid), int(row.head_seq), str(row.head_hash)
        patient = conn.execute(
            select(schema.patients.c.uid, schema.patients.c.pseudonym).where(
                schema.patients.c.id == patient_id
            )
        ).one()
        chain_uid = new_uid()
        chain_id = insert_id(
            conn.execute(
                insert(schema.chains).values(
                    uid=chain_uid,
                    patient_id=patient_id,
                    origin=self.installation,
                    head_seq=0,
                    head_hash=GENESIS_HASH,
                )
            )
        )
        genesis = ChainStarted(
            patient=patient.uid, pseudonym=patient.pseudonym, origin=self.installation
        )
        event = self._append_to(
            conn, int(chain_id), chain_uid, 0, GENESIS_HASH, None, genesis, None, None
        )
        return int(chain_id), chain_uid, event.seq, event.hash

    # ------------------------------------------------------------------ patients
    def _patient_ref(self, conn: Connection, pseudonym: str | None) -> _PatientRef:
        name = pseudonym if pseudonym is not None else self.default_patient
        cached = self._patients.get(name)
        if cached is not None:
            return cached
        p = schema.patients.c
        row = conn.execute(select(p.id, p.uid, p.pseudonym).where(p.pseudonym == name)).first()
        if row is None:
            raise UnknownPatientError(
                f"there is no patient {name!r} in {self.path}; check the pseudonym"
            )
        ref = _PatientRef(int(row.id), str(row.uid), str(row.pseudonym))
        self._patients[name] = ref
        return ref

    def ensure_patient(self, pseudonym: str | None = None) -> Patient:
        """The patient with this pseudonym (default: the store's default patient), created (with
        its hash chain) if new."""
        name = pseudonym if pseudonym is not None else self.default_patient
        try:
            check_pseudonym(name)
        except ValueError as error:
            raise InvalidRecordError(str(error)) from None
        with self._transaction() as conn:
            p = schema.patients.c
            row = conn.execute(
                select(p.id, p.uid, p.pseudonym, p.created_at).where(p.pseudonym == name)
            ).first()
            if row is None:
                uid, created = new_uid(), self._now(None)
                pid = insert_id(
                    conn.execute(
                        insert(schema.patients).values(uid=uid, pseudonym=name, created_at=created)
                    )
                )
                self._local_chain(conn, int(pid))
                log.info("new patient %s", name)
                return Patient(name, uid, parse_utc(created))
            self._local_chain(conn, int(row.id))
            return Patient(str(row.pseudonym), str(row.uid), parse_utc(row.created_at))

    def patients(self) -> list[Patient]:
        p = schema.patients.c
        with self._reading() as conn:
            rows = conn.execute(select(p.pseudonym, p.uid, p.created_at).order_by(p.id)).all()
        return [Patient(str(r.pseudonym), str(r.uid), parse_utc(r.created_at)) for r in rows]

    def patient(self, pseudonym: str | None = None) -> Patient:
        """The patient (default: the default patient); raises :class:`UnknownPatientError`."""
        for found in self.patients():
            if found.pseudonym == (pseudonym or self.default_patient):
                return found
        raise UnknownPatientError(
            f"there is no patient {pseudonym or self.default_patient!r} in {self.path}"
        )

    def current_patient(self) -> Patient | None:
        """ "The current patient": the default pseudonym if that patient exists, else the only
        patient in the database, else None."""
        everyone = self.patients()
        for found in everyone:
            if found.pseudonym == self.default_patient:
                return found
        return everyone[0] if len(everyone) == 1 else None

    def pick_patient(self, pseudonym: str | None = None) -> Patient:
        """For commands with an optional ``--patient``: that patient if given, else the current
        patient; a clear error if there is none or the choice is ambiguous."""
        if pseudonym is not None:
            return self.patient(pseudonym)
        current = self.current_patient()
        if current is not None:
            return current
        everyone = [p.pseudonym for p in self.patients()]
        if not everyone:
            raise UnknownPatientError(f"there are no patients in {self.path} yet")
        raise UnknownPatientError(
            f"{self.path} holds {len(everyone)} patients ({', '.join(everyone[:10])}"
            f"{', ...' if len(everyone) > 10 else ''}); choose one with --patient"
        )

    # ------------------------------------------------------------------ devices
    def _device_id(self, conn: Connection, info: DeviceInfo) -> int:
        return bundle_mod.device_id_of(conn, info, self._now(None))

    def record_device(self, info: DeviceInfo) -> int:
        """Remember a device (model, serial, firmware, protocol); returns its local id."""
        with self._transaction() as conn:
            return self._device_id(conn, info)

    def devices(self) -> list[DeviceInfo]:
        with self._reading() as conn:
            rows = conn.execute(select(schema.devices.c.info).order_by(schema.devices.c.id))
            return [DeviceInfo.model_validate_json(r.info) for r in rows]

    # ------------------------------------------------------------------ sessions
    def _session_ref(self, conn: Connection, session: str) -> _SessionRef:
        cached = self._sessions.get(session)
        if cached is not None:
            return cached
        s = schema.sessions.c
        row = conn.execute(select(s.id, s.uid, s.patient_id).where(s.uid == session)).first()
        if row is None:
            raise UnknownSessionError(f"there is no session {session!r} in {self.path}")
        ref = _SessionRef(int(row.id), str(row.uid), int(row.patient_id))
        self._sessions[session] = ref
        return ref

    def begin_session(
        self,
        plan: SessionPlan,
        *,
        patient: str | None = None,
        device: DeviceInfo | None = None,
        simulator: bool | None = None,
        at: datetime | None = None,
        mono: float | None = None,
        odometer: Odometer | None = None,
    ) -> str:
        """Start a session: its row and a ``session_started`` record, committed before this
        returns. Returns the session's id (a uid). ``simulator`` defaults to the device's own
        flag. ``odometer``: the device's session counter and total stimulation time as it
        reported them (None if it reports none).

        Only one program at a time runs sessions on a database: this store takes the session
        lock (``<database>.session``) and keeps it until its sessions have ended;
        :class:`StoreBusyError` names the other program if it holds the lock."""
        self._check_writable()
        is_sim = simulator if simulator is not None else bool(device and device.is_simulator)
        if device is not None:
            device = device.identity()  # its counters are logged as the session's ``odometer``
        uid = new_uid()
        started = self._now(at)
        mono_time = self._mono(mono)
        if not self._liveness.shared():
            raise StoreBusyError(
                f"another tens-control process holds {self.path} exclusively (deleting or "
                "recovering); try again in a moment"
            )
        self._take_session_lock(started)
        try:
            self._begin(uid, plan, patient, device, is_sim, started, mono_time, odometer)
        except BaseException:
            if not self._active:
                self._session_lock.release()
            raise
        return uid

    def _take_session_lock(self, started: str) -> None:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else ""
        holder = self._session_lock.acquire(
            f"pid {os.getpid()} ({command or 'python'}), session started {started}"
        )
        if holder is not None:
            raise StoreBusyError(
                f"another program is running a session on {self.path}: {holder}; only one "
                "session at a time may run: wait for it to end, or stop it, then try again"
            )

    def running_elsewhere(self) -> str | None:
        """The program running a session on this database, if another one is (its pid, command
        line and when its session started), else None."""
        return self._session_lock.holder()

    def _begin(
        self,
        uid: str,
        plan: SessionPlan,
        patient: str | None,
        device: DeviceInfo | None,
        is_sim: bool,
        started: str,
        mono_time: float,
        odometer: Odometer | None,
    ) -> None:
        with self._transaction() as conn:
            pref = self._patient_ref(conn, patient)
            device_id = self._device_id(conn, device) if device is not None else None
            session_id = insert_id(
                conn.execute(
                    insert(schema.sessions).values(
                        uid=uid,
                        patient_id=pref.id,
                        device_id=device_id,
                        program=plan.program,
                        plan=canonical_json(plan.model_dump(mode="json")),
                        planned_minutes=plan.planned_minutes,
                        prescription_version=plan.prescription_version,
                        simulator=is_sim,
                        started_at=started,
                        started_mono=mono_time,
                        odometer_sessions=None if odometer is None else odometer.sessions,
                        odometer_seconds=None if odometer is None else odometer.stimulation_s,
                    )
                )
            )
            record = SessionStarted(
                session=uid,
                started_at=parse_utc(started),
                plan=plan,
                device=device,
                simulator=is_sim,
                odometer=odometer,
            )
            self._append(conn, pref.id, int(session_id), record, wall_time=started, mono=mono_time)
        self._sessions[uid] = _SessionRef(int(session_id), uid, pref.id)
        self._active.add(uid)

    def end_session(
        self,
        session: str,
        reason: EndReason,
        *,
        at: datetime | None = None,
        mono: float | None = None,
        detail: str = "",
    ) -> bool:
        """End a session: its telemetry is committed and sealed, then its end and a
        ``session_ended`` record are committed before this returns. False (and nothing written)
        if the session had already ended.

        On a full disk the session is still closed if at all possible: the write-ahead log is
        checkpointed to make room, telemetry and queued events that cannot be written are
        given up (counted in the end's detail), the rows already committed are sealed; if even
        that fails, :class:`DiskFullError` is raised and the next start closes the session."""
        writer = self._writers.get(session)
        try:
            return self._end_session(session, writer, reason, at=at, mono=mono, detail=detail)
        except DiskFullError:
            self._checkpoint()  # the write-ahead log's space can then be reused
        try:
            return self._end_session(session, writer, reason, at=at, mono=mono, detail=detail)
        except DiskFullError:
            lost = self._give_up_pending(writer)
            self._checkpoint()
        note = f"the disk was full: {lost} telemetry sample(s) and queued event(s) lost"
        detail = f"{detail}; {note}" if detail else note
        return self._end_session(session, writer, reason, at=at, mono=mono, detail=detail)

    def _checkpoint(self) -> None:
        """Move the write-ahead log into the database and truncate it (after a write failed on
        a full disk, so that the log's space can be reused)."""
        try:
            with self._write_lock, self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except DBAPIError as error:
            log.info("checkpoint on a full disk failed: %s", error.orig or error)

    def _give_up_pending(self, writer: TelemetryWriter | None) -> int:
        """Give up what waits to be written (a session's pending telemetry, the queued
        events) when even a checkpoint left no room for it; how many rows and events."""
        with self._write_lock:
            lost = 0 if writer is None else writer.abandon_pending()
            with self._queue_lock:
                lost += len(self._queue)
                self._queue.clear()
        log.info("the disk is full: %d waiting log row(s) given up", lost)
        return lost

    def _end_session(
        self,
        session: str,
        writer: TelemetryWriter | None,
        reason: EndReason,
        *,
        at: datetime | None,
        mono: float | None,
        detail: str,
    ) -> bool:
        if writer is not None:
            if writer.closed:  # an earlier attempt closed it, but could not commit
                writer.flush(seal=True)
            else:
                writer.close()
        ended = self._now(at)
        mono_time = self._mono(mono)
        with self._transaction() as conn:
            ref = self._session_ref(conn, session)
            s = schema.sessions.c
            done = conn.execute(select(s.ended_at).where(s.id == ref.id)).scalar()
            if done is not None:
                self._active.discard(session)
                if not self._active:
                    self._session_lock.release()
                return False
            conn.execute(
                update(schema.sessions)
                .where(s.id == ref.id)
                .values(ended_at=ended, ended_mono=mono_time, end_reason=EndReason(reason).value)
            )
            amplitude.refresh(conn, [ref.id])
            record = SessionEnded(
                session=session, ended_at=parse_utc(ended), reason=reason, detail=detail
            )
            self._append(conn, ref.patient_id, ref.id, record, wall_time=ended, mono=mono_time)
        self._active.discard(session)
        if not self._active:
            self._session_lock.release()
        self._maybe_idle()
        return True

    def telemetry_writer(self, session: str) -> TelemetryWriter:
        """The batch writer for a session's telemetry (one per session; the same one is
        returned while it is open). ``end_session`` closes it."""
        self._check_writable()
        with self._write_lock:
            existing = self._writers.get(session)
            if existing is not None:
                return existing
            with self._reading() as conn:
                ref = self._session_ref(conn, session)
                s = schema.sessions.c
                if conn.execute(select(s.ended_at).where(s.id == ref.id)).scalar() is not None:
                    raise StoreError(f"session {session} has ended; it takes no more telemetry")
                last = conn.execute(
                    select(func.max(schema.telemetry.c.segment)).where(
                        schema.telemetry.c.session_id == ref.id
                    )
                ).scalar()
            writer = TelemetryWriter(
                self,
                session=session,
                session_id=ref.id,
                patient_id=ref.patient_id,
                segment=int(last or 0) + 1,
                clock=self.clock,
                flush_interval_s=self._flush_interval,
                batch_rows=self._batch_rows,
                seal_interval_s=self._seal_interval,
                seal_rows=self._seal_rows,
            )
            self._writers[session] = writer
            return writer

    def _writer_closed(self, writer: TelemetryWriter) -> None:
        if self._writers.get(writer.session) is writer:
            del self._writers[writer.session]

    def on_write_failure(self, callback: Callable[[StoreError], None] | None) -> None:
        """``callback(error)`` (or None: no more) is called, on the thread committing batches,
        when batched log data (telemetry, queued events) cannot be committed because the disk
        is full, even after a checkpoint made room: the log is no longer complete, so a
        session must stop (the session controller stops the output)."""
        self._write_failure = callback

    def _commit_batched(self) -> None:
        if self._queue:
            with self._transaction():
                pass
        for writer in list(self._writers.values()):
            writer.flush()

    def _flush_batched(self) -> None:
        """The flusher's job: commit queued events and every writer's samples (on a full disk,
        after a checkpoint, once more)."""
        try:
            try:
                self._commit_batched()
            except DiskFullError:
                self._checkpoint()  # a grown write-ahead log is the usual cause
                self._commit_batched()
        except Exception as error:
            callback = self._write_failure
            if isinstance(error, DiskFullError) and callback is not None:
                callback(error)  # the session stops, and says why
            elif not self._batch_failing:
                log.error("committing batched log data failed (%s); retrying", error)
            self._batch_failing = True
            if not self._closed:
                self._flusher.due(self.clock.now() + self._flush_interval)
        else:
            self._batch_failing = False

    def flush(self) -> None:
        """Commit every queued event and telemetry sample now."""
        self._check_open()
        if self._queue:
            with self._transaction():
                pass
        for writer in list(self._writers.values()):
            writer.flush()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        with self._write_lock:
            if not self._queue and not any(w.pending for w in self._writers.values()):
                self._flusher.idle()

    # ------------------------------------------------------------------ events
    @overload
    def append_event(
        self,
        session: str | None,
        record: CallerRecord,
        *,
        safety: Literal[True] = True,
        patient: str | None = None,
        at: datetime | None = None,
        mono: float | None = None,
    ) -> StoredEvent: ...

    @overload
    def append_event(
        self,
        session: str | None,
        record: CallerRecord,
        *,
        safety: Literal[False],
        patient: str | None = None,
        at: datetime | None = None,
        mono: float | None = None,
    ) -> None: ...

    def append_event(
        self,
        session: str | None,
        record: CallerRecord,
        *,
        safety: bool = True,
        patient: str | None = None,
        at: datetime | None = None,
        mono: float | None = None,
    ) -> StoredEvent | None:
        """Log one event of a session (or, with ``session=None``, of ``patient``).

        ``safety=True`` (start, stop, amplitude change, rejection, fault, end, state change):
        committed to disk before this returns; acknowledge the action only after it returns.
        If it raises, the event is not logged: treat that as a fault and stop output.
        ``safety=False``: queued and committed within the flush interval (250 ms), and always
        before any later safety event; returns None.
        """
        self._check_writable()
        kind = getattr(record, "kind", None)
        if kind not in CALLER_KINDS:
            raise StoreError(
                f"log records of kind {kind!r} are written by the store itself; use the "
                "matching Store method (begin_session, end_session, add_pain_rating, ...)"
            )
        wall = self._now(at)
        mono_time = self._mono(mono)
        if not safety:
            with self._reading() as conn:
                patient_id, session_id = self._owner(conn, session, patient)
            with self._queue_lock:
                self._queue.append(_Queued(patient_id, session_id, record, wall, mono_time))
            self._flusher.due(self.clock.now() + self._flush_interval)
            return None
        with self._transaction() as conn:
            patient_id, session_id = self._owner(conn, session, patient)
            return self._append(
                conn, patient_id, session_id, record, wall_time=wall, mono=mono_time
            )

    def append_safety_event(
        self,
        session: str | None,
        record: CallerRecord,
        *,
        patient: str | None = None,
        at: datetime | None = None,
        mono: float | None = None,
    ) -> StoredEvent:
        """``append_event(..., safety=True)``: committed before it returns."""
        return self.append_event(session, record, patient=patient, at=at, mono=mono)

    def _owner(
        self, conn: Connection, session: str | None, patient: str | None
    ) -> tuple[int, int | None]:
        if session is not None:
            ref = self._session_ref(conn, session)
            return ref.patient_id, ref.id
        return self._patient_ref(conn, patient).id, None

    # ------------------------------------------------------------------ clinical records
    def add_record(self, record: ClinicalRecord, *, patient: str | None = None) -> ClinicalRecord:
        """Store a clinical record (rating, PEG, diary entry, adverse event) with its log record,
        committed before this returns. Prescriptions and screenings have their own methods."""
        if isinstance(record, Prescription | Screening | Enrolment):
            raise StoreError(
                "use save_prescription/save_screening/save_enrolment for these records"
            )
        return self._add_record(record, patient)

    def _add_record(self, record: ClinicalRecord, patient: str | None) -> ClinicalRecord:
        event: LogRecord
        if isinstance(record, PainRating):
            event = PainRated(record=record)
        elif isinstance(record, PegScore):
            event = PegRecorded(record=record)
        elif isinstance(record, PgicRating):
            event = PgicRecorded(record=record)
        elif isinstance(record, DiaryEntry):
            event = DiaryAdded(record=record)
        elif isinstance(record, AdverseEvent):
            event = AdverseEventRecorded(record=record)
        elif isinstance(record, Prescription):
            event = PrescriptionSaved(record=record)
        elif isinstance(record, Enrolment):
            event = EnrolmentPinned(record=record)
        else:
            event = ScreeningSaved(record=record)
        with self._transaction() as conn:
            session_uid = getattr(record, "session", None)
            session_id: int | None = None
            if session_uid is not None:
                sref = self._session_ref(conn, session_uid)
                patient_id = sref.patient_id
                session_id = sref.id
                if patient is not None and self._patient_ref(conn, patient).id != patient_id:
                    raise InvalidRecordError(
                        f"session {session_uid} belongs to another patient than {patient}"
                    )
            else:
                patient_id = self._patient_ref(conn, patient).id
            table = TABLE_OF[type(record)]
            try:
                conn.execute(insert(table).values(to_row(record, patient_id, session_id)))
            except IntegrityError as error:
                raise InvalidRecordError(
                    f"{table.name} record {record.uid} cannot be stored ({error.orig})"
                ) from None
            self._append(conn, patient_id, None, event)
        return record

    def _build(self, model: type[Any], **fields: Any) -> Any:
        try:
            return model(**fields)
        except ValidationError as error:
            raise InvalidRecordError(
                f"invalid {model.__name__}: {_describe_validation(error)}"
            ) from None

    def add_pain_rating(
        self,
        nrs: int | None,
        when: RatingTime,
        pain: PainSite,
        *,
        context: PainContext = PainContext.REST,
        session: str | None = None,
        at: datetime | None = None,
        note: str = "",
        patient: str | None = None,
    ) -> PainRating:
        """Store an NRS 0-10 rating (``nrs=None``: skipped, stored as missing, never as 0)."""
        record = self._build(
            PainRating,
            at=at or self._wall(),
            nrs=nrs,
            when=when,
            pain=pain,
            context=context,
            session=session,
            note=note,
        )
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def add_peg(
        self,
        pain: int | None,
        enjoyment: int | None,
        activity: int | None,
        *,
        at: datetime | None = None,
        patient: str | None = None,
    ) -> PegScore:
        record = self._build(
            PegScore, at=at or self._wall(), pain=pain, enjoyment=enjoyment, activity=activity
        )
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def add_pgic(
        self, value: int | None, *, at: datetime | None = None, patient: str | None = None
    ) -> PgicRating:
        """Store a PGIC answer, 1 (very much improved) to 7 (very much worse); ``None``: asked
        and skipped."""
        record = self._build(PgicRating, at=at or self._wall(), value=value)
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def add_diary_entry(
        self,
        kind: DiaryKind,
        start: datetime,
        *,
        end: datetime | None = None,
        nrs: int | None = None,
        pain: PainSite | None = None,
        notes: str = "",
        patient: str | None = None,
    ) -> DiaryEntry:
        record = self._build(
            DiaryEntry, kind=kind, start=start, end=end, nrs=nrs, pain=pain, notes=notes
        )
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def add_adverse_event(
        self,
        kind: AdverseKind,
        severity: Severity,
        *,
        session: str | None = None,
        at: datetime | None = None,
        notes: str = "",
        patient: str | None = None,
    ) -> AdverseEvent:
        record = self._build(
            AdverseEvent,
            at=at or self._wall(),
            kind=kind,
            severity=severity,
            session=session,
            notes=notes,
        )
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def save_prescription(
        self,
        toml: str,
        *,
        author: str,
        reason: str = "",
        patient: str | None = None,
        at: datetime | None = None,
    ) -> Prescription:
        """Store a new version of the patient's prescription (TOML text as written by the
        clinician; validating it is the prescription module's job). Versions count from 1."""
        with self._write_lock:
            with self._reading() as conn:
                pref = self._patient_ref(conn, patient)
                last = conn.execute(
                    select(func.max(schema.prescriptions.c.version)).where(
                        schema.prescriptions.c.patient_id == pref.id
                    )
                ).scalar()
            record = self._build(
                Prescription,
                version=int(last or 0) + 1,
                toml=toml,
                author=author,
                reason=reason,
                created_at=at or self._wall(),
            )
            self._add_record(record, pref.pseudonym)
            return record  # type: ignore[no-any-return]

    def prescriptions(self, patient: str | None = None) -> list[Prescription]:
        return [
            r
            for r in self._records(schema.prescriptions, patient, order="version")
            if isinstance(r, Prescription)
        ]

    def latest_prescription(self, patient: str | None = None) -> Prescription | None:
        found = self.prescriptions(patient)
        return found[-1] if found else None

    def save_screening(
        self,
        answers: Mapping[str, bool],
        *,
        recorded_by: str,
        overrides: Sequence[ScreeningOverride] = (),
        notes: str = "",
        patient: str | None = None,
        at: datetime | None = None,
    ) -> Screening:
        """Store a contraindication screening (question -> answered yes) with any clinician
        overrides (who, when, why)."""
        record = self._build(
            Screening,
            at=at or self._wall(),
            answers=dict(answers),
            overrides=tuple(overrides),
            recorded_by=recorded_by,
            notes=notes,
        )
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def save_enrolment(
        self,
        text: str,
        *,
        clinic: str,
        clinic_patient: str,
        serial: int,
        replaced: bool = False,
        patient: str | None = None,
        at: datetime | None = None,
    ) -> Enrolment:
        """Pin a clinic enrolment (the signed file's text; checking it is the trust module's
        job). The latest one pinned is in force."""
        record = self._build(
            Enrolment,
            at=at or self._wall(),
            clinic=clinic,
            patient=clinic_patient,
            serial=serial,
            text=text,
            replaced=replaced,
        )
        self._add_record(record, patient)
        return record  # type: ignore[no-any-return]

    def enrolments(self, patient: str | None = None) -> list[Enrolment]:
        return [r for r in self._records(schema.enrolments, patient) if isinstance(r, Enrolment)]

    def latest_enrolment(self, patient: str | None = None) -> Enrolment | None:
        found = self.enrolments(patient)
        return found[-1] if found else None

    def screenings(self, patient: str | None = None) -> list[Screening]:
        return [r for r in self._records(schema.screenings, patient) if isinstance(r, Screening)]

    def latest_screening(self, patient: str | None = None) -> Screening | None:
        found = self.screenings(patient)
        return found[-1] if found else None

    # ------------------------------------------------------------------ queries
    def _records(
        self,
        table: Any,
        patient: str | None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
        order: str = "",
        conn: Connection | None = None,
    ) -> list[ClinicalRecord]:
        time_col = {
            "pain_ratings": "at",
            "peg_scores": "at",
            "pgic_ratings": "at",
            "adverse_events": "at",
            "screenings": "at",
            "diary_entries": "start",
            "prescriptions": "created_at",
            "enrolments": "at",
        }[table.name]
        with self._maybe_reading(conn) as c:
            pref = self._patient_ref(c, patient)
            s = schema.sessions
            if has_session(table):
                query: Select[Any] = select(table, s.c.uid.label("session_uid")).select_from(
                    table.outerjoin(s, table.c.session_id == s.c.id)
                )
            else:
                query = select(table)
            query = query.where(table.c.patient_id == pref.id)
            if since is not None:
                query = query.where(table.c[time_col] >= iso_utc(since))
            if until is not None:
                query = query.where(table.c[time_col] < iso_utc(until))
            if session is not None:
                query = query.where(table.c.session_id == self._session_ref(c, session).id)
            query = query.order_by(table.c[order or time_col], table.c.id)
            rows = c.execute(query).mappings().all()
        return [from_row(table.name, row, row.get("session_uid")) for row in rows]

    @contextmanager
    def _maybe_reading(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self._reading() as fresh:
                yield fresh

    def pain_ratings(
        self,
        patient: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
    ) -> list[PainRating]:
        """Ratings in time order; ``since`` inclusive, ``until`` exclusive."""
        rows = self._records(
            schema.pain_ratings, patient, since=since, until=until, session=session
        )
        return [r for r in rows if isinstance(r, PainRating)]

    def peg_scores(
        self,
        patient: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[PegScore]:
        rows = self._records(schema.peg_scores, patient, since=since, until=until)
        return [r for r in rows if isinstance(r, PegScore)]

    def pgic_ratings(
        self,
        patient: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[PgicRating]:
        rows = self._records(schema.pgic_ratings, patient, since=since, until=until)
        return [r for r in rows if isinstance(r, PgicRating)]

    def diary_entries(
        self,
        patient: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[DiaryEntry]:
        rows = self._records(schema.diary_entries, patient, since=since, until=until)
        return [r for r in rows if isinstance(r, DiaryEntry)]

    def adverse_events(
        self,
        patient: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
    ) -> list[AdverseEvent]:
        rows = self._records(
            schema.adverse_events, patient, since=since, until=until, session=session
        )
        return [r for r in rows if isinstance(r, AdverseEvent)]

    def _session_query(self) -> Select[Any]:
        s, d, p = schema.sessions, schema.devices, schema.patients
        return select(
            s.c.id,
            s.c.uid,
            s.c.plan,
            s.c.simulator,
            s.c.started_at,
            s.c.ended_at,
            s.c.end_reason,
            d.c.info.label("device_info"),
            p.c.pseudonym,
        ).select_from(s.join(p, s.c.patient_id == p.c.id).outerjoin(d, s.c.device_id == d.c.id))

    def _session_info(self, row: Row[Any], ratings: tuple[PainRating, ...]) -> SessionInfo:
        return SessionInfo(
            uid=str(row.uid),
            patient=str(row.pseudonym),
            plan=SessionPlan.model_validate_json(row.plan),
            device=None
            if row.device_info is None
            else DeviceInfo.model_validate_json(row.device_info),
            simulator=bool(row.simulator),
            started_at=parse_utc(row.started_at),
            ended_at=None if row.ended_at is None else parse_utc(row.ended_at),
            end_reason=None if row.end_reason is None else EndReason(row.end_reason),
            ratings=ratings,
        )

    def session(self, session: str) -> SessionInfo:
        with self._reading() as conn:
            ref = self._session_ref(conn, session)
            row = conn.execute(self._session_query().where(schema.sessions.c.id == ref.id)).one()
            pseudonym = str(row.pseudonym)
            ratings = tuple(
                r
                for r in self._records(schema.pain_ratings, pseudonym, session=session, conn=conn)
                if isinstance(r, PainRating)
            )
            return self._session_info(row, ratings)

    def sessions(
        self,
        patient: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        with_ratings: bool = True,
    ) -> list[SessionInfo]:
        """Sessions started in [since, until), in start order, each with its linked ratings."""
        s = schema.sessions.c
        with self._reading() as conn:
            pref = self._patient_ref(conn, patient)
            query = self._session_query().where(s.patient_id == pref.id)
            if since is not None:
                query = query.where(s.started_at >= iso_utc(since))
            if until is not None:
                query = query.where(s.started_at < iso_utc(until))
            rows = conn.execute(query.order_by(s.started_at, s.id)).all()
            by_session: dict[str, list[PainRating]] = {}
            if with_ratings and rows:
                r = schema.pain_ratings
                rating_rows = conn.execute(
                    select(r, schema.sessions.c.uid.label("session_uid"))
                    .select_from(r.join(schema.sessions, r.c.session_id == schema.sessions.c.id))
                    .where(r.c.patient_id == pref.id)
                    .where(
                        *(
                            [schema.sessions.c.started_at >= iso_utc(since)]
                            if since is not None
                            else []
                        ),
                        *(
                            [schema.sessions.c.started_at < iso_utc(until)]
                            if until is not None
                            else []
                        ),
                    )
                    .order_by(r.c.at, r.c.id)
                ).mappings()
                for rating_row in rating_rows:
                    rating = from_row("pain_ratings", rating_row, rating_row["session_uid"])
                    assert isinstance(rating, PainRating)
                    by_session.setdefault(str(rating_row["session_uid"]), []).append(rating)
        return [self._session_info(row, tuple(by_session.get(str(row.uid), ()))) for row in rows]

    @staticmethod
    def _day_bounds(day: date, tz: tzinfo | None) -> tuple[datetime, datetime]:
        zone = tz if tz is not None else datetime.now().astimezone().tzinfo
        start = datetime.combine(day, time(0), tzinfo=zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        return start, end

    def _today(self, tz: tzinfo | None) -> date:
        now = self._wall()
        return now.astimezone(tz).date() if tz is not None else now.astimezone().date()

    def sessions_on(
        self, day: date | None = None, *, patient: str | None = None, tz: tzinfo | None = None
    ) -> list[SessionInfo]:
        """Sessions started on ``day`` (default today) in time zone ``tz`` (default local)."""
        start, end = self._day_bounds(day or self._today(tz), tz)
        return self.sessions(patient, since=start, until=end, with_ratings=False)

    def sessions_today(
        self, patient: str | None = None, *, day: date | None = None, tz: tzinfo | None = None
    ) -> int:
        """How many sessions started on ``day`` (default today, local time) -- every started
        session counts, whatever its end, for the daily limit."""
        return len(self.sessions_on(day, patient=patient, tz=tz))

    def minutes_today(
        self, patient: str | None = None, *, day: date | None = None, tz: tzinfo | None = None
    ) -> float:
        """Minutes of stimulation sessions started on ``day`` (start to end; a session without
        an end counts up to now)."""
        now = self._wall()
        total = 0.0
        for info in self.sessions_on(day, patient=patient, tz=tz):
            end = info.ended_at or now
            total += max(0.0, (end - info.started_at).total_seconds() / 60)
        return total

    def last_session(self, patient: str | None = None) -> SessionInfo | None:
        """The most recently started session (for the minimum gap between sessions)."""
        s = schema.sessions.c
        with self._reading() as conn:
            pref = self._patient_ref(conn, patient)
            row = conn.execute(
                self._session_query()
                .where(s.patient_id == pref.id)
                .order_by(s.started_at.desc(), s.id.desc())
                .limit(1)
            ).first()
        return None if row is None else self._session_info(row, ())

    def events(
        self,
        patient: str | None = None,
        *,
        session: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[StoredEvent]:
        """Events of a patient (all chains) or of one session, in time then chain order."""
        e, c, s = schema.events, schema.chains, schema.sessions
        query = select(
            e.c.id,
            c.c.uid.label("chain_uid"),
            e.c.seq,
            s.c.uid.label("session_uid"),
            e.c.wall_time,
            e.c.mono_time,
            e.c.kind,
            e.c.payload,
            e.c.prev_hash,
            e.c.hash,
        ).select_from(e.join(c, e.c.chain_id == c.c.id).outerjoin(s, e.c.session_id == s.c.id))
        with self._reading() as conn:
            if session is not None:
                query = query.where(e.c.session_id == self._session_ref(conn, session).id)
            else:
                query = query.where(c.c.patient_id == self._patient_ref(conn, patient).id)
            if since is not None:
                query = query.where(e.c.wall_time >= iso_utc(since))
            if until is not None:
                query = query.where(e.c.wall_time < iso_utc(until))
            if kinds is not None:
                query = query.where(e.c.kind.in_(list(kinds)))
            rows = conn.execute(query.order_by(e.c.wall_time, e.c.chain_id, e.c.seq)).all()
        return [
            StoredEvent(
                id=int(r.id),
                chain=str(r.chain_uid),
                seq=int(r.seq),
                session=r.session_uid,
                wall_time=parse_utc(r.wall_time),
                mono_time=r.mono_time,
                kind=str(r.kind),
                payload=verify_mod.parse_payload(r.payload),
                prev_hash=str(r.prev_hash),
                hash=str(r.hash),
            )
            for r in rows
        ]

    def telemetry(self, session: str) -> list[Telemetry]:
        """A session's committed telemetry, in arrival order."""
        t = schema.telemetry.c
        with self._reading() as conn:
            ref = self._session_ref(conn, session)
            rows = conn.execute(
                select(t.t, t.channel, t.set_ma, t.measured_ma, t.impedance_ohm)
                .where(t.session_id == ref.id)
                .order_by(t.id)
            ).all()
        return [Telemetry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # ------------------------------------------------------------------ crash recovery
    def recover_unfinished_sessions(self) -> list[str]:
        """Close every session left without an end by a process that is gone: seal its
        unsealed telemetry, end it as ``host_crash`` at the time of its last event, and log
        that. Skipped (returns []) while another live process holds the database. Returns the
        ids of the sessions closed."""
        self._check_writable()
        if not self._liveness.try_exclusive():
            log.info("another tens-control process is using %s; not recovering", self.path)
            return []
        closed: list[str] = []
        try:
            s, e, t = schema.sessions.c, schema.events.c, schema.telemetry.c
            with self._reading() as conn:
                open_rows = conn.execute(
                    select(s.id, s.uid, s.patient_id, s.started_at, s.started_mono).where(
                        s.ended_at.is_(None)
                    )
                ).all()
            for row in open_rows:
                uid = str(row.uid)
                if uid in self._active:
                    continue
                with self._transaction() as conn:
                    last = conn.execute(
                        select(e.wall_time, e.mono_time)
                        .where(e.session_id == row.id)
                        .order_by(e.id.desc())
                        .limit(1)
                    ).first()
                    ended_at = str(last.wall_time) if last is not None else str(row.started_at)
                    ended_mono = last.mono_time if last is not None else row.started_mono
                    sealed = {
                        int(ev.record.segment)
                        for ev in self._session_events(conn, int(row.id), "telemetry_sealed")
                        if isinstance(ev.record, TelemetrySealed)
                    }
                    segments = conn.execute(
                        select(t.segment).where(t.session_id == row.id).distinct()
                    ).scalars()
                    for segment in sorted(int(x) for x in segments if int(x) not in sealed):
                        data = conn.execute(
                            select(t.t, t.channel, t.set_ma, t.measured_ma, t.impedance_ohm)
                            .where(t.session_id == row.id, t.segment == segment)
                            .order_by(t.id)
                        ).all()
                        digest = TelemetryDigest()
                        digest.update([tuple(r) for r in data])
                        seal = TelemetrySealed(
                            session=uid,
                            segment=segment,
                            count=digest.count,
                            digest=digest.hexdigest(),
                            t_first=data[0][0] if data else None,
                            t_last=data[-1][0] if data else None,
                            recovered=True,
                        )
                        self._append(conn, int(row.patient_id), int(row.id), seal)
                    conn.execute(
                        update(schema.sessions)
                        .where(s.id == row.id)
                        .values(
                            ended_at=ended_at,
                            ended_mono=ended_mono,
                            end_reason=EndReason.HOST_CRASH.value,
                        )
                    )
                    amplitude.refresh(conn, [int(row.id)])
                    record = SessionEnded(
                        session=uid,
                        ended_at=parse_utc(ended_at),
                        reason=EndReason.HOST_CRASH,
                        recovered=True,
                        detail="closed at the next start: the program stopped without ending "
                        "the session; end time is that of its last logged event",
                    )
                    self._append(conn, int(row.patient_id), int(row.id), record)
                log.warning("session %s closed as host crash at %s", uid, ended_at)
                closed.append(uid)
        finally:
            self._liveness.shared()
        return closed

    def _session_events(self, conn: Connection, session_id: int, kind: str) -> list[StoredEvent]:
        e = schema.events.c
        rows = conn.execute(
            select(e.id, e.seq, e.wall_time, e.mono_time, e.kind, e.payload, e.prev_hash, e.hash)
            .where(e.session_id == session_id, e.kind == kind)
            .order_by(e.id)
        ).all()
        return [
            StoredEvent(
                id=int(r.id),
                chain="",
                seq=int(r.seq),
                session=None,
                wall_time=parse_utc(r.wall_time),
                mono_time=r.mono_time,
                kind=str(r.kind),
                payload=verify_mod.parse_payload(r.payload),
                prev_hash=str(r.prev_hash),
                hash=str(r.hash),
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ verify / export
    def integrity_check(self) -> str:
        """SQLite's own ``PRAGMA quick_check``: "ok" or the first problems found."""
        with self._reading() as conn:
            rows = conn.exec_driver_sql("PRAGMA quick_check(5)").scalars().all()
        return "; ".join(str(r) for r in rows)

    def verify(self) -> VerifyReport:
        """Walk every chain and check every table against it; see ``verify.py``."""
        self.flush()
        with self._reading() as conn:
            return bundle_mod.verify_database(conn, str(self.path))

    def damage(self, report: VerifyReport, patient: str | None = None) -> Damage | None:
        """What a report on ``patient`` must say and mark after ``report`` (a ``verify()``):
        None when the log is intact (see ``verify.Damage``)."""
        if report.ok:
            return None
        e, s = schema.events.c, schema.sessions.c
        with self._reading() as conn:
            pref = self._patient_ref(conn, patient)
            spans = {
                str(r.uid): (
                    parse_utc(r.started_at),
                    None if r.ended_at is None else parse_utc(r.ended_at),
                )
                for r in conn.execute(
                    select(s.uid, s.started_at, s.ended_at).where(s.patient_id == pref.id)
                )
            }
            event_times = {
                int(r.id): parse_utc(r.wall_time)
                for r in conn.execute(
                    select(e.id, e.wall_time).where(
                        e.id.in_([p.row_id for p in report.problems if p.row_id is not None])
                    )
                )
            }
            record_times: dict[str, datetime] = {}
            for table in schema.RECORD_TABLES:
                uids = [p.record for p in report.problems if p.table == table.name and p.record]
                column = next(table.c[n] for n in ("at", "start", "created_at") if n in table.c)
                for r in conn.execute(select(table.c.uid, column).where(table.c.uid.in_(uids))):
                    try:
                        record_times[str(r[0])] = parse_utc(str(r[1]))
                    except ValueError:
                        continue

        def when(problem: Problem) -> datetime | None:
            if problem.session in spans:
                return spans[problem.session][0]
            if problem.record in record_times:
                return record_times[problem.record]
            if problem.table == "events" and problem.row_id in event_times:
                return event_times[problem.row_id]
            return None

        return damage_of(report, spans, when)

    def refresh_derived(self) -> int:
        """Recompute every ended session's derived amplitude figures from the log (for tools
        that wrote sessions in bulk, and to repair edited figures); returns how many sessions
        have figures."""
        with self._transaction() as conn:
            ended = [
                int(x)
                for x in conn.execute(
                    select(schema.sessions.c.id).where(schema.sessions.c.ended_at.is_not(None))
                ).scalars()
            ]
            amplitude.refresh(conn, ended)
            return int(
                conn.execute(
                    select(func.count()).where(schema.sessions.c.max_amplitude_ma.is_not(None))
                ).scalar_one()
            )

    def record_problem(self, record: ClinicalRecord) -> str | None:
        """What is wrong with this stored record as the log has it (see
        ``bundle.logged_record_problem``: its row against its log record, that record's hash
        and links), as a phrase, or None when it is as saved. For the checks before a session;
        ``verify`` checks everything."""
        with self._reading() as conn:
            return bundle_mod.logged_record_problem(conn, TABLE_OF[type(record)].name, record.uid)

    def export_patient(
        self, patient: str | None = None, *, telemetry: bool = True
    ) -> dict[str, Any]:
        """Everything of one patient as a self-verifying bundle (see ``bundle.py``);
        ``telemetry=False`` leaves the (large) telemetry out."""
        self.flush()
        with self._reading() as conn:
            pref = self._patient_ref(conn, patient)
            return bundle_mod.export_patient(conn, pref.id, telemetry=telemetry)

    def import_bundle(
        self, bundle: Mapping[str, Any], *, pseudonym: str | None = None
    ) -> ImportResult:
        """Verify a bundle, then add what this database lacks (idempotent). Refuses a tampered
        bundle, naming its first broken record (:class:`BundleError`), and a bundle that does not
        extend the history an earlier import of the patient received (the clinic anchor,
        :class:`RewrittenHistoryError`): that bundle is kept aside, next to the database in
        ``<database>.rewritten/``, for the clinician to compare; nothing is imported."""
        try:
            return self._import(bundle, pseudonym)
        except RewrittenHistoryError as error:
            kept = self._keep_aside(bundle)
            raise RewrittenHistoryError(
                f"the bundle was not imported: {error}; it was kept aside as {kept} for you to "
                "compare, and nothing in the database was changed. Ask the patient what happened"
            ) from None

    def _keep_aside(self, bundle: Mapping[str, Any]) -> Path:
        folder = self.path.with_name(self.path.name + ".rewritten")
        folder.mkdir(mode=0o700, exist_ok=True)
        name = str(bundle.get("patient", {}).get("pseudonym", "patient"))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = folder / f"{name}-{stamp}-{str(bundle.get('digest', ''))[:8]}.json"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            json.dump(bundle, fp, ensure_ascii=False, indent=1, sort_keys=True)
        return target

    def _import(self, bundle: Mapping[str, Any], pseudonym: str | None) -> ImportResult:
        with self._transaction() as conn:
            name, added = bundle_mod.import_bundle(conn, bundle, pseudonym=pseudonym)
            # derived figures of every session of the bundle (new ones, and ones it ended)
            s = schema.sessions.c
            uids = [str(x["uid"]) for x in bundle["sessions"]]
            ids: list[int] = []
            for i in range(0, len(uids), 500):
                ids.extend(
                    int(x)
                    for x in conn.execute(
                        select(s.id).where(s.uid.in_(uids[i : i + 500]))
                    ).scalars()
                )
            amplitude.refresh(conn, ids)
        self._patients.clear()
        self._sessions.clear()
        return ImportResult(name, added)

    # ------------------------------------------------------------------ deletion
    def delete_patient(self, patient: str) -> DeleteResult:
        """Remove every row of this patient (sessions, events, telemetry, records, chains,
        devices used by no one else). Deleted content is overwritten (``secure_delete``) and
        the WAL is truncated. Refused while another process may be running a session."""
        self._check_writable()
        if self._liveness.mode == "exclusive":
            got = True
        else:
            self._liveness.release()
            got = self._liveness.try_exclusive()
        if not got:
            self._liveness.shared()
            raise StoreBusyError(
                f"another tens-control process is using {self.path}; close it and try again"
            )
        try:
            deleted: dict[str, int] = {}
            with self._transaction() as conn:
                pref = self._patient_ref(conn, patient)
                active = [
                    s
                    for s in self._active
                    if s in self._sessions and self._sessions[s].patient_id == pref.id
                ]
                if active:
                    raise StoreBusyError(f"patient {patient} has a session running; end it first")
                session_ids = select(schema.sessions.c.id).where(
                    schema.sessions.c.patient_id == pref.id
                )
                chain_ids = select(schema.chains.c.id).where(schema.chains.c.patient_id == pref.id)
                device_ids = [
                    int(d)
                    for d in conn.execute(
                        select(schema.sessions.c.device_id)
                        .where(schema.sessions.c.patient_id == pref.id)
                        .distinct()
                    ).scalars()
                    if d is not None
                ]
                deleted["telemetry"] = conn.execute(
                    delete(schema.telemetry).where(schema.telemetry.c.session_id.in_(session_ids))
                ).rowcount
                deleted["events"] = conn.execute(
                    delete(schema.events).where(schema.events.c.chain_id.in_(chain_ids))
                ).rowcount
                for table in schema.PATIENT_TABLES:
                    deleted[table.name] = conn.execute(
                        delete(table).where(table.c.patient_id == pref.id)
                    ).rowcount
                deleted["patients"] = conn.execute(
                    delete(schema.patients).where(schema.patients.c.id == pref.id)
                ).rowcount
                for device_id in device_ids:
                    used = conn.execute(
                        select(func.count())
                        .select_from(schema.sessions)
                        .where(schema.sessions.c.device_id == device_id)
                    ).scalar()
                    if not used:
                        conn.execute(delete(schema.devices).where(schema.devices.c.id == device_id))
            self._patients.clear()
            self._sessions = {k: v for k, v in self._sessions.items() if v.patient_id != pref.id}
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            log.info("patient %s deleted", patient)
            return DeleteResult(patient, deleted)
        finally:
            self._liveness.shared()
