"""Where the pads go, as a small picture drawn in the terminal (no Textual: plain text).

The picture shows the residual limb and the intact limb side by side, each pad as its channel's
number in brackets (``[1]``): on the residual limb (a pair one above the other), over the
transected nerve (high on the residual limb), or on the mirror site of the intact limb
(contralateral). Pads on any other site are named below the picture, not drawn: a picture that
guessed where "thigh" is on this patient's body would mislead more than words.
"""

from __future__ import annotations

from collections.abc import Sequence

from tens_control.sites import ChannelPlacement, Side, Site

STUMP_SLOTS = ("nerve", "upper", "lower")
LIMB_SLOTS = ("upper", "lower")
DRAWN = frozenset({Site.RESIDUAL_LIMB, Site.TRANSECTED_NERVE, Site.CONTRALATERAL})
CELL = 12
"""Inner width of each limb."""


def _slots(placements: Sequence[tuple[int, ChannelPlacement]]) -> tuple[dict[str, list[int]], ...]:
    stump: dict[str, list[int]] = {slot: [] for slot in STUMP_SLOTS}
    limb: dict[str, list[int]] = {slot: [] for slot in LIMB_SLOTS}
    for channel, p in placements:
        pads = [p.site, p.other_site]
        on_stump = [s for s in pads if s is Site.RESIDUAL_LIMB]
        if Site.TRANSECTED_NERVE in pads:
            stump["nerve"].append(channel)
            if on_stump:
                stump["lower"].append(channel)
        elif len(on_stump) == 2:
            stump["upper"].append(channel)
            stump["lower"].append(channel)
        elif on_stump:
            stump["upper"].append(channel)
        mirror = [s for s in pads if s is Site.CONTRALATERAL]
        for slot in LIMB_SLOTS[: len(mirror)]:
            limb[slot].append(channel)
    return stump, limb


def _mark(channels: Sequence[int], label: str = "") -> str:
    text = "".join(f"[{c}]" for c in channels)
    if text and label:
        text = f"{text} {label}"
    return text.center(CELL)[:CELL]


def _side(placements: Sequence[tuple[int, ChannelPlacement]], site: Site) -> str:
    sides = {
        side.value
        for _c, p in placements
        for s, side in ((p.site, p.side), (p.other_site, p.other_side))
        if s is site and side is not None and side is not Side.MIDLINE
    }
    return f" ({'/'.join(sorted(sides))})" if sides else ""


def pad_picture(placements: Sequence[tuple[int, ChannelPlacement]]) -> str:
    """The picture for ``(channel, placement)`` pairs, or "" when no pad is on a drawn site."""
    if not any(s in DRAWN for _c, p in placements for s in (p.site, p.other_site)):
        return ""
    stump, limb = _slots(placements)
    edge = "─" * CELL
    stump_label = ("residual limb" + _side(placements, Site.RESIDUAL_LIMB)).ljust(CELL + 2)
    limb_label = "intact limb" + _side(placements, Site.CONTRALATERAL)
    lines = [
        f"  {stump_label}      {limb_label}",
        f"  ┌{edge}┐      ┌{edge}┐",
        f"  │{_mark(stump['nerve'], 'nerve')}│      │{' ' * CELL}│  [n]: a pad of channel n",
        f"  │{_mark(stump['upper'])}│      │{_mark(limb['upper'])}│",
        f"  │{_mark(stump['lower'])}│      │{_mark(limb['lower'])}│",
        f"  ╰{edge}╯      │{' ' * CELL}│",
        f"  {' ' * (CELL + 2)}      └{edge}┘",
    ]
    others = [
        f"[{c}] {p.describe()}"
        for c, p in placements
        if p.site not in DRAWN or p.other_site not in DRAWN
    ]
    if others:
        lines.append("  also: " + "; ".join(others))
    return "\n".join(line.rstrip() for line in lines)
