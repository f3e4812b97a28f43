"""Generate the synthetic clinic database of P4, deterministically from a seed.

What is generated (every value drawn from ``random.Random(f"{seed}:...")``; even the record
uids, from a seeded UUID4 stream, so the same seed gives the same database content and the
same hash chains):

* ``--patients`` patients (default 100), pseudonyms ``P001`` ..., each with one prescription
  (conventional, burst and acupuncture-like programs, 30 min, 3 sessions a day, two channels
  on the residual limb / over a transected nerve) and the simulator as their device;
* ``--days`` days (default 365) from 2025-01-06, three session slots a day (about 08:00, 13:00
  and 19:00 UTC); each patient keeps a slot with their own adherence (70-98 %). A session is
  30 minutes (a few end early: lead-off, comms lost, device fault, stopped by the patient);
* per session: a *before* and an *after* NRS rating (about 5 % skipped, stored as missing),
  the session's start and end records, and amplitude changes on channel 1 (ramp up in two
  steps, one adjustment, 0 at the end) -- hash-chained log events like a real session's;
  about 2 % have a rejected request and 2 % a fault event;
* pain follows each patient's course: a baseline of 5-8 that falls by 0-60 % over the first
  months (responders and non-responders), with day-to-day noise; the relief of a session
  (before - after) is 0-3 points;
* a few diary entries per patient (medication changes; ketamine infusions and mirror therapy
  for some) and a few adverse events (mostly mild skin redness);
* telemetry, kept modest: the first session of each week stores 30 s of 10 Hz read-back on
  channel 1 (300 samples), sealed into the chain like any session's.

At the defaults (seed 1) that is 91,413 sessions, 182,826 ratings, 737,790 chained events and
1,325,400 telemetry rows (a 586 MB file). Everything goes through the store's public API (``Store``:
``begin_session``, ``append_event``, ``add_record``, ``telemetry_writer``, ``end_session``),
so the database passes ``tens-control verify``. It is written in a temporary directory (on
``/dev/shm`` when there is one: the store commits with ``synchronous=FULL`` and a disk would
spend most of the time syncing), then moved to ``OUT``.

Run: ``python bench/p4_generate.py OUT.sqlite3 [--seed 1] [--patients 100] [--days 365]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib

from drivers.base import ChannelSettings, DeviceInfo, DeviceLimits
from drivers.clock import VirtualClock
from tens_control.prescription import dump_prescription, prescription_from_dict
from tens_control.store import Store
from tens_control.store.canonical import (
    TelemetryDigest,
    TelemetryRow,
    canonical_json,
    chain_hash,
    event_body,
    iso_utc,
)
from tens_control.store.convert import to_row
from tens_control.store.records import (
    Actor,
    AdverseEvent,
    AdverseKind,
    AmplitudeChanged,
    ChannelPlan,
    DiaryEntry,
    DiaryKind,
    EndReason,
    Fault,
    LogRecord,
    PainContext,
    PainRated,
    PainRating,
    PainSite,
    RatingTime,
    Rejected,
    SessionEnded,
    SessionPlan,
    SessionStarted,
    Severity,
    TelemetrySealed,
    payload_of,
)
from tens_control.store.store import virtual_wall_clock

GENERATOR_VERSION = 1
"""Bump when what is generated changes: ``bench/p4_report.py`` caches databases by it."""
START = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)
"""Day 0 (a Monday)."""
SLOTS_H = (8.0, 13.0, 19.0)
SESSION_MIN = 30.0
PROGRAMS: dict[str, ChannelSettings] = {
    "conventional": ChannelSettings(frequency_hz=80, pulse_width_us=200),
    "burst": ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        pattern="burst",  # type: ignore[arg-type]
        secondary_hz=2,
        pulses_per_burst=7,
    ),
    "acupuncture-like": ChannelSettings(frequency_hz=4, pulse_width_us=250),
}
DEVICE = DeviceInfo(
    protocol="tsp",
    protocol_version="1.0",
    model="TENS-SIM",
    serial_number="SIM-0001",
    firmware="1.0",
    channels=2,
    limits=DeviceLimits(
        max_amplitude_ma=100,
        amplitude_step_ma=0.5,
        min_frequency_hz=1,
        max_frequency_hz=150,
        min_pulse_width_us=50,
        max_pulse_width_us=400,
    ),
    reports_current=True,
    reports_impedance=True,
    is_simulator=True,
)
EARLY_ENDS: tuple[tuple[EndReason, str | None, float], ...] = (
    (EndReason.LEAD_OFF, "lead_off", 0.006),
    (EndReason.COMMS_LOST, "comms_lost", 0.004),
    (EndReason.DEVICE_FAULT, "device_fault", 0.002),
    (EndReason.STOPPED_BY_USER, None, 0.02),
)
"""(end reason, fault logged, probability per session)."""


@dataclass
class Counts:
    sessions: int = 0
    ratings: int = 0
    events: int = 0
    telemetry: int = 0
    diary: int = 0
    adverse: int = 0


@contextmanager
def seeded_uids(seed: int) -> Iterator[None]:
    """Make ``uuid.uuid4`` (the store's uid source) a seeded stream while generating."""
    rng = random.Random(f"{seed}:uids")
    original = uuid.uuid4

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    uuid.uuid4 = uuid4
    try:
        yield
    finally:
        uuid.uuid4 = original


def prescription_toml(rng: random.Random) -> str:
    rx = prescription_from_dict(
        {
            "written_by": "Dr A. Example",
            "written_at": START - timedelta(days=3),
            "reason": "post-amputation pain",
            "programs": list(PROGRAMS),
            "max_amplitude_ma": float(rng.choice((30, 40, 50))),
            "session_minutes": int(SESSION_MIN),
            "sessions_per_day": 3,
            "habituation_prompt": False,
            "channels": [
                {"channel": 1, "site": "residual_limb", "side": "left", "pad": "5x5 cm"},
                {"channel": 2, "site": "transected_nerve", "side": "left", "pad": "5x5 cm"},
            ],
        }
    )
    return dump_prescription(rx)


class Chain:
    """One patient's session data, written in bulk with the store's own canonical helpers
    (``event_body``, ``chain_hash``, ``canonical_json``, ``payload_of``, ``convert.to_row``):
    the rows are exactly what ``Store`` writes, only many per transaction."""

    def __init__(self, conn: sqlite3.Connection, patient_id: int, next_session_id: int) -> None:
        self.conn = conn
        self.patient_id = patient_id
        row = conn.execute(
            "SELECT id, uid, head_seq, head_hash FROM chains WHERE patient_id = ?", (patient_id,)
        ).fetchone()
        if row is None:
            raise RuntimeError(
                "the patient has no chain (the store writes one with the first record)"
            )
        self.chain_id, self.chain_uid, self.seq, self.head = (
            int(row[0]),
            str(row[1]),
            int(row[2]),
            str(row[3]),
        )
        self.next_session_id = next_session_id
        self.sessions: list[list[Any]] = []
        self.events: list[tuple[Any, ...]] = []
        self.ratings: list[dict[str, Any]] = []
        self.telemetry: list[tuple[Any, ...]] = []
        self.uid_of: dict[int, str] = {}

    def append(self, session_id: int | None, record: LogRecord, at: datetime) -> None:
        wall = iso_utc(at)
        mono = (at - START).total_seconds()
        payload = payload_of(record)
        self.seq += 1
        body = event_body(
            chain=self.chain_uid,
            seq=self.seq,
            session=None if session_id is None else self.uid_of[session_id],
            wall_time=wall,
            mono_time=mono,
            kind=record.kind,
            payload=payload,
        )
        digest = chain_hash(self.head, body)
        self.events.append(
            (
                self.chain_id,
                self.seq,
                session_id,
                wall,
                mono,
                record.kind,
                canonical_json(payload),
                self.head,
                digest,
            )
        )
        self.head = digest

    def begin(self, plan: SessionPlan, device_id: int, at: datetime) -> int:
        sid = self.next_session_id
        self.next_session_id += 1
        uid = uuid.uuid4().hex
        self.uid_of[sid] = uid
        self.sessions.append(
            [
                sid,
                uid,
                self.patient_id,
                device_id,
                plan.program,
                canonical_json(plan.model_dump(mode="json")),
                plan.planned_minutes,
                plan.prescription_version,
                True,
                iso_utc(at),
                (at - START).total_seconds(),
                None,
                None,
                None,
            ]
        )
        self.append(
            sid,
            SessionStarted(session=uid, started_at=at, plan=plan, device=DEVICE, simulator=True),
            at,
        )
        return sid

    def end(self, sid: int, reason: EndReason, at: datetime) -> None:
        row = self.sessions[-1]
        assert row[0] == sid
        row[11], row[12], row[13] = iso_utc(at), (at - START).total_seconds(), reason.value
        self.append(sid, SessionEnded(session=self.uid_of[sid], ended_at=at, reason=reason), at)

    def rating(self, record: PainRating, sid: int | None) -> None:
        self.ratings.append(to_row(record, self.patient_id, sid))
        self.append(None, PainRated(record=record), record.at)

    def samples(self, sid: int, rows: list[TelemetryRow], at: datetime) -> None:
        digest = TelemetryDigest()
        digest.update(rows)
        self.telemetry.extend((sid, 1, *row) for row in rows)
        self.append(
            sid,
            TelemetrySealed(
                session=self.uid_of[sid],
                segment=1,
                count=digest.count,
                digest=digest.hexdigest(),
                t_first=rows[0][0],
                t_last=rows[-1][0],
            ),
            at,
        )

    def write(self) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO sessions (id, uid, patient_id, device_id, program, plan, "
            "planned_minutes, prescription_version, simulator, started_at, started_mono, "
            "ended_at, ended_mono, end_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [tuple(r) for r in self.sessions],
        )
        conn.executemany(
            "INSERT INTO events (chain_id, seq, session_id, wall_time, mono_time, kind, "
            "payload, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
            self.events,
        )
        if self.ratings:
            columns = list(self.ratings[0])
            conn.executemany(
                f"INSERT INTO pain_ratings ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                [tuple(r[c] for c in columns) for r in self.ratings],
            )
        conn.executemany(
            "INSERT INTO telemetry (session_id, segment, t, channel, set_ma, measured_ma, "
            "impedance_ohm) VALUES (?,?,?,?,?,?,?)",
            self.telemetry,
        )
        conn.execute(
            "UPDATE chains SET head_seq = ?, head_hash = ? WHERE id = ?",
            (self.seq, self.head, self.chain_id),
        )
        conn.execute("COMMIT")


class Generator:
    def __init__(self, path: Path, clock: VirtualClock, seed: int, days: int) -> None:
        self.path = path
        self.clock = clock
        self.seed = seed
        self.days = days
        self.counts = Counts()

    def at(self, moment: datetime) -> datetime:
        """Move the store's clock to ``moment`` (monotonic time follows the wall time)."""
        self.clock.run_until(max(self.clock.now(), (moment - START).total_seconds()))
        return moment

    def setup(self, store: Store, index: int) -> None:
        """Through the store's API: the patient, prescription, diary and adverse events."""
        rng = self.rng(index, "setup")
        name = f"P{index + 1:03d}"
        self.at(START - timedelta(days=3))
        store.ensure_patient(name)
        store.save_prescription(
            prescription_toml(rng), author="Dr A. Example", reason="first", patient=name
        )
        self.diary(store, rng, name)
        self.adverse(store, rng, name)

    def rng(self, index: int, what: str) -> random.Random:
        return random.Random(f"{self.seed}:patient:{index}:{what}")

    def sessions(self, chain: Chain, index: int, device_id: int) -> None:
        """In bulk: a year of sessions, ratings, events and telemetry."""
        rng = self.rng(index, "sessions")
        adherence = rng.uniform(0.70, 0.98)
        baseline = rng.uniform(5.0, 8.0)
        best_relief = rng.choice((0.0, 0.1, 0.3, 0.45, 0.6))
        months = rng.uniform(1.0, 4.0)
        target = rng.choice((12.0, 15.0, 18.0, 22.0))
        program = rng.choice(list(PROGRAMS))
        site = PainSite.PHANTOM if rng.random() < 0.75 else PainSite.RESIDUAL_LIMB
        for day in range(self.days):
            progress = min(1.0, day / (30.0 * months))
            mean_pain = baseline * (1.0 - best_relief * progress)
            for slot, hour in enumerate(SLOTS_H):
                if rng.random() >= adherence:
                    continue
                start = START + timedelta(days=day, hours=hour, minutes=rng.uniform(-40, 40))
                weekly = slot == 0 and day % 7 == 0
                self.session(chain, rng, start, mean_pain, target, program, site, weekly, device_id)

    def rating(
        self,
        chain: Chain,
        rng: random.Random,
        at: datetime,
        value: float,
        when: RatingTime,
        site: PainSite,
        sid: int | None,
    ) -> None:
        nrs = None if rng.random() < 0.05 else max(0, min(10, round(value)))
        record = PainRating(
            uid=uuid.uuid4().hex,
            at=at,
            nrs=nrs,
            when=when,
            pain=site,
            context=PainContext.REST,
            session=None if sid is None else chain.uid_of[sid],
        )
        chain.rating(record, sid)
        self.counts.ratings += 1
        self.counts.events += 1

    def session(
        self,
        chain: Chain,
        rng: random.Random,
        start: datetime,
        mean_pain: float,
        target: float,
        program: str,
        site: PainSite,
        telemetry: bool,
        device_id: int,
    ) -> None:
        before = mean_pain + rng.gauss(0.0, 0.8)
        self.rating(chain, rng, start - timedelta(minutes=2), before, RatingTime.BEFORE, site, None)
        plan = SessionPlan(
            program=program,
            channels=(
                ChannelPlan(
                    channel=1, settings=PROGRAMS[program], site="residual_limb", area_cm2=25.0
                ),
            ),
            planned_minutes=SESSION_MIN,
            prescription_version=1,
        )
        sid = chain.begin(plan, device_id, start)
        self.counts.sessions += 1
        self.counts.events += 1
        reason, fault = EndReason.COMPLETED, None
        draw = rng.random()
        for end_reason, end_fault, p in EARLY_ENDS:
            if draw < p:
                reason, fault = end_reason, end_fault
                break
            draw -= p
        minutes = SESSION_MIN if reason is EndReason.COMPLETED else rng.uniform(3.0, 25.0)
        end = start + timedelta(minutes=minutes)
        level = round(target + rng.choice((-2.0, -1.0, 0.0, 1.0, 2.0)))
        steps: list[tuple[float, float, float]] = [
            (0.5, 0.0, level / 2),
            (1.0, level / 2, level),
            (12.0, level, level - 1.0),
        ]
        for minute, from_ma, to_ma in steps:
            if minute >= minutes:
                break
            self.event(
                chain,
                sid,
                start + timedelta(minutes=minute),
                AmplitudeChanged(
                    time=0.0, channel=1, from_ma=from_ma, to_ma=to_ma, who=Actor.PATIENT
                ),
            )
        if rng.random() < 0.02:
            self.event(
                chain,
                sid,
                start + timedelta(minutes=min(minutes, 2.0)),
                Rejected(
                    time=0.0,
                    command="set_target",
                    parameter="amplitude",
                    value=level + 30.0,
                    limit=50.0,
                    source="prescription",
                    message="amplitude above the prescription cap; nothing was sent",
                ),
            )
        if fault is not None:
            self.event(chain, sid, end, Fault(fault=fault, channel=1, detail="synthetic"))
        last = level - 1.0 if minutes > 12.0 else level
        self.event(
            chain,
            sid,
            end,
            AmplitudeChanged(
                time=0.0, channel=1, from_ma=last, to_ma=0.0, who=Actor.SYSTEM, why="end"
            ),
        )
        if telemetry:
            t0 = (start - START).total_seconds() + 60.0
            rows: list[TelemetryRow] = [
                (
                    t0 + i * 0.1,
                    1,
                    float(level),
                    float(level) * (1.0 + ((i * 37) % 21 - 10) / 1000.0),
                    950.0 + (i * 13) % 100,
                )
                for i in range(300)
            ]
            chain.samples(sid, rows, end)
            self.counts.telemetry += len(rows)
            self.counts.events += 1
        chain.end(sid, reason, end)
        self.counts.events += 1
        relief = rng.uniform(0.0, 3.0) if reason is EndReason.COMPLETED else rng.uniform(0, 1)
        after = before - relief
        self.rating(chain, rng, end + timedelta(minutes=2), after, RatingTime.AFTER, site, sid)

    def event(
        self, chain: Chain, sid: int, at: datetime, record: AmplitudeChanged | Rejected | Fault
    ) -> None:
        chain.append(sid, record, at)
        self.counts.events += 1

    def diary(self, store: Store, rng: random.Random, name: str) -> None:
        entries: list[tuple[int, DiaryKind, int]] = []
        for _ in range(rng.randint(0, 3)):
            entries.append((rng.randrange(self.days), DiaryKind.MEDICATION_CHANGE, 0))
        if rng.random() < 0.15:
            entries.append((rng.randrange(self.days), DiaryKind.KETAMINE_INFUSION, 5))
        if rng.random() < 0.2:
            first = rng.randrange(self.days)
            entries.append((first, DiaryKind.MIRROR_THERAPY, min(42, self.days - first - 1)))
        for day, kind, length in sorted(entries):
            at = START + timedelta(days=day, hours=10)
            store.add_record(
                DiaryEntry(
                    kind=kind,
                    start=at,
                    end=at + timedelta(days=length) if length else None,
                    notes=f"synthetic {kind.value}",
                ),
                patient=name,
            )
            self.counts.diary += 1
            self.counts.events += 1

    def adverse(self, store: Store, rng: random.Random, name: str) -> None:
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            at = START + timedelta(days=rng.randrange(self.days), hours=20)
            kind = rng.choice((AdverseKind.SKIN_REDNESS,) * 4 + (AdverseKind.HEADACHE,))
            store.add_record(
                AdverseEvent(at=at, kind=kind, severity=Severity.MILD, notes="synthetic"),
                patient=name,
            )
            self.counts.adverse += 1
            self.counts.events += 1


def scratch_dir() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def generate(
    out: Path,
    *,
    seed: int = 1,
    patients: int = 100,
    days: int = 365,
    progress: Callable[[str], None] | None = None,
) -> Counts:
    """Write the synthetic clinic database to ``out`` (which must not exist); verify it."""
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tens-p4-", dir=scratch_dir()) as tmp:
        path = Path(tmp) / "clinic.sqlite3"
        clock = VirtualClock(start=-10 * 86400.0)
        wall = virtual_wall_clock(clock, START)
        with seeded_uids(seed):
            gen = Generator(path, clock, seed, days)
            with Store.open(path, clock=clock, wall=wall, patient="P001") as store:
                for index in range(patients):
                    gen.setup(store, index)
                device_id = store.record_device(DEVICE)
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
                next_id = 1
                for index in range(patients):
                    (pid,) = conn.execute(
                        "SELECT id FROM patients WHERE pseudonym = ?", (f"P{index + 1:03d}",)
                    ).fetchone()
                    chain = Chain(conn, int(pid), next_id)
                    gen.sessions(chain, index, device_id)
                    chain.write()
                    next_id = chain.next_session_id
                    if progress is not None and (index + 1) % 10 == 0:
                        elapsed = time.perf_counter() - started
                        progress(f"{index + 1}/{patients} patients ({elapsed:.0f} s)")
                conn.execute("ANALYZE")
            finally:
                conn.close()
        if progress is not None:
            progress("verifying the hash chains and telemetry seals (Store.verify)")
        with Store.open(path, create=False, recover=False) as store:
            store.refresh_derived()  # the bulk rows have no amplitude figures yet
            report = store.verify()
            if not report.ok:
                raise RuntimeError(f"the generated database does not verify: {report.problems[:3]}")
            if store.integrity_check() != "ok":
                raise RuntimeError("the generated database fails PRAGMA integrity_check")
        shutil.move(str(path), str(out))
    return gen.counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", type=Path, help="the database file to write (must not exist)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--patients", type=int, default=100)
    p.add_argument("--days", type=int, default=365)
    args = p.parse_args(argv)
    started = time.perf_counter()
    counts = generate(
        args.out,
        seed=args.seed,
        patients=args.patients,
        days=args.days,
        progress=benchlib.progress,
    )
    print(
        f"wrote {args.out}: {args.patients} patients x {args.days} days, "
        f"{counts.sessions} sessions, {counts.ratings} ratings, {counts.events} chained events, "
        f"{counts.telemetry} telemetry rows, {counts.diary} diary entries, "
        f"{counts.adverse} adverse events in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
