"""Verification of a whole database, and the self-verifying export bundle of one patient.

A bundle is one JSON object (see docs/data.md, "Export bundle"):

``format`` ("tens-control-bundle"), ``format_version`` (1), ``exported_at``, ``generator``,
``source`` (the exporting database's uid), ``patient`` (uid, pseudonym, created_at), ``chains``
(each with uid, origin, head_seq, head_hash and *every* event with its seq, prev_hash and hash),
``sessions``, ``records`` (table name -> records), ``telemetry`` (sealed segments with their rows),
``unsealed_rows`` and ``digest`` = SHA-256 of the canonical JSON of all the other keys.

The digest catches any change to the file; the chains (re-hashed from the bundle alone) and the
cross-checks name *which* record was edited, inserted or deleted.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, func, insert, select, update

import tens_control
from drivers.base import DeviceInfo
from tens_control.store import amplitude, schema
from tens_control.store.canonical import (
    GENESIS_HASH,
    TelemetryDigest,
    canonical_json,
    chain_hash,
    dotted,
    event_body,
    iso_utc,
    non_finite_at,
    parse_utc,
    telemetry_digest,
)
from tens_control.store.convert import MODEL_OF, from_row, has_session, to_row
from tens_control.store.database import insert_id
from tens_control.store.errors import BundleError, RewrittenHistoryError, StoreError
from tens_control.store.paths import check_pseudonym
from tens_control.store.records import (
    RECORD_KINDS,
    Odometer,
    SessionPlan,
    SessionStarted,
    parse_log_record,
    payload_of,
)
from tens_control.store.verify import (
    ChainHead,
    ChainInfo,
    ChainRow,
    ChainWalker,
    CrossChecker,
    OdometerFacts,
    Problem,
    RecordFacts,
    SegmentFacts,
    SessionFacts,
    VerifyReport,
    check_odometers,
    parse_payload,
)

FORMAT = "tens-control-bundle"
FORMAT_VERSION = 1

_CHUNK = 2_000


# --------------------------------------------------------------------------- helpers


def _session_started(
    uid: str,
    started_at: Any,
    plan: Any,
    device: Any,
    simulator: Any,
    odometer: Any = None,
) -> tuple[dict[str, Any] | None, str]:
    """A session row's start as a normalised ``session_started`` payload (or None, error)."""
    try:
        record = SessionStarted(
            session=uid,
            started_at=parse_utc(started_at),
            plan=SessionPlan.model_validate(plan),
            device=None if device is None else DeviceInfo.model_validate(device),
            simulator=simulator,
            odometer=None if odometer is None else Odometer.model_validate(odometer),
        )
    except (ValidationError, ValueError, TypeError) as error:
        return None, str(error).splitlines()[0]
    return payload_of(record), ""


def _record_facts(table: str, uid: str, patient: str, ref: str, build: Any) -> RecordFacts:
    try:
        record = build()
    except (ValidationError, ValueError, TypeError, KeyError) as error:
        return RecordFacts(table, uid, patient, ref, None, str(error).splitlines()[0])
    return RecordFacts(table, uid, patient, ref, record.model_dump(mode="json"))


def _json(text: Any) -> Any:
    return parse_payload(text)


# --------------------------------------------------------------------------- database


def verify_database(conn: Connection, source: str) -> VerifyReport:
    """Verify every chain and table of the database (inside a read transaction). Never raises
    for tampered content: what cannot be checked is reported as a problem."""
    report = VerifyReport(source)
    try:
        _verify_database(conn, report)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        report.add(
            Problem(
                "unreadable",
                "database",
                f"the log could not be checked to the end: {type(error).__name__}: {error}",
            )
        )
    return report


