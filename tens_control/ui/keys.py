"""Every key of the UI, in one table: the help screen shows it and docs/ui.md lists it."""

from __future__ import annotations

from tens_control.ui.text import STOP_KEYS

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Everywhere",
        (
            (STOP_KEYS, "EMERGENCY STOP: every output to 0 at once (also Ctrl+E)"),
            ("?  or  F1", "help: keys and safety reminders"),
            ("Q  or  Ctrl+Q", "quit (any output is stopped first)"),
        ),
    ),
    (
        "Home",
        (
            ("N  or  Enter", "new session"),
            ("C", "connect a device (or the simulator)"),
            ("H", "history: past sessions and the pain trend"),
            ("D", "diary: pain episodes, sleep, mood, medicines, other treatments"),
            ("S", "safety questions (screening)"),
        ),
    ),
    (
        "Running session",
        (
            ("↑  or  +", "intensity up one step on the selected channel (ramped)"),
            ("↓  or  -", "intensity down one step (at once)"),
            ("←  →  or  1-8", "choose the channel"),
            ("0", "selected channel to 0 mA"),
            ("P", "pause / resume (resume starts again from 0 mA)"),
            ("X", "end the session normally"),
        ),
    ),
    (
        "Pain rating",
        (
            ("0 … 9", "your pain now (0 = no pain)"),
            ("T", "10 (the worst pain you can think of)"),
            ("S", "skip this question (stored as missing, never as 0)"),
            ("B", "back to the previous question"),
        ),
    ),
    (
        "Diary",
        (
            ("A  E  Del", "add, edit, delete the chosen entry"),
            ("← → ↓ ↑  N", "when it happened: a day, 15 minutes, now (up to 7 days back)"),
            ("B  or  Ctrl+X", "cancel an entry (Ctrl+X also while typing)"),
        ),
    ),
    (
        "Lists and forms",
        (
            ("↑ ↓  Enter", "move and choose"),
            ("Tab", "next field"),
            ("B", "back (when no text box is being typed in)"),
        ),
    ),
)
"""(group, ((keys, what they do), ...)) in reading order."""
