"""The simulated TENS unit's firmware: a protocol-independent device model.

:class:`Firmware` is what a microcontroller on a TENS board would do, minus the analogue
parts: it keeps each channel's settings, its *set* amplitude and the amplitude it *actually
delivers*, enforces its own hard limits (from the :class:`~drivers.limits.DeviceProfile`) no
matter what the host believes, runs a watchdog, models the electrodes (impedance with slow
seeded drift, lead-off), a battery, and a read-back of the output current with seeded noise.

Protocol front-ends (``simulator/tsp.py``, ``simulator/sciencemode2.py``) decode frames and call
the methods here; refusals come back as :class:`Refused` carrying a
:class:`~drivers.base.ErrorCode`. The firmware never reads a port and never sleeps: everything
timed (watchdog, battery, contact drift) is scheduled on the :class:`~drivers.clock.Clock`, so it
runs identically in virtual and real time.

Every change of a delivered amplitude is written to the :class:`DeliveredRecord`. Safety tests
assert on that record -- what the device delivered -- not on what the host believes.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from drivers.base import ChannelSettings, DeviceEvent, DeviceEventKind, ErrorCode
from drivers.clock import Clock, TimerHandle
from drivers.limits import DeviceProfile

log = logging.getLogger(__name__)

EventHandler = Callable[[DeviceEvent], None]

LEAD_OFF_IMPEDANCE_OHM = 100_000.0
"""The impedance reported for an electrode that is off (an open circuit, as far as we measure)."""


class Refused(Exception):
    """The firmware refuses a command. Nothing changed. Front-ends turn this into an error frame."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code.value}: {detail}" if detail else code.value)


class OutputState(StrEnum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class Delivery:
    """One change of the amplitude a channel actually delivers, from ``time`` on."""

    time: float
    channel: int
    ma: float

    def to_json(self) -> str:
        return json.dumps({"t": self.time, "ch": self.channel, "ma": self.ma})

    @classmethod
    def from_json(cls, line: str) -> Delivery:
        data = json.loads(line)
        return cls(float(data["t"]), int(data["ch"]), float(data["ma"]))


class DeliveredRecord:
    """Every change of the delivered amplitude, per channel, in time order.

    Before a channel's first change it delivered 0 mA. When several changes share one instant,
    the last one is the level from that instant on (the others lasted no time at all, but
    :meth:`max_between` still counts them, to be conservative).
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._all: list[Delivery] = []
        self._times: dict[int, list[float]] = {ch: [] for ch in range(1, channels + 1)}
        self._levels: dict[int, list[float]] = {ch: [] for ch in range(1, channels + 1)}
        self._listeners: list[Callable[[Delivery], None]] = []

    # ---- writing (the firmware)
    def append(self, delivery: Delivery) -> None:
        times = self._times[delivery.channel]
        if times and delivery.time < times[-1]:
            raise ValueError("deliveries must be appended in time order")
        self._all.append(delivery)
        times.append(delivery.time)
        self._levels[delivery.channel].append(delivery.ma)
        for listener in self._listeners:
            listener(delivery)

    def add_listener(self, listener: Callable[[Delivery], None]) -> None:
        """Call ``listener`` with every future change (``tens-sim --record`` streams them)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Delivery], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ---- reading (tests)
    def __iter__(self) -> Iterator[Delivery]:
        return iter(list(self._all))

    def __len__(self) -> int:
        return len(self._all)

    def changes(self, channel: int | None = None) -> list[Delivery]:
        """Every change, or every change of one channel, in time order."""
        if channel is None:
            return list(self._all)
        return [
            Delivery(t, channel, ma)
            for t, ma in zip(self._times[channel], self._levels[channel], strict=True)
        ]

    def level_at(self, channel: int, time: float) -> float:
        """The amplitude ``channel`` delivered at ``time`` (after every change at that instant)."""
        times = self._times[channel]
        index = bisect.bisect_right(times, time)
        return self._levels[channel][index - 1] if index else 0.0

    def levels_at(self, time: float) -> dict[int, float]:
        return {ch: self.level_at(ch, time) for ch in self._times}

    def max_between(self, channel: int, start: float, end: float) -> float:
        """The highest amplitude ``channel`` delivered at any instant in ``[start, end]``.

        The level *at* ``start`` is the one after every change at that instant (as in
        :meth:`level_at`); every level set after ``start`` counts, even one that lasted no time.
        """
        times = self._times[channel]
        levels = self._levels[channel]
        highest = self.level_at(channel, start)
        lo = bisect.bisect_right(times, start)
        hi = bisect.bisect_right(times, end)
        if hi > lo:
            highest = max(highest, max(levels[lo:hi]))
        return highest

    def max_any_between(self, start: float, end: float) -> float:
        """The highest amplitude any channel delivered in ``[start, end]``."""
        return max(self.max_between(ch, start, end) for ch in self._times)

    def max_level(self, channel: int | None = None) -> float:
        """The highest amplitude ever delivered (by one channel or any)."""
        if channel is None:
            return max((d.ma for d in self._all), default=0.0)
        return max(self._levels[channel], default=0.0)

    def zero_at(self, channel: int, after: float) -> float | None:
        """The first time at or after ``after`` at which ``channel`` delivers 0; None if never."""
        if self.level_at(channel, after) == 0.0:
            return after
        times = self._times[channel]
        levels = self._levels[channel]
        for index in range(bisect.bisect_right(times, after), len(times)):
            if levels[index] == 0.0:
                # the level from that instant on is the last change at the same time
                end = bisect.bisect_right(times, times[index])
                if levels[end - 1] == 0.0:
                    return times[index]
        return None

    def all_zero_at(self, after: float) -> float | None:
        """The first time at or after ``after`` at which every channel delivers 0."""
        candidates = sorted({after, *(d.time for d in self._all if d.time > after)})
        for time in candidates:
            if all(self.level_at(ch, time) == 0.0 for ch in self._times):
                return time
        return None

    def steps(self, channel: int) -> list[tuple[float, float, float]]:
        """``(time, before, after)`` for every change of ``channel`` (for ramp checks)."""
        out: list[tuple[float, float, float]] = []
        before = 0.0
        for t, ma in zip(self._times[channel], self._levels[channel], strict=True):
            out.append((t, before, ma))
            before = ma
        return out

    def to_jsonl(self) -> str:
        return "".join(d.to_json() + "\n" for d in self._all)

    @classmethod
    def from_jsonl(cls, text: str, channels: int) -> DeliveredRecord:
        """Rebuild a record from ``tens-sim --record`` output (torn last lines are skipped)."""
        record = cls(channels)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                delivery = Delivery.from_json(line)
            except (ValueError, KeyError, TypeError):
                continue
            record.append(delivery)
        return record


