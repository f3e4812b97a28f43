"""N-of-1 program comparisons (issue 17): the schedule, the analysis on simulated patients written
through the store, and the statistics against values computed by hand or known from tables."""

from __future__ import annotations

import html
import io
import itertools
import json
import random
import re
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

from tens_control.cli import main
from tens_control.comparison import ProgramComparison
from tens_control.prescription import load_prescription, widening
from tens_control.review.analytics import summarize_data
from tens_control.review.comparison import (
    ComparisonResult,
    PairResult,
    compare,
    compare_data,
    t_cdf,
    t_quantile,
    verdict_of,
)
from tens_control.review.comparison_chart import comparison_chart
from tens_control.review.fhir_export import bundle_json
from tens_control.review.model import PatientData, PatientRow, PrescriptionRow, RatingRow
from tens_control.review.report import build_report, render, render_html, render_pdf
from tens_control.review.source import load_patient
from tens_control.store import Note
from tens_control.trust.check import signature_problem
from tens_control.trust.keys import ENV_PASSPHRASE, load_private_key
from tens_control.ui.review.data import PatientView
from tens_control.ui.review.screens.patient import figure_lines
from tests.fixtures import comparison_patients as cp
from tests.fixtures.review_store import open_store
from tests.session_support import START, make_rig
from tests.session_support import prescription as session_prescription
from tests.trust_support import enrolment

BURST_VS_CONVENTIONAL = ProgramComparison(
    programs=("burst", "conventional"), start=cp.START, block_days=7, blocks_per_program=4, seed=7
)


def plan(**changes: object) -> ProgramComparison:
    return BURST_VS_CONVENTIONAL.model_copy(update=changes)


# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    "programs", [("burst", "conventional"), ("a", "b", "c"), ("w", "x", "y", "z")]
)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_schedule_is_balanced_in_every_cycle(programs: tuple[str, ...], seed: int) -> None:
    comparison = ProgramComparison(
        programs=programs, start=cp.START, block_days=5, blocks_per_program=3, seed=seed
    )
    blocks = comparison.schedule()
    assert len(blocks) == 3 * len(programs)
    for cycle in range(3):
        assert sorted(b.program for b in blocks if b.cycle == cycle) == sorted(programs)
    # contiguous, each block_days long, from start to end
    assert blocks[0].first_day == cp.START
    for before, after in itertools.pairwise(blocks):
        assert after.first_day == before.last_day + timedelta(days=1)
    assert all((b.last_day - b.first_day).days == 4 for b in blocks)
    assert blocks[-1].last_day == comparison.end


def test_schedule_is_reproducible_from_its_seed_and_random_across_seeds() -> None:
    first = [b.program for b in plan(seed=3).schedule()]
    assert first == [b.program for b in plan(seed=3).schedule()]
    # a fresh model from the stored TOML-like data gives the same
    again = ProgramComparison.model_validate(plan(seed=3).model_dump())
    assert [b.program for b in again.schedule()] == first
    orders = Counter(
        tuple(b.program for b in plan(seed=s).schedule() if b.cycle == 0) for s in range(400)
    )
    # the first cycle's order is a fair coin over seeds
    assert set(orders) == {("burst", "conventional"), ("conventional", "burst")}
    assert 150 < orders[("burst", "conventional")] < 250


def test_block_and_program_of_a_day() -> None:
    p = plan(washout_days=1)
    blocks = p.schedule()
    assert p.block_on(cp.START - timedelta(days=1)) is None
    assert p.block_on(p.end + timedelta(days=1)) is None
    assert p.block_on(cp.START) == blocks[0]
    assert p.program_on(cp.START + timedelta(days=7)) == blocks[1].program
    assert not blocks[0].is_washout(blocks[0].first_day)  # nothing to wash out before the first
    assert blocks[1].is_washout(blocks[1].first_day)  # always another program than block 0's
    assert not blocks[1].is_washout(blocks[1].first_day + timedelta(days=1))
    for before, after in itertools.pairwise(blocks):  # only after a change of program
        assert (after.washout_until is not None) == (after.program != before.program)