def _verify_database(conn: Connection, report: VerifyReport) -> None:
    checker = CrossChecker(report)
    p, c, e, s = schema.patients.c, schema.chains.c, schema.events.c, schema.sessions.c
    patients = {
        int(r.id): (str(r.uid), str(r.pseudonym))
        for r in conn.execute(select(p.id, p.uid, p.pseudonym))
    }
    session_uids = {int(r.id): str(r.uid) for r in conn.execute(select(s.id, s.uid))}
    chain_rows = conn.execute(
        select(c.id, c.uid, c.patient_id, c.origin, c.head_seq, c.head_hash).order_by(c.id)
    ).all()
    for chain in chain_rows:
        patient_uid, pseudonym = patients.get(chain.patient_id, ("?", "(deleted)"))
        head_seq = chain.head_seq if _is_int(chain.head_seq) else None
        info = ChainInfo(
            uid=str(chain.uid),
            patient=patient_uid,
            pseudonym=pseudonym,
            origin=str(chain.origin),
            head_seq=head_seq,
            head_hash=chain.head_hash if isinstance(chain.head_hash, str) else None,
        )
        report.chains += 1
        if head_seq is None or info.head_hash is None:
            report.add(
                Problem(
                    "edited",
                    "chains",
                    f"edited record: the recorded head of chain {info.label} is unreadable",
                    chain=info.uid,
                )
            )
        walker = ChainWalker(info, report, partial(checker.see_event, info))
        rows = conn.execute(
            select(
                e.id,
                e.seq,
                e.session_id,
                e.wall_time,
                e.mono_time,
                e.kind,
                e.payload,
                e.prev_hash,
                e.hash,
            )
            .where(e.chain_id == chain.id)
            .order_by(e.seq, e.id)
        )
        for r in rows:
            session_uid = _session_ref(r.session_id, session_uids)
            walker.feed(
                ChainRow(
                    row_id=int(r.id),
                    seq=r.seq,
                    session=session_uid,
                    wall_time=r.wall_time,
                    mono_time=r.mono_time,
                    kind=r.kind,
                    payload=_json(r.payload),
                    prev_hash=r.prev_hash,
                    hash=r.hash,
                    session_missing=isinstance(r.session_id, int) and session_uid is None,
                )
            )
        walker.finish()
        report.heads.append(
            ChainHead(pseudonym, info.uid, info.origin, head_seq or 0, str(chain.head_hash))
        )
    orphans = conn.execute(
        select(func.count(), func.min(e.id)).where(e.chain_id.not_in(select(c.id)))
    ).one()
    if orphans[0]:
        report.add(
            Problem(
                "deleted",
                "chains",
                f"deleted record: {orphans[0]} event(s) (first id {orphans[1]}) belong to a "
                "chain that no longer exists",
                row_id=int(orphans[1]),
            )
        )

    # sessions
    d = schema.devices.c
    devices = {int(r.id): _json(r.info) for r in conn.execute(select(d.id, d.info))}
    open_sessions: set[str] = set()
    odometers: list[OdometerFacts] = []
    derived: list[tuple[int, str, Any, Any]] = []
    for srow in conn.execute(select(schema.sessions).order_by(s.id)).mappings():
        uid = str(srow["uid"])
        if srow["ended_at"] is None:
            open_sessions.add(uid)
        device_id = srow["device_id"]
        device = None if device_id is None else devices.get(device_id, "missing")
        odometer = _odometer(srow["odometer_sessions"], srow["odometer_seconds"])
        started, error = _session_started(
            uid, srow["started_at"], _json(srow["plan"]), device, bool(srow["simulator"]), odometer
        )
        ended = (
            None if srow["ended_at"] is None else (str(srow["ended_at"]), str(srow["end_reason"]))
        )
        patient_uid = patients.get(srow["patient_id"], ("?", ""))[0]
        facts = SessionFacts(uid, patient_uid, f"id {srow['id']}", started, ended, error)
        checker.check_session(facts)
        if started is not None:
            _check_plan_columns(report, facts, srow, started["plan"])
            fact = _odometer_facts(uid, started, srow["ended_at"])
            if fact is not None:
                odometers.append(fact)
        if srow["ended_at"] is not None:
            derived.append(
                (int(srow["id"]), uid, srow["mean_amplitude_ma"], srow["max_amplitude_ma"])
            )
    _check_amplitudes(conn, report, derived)
    _check_device_columns(conn, report)
    check_odometers(report, odometers)

    # clinical records
    for table in schema.RECORD_TABLES:
        if has_session(table):
            query = select(table, s.uid.label("session_uid")).select_from(
                table.outerjoin(schema.sessions, table.c.session_id == s.id)
            )
        else:
            query = select(table)
        for rrow in conn.execute(query.order_by(table.c.id)).mappings():
            patient_uid = patients.get(rrow["patient_id"], ("?", ""))[0]
            checker.check_record(
                _record_facts(
                    table.name,
                    str(rrow["uid"]),
                    patient_uid,
                    f"id {rrow['id']}",
                    partial(from_row, table.name, rrow, rrow.get("session_uid")),
                )
            )

    # telemetry
    for session_id, segment, count, digest, first_id in _db_segments(conn):
        uid = session_uids.get(session_id, f"(missing session id {session_id})")
        checker.check_segment(
            SegmentFacts(uid, segment, count, digest, f"first row id {first_id}"),
            session_open=uid in open_sessions,
        )
    checker.finish()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _odometer(sessions: Any, seconds: Any) -> dict[str, Any] | None:
    if sessions is None and seconds is None:
        return None
    return {"sessions": sessions, "stimulation_s": seconds}


def _odometer_facts(uid: str, started: Mapping[str, Any], ended_at: Any) -> OdometerFacts | None:
    """A session's odometer as logged (``started``: its normalised ``session_started``)."""
    odometer, device = started.get("odometer"), started.get("device")
    if odometer is None or not isinstance(device, Mapping):
        return None
    return OdometerFacts(
        session=uid,
        device=f"device {device.get('model')} serial {device.get('serial_number')} "
        f"({device.get('protocol')})",
        started_at=str(started["started_at"]),
        ended_at=None if ended_at is None else str(ended_at),
        sessions=int(odometer["sessions"]),
        stimulation_s=float(odometer["stimulation_s"]),
    )