# --------------------------------------------------------------------------- electrodes


class _Electrode:
    """Skin contact of one channel: impedance drifts slowly around ~1 kΩ (seeded), or is off."""

    __slots__ = ("base", "degrade_end", "degrade_start", "lead_off", "waves")

    def __init__(self, rng: random.Random) -> None:
        self.base = rng.uniform(950.0, 1250.0)
        # two slow sinusoids: minutes (drying gel, sweat) and seconds (movement)
        self.waves = (
            (
                rng.uniform(50.0, 150.0),
                2 * math.pi / rng.uniform(120.0, 600.0),
                rng.uniform(0, 6.3),
            ),
            (rng.uniform(10.0, 40.0), 2 * math.pi / rng.uniform(5.0, 30.0), rng.uniform(0, 6.3)),
        )
        self.lead_off = False
        self.degrade_start: float | None = None
        self.degrade_end: float | None = None

    def impedance(self, now: float, threshold: float) -> float:
        if self.lead_off:
            return LEAD_OFF_IMPEDANCE_OHM
        (a1, w1, p1), (a2, w2, p2) = self.waves
        z = self.base + a1 * math.sin(w1 * now + p1) + a2 * math.sin(w2 * now + p2)
        if self.degrade_start is not None and self.degrade_end is not None:
            span = max(self.degrade_end - self.degrade_start, 1e-9)
            z += threshold * min(1.0, max(0.0, (now - self.degrade_start) / span))
        return z