def test_a_comparison_is_validated() -> None:
    with pytest.raises(ValidationError, match="named twice"):
        ProgramComparison(programs=("burst", "burst"), start=cp.START, seed=1)
    with pytest.raises(ValidationError, match="shorter than a block"):
        ProgramComparison(
            programs=("burst", "conventional"), start=cp.START, seed=1, block_days=3, washout_days=3
        )
    with pytest.raises(ValidationError):
        ProgramComparison(programs=("burst",), start=cp.START, seed=1)
    rx = cp.prescription("P-1", BURST_VS_CONVENTIONAL)
    with pytest.raises(ValidationError, match="not among the prescribed programs"):
        rx.model_validate({**rx.model_dump(), "programs": ("burst",)})
    with pytest.raises(ValidationError, match="sessions_per_day or minutes_per_day"):
        rx.model_validate({**rx.model_dump(), "sessions_per_day": None})


def test_an_unsigned_prescription_cannot_change_the_comparison() -> None:
    signed = cp.prescription("P-1", BURST_VS_CONVENTIONAL)
    assert widening(signed, signed, "the signed one") == []
    for comparison in (None, plan(seed=8)):
        edited = signed.model_copy(update={"comparison": comparison})
        problems = widening(edited, signed, "the signed one")
        assert problems
        assert problems[0].startswith("comparison:")


# --------------------------------------------------------------------------- Student's t


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 9, 2.262), (0.95, 5, 2.015)],
)
def test_t_quantiles_match_the_tables(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)
    assert t_cdf(expected, df) == pytest.approx(p, abs=1e-4)


def test_t_cdf_is_symmetric() -> None:
    assert t_cdf(0.0, 4) == pytest.approx(0.5)
    assert t_cdf(-1.3, 4) == pytest.approx(1.0 - t_cdf(1.3, 4))


# --------------------------------------------------------------------------- a pair by hand


def _rows(daily: dict[date, int]) -> PatientData:
    ratings = tuple(
        RatingRow(f"r{i}", datetime.combine(d, time(8), tzinfo=UTC), "diary", "phantom", "rest", v)
        for i, (d, v) in enumerate(sorted(daily.items()))
    )
    rx = PrescriptionRow(
        datetime.combine(cp.START, time(0), tzinfo=UTC),
        1,
        30,
        comparison=plan(blocks_per_program=3),
    )
    return PatientData(PatientRow("1", "P-HAND"), ratings=ratings, prescriptions=(rx,))


def test_three_cycles_computed_by_hand() -> None:
    """Block means (daily pain): cycle differences burst − conventional of −2, −1 and −3 points:
    mean −2, sd 1, se 1/√3 = 0.577; t(0.975, 2) = 4.303 → 2 ± 2.484 → −0.48 to 4.48; posterior
    P(burst better) = T2(2 / 0.577) = T2(3.464) = 0.963; all 8 sign patterns: only all-negative
    and all-positive reach |mean| 2 → p = 2/8 = 0.25."""
    p = plan(blocks_per_program=3)
    burst = {0: 4, 1: 5, 2: 3}
    conventional = {0: 6, 1: 6, 2: 6}
    daily: dict[date, int] = {}
    for block in p.schedule():
        value = (burst if block.program == "burst" else conventional)[block.cycle]
        for offset in range(7):
            daily[block.first_day + timedelta(days=offset)] = value
    result = compare(_rows(daily), p, ("phantom", "rest"), p.end + timedelta(days=1), UTC)
    (pair,) = result.pairs
    assert (pair.better, pair.other) == ("burst", "conventional")
    assert pair.difference == pytest.approx(2.0)
    assert pair.ci_low == pytest.approx(2 - 4.303 / 3**0.5, abs=1e-3)
    assert pair.ci_high == pytest.approx(2 + 4.303 / 3**0.5, abs=1e-3)
    assert pair.probability == pytest.approx(0.9631, abs=1e-3)
    assert pair.p_randomisation == pytest.approx(0.25)
    assert not pair.settled
    # with sd 1 and a difference of 2: t(0.975, m-1)/sqrt(m) < 2 first for m = 4 (3.182/2 = 1.59)
    assert pair.cycles_to_settle == 4
    assert result.verdict == (
        "no clear difference between burst and conventional: 2.0 points (95 % interval -0.5 "
        "to 4.5), 96 % probability burst is better; 3 of 3 planned block pairs done; about 1 "
        "more block pairs would settle a difference this size"
    )
    by_program = {f.program: f for f in result.programs}
    assert by_program["burst"].daily_pain == pytest.approx(4.0)
    assert by_program["conventional"].daily_pain == pytest.approx(6.0)


