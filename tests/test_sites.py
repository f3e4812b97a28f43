"""Electrode sites (S13) and pad sizes (the area the S5 dose checks use)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from drivers.base import ChannelSettings
from drivers.limits import DoseVerdict, dose
from tens_control.sites import (
    COMMON_PADS,
    FIRST_CLASS_SITES,
    MIN_PAD_AREA_CM2,
    REFUSED_SITES,
    ChannelPlacement,
    PadShape,
    PadSize,
    Side,
    Site,
    SiteError,
    allowed_sites,
    pair_refusal,
    site_refusal,
)


def test_amputation_sites_are_first_class_and_offered_first() -> None:
    assert FIRST_CLASS_SITES == (Site.RESIDUAL_LIMB, Site.TRANSECTED_NERVE, Site.CONTRALATERAL)
    assert allowed_sites()[:3] == FIRST_CLASS_SITES
    for site in FIRST_CLASS_SITES:
        assert ChannelPlacement(site=site).site is site


@pytest.mark.parametrize("site", [Site.FRONT_OF_NECK, Site.HEAD, Site.EYES, Site.MOUTH])
def test_dangerous_sites_are_refused_with_the_reason(site: Site) -> None:
    assert site not in allowed_sites()
    reason = site_refusal(site)
    assert reason is not None
    assert "refused" in reason
    assert REFUSED_SITES[site] in reason
    with pytest.raises(ValidationError, match="refused"):
        ChannelPlacement(site=site)
    # also as the second pad of an allowed site
    with pytest.raises(ValidationError, match="refused"):
        ChannelPlacement(site=Site.SHOULDER, second_site=site)


def test_front_of_neck_reason_names_the_carotid() -> None:
    assert "carotid" in (site_refusal(Site.FRONT_OF_NECK) or "")


@pytest.mark.parametrize("back", [Site.UPPER_BACK, Site.LOWER_BACK, Site.BACK_OF_NECK])
def test_transthoracic_pairs_are_refused(back: Site) -> None:
    for first, second in ((Site.CHEST, back), (back, Site.CHEST)):
        reason = pair_refusal(first, second)
        assert reason is not None
        assert "transthoracic" in reason
        with pytest.raises(ValidationError, match="transthoracic"):
            ChannelPlacement(site=first, second_site=second)


def test_chest_pads_across_the_midline_are_refused_but_one_side_is_allowed() -> None:
    with pytest.raises(ValidationError, match="both sides of the chest"):
        ChannelPlacement(site=Site.CHEST, side=Side.LEFT, second_side=Side.RIGHT)
    with pytest.raises(ValidationError, match="midline"):
        ChannelPlacement(site=Site.CHEST, side=Side.MIDLINE)
    ok = ChannelPlacement(site=Site.CHEST, side=Side.LEFT)
    assert ok.other_site is Site.CHEST
    assert ok.other_side is Side.LEFT


def test_back_pairs_without_chest_are_allowed() -> None:
    assert pair_refusal(Site.UPPER_BACK, Site.LOWER_BACK) is None
    assert pair_refusal(Site.RESIDUAL_LIMB, Site.TRANSECTED_NERVE) is None


def test_site_other_needs_a_note() -> None:
    with pytest.raises(ValidationError, match="needs a note"):
        ChannelPlacement(site=Site.OTHER)
    assert ChannelPlacement(site=Site.OTHER, note="behind the knee").note == "behind the knee"


@pytest.mark.parametrize(
    ("text", "area"),
    [
        ("5x5", 25.0),
        ("5x5 cm", 25.0),
        ("5X9cm", 45.0),
        ("4 x 4", 16.0),
        ("2x2", 4.0),
        ("5×10 cm", 50.0),
        ("2x2 in", 2.54 * 2.54 * 4),
        ("round 3.2", math.pi * 1.6**2),
        ("round-3.2 cm", math.pi * 1.6**2),
        ("round 5 cm", math.pi * 2.5**2),
    ],
)
def test_pad_sizes_give_their_area(text: str, area: float) -> None:
    pad = PadSize.parse(text)
    assert pad.area_cm2 == pytest.approx(area, rel=1e-3)
    # the label reads back to the same pad
    assert PadSize.parse(pad.label) == pad


def test_round_pad_label_and_shape() -> None:
    pad = PadSize.parse("round 3.2")
    assert pad.shape is PadShape.ROUND
    assert pad.label == "round 3.2 cm"
    assert str(PadSize.rectangle(5, 9)) == "5x9 cm"


@pytest.mark.parametrize("text", ["", "huge", "5x", "x5", "5x5 mm", "round", "-5x5"])
def test_unreadable_pad_sizes_are_refused_with_the_format(text: str) -> None:
    with pytest.raises(SiteError, match="not understood"):
        PadSize.parse(text)


def test_pads_below_the_minimum_area_are_refused() -> None:
    with pytest.raises(SiteError, match="too small"):
        PadSize.parse("1x1")
    with pytest.raises(SiteError, match="too small"):
        PadSize.parse("round 1.5")
    assert PadSize.parse("round 1.9").area_cm2 >= MIN_PAD_AREA_CM2
    with pytest.raises(SiteError, match="larger than any"):
        PadSize.parse("30x30")


def test_common_pads_are_valid_and_distinct() -> None:
    labels = [p.label for p in COMMON_PADS]
    assert len(set(labels)) == len(labels)
    assert "5x5 cm" in labels
    assert "round 3.2 cm" in labels


def test_placement_reads_pad_text_and_feeds_the_dose_check() -> None:
    small = ChannelPlacement.model_validate({"site": "transected_nerve", "pad": "2x2 cm"})
    large = ChannelPlacement.model_validate({"site": "residual_limb", "pad": "5x5"})
    assert small.area_cm2 == pytest.approx(4.0)
    assert large.area_cm2 == pytest.approx(25.0)
    settings = ChannelSettings(frequency_hz=100, pulse_width_us=200)
    # the worked example: 60 mA, 200 µs, 100 Hz -> 3.0 mA/cm² on 2x2, fine on 5x5
    assert dose(60, settings, small.area_cm2).verdict() is DoseVerdict.NEEDS_OVERRIDE
    assert dose(60, settings, large.area_cm2).verdict() is DoseVerdict.OK
    assert small.model_dump(mode="json")["pad"] == "2x2 cm"


def test_describe_mentions_sites_sides_and_area() -> None:
    p = ChannelPlacement(
        site=Site.RESIDUAL_LIMB,
        side=Side.LEFT,
        second_site=Site.TRANSECTED_NERVE,
        pad=PadSize.rectangle(5, 9),
    )
    text = p.describe()
    assert "left residual limb (stump)" in text
    assert "transected nerve" in text
    assert "45.0 cm²" in text