def _differs(stored: Any, expected: Any) -> bool:
    if stored is None or expected is None:
        return stored is not expected
    if isinstance(expected, float) or isinstance(stored, float):
        try:
            return not math.isclose(float(stored), float(expected), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return True
    return bool(stored != expected)


def _check_plan_columns(
    report: VerifyReport, facts: SessionFacts, row: Mapping[Any, Any], plan: Mapping[str, Any]
) -> None:
    """The session columns copied from its plan (the review reads them) against the plan."""
    for column, key in (
        ("program", "program"),
        ("planned_minutes", "planned_minutes"),
        ("prescription_version", "prescription_version"),
    ):
        if _differs(row[column], plan.get(key)):
            report.add(
                Problem(
                    "edited",
                    "sessions",
                    f"edited record: sessions.{column} of session {facts.uid} ({facts.ref}) is "
                    f"{row[column]!r}, but its logged plan says {plan.get(key)!r}",
                    session=facts.uid,
                )
            )


def _check_amplitudes(
    conn: Connection, report: VerifyReport, derived: list[tuple[int, str, Any, Any]]
) -> None:
    """Each ended session's stored amplitude figures against those computed from its log."""
    computed = amplitude.compute(conn, [sid for sid, _, _, _ in derived])
    for sid, uid, mean_ma, max_ma in derived:
        want_mean, want_max = computed.get(sid, (None, None))
        for column, stored, want in (
            ("max_amplitude_ma", max_ma, want_max),
            ("mean_amplitude_ma", mean_ma, want_mean),
        ):
            if _differs(stored, want):
                report.add(
                    Problem(
                        "edited",
                        "sessions",
                        f"edited record: sessions.{column} of session {uid} (id {sid}) is "
                        f"{stored!r}, but its logged amplitude changes give {want!r}",
                        session=uid,
                    )
                )


_DEVICE_COLUMNS = ("protocol", "protocol_version", "model", "serial_number", "firmware")


def _check_device_columns(conn: Connection, report: VerifyReport) -> None:
    """Each device row's columns against the identity it reported (``info``)."""
    for row in conn.execute(select(schema.devices)).mappings():
        info = _json(row["info"])
        if not isinstance(info, Mapping):
            continue  # an unreadable identity is reported with the sessions that use it
        expected = {k: info.get(k) for k in _DEVICE_COLUMNS}
        expected["is_simulator"] = info.get("is_simulator")
        for column, want in expected.items():
            stored = bool(row[column]) if column == "is_simulator" else row[column]
            if _differs(stored, want):
                report.add(
                    Problem(
                        "edited",
                        "devices",
                        f"edited record: devices.{column} of device id {row['id']} is "
                        f"{row[column]!r}, but the identity it reported says {want!r}",
                    )
                )


def _session_ref(session_id: Any, session_uids: dict[int, str]) -> str | None:
    """The session uid an event row names: None for none, the uid, None if that session is
    gone (flagged separately), or a marker that cannot hash right if the value is not an id."""
    if session_id is None:
        return None
    if not _is_int(session_id):
        return f"(not a session id: {session_id!r})"
    return session_uids.get(session_id)


def _db_segments(conn: Connection) -> Iterator[tuple[int, int, int, str, int]]:
    """(session_id, segment, count, digest, first row id) of every telemetry segment."""
    t = schema.telemetry.c
    rows = conn.execute(
        select(
            t.session_id,
            t.segment,
            t.id,
            t.t,
            t.channel,
            t.set_ma,
            t.measured_ma,
            t.impedance_ohm,
        ).order_by(t.session_id, t.segment, t.id)
    )
    key: tuple[int, int] | None = None
    digest = TelemetryDigest()
    chunk: list[tuple[Any, ...]] = []
    first_id = 0
    for r in rows:
        this = (r[0], r[1])
        if this != key:
            if key is not None:
                digest.update(chunk)
                yield key[0], key[1], digest.count, digest.hexdigest(), first_id
            key, digest, chunk, first_id = this, TelemetryDigest(), [], int(r[2])
        chunk.append((r[3], r[4], r[5], r[6], r[7]))
        if len(chunk) >= _CHUNK:
            digest.update(chunk)
            chunk = []
    if key is not None:
        digest.update(chunk)
        yield key[0], key[1], digest.count, digest.hexdigest(), first_id


# --------------------------------------------------------------------------- export


def bundle_digest(bundle: Mapping[str, Any]) -> str:
    content = {k: v for k, v in bundle.items() if k != "digest"}
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def export_patient(conn: Connection, patient_id: int, *, telemetry: bool = True) -> dict[str, Any]:
    """The bundle of one patient (inside a read transaction, so it is one consistent snapshot).
    ``telemetry=False`` leaves the telemetry out (``telemetry_included: false``); the seals in the
    chains still record what existed."""
    p, c, e, s = schema.patients.c, schema.chains.c, schema.events.c, schema.sessions.c
    patient = conn.execute(select(schema.patients).where(p.id == patient_id)).mappings().one()
    installation = conn.execute(
        select(schema.meta.c.value).where(schema.meta.c.key == "installation")
    ).scalar_one()
    session_uids = {
        int(r.id): str(r.uid)
        for r in conn.execute(select(s.id, s.uid).where(s.patient_id == patient_id))
    }
    chains_out: list[dict[str, Any]] = []
    sealed: set[tuple[str, int]] = set()
    for chain in conn.execute(
        select(schema.chains).where(c.patient_id == patient_id).order_by(c.id)
    ).mappings():
        events_out = []
        for r in conn.execute(
            select(schema.events).where(e.chain_id == chain["id"]).order_by(e.seq, e.id)
        ).mappings():
            payload = _json(r["payload"])
            if r["kind"] == "telemetry_sealed" and isinstance(payload, dict):
                sealed.add((str(payload.get("session")), int(payload.get("segment", 0))))
            events_out.append(
                {
                    "seq": r["seq"],
                    "session": None
                    if r["session_id"] is None
                    else session_uids.get(int(r["session_id"])),
                    "wall_time": r["wall_time"],
                    "mono_time": r["mono_time"],
                    "kind": r["kind"],
                    "payload": payload,
                    "prev_hash": r["prev_hash"],
                    "hash": r["hash"],
                }
            )
        chains_out.append(
            {
                "uid": chain["uid"],
                "origin": chain["origin"],
                "head_seq": chain["head_seq"],
                "head_hash": chain["head_hash"],
                "events": events_out,
            }
        )
    d = schema.devices.c
    sessions_out = []
    for r in conn.execute(
        select(schema.sessions, d.info.label("device_info"))
        .select_from(schema.sessions.outerjoin(schema.devices, s.device_id == d.id))
        .where(s.patient_id == patient_id)
        .order_by(s.id)
    ).mappings():
        sessions_out.append(
            {
                "uid": r["uid"],
                "plan": _json(r["plan"]),
                "device": None if r["device_info"] is None else _json(r["device_info"]),
                "simulator": bool(r["simulator"]),
                "started_at": r["started_at"],
                "started_mono": r["started_mono"],
                "ended_at": r["ended_at"],
                "ended_mono": r["ended_mono"],
                "end_reason": r["end_reason"],
                "odometer": _odometer(r["odometer_sessions"], r["odometer_seconds"]),
            }
        )
    records_out: dict[str, list[dict[str, Any]]] = {}
    for table in schema.RECORD_TABLES:
        if has_session(table):
            query = select(table, s.uid.label("session_uid")).select_from(
                table.outerjoin(schema.sessions, table.c.session_id == s.id)
            )
        else:
            query = select(table)
        rows = conn.execute(
            query.where(table.c.patient_id == patient_id).order_by(table.c.id)
        ).mappings()
        out = []
        for r in rows:
            try:
                out.append(from_row(table.name, r, r.get("session_uid")).model_dump(mode="json"))
            except (ValidationError, ValueError, TypeError) as error:
                raise StoreError(
                    f"{table.name} record {r['uid']} cannot be read ({error}); run "
                    "tens-control verify"
                ) from None
        records_out[table.name] = out
    telemetry_out = []
    unsealed = 0
    t = schema.telemetry.c
    by_id = {v: k for k, v in session_uids.items()}
    for uid in session_uids.values() if telemetry else ():
        current: tuple[int, list[list[Any]]] | None = None
        for trow in conn.execute(
            select(t.segment, t.t, t.channel, t.set_ma, t.measured_ma, t.impedance_ohm)
            .where(t.session_id == by_id[uid])
            .order_by(t.segment, t.id)
        ):
            if current is None or current[0] != trow[0]:
                if current is not None:
                    telemetry_out.append(_segment_out(uid, current, sealed))
                current = (int(trow[0]), [])
            current[1].append([trow[1], trow[2], trow[3], trow[4], trow[5]])
        if current is not None:
            telemetry_out.append(_segment_out(uid, current, sealed))
    kept = [seg for seg in telemetry_out if seg["sealed"]]
    unsealed = sum(len(seg["rows"]) for seg in telemetry_out if not seg["sealed"])
    for seg in kept:
        del seg["sealed"]
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": iso_utc(datetime.now(UTC)),
        "generator": f"tens-control {tens_control.__version__}",
        "source": installation,
        "patient": {
            "uid": patient["uid"],
            "pseudonym": patient["pseudonym"],
            "created_at": patient["created_at"],
        },
        "chains": chains_out,
        "sessions": sessions_out,
        "records": records_out,
        "telemetry_included": telemetry,
        "telemetry": kept,
        "unsealed_rows": unsealed,
    }
    bundle["digest"] = bundle_digest(bundle)
    return bundle


