"""Electrode sites and pad sizes (DESIGN.md S13, and the electrode area the S5 dose checks use).

Every channel drives one pair of pads. :class:`ChannelPlacement` says where the two pads go
(:class:`Site`, optionally a :class:`Side`) and how big they are (:class:`PadSize`).

Residual-limb (stump), over-a-transected-nerve and contralateral (mirror) sites are first-class
choices. The front of the neck, the head, the eyes, the mouth and any pair that sends current
through the chest (transthoracic) are refused, with the reason, wherever a placement is built.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from tens_control.errors import TensControlError


class SiteError(TensControlError):
    """A placement is refused, or a pad size cannot be read. The message says why."""


class Site(StrEnum):
    """Where a pad goes. The first three are the sites used for post-amputation pain."""

    RESIDUAL_LIMB = "residual_limb"
    TRANSECTED_NERVE = "transected_nerve"
    CONTRALATERAL = "contralateral"
    SHOULDER = "shoulder"
    UPPER_ARM = "upper_arm"
    FOREARM = "forearm"
    HAND = "hand"
    HIP = "hip"
    THIGH = "thigh"
    KNEE = "knee"
    LOWER_LEG = "lower_leg"
    FOOT = "foot"
    BACK_OF_NECK = "back_of_neck"
    UPPER_BACK = "upper_back"
    LOWER_BACK = "lower_back"
    BUTTOCK = "buttock"
    CHEST = "chest"
    ABDOMEN = "abdomen"
    OTHER = "other"
    # refused
    FRONT_OF_NECK = "front_of_neck"
    HEAD = "head"
    EYES = "eyes"
    MOUTH = "mouth"


SITE_DESCRIPTIONS: dict[Site, str] = {
    Site.RESIDUAL_LIMB: "residual limb (stump)",
    Site.TRANSECTED_NERVE: "over a transected nerve (sensation may project into the phantom)",
    Site.CONTRALATERAL: "contralateral (mirror) site on the intact limb",
    Site.SHOULDER: "shoulder",
    Site.UPPER_ARM: "upper arm",
    Site.FOREARM: "forearm",
    Site.HAND: "hand",
    Site.HIP: "hip",
    Site.THIGH: "thigh",
    Site.KNEE: "knee",
    Site.LOWER_LEG: "lower leg",
    Site.FOOT: "foot",
    Site.BACK_OF_NECK: "back of the neck",
    Site.UPPER_BACK: "upper back",
    Site.LOWER_BACK: "lower back",
    Site.BUTTOCK: "buttock",
    Site.CHEST: "chest (front), both pads on the same side",
    Site.ABDOMEN: "abdomen (not in pregnancy)",
    Site.OTHER: "another site (describe it in the note)",
    Site.FRONT_OF_NECK: "front of the neck",
    Site.HEAD: "head",
    Site.EYES: "eyes",
    Site.MOUTH: "mouth",
}

REFUSED_SITES: dict[Site, str] = {
    Site.FRONT_OF_NECK: (
        "current over the front of the neck can act on the carotid sinus and the nerves of "
        "the larynx (sudden drop in blood pressure or heart rate, spasm of the airway)"
    ),
    Site.HEAD: "current through the head (transcerebral) is not for a home TENS unit",
    Site.EYES: "current over or near the eyes can injure them",
    Site.MOUTH: "current in or over the mouth is not for a home TENS unit",
}
"""Sites refused for every channel, with the reason given to the user."""

TRANSTHORACIC_REASON = (
    "a pad pair that sends current through the chest (transthoracic) can disturb the heart's rhythm"
)

_BACK_OF_TRUNK = frozenset({Site.UPPER_BACK, Site.LOWER_BACK, Site.BACK_OF_NECK})

FIRST_CLASS_SITES: tuple[Site, ...] = (
    Site.RESIDUAL_LIMB,
    Site.TRANSECTED_NERVE,
    Site.CONTRALATERAL,
)
"""The sites offered first when choosing a placement for post-amputation pain."""


def allowed_sites() -> tuple[Site, ...]:
    """Every site a pad may go on, first-class sites first (for pickers)."""
    rest = tuple(s for s in Site if s not in REFUSED_SITES and s not in FIRST_CLASS_SITES)
    return FIRST_CLASS_SITES + rest


class Side(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    MIDLINE = "midline"


# --------------------------------------------------------------------------- pads

MIN_PAD_AREA_CM2 = 2.8
"""Smaller pads concentrate current (burn risk). Manufacturers advise no pad smaller than
3/4 inch (1.9 cm) across, which is about 2.8 cm² for a round pad."""
MAX_PAD_AREA_CM2 = 400.0
"""Larger than any TENS pad; a value above this is a typing mistake."""

_CM_PER_INCH = 2.54
_RECT = re.compile(
    r"^\s*(?P<w>\d+(?:\.\d+)?)\s*[x×*]\s*(?P<h>\d+(?:\.\d+)?)\s*(?P<unit>cm|in|inch|\")?\s*$",
    re.IGNORECASE,
)
_ROUND = re.compile(
    r"^\s*(?:round|⌀|ø|dia(?:meter)?)\s*-?\s*(?P<d>\d+(?:\.\d+)?)\s*(?P<unit>cm|in|inch|\")?\s*$",
    re.IGNORECASE,
)


class PadShape(StrEnum):
    RECTANGLE = "rectangle"
    ROUND = "round"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class PadSize(BaseModel):
    """One pad's size, in centimetres. Written in files as ``"5x5 cm"`` or ``"round 3.2 cm"``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shape: PadShape
    width_cm: Annotated[float, Field(gt=0, le=50)]
    """Width, or the diameter of a round pad."""
    height_cm: Annotated[float, Field(gt=0, le=50)]
    """Height (equal to the diameter for a round pad)."""

    @field_validator("width_cm", "height_cm")
    @classmethod
    def _to_tenth_mm(cls, value: float) -> float:
        return round(value, 2)

    @model_validator(mode="after")
    def _sane(self) -> PadSize:
        if self.shape is PadShape.ROUND and self.width_cm != self.height_cm:
            raise ValueError("a round pad has one diameter (width_cm must equal height_cm)")
        area = self.area_cm2
        if area < MIN_PAD_AREA_CM2:
            raise ValueError(
                f"a pad of {area:.2f} cm² is too small: pads smaller than "
                f"{MIN_PAD_AREA_CM2} cm² concentrate current and can burn the skin"
            )
        if area > MAX_PAD_AREA_CM2:
            raise ValueError(f"a pad of {area:.0f} cm² is larger than any TENS pad")
        return self

    @property
    def area_cm2(self) -> float:
        """Skin area under the pad, for current and power density (S5)."""
        if self.shape is PadShape.ROUND:
            return math.pi * (self.width_cm / 2.0) ** 2
        return self.width_cm * self.height_cm

    @property
    def label(self) -> str:
        if self.shape is PadShape.ROUND:
            return f"round {_number(self.width_cm)} cm"
        return f"{_number(self.width_cm)}x{_number(self.height_cm)} cm"

    def __str__(self) -> str:
        return self.label

    @classmethod
    def rectangle(cls, width_cm: float, height_cm: float) -> PadSize:
        return cls(shape=PadShape.RECTANGLE, width_cm=width_cm, height_cm=height_cm)

    @classmethod
    def round(cls, diameter_cm: float) -> PadSize:
        return cls(shape=PadShape.ROUND, width_cm=diameter_cm, height_cm=diameter_cm)

    @classmethod
    def parse(cls, text: str) -> PadSize:
        """Read ``"5x5"``, ``"5x9 cm"``, ``"2x2 in"``, ``"round 3.2"``, ``"round-3.2 cm"``.

        Sizes without a unit are centimetres. Raises :class:`SiteError` naming the text.
        """
        try:
            return cls._from_text(text)
        except ValueError as error:
            raise SiteError(str(error)) from None

    @classmethod
    def _from_text(cls, text: str) -> PadSize:
        try:
            rect = _RECT.match(text)
            if rect:
                scale = _unit_scale(rect.group("unit"))
                w, h = float(rect.group("w")) * scale, float(rect.group("h")) * scale
                return cls.rectangle(w, h)
            rnd = _ROUND.match(text)
            if rnd:
                return cls.round(float(rnd.group("d")) * _unit_scale(rnd.group("unit")))
        except ValidationError as error:
            first = error.errors()[0]
            msg = str(first["msg"]).removeprefix("Value error, ")
            field = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"pad size {text!r}: {field + ': ' if field else ''}{msg}") from None
        raise ValueError(
            f'pad size {text!r} not understood: write width x height in cm (e.g. "5x5 cm") '
            'or "round D cm" for a round pad of diameter D'
        )


