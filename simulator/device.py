"""A whole simulated TENS unit: firmware, a protocol front-end, the link, and its fault plan.

:class:`SimDevice` is what sits at the far end of a serial cable. Both ways of reaching it use
this one class: the in-process ``sim://`` port (``simulator/protocol_sim.py``) and the
``tens-sim`` command on a pty or TCP (``simulator/cli.py``).

The link between host and device is modelled frame by frame: every ``write`` of the host is one
unit and every message of the device is one unit. Link faults (garble, drop, duplicate, late,
mute, disconnect) act on those units; a constant latency is applied in each direction. Nothing
is ever delivered re-entrantly: bytes travel through callbacks scheduled on the clock.

Threads: with a :class:`~drivers.clock.RealClock`, every firmware action runs on the clock's
scheduler thread; :meth:`SimDevice.host_write` and :meth:`SimDevice.inject` may be called from any
thread (they only schedule). With a :class:`~drivers.clock.VirtualClock`, :meth:`inject` acts at
once, so a test can inject and assert without advancing time.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import random
import threading
import tomllib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from drivers.clock import Clock, TimerHandle, VirtualClock
from drivers.limits import DeviceProfile, ProfileError, get_profile
from simulator.faults import (
    Direction,
    Fault,
    FaultKind,
    FaultPlan,
    FaultPlanError,
    RandomFaults,
    parse_kinds,
)
from simulator.firmware import DeliveredRecord, Firmware, Odometer
from simulator.frontends import FrontEnd, FrontEndContext, FrontEndSpec, front_end_spec

log = logging.getLogger(__name__)

DEFAULT_LATENCY_MS = 1.0
_PROTECTED_BYTES = frozenset(b"\n\r\xf0\x0f\x81")
"""Frame delimiters of TSP and ScienceMode2: a garbled byte never becomes one of these, so one
garble spoils exactly one frame."""


class SimConfigError(ValueError):
    """A simulator option is wrong. The message names the option and what is accepted."""


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulated device (from a ``sim://`` URL or the command line)."""

    protocol: str = "tsp"
    profile: str | None = None
    """Profile id; None: the protocol's default (tens-sim for TSP)."""
    seed: int = 0
    faults: FaultPlan = field(default_factory=FaultPlan)
    latency_ms: float = DEFAULT_LATENCY_MS
    """One-way latency, applied to each direction."""
    watchdog_ms: int | None = None
    """None: the protocol's default (1000 ms for TSP)."""
    battery_pct: float = 100.0
    noise_pct: float = 1.0
    lead_off_ohm: float = 10_000.0
    odometer: str | None = None
    """A file keeping the device's odometer across power cycles (None: in memory)."""
    clinic_key: str | None = None
    """A clinic's public key file put into the unit (TSP/2 §16): it then enforces caps the
    clinic signed for it."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Front-end specific options."""

    @classmethod
    def from_options(cls, protocol: str, options: Mapping[str, str]) -> SimConfig:
        """Build from ``name -> value`` strings (a URL query). Raises :class:`SimConfigError`."""
        try:
            spec = front_end_spec(protocol or "tsp")
        except LookupError as error:
            raise SimConfigError(str(error)) from None
        values = dict(options)
        extra = {k: values.pop(k) for k in list(values) if k in spec.options}

        def number(name: str, default: float, low: float, high: float) -> float:
            if name not in values:
                return default
            text = values.pop(name)
            try:
                value = float(text)
            except ValueError:
                raise SimConfigError(f"option {name}={text!r} is not a number") from None
            if not math.isfinite(value) or not low <= value <= high:
                raise SimConfigError(f"option {name}={text!r} must be between {low:g} and {high:g}")
            return value

        seed = int(number("seed", 0, 0, 2**63))
        latency = number("latency_ms", DEFAULT_LATENCY_MS, 0, 10_000)
        wd = number("wdms", -1, 30, 600_000) if "wdms" in values else None
        battery = number("battery", 100.0, 0, 100)
        noise = number("noise", 1.0, 0, 2)
        lead_off = number("leadoff_ohm", 10_000.0, 100, 1e6)
        rate = number("fault_rate", 0.0, 0, 1000)
        profile = values.pop("profile", None)
        odometer = values.pop("odometer", None)
        clinic_key = values.pop("clinic_key", None)
        if clinic_key is not None:
            try:
                read_clinic_key(clinic_key)
            except ValueError as error:
                raise SimConfigError(str(error)) from None
        try:
            plan = FaultPlan.parse(values.pop("faults", ""))
            kinds = values.pop("fault_kinds", None)
            if rate or kinds:
                plan = plan.with_random(rate, parse_kinds(kinds) if kinds else None)
        except FaultPlanError as error:
            raise SimConfigError(str(error)) from None
        if values:
            known = sorted(
                {
                    "profile",
                    "seed",
                    "faults",
                    "fault_rate",
                    "fault_kinds",
                    "latency_ms",
                    "wdms",
                    "battery",
                    "noise",
                    "leadoff_ohm",
                    "odometer",
                    "clinic_key",
                    *spec.options,
                }
            )
            unknown = ", ".join(sorted(values))
            raise SimConfigError(
                f"unknown simulator option(s) {unknown}; known: {', '.join(known)}"
            )
        return cls(
            protocol=spec.name,
            profile=profile,
            seed=seed,
            faults=plan,
            latency_ms=latency,
            watchdog_ms=None if wd is None else int(wd),
            battery_pct=battery,
            noise_pct=noise,
            lead_off_ohm=lead_off,
            odometer=odometer,
            clinic_key=clinic_key,
            options=extra,
        )

    def spec(self) -> FrontEndSpec:
        try:
            return front_end_spec(self.protocol)
        except LookupError as error:
            raise SimConfigError(str(error)) from None

    def resolve_profile(self) -> DeviceProfile:
        spec = self.spec()
        try:
            return get_profile(self.profile or spec.default_profile)
        except ProfileError as error:
            raise SimConfigError(str(error)) from None