def _segment_out(
    uid: str, current: tuple[int, list[list[Any]]], sealed: set[tuple[str, int]]
) -> dict[str, Any]:
    segment, rows = current
    return {"session": uid, "segment": segment, "rows": rows, "sealed": (uid, segment) in sealed}


# --------------------------------------------------------------------------- bundle checks


def _structure(bundle: Any) -> None:
    if not isinstance(bundle, Mapping):
        raise BundleError("this is not a tens-control export bundle (not a JSON object)")
    if bundle.get("format") != FORMAT:
        raise BundleError(
            "this is not a tens-control export bundle (its 'format' is not "
            f"{FORMAT!r}); check the file"
        )
    version = bundle.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"this bundle has format version {version!r}; this tens-control reads up to "
            f"{FORMAT_VERSION}. Upgrade tens-control to import it"
        )
    required = {
        "patient": Mapping,
        "chains": list,
        "sessions": list,
        "records": Mapping,
        "telemetry": list,
        "digest": str,
    }
    for key, kind in required.items():
        if not isinstance(bundle.get(key), kind):
            raise BundleError(f"this bundle is malformed: {key!r} is missing or of the wrong type")


def _finite(bundle: Mapping[str, Any]) -> None:
    """Refuse a bundle holding NaN or Infinity (JSON without them is what the log hashes, and
    the store never writes one), naming the record that holds it."""
    found = non_finite_at(dict(bundle))
    if found is None:
        return
    path, value = found
    where = dotted(path)
    if len(path) >= 4 and path[0] == "chains" and path[2] == "events":
        chain = bundle["chains"][int(path[1])]
        event = chain["events"][int(path[3])]
        if isinstance(event, Mapping):
            field = dotted(path[4:]) or "the event"
            where = (
                f"event seq {event.get('seq')} ({event.get('kind')}) of chain "
                f"{str(chain.get('uid', '?'))[:8]}: its {field}"
            )
    elif len(path) >= 3 and path[0] == "records":
        row = bundle["records"][str(path[1])][int(path[2])]
        uid = row.get("uid") if isinstance(row, Mapping) else None
        where = f"{path[1]} record {path[2] if uid is None else uid}: its {dotted(path[3:])}"
    raise BundleError(
        f"this bundle is damaged: {where} is {value}, not a finite number (a tens-control log "
        "never holds NaN or Infinity, so the file was changed after export); ask for a fresh "
        "export from the original database"
    )


