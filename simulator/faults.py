"""Seeded fault plans for the simulator.

A :class:`FaultPlan` lists faults at fixed times (seconds after the simulated device powered on)
and, optionally, random faults at a rate per second drawn from the seed, so that every run with
the same seed and plan is identical. Tests can also inject any fault directly
(``device.inject(FaultKind.LEAD_OFF, channel=1)``).

Plans parse from a compact string (for ``sim://`` URLs and ``tens-sim --fault``)::

    leadoff@12.5:1,garble@30,disconnect@60

Each item is ``KIND@SECONDS`` followed by ``:``-separated arguments; see :data:`FAULT_HELP`.

Two families:

* *Device* faults act on the firmware: lead-off, drifting contact, stuck output, amplitude jump,
  reset, internal fault, emergency switch, low battery.
* *Link* faults act on the bytes between host and device, one frame (one write or one device
  message) at a time: garbled, dropped and duplicated frames, late answers, a device that goes
  silent, and a disconnect (the port vanishes: reads and writes raise ``SerialException``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class FaultKind(StrEnum):
    """Every fault the simulator can produce. The value is the name used in plan strings."""

    LEAD_OFF = "leadoff"
    LEAD_ON = "leadon"
    DRIFT = "drift"
    STUCK = "stuck"
    JUMP = "jump"
    RESET = "reset"
    INTERNAL = "fault"
    EMERGENCY = "estop"
    BATTERY_LOW = "batlow"
    GARBLE = "garble"
    DROP = "drop"
    DUPLICATE = "dup"
    LATE = "late"
    MUTE = "mute"
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"


DEVICE_FAULTS = frozenset(
    {
        FaultKind.LEAD_OFF,
        FaultKind.LEAD_ON,
        FaultKind.DRIFT,
        FaultKind.STUCK,
        FaultKind.JUMP,
        FaultKind.RESET,
        FaultKind.INTERNAL,
        FaultKind.EMERGENCY,
        FaultKind.BATTERY_LOW,
    }
)
LINK_FAULTS = frozenset(FaultKind) - DEVICE_FAULTS

CHANNEL_FAULTS = frozenset(
    {FaultKind.LEAD_OFF, FaultKind.LEAD_ON, FaultKind.DRIFT, FaultKind.STUCK, FaultKind.JUMP}
)
DIRECTED_FAULTS = frozenset({FaultKind.GARBLE, FaultKind.DROP, FaultKind.DUPLICATE})

DEFAULT_RANDOM_KINDS: tuple[FaultKind, ...] = (
    FaultKind.GARBLE,
    FaultKind.DROP,
    FaultKind.DUPLICATE,
    FaultKind.LATE,
    FaultKind.LEAD_OFF,
    FaultKind.DRIFT,
    FaultKind.STUCK,
    FaultKind.JUMP,
    FaultKind.RESET,
)
"""Random faults draw from these unless told otherwise (not the ones that end a link for good)."""


class Direction(StrEnum):
    """Which side receives the frame a link fault hits."""

    DEVICE = "device"
    """A frame from the host to the device (a command)."""
    HOST = "host"
    """A frame from the device to the host (an answer, telemetry or an event)."""


DEFAULT_JUMP_MA = 5.0
DEFAULT_DRIFT_S = 30.0
DEFAULT_LATE_MS = 1500.0

FAULT_HELP = """\
Fault plan: items separated by commas, each KIND@SECONDS[:ARG...]; SECONDS counts from the
moment the simulated device powered on.
  leadoff@T[:CH]           electrode of channel CH (default 1) comes off: CH to 0 mA, EVT LEADOFF
  leadon@T[:CH]            electrode back on (the channel stays at 0 until raised again)
  drift@T[:CH[:S]]         contact worsens: impedance climbs over S s (default 30) to lead-off
  stuck@T[:CH]             output stage stuck: delivered current ignores decreases until stop
  jump@T[:CH[:MA]]         delivered current jumps MA mA (default 5) above the set value
  reset@T                  device restarts: everything 0 and unconfigured, EVT RESET
  fault@T[:CODE]           internal fault: output 0, EVT FAULT CODE (default internal)
  estop@T                  the device's own emergency switch: output 0
  batlow@T                 battery drops to the low-battery level: EVT BATLOW
  garble@T[:DIR[:N]]       corrupt one byte in each of the next N frames (default 1)
  drop@T[:DIR[:N]]         lose the next N frames
  dup@T[:DIR[:N]]          deliver each of the next N frames twice
                           DIR is device (host->device, the default) or host (device->host)
  late@T[:MS[:DIR]]        host (default): hold back the device's next frame (and all after
                           it) by MS ms (default 1500); device: hold back the host's next
                           frame by MS ms while the frames after it pass
  mute@T[:S]               the device sends nothing for S s (default: for good)
  disconnect@T[:S]         the port vanishes (SerialException); back after S s if given
  reconnect@T              the port comes back after a disconnect
