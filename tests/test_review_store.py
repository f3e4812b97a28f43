"""The review read from a real store: the adapter gives the same figures as the hand-built
rows, computes amplitudes from the log, links "before" ratings to their session; the report and
import commands work end to end."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from pypdf import PdfReader

from tens_control.commands import import_bundle as import_cmd
from tens_control.commands import report as report_cmd
from tens_control.errors import TensControlError
from tens_control.review.analytics import (
    aggregate,
    summarize,
    summarize_data,
    summarize_many,
)
from tens_control.review.source import list_patients, load_aggregates, load_patient, load_summaries
from tens_control.review.wording import status_line
from tens_control.store import Actor, AmplitudeChanged, EndReason, Store
from tests.fixtures.review_data import Builder, at, on, responder, sample_patient
from tests.fixtures.review_store import PLAN, open_store, populate


def _run(module: ModuleType, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    module.add_parser(sub)
    return int(module.run(parser.parse_args(argv)))


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("review") / "clinic.sqlite3"
    with open_store(path, "P-014") as store:
        populate(store, sample_patient())
    return path


def test_the_store_gives_the_same_figures_as_the_rows(sample_db: Path) -> None:
    expected = summarize_data(sample_patient(), tz=UTC)
    with Store.open(sample_db, create=False, recover=False) as store:
        data = load_patient(store, "P-014", tz=UTC, today=on(42))
    got = summarize_data(data, tz=UTC)
    assert got.pseudonym == "P-014"
    assert (got.period_start, got.period_end) == (expected.period_start, expected.period_end)
    assert got.sessions == expected.sessions
    assert got.stim_minutes == pytest.approx(expected.stim_minutes)
    assert (got.ratings, got.ratings_missing) == (expected.ratings, expected.ratings_missing)
    assert got.adherence == expected.adherence
    assert got.session_change == expected.session_change
    assert got.outcomes == expected.outcomes
    assert got.tolerance == expected.tolerance
    assert got.faults == expected.faults
    assert got.rejections == expected.rejections
    assert got.end_reasons == expected.end_reasons
    assert [(a.kind, a.severity, a.note) for a in got.adverse_events] == [
        (a.kind, a.severity, a.note) for a in expected.adverse_events
    ]
    assert [(t.kind, t.start, t.end) for t in got.treatments] == [
        (t.kind, t.start, t.end) for t in expected.treatments
    ]
    assert [d.serial for d in data.devices] == ["SIM-0001"]
    assert data.sessions[0].electrode_site == "residual_limb"


def test_before_ratings_saved_without_a_session_are_linked_by_time(sample_db: Path) -> None:
    with Store.open(sample_db, create=False, recover=False) as store:
        data = load_patient(store, "P-014", tz=UTC)
    first = data.sessions[0]
    linked = [r for r in data.ratings if r.session_id == first.id]
    assert sorted(r.when for r in linked) == ["after", "before"]
    diary = [r for r in data.ratings if r.when == "diary"]
    assert diary
    assert all(r.session_id is None for r in diary)


def test_amplitude_is_time_weighted_over_stimulating_time(tmp_path: Path) -> None:
    t0 = at(0)
    with open_store(tmp_path / "a.sqlite3", "P-1") as store:
        store.ensure_patient("P-1")
        sid = store.begin_session(PLAN, at=t0)
        for seconds, channel, before, after in [
            (0, 1, 0, 10),
            (60, 1, 10, 20),
            (0, 2, 0, 30),
            (170, 2, 30, 0),  # channel 2 off for the last 10 s: not counted
        ]:
            store.append_event(
                sid,
                AmplitudeChanged(
                    time=0.0, channel=channel, from_ma=before, to_ma=after, who=Actor.PATIENT
                ),
                at=t0 + timedelta(seconds=seconds),
            )
        store.end_session(sid, EndReason.COMPLETED, at=t0 + timedelta(seconds=180))
        (s,) = load_patient(store, "P-1", tz=UTC).sessions
    assert s.mean_amplitude_ma == pytest.approx(((10 * 60 + 20 * 120) / 180 + 30) / 2)
    assert s.max_amplitude_ma == 30
    assert s.stim_minutes == pytest.approx(3.0)


def test_period_limits_sessions_and_ratings(sample_db: Path) -> None:
    with Store.open(sample_db, create=False, recover=False) as store:
        data = load_patient(store, "P-014", period_from=on(7), period_to=on(13), tz=UTC)
    s = summarize_data(data, tz=UTC)
    assert (s.period_start, s.period_end) == (on(7), on(13))
    assert s.sessions == sum(
        1 for x in sample_patient().sessions if on(7) <= x.start.date() <= on(13)
    )


def test_list_patients(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with open_store(path, "A-1") as store:
        populate(store, responder(8, 4, "A-1"))
        populate(store, responder(6, 5, "B-2"))
        assert [p.pseudonym for p in list_patients(store)] == ["A-1", "B-2"]


@pytest.mark.parametrize("fmt", ["html", "pdf", "csv", "json", "fhir"])
def test_report_command_writes_every_format(sample_db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"r.{fmt}"
    argv = ["report", "--db", str(sample_db), "--patient", "P-014", "--format", fmt, "-o", str(out)]
    assert _run(report_cmd, argv) == 0
    content = out.read_bytes()
    checks: dict[str, Callable[[bytes], bool]] = {
        "html": lambda b: b.startswith(b"<!DOCTYPE html>") and b.count(b"<svg") == 4,
        "pdf": lambda b: len(PdfReader(out).pages) <= 2,
        "csv": lambda b: b.startswith(b"record,patient,session_id"),
        "json": lambda b: json.loads(b)["summary"]["pseudonym"] == "P-014",
        "fhir": lambda b: json.loads(b)["resourceType"] == "Bundle",
    }
    assert checks[fmt](content)
    with pytest.raises(TensControlError, match="already exists"):
        _run(report_cmd, argv)
    assert out.read_bytes() == content
    assert _run(report_cmd, [*argv, "--force"]) == 0


def test_report_command_period_and_errors(sample_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    base = ["report", "--db", str(sample_db), "--format", "json", "-o", str(out)]
    assert _run(report_cmd, [*base, "--from", "2026-03-09", "--to", "2026-03-15"]) == 0
    doc = json.loads(out.read_bytes())["summary"]
    assert (doc["period_start"], doc["period_end"]) == ("2026-03-09", "2026-03-15")
    with pytest.raises(TensControlError, match="after --to"):
        _run(report_cmd, [*base, "--force", "--from", "2026-03-15", "--to", "2026-03-09"])
    with pytest.raises(TensControlError, match="nobody"):
        _run(report_cmd, [*base, "--force", "--patient", "nobody"])
    with pytest.raises(TensControlError, match="no database"):
        _run(
            report_cmd,
            [
                "report",
                "--db",
                str(tmp_path / "none.sqlite3"),
                "--format",
                "csv",
                "-o",
                str(tmp_path / "x.csv"),
            ],
        )


def _export(tmp_path: Path) -> Path:
    path = tmp_path / "home.sqlite3"
    b = Builder("P-22").prescribe()
    for d in range(3):
        b.session(d, before=6, after=3)
    b.adverse_event(1, "headache")
    with open_store(path, "P-22") as store:
        populate(store, b.build())
        bundle = store.export_patient("P-22")
    out = tmp_path / "P-22.json"
    out.write_text(json.dumps(bundle), encoding="utf-8")
    return out


def test_import_is_verified_and_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _export(tmp_path)
    clinic = tmp_path / "clinic.sqlite3"
    assert _run(import_cmd, ["import", str(bundle), "--db", str(clinic)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    assert "imported into patient P-22" in out
    with Store.open(clinic, create=False, recover=False) as store:
        data = load_patient(store, "P-22", tz=UTC)
        assert len(data.sessions) == 3
        assert store.verify().ok
    before = clinic.read_bytes()
    assert _run(import_cmd, ["import", str(bundle), "--db", str(clinic)]) == 0
    assert "nothing new" in capsys.readouterr().out
    with Store.open(clinic, create=False, recover=False) as store:
        again = load_patient(store, "P-22", tz=UTC)
    assert again == data
    assert len(before) > 0


def test_a_tampered_bundle_is_refused_naming_the_record(tmp_path: Path) -> None:
    bundle = _export(tmp_path)
    doc = json.loads(bundle.read_text(encoding="utf-8"))
    ratings = doc["records"]["pain_ratings"]
    victim = next(r for r in ratings if r.get("nrs") == 6)
    victim["nrs"] = 2  # a better "before" rating than the patient gave
    bundle.write_text(json.dumps(doc), encoding="utf-8")
    clinic = tmp_path / "clinic.sqlite3"
    with pytest.raises(TensControlError, match="refused and nothing was imported") as err:
        _run(import_cmd, ["import", str(bundle), "--db", str(clinic)])
    assert victim["uid"] in str(err.value)
    assert not clinic.exists()


def test_import_of_something_that_is_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("not json", encoding="utf-8")
    with pytest.raises(TensControlError, match="not a tens-control bundle"):
        _run(import_cmd, ["import", str(junk), "--db", str(tmp_path / "c.sqlite3")])
    with pytest.raises(TensControlError, match="no such file"):
        _run(import_cmd, ["import", str(tmp_path / "none.json")])


def test_cli_registers_report_and_import(
    sample_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tens_control.cli import main

    out = tmp_path / "r.csv"
    assert main(["report", "--db", str(sample_db), "--format", "csv", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("record,")
    assert main(["report", "--db", str(sample_db), "--format", "csv", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("tens-control: error:")
    assert "--force" in err[0]
    assert main(["import", str(tmp_path / "missing.json"), "--db", str(tmp_path / "c.db")]) == 2


@pytest.fixture(scope="module")
def clinic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clinic") / "clinic.sqlite3"
    with open_store(path, "P-014") as store:
        populate(store, sample_patient())
        populate(store, responder(8, 4, "R-50"))
        populate(store, responder(10, 7, "R-30"))
        populate(store, responder(6, 6, "N-00"))
        store.ensure_patient("EMPTY")
    return path


def test_the_patient_list_agrees_with_the_full_report(clinic_db: Path) -> None:
    with Store.open(clinic_db, create=False, recover=False) as store:
        quick = {
            s.pseudonym: s for s in summarize_many(load_aggregates(store, tz=UTC, today=on(42)))
        }
        names = [p.pseudonym for p in list_patients(store)]
        full = {
            name: summarize(
                aggregate(load_patient(store, name, tz=UTC, today=on(42)), UTC), with_daily=False
            )
            for name in names
        }
    assert sorted(quick) == sorted(full) == sorted(["P-014", "R-50", "R-30", "N-00", "EMPTY"])
    for name in names:
        assert quick[name] == full[name], name


def test_the_patient_list_checks_tolerance_over_the_whole_period(clinic_db: Path) -> None:
    with Store.open(clinic_db, create=False, recover=False) as store:
        summaries = {s.pseudonym: s for s in load_summaries(store, tz=UTC, today=on(42))}
        full = summarize_data(load_patient(store, "P-014", tz=UTC, today=on(42)), tz=UTC)
    p = summaries["P-014"]
    assert p.tolerance.available
    assert p.tolerance.current
    assert p.tolerance == full.tolerance
    assert p.tolerance.windows_evaluated > 1
    week4 = {
        name: summaries[name].primary.time_point(4)  # type: ignore[union-attr]
        for name in ("R-50", "R-30", "N-00")
    }
    assert week4["R-50"] is not None
    assert week4["R-50"].responder_50
    assert week4["R-30"] is not None
    assert week4["R-30"].band == "moderate"
    assert week4["N-00"] is not None
    assert week4["N-00"].responder_30 is False
    assert not summaries["EMPTY"].available
    line = status_line(p)
    assert line.startswith("P-014 · last session 12 Apr (yesterday) · adherence 91 %")
    assert "tolerance" in line
