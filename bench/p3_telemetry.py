"""P3: telemetry samples persisted per second (DESIGN.md §10), against raw sqlite3.

Both sides get the same rows -- a 10 Hz, two-channel read-back stream (set current, measured
current, impedance) -- into a fresh database file with the same settings (WAL,
``synchronous=FULL``: every commit is on disk), the same table and index, committed in batches
of the same size:

* **store**: ``Store.telemetry_writer(session)`` on a real clock (its background flusher), each
  sample handed over one at a time with ``writer.add(sample)`` as the driver's report handler
  does, then ``writer.close()``, which commits what is left and seals the segment. Every
  ``SEAL_ROWS`` rows a segment is sealed: its SHA-256 digest goes into the patient's hash chain.
  Timed from the first ``add`` to ``close()`` returning (everything on disk and sealed);
* **raw**: ``sqlite3`` ``executemany`` of the same 7-tuples, one transaction per batch.

The runs alternate (store, raw, store, raw, ...) so that both see the same machine; the ratio is
taken per pair. Targets: >= 100,000 samples/s and >= 0.5x raw. Run:
``python bench/p3_telemetry.py``.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import Figure, Stats

from drivers.base import Telemetry
from drivers.clock import RealClock
from tens_control.store import Store
from tens_control.store.records import SessionPlan
from tens_control.store.telemetry import BATCH_ROWS, SEAL_ROWS

SAMPLES = 200_000
RUNS = 5
QUICK_SAMPLES = 5_000
QUICK_RUNS = 2
MANY_CHUNK = 1000

RAW_SCHEMA = """
CREATE TABLE telemetry (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    t FLOAT NOT NULL,
    channel INTEGER NOT NULL,
    set_ma FLOAT NOT NULL,
    measured_ma FLOAT,
    impedance_ohm FLOAT
);
CREATE INDEX ix_telemetry_session_segment ON telemetry (session_id, segment);
"""
RAW_INSERT = (
    "INSERT INTO telemetry (session_id, segment, t, channel, set_ma, measured_ma, impedance_ohm) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def samples(count: int) -> list[Telemetry]:
    """A deterministic 10 Hz two-channel stream."""
    out: list[Telemetry] = []
    for i in range(count):
        tick, channel = divmod(i, 2)
        set_ma = float(10 + (tick // 50) % 20)
        out.append(
            Telemetry(
                time=tick * 0.1,
                channel=channel + 1,
                set_ma=set_ma,
                measured_ma=set_ma * (1.0 + ((i * 7919) % 200 - 100) / 10_000.0),
                impedance_ohm=900.0 + (i * 104_729) % 300,
            )
        )
    return out


def store_run(path: Path, data: list[Telemetry], chunk: int = 1) -> float:
    """Samples per second through the store's batch writer: ``add()`` one at a time (as the
    driver's report handler does) or, with ``chunk`` > 1, ``add_many()`` in chunks."""
    clock = RealClock()
    try:
        with Store.open(path, clock=clock) as store:
            store.ensure_patient()
            session = store.begin_session(SessionPlan(program="bench", planned_minutes=60))
            writer = store.telemetry_writer(session)
            add = writer.add
            start = time.perf_counter()
            if chunk == 1:
                for sample in data:
                    add(sample)
            else:
                for first in range(0, len(data), chunk):
                    writer.add_many(data[first : first + chunk])
            writer.close()
            elapsed = time.perf_counter() - start
            if writer.committed != len(data):
                raise RuntimeError(f"the store committed {writer.committed} of {len(data)} rows")
    finally:
        clock.close()
    return len(data) / elapsed


def raw_run(path: Path, data: list[Telemetry]) -> float:
    rows = [(1, 1, s.time, s.channel, s.set_ma, s.measured_ma, s.impedance_ohm) for s in data]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(RAW_SCHEMA)
        start = time.perf_counter()
        for first in range(0, len(rows), BATCH_ROWS):
            conn.execute("BEGIN")
            conn.executemany(RAW_INSERT, rows[first : first + BATCH_ROWS])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        (count,) = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        if count != len(rows):
            raise RuntimeError(f"raw sqlite3 stored {count} of {len(rows)} rows")
    finally:
        conn.close()
    return len(rows) / elapsed


def figures(count: int, runs: int, workdir: Path) -> list[Figure]:
    data = samples(count)
    store_rates: list[float] = []
    raw_rates: list[float] = []
    many_rates: list[float] = []
    ratios: list[float] = []
    for run in range(runs):
        s = store_run(workdir / f"store-{run}.sqlite3", data)
        r = raw_run(workdir / f"raw-{run}.sqlite3", data)
        m = store_run(workdir / f"many-{run}.sqlite3", data, chunk=MANY_CHUNK)
        store_rates.append(s)
        raw_rates.append(r)
        many_rates.append(m)
        ratios.append(s / r)
    s_store = Stats.of(store_rates, higher_is_better=True)
    s_raw = Stats.of(raw_rates, higher_is_better=True)
    s_ratio = Stats.of(ratios, higher_is_better=True)
    s_many = Stats.of(many_rates, higher_is_better=True)
    detail = {"samples_per_run": count, "batch_rows": BATCH_ROWS, "seal_rows": SEAL_ROWS}
    return [
        Figure(
            "P3.store",
            "telemetry samples persisted per second (store batch writer, hash-chained)",
            s_store.median,
            "/s",
            100_000.0,
            ">=",
            s_store,
            detail,
        ),
        Figure(
            "P3.raw",
            "raw sqlite3 executemany of the same rows, same file settings",
            s_raw.median,
            "/s",
            None,
            "info",
            s_raw,
            detail,
        ),
        Figure(
            "P3.many",
            f"reference: the same through add_many() in chunks of {MANY_CHUNK}",
            s_many.median,
            "/s",
            None,
            "info",
            s_many,
            detail,
        ),
        Figure(
            "P3.ratio",
            "store / raw sqlite3, paired runs",
            s_ratio.median,
            "x",
            0.5,
            ">=",
            s_ratio,
            detail,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parser(__doc__ or "P3").parse_args(argv)
    count = QUICK_SAMPLES if args.quick else SAMPLES
    runs = QUICK_RUNS if args.quick else RUNS
    with tempfile.TemporaryDirectory(prefix="tens-bench-p3-") as tmp:
        figs = figures(count, runs, Path(tmp))
    benchlib.report("P3 telemetry samples persisted per second", figs, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