def read_clinic_key(path: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key from a file: the ``.pub`` file of
    ``tens-control clinician keygen`` (TOML with ``public_key``) or a bare base64 line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"clinic key file {path} cannot be read ({error.strerror})") from None
    try:
        value = tomllib.loads(text).get("public_key", "")
    except tomllib.TOMLDecodeError:
        value = text.strip()
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"clinic key file {path} holds no Ed25519 public key")
    return raw


LinkListener = Callable[[bool], None]
"""Called with True when the port vanishes (disconnect) and False when it is back."""


class SimDevice:
    """One simulated TENS unit. Create it, :meth:`attach` a sink for its bytes, write to it."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.spec = config.spec()
        self.profile = config.resolve_profile()
        self.latency_s = config.latency_ms / 1000.0
        self.firmware = Firmware(
            self.profile,
            clock,
            config.seed,
            watchdog_ms=config.watchdog_ms or self.spec.default_watchdog_ms,
            watchdog_always=self.spec.watchdog_always,
            lead_off_ohm=config.lead_off_ohm,
            battery_pct=config.battery_pct,
            noise_pct=config.noise_pct,
            device_ramp=self.spec.device_ramp,
            odometer=Odometer(None if config.odometer is None else Path(config.odometer)),
            clinic_key=None if config.clinic_key is None else read_clinic_key(config.clinic_key),
        )
        self.boot_time = clock.now()
        self.faults_applied: list[tuple[float, Fault]] = []
        """Every fault that happened, with its time (scheduled, random and injected)."""
        self.frames_in = 0
        self.frames_out = 0
        self._lock = threading.Lock()
        """Guards the sink and the pending link faults (touched from two threads in real time)."""
        self._sink: Callable[[bytes], None] | None = None
        self._out: deque[tuple[float, bytes]] = deque()
        self._out_timer: TimerHandle | None = None
        self._last_release = 0.0
        self._late_s = 0.0
        self._late_to_device_s = 0.0
        self._mute_until: float | None = None
        self._link_faults: dict[tuple[FaultKind, Direction], int] = {}
        self._garble_rng = random.Random(f"{config.seed}:garble")
        self.disconnected = False
        self._link_listeners: list[LinkListener] = []
        self._timers: list[TimerHandle] = []
        self._powered = True
        self.front_end: FrontEnd = self.spec.create(
            FrontEndContext(self.firmware, clock, self._from_device, dict(config.options))
        )
        for fault in config.faults.scheduled:
            at = self.boot_time + (fault.at or 0.0)
            self._timers.append(clock.call_at(at, partial(self.apply, fault)))
        self._random: RandomFaults | None = None
        self._random_timer: TimerHandle | None = None
        if config.faults.rate_per_s > 0:
            self._random = RandomFaults(
                config.seed, config.faults.rate_per_s, config.faults.kinds, self.profile.channels
            )
            self._schedule_random()

    # ------------------------------------------------------------------ conveniences
    @property
    def record(self) -> DeliveredRecord:
        """What the device actually delivered (see :class:`~simulator.firmware.DeliveredRecord`)."""
        return self.firmware.record

    def attach(self, sink: Callable[[bytes], None] | None) -> None:
        """Where the device's bytes go (None: nowhere, as with no cable plugged in)."""
        with self._lock:
            self._sink = sink

    def add_link_listener(self, listener: LinkListener) -> None:
        self._link_listeners.append(listener)

    def remove_link_listener(self, listener: LinkListener) -> None:
        if listener in self._link_listeners:
            self._link_listeners.remove(listener)

    # ------------------------------------------------------------------ host -> device
    def host_write(self, data: bytes) -> None:
        """Bytes the host wrote, processed after the latency. Each protocol frame in them is
        one unit for link faults (a fault hits exactly one frame, wherever the host's writes
        happen to split them)."""
        if not data or self.disconnected or not self._powered:
            return
        now = self.clock.now()
        for frame in self.spec.frames(data):
            when = now + self.latency_s
            if self._late_to_device_s:
                # one frame held back; those after it overtake it (a frame retried by an
                # adapter, not a stalled line: a stall holds everything and is a comms loss)
                when += self._late_to_device_s
                self._late_to_device_s = 0.0
            self.clock.call_at(when, partial(self._to_device, frame))

    def _to_device(self, frame: bytes) -> None:
        """A frame arrives. Link faults act here, on arrival, so that a fault armed while a
        frame is on its way (the worst moment) still hits it."""
        if self.disconnected or not self._powered:
            return
        units = self._link_faulted(frame, Direction.DEVICE) if self._link_faults else (frame,)
        for unit in units:
            self.frames_in += 1
            self.front_end.receive(unit)

    # ------------------------------------------------------------------ device -> host
    def _from_device(self, frame: bytes) -> None:
        """The front-end sends one frame. Called on the clock's thread."""
        if self.disconnected or not self._powered:
            return
        now = self.clock.now()
        if self._mute_until is not None:
            if now < self._mute_until:
                return
            self._mute_until = None
        release = now + self.latency_s
        if self._late_s:
            release += self._late_s
            self._late_s = 0.0
        release = max(release, self._last_release)
        self._last_release = release
        self.frames_out += 1
        self._out.append((release, frame))
        if self._out_timer is None and self._out:
            self._out_timer = self.clock.call_at(self._out[0][0], self._release)

    def _release(self) -> None:
        self._out_timer = None
        now = self.clock.now()
        chunks: list[bytes] = []
        out = self._out
        while out and out[0][0] <= now:
            frame = out.popleft()[1]
            # link faults act on arrival (a fault armed while the frame is on its way hits it)
            chunks.extend(
                self._link_faulted(frame, Direction.HOST) if self._link_faults else (frame,)
            )
        if out:
            self._out_timer = self.clock.call_at(out[0][0], self._release)
        if chunks and not self.disconnected:
            with self._lock:
                sink = self._sink
            if sink is not None:
                sink(b"".join(chunks))

    # ------------------------------------------------------------------ link faults
    def _link_faulted(self, data: bytes, direction: Direction) -> tuple[bytes, ...]:
        """Apply a pending garble/drop/duplicate to one frame. The host's writer thread and the
        clock's thread both come here (one per direction), hence the lock."""
        faults = self._link_faults
        for kind in (FaultKind.DROP, FaultKind.GARBLE, FaultKind.DUPLICATE):
            key = (kind, direction)
            with self._lock:
                left = faults.get(key)
                if not left:
                    continue
                if left <= 1:
                    del faults[key]
                else:
                    faults[key] = left - 1
            log.info("link fault: %s a frame to the %s", kind.value, direction.value)
            if kind is FaultKind.DROP:
                return ()
            if kind is FaultKind.GARBLE:
                return (self._garble(data),)
            return (data, data)
        return (data,)

    def _garble(self, data: bytes) -> bytes:
        if len(data) < 3:
            return data
        rng = self._garble_rng
        index = rng.randrange(1, len(data) - 1)
        while True:
            value = data[index] ^ rng.randrange(1, 256)
            if value not in _PROTECTED_BYTES:
                break
        return data[:index] + bytes((value,)) + data[index + 1 :]

    def _set_disconnected(self, gone: bool) -> None:
        if gone == self.disconnected:
            return
        self.disconnected = gone
        if gone:
            self._out.clear()
            if self._out_timer is not None:
                self._out_timer.cancel()
                self._out_timer = None
        for listener in list(self._link_listeners):
            listener(gone)

    # ------------------------------------------------------------------ faults
    def inject(
        self,
        kind: FaultKind | str,
        *,
        channel: int | None = None,
        value: float | None = None,
        direction: Direction | str | None = None,
        count: int = 1,
        code: str | None = None,
    ) -> None:
        """Make a fault happen now (with a real clock: as soon as the scheduler runs it)."""
        fault = Fault(
            FaultKind(kind),
            None,
            channel,
            value,
            None if direction is None else Direction(direction),
            count,
            code,
        )
        if isinstance(self.clock, VirtualClock):
            self.apply(fault)
        else:
            self.clock.call_soon(partial(self.apply, fault))

    def apply(self, fault: Fault) -> None:
        """Carry out one fault (runs on the clock's thread)."""
        if not self._powered:
            return
        fw = self.firmware
        kind = fault.kind
        channel = fault.channel or 1
        self.faults_applied.append((self.clock.now(), fault))
        log.info("fault: %s", fault.describe())
        if channel > fw.channel_count and kind in (
            FaultKind.LEAD_OFF,
            FaultKind.LEAD_ON,
            FaultKind.DRIFT,
            FaultKind.STUCK,
            FaultKind.JUMP,
        ):
            log.warning("fault %s: no channel %d on this device", fault.describe(), channel)
            return
        if kind is FaultKind.LEAD_OFF:
            fw.lead_off(channel)
        elif kind is FaultKind.LEAD_ON:
            fw.lead_on(channel)
        elif kind is FaultKind.DRIFT:
            fw.degrade_contact(channel, 30.0 if fault.value is None else fault.value)
        elif kind is FaultKind.STUCK:
            fw.stick(channel)
        elif kind is FaultKind.JUMP:
            fw.jump(channel, 5.0 if fault.value is None else fault.value)
        elif kind is FaultKind.RESET:
            fw.reset()
        elif kind is FaultKind.INTERNAL:
            fw.internal_fault(fault.code or "internal")
        elif kind is FaultKind.EMERGENCY:
            fw.emergency_switch()
        elif kind is FaultKind.BATTERY_LOW:
            fw.set_battery(min(fw.battery_pct(), fw.battery_low_pct))
        elif kind in (FaultKind.GARBLE, FaultKind.DROP, FaultKind.DUPLICATE):
            key = (kind, fault.direction or Direction.DEVICE)
            with self._lock:
                self._link_faults[key] = self._link_faults.get(key, 0) + max(1, fault.count)
        elif kind is FaultKind.LATE:
            late = (1500.0 if fault.value is None else fault.value) / 1000.0
            if fault.direction is Direction.DEVICE:
                self._late_to_device_s += late
            else:
                self._late_s += late
        elif kind is FaultKind.MUTE:
            self._mute_until = math.inf if fault.value is None else self.clock.now() + fault.value
        elif kind is FaultKind.DISCONNECT:
            self._set_disconnected(True)
            if fault.value is not None:
                self._timers.append(
                    self.clock.call_later(fault.value, partial(self._set_disconnected, False))
                )
        elif kind is FaultKind.RECONNECT:
            self._set_disconnected(False)

    def _schedule_random(self) -> None:
        assert self._random is not None
        self._random_timer = self.clock.call_later(self._random.next_delay(), self._random_fault)

    def _random_fault(self) -> None:
        if not self._powered or self._random is None:
            return
        fault = self._random.draw()
        self.apply(replace(fault, at=self.clock.now() - self.boot_time))
        self._schedule_random()

    # ------------------------------------------------------------------ life cycle
    def power_off(self) -> None:
        """Switch the unit off: output 0, every timer cancelled. Idempotent."""
        if not self._powered:
            return
        self.firmware.power_off()
        self.front_end.close()
        self._powered = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._random_timer is not None:
            self._random_timer.cancel()
            self._random_timer = None
        if self._out_timer is not None:
            self._out_timer.cancel()
            self._out_timer = None
        self._out.clear()

    @property
    def powered(self) -> bool:
        return self._powered


__all__ = [
    "DEFAULT_LATENCY_MS",
    "LinkListener",
    "SimConfig",
    "SimConfigError",
    "SimDevice",
]