def verify_bundle(bundle: Mapping[str, Any]) -> VerifyReport:
    """Re-verify a bundle from its content alone: every chain re-hashed, every session, record
    and telemetry segment checked against its log record, and the digest recomputed.

    Raises :class:`BundleError` if it is not a bundle at all; otherwise returns a report whose
    first problem names the first broken record.
    """
    _structure(bundle)
    _finite(bundle)
    report = VerifyReport("bundle")
    checker = CrossChecker(report)
    try:
        patient = bundle["patient"]
        patient_uid, pseudonym = str(patient["uid"]), str(patient["pseudonym"])
        for chain in bundle["chains"]:
            info = ChainInfo(
                uid=str(chain["uid"]),
                patient=patient_uid,
                pseudonym=pseudonym,
                origin=str(chain["origin"]),
                head_seq=chain["head_seq"],
                head_hash=chain["head_hash"],
            )
            report.chains += 1
            walker = ChainWalker(info, report, partial(checker.see_event, info))
            for index, ev in enumerate(chain["events"]):
                walker.feed(
                    ChainRow(
                        row_id=index,
                        seq=ev.get("seq"),
                        session=ev.get("session"),
                        wall_time=ev.get("wall_time"),
                        mono_time=ev.get("mono_time"),
                        kind=ev.get("kind"),
                        payload=ev.get("payload"),
                        prev_hash=ev.get("prev_hash"),
                        hash=ev.get("hash"),
                    )
                )
            walker.finish()
        open_sessions: set[str] = set()
        odometers: list[OdometerFacts] = []
        for index, sess in enumerate(bundle["sessions"]):
            uid = str(sess["uid"])
            if sess.get("ended_at") is None:
                open_sessions.add(uid)
            started, error = _session_started(
                uid,
                sess.get("started_at"),
                sess.get("plan"),
                sess.get("device"),
                sess.get("simulator"),
                sess.get("odometer"),
            )
            ended = (
                None
                if sess.get("ended_at") is None
                else (str(sess["ended_at"]), str(sess.get("end_reason")))
            )
            checker.check_session(
                SessionFacts(uid, patient_uid, f"sessions[{index}]", started, ended, error)
            )
            fact = None if started is None else _odometer_facts(uid, started, sess.get("ended_at"))
            if fact is not None:
                odometers.append(fact)
        for table, rows in bundle["records"].items():
            model = MODEL_OF.get(str(table))
            if model is None:
                raise BundleError(f"this bundle is malformed: unknown record table {table!r}")
            for index, data in enumerate(rows):
                checker.check_record(
                    _record_facts(
                        str(table),
                        str(data.get("uid")),
                        patient_uid,
                        f"records.{table}[{index}]",
                        partial(model.model_validate, data),
                    )
                )
        for index, seg in enumerate(bundle["telemetry"]):
            rows = seg["rows"]
            try:
                digest = telemetry_digest(rows)
            except (struct.error, TypeError, ValueError):
                raise BundleError(
                    f"this bundle is malformed: telemetry[{index}] holds a value that is not "
                    "a number; export the patient again from the original database"
                ) from None
            checker.check_segment(
                SegmentFacts(
                    str(seg["session"]),
                    int(seg["segment"]),
                    len(rows),
                    digest,
                    f"telemetry[{index}]",
                ),
                session_open=str(seg["session"]) in open_sessions,
            )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise BundleError(f"this bundle is malformed ({type(error).__name__}: {error})") from None
    checker.finish(telemetry_present=bundle.get("telemetry_included", True) is not False)
    check_odometers(report, odometers)
    if bundle_digest(bundle) != bundle["digest"]:
        report.add(
            Problem(
                "edited",
                "bundle",
                "edited record: the bundle's digest does not match its content (the file was "
                "changed after export)",
            )
        )
    return report