def test_the_verdict_wording() -> None:
    settled = PairResult("burst", "conventional", 1.4, 0.6, 2.2, 0.97, 0.06, 2, 3, None)
    assert verdict_of([settled], 3) == (
        "burst better than conventional by 1.4 points (95 % interval 0.6 to 2.2), 97 % "
        "probability; 2 of 3 planned block pairs done"
    )
    early = PairResult("burst", "conventional", 1.0, None, None, None, None, 1, 3, None)
    assert "too few blocks to compare" in verdict_of([early], 3)
    assert verdict_of([], 3).startswith("comparison: no finished pair of blocks yet")


# --------------------------------------------------------------------------- simulated patients


def _review(
    tmp_path: Path, who: str, p: ProgramComparison, patient: cp.Patient, until: date
) -> ComparisonResult:
    store = open_store(tmp_path / f"{who}.db", who)
    try:
        cp.write(store, who, p, patient, until)
        data = load_patient(store, who, tz=UTC, today=until)
    finally:
        store.close()
    result = compare_data(data, UTC)
    assert result is not None
    return result


def test_a_patient_with_a_program_effect(tmp_path: Path) -> None:
    """Burst gives 1.5 points less pain than conventional: the interval covers 1.5, burst is
    named better, with a high probability."""
    patient = cp.Patient(
        effect={"burst": -1.5, "conventional": 0.0}, relief={"burst": 2, "conventional": 1}
    )
    p = plan()
    result = _review(tmp_path, "P-EFFECT", p, patient, p.end + timedelta(days=1))
    (pair,) = result.pairs
    assert (pair.better, pair.other) == ("burst", "conventional")
    assert pair.ci_low is not None
    assert pair.ci_high is not None
    assert pair.ci_low <= 1.5 <= pair.ci_high
    assert pair.settled
    assert pair.probability is not None
    assert pair.probability > 0.95
    assert pair.cycles_done == 4
    assert result.verdict.startswith("burst better than conventional by ")
    assert "4 of 4 planned block pairs done" in result.verdict
    change = {f.program: f.session_change for f in result.programs}
    assert change["burst"] == pytest.approx(-2.0, abs=0.15)
    assert change["conventional"] == pytest.approx(-1.0, abs=0.15)
    assert result.deviations == 0
    assert result.scheduled_sessions == 56


def test_a_patient_without_a_difference(tmp_path: Path) -> None:
    patient = cp.Patient(
        effect={"burst": 0.0, "conventional": 0.0}, relief={"burst": 1, "conventional": 1}, seed=4
    )
    p = plan()
    result = _review(tmp_path, "P-NULL", p, patient, p.end + timedelta(days=1))
    (pair,) = result.pairs
    assert pair.ci_low is not None
    assert pair.ci_high is not None
    assert pair.ci_low <= 0.0 <= pair.ci_high
    assert result.verdict.startswith("no clear difference between ")


def test_part_way_through_only_finished_blocks_count(tmp_path: Path) -> None:
    patient = cp.Patient(
        effect={"burst": -1.5, "conventional": 0.0}, relief={"burst": 2, "conventional": 1}
    )
    p = plan()
    blocks = p.schedule()
    # today: the middle of the 6th block (cycle 2's second block): two cycles finished
    today = blocks[5].first_day + timedelta(days=3)
    result = _review(tmp_path, "P-HALF", p, patient, today)
    (pair,) = result.pairs
    assert pair.cycles_done == 2
    assert "2 of 4 planned block pairs done" in result.verdict
    assert [b.finished for b in result.blocks] == [True] * 5 + [False] * 3
    assert result.blocks[5].rated_days == 3  # the days before today
    assert result.blocks[6].rated_days == 0


