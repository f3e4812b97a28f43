"""Protocol front-ends of the simulated firmware, and the registry that names them.

A front-end turns the host's bytes into firmware calls and the firmware's answers and events
into bytes. It is sans-I/O: it gets bytes through :meth:`FrontEnd.receive` and hands every
outgoing frame, one frame per call, to ``context.send``; anything timed (telemetry, Init
repetition) it schedules on ``context.clock``.

The registry maps a protocol name (the host part of a ``sim://`` URL, ``tens-sim --protocol``)
to a :class:`FrontEndSpec`. Its ``factory`` is a ``"module:attribute"`` string imported on first
use, so a protocol module registers itself just by existing at that path; other front-ends can
be added at run time with :func:`register_front_end`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from drivers.clock import Clock
from simulator.firmware import Firmware


@dataclass(frozen=True)
class FrontEndContext:
    """What a front-end gets when the simulated device powers on."""

    firmware: Firmware
    clock: Clock
    send: Callable[[bytes], None]
    """Hand one complete outgoing frame to the link (faults and latency are applied there)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Front-end specific options from the URL or command line (see ``FrontEndSpec.options``)."""


class FrontEnd(Protocol):
    def receive(self, data: bytes) -> None:
        """Bytes from the host, in arrival order, in arbitrary chunks."""

    def close(self) -> None:
        """Power off: cancel every timer. Idempotent."""


FrontEndFactory = Callable[[FrontEndContext], FrontEnd]


@dataclass(frozen=True)
class FrontEndSpec:
    name: str
    factory: str | FrontEndFactory
    """``"package.module:Attribute"`` (imported lazily) or a callable taking the context."""
    default_profile: str
    default_watchdog_ms: int
    watchdog_always: bool = True
    """True: the watchdog is armed by any valid frame and trips even while idle (TSP and
    ScienceMode2); False: it is armed only while the output is on."""
    options: frozenset[str] = frozenset()
    """Extra option names this front-end accepts (passed through in the context)."""
    description: str = ""
    device_ramp: bool = False
    """The firmware enforces its own ramp (S15): TSP/2 does; the RehaStim 2 has none."""
    frame_end: bytes = b"\n"
    """The byte that ends a frame of this protocol: the link splits the host's writes into
    frames there, so that a link fault hits exactly one frame (LF for TSP, 0x0F for
    ScienceMode2)."""

    def frames(self, data: bytes) -> list[bytes]:
        """``data`` cut after every :attr:`frame_end` (a trailing partial frame is kept). A bare
        end byte (TSP's empty line before a STOP) is no frame: it goes with the next one."""
        end = self.frame_end
        parts = data.split(end)
        units: list[bytes] = []
        pending = b""
        for part in parts[:-1]:
            if not part.strip(b"\r"):
                pending += part + end
                continue
            units.append(pending + part + end)
            pending = b""
        if parts[-1] or pending:
            units.append(pending + parts[-1])
        return units

    def create(self, context: FrontEndContext) -> FrontEnd:
        factory = self.factory
        if isinstance(factory, str):
            module_name, _, attribute = factory.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name != module_name:
                    raise
                raise LookupError(
                    f"the {self.name} simulator front-end ({module_name}) is not available"
                ) from None
            factory = getattr(module, attribute)
        assert callable(factory)
        return factory(context)


_REGISTRY: dict[str, FrontEndSpec] = {}


def register_front_end(spec: FrontEndSpec, *, replace: bool = False) -> None:
    """Make ``spec.name`` usable as ``sim://<name>`` and ``tens-sim --protocol <name>``."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a simulator front-end named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def front_end_spec(name: str) -> FrontEndSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise LookupError(f"no simulated protocol named {name!r}; known: {known}") from None


def front_end_names() -> list[str]:
    return sorted(_REGISTRY)


register_front_end(
    FrontEndSpec(
        name="tsp",
        factory="simulator.tsp:TspFrontEnd",
        default_profile="tens-sim",
        default_watchdog_ms=1000,
        watchdog_always=True,
        description="the open TENS Serial Protocol, TSP/2",
        device_ramp=True,
    )
)
register_front_end(
    FrontEndSpec(
        name="sciencemode2",
        factory="simulator.sciencemode2:ScienceMode2FrontEnd",
        default_profile="rehastim2",
        default_watchdog_ms=1200,
        watchdog_always=True,
        description="Hasomed ScienceMode2 (RehaStim 2)",
        frame_end=b"\x0f",
    )
)
register_front_end(
    FrontEndSpec(
        name="sciencemode4",
        factory="simulator.sciencemode4:ScienceMode4FrontEnd",
        default_profile="p24",
        default_watchdog_ms=2000,
        watchdog_always=False,  # the keep-alive is due only once stimulation has started
        options=frozenset({"electrode_min_ma"}),
        description="Hasomed ScienceMode4 (P24, mid level)",
        frame_end=b"\x0f",
    )
)
