"""The patient list's SQL path (``load_aggregates`` / ``load_summaries``) gives exactly the
figures of the per-patient path (``load_patient`` + ``aggregate``), on a generated clinic full
of edge cases: patients without sessions or without any data, too little data, skipped
ratings, ratings saved with and without their session, several ratings of one kind in one
session (the last counts, ties in time broken by id), sessions around midnight and around the
daylight-saving changes, a session without an end, an end before the start, several
prescriptions (two on one day), faults, refused requests, adverse events and diary entries;
in UTC, a fixed zone, zones with daylight saving time and the computer's local zone; with and
without a period."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tens_control.prescription import Prescription, dump_prescription
from tens_control.review.analytics import Aggregates, aggregate, summarize
from tens_control.review.source import (
    list_patients,
    load_aggregates,
    load_patient,
    load_summaries,
    load_summary,
    zone_offsets,
)
from tens_control.store import (
    Actor,
    AdverseKind,
    AmplitudeChanged,
    DiaryKind,
    EndReason,
    Fault,
    PainContext,
    PainSite,
    RatingTime,
    Rejected,
    Severity,
    Store,
)
from tests.fixtures.review_store import PLAN, open_store
from tests.store_support import DEVICE

START = datetime(2025, 3, 17, tzinfo=UTC)  # two weeks before the European change to summer time
DAYS = 30
TODAY = date(2025, 4, 17)
"""The day the review is made: the day after the generated month."""
BERLIN = ZoneInfo("Europe/Berlin")
ZONES: list[tzinfo] = [
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    BERLIN,
    ZoneInfo("America/St_Johns"),  # −3:30, with daylight saving time (from 2025-03-09)
]


def _prescribe(
    store: Store,
    who: str,
    at: datetime,
    session_minutes: int,
    sessions_per_day: int | None = None,
    minutes_per_day: int | None = None,
) -> None:
    rx = Prescription(
        patient=who,
        written_by="Dr Test",
        written_at=at,
        reason="test",
        programs=("conventional",),
        session_minutes=session_minutes,
        sessions_per_day=sessions_per_day,
        minutes_per_day=minutes_per_day,
    )
    store.save_prescription(dump_prescription(rx), author="Dr Test", patient=who, at=at)


def _rate(
    store: Store,
    who: str,
    value: int | None,
    when: RatingTime,
    at: datetime,
    session: str | None = None,
    pain: PainSite = PainSite.PHANTOM,
    context: PainContext = PainContext.REST,
) -> None:
    store.add_pain_rating(value, when, pain, context=context, session=session, at=at, patient=who)


def _busy_patient(store: Store, who: str, rng: random.Random, skip: float) -> None:
    """A month of sessions with every kind of oddity the review must read the same both ways."""
    store.ensure_patient(who)
    _prescribe(store, who, START, session_minutes=30, sessions_per_day=3)
    _prescribe(
        store, who, START + timedelta(days=9, hours=8), session_minutes=20, sessions_per_day=2
    )
    _prescribe(
        store, who, START + timedelta(days=9, hours=20), session_minutes=25, minutes_per_day=70
    )
    second = (PainSite.RESIDUAL_LIMB, PainContext.MOVEMENT)
    last_end = START
    for day in range(DAYS):
        for slot in range(rng.choice((1, 2, 3, 3, 4))):
            # around midnight in Europe and in UTC, mornings, evenings
            hour = rng.choice((-1.1, -0.3, 0.05, 0.2, 7.5, 9.0, 13.25, 18.0, 21.9, 22.95, 23.6))
            start = START + timedelta(days=day, hours=hour + slot * 0.01)
            start = max(start, last_end + timedelta(minutes=1))
            start += timedelta(microseconds=rng.randrange(1_000_000))
            minutes = rng.choice((30, 30, 25, 12.5, 45))
            end = start + timedelta(minutes=minutes, microseconds=rng.randrange(-500, 1500))
            sid = store.begin_session(PLAN, patient=who, device=DEVICE, at=start)
            amp = (
                rng.choice((None, 18.0, 20.5, 23.1255, 19.99962, 31.00049))
                if rng.random() < 0.95
                else None
            )
            if amp is not None:
                store.append_event(
                    sid,
                    AmplitudeChanged(
                        time=0.0, channel=1, from_ma=0.0, to_ma=amp, who=Actor.PATIENT
                    ),
                    at=start + timedelta(seconds=5),
                )
            running = day == DAYS - 1 and slot == 0
            if not running:
                if slot == 0 and day in (5, 17):  # no time at all
                    end = start
                elif slot == 0 and day in (6, 18):  # a clock set back: an end before the start
                    end = start - timedelta(seconds=90)
                store.end_session(sid, rng.choice(list(EndReason)[:5]), at=end)
                last_end = max(end, start)

            def val() -> int | None:
                return None if rng.random() < skip else rng.randrange(11)

            # before: usually saved without its session (as the controller does), a few
            # linked, some more than one (the last counts), some too early to link
            before_at = start - timedelta(minutes=rng.choice((1, 2, 29, 30)))
            before_at += timedelta(microseconds=rng.randrange(-1, 2) if rng.random() < 0.2 else 0)
            linked_before = sid if rng.random() < 0.2 else None
            _rate(store, who, val(), RatingTime.BEFORE, before_at, linked_before)
            if rng.random() < 0.1:  # a second before, the same instant or later
                again = before_at + timedelta(seconds=rng.choice((0, 0, 20)))
                _rate(store, who, val(), RatingTime.BEFORE, again, linked_before)
            if rng.random() < 0.05:  # too early to belong to the session
                _rate(store, who, val(), RatingTime.BEFORE, start - timedelta(minutes=45))
            if running:
                continue
            after_at = end + timedelta(minutes=rng.choice((0, 1, 2, 30)))
            linked_after = sid if rng.random() < 0.7 else None
            _rate(store, who, val(), RatingTime.AFTER, after_at, linked_after)
            if rng.random() < 0.1:
                _rate(store, who, val(), RatingTime.AFTER, after_at, linked_after)
            if rng.random() < 0.3:
                plus = end + timedelta(minutes=rng.choice((30, 31, 89, 90, 91)))
                _rate(
                    store,
                    who,
                    val(),
                    RatingTime.PLUS_30_MIN,
                    plus,
                    None if rng.random() < 0.5 else sid,
                )
            if rng.random() < 0.2:  # a second series for some sessions
                _rate(
                    store,
                    who,
                    val(),
                    RatingTime.BEFORE,
                    start - timedelta(minutes=3),
                    None,
                    *second,
                )
                _rate(store, who, val(), RatingTime.AFTER, end + timedelta(minutes=3), sid, *second)
            if rng.random() < 0.05:
                _rate(store, who, val(), RatingTime.DURING, start + timedelta(minutes=5), sid)
        if rng.random() < 0.3:
            _rate(
                store,
                who,
                rng.randrange(11),
                RatingTime.DIARY,
                START + timedelta(days=day, hours=23, minutes=59, seconds=59, microseconds=999_999),
            )
        if rng.random() < 0.1:
            store.append_event(
                None,
                Fault(fault=rng.choice(("lead_off", "comms_lost")), detail="test"),
                patient=who,
                at=START + timedelta(days=day, hours=12),
            )
        if rng.random() < 0.1:
            store.append_event(
                None,
                Rejected(
                    time=0.0, command="amplitude", parameter="amplitude_ma", message="above the cap"
                ),
                patient=who,
                at=START + timedelta(days=day, hours=12, minutes=1),
            )
    store.add_adverse_event(
        AdverseKind.SKIN_REDNESS,
        rng.choice(list(Severity)),
        at=START + timedelta(days=3, hours=23, minutes=30),
        notes="red",
        patient=who,
    )
    store.add_diary_entry(
        DiaryKind.KETAMINE_INFUSION,
        START + timedelta(days=4),
        end=START + timedelta(days=6),
        notes="ketamine",
        patient=who,
    )
    store.add_diary_entry(
        DiaryKind.PAIN_EPISODE, START + timedelta(days=5), nrs=7, pain=PainSite.PHANTOM, patient=who
    )
    store.add_diary_entry(
        DiaryKind.MIRROR_THERAPY, START + timedelta(days=20, hours=23, minutes=45), patient=who
    )


def _clinic(path: Path) -> list[str]:
    """The generated clinic; returns the pseudonyms."""
    rng = random.Random(20251124)
    with open_store(path, "BUSY-1") as store:
        _busy_patient(store, "BUSY-1", rng, skip=0.05)
        _busy_patient(store, "BUSY-2", rng, skip=0.3)
        store.ensure_patient("EMPTY")  # nothing at all
        # ratings only: no sessions, no prescription
        store.ensure_patient("RATINGS-ONLY")
        for day in range(12):
            _rate(
                store,
                "RATINGS-ONLY",
                6 - day // 3,
                RatingTime.DIARY,
                START + timedelta(days=day, hours=20),
            )
        # too little data: two sessions, one rated
        store.ensure_patient("FEW")
        _prescribe(store, "FEW", START, session_minutes=30, sessions_per_day=2)
        for day in (2, 3):
            t = START + timedelta(days=day, hours=10)
            sid = store.begin_session(PLAN, patient="FEW", device=DEVICE, at=t)
            store.end_session(sid, EndReason.COMPLETED, at=t + timedelta(minutes=30))
        _rate(store, "FEW", 5, RatingTime.BEFORE, START + timedelta(days=2, hours=9, minutes=58))
        _rate(store, "FEW", 3, RatingTime.AFTER, START + timedelta(days=2, hours=10, minutes=31))
        # every rating skipped
        store.ensure_patient("SKIPPED")
        for day in range(10):
            t = START + timedelta(days=day, hours=8)
            sid = store.begin_session(PLAN, patient="SKIPPED", device=DEVICE, at=t)
            store.end_session(sid, EndReason.STOPPED_BY_USER, at=t + timedelta(minutes=20))
            _rate(store, "SKIPPED", None, RatingTime.BEFORE, t - timedelta(minutes=1))
            _rate(store, "SKIPPED", None, RatingTime.AFTER, t + timedelta(minutes=21), sid)
        # two sessions starting and ending at the same instants
        store.ensure_patient("TWINS")
        for day in range(8):
            t = START + timedelta(days=day, hours=15)
            first = store.begin_session(PLAN, patient="TWINS", device=DEVICE, at=t)
            second = store.begin_session(PLAN, patient="TWINS", device=DEVICE, at=t)
            store.end_session(first, EndReason.COMPLETED, at=t + timedelta(minutes=10))
            store.end_session(second, EndReason.COMPLETED, at=t + timedelta(minutes=10))
            _rate(store, "TWINS", 7, RatingTime.BEFORE, t - timedelta(minutes=5))
            _rate(store, "TWINS", 4, RatingTime.AFTER, t + timedelta(minutes=12))
            _rate(store, "TWINS", 2, RatingTime.PLUS_30_MIN, t + timedelta(minutes=45))
        return [p.pseudonym for p in list_patients(store)]


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("patient-list") / "clinic.sqlite3"
    return path, _clinic(path)


def _full(
    store: Store, name: str, tz: tzinfo | None, period: tuple[date | None, date | None]
) -> Aggregates:
    data = load_patient(store, name, period_from=period[0], period_to=period[1], tz=tz, today=TODAY)
    return aggregate(data, tz)


def _assert_same(fast: Aggregates, full: Aggregates) -> None:
    """Field by field first (a readable failure), then as a whole and as summaries."""
    for name in Aggregates.__dataclass_fields__:
        assert getattr(fast, name) == getattr(full, name), name
    assert fast == full
    assert summarize(fast) == summarize(full)
    assert summarize(fast, with_daily=False) == summarize(full, with_daily=False)


PERIODS: list[tuple[date | None, date | None]] = [
    (None, None),
    (date(2025, 3, 24), date(2025, 4, 6)),  # the European change to summer time inside
    (date(2025, 3, 30), None),
    (None, date(2025, 3, 18)),
]


@pytest.mark.parametrize("tz", ZONES, ids=lambda z: str(z))
@pytest.mark.parametrize("period", PERIODS, ids=lambda p: f"{p[0]}..{p[1]}")
def test_the_sql_path_gives_the_aggregates_of_the_rows(
    clinic: tuple[Path, list[str]], tz: tzinfo, period: tuple[date | None, date | None]
) -> None:
    path, names = clinic
    with Store.open(path, read_only=True) as store:
        fast = load_aggregates(
            store, period_from=period[0], period_to=period[1], tz=tz, today=TODAY
        )
        assert [a.patient.pseudonym for a in fast] == names
        for agg in fast:
            _assert_same(agg, _full(store, agg.patient.pseudonym, tz, period))


@pytest.fixture
def berlin_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local zone is Europe/Berlin for the test."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("berlin_local_time")
def test_the_local_zone_with_daylight_saving_time(clinic: tuple[Path, list[str]]) -> None:
    path, _names = clinic
    assert datetime(2025, 3, 30, 12, tzinfo=UTC).astimezone().utcoffset() == timedelta(hours=2)
    with Store.open(path, read_only=True) as store:
        for period in PERIODS[:2]:
            fast = load_aggregates(store, period_from=period[0], period_to=period[1], today=TODAY)
            for agg in fast:
                _assert_same(agg, _full(store, agg.patient.pseudonym, None, period))


def test_one_patient_and_a_few(clinic: tuple[Path, list[str]]) -> None:
    path, _names = clinic
    with Store.open(path, read_only=True) as store:
        (one,) = load_aggregates(store, ["TWINS"], tz=UTC, today=TODAY)
        _assert_same(one, _full(store, "TWINS", UTC, (None, None)))
        some = load_summaries(store, ["FEW", "BUSY-2"], tz=UTC, today=TODAY)
        assert [s.pseudonym for s in some] == ["BUSY-2", "FEW"]  # in the order they were added
        assert load_summary(store, "FEW", tz=UTC, today=TODAY) == some[1]
        assert some[0] == summarize(_full(store, "BUSY-2", UTC, (None, None)), with_daily=False)


def test_the_edge_cases_are_in_the_clinic(clinic: tuple[Path, list[str]]) -> None:
    """The generated data really holds what the agreement tests claim to cover."""
    path, _names = clinic
    with Store.open(path, read_only=True) as store:
        s = {x.pseudonym: x for x in load_summaries(store, tz=UTC, today=TODAY)}
        busy = load_patient(store, "BUSY-1", tz=UTC, today=TODAY)
    assert not s["EMPTY"].available
    assert s["EMPTY"].reason is not None
    assert "not enough data" in s["EMPTY"].reason
    assert s["RATINGS-ONLY"].sessions == 0
    assert not s["RATINGS-ONLY"].adherence.available
    assert s["RATINGS-ONLY"].primary is not None
    assert s["RATINGS-ONLY"].primary.rated_days == 12
    assert s["RATINGS-ONLY"].primary.time_points == ()  # no session: no time point
    assert not s["FEW"].tolerance.available
    assert not s["FEW"].session_change[0].available
    assert s["SKIPPED"].ratings == s["SKIPPED"].ratings_missing == 20
    assert s["SKIPPED"].primary is not None  # the headline series, with no rated day
    assert s["SKIPPED"].primary.rated_days == 0
    assert s["SKIPPED"].primary.time_points[0].status == "no_baseline"
    # twins: a before goes to the first (same start: lower id), an after to the last ended
    # (same end: the later one), so no session of theirs is rated both ways
    assert s["TWINS"].sessions == 16
    assert s["TWINS"].session_change[0].sessions == 0
    assert s["BUSY-1"].tolerance.available
    assert s["BUSY-1"].ratings_missing > 0
    assert s["BUSY-1"].faults
    assert s["BUSY-1"].rejections
    assert s["BUSY-1"].adverse_events
    assert s["BUSY-1"].treatments
    assert "not ended" in s["BUSY-1"].end_reasons
    assert any(x.end is not None and x.end < x.start for x in busy.sessions)
    assert any(x.mean_amplitude_ma is None for x in busy.sessions)
    linked_by_time = [r for r in busy.ratings if r.when == "after" and r.session_id is not None]
    assert len({(r.session_id, r.when, r.pain) for r in busy.ratings if r.session_id}) < len(
        [r for r in busy.ratings if r.session_id]
    )  # some sessions have two ratings of one kind
    assert linked_by_time


def test_zone_offsets_find_each_change_to_the_second() -> None:
    got = zone_offsets(BERLIN, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 12, 31, tzinfo=UTC))
    assert got == [
        (None, 3600),
        (datetime(2025, 3, 30, 1, tzinfo=UTC), 7200),
        (datetime(2025, 10, 26, 1, tzinfo=UTC), 3600),
    ]
    assert zone_offsets(UTC, START, START) == [(None, 0)]
    fixed = timezone(timedelta(hours=-3, minutes=-30))
    assert zone_offsets(fixed, START, START + timedelta(days=400)) == [(None, -12600)]


def test_the_review_patient_list_reads_the_sql_path(
    clinic: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review UI's list lines come from load_summaries, a few patients at a time, and
    say what the patient's full summary says."""
    from tens_control.ui.review import data as review_data

    path, names = clinic
    with Store.open(path, read_only=True) as store:
        full = {n: summarize(_full(store, n, UTC, (None, None)), with_daily=False) for n in names}
        source = review_data.ReviewSource(store, tz=UTC, today=TODAY)
        batches: list[list[str]] = []

        def counted(
            store: Store, pseudonyms: list[str], tz: tzinfo | None, today: date | None
        ) -> object:
            batches.append(list(pseudonyms))
            return load_summaries(store, pseudonyms, tz=tz, today=today)

        def refuse(*_args: object, **_kw: object) -> None:
            raise AssertionError("the patient list must not load every row")

        monkeypatch.setattr("tens_control.ui.review.data.load_summaries", counted)
        monkeypatch.setattr("tens_control.ui.review.data.load_patient", refuse)
        statuses = source.statuses()
    assert [s.pseudonym for s in statuses] == names
    for status in statuses:
        assert status.summary == full[status.pseudonym]
    assert len(names) <= source.STATUS_BATCH
    assert batches == [names]  # one SQL pass for the whole (small) list


def test_a_zone_with_a_fraction_of_a_second_is_read_from_rows(
    clinic: tuple[Path, list[str]],
) -> None:
    """SQLite works in whole seconds; such a zone (only possible as a hand-made tzinfo) falls
    back to the rows, with the same result."""
    odd = timezone(timedelta(hours=1, microseconds=500))
    path, _names = clinic
    with Store.open(path, read_only=True) as store:
        (agg,) = load_aggregates(store, ["BUSY-2"], tz=odd, today=TODAY)
        _assert_same(agg, _full(store, "BUSY-2", odd, (None, None)))