# --------------------------------------------------------------------------- import


def import_bundle(
    conn: Connection, bundle: Mapping[str, Any], *, pseudonym: str | None
) -> tuple[str, dict[str, int]]:
    """Add what the database lacks of a verified bundle (inside a write transaction).

    Idempotent: importing the same bundle twice adds nothing the second time; importing a
    later export of the same patient adds only what is new. Returns (pseudonym, counts added).
    """
    report = verify_bundle(bundle)
    broken = tampering(report)
    if broken:
        raise BundleError(f"the bundle was not imported: {broken[0]}")
    if bundle.get("telemetry_included", True) is False:
        raise BundleError(
            "the bundle was not imported: it was exported without telemetry (--no-telemetry), "
            "so the log's telemetry seals would have nothing to check; export it with telemetry "
            "to import it"
        )
    added = {"patients": 0, "sessions": 0, "events": 0, "records": 0, "telemetry": 0}
    p, s, c, e = schema.patients.c, schema.sessions.c, schema.chains.c, schema.events.c
    src = bundle["patient"]
    row = conn.execute(select(p.id, p.pseudonym).where(p.uid == src["uid"])).first()
    if row is None:
        name = pseudonym or str(src["pseudonym"])
        try:
            check_pseudonym(name)
        except ValueError as error:
            raise BundleError(str(error)) from None
        if conn.execute(select(p.id).where(p.pseudonym == name)).first() is not None:
            raise BundleError(
                f"the pseudonym {name!r} already belongs to another patient in this database; "
                "import the bundle under another pseudonym"
            )
        patient_id = int(
            insert_id(
                conn.execute(
                    insert(schema.patients).values(
                        uid=src["uid"], pseudonym=name, created_at=src["created_at"]
                    )
                )
            )
        )
        added["patients"] = 1
    else:
        patient_id, name = int(row.id), str(row.pseudonym)
        if older_than_anchor(conn, patient_id, bundle):
            return name, added

    # sessions (and their devices)
    session_ids: dict[str, int] = {}
    for sess in bundle["sessions"]:
        uid = str(sess["uid"])
        found = conn.execute(select(s.id, s.patient_id, s.ended_at).where(s.uid == uid)).first()
        if found is not None:
            if int(found.patient_id) != patient_id:
                raise BundleError(f"session {uid} belongs to another patient in this database")
            session_ids[uid] = int(found.id)
            if found.ended_at is None and sess.get("ended_at") is not None:
                conn.execute(
                    update(schema.sessions)
                    .where(s.id == found.id)
                    .values(
                        ended_at=sess["ended_at"],
                        ended_mono=sess.get("ended_mono"),
                        end_reason=sess["end_reason"],
                    )
                )
            continue
        device_id = None
        if sess.get("device") is not None:
            device_id = device_id_of(
                conn, DeviceInfo.model_validate(sess["device"]), iso_utc(datetime.now(UTC))
            )
        plan = SessionPlan.model_validate(sess["plan"])
        session_ids[uid] = int(
            insert_id(
                conn.execute(
                    insert(schema.sessions).values(
                        uid=uid,
                        patient_id=patient_id,
                        device_id=device_id,
                        program=plan.program,
                        plan=canonical_json(plan.model_dump(mode="json")),
                        planned_minutes=plan.planned_minutes,
                        prescription_version=plan.prescription_version,
                        simulator=bool(sess["simulator"]),
                        started_at=sess["started_at"],
                        started_mono=sess.get("started_mono"),
                        ended_at=sess.get("ended_at"),
                        ended_mono=sess.get("ended_mono"),
                        end_reason=sess.get("end_reason"),
                        odometer_sessions=(sess.get("odometer") or {}).get("sessions"),
                        odometer_seconds=(sess.get("odometer") or {}).get("stimulation_s"),
                    )
                )
            )
        )
        added["sessions"] += 1

    # chains
    for chain in bundle["chains"]:
        local = conn.execute(
            select(c.id, c.patient_id, c.head_seq, c.head_hash).where(c.uid == chain["uid"])
        ).first()
        events = chain["events"]
        if local is None:
            chain_id = int(
                insert_id(
                    conn.execute(
                        insert(schema.chains).values(
                            uid=chain["uid"],
                            patient_id=patient_id,
                            origin=chain["origin"],
                            head_seq=0,
                            head_hash=GENESIS_HASH,
                        )
                    )
                )
            )
            local_seq = 0
        else:
            if int(local.patient_id) != patient_id:
                raise BundleError(f"chain {chain['uid']} belongs to another patient here")
            chain_id, local_seq = int(local.id), int(local.head_seq)
            by_seq = {int(ev["seq"]): ev for ev in events}
            if local_seq > int(chain["head_seq"]):
                mine = conn.execute(
                    select(e.hash).where(e.chain_id == chain_id, e.seq == chain["head_seq"])
                ).scalar()
                if mine != chain["head_hash"]:
                    raise BundleError(
                        f"chain {chain['uid']} in this database differs from the bundle's; "
                        "not imported"
                    )
                continue
            if local_seq and by_seq.get(local_seq, {}).get("hash") != local.head_hash:
                raise BundleError(
                    f"chain {chain['uid']} in this database differs from the bundle's; not imported"
                )
        new_events = [ev for ev in events if int(ev["seq"]) > local_seq]
        if new_events:
            conn.execute(
                insert(schema.events),
                [
                    {
                        "chain_id": chain_id,
                        "seq": ev["seq"],
                        "session_id": None
                        if ev.get("session") is None
                        else session_ids[str(ev["session"])],
                        "wall_time": ev["wall_time"],
                        "mono_time": ev["mono_time"],
                        "kind": ev["kind"],
                        "payload": canonical_json(ev["payload"]),
                        "prev_hash": ev["prev_hash"],
                        "hash": ev["hash"],
                    }
                    for ev in new_events
                ],
            )
            last = new_events[-1]
            conn.execute(
                update(schema.chains)
                .where(c.id == chain_id)
                .values(head_seq=last["seq"], head_hash=last["hash"])
            )
            added["events"] += len(new_events)

    # clinical records
    for table_name, rows in bundle["records"].items():
        model = MODEL_OF[str(table_name)]
        table = schema.metadata.tables[str(table_name)]
        for data in rows:
            record = model.model_validate(data)
            if conn.execute(select(table.c.id).where(table.c.uid == record.uid)).first():
                continue
            session_uid = getattr(record, "session", None)
            session_id = None if session_uid is None else session_ids[str(session_uid)]
            conn.execute(insert(table).values(to_row(record, patient_id, session_id)))
            added["records"] += 1

    # telemetry (sealed segments)
    t = schema.telemetry.c
    for seg in bundle["telemetry"]:
        session_id = session_ids[str(seg["session"])]
        exists = conn.execute(
            select(t.id).where(t.session_id == session_id, t.segment == seg["segment"]).limit(1)
        ).first()
        if exists is not None or not seg["rows"]:
            continue
        conn.execute(
            insert(schema.telemetry),
            [
                {
                    "session_id": session_id,
                    "segment": seg["segment"],
                    "t": r[0],
                    "channel": r[1],
                    "set_ma": r[2],
                    "measured_ma": r[3],
                    "impedance_ohm": r[4],
                }
                for r in seg["rows"]
            ],
        )
        added["telemetry"] += len(seg["rows"])
    _record_anchors(conn, patient_id, bundle)
    return name, added