def test_wash_out_days_are_left_out(tmp_path: Path) -> None:
    """Two days of carry-over at the start of every block: without a wash-out they pull the
    estimate towards 0; with two wash-out days the estimate is the true one's."""
    patient = cp.Patient(
        effect={"burst": -2.0, "conventional": 0.0},
        relief={"burst": 1, "conventional": 1},
        day_sd=0.0,
        block_sd=0.0,
        carry_days=2,
    )
    washed = plan(washout_days=2)
    result = _review(tmp_path, "P-WASH", washed, patient, washed.end + timedelta(days=1))
    assert result.pairs[0].difference == pytest.approx(2.0)
    blocks = result.blocks
    changed = [
        i > 0 and b.block.program != blocks[i - 1].block.program for i, b in enumerate(blocks)
    ]
    assert any(changed)
    assert not all(changed[1:])  # seed 7: one cycle starts with the program the last one ended on
    assert [b.rated_days for b in blocks] == [5 if c else 7 for c in changed]
    # the same patient analysed as if there were no wash-out: carry-over biases it
    unwashed = compare(
        load_and_close(tmp_path, "P-WASH"),
        plan(),
        ("phantom", "rest"),
        washed.end + timedelta(days=1),
        UTC,
    )
    assert unwashed.pairs[0].difference < 1.6


def load_and_close(tmp_path: Path, who: str) -> PatientData:
    store = open_store(tmp_path / f"{who}.db", who)
    try:
        return load_patient(store, who, tz=UTC)
    finally:
        store.close()


def test_deviations_are_counted(tmp_path: Path) -> None:
    patient = cp.Patient(
        effect={"burst": -1.0, "conventional": 0.0},
        relief={"burst": 1, "conventional": 1},
        deviate_every=5,
    )
    p = plan(blocks_per_program=2)
    result = _review(tmp_path, "P-DEV", p, patient, p.end + timedelta(days=1))
    assert result.scheduled_sessions == 28
    assert result.deviations == 5  # sessions 5, 10, 15, 20, 25


def test_three_programs_name_the_best(tmp_path: Path) -> None:
    patient = cp.Patient(
        effect={"burst": -2.0, "conventional": 0.0, "acupuncture-like": -0.5},
        relief={"burst": 1, "conventional": 1, "acupuncture-like": 1},
    )
    p = ProgramComparison(
        programs=("burst", "conventional", "acupuncture-like"),
        start=cp.START,
        block_days=7,
        blocks_per_program=3,
        seed=11,
    )
    result = _review(tmp_path, "P-THREE", p, patient, p.end + timedelta(days=1))
    assert len(result.pairs) == 2  # the best against each other
    assert all(pair.better == "burst" for pair in result.pairs)
    assert {pair.other for pair in result.pairs} == {"conventional", "acupuncture-like"}


def test_no_comparison_no_result(tmp_path: Path) -> None:
    data = PatientData(PatientRow("1", "P-NONE"))
    assert compare_data(data, UTC) is None


def test_the_interval_covers_the_true_effect_about_95_percent_of_the_time() -> None:
    """The interval's calibration, over 200 simulated patients with a true difference of 1
    point (normal block and day noise): coverage between 90 and 99 %."""
    p = plan(blocks_per_program=4)
    covered = 0
    trials = 200
    rng = random.Random(2026)
    for _ in range(trials):
        daily: dict[date, int] = {}
        for block in p.schedule():
            shift = (-1.0 if block.program == "burst" else 0.0) + rng.gauss(0, 0.5)
            for offset in range(7):
                day = block.first_day + timedelta(days=offset)
                daily[day] = max(0, min(10, round(6 + shift + rng.gauss(0, 1.0))))
        result = compare(_rows(daily), p, ("phantom", "rest"), p.end + timedelta(days=1), UTC)
        pair = result.pairs[0]
        assert pair.ci_low is not None
        assert pair.ci_high is not None
        sign = 1.0 if pair.better == "burst" else -1.0
        low, high = sorted((sign * pair.ci_low, sign * pair.ci_high))
        covered += low <= 1.0 <= high
    assert 0.90 * trials <= covered <= 0.99 * trials


# --------------------------------------------------------------------------- the outputs