class _Channel:
    __slots__ = (
        "cut",
        "delivered",
        "electrode",
        "last_increase",
        "number",
        "set_ma",
        "settings",
        "stuck",
    )

    def __init__(self, number: int, electrode: _Electrode) -> None:
        self.number = number
        self.settings: ChannelSettings | None = None
        self.set_ma = 0.0
        self.delivered = 0.0
        self.stuck = False
        self.electrode = electrode
        self.last_increase = -math.inf
        self.cut = False
        """Zeroed by a lead-off and not yet set again by the host (S15: reported as LEADOFF
        until then, even if the electrode is already back)."""


class ReadBack(NamedTuple):
    """What the device measures on one channel (a tuple: built 10 times a second per channel)."""

    channel: int
    set_ma: float
    measured_ma: float | None
    impedance_ohm: float | None


@dataclass(frozen=True, slots=True)
class Identity:
    model: str
    serial_number: str
    firmware: str
    channels: int


# --------------------------------------------------------------------------- the odometer


class Odometer:
    """The device's non-volatile memory: its life counters (DESIGN.md §12: a log anchor) and the
    cap a clinic signed for it (TSP/2 §16). A real board keeps them in non-volatile memory;
    here they live in memory, or in a small JSON file when ``path`` is given
    (``tens-sim --odometer FILE``, ``sim://...?odometer=FILE``), written on every change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.sessions = 0
        """Links (host identifications) in which the output went on, in the device's life."""
        self.stimulation_s = 0.0
        """Seconds of output on in the device's life."""
        self.cap_ma = 0.0
        """The cap signed by the clinic (TSP/2 §16; 0 until one is loaded)."""
        self.cap_issued = 0
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.sessions = int(data["sessions"])
                self.stimulation_s = float(data["stimulation_s"])
                self.cap_ma = float(data.get("cap_ma", 0.0))
                self.cap_issued = int(data.get("cap_issued", 0))
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ValueError(f"odometer file {path} is not readable ({error})") from None

    def count_session(self) -> None:
        self.sessions += 1
        self._save()

    def add_output(self, seconds: float) -> None:
        self.stimulation_s += max(0.0, seconds)
        self._save()

    def set_cap(self, max_ma: float, issued: int) -> None:
        self.cap_ma = max_ma
        self.cap_issued = issued
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            data = {
                "sessions": self.sessions,
                "stimulation_s": self.stimulation_s,
                "cap_ma": self.cap_ma,
                "cap_issued": self.cap_issued,
            }
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)


# --------------------------------------------------------------------------- the firmware