Random faults: a rate per second (e.g. 0.01) draws faults from the seed, by default among
garble, drop, dup, late, leadoff, drift, stuck, jump and reset."""


class FaultPlanError(ValueError):
    """A fault plan string is malformed. The message names the item and what is wrong."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault. ``at`` is seconds after power-on (None: now, for direct injection).

    ``value`` is the kind's number: mA (jump), seconds (drift, mute, disconnect) or ms (late).
    """

    kind: FaultKind
    at: float | None = None
    channel: int | None = None
    value: float | None = None
    direction: Direction | None = None
    count: int = 1
    code: str | None = None

    def describe(self) -> str:
        """This fault in plan syntax (``leadoff@12.5:1``)."""
        text = self.kind.value
        if self.at is not None:
            text += f"@{self.at:g}"
        args: list[str] = []
        if self.kind in CHANNEL_FAULTS:
            args.append(str(self.channel or 1))
            if self.value is not None:
                args.append(f"{self.value:g}")
        elif self.kind in DIRECTED_FAULTS:
            args.append((self.direction or Direction.DEVICE).value)
            if self.count != 1:
                args.append(str(self.count))
        elif self.kind is FaultKind.INTERNAL and self.code:
            args.append(self.code)
        elif self.kind is FaultKind.LATE and self.direction is Direction.DEVICE:
            args += [f"{DEFAULT_LATE_MS if self.value is None else self.value:g}", "device"]
        elif self.value is not None:
            args.append(f"{self.value:g}")
        return ":".join([text, *args])


_MAX_ARGS: dict[FaultKind, int] = {
    FaultKind.LEAD_OFF: 1,
    FaultKind.LEAD_ON: 1,
    FaultKind.STUCK: 1,
    FaultKind.DRIFT: 2,
    FaultKind.JUMP: 2,
    FaultKind.RESET: 0,
    FaultKind.INTERNAL: 1,
    FaultKind.EMERGENCY: 0,
    FaultKind.BATTERY_LOW: 0,
    FaultKind.GARBLE: 2,
    FaultKind.DROP: 2,
    FaultKind.DUPLICATE: 2,
    FaultKind.LATE: 2,
    FaultKind.MUTE: 1,
    FaultKind.DISCONNECT: 1,
    FaultKind.RECONNECT: 0,
}


def _number(item: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultPlanError(f"fault {item!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise FaultPlanError(f"fault {item!r}: {what} {text!r} must be a number >= 0")
    return value


def _whole(item: str, text: str, what: str, minimum: int = 1) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise FaultPlanError(f"fault {item!r}: {what} {text!r} must be a whole number >= {minimum}")
    return int(text)


def parse_fault(item: str) -> Fault:
    """One ``KIND@SECONDS[:ARG...]`` item."""
    text = item.strip()
    head, sep, rest = text.partition("@")
    known = ", ".join(k.value for k in FaultKind)
    try:
        kind = FaultKind(head.strip().lower())
    except ValueError:
        raise FaultPlanError(
            f"fault {item!r}: unknown kind {head!r}; known kinds: {known}"
        ) from None
    if not sep:
        raise FaultPlanError(f"fault {item!r}: give a time, e.g. {kind.value}@12.5")
    when, *args = rest.split(":")
    at = _number(item, when, "time")
    limit = _MAX_ARGS[kind]
    if len(args) > limit:
        raise FaultPlanError(f"fault {item!r}: {kind.value} takes at most {limit} argument(s)")
    fault = Fault(kind, at)
    if kind in CHANNEL_FAULTS:
        channel = _whole(item, args[0], "channel") if args else 1
        value = _number(item, args[1], "value") if len(args) > 1 else None
        return replace(fault, channel=channel, value=value)
    if kind in DIRECTED_FAULTS:
        direction = Direction.DEVICE
        if args:
            try:
                direction = Direction(args[0].lower())
            except ValueError:
                raise FaultPlanError(
                    f"fault {item!r}: direction {args[0]!r} must be 'device' or 'host'"
                ) from None
        count = _whole(item, args[1], "count") if len(args) > 1 else 1
        return replace(fault, direction=direction, count=count)
    if kind is FaultKind.LATE:
        value = _number(item, args[0], "value") if args else None
        direction = Direction.HOST
        if len(args) > 1:
            try:
                direction = Direction(args[1].lower())
            except ValueError:
                raise FaultPlanError(
                    f"fault {item!r}: direction {args[1]!r} must be 'device' or 'host'"
                ) from None
        return replace(
            fault, value=value, direction=None if direction is Direction.HOST else direction
        )
    if kind is FaultKind.INTERNAL:
        code = args[0] if args else None
        if code is not None and (not code or not code.replace("_", "").isalnum()):
            raise FaultPlanError(f"fault {item!r}: code {code!r} must be letters, digits or _")
        return replace(fault, code=code)
    if args:
        return replace(fault, value=_number(item, args[0], "value"))
    return fault


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """``garble+drop+leadoff`` (or separated by commas or spaces) -> kinds for random faults.

    In a URL query a ``+`` arrives as a space; both are accepted.
    """
    kinds: list[FaultKind] = []
    for name in re.split(r"[+,\s]+", text):
        name = name.strip().lower()
        if not name:
            continue
        try:
            kinds.append(FaultKind(name))
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise FaultPlanError(f"unknown fault kind {name!r}; known kinds: {known}") from None
    if not kinds:
        raise FaultPlanError("no fault kinds given")
    return tuple(kinds)


@dataclass(frozen=True)
class FaultPlan:
    """Scheduled faults plus an optional random rate (faults per second, drawn from the seed)."""

    scheduled: tuple[Fault, ...] = ()
    rate_per_s: float = 0.0
    kinds: tuple[FaultKind, ...] = DEFAULT_RANDOM_KINDS

    @classmethod
    def parse(cls, text: str | Iterable[str], rate_per_s: float = 0.0) -> FaultPlan:
        """Parse ``"leadoff@12.5:1,garble@30"`` (or several such strings)."""
        texts = [text] if isinstance(text, str) else list(text)
        faults: list[Fault] = []
        for chunk in texts:
            for item in chunk.split(","):
                if item.strip():
                    faults.append(parse_fault(item))
        if not math.isfinite(rate_per_s) or rate_per_s < 0:
            raise FaultPlanError(f"fault rate {rate_per_s!r} must be a number >= 0")
        return cls(tuple(sorted(faults, key=lambda f: f.at or 0.0)), rate_per_s)

    def with_random(self, rate_per_s: float, kinds: Iterable[FaultKind] | None = None) -> FaultPlan:
        if not math.isfinite(rate_per_s) or rate_per_s < 0:
            raise FaultPlanError(f"fault rate {rate_per_s!r} must be a number >= 0")
        return FaultPlan(self.scheduled, rate_per_s, tuple(kinds) if kinds else self.kinds)

    def describe(self) -> str:
        return ",".join(f.describe() for f in self.scheduled)

    def __bool__(self) -> bool:
        return bool(self.scheduled) or self.rate_per_s > 0


class RandomFaults:
    """A Poisson stream of faults drawn from a seed (independent of every other random stream)."""

    def __init__(self, seed: int, rate_per_s: float, kinds: tuple[FaultKind, ...], channels: int):
        self._rng = random.Random(f"{seed}:faults")
        self.rate_per_s = rate_per_s
        self.kinds = kinds
        self.channels = channels

    def next_delay(self) -> float:
        return self._rng.expovariate(self.rate_per_s)

    def draw(self) -> Fault:
        rng = self._rng
        kind = rng.choice(self.kinds)
        channel = rng.randint(1, self.channels)
        if kind is FaultKind.JUMP:
            return Fault(kind, channel=channel, value=float(rng.choice((2, 3, 5, 8, 10))))
        if kind is FaultKind.DRIFT:
            return Fault(kind, channel=channel, value=float(rng.randint(5, 60)))
        if kind in CHANNEL_FAULTS:
            return Fault(kind, channel=channel)
        if kind in DIRECTED_FAULTS:
            return Fault(kind, direction=rng.choice((Direction.DEVICE, Direction.HOST)))
        if kind is FaultKind.LATE:
            return Fault(kind, value=float(rng.randint(100, 2000)))
        if kind in (FaultKind.MUTE, FaultKind.DISCONNECT):
            return Fault(kind, value=float(rng.randint(1, 10)))
        return Fault(kind)


__all__ = [
    "CHANNEL_FAULTS",
    "DEFAULT_RANDOM_KINDS",
    "DEVICE_FAULTS",
    "DIRECTED_FAULTS",
    "FAULT_HELP",
    "LINK_FAULTS",
    "Direction",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FaultPlanError",
    "RandomFaults",
    "parse_fault",
    "parse_kinds",
]