# --------------------------------------------------------------------------- clinic anchors


def tampering(report: VerifyReport) -> list[Problem]:
    """The problems that mean a log was changed (not the sessions an odometer says it lacks,
    which may have been run from another computer)."""
    return [p for p in report.problems if p.kind != "missing"]


def _anchors(conn: Connection, patient_id: int) -> dict[str, Any]:
    """The latest anchor of each chain of the patient (the longest head received)."""
    a = schema.anchors.c
    latest: dict[str, Any] = {}
    for row in conn.execute(
        select(schema.anchors).where(a.patient_id == patient_id).order_by(a.head_seq, a.id)
    ):
        latest[str(row.chain_uid)] = row
    return latest


def older_than_anchor(conn: Connection, patient_id: int, bundle: Mapping[str, Any]) -> bool:
    """Check a bundle against the heads earlier imports of this patient received. True: it is
    an older export than one already imported (nothing to import). Raises
    :class:`RewrittenHistoryError` when a chain does not extend its anchored head."""
    anchors = _anchors(conn, patient_id)
    if not anchors:
        return False
    chains = {str(chain["uid"]): chain for chain in bundle["chains"]}
    exported = str(bundle.get("exported_at", ""))
    older = False
    for uid, anchor in anchors.items():
        when = str(anchor.imported_at)[:16].replace("T", " ")
        chain = chains.get(uid)
        if chain is None:
            if exported <= str(anchor.exported_at):
                older = True
                continue
            raise RewrittenHistoryError(
                f"rewritten history: the bundle lacks chain {uid[:8]}, which the import of "
                f"{when} UTC received up to seq {anchor.head_seq}"
            )
        head = int(chain["head_seq"])
        if head < int(anchor.head_seq):
            if exported <= str(anchor.exported_at):
                older = True
                continue
            raise RewrittenHistoryError(
                f"rewritten history: chain {uid[:8]} ends at seq {head}, but the export imported "
                f"on {when} UTC already reached seq {anchor.head_seq}: events "
                f"{head + 1}..{anchor.head_seq} were cut from the patient's log"
            )
        at_anchor = next((ev for ev in chain["events"] if ev.get("seq") == anchor.head_seq), None)
        if at_anchor is None or at_anchor.get("hash") != anchor.head_hash:
            raise RewrittenHistoryError(
                f"rewritten history: chain {uid[:8]} differs at seq {anchor.head_seq} from the "
                f"export imported on {when} UTC: the patient's log was changed and re-written "
                "since"
            )
    return older and all(
        int(chains[uid]["head_seq"]) <= int(a.head_seq)
        for uid, a in anchors.items()
        if uid in chains
    )