class Firmware:
    """A TENS unit's firmware, driven by a protocol front-end and a clock.

    Channels are numbered from 1. Every public method is called from the clock's thread (a
    clock callback, or the test's thread with a :class:`~drivers.clock.VirtualClock`).
    """

    def __init__(
        self,
        profile: DeviceProfile,
        clock: Clock,
        seed: int = 0,
        *,
        watchdog_ms: int = 1000,
        watchdog_always: bool = True,
        lead_off_ohm: float = 10_000.0,
        battery_pct: float = 100.0,
        battery_drain_idle_pct_per_h: float = 1.0,
        battery_drain_running_pct_per_h: float = 4.0,
        battery_low_pct: float = 15.0,
        battery_empty_pct: float = 3.0,
        noise_pct: float = 1.0,
        serial_number: str | None = None,
        firmware_version: str = "sim-1.0",
        device_ramp: bool = False,
        odometer: Odometer | None = None,
        clinic_key: bytes | None = None,
    ) -> None:
        """``device_ramp``: the firmware enforces S15 itself (TSP/2): an increase of more than
        one ramp step above what a channel delivers, or sooner than one ramp interval after its
        last increase, is refused. False models a device without a ramp of its own (the
        RehaStim 2). ``odometer``: the device's life counters (kept across power cycles when
        the odometer has a file). ``clinic_key``: a clinic's raw Ed25519 public key, put into
        the unit by the clinic (TSP/2 §16): the unit then refuses any amplitude above the cap
        the clinic signed for it (0 until one is loaded), whatever the host asks."""
        self.profile = profile
        self.clock = clock
        self.seed = seed
        self.limits = profile.device_limits()
        self.identity = Identity(
            model=profile.model,
            serial_number=serial_number or f"SIM{seed:06d}",
            firmware=firmware_version,
            channels=profile.channels,
        )
        self.watchdog_s = watchdog_ms / 1000.0
        self.watchdog_always = watchdog_always
        self.lead_off_ohm = lead_off_ohm
        self.noise_pct = noise_pct
        self.boot_time = clock.now()
        self.record = DeliveredRecord(profile.channels)
        self.events: list[DeviceEvent] = []
        self._handlers: list[EventHandler] = []
        self._noise = random.Random(f"{seed}:noise")
        self._gauss = self._noise.gauss
        self._noise_sd = noise_pct / 100.0
        self._reports_current = profile.reports_current
        self._reports_impedance = profile.lead_off_detection
        contact = random.Random(f"{seed}:electrodes")
        self._channels = [_Channel(n, _Electrode(contact)) for n in range(1, profile.channels + 1)]
        self.state = OutputState.IDLE
        self._step = profile.amplitude.step_ma
        self._max_ma = profile.amplitude.max_ma
        self.device_ramp = device_ramp
        self.ramp_step_ma = profile.ramp.step_ma
        """S15: the largest increase the firmware accepts at once."""
        self.ramp_interval_s = profile.ramp.step_ma / profile.ramp.rate_ma_per_s
        """S15: the shortest time between two increases of one channel."""
        self.fault: str | None = None
        """Set by an internal fault or the emergency switch (output off) until START or STOP."""
        self.odometer = odometer if odometer is not None else Odometer()
        self._running_since: float | None = None
        self._counted_link = False
        self.clinic_key = clinic_key
        # watchdog: one timer per period, re-armed lazily from the last feed
        self._last_feed = clock.now()
        self._wd_armed = False
        self._wd_timer: TimerHandle | None = None
        # battery: linear drain, crossings scheduled exactly
        self._bat_pct = battery_pct
        self._bat_time = clock.now()
        self._bat_idle = battery_drain_idle_pct_per_h / 3600.0
        self._bat_running = battery_drain_running_pct_per_h / 3600.0
        self.battery_low_pct = battery_low_pct
        self.battery_empty_pct = battery_empty_pct
        self._bat_low_sent = battery_pct <= battery_low_pct
        self._bat_timer: TimerHandle | None = None
        self._lead_timers: dict[int, TimerHandle] = {}
        self._powered = True
        self._schedule_battery()

    # ------------------------------------------------------------------ events
    def add_event_handler(self, handler: EventHandler) -> None:
        """Receive every :class:`DeviceEvent` the firmware raises (lead-off, watchdog, ...)."""
        self._handlers.append(handler)

    def remove_event_handler(self, handler: EventHandler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    def _event(self, kind: DeviceEventKind, channel: int | None = None, detail: str = "") -> None:
        event = DeviceEvent(self.clock.now(), kind, channel, detail)
        self.events.append(event)
        log.debug("firmware event %s", event)
        for handler in list(self._handlers):
            handler(event)

    # ------------------------------------------------------------------ helpers
    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def _channel(self, channel: int) -> _Channel:
        if not 1 <= channel <= len(self._channels):
            raise Refused(
                ErrorCode.PARAMETER, f"channel {channel} does not exist (1-{len(self._channels)})"
            )
        return self._channels[channel - 1]

    def _deliver(self, ch: _Channel, ma: float) -> None:
        if ma != ch.delivered:
            ch.delivered = ma
            self.record.append(Delivery(self.clock.now(), ch.number, ma))

    def _all_off(self) -> None:
        """Output stage off: every channel delivers 0 and forgets its set amplitude."""
        for ch in self._channels:
            ch.set_ma = 0.0
            ch.stuck = False
            ch.cut = False
            ch.last_increase = -math.inf
            self._deliver(ch, 0.0)

    def _set_state(self, state: OutputState) -> None:
        if state is not self.state:
            self._update_battery()
            now = self.clock.now()
            if state is OutputState.RUNNING:
                if not self._counted_link:
                    self._counted_link = True
                    self.odometer.count_session()
                self._running_since = now
            elif self._running_since is not None:
                self.odometer.add_output(now - self._running_since)
                self._running_since = None
            self.state = state
            self._schedule_battery()

    @property
    def signed_cap_ma(self) -> float | None:
        """The cap the clinic signed for this unit (0 until one is loaded); None without a
        clinic key."""
        if self.clinic_key is None:
            return None
        return self.odometer.cap_ma

    def load_signed_cap(self, max_ma: float, issued: int, signature: bytes, message: bytes) -> None:
        """Check ``signature`` over ``message`` with the clinic's key and keep the cap. A cap
        older than the one held, or one that does not verify, is refused and changes nothing."""
        if self.clinic_key is None:
            raise Refused(ErrorCode.UNKNOWN_COMMAND, "this unit holds no clinic key")
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.clinic_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            raise Refused(ErrorCode.PARAMETER, "the cap's signature is not the clinic's") from None
        if issued < self.odometer.cap_issued:
            raise Refused(ErrorCode.STATE, "an older cap than the one the unit holds")
        if max_ma > self._max_ma + 1e-9:
            raise Refused(
                ErrorCode.LIMIT, f"cap {max_ma:g} mA above the maximum {self._max_ma:g} mA"
            )
        self.odometer.set_cap(max_ma, issued)
        for ch in self._channels:  # a lower cap lowers what is delivered now
            if ch.set_ma > max_ma + 1e-9:
                ch.set_ma = max_ma
                self._deliver(ch, max_ma)

    def new_link(self) -> None:
        """A host identified itself (a new session may follow): the next time the output goes
        on counts as one more session on the odometer, however often it is paused after."""
        self._counted_link = False

    def output_seconds(self) -> float:
        """The odometer's total output time, the current run included."""
        total = self.odometer.stimulation_s
        if self._running_since is not None:
            total += self.clock.now() - self._running_since
        return total

    # ------------------------------------------------------------------ queries
    def settings(self, channel: int) -> ChannelSettings | None:
        return self._channel(channel).settings

    def set_amplitude_of(self, channel: int) -> float:
        return self._channel(channel).set_ma

    def delivered(self, channel: int) -> float:
        return self._channel(channel).delivered

    def is_lead_off(self, channel: int) -> bool:
        return self._channel(channel).electrode.lead_off

    def is_cut(self, channel: int) -> bool:
        """Zeroed by a lead-off and not set again by the host since (S15)."""
        ch = self._channel(channel)
        return ch.cut or ch.electrode.lead_off

    def impedance(self, channel: int) -> float:
        return self._channel(channel).electrode.impedance(self.clock.now(), self.lead_off_ohm)

    def configured_channels(self) -> list[int]:
        return [ch.number for ch in self._channels if ch.settings is not None]

    def battery_pct(self) -> float:
        self._update_battery()
        return self._bat_pct

    def read_back(self, channel: int) -> ReadBack:
        """The set amplitude, the measured current (± noise, of what is delivered) and impedance.

        Measured and impedance are None when the profile says the device cannot report them.
        This runs for every telemetry sample: keep it lean.
        """
        ch = self._channel(channel)
        measured: float | None = None
        if self._reports_current:
            delivered = ch.delivered
            if delivered == 0.0:
                measured = 0.0
            else:
                noise = self._gauss(0.0, self._noise_sd)
                if noise > 0.02:
                    noise = 0.02
                elif noise < -0.02:
                    noise = -0.02
                measured = round(delivered * (1.0 + noise), 3)
        impedance: float | None = None
        if self._reports_impedance:
            # whole ohms, as stimulators report it (a few hundred distinct values a session)
            impedance = float(round(ch.electrode.impedance(self.clock.now(), self.lead_off_ohm)))
        return ReadBack(channel, ch.set_ma, measured, impedance)

    # ------------------------------------------------------------------ commands
    def feed(self) -> None:
        """A valid frame arrived: feed the watchdog. Cheap; call it for every valid frame."""
        self._last_feed = self.clock.now()
        if self.watchdog_always and not self._wd_armed and self._powered:
            self._arm_watchdog()

    def check_settings(self, channel: int, settings: ChannelSettings) -> None:
        """Raise :class:`Refused` unless ``settings`` are within this device's hard limits."""
        self._channel(channel)
        lim = self.limits
        for hz in settings.frequencies_hz:
            if not lim.min_frequency_hz <= hz <= lim.max_frequency_hz:
                raise Refused(
                    ErrorCode.LIMIT,
                    f"frequency {hz:g} Hz outside {lim.min_frequency_hz:g}-"
                    f"{lim.max_frequency_hz:g} Hz",
                )
        if not lim.min_pulse_width_us <= settings.pulse_width_us <= lim.max_pulse_width_us:
            raise Refused(
                ErrorCode.LIMIT,
                f"pulse width {settings.pulse_width_us} us outside {lim.min_pulse_width_us}-"
                f"{lim.max_pulse_width_us} us",
            )
        if settings.waveform not in self.profile.waveforms:
            raise Refused(ErrorCode.PARAMETER, f"waveform {settings.waveform.value} not supported")
        if settings.pattern not in self.profile.patterns:
            raise Refused(ErrorCode.PARAMETER, f"pattern {settings.pattern.value} not supported")

    def check_amplitude(self, milliamps: float) -> None:
        """Raise :class:`Refused` unless ``milliamps`` is a valid amplitude for this device."""
        if not math.isfinite(milliamps) or milliamps < 0:
            raise Refused(ErrorCode.PARAMETER, f"amplitude {milliamps!r} mA is not valid")
        if milliamps > self._max_ma + 1e-9:
            raise Refused(
                ErrorCode.LIMIT, f"amplitude {milliamps:g} mA above the maximum {self._max_ma:g} mA"
            )
        cap = self.signed_cap_ma
        if cap is not None and milliamps > cap + 1e-9:
            raise Refused(
                ErrorCode.LIMIT,
                f"amplitude {milliamps:g} mA above the clinic's signed cap {cap:g} mA",
            )
        steps = milliamps / self._step
        if abs(steps - round(steps)) > 1e-6:
            raise Refused(
                ErrorCode.LIMIT,
                f"amplitude {milliamps:g} mA is not a multiple of the step {self._step:g} mA",
            )

    def configure(self, channel: int, settings: ChannelSettings, amplitude_ma: float = 0.0) -> None:
        """Set a channel's settings; its amplitude becomes ``amplitude_ma`` (0 for TSP).

        Everything is checked first; a refusal changes nothing.
        """
        ch = self._channel(channel)
        self.check_settings(channel, settings)
        if amplitude_ma:
            self.check_amplitude(amplitude_ma)
            self._check_can_raise(ch, amplitude_ma)
        ch.settings = settings
        ch.set_ma = amplitude_ma
        ch.stuck = False
        self._deliver(ch, amplitude_ma if self.state is OutputState.RUNNING else 0.0)

    def _check_can_raise(self, ch: _Channel, milliamps: float) -> None:
        if self.state is not OutputState.RUNNING:
            raise Refused(ErrorCode.STATE, "output is off (not running)")
        if ch.electrode.lead_off and milliamps > 0:
            raise Refused(ErrorCode.STATE, f"channel {ch.number}: electrode off")

    def set_amplitude(self, channel: int, milliamps: float) -> None:
        """Set one channel's amplitude (only while running). A refusal changes nothing."""
        ch = self._channel(channel)
        self.check_amplitude(milliamps)
        if self.state is not OutputState.RUNNING:
            raise Refused(ErrorCode.STATE, "output is off (not running)")
        if ch.settings is None:
            raise Refused(ErrorCode.STATE, f"channel {channel} is not configured")
        if ch.electrode.lead_off and milliamps > 0:
            raise Refused(ErrorCode.STATE, f"channel {channel}: electrode off")
        rising = milliamps > ch.delivered + 1e-9
        if rising and self.device_ramp:
            self._check_ramp(ch, milliamps)
        if rising:
            ch.last_increase = self.clock.now()
        ch.cut = False  # the host has set the channel again (from what it delivers: from 0)
        ch.set_ma = milliamps
        if ch.stuck:
            # a stuck output stage follows the set value up but never down
            self._deliver(ch, max(ch.delivered, milliamps))
        else:
            self._deliver(ch, milliamps)

    def _check_ramp(self, ch: _Channel, milliamps: float) -> None:
        """S15, whatever the host believes: one step at a time, one interval apart. After a
        lead-off, a reset or a stop the channel delivers 0, so it can only be raised from 0."""
        rise = milliamps - ch.delivered
        if rise > self.ramp_step_ma + 1e-9:
            raise Refused(
                ErrorCode.RAMP,
                f"channel {ch.number}: {milliamps:g} mA is {rise:g} mA above the {ch.delivered:g} "
                f"mA it delivers; the device raises by at most {self.ramp_step_ma:g} mA at a time",
            )
        since = self.clock.now() - ch.last_increase
        if since < self.ramp_interval_s - 1e-9:
            raise Refused(
                ErrorCode.RAMP,
                f"channel {ch.number}: an increase {since * 1000:.0f} ms after the last one; the "
                f"device allows one every {self.ramp_interval_s * 1000:.0f} ms",
            )

    def start(self) -> None:
        """Output on; every amplitude (re)starts at 0. Refused when nothing is configured."""
        if not any(ch.settings is not None for ch in self._channels):
            raise Refused(ErrorCode.STATE, "no channel is configured")
        if self.battery_pct() <= self.battery_empty_pct:
            raise Refused(ErrorCode.STATE, "battery empty")
        self._all_off()
        self.fault = None
        self._set_state(OutputState.RUNNING)
        self._arm_watchdog()

    def stop(self) -> None:
        """Every output to 0, output off. Always succeeds; idempotent."""
        self._all_off()
        self.fault = None
        self._set_state(OutputState.IDLE)
        if not self.watchdog_always:
            self._disarm_watchdog()

    # ------------------------------------------------------------------ watchdog
    def _arm_watchdog(self) -> None:
        self._wd_armed = True
        if self._wd_timer is None:
            self._wd_timer = self.clock.call_at(self._last_feed + self.watchdog_s, self._wd_check)

    def _disarm_watchdog(self) -> None:
        self._wd_armed = False
        if self._wd_timer is not None:
            self._wd_timer.cancel()
            self._wd_timer = None

    def _wd_check(self) -> None:
        self._wd_timer = None
        if not self._wd_armed or not self._powered:
            return
        due = self._last_feed + self.watchdog_s
        if self.clock.now() < due - 1e-9:
            self._wd_timer = self.clock.call_at(due, self._wd_check)
            return
        self._wd_armed = False
        log.info("watchdog tripped: no valid frame for %.0f ms", self.watchdog_s * 1000)
        self._all_off()
        self._set_state(OutputState.IDLE)
        self._event(DeviceEventKind.WATCHDOG_TRIP)

    # ------------------------------------------------------------------ battery
    def _drain_rate(self) -> float:
        return self._bat_running if self.state is OutputState.RUNNING else self._bat_idle

    def _update_battery(self) -> None:
        now = self.clock.now()
        self._bat_pct = max(0.0, self._bat_pct - self._drain_rate() * (now - self._bat_time))
        self._bat_time = now

    def _schedule_battery(self) -> None:
        if self._bat_timer is not None:
            self._bat_timer.cancel()
            self._bat_timer = None
        if not self._powered:
            return
        rate = self._drain_rate()
        target = self.battery_empty_pct if self._bat_low_sent else self.battery_low_pct
        if rate <= 0 or (self._bat_pct <= target and self._bat_low_sent):
            return
        delay = max(0.0, (self._bat_pct - target) / rate)
        self._bat_timer = self.clock.call_at(self._bat_time + delay, self._battery_check)

    def _battery_check(self) -> None:
        self._bat_timer = None
        self._update_battery()
        if not self._bat_low_sent and self._bat_pct <= self.battery_low_pct + 1e-9:
            self._bat_low_sent = True
            self._event(DeviceEventKind.BATTERY_LOW, detail=str(int(self._bat_pct)))
        elif self._bat_pct <= self.battery_empty_pct + 1e-9:
            if self.state is OutputState.RUNNING or any(c.delivered for c in self._channels):
                self.fault = "battery_empty"
                self._all_off()
                self._set_state(OutputState.IDLE)
                self._event(DeviceEventKind.FAULT, detail="battery_empty")
            return
        self._schedule_battery()

    def set_battery(self, pct: float) -> None:
        """Put the battery at ``pct`` (tests, the ``batlow`` fault); events follow as usual."""
        self._update_battery()
        self._bat_pct = max(0.0, min(100.0, pct))
        if self._bat_pct > self.battery_low_pct:
            self._bat_low_sent = False
        self._schedule_battery()
        if not self._bat_low_sent and self._bat_pct <= self.battery_low_pct:
            self._battery_check()

    # ------------------------------------------------------------------ faults
    def lead_off(self, channel: int) -> None:
        """The electrode of ``channel`` comes off: that channel delivers 0 at once, an event."""
        ch = self._channel(channel)
        self._cancel_degrade(channel)
        if ch.electrode.lead_off:
            return
        ch.electrode.lead_off = True
        ch.electrode.degrade_start = ch.electrode.degrade_end = None
        ch.set_ma = 0.0
        ch.stuck = False
        ch.cut = self.state is OutputState.RUNNING
        self._deliver(ch, 0.0)
        self._event(DeviceEventKind.LEAD_OFF, channel)

    def lead_on(self, channel: int) -> None:
        """The electrode is back on the skin. The channel stays at 0 until the host raises it."""
        ch = self._channel(channel)
        self._cancel_degrade(channel)
        ch.electrode.lead_off = False
        ch.electrode.degrade_start = ch.electrode.degrade_end = None

    def degrade_contact(self, channel: int, seconds: float) -> None:
        """Contact worsens: impedance climbs over ``seconds`` until lead-off is detected."""
        ch = self._channel(channel)
        if ch.electrode.lead_off:
            return
        now = self.clock.now()
        self._cancel_degrade(channel)
        ch.electrode.degrade_start = now
        ch.electrode.degrade_end = now + max(seconds, 0.0)
        self._lead_timers[channel] = self.clock.call_at(
            now + max(seconds, 0.0), lambda: self.lead_off(channel)
        )

    def _cancel_degrade(self, channel: int) -> None:
        timer = self._lead_timers.pop(channel, None)
        if timer is not None:
            timer.cancel()

    def stick(self, channel: int) -> None:
        """Stuck output stage: delivered amplitude no longer follows decreases of the set value.

        Only the output switch (stop, watchdog, reset, lead-off, fault) brings it to 0.
        """
        self._channel(channel).stuck = True

    def jump(self, channel: int, milliamps: float) -> None:
        """Spontaneous amplitude jump: delivered rises by ``milliamps`` above what is set.

        Bounded by the output stage's own maximum; lasts until the next amplitude change.
        Nothing happens on a channel that is not delivering (output off or lead-off).
        """
        ch = self._channel(channel)
        if self.state is not OutputState.RUNNING or ch.electrode.lead_off or ch.settings is None:
            return
        self._deliver(ch, min(self._max_ma, ch.delivered + milliamps))

    def internal_fault(self, code: str = "internal") -> None:
        """An internal fault: output off at once, then ``EVT FAULT``."""
        self.fault = code
        self._all_off()
        self._set_state(OutputState.IDLE)
        if not self.watchdog_always:
            self._disarm_watchdog()
        self._event(DeviceEventKind.FAULT, detail=code)

    def emergency_switch(self) -> None:
        """The device's own emergency switch was pressed: output off, an event."""
        self.fault = "estop"
        self._all_off()
        self._set_state(OutputState.IDLE)
        if not self.watchdog_always:
            self._disarm_watchdog()
        self._event(DeviceEventKind.EMERGENCY_SWITCH)

    def reset(self) -> None:
        """The device restarts: every output 0, every channel unconfigured, IDLE, an event."""
        self.fault = None
        self._all_off()
        for ch in self._channels:
            ch.settings = None
        self._set_state(OutputState.IDLE)
        self._disarm_watchdog()
        self._last_feed = self.clock.now()
        self._event(DeviceEventKind.DEVICE_RESET)

    def power_off(self) -> None:
        """Switch the unit off for good: output 0 and every timer cancelled."""
        self._all_off()
        self._set_state(OutputState.IDLE)
        self._disarm_watchdog()
        self._powered = False
        for channel in list(self._lead_timers):
            self._cancel_degrade(channel)
        if self._bat_timer is not None:
            self._bat_timer.cancel()
            self._bat_timer = None


__all__ = [
    "LEAD_OFF_IMPEDANCE_OHM",
    "DeliveredRecord",
    "Delivery",
    "EventHandler",
    "Firmware",
    "Identity",
    "Odometer",
    "OutputState",
    "ReadBack",
    "Refused",
]