def _unit_scale(unit: str | None) -> float:
    if unit is None or unit.lower() == "cm":
        return 1.0
    return _CM_PER_INCH


def _pad_before(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return PadSize._from_text(value)
        except ValueError as error:
            raise ValueError(str(error)) from None
    return value


PadField = Annotated[
    PadSize,
    BeforeValidator(_pad_before),
    PlainSerializer(lambda pad: pad.label, return_type=str),
]
"""A pad size that reads and writes as its text label (used in prescriptions)."""

COMMON_PADS: tuple[PadSize, ...] = (
    PadSize.rectangle(5, 5),
    PadSize.rectangle(5, 9),
    PadSize.rectangle(5, 10),
    PadSize.rectangle(4, 4),
    PadSize.rectangle(2, 2),
    PadSize.round(3.2),
    PadSize.round(5),
)
"""Sizes offered in pickers. Any size in range may be written in a prescription."""

DEFAULT_PAD = PadSize.rectangle(5, 5)
"""The pad supplied with most home units (5x5 cm, 25 cm²)."""


# --------------------------------------------------------------------------- placements


def site_refusal(site: Site) -> str | None:
    """Why a pad may not go on ``site``, or None if it may."""
    reason = REFUSED_SITES.get(site)
    if reason is None:
        return None
    return f"{SITE_DESCRIPTIONS[site]} is refused: {reason}"


def pair_refusal(
    site: Site, other: Site, side: Side | None = None, other_side: Side | None = None
) -> str | None:
    """Why a channel's two pads may not go on ``site`` and ``other``, or None if they may."""
    for one in (site, other):
        reason = site_refusal(one)
        if reason is not None:
            return reason
    pair = {site, other}
    if Site.CHEST in pair and pair & _BACK_OF_TRUNK:
        return f"chest with back is refused: {TRANSTHORACIC_REASON}"
    if (
        site is Site.CHEST
        and other is Site.CHEST
        and side is not None
        and other_side is not None
        and side != other_side
    ):
        return f"pads on both sides of the chest are refused: {TRANSTHORACIC_REASON}"
    if Site.CHEST in pair and Side.MIDLINE in (side, other_side):
        return f"a chest pad on the midline is refused: {TRANSTHORACIC_REASON}"
    return None


class ChannelPlacement(BaseModel):
    """Where one channel's pads go, and their size. Refused placements cannot be built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: Site
    """Where the pads go (both, unless ``second_site`` is given)."""
    side: Side | None = None
    second_site: Site | None = None
    """Where the second pad goes, if not at ``site``."""
    second_side: Side | None = None
    pad: PadField = DEFAULT_PAD
    note: str = ""

    @field_validator("site", "second_site")
    @classmethod
    def _site_allowed(cls, site: Site | None) -> Site | None:
        reason = None if site is None else site_refusal(site)
        if reason is not None:
            raise ValueError(reason)
        return site

    @model_validator(mode="after")
    def _allowed(self) -> ChannelPlacement:
        reason = pair_refusal(self.site, self.other_site, self.side, self.other_side)
        if reason is not None:
            raise ValueError(reason)
        if Site.OTHER in (self.site, self.second_site) and not self.note.strip():
            raise ValueError("site 'other' needs a note saying where the pads go")
        return self

    @property
    def other_site(self) -> Site:
        return self.second_site if self.second_site is not None else self.site

    @property
    def other_side(self) -> Side | None:
        return self.second_side if self.second_side is not None else self.side

    @property
    def area_cm2(self) -> float:
        """The electrode area for the dose checks: one pad's area (both pads are the same)."""
        return self.pad.area_cm2

    def describe(self) -> str:
        def one(site: Site, side: Side | None) -> str:
            text = SITE_DESCRIPTIONS[site]
            return f"{side.value} {text}" if side is not None else text

        where = one(self.site, self.side)
        if self.second_site is not None or self.second_side is not None:
            where = f"{where} and {one(self.other_site, self.other_side)}"
        text = f"{where}, {self.pad.label} pads ({self.area_cm2:.1f} cm²)"
        return f"{text}; {self.note}" if self.note else text