def _record_anchors(conn: Connection, patient_id: int, bundle: Mapping[str, Any]) -> None:
    anchors = _anchors(conn, patient_id)
    now = iso_utc(datetime.now(UTC))
    rows = [
        {
            "patient_id": patient_id,
            "chain_uid": str(chain["uid"]),
            "head_seq": int(chain["head_seq"]),
            "head_hash": str(chain["head_hash"]),
            "exported_at": str(bundle.get("exported_at", "")),
            "bundle_digest": str(bundle["digest"]),
            "imported_at": now,
        }
        for chain in bundle["chains"]
        if str(chain["uid"]) not in anchors
        or int(chain["head_seq"]) > int(anchors[str(chain["uid"])].head_seq)
    ]
    if rows:
        conn.execute(insert(schema.anchors), rows)


def device_id_of(conn: Connection, info: DeviceInfo, first_seen: str) -> int:
    """The local id of a device (model, serial, firmware, protocol), added if new."""
    info = info.identity()
    d = schema.devices.c
    found = conn.execute(
        select(d.id).where(
            d.protocol == info.protocol,
            d.model == info.model,
            d.serial_number == info.serial_number,
            d.firmware == info.firmware,
        )
    ).scalar()
    if found is not None:
        return int(found)
    return int(
        insert_id(
            conn.execute(
                insert(schema.devices).values(
                    protocol=info.protocol,
                    protocol_version=info.protocol_version,
                    model=info.model,
                    serial_number=info.serial_number,
                    firmware=info.firmware,
                    info=canonical_json(info.model_dump(mode="json")),
                    is_simulator=info.is_simulator,
                    first_seen=first_seen,
                )
            )
        )
    )


# --------------------------------------------------------------------------- one record


def logged_record_problem(conn: Connection, table_name: str, uid: str) -> str | None:
    """Check one clinical record against the chain, as a session start needs it (not a whole
    ``verify``): its row equals the copy its log record carries, that log record matches its
    hash, and it is linked into its chain on both sides. Returns what is wrong, as a phrase
    ("differs from ..."), or None."""
    table = schema.metadata.tables[table_name]
    s, c, e = schema.sessions.c, schema.chains.c, schema.events.c
    query = (
        select(table, s.uid.label("session_uid")).select_from(
            table.outerjoin(schema.sessions, table.c.session_id == s.id)
        )
        if has_session(table)
        else select(table)
    )
    row = conn.execute(query.where(table.c.uid == uid)).mappings().first()
    if row is None:
        return "is no longer in the database"
    try:
        data = from_row(table_name, row, row.get("session_uid")).model_dump(mode="json")
    except (ValidationError, ValueError, TypeError):
        return "cannot be read any more (the database row was changed)"
    kind = next(k for k, t in RECORD_KINDS.items() if t == table_name)
    events = conn.execute(
        select(e.id, e.chain_id, e.seq, e.session_id, e.wall_time, e.mono_time, e.payload)
        .add_columns(e.prev_hash, e.hash, c.uid.label("chain_uid"))
        .select_from(schema.events.join(schema.chains, e.chain_id == c.id))
        .where(c.patient_id == row["patient_id"], e.kind == kind)
        .order_by(e.id)
    ).all()
    logged = None
    for ev in events:
        payload = _json(ev.payload)
        record = payload.get("record") if isinstance(payload, dict) else None
        if isinstance(record, dict) and record.get("uid") == uid:
            logged = (ev, payload)
    if logged is None:
        return "has no record in the log (it was added to the database, not saved by tens-control)"
    ev, payload = logged
    try:
        copy = payload_of(parse_log_record(kind, payload))["record"]
    except (ValidationError, ValueError, TypeError):
        copy = None
    if copy != data:
        return "differs from its copy in the log (it was edited after it was saved)"
    if ev.session_id is not None:
        return "is attached to a session in the log, which a saved record never is"
    body = event_body(
        chain=str(ev.chain_uid),
        seq=ev.seq,
        session=None,
        wall_time=ev.wall_time,
        mono_time=ev.mono_time,
        kind=kind,
        payload=payload,
    )
    if chain_hash(str(ev.prev_hash), body) != ev.hash:
        return "has a log record that no longer matches its hash (the log was edited)"
    neighbours = {
        int(r.seq): (str(r.prev_hash), str(r.hash))
        for r in conn.execute(
            select(e.seq, e.prev_hash, e.hash).where(
                e.chain_id == ev.chain_id, e.seq.in_([ev.seq - 1, ev.seq + 1])
            )
        )
    }
    before = GENESIS_HASH if ev.seq == 1 else neighbours.get(ev.seq - 1, ("", ""))[1]
    if before != ev.prev_hash:
        return (
            "has a log record that is no longer linked to the record before it (the log was edited)"
        )
    after = neighbours.get(ev.seq + 1)
    if after is not None:
        linked = after[0] == ev.hash
    else:
        head = conn.execute(select(c.head_seq, c.head_hash).where(c.id == ev.chain_id)).one()
        linked = head.head_seq == ev.seq and head.head_hash == ev.hash
    if not linked:
        return "has a log record that the log no longer links to (the log was edited)"
    return None
