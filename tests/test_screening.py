"""The contraindication screen (S12): every "yes" blocks until a clinician override."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from tens_control.cli import main
from tens_control.commands.screening import ask, describe
from tens_control.errors import TensControlError
from tens_control.screening import (
    NONE_REPORTED_NOTE,
    QUESTIONS,
    SHORT_LABELS,
    ClinicianOverride,
    Question,
    Screening,
    ScreeningError,
    from_answers,
    none_reported,
    screening_gate,
    screening_log_note,
)
from tens_control.store import Store
from tens_control.trust.keys import ENV_PASSPHRASE

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
LATER = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _answers(*yes: Question) -> dict[Question, bool]:
    return {q: q in yes for q in Question}


def test_every_design_question_is_asked_in_plain_words() -> None:
    assert list(QUESTIONS) == list(Question)
    assert set(SHORT_LABELS) == set(Question)
    text = " ".join(QUESTIONS.values()).lower()
    for word in (
        "pacemaker",
        "defibrillator",
        "pregnant",
        "epilepsy",
        "heart",
        "cancer",
        "blood clot",
        "bleeding",
        "broken",
        "numb",
        "switch it off",
    ):
        assert word in text, word
    for question in QUESTIONS.values():
        assert question.endswith("?")


def test_no_screening_blocks_a_real_device() -> None:
    reason = screening_gate(None, device_is_simulator=False)
    assert reason is not None
    assert "tens-control screening" in reason


def test_the_simulator_may_run_without_screening_and_the_log_says_so() -> None:
    assert screening_gate(None, device_is_simulator=True) is None
    note = screening_log_note(None, device_is_simulator=True)
    assert note == "simulator: running without contraindication screening"
    blocked = from_answers(_answers(Question.PREGNANCY), at=NOW)
    assert screening_gate(blocked, device_is_simulator=True) is None
    assert "blocks" in (screening_log_note(blocked, device_is_simulator=True) or "")
    assert screening_log_note(none_reported(NOW), device_is_simulator=True) is None


def test_none_reported_passes() -> None:
    screening = none_reported(at=NOW)
    assert screening.notes == NONE_REPORTED_NOTE
    assert screening.positives == ()
    assert not screening.blocks
    assert screening_gate(screening, device_is_simulator=False) is None
    assert screening_log_note(screening, device_is_simulator=False) is None


def test_all_no_answers_pass() -> None:
    screening = from_answers(_answers(), at=NOW)
    assert screening.recorded_by == "patient"
    assert screening_gate(screening, device_is_simulator=False) is None


@pytest.mark.parametrize("question", list(Question))
def test_each_yes_blocks_until_a_clinician_override(question: Question) -> None:
    screening = from_answers(_answers(question), at=NOW)
    assert screening.positives == (question,)
    reason = screening_gate(screening, device_is_simulator=False)
    assert reason is not None
    assert SHORT_LABELS[question] in reason
    assert "--override" in reason
    overridden = screening.with_override(
        "Dr A. Example, cardiology", "reviewed; pads far from the chest", at=LATER
    )
    assert screening_gate(overridden, device_is_simulator=False) is None
    assert [o.question for o in overridden.overrides] == [question]
    assert overridden.overrides[0].who == "Dr A. Example, cardiology"
    assert overridden.answers == screening.answers
    note = screening_log_note(overridden, device_is_simulator=False)
    assert note is not None
    assert "Dr A. Example" in note
    assert "reviewed" in note


def test_an_override_covers_only_the_answers_it_was_given_for() -> None:
    first = from_answers(_answers(Question.ACTIVE_IMPLANT), at=NOW)
    overridden = first.with_override("Dr A", "pacemaker: cardiologist agrees", at=LATER)
    # a new screening with another "yes", carrying the old override over, blocks again
    again = Screening(
        at=LATER,
        answers=_answers(Question.ACTIVE_IMPLANT, Question.PREGNANCY),
        overrides=overridden.overrides,
    )
    assert again.uncovered == (Question.PREGNANCY,)
    reason = screening_gate(again, device_is_simulator=False)
    assert reason is not None
    assert "pregnancy" in reason
    assert "pacemaker" not in reason
    # overriding again adds only the new answer
    both = again.with_override("Dr B", "pregnancy: obstetrician agrees, pads on the arm")
    assert [o.question for o in both.overrides] == [Question.ACTIVE_IMPLANT, Question.PREGNANCY]
    assert [o.who for o in both.overrides] == ["Dr A", "Dr B"]
    assert screening_gate(both, device_is_simulator=False) is None
    with pytest.raises(ScreeningError, match="nothing to override"):
        both.with_override("Dr C", "again")


def test_override_needs_who_and_why() -> None:
    screening = from_answers(_answers(Question.EPILEPSY), at=NOW)
    with pytest.raises(ScreeningError, match=r"override --by NAME"):
        screening.with_override("  ", "reason given here")
    with pytest.raises(ScreeningError, match=r"override --reason TEXT"):
        screening.with_override("Dr A", "")
    with pytest.raises(ValidationError, match="timezone"):
        ClinicianOverride.model_validate(
            {"who": "Dr A", "at": "2026-03-01T10:00:00", "why": "why not"}
        )


def test_override_without_a_yes_is_refused() -> None:
    with pytest.raises(ScreeningError, match="nothing to override"):
        none_reported(NOW).with_override("Dr A", "just in case")


def test_screening_must_answer_every_question() -> None:
    partial = {Question.PREGNANCY: False}
    with pytest.raises(ScreeningError, match=r"screening incomplete: .*no answer to: active"):
        from_answers(partial, at=NOW)
    override = {"question": "epilepsy", "who": "Dr A", "at": NOW, "why": "not needed"}
    with pytest.raises(ValidationError, match="which was answered no"):
        Screening.model_validate({"at": NOW, "answers": _answers(), "overrides": [override]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        Screening.model_validate({"at": NOW, "answers": _answers(), "colour": "red"})


def test_screening_round_trips_through_json() -> None:
    screening = from_answers(_answers(Question.HEART_DISEASE), at=NOW).with_override(
        "Dr A", "stable, reviewed", at=LATER
    )
    back = Screening.model_validate_json(screening.model_dump_json())
    assert back == screening
    assert not back.blocks


# --------------------------------------------------------------------------- the command


def _scripted(replies: list[str]) -> tuple[Callable[[str], str], list[str]]:
    shown: list[str] = []
    queue = list(replies)

    def read(prompt: str) -> str:
        shown.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    return read, shown


def test_ask_reads_each_answer_and_repeats_unclear_ones() -> None:
    replies = ["n", "maybe", "YES", *(["no"] * (len(QUESTIONS) - 2))]
    read, _ = _scripted(replies)
    written: list[str] = []
    answers = ask(read, written.append)
    assert answers[Question.ACTIVE_IMPLANT] is False
    assert answers[Question.PREGNANCY] is True
    assert sum(answers.values()) == 1
    assert written[0].startswith(f"1 of {len(QUESTIONS)}. ")
    assert "   Please type y for yes or n for no." in written
    assert from_answers(answers, at=NOW).blocks


def test_ask_stops_without_an_answer_when_input_ends_or_stays_unclear() -> None:
    read, _ = _scripted(["n", "n"])
    with pytest.raises(TensControlError, match="input ended"):
        ask(read, lambda _: None)
    read, _ = _scripted(["?"] * 10)
    with pytest.raises(TensControlError, match="no clear y or n"):
        ask(read, lambda _: None)


def test_describe_lists_answers_overrides_and_the_verdict() -> None:
    screening = from_answers(_answers(Question.EPILEPSY), at=NOW)
    assert "Stimulation: blocked" in describe(screening)
    text = describe(screening.with_override("Dr A", "seizure-free 10 years", at=LATER))
    assert "epilepsy: yes" in text
    assert "override of epilepsy by Dr A (unsigned)" in text
    assert text.endswith("Stimulation: allowed")


def test_override_options_need_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["screening", "--override", "--by", "Dr A"]) == 2
    assert "--override needs --key FILE" in capsys.readouterr().err
    assert main(["screening", "--by", "Dr A"]) == 2
    assert "go with --override" in capsys.readouterr().err


def _stdin(monkeypatch: pytest.MonkeyPatch, replies: list[str]) -> None:
    queue = list(replies)

    def fake_input(prompt: str = "") -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)

    monkeypatch.setattr("builtins.input", fake_input)


def test_cli_screening_stores_answers_override_and_carries_it_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", str(tmp_path / "db.sqlite3")]
    monkeypatch.setenv(ENV_PASSPHRASE, "a long clinic passphrase")
    key = tmp_path / "dr-a.key"
    assert main(["clinician", "keygen", "--name", "Dr A", "-o", str(key)]) == 0
    assert main(["screening", "--show", *db]) == 0
    assert "No screening on record" in capsys.readouterr().out
    override = ["screening", "--override", "--key", str(key)]
    assert main([*override, "--reason", "fine", *db]) == 2
    assert "there is no database at" in capsys.readouterr().err

    yes_to_implant = ["y"] + ["n"] * (len(QUESTIONS) - 1)
    _stdin(monkeypatch, yes_to_implant)
    assert main(["screening", *db]) == 0
    out = capsys.readouterr().out
    assert "pacemaker, ICD or other active implant" in out
    assert "Contact your clinician" in out
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        stored = store.latest_screening()
        assert stored is not None
        assert stored.answers["active_implant"] is True
        latest = Screening.model_validate(stored.model_dump(exclude={"uid"}))
    assert screening_gate(latest, device_is_simulator=False) is not None

    # not enrolled: no override can be checked, so none is recorded
    assert main([*override, "--reason", "leg pads only", *db]) == 2
    assert "not enrolled with a clinic" in capsys.readouterr().err
    enrolment = tmp_path / "enrolment.toml"
    assert (
        main(
            [
                "clinician",
                "enrolment",
                "--clinic",
                "Example clinic",
                "--patient",
                "patient-1",
                "--key",
                str(key),
                "-o",
                str(enrolment),
            ]
        )
        == 0
    )
    assert main(["enrol", str(enrolment), *db]) == 0
    capsys.readouterr()
    assert main([*override, "--reason", "leg pads only", *db]) == 0
    assert "Recorded the signed override by Dr A" in capsys.readouterr().out
    assert main(["screening", "--show", *db]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Stimulation: allowed")

    # answering again: the reviewed "yes" stays covered, a new "yes" blocks
    _stdin(monkeypatch, ["y", "y"] + ["n"] * (len(QUESTIONS) - 2))
    assert main(["screening", *db]) == 0
    assert "You answered yes to: pregnancy." in capsys.readouterr().out
    with Store.open(tmp_path / "db.sqlite3", create=False, recover=False) as store:
        stored = store.latest_screening()
        assert stored is not None
        latest = Screening.model_validate(stored.model_dump(exclude={"uid"}))
        assert len(store.screenings()) == 3
    assert latest.uncovered == (Question.PREGNANCY,)
    assert [o.question for o in latest.overrides] == [Question.ACTIVE_IMPLANT]

    assert main(["screening", "--none", *db]) == 0
    assert main(["screening", "--show", *db]) == 0
    text = capsys.readouterr().out
    assert NONE_REPORTED_NOTE in text
    assert text.rstrip().endswith("Stimulation: allowed")


def test_cli_screening_interrupted_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite3"
    _stdin(monkeypatch, ["n", "n"])
    assert main(["screening", "--db", str(db)]) == 2
    assert "nothing was recorded" in capsys.readouterr().err
    with Store.open(db, create=False, recover=False) as store:
        assert store.screenings() == []
