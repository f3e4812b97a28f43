"""Pain ratings (NRS 0–10, missing is never 0), the weekly PEG, diary and adverse events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tens_control.pain import (
    PEG_ITEMS,
    TREATMENT_KINDS,
    AdverseEvent,
    AdverseKind,
    DiaryEntry,
    DiaryKind,
    PainContext,
    PainRating,
    PainRatingError,
    PainSite,
    PegItem,
    PegScore,
    RatingTime,
    Severity,
    nrs,
    parse_nrs,
    rating_prompt,
)

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("score", range(11))
def test_every_nrs_value_is_accepted(score: int) -> None:
    rating = PainRating(at=NOW, when=RatingTime.BEFORE, nrs=score)
    assert rating.nrs == score
    assert not rating.missing
    assert nrs(score) == score
    assert parse_nrs(str(score)) == score


@pytest.mark.parametrize("bad", [11, -1, 100])
def test_out_of_range_ratings_are_refused_with_a_clear_message(bad: int) -> None:
    with pytest.raises(PainRatingError, match=rf"from 0 \(no pain\) to 10 .*got {bad}"):
        nrs(bad)
    with pytest.raises(PainRatingError, match=rf"from 0 \(no pain\) to 10 .*got {bad}"):
        parse_nrs(str(bad))
    with pytest.raises(ValidationError, match="nrs"):
        PainRating(at=NOW, when=RatingTime.AFTER, nrs=bad)


@pytest.mark.parametrize("bad", [3.5, "7", True, None])
def test_ratings_must_be_whole_numbers(bad: object) -> None:
    with pytest.raises(PainRatingError, match="whole number"):
        nrs(bad)


@pytest.mark.parametrize("bad", [3.5, "7", True])
def test_rating_model_refuses_non_integers(bad: object) -> None:
    with pytest.raises(ValidationError):
        PainRating.model_validate({"at": NOW, "when": "before", "nrs": bad})


@pytest.mark.parametrize("text", ["seven", "7.5", "1e1", "0x5"])
def test_unreadable_typed_ratings_are_refused(text: str) -> None:
    with pytest.raises(PainRatingError, match=r"whole number from 0 to 10, or 'skip'"):
        parse_nrs(text)


@pytest.mark.parametrize("text", ["", "  ", "skip", "SKIP", "-", "n/a"])
def test_a_skipped_rating_is_missing_never_zero(text: str) -> None:
    assert parse_nrs(text) is None
    rating = PainRating(at=NOW, when=RatingTime.AFTER, nrs=parse_nrs(text))
    assert rating.missing
    assert rating.nrs is None
    assert rating.nrs != 0
    # survives a JSON round trip as missing (the store's likely path)
    back = PainRating.model_validate_json(rating.model_dump_json())
    assert back.nrs is None
    assert back == rating


def test_zero_is_an_answer_not_missing() -> None:
    rating = PainRating(at=NOW, when=RatingTime.BEFORE, nrs=0)
    assert not rating.missing
    assert parse_nrs("0") == 0
    assert parse_nrs(" 0 ") == 0


def test_nrs_is_required_so_missing_is_always_explicit() -> None:
    with pytest.raises(ValidationError, match="nrs"):
        PainRating.model_validate({"at": NOW, "when": "before"})


def test_rating_context_fields() -> None:
    rating = PainRating(
        at=NOW,
        when=RatingTime.PLUS_30_MIN,
        pain=PainSite.RESIDUAL_LIMB,
        context=PainContext.MOVEMENT,
        nrs=4,
    )
    assert rating.when.value == "plus_30_min"
    assert rating.pain.value == "residual_limb"
    assert rating.context.value == "movement"
    assert {t.value for t in RatingTime} == {"before", "during", "after", "plus_30_min", "diary"}
    assert {k.value for k in PainSite} == {"phantom", "residual_limb", "other"}
    default = PainRating(at=NOW, when=RatingTime.DIARY, nrs=2)
    assert (default.pain, default.context) == (PainSite.PHANTOM, PainContext.REST)


def test_ratings_need_a_time_zone_and_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        PainRating.model_validate({"at": "2026-03-01T09:30:00", "when": "before", "nrs": 3})
    with pytest.raises(ValidationError, match="Extra inputs"):
        PainRating.model_validate({"at": NOW, "when": "before", "nrs": 3, "mood": "ok"})
    with pytest.raises(ValidationError, match="when"):
        PainRating.model_validate({"at": NOW, "when": "later", "nrs": 3})


def test_prompts_distinguish_phantom_and_stump_and_rest_and_movement() -> None:
    phantom = rating_prompt(PainSite.PHANTOM, PainContext.REST)
    stump = rating_prompt(PainSite.RESIDUAL_LIMB, PainContext.MOVEMENT)
    assert "phantom" in phantom
    assert "at rest" in phantom
    assert "stump" in stump
    assert "when you move" in stump
    assert "0 = no pain" in phantom


# --------------------------------------------------------------------------- PEG


def test_peg_score_is_the_mean_of_three_items() -> None:
    peg = PegScore(at=NOW, pain=6, enjoyment=3, activity=6)
    assert peg.score == pytest.approx(5.0)
    assert peg.interference == pytest.approx(4.5)
    assert peg.items == {
        PegItem.PAIN: 6,
        PegItem.ENJOYMENT: 3,
        PegItem.ACTIVITY: 6,
    }


def test_peg_with_a_skipped_item_has_no_score_and_zero_still_counts() -> None:
    skipped = PegScore(at=NOW, pain=6, enjoyment=None, activity=6)
    assert skipped.score is None
    assert skipped.interference is None
    zeros = PegScore(at=NOW, pain=0, enjoyment=0, activity=0)
    assert zeros.score == 0.0


@pytest.mark.parametrize("field", ["pain", "enjoyment", "activity"])
@pytest.mark.parametrize("bad", [11, -1])
def test_peg_items_are_nrs_bounded(field: str, bad: int) -> None:
    data: dict[str, object] = {"at": NOW, "pain": 1, "enjoyment": 1, "activity": 1}
    data[field] = bad
    with pytest.raises(ValidationError, match=field):
        PegScore.model_validate(data)


def test_peg_wording_is_ours_and_covers_the_three_domains() -> None:
    assert set(PEG_ITEMS) == set(PegItem)
    text = " ".join(PEG_ITEMS.values()).lower()
    assert "enjoyment of life" in text
    assert "everyday activities" in text
    assert "on average" in text
    # not the licensed Brief Pain Inventory phrasing
    for bpi in ("does not interfere", "completely interferes", "as bad as you can imagine"):
        assert bpi not in text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10))
def test_peg_score_stays_in_range(a: int, b: int, c: int) -> None:
    score = PegScore(at=NOW, pain=a, enjoyment=b, activity=c).score
    assert score is not None
    assert 0 <= score <= 10


# --------------------------------------------------------------------------- diary


def test_pain_episode() -> None:
    episode = DiaryEntry.pain_episode(
        NOW, duration_minutes=45, severity=8, notes="burning, woke me up"
    )
    assert episode.kind is DiaryKind.PAIN_EPISODE
    assert episode.pain is PainSite.PHANTOM
    assert episode.nrs == 8
    assert episode.duration == timedelta(minutes=45)
    unknown = DiaryEntry.pain_episode(NOW)
    assert unknown.nrs is None  # severity not given is missing, not 0
    assert unknown.duration is None
    with pytest.raises(ValidationError, match="nrs"):
        DiaryEntry.pain_episode(NOW, severity=11)
    with pytest.raises(ValueError, match="duration_minutes"):
        DiaryEntry.pain_episode(NOW, duration_minutes=-1)
    with pytest.raises(ValidationError, match="needs pain"):
        DiaryEntry(kind=DiaryKind.PAIN_EPISODE, start=NOW)


@pytest.mark.parametrize("kind", TREATMENT_KINDS)
def test_other_treatments(kind: DiaryKind) -> None:
    notes = "described" if kind is DiaryKind.OTHER else ""
    t = DiaryEntry.treatment(kind, NOW, notes=notes)
    assert t.end is None
    assert t.nrs is None


def test_other_treatment_rules() -> None:
    infusion = DiaryEntry.treatment(
        DiaryKind.KETAMINE_INFUSION,
        NOW,
        end=NOW + timedelta(days=4),
        notes="5-day inpatient infusion",
    )
    assert infusion.duration == timedelta(days=4)
    with pytest.raises(ValidationError, match="end must not be before start"):
        DiaryEntry.treatment(DiaryKind.PHYSIOTHERAPY, NOW, end=NOW - timedelta(days=1))
    with pytest.raises(ValidationError, match="'other' needs notes"):
        DiaryEntry.treatment(DiaryKind.OTHER, NOW)
    with pytest.raises(ValidationError, match="belong to pain episodes"):
        DiaryEntry(kind=DiaryKind.MIRROR_THERAPY, start=NOW, nrs=3)
    with pytest.raises(ValueError, match="pain_episode"):
        DiaryEntry.treatment(DiaryKind.PAIN_EPISODE, NOW)
    assert {k.value for k in TREATMENT_KINDS} == {
        "medication_change",
        "ketamine_infusion",
        "mirror_therapy",
        "physiotherapy",
        "other",
    }


def test_adverse_events() -> None:
    event = AdverseEvent(
        at=NOW, kind=AdverseKind.SKIN_REDNESS, severity=Severity.MILD, notes="channel 1 pads"
    )
    with pytest.raises(ValidationError, match="'other' needs notes"):
        AdverseEvent(at=NOW, kind=AdverseKind.OTHER, severity=Severity.MODERATE)
    with pytest.raises(ValidationError, match="severity"):
        AdverseEvent.model_validate({"at": NOW, "kind": "burn", "severity": "awful"})
    assert {k.value for k in AdverseKind} == {"skin_redness", "burn", "headache", "other"}
    back = AdverseEvent.model_validate_json(event.model_dump_json())
    assert back == event


# --------------------------------------------------------------------------- the store's records


def test_every_model_converts_to_the_store_record_of_the_same_shape() -> None:
    from tens_control.store import records

    pairs: list[tuple[BaseModel, type[BaseModel]]] = [
        (
            PainRating(at=NOW, when=RatingTime.PLUS_30_MIN, nrs=None, note="skipped"),
            records.PainRating,
        ),
        (
            PainRating(
                at=NOW,
                when=RatingTime.AFTER,
                pain=PainSite.RESIDUAL_LIMB,
                context=PainContext.MOVEMENT,
                nrs=0,
            ),
            records.PainRating,
        ),
        (PegScore(at=NOW, pain=5, enjoyment=None, activity=7), records.PegScore),
        (DiaryEntry.pain_episode(NOW, duration_minutes=30, severity=6), records.DiaryEntry),
        (
            DiaryEntry.treatment(DiaryKind.KETAMINE_INFUSION, NOW, end=NOW + timedelta(days=5)),
            records.DiaryEntry,
        ),
        (
            AdverseEvent(at=NOW, kind=AdverseKind.BURN, severity=Severity.SEVERE),
            records.AdverseEvent,
        ),
    ]
    for model, record_type in pairs:
        record = record_type.model_validate(model.model_dump())
        back = type(model).model_validate(record.model_dump(exclude={"uid", "session"}))
        assert back == model
    assert {k.value for k in DiaryKind} == {k.value for k in records.DiaryKind}
    assert {k.value for k in PainSite} == {k.value for k in records.PainSite}
    assert {k.value for k in PainContext} == {k.value for k in records.PainContext}
    assert {k.value for k in RatingTime} == {k.value for k in records.RatingTime}
    assert {k.value for k in AdverseKind} == {k.value for k in records.AdverseKind}
    assert {k.value for k in Severity} == {k.value for k in records.Severity}