@pytest.fixture(scope="module")
def effect_data(tmp_path_factory: pytest.TempPathFactory) -> PatientData:
    """A patient with 1.5 points less pain with burst, through the whole comparison."""
    tmp_path = tmp_path_factory.mktemp("effect")
    patient = cp.Patient(
        effect={"burst": -1.5, "conventional": 0.0}, relief={"burst": 2, "conventional": 1}
    )
    p = plan()
    store = open_store(tmp_path / "out.db", "P-OUT")
    try:
        cp.write(store, "P-OUT", p, patient, p.end + timedelta(days=1))
        return load_patient(store, "P-OUT", tz=UTC, today=p.end + timedelta(days=1))
    finally:
        store.close()


def test_the_report_leads_with_the_verdict_and_charts_the_blocks(effect_data: PatientData) -> None:
    data = effect_data
    report = build_report(data, tz=UTC, generated=datetime(2026, 5, 1, tzinfo=UTC))
    assert report.comparison is not None
    verdict = report.comparison.verdict
    programs = [line for line in report.answers() if line.label == "Programs"]
    assert len(programs) == 1
    assert programs[0].text.startswith(verdict)
    assert "0 of 56 sessions on scheduled days with another program" in programs[0].text
    page = render_html(report)
    assert 'id="chart-comparison"' in page
    assert html.escape(verdict, quote=True) in page
    # one bar per block, each labelled with its program's letter, in the chart's description
    chart = comparison_chart(report.comparison)
    assert len(re.findall(r"block \d+ \(", chart.description)) == 8
    assert chart.body.count(">A<") + chart.body.count(">B<") == 8
    pdf = PdfReader(io.BytesIO(render_pdf(report)))
    assert len(pdf.pages) == 2
    first = pdf.pages[0].extract_text().replace("\n", " ")
    assert "burst better than conventional by" in first


def test_the_fhir_export_carries_the_comparison(effect_data: PatientData) -> None:
    data = effect_data
    bundle = json.loads(bundle_json(data, UTC))  # parsed back and checked inside
    found = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "program-comparison"
    ]
    assert len(found) == 1
    obs = found[0]
    result = compare_data(data, UTC)
    assert result is not None
    pair = result.pairs[0]
    assert obs["status"] == "final"
    assert obs["valueQuantity"]["value"] == pytest.approx(pair.difference, abs=1e-3)
    parts = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert parts["better-program"]["valueString"] == "burst"
    assert parts["ci-low"]["valueQuantity"]["value"] == pytest.approx(pair.ci_low, abs=1e-3)
    assert parts["cycles-done"]["valueInteger"] == 4
    assert obs["note"][0]["text"] == result.verdict


# --------------------------------------------------------------------------- the patient's side


def test_the_session_offers_the_days_program_first_and_logs_deviations(tmp_path: Path) -> None:
    day = START.astimezone().date()  # the patient's local day
    comparison = ProgramComparison(
        programs=("burst", "conventional"), start=day, block_days=2, blocks_per_program=2, seed=5
    )
    rx = session_prescription(comparison=comparison.model_dump(mode="json"))
    rig = make_rig(tmp_path, rx=rx)
    try:
        c = rig.c
        c.connect("sim://tsp")
        today = comparison.program_on(day)
        assert today is not None
        other = "conventional" if today == "burst" else "burst"
        assert c.scheduled_program() == today
        assert c.available_programs()[0].name == today
        assert {p.name for p in c.available_programs()} == {
            "conventional",
            "acupuncture-like",
            "burst",
        }

        def logged(session: str) -> object:
            notes = [
                r
                for r in rig.records("note", session)
                if isinstance(r, Note) and r.data is not None and "comparison" in r.data
            ]
            assert len(notes) == 1
            return notes[0].data["comparison"] if notes[0].data else None

        first = rig.run_session(program=today)
        assert logged(first) == {
            "block": 1,
            "cycle": 1,
            "scheduled": today,
            "program": today,
            "deviation": False,
            "washout": False,
        }
        second = rig.run_session(program=other)
        assert logged(second) == {
            "block": 1,
            "cycle": 1,
            "scheduled": today,
            "program": other,
            "deviation": True,
            "washout": False,
        }
    finally:
        rig.close()


