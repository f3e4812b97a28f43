"""Words and number formats shared by the screens (no Textual, no heavy imports)."""

from __future__ import annotations

import math

STOP_KEYS = "Esc or Space"
"""How the emergency stop keys are named on screen."""

SIMULATOR_TEXT = "SIMULATOR — no stimulation is delivered"

CAP_WORDS: dict[str, str] = {
    "manufacturer profile": "the manufacturer's limit for this device",
    "device": "the device's own limit",
    "prescription": "your prescription's limit",
    "comfort cap": "your own comfort limit",
    "dose": "the safe limit for the size of your pads",
}
"""Where an intensity limit comes from (``drivers.limits.CapSource`` values), for patients."""

CAP_SHORT: dict[str, str] = {
    "manufacturer profile": "device maker's limit",
    "device": "device limit",
    "prescription": "prescription limit",
    "comfort cap": "comfort limit",
    "dose": "dose limit (pad size)",
}

LEVEL_WORDS: dict[str, str] = {
    "alarm": "ALARM",
    "warning": "Warning",
    "info": "Note",
}
"""Banner levels as words (a banner's state is never shown by colour alone)."""

SAFETY_REMINDERS: tuple[str, ...] = (
    "Never use TENS while driving, operating machinery, sleeping, or in the bath or shower.",
    "Never put pads on the front or sides of the neck, on the head or face, or across the "
    "chest (front to back or side to side).",
    "Never put pads on broken, irritated or numb skin.",
    "Raise the intensity slowly until it feels strong but comfortable — never painful.",
    f"To stop at once, press {STOP_KEYS} (or Ctrl+E) — on any screen, at any time.",
    "Turn the output off before moving or removing the pads.",
    "If the skin turns red and stays red, or anything feels wrong, stop and tell your clinician.",
)


LEVEL_MA = 2.0
"""One intensity level, in mA: the simple number beside the mA (level 1 is up to 2 mA, level
10 up to 20 mA). The keys still move by the device's finer step; the level is for saying and
remembering ("I had it at level 6"), as home TENS units do."""


def level(ma: float) -> int:
    """The intensity level of ``ma`` (0 only at 0 mA)."""
    if not math.isfinite(ma) or ma <= 0:
        return 0
    return max(1, math.ceil(ma / LEVEL_MA - 1e-9))


def level_text(ma: float, cap_ma: float | None = None) -> str:
    """``level 3`` or ``level 3 of 20`` (the cap's level)."""
    if cap_ma is None or cap_ma <= 0:
        return f"level {level(ma)}"
    return f"level {level(ma)} of {level(cap_ma)}"


def fmt_ma(value: float | None, missing: str = "—") -> str:
    """Milliamps with at most one decimal (``12.5``, ``0``), or ``missing``."""
    if value is None or not math.isfinite(value):
        return missing
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text in ("-0", "") else text


def fmt_ohm(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value >= 1000:
        return f"{value / 1000:.1f} kΩ"
    return f"{value:.0f} Ω"


def fmt_clock(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``); ``--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    total = max(0, math.ceil(seconds - 1e-9))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def fmt_minutes(minutes: float) -> str:
    if minutes >= 1 and abs(minutes - round(minutes)) < 1e-9:
        return f"{round(minutes)} min"
    if minutes < 1:
        return f"{round(minutes * 60)} s"
    return f"{minutes:.1f} min"


def fmt_nrs(value: int | None, rated: bool = True) -> str:
    """A pain rating: the number, ``skip`` (missing, never 0) or ``·`` (not asked)."""
    if not rated:
        return "·"
    return "skip" if value is None else str(value)