def test_no_comparison_no_schedule(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, rx=session_prescription())
    try:
        rig.c.connect("sim://tsp")
        assert rig.c.scheduled_program() is None
        session = rig.run_session()
        assert not [
            r
            for r in rig.records("note", session)
            if isinstance(r, Note) and r.data and "comparison" in r.data
        ]
    finally:
        rig.close()


# ------------------------------------------------------------------------- the clinician's command


def test_one_command_sets_up_a_signed_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_PASSPHRASE, "a long clinic passphrase")
    monkeypatch.setenv("TENS_CONTROL_CONFIG", str(tmp_path / "config.toml"))
    key = tmp_path / "dr.key"
    rx = tmp_path / "rx.toml"
    assert main(["clinician", "keygen", "--name", "Dr A", "-o", str(key)]) == 0
    assert main(["prescription", "new", "-o", str(rx)]) == 0
    capsys.readouterr()
    argv = ["prescription", "compare", str(rx), "--programs", "conventional,acupuncture-like"]
    argv += ["--seed", "42", "--start", "2027-01-04", "--washout-days", "1", "--blocks", "2"]
    assert main([*argv, "--key", str(key), "--patient", "p-1"]) == 0
    out = capsys.readouterr().out
    signed = load_prescription(tmp_path / "rx.signed.toml")
    comparison = signed.comparison
    assert comparison is not None
    assert comparison.seed == 42
    assert comparison.start == date(2027, 1, 4)
    assert comparison.blocks_per_program == 2
    assert signed.patient == "p-1"
    enrolled = enrolment("p-1", load_private_key(key, "a long clinic passphrase"))
    assert signature_problem(signed, enrolled, datetime.now(UTC)) is None
    for b in comparison.schedule():  # the schedule printed, block by block
        assert f"block {b.index + 1:>2} (cycle {b.cycle + 1}): {b.first_day:%a %d %b %Y}" in out
        assert b.program in out
    # without a key: written unsigned beside it, with how to sign it
    assert main(argv) == 0
    assert "prescription sign rx.compare.toml" in capsys.readouterr().out
    assert load_prescription(tmp_path / "rx.compare.toml").signature is None
    # refused, in one line each, and nothing overwritten
    before = (tmp_path / "rx.compare.toml").read_text()
    for extra, words in (
        ([], "exists"),
        (["--force", "--blocks", "12"], "blocks_per_program"),
        (["--force", "--start", "4.1.2027"], "YYYY-MM-DD"),
    ):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert words in err[0]
    assert (tmp_path / "rx.compare.toml").read_text() == before
    bad = ["prescription", "compare", str(rx), "--programs", "burst,conventional"]
    assert main(bad) == 2
    assert "burst not among the prescribed programs" in capsys.readouterr().err


def test_the_review_screen_shows_the_verdict_and_what_is_behind_it(
    effect_data: PatientData,
) -> None:
    data = effect_data
    result = compare_data(data, UTC)
    view = PatientView(data, summarize_data(data, UTC), UTC, comparison=result)
    lines = {line.label.strip(): line.text for line in figure_lines(view)}
    assert result is not None
    assert lines["Programs"].startswith(result.verdict)
    assert lines["burst"].startswith("mean daily pain ")
    assert "in 4 of 4 blocks; each session -2.0 (n=28)" in lines["burst"]
    assert "p = 0.125" in lines["Randomisation"]
    assert "cannot be below 0.125" in lines["Randomisation"]
    assert lines["Blocks"].count("·") == 7


def test_the_json_report_carries_every_figure_of_the_comparison(effect_data: PatientData) -> None:
    document = json.loads(render(effect_data, "json", tz=UTC))
    comparison = document["program_comparison"]
    result = compare_data(effect_data, UTC)
    assert result is not None
    assert comparison["verdict"] == result.verdict
    assert comparison["plan"]["seed"] == 7
    assert len(comparison["blocks"]) == 8
    (pair,) = comparison["pairs"]
    assert pair["better"] == "burst"
    assert pair["p_randomisation"] == pytest.approx(0.125)
    assert "summary" in document
