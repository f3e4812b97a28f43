"""Stateful property test: governor + real protocol driver + simulator, in virtual time.

Hypothesis drives random sessions -- intensity changes (valid and out of range), program
changes, pauses, resumes, stops, emergency stops, comfort caps, time passing and injected
faults -- through :class:`~drivers.safety.SafetyGovernor` and a real driver talking to the
simulated unit over ``sim://``. Every invariant is checked on what the SIMULATOR DELIVERED
(its :class:`~simulator.firmware.DeliveredRecord`), never on what the host believes:

* output never above the effective caps in force (profile ∩ device ∩ prescription ∩ comfort ∩
  dose), except a device's own amplitude jump, which must end within the read-back deadline;
* output never rises faster than the ramp: out(t2) - out(t1) <= step + rate·(t2 - t1);
* output is 0 whenever the governor is paused or ended (after the stop deadline);
* after each fault, output is 0 within its deadline with the right end reason (S7 <= 100 ms,
  S8 <= 1 s, S10 <= 50 ms), and a rejected command writes no byte to the transport.

The protocol-specific bits live in :data:`PROTOCOLS` (one :class:`SimProtocol` each); the
tests are parametrised over it, so another protocol is one more entry.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import serial
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import simulator  # noqa: F401 - registers sim://
from drivers import exit_guard
from drivers.base import ChannelSettings, DeviceEventKind, DriverError, Pattern, TensDriver
from drivers.clock import Clock, VirtualClock
from drivers.limits import CapLayer, CapSource, DeviceProfile, get_profile, max_amplitude_for_dose
from drivers.safety import (
    READBACK_ABSOLUTE_MA,
    READBACK_RELATIVE,
    AmplitudeChanged,
    GovernorEvent,
    GovernorState,
    GovernorStateError,
    SafetyEventKind,
    SafetyGovernor,
    SafetyRejection,
    Stopped,
    StopReason,
)
from drivers.sciencemode2.driver import ScienceMode2Driver
from drivers.sciencemode4.driver import ScienceMode4Driver
from drivers.transport import open_port
from drivers.tsp.driver import TspDriver
from simulator.device import SimDevice
from simulator.faults import Direction, FaultKind
from simulator.protocol_sim import Serial as SimSerial

# ----------------------------------------------------------------------------- deadlines

STOP_DEADLINE_S = 0.05
"""S10 (and every host stop or pause): output 0 within 50 ms of virtual time."""
LEAD_OFF_DEADLINE_S = 0.1
"""S7: lead-off -> every channel 0 and the session paused within 100 ms."""
COMMS_DEADLINE_S = 1.0
"""S8: no acknowledgement / no frame for 1 s -> comms lost, output 0."""
READBACK_DEADLINE_S = 0.35
"""S9: two consecutive 10 Hz readings, then STOP: about 0.2 s; we allow 0.35 s."""
MARGIN_S = 0.01
"""Latency of the simulated link (1 ms each way) and scheduling, with room to spare."""
EPS = 1e-6

# ----------------------------------------------------------------------------- protocols

Connector = Callable[[serial.Serial, Clock, str], TensDriver]


@dataclass(frozen=True)
class SimProtocol:
    """Everything protocol-specific the safety tests need."""

    name: str
    url: str
    """``sim://`` URL; ``{seed}`` is filled in."""
    profile_id: str
    connect: Connector
    """Attach a driver to an open ``sim://`` port, identify, stop."""
    faults: tuple[FaultKind, ...]
    """The fault kinds this protocol's simulator supports."""
    channels: int = 2
    """How many channels the tests drive."""
    keepalive_s: float = 1.0 / 3.0
    """The longest the host stays silent (keep-alive or status poll period)."""
    silence_deadline_s: float = 1.0
    """A device that goes silent is comms lost by then (S8: 1 s after the host's last frame
    was due an answer)."""
    device_watchdog_s: float = 1.0
    """The device zeroes its output when it hears nothing for this long."""
    resends_lost_commands: bool = False
    """The driver sends an unanswered command again before the 1 s timeout (so one dropped
    host frame need not end the session)."""
    lead_off_min_ma: float = 0.0
    """The device detects an electrode coming off only while the channel delivers at least
    this much (the P24: 15 mA). Below it the lead-off goes unreported, and when the electrode
    is back the device's current flows again at once: a documented residual risk of that
    device (docs/safety.md), exempted here from S7 and from the ramp check, never silently."""
    announces_reset: bool = True
    """The device says when it restarted (TSP ``EVT RESET``, ScienceMode2 ``Init``). A P24 that
    restarts is only seen to have left the mid level while the host keeps it stimulating:
    idle or paused, a restart changes nothing the host could see (and nothing it needs to)."""
    battery_report_s: float = 0.0
    """How long after the battery runs low the host hears of it (0: the device says so at
    once; the P24's level is polled every second)."""

    @property
    def comms_deadline_s(self) -> float:
        """Output 0 after a lost link at the latest (host stop or device watchdog)."""
        return max(self.keepalive_s + COMMS_DEADLINE_S, self.device_watchdog_s)


def _tsp_connect(port: serial.Serial, clock: Clock, url: str) -> TensDriver:
    return TspDriver.connect(port, clock, url=url)


def _sciencemode2_connect(port: serial.Serial, clock: Clock, url: str) -> TensDriver:
    return ScienceMode2Driver.connect(port, clock, url=url)


def _sciencemode4_connect(port: serial.Serial, clock: Clock, url: str) -> TensDriver:
    return ScienceMode4Driver.connect(port, clock, url=url)


ALL_FAULTS: tuple[FaultKind, ...] = (
    FaultKind.LEAD_OFF,
    FaultKind.LEAD_ON,
    FaultKind.DRIFT,
    FaultKind.STUCK,
    FaultKind.JUMP,
    FaultKind.RESET,
    FaultKind.INTERNAL,
    FaultKind.EMERGENCY,
    FaultKind.BATTERY_LOW,
    FaultKind.GARBLE,
    FaultKind.DROP,
    FaultKind.DUPLICATE,
    FaultKind.LATE,
    FaultKind.MUTE,
    FaultKind.DISCONNECT,
)

PROTOCOLS: dict[str, SimProtocol] = {
    "tsp": SimProtocol(
        name="tsp",
        url="sim://tsp?seed={seed}",
        profile_id="tens-sim",
        connect=_tsp_connect,
        faults=ALL_FAULTS,
        resends_lost_commands=True,  # a TSP device answers a repeat from its reply cache
    ),
    "sciencemode2": SimProtocol(
        name="sciencemode2",
        url="sim://sciencemode2?seed={seed}",
        profile_id="rehastim2",
        connect=_sciencemode2_connect,
        # no measured current (S9 cannot see stuck output or jumps) and no battery reports
        faults=tuple(
            k
            for k in ALL_FAULTS
            if k not in (FaultKind.STUCK, FaultKind.JUMP, FaultKind.BATTERY_LOW)
        ),
        keepalive_s=0.5,
        silence_deadline_s=1.5,  # a status poll every 0.5 s, unanswered for 1 s
        device_watchdog_s=1.2,
        resends_lost_commands=True,
    ),
    "sciencemode4": SimProtocol(
        name="sciencemode4",
        url="sim://sciencemode4?seed={seed}",
        profile_id="p24",
        connect=_sciencemode4_connect,
        # no measured current (S9 cannot see stuck output or jumps), and ScienceMode4 has no
        # message for an emergency switch
        faults=tuple(
            k for k in ALL_FAULTS if k not in (FaultKind.STUCK, FaultKind.JUMP, FaultKind.EMERGENCY)
        ),
        keepalive_s=0.5,  # Get_Stim_Status while idle; Ml_Get_Current_Data every 50 ms running
        silence_deadline_s=1.5,  # a poll (50 ms stimulating, 0.5 s otherwise) unanswered for 1 s
        device_watchdog_s=2.0,  # the P24's fixed keep-alive timeout (the S17 exception)
        resends_lost_commands=True,
        lead_off_min_ma=15.0,
        announces_reset=False,
        battery_report_s=1.0,
    ),
}


@pytest.fixture(autouse=True)
def _no_leftover_drivers() -> Iterator[None]:
    """A failing case must not leave drivers in the exit guard (they would STOP at exit)."""
    yield
    for driver in exit_guard.registered():
        exit_guard.unregister(driver)


@pytest.fixture(params=sorted(PROTOCOLS))
def sim_protocol(request: pytest.FixtureRequest) -> SimProtocol:
    """The one place a protocol is chosen: every safety test on the simulator uses it."""
    protocol: SimProtocol = PROTOCOLS[request.param]
    return protocol


# ----------------------------------------------------------------------------- programs

CONVENTIONAL = ChannelSettings(frequency_hz=100, pulse_width_us=200)
ACUPUNCTURE = ChannelSettings(frequency_hz=4, pulse_width_us=250)
BURST = ChannelSettings(
    frequency_hz=100, pulse_width_us=200, pattern=Pattern.BURST, secondary_hz=2, pulses_per_burst=7
)
MIXED = ChannelSettings(
    frequency_hz=100, pulse_width_us=150, pattern=Pattern.MIXED, secondary_hz=2, cycle_s=3
)
TOO_FAST = ChannelSettings(frequency_hz=200, pulse_width_us=200)
TOO_SHORT = ChannelSettings(frequency_hz=100, pulse_width_us=20)
PROGRAMS = (CONVENTIONAL, ACUPUNCTURE, BURST, MIXED, TOO_FAST, TOO_SHORT)

PRESCRIPTION = CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=40.0)
"""40 mA keeps every injected amplitude jump (>= 5 mA) above the read-back tolerance."""

LINK_FAULTS = frozenset(
    {
        FaultKind.GARBLE,
        FaultKind.DROP,
        FaultKind.DUPLICATE,
        FaultKind.LATE,
        FaultKind.MUTE,
        FaultKind.DISCONNECT,
    }
)
AMPLITUDE_KINDS = (SafetyEventKind.AMPLITUDE_SET, SafetyEventKind.CONFIGURED)
SET_CHANGE_KINDS = (*AMPLITUDE_KINDS, SafetyEventKind.TARGET_CHANGED)
"""When a channel's set amplitude may have changed on the device: a lowered target is sent at
once, so the device's set drops before its acknowledgement (AMPLITUDE_SET) is back. The S9
deadline runs from the latest of these (for a lowering: the moment the lower value was sent,
which is before the device's set changed)."""
HOST_ENDS = frozenset({StopReason.USER, StopReason.EMERGENCY, StopReason.DURATION})
"""A session the host ended first (in the same instant as a fault) is fine, if output is 0."""
END_REASON_FOR_FAULT: dict[FaultKind, StopReason] = {
    FaultKind.RESET: StopReason.DEVICE_RESET,
    FaultKind.INTERNAL: StopReason.DEVICE_FAULT,
    FaultKind.EMERGENCY: StopReason.EMERGENCY_SWITCH,
}


# ----------------------------------------------------------------------------- the rig


@dataclass
class Injected:
    time: float
    kind: FaultKind
    channel: int | None = None
    value: float | None = None
    direction: Direction | None = None

    def disturbs_until(self) -> float:
        """Until when this fault may delay or hide other reactions (for deadline checks)."""
        if self.kind in (FaultKind.DISCONNECT,):
            return math.inf
        if self.kind is FaultKind.MUTE:
            return math.inf if self.value is None else self.time + self.value + 1.5
        if self.kind is FaultKind.LATE:
            return self.time + (self.value or 1500.0) / 1000.0 + 1.5
        if self.kind in LINK_FAULTS:
            return self.time + 0.5 + COMMS_DEADLINE_S + 0.2
        return self.time + 0.4


@dataclass
class Harness:
    """A governor on a real driver on an in-process simulated unit, in virtual time."""

    protocol: SimProtocol
    seed: int
    areas: dict[int, float]
    layers: tuple[CapLayer, ...] = (PRESCRIPTION,)
    clock: VirtualClock = field(default_factory=VirtualClock)
    events: list[GovernorEvent] = field(default_factory=list)
    writes: list[tuple[float, int]] = field(default_factory=list)
    injected: list[Injected] = field(default_factory=list)
    caps: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    comfort: dict[int, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        url = self.protocol.url.format(seed=self.seed)
        port = open_port(url, clock=self.clock)
        assert isinstance(port, SimSerial)
        self.device: SimDevice = port.device
        write = port.write

        def counting_write(data: object, /) -> int:
            assert isinstance(data, bytes | bytearray)
            self.writes.append((self.clock.now(), len(data)))
            return write(data)

        port.write = counting_write  # type: ignore[method-assign]
        self.port = port
        self.profile: DeviceProfile = get_profile(self.protocol.profile_id)
        self.driver = self.protocol.connect(port, self.clock, url)
        self.gov = SafetyGovernor(
            self.driver,
            self.profile,
            self.clock,
            on_event=self.events.append,
            layers=self.layers,
            electrode_areas_cm2=self.areas,
        )

    # ---- helpers
    @property
    def bytes_written(self) -> int:
        return sum(n for _, n in self.writes)

    def oracle_cap(self, channel: int) -> float:
        """The highest current allowed on ``channel`` now, computed independently of the
        governor: profile ∩ device ∩ prescription ∩ comfort ∩ the S5 dose limit of the
        settings the device actually has."""
        fw = self.device.firmware
        cap = min(self.profile.amplitude.max_ma, fw.limits.max_amplitude_ma)
        for layer in self.layers:
            layer_cap = layer.amplitude_for(channel)
            if layer_cap is not None:
                cap = min(cap, layer_cap)
        comfort = self.comfort.get(channel)
        if comfort is not None:
            cap = min(cap, comfort)
        settings = fw.settings(channel)
        area = self.areas.get(channel)
        if settings is None or area is None:
            return 0.0
        dose_cap = max_amplitude_for_dose(settings, area, clinician_override=False)
        return min(cap, dose_cap)

    def note_caps(self) -> None:
        """Record the caps in force now (the checker compares deliveries with them)."""
        now = self.clock.now()
        for ch in range(1, self.protocol.channels + 1):
            value = self.oracle_cap(ch)
            history = self.caps.setdefault(ch, [])
            if not history or history[-1][1] != value:
                history.append((now, value))

    def set_comfort_cap(self, channel: int, cap: float | None) -> None:
        self.gov.set_comfort_cap(channel, cap)
        self.comfort[channel] = cap
        self.note_caps()

    def session(self, settings: ChannelSettings = CONVENTIONAL, duration_s: float = 600) -> None:
        self.gov.connect()
        self.note_caps()
        for ch in range(1, self.protocol.channels + 1):
            self.gov.configure(ch, settings)
        self.note_caps()
        self.gov.start(duration_s)
        self.note_caps()  # some devices take their settings only at start

    def inject(
        self,
        kind: FaultKind,
        channel: int | None = None,
        value: float | None = None,
        direction: Direction | None = None,
        count: int = 1,
    ) -> None:
        self.injected.append(Injected(self.clock.now(), kind, channel, value, direction))
        self.device.inject(kind, channel=channel, value=value, direction=direction, count=count)

    def ramp_to(self, channel: int, ma: float, timeout: float = 120.0) -> None:
        self.gov.set_target(channel, ma)
        self.clock.wait_until(lambda: self.device.firmware.delivered(channel) >= ma, timeout)
        assert self.device.firmware.delivered(channel) == ma

    # ---- the checker
    def cap_at(self, channel: int, time: float) -> float:
        value = math.inf
        for when, cap in self.caps.get(channel, []):
            if when <= time + EPS:
                value = cap
            else:
                break
        return value

    def jump_times(self, channel: int) -> list[float]:
        return [
            f.time
            for f in self.injected
            if f.kind is FaultKind.JUMP and (f.channel or 1) == channel
        ]

    def check_caps(self) -> None:
        record = self.device.record
        for ch in range(1, self.protocol.channels + 1):
            jumps = self.jump_times(ch)
            for d in record.changes(ch):
                if any(abs(d.time - j) < EPS for j in jumps):
                    continue  # the device's own fault; check_divergence bounds how long it lasts
                allowed = max(self.cap_at(ch, d.time), self.cap_at(ch, d.time - STOP_DEADLINE_S))
                assert d.ma <= allowed + EPS, (
                    f"channel {ch} delivered {d.ma} mA at t={d.time:.3f} above the cap {allowed}"
                )

    def undetected_return(self, channel: int, time: float, before: float, after: float) -> bool:
        """The documented residual risk of a device that cannot see a lead-off below
        :attr:`SimProtocol.lead_off_min_ma`: its current, still set, flows again the moment
        the electrode is back (within the emulator's 10 ms contact check)."""
        limit = self.protocol.lead_off_min_ma
        return (
            limit > 0
            and before == 0.0
            and after < limit
            and any(
                f.kind is FaultKind.LEAD_ON
                and (f.channel or 1) == channel
                and f.time - EPS <= time <= f.time + 0.02
                for f in self.injected
            )
        )

    def resumed_after_detected_off(self, channel: int, time: float, after: float) -> bool:
        """The documented residual race of the P24 (docs/safety.md): an electrode error the
        device saw stops that channel by itself, silently; an update the host sent before its
        next poll told it (<= 50 ms, then the governor pauses) switches the channel on again at
        its level -- current flows at once if the contact came back meanwhile. Never above the
        level it had, never after the S7 deadline."""
        limit = self.protocol.lead_off_min_ma
        if limit <= 0:
            return False
        for event in self.device.firmware.events:
            if event.kind is not DeviceEventKind.LEAD_OFF or (event.channel or 1) != channel:
                continue
            before = self.device.record.level_at(channel, event.time - EPS)
            if (
                before >= limit
                and event.time <= time <= event.time + LEAD_OFF_DEADLINE_S
                and after <= before + EPS
            ):
                return True
        return False

    def check_ramp(self) -> None:
        step = self.gov.ramp_step_ma
        rate = self.gov.ramp_rate_ma_per_s
        record = self.device.record
        for ch in range(1, self.protocol.channels + 1):
            jumps = self.jump_times(ch)
            lowest = math.inf  # min over past instants t1 of out(t1) - rate·t1
            previous = 0.0
            for time, before, after in record.steps(ch):
                if self.undetected_return(ch, time, before, after) or (
                    before == 0.0 and self.resumed_after_detected_off(ch, time, after)
                ):
                    lowest = after - rate * time  # rises are measured from here on
                    continue
                lowest = min(lowest, before - rate * time)
                previous = before
                if after > previous + EPS and not any(abs(time - j) < EPS for j in jumps):
                    excess = after - rate * time - lowest - step
                    assert excess <= EPS, (
                        f"channel {ch} rose to {after} mA at t={time:.3f}: "
                        f"{excess:.3f} mA faster than the ramp ({step} mA, {rate} mA/s)"
                    )

    def off_intervals(self, now: float) -> list[tuple[float, float]]:
        """[stop or pause event, next start or resume] intervals, from the governor's events."""
        intervals: list[tuple[float, float]] = []
        off_since: float | None = 0.0
        for event in self.events:
            if event.kind in (SafetyEventKind.STARTED, SafetyEventKind.RESUMED):
                if off_since is not None:
                    intervals.append((off_since, event.time))
                off_since = None
            elif (
                event.kind in (SafetyEventKind.PAUSED, SafetyEventKind.STOPPED)
                and off_since is None
            ):
                off_since = event.time
        if off_since is not None:
            intervals.append((off_since, now))
        return intervals

    def link_fault_before(self, time: float, window: float = 3.0) -> bool:
        return any(
            f.kind in LINK_FAULTS and time - window <= f.time <= time + EPS for f in self.injected
        )

    def check_off(self, now: float) -> None:
        record = self.device.record
        for start, end in self.off_intervals(now):
            deadline = STOP_DEADLINE_S
            if self.link_fault_before(start):
                deadline = self.protocol.comms_deadline_s + MARGIN_S
            if start + deadline < end:
                highest = record.max_any_between(start + deadline, end)
                assert highest == 0.0, (
                    f"output {highest} mA between t={start + deadline:.3f} and t={end:.3f} "
                    f"while the governor was paused or ended (since t={start:.3f})"
                )

    def state_at(self, time: float) -> GovernorState:
        state = GovernorState.DISCONNECTED
        for event in self.events:
            if event.time > time + EPS:
                break
            if event.kind is SafetyEventKind.CONNECTED:
                state = GovernorState.IDLE
            elif event.kind in (SafetyEventKind.STARTED, SafetyEventKind.RESUMED):
                state = GovernorState.RUNNING
            elif event.kind is SafetyEventKind.PAUSED:
                state = GovernorState.PAUSED
            elif event.kind is SafetyEventKind.STOPPED:
                state = GovernorState.ENDED
        return state

    def disturbed(self, start: float, end: float, other_than: Injected | None = None) -> bool:
        for f in self.injected:
            if f is other_than or f.kind in (FaultKind.BATTERY_LOW, FaultKind.LEAD_ON):
                continue
            if f.time <= end + EPS and f.disturbs_until() >= start - EPS:
                return True
        return False

    def first_event(
        self, start: float, end: float, kinds: tuple[SafetyEventKind, ...]
    ) -> GovernorEvent | None:
        for event in self.events:
            if start - EPS <= event.time <= end + EPS and event.kind in kinds:
                return event
        return None

    def expect_end(self, fault: Injected, deadline: float, reason: StopReason) -> None:
        end = fault.time + deadline
        stopped = self.first_event(fault.time, end, (SafetyEventKind.STOPPED,))
        assert isinstance(stopped, Stopped), (
            f"{fault.kind.value} at t={fault.time:.3f}: no stop by {end:.3f}"
        )
        assert stopped.reason is reason or stopped.reason in HOST_ENDS, (
            f"{fault.kind.value} at t={fault.time:.3f} ended as {stopped.reason}, not {reason}"
        )
        levels = self.device.record.levels_at(end + MARGIN_S)
        assert all(v == 0.0 for v in levels.values()), (
            f"{fault.kind.value} at t={fault.time:.3f}: output {levels} at t={end + MARGIN_S:.3f}"
        )

    def check_faults(self, now: float, checked: set[int]) -> None:
        """Each fault, once its deadline has passed: output 0 in time, the right reason."""
        for index, fault in enumerate(self.injected):
            if index in checked:
                continue
            deadline = self.fault_deadline(fault)
            if deadline is None:
                checked.add(index)
                continue
            if now < fault.time + deadline + MARGIN_S:
                continue
            checked.add(index)
            before = self.state_at(fault.time - EPS)
            if before not in (GovernorState.IDLE, GovernorState.RUNNING, GovernorState.PAUSED):
                continue
            if self.disturbed(fault.time - 1.5, fault.time + deadline, other_than=fault):
                continue
            if fault.kind is FaultKind.RESET and not self.protocol.announces_reset:
                host_changes = (
                    SafetyEventKind.PAUSED,
                    SafetyEventKind.RESUMED,
                    SafetyEventKind.STARTED,
                )
                if before is not GovernorState.RUNNING or self.first_event(
                    fault.time - EPS, fault.time + deadline, host_changes
                ):
                    # not stimulating throughout (the host paused, or started again and so
                    # entered the mid level anew): nothing to see, and the output is 0 anyway
                    continue
            if fault.kind in END_REASON_FOR_FAULT:
                self.expect_end(fault, deadline, END_REASON_FOR_FAULT[fault.kind])
            elif fault.kind in (FaultKind.MUTE, FaultKind.DISCONNECT, FaultKind.DROP):
                self.expect_end(fault, deadline, StopReason.COMMS_LOST)
        self.check_lead_offs(now)

    def fault_deadline(self, fault: Injected) -> float | None:
        kind = fault.kind
        protocol = self.protocol
        if kind in END_REASON_FOR_FAULT:
            return LEAD_OFF_DEADLINE_S
        if kind is FaultKind.MUTE and (fault.value is None or fault.value >= COMMS_DEADLINE_S):
            return protocol.silence_deadline_s + MARGIN_S
        if kind is FaultKind.DISCONNECT:
            return max(protocol.silence_deadline_s, protocol.device_watchdog_s) + MARGIN_S
        if (
            kind is FaultKind.DROP
            and fault.direction is Direction.DEVICE
            and not protocol.resends_lost_commands
        ):
            # the next host frame is lost; it goes out at most one keep-alive period later
            return protocol.keepalive_s + COMMS_DEADLINE_S + MARGIN_S
        return None

    def check_lead_offs(self, now: float) -> None:
        """S7 on every lead-off the firmware raised (injected, or at the end of a drift)."""
        for event in self.device.firmware.events:
            if event.kind is not DeviceEventKind.LEAD_OFF:
                continue
            t = event.time
            if now < t + LEAD_OFF_DEADLINE_S + MARGIN_S:
                continue
            if self.state_at(t - EPS) is not GovernorState.RUNNING:
                continue
            if self.below_detection(event.channel or 1, t):
                continue  # below what the device can detect (see SimProtocol.lead_off_min_ma)
            if self.disturbed(t - 1.5, t + LEAD_OFF_DEADLINE_S, other_than=self._lead_fault(t)):
                continue
            reaction = self.first_event(
                t, t + LEAD_OFF_DEADLINE_S, (SafetyEventKind.PAUSED, SafetyEventKind.STOPPED)
            )
            assert reaction is not None, f"lead-off at t={t:.3f}: not paused within 100 ms"
            levels = self.device.record.levels_at(t + LEAD_OFF_DEADLINE_S)
            assert all(v == 0.0 for v in levels.values()), (
                f"lead-off at t={t:.3f}: output {levels} 100 ms later"
            )

    def below_detection(self, channel: int, time: float) -> bool:
        """The lead-off at ``time`` was below what the device can see: the channel delivered
        less than :attr:`SimProtocol.lead_off_min_ma`, or the host set it below that before
        the device's report could reach it (the P24 reports an electrode error only in its next
        keep-alive answer, and an update in between switches the channel on again at the new
        level: below 15 mA, unseen -- docs/safety.md §4, R1)."""
        limit = self.protocol.lead_off_min_ma
        if limit <= 0:
            return False
        if self.device.record.level_at(channel, time - EPS) < limit:
            return True
        return any(
            e.channel == channel
            and time - MARGIN_S <= e.time <= time + LEAD_OFF_DEADLINE_S
            and (
                e.kind is SafetyEventKind.CONFIGURED
                or (isinstance(e, AmplitudeChanged) and e.to_ma < limit)
            )
            for e in self.events
        )

    def _lead_fault(self, time: float) -> Injected | None:
        """The injected fault that caused a lead-off at ``time`` (the latest before it)."""
        found: Injected | None = None
        for f in self.injected:
            if f.kind in (FaultKind.LEAD_OFF, FaultKind.DRIFT) and f.time <= time + EPS:
                found = f
        return found

    def check_divergence(self, now: float) -> None:
        """S9: the device delivering more than it was set to never lasts past the deadline."""
        fw = self.device.firmware
        if self.disturbed(now - READBACK_DEADLINE_S - 1.5, now):
            only_s9 = all(
                f.kind in (FaultKind.STUCK, FaultKind.JUMP, FaultKind.BATTERY_LOW)
                for f in self.injected
                if f.time <= now and f.disturbs_until() >= now - READBACK_DEADLINE_S - 1.5
            )
            if not only_s9:
                return
        for ch in range(1, self.protocol.channels + 1):
            delivered = fw.delivered(ch)
            set_ma = fw.set_amplitude_of(ch)
            tolerance = min(
                max(READBACK_RELATIVE * set_ma, self.profile.amplitude.step_ma),
                READBACK_ABSOLUTE_MA,
            )
            if delivered - set_ma <= tolerance + 0.02 * delivered + EPS:
                continue
            since = max(
                [e.time for e in self.events if e.channel == ch and e.kind in SET_CHANGE_KINDS]
                + [f.time for f in self.injected if f.channel == ch]
                + [0.0]
            )
            assert now - since <= READBACK_DEADLINE_S, (
                f"channel {ch} delivers {delivered} mA but is set to {set_ma} mA "
                f"since t<={since:.3f} (now {now:.3f}): no read-back stop"
            )

    def check_durations(self) -> None:
        """S6: a DURATION stop comes after exactly the planned stimulation time."""
        planned: float | None = None
        running_since: float | None = None
        ran = 0.0
        for event in self.events:
            if event.kind is SafetyEventKind.STARTED:
                value = event.duration_s
                assert isinstance(value, float)
                planned, running_since, ran = value, event.time, 0.0
            elif event.kind is SafetyEventKind.RESUMED:
                running_since = event.time
            elif event.kind in (SafetyEventKind.PAUSED, SafetyEventKind.STOPPED):
                if running_since is not None:
                    ran += event.time - running_since
                    running_since = None
                if event.reason is StopReason.DURATION:
                    assert planned is not None
                    assert abs(ran - planned) < 1e-6, f"stopped after {ran} s, planned {planned} s"

    def check_all(self, checked: set[int]) -> None:
        now = self.clock.now()
        self.check_caps()
        self.check_ramp()
        self.check_off(now)
        self.check_faults(now, checked)
        self.check_divergence(now)
        self.check_durations()

    def close(self) -> None:
        self.gov.close()


# ----------------------------------------------------------------------------- the machine

amplitudes = st.one_of(
    st.integers(0, 90).map(lambda n: n / 2),  # the grid, past the 40 mA prescription cap
    st.floats(min_value=-5, max_value=150, allow_nan=False),  # mostly off the grid
    st.sampled_from([math.nan, math.inf, -0.5, 0.25, 40.5, 100.5]),
)
FAULT_CHOICES: tuple[FaultKind, ...] = (
    *ALL_FAULTS,
    # the faults a session survives or pauses on come up more often than those ending a link
    FaultKind.LEAD_OFF,
    FaultKind.LEAD_ON,
    FaultKind.LEAD_ON,
    FaultKind.STUCK,
    FaultKind.JUMP,
    FaultKind.JUMP,
    FaultKind.DRIFT,
    FaultKind.GARBLE,
    FaultKind.DUPLICATE,
)
steps = st.one_of(
    st.floats(min_value=0.001, max_value=2.0),
    st.sampled_from([0.05, 0.1, 0.333, 0.5, 1.0, 1.2, 5.0, 30.0]),
)


class GovernorMachine(RuleBasedStateMachine):
    """Random sessions through the governor; invariants on the simulator's record."""

    protocol: SimProtocol = PROTOCOLS["tsp"]

    def __init__(self) -> None:
        super().__init__()
        self._h: Harness | None = None
        self.checked: set[int] = set()

    @property
    def h(self) -> Harness:
        assert self._h is not None
        return self._h

    @initialize(seed=st.integers(0, 2**16), small_pads=st.booleans())
    def setup(self, seed: int, small_pads: bool) -> None:
        areas = {1: 25.0, 2: 3.0 if small_pads else 25.0}  # 3 cm²: the dose binds at 30 mA
        self._h = Harness(self.protocol, seed, areas)
        self.h.session(CONVENTIONAL, duration_s=300)

    # ---- intensity (two rules: valid grid values are the common case)
    def _set(self, ch: int, ma: float) -> None:
        before = self.h.bytes_written
        try:
            self.h.gov.set_target(ch, ma, who="test", why="property")
        except (SafetyRejection, GovernorStateError):
            assert self.h.bytes_written == before, "a rejected command wrote to the port"

    @rule(ch=st.integers(1, 2), ma=st.integers(0, 80).map(lambda n: n / 2))
    def set_target(self, ch: int, ma: float) -> None:
        self._set(ch, ma)

    @rule(ch=st.integers(1, 2), ma=st.integers(4, 64).map(lambda n: n / 2))
    def ramp_up_and_wait(self, ch: int, ma: float) -> None:
        """Raise and let the ramp get there (sessions at real intensities, not only near 0)."""
        self._set(ch, ma)
        self.h.clock.advance(ma / self.h.gov.ramp_rate_ma_per_s + 0.6)

    @rule(ch=st.integers(1, 2), ma=amplitudes)
    def set_target_any(self, ch: int, ma: float) -> None:
        self._set(ch, ma)

    @rule(ch=st.integers(1, 2), up=st.booleans())
    def step(self, ch: int, up: bool) -> None:
        before = self.h.bytes_written
        try:
            if up:
                self.h.gov.step_up(ch)
            else:
                self.h.gov.step_down(ch)
        except (SafetyRejection, GovernorStateError):
            assert self.h.bytes_written == before, "a rejected step wrote to the port"

    @rule(ch=st.integers(1, 2), cap=st.one_of(st.none(), st.integers(0, 80).map(lambda n: n / 2)))
    def comfort_cap(self, ch: int, cap: float | None) -> None:
        self.h.set_comfort_cap(ch, cap)

    # ---- program
    @rule(ch=st.integers(1, 2), program=st.sampled_from(PROGRAMS))
    def configure(self, ch: int, program: ChannelSettings) -> None:
        before = self.h.bytes_written
        try:
            self.h.gov.configure(ch, program)
        except SafetyRejection:
            assert self.h.bytes_written == before, "a rejected program wrote to the port"
        except DriverError:
            pass
        self.h.note_caps()

    # ---- session control (one rule, so that ending a session stays the rarer event)
    @rule(
        action=st.sampled_from(["pause", "pause", "resume", "resume", "stop", "estop", "new"]),
        duration=st.sampled_from([5.0, 60.0, 600.0]),
        program=st.sampled_from(PROGRAMS[:4]),
    )
    def control(self, action: str, duration: float, program: ChannelSettings) -> None:
        gov = self.h.gov
        with contextlib.suppress(DriverError):
            if action == "pause":
                gov.pause()
            elif action == "resume":
                gov.resume()
            elif action == "stop":
                gov.stop()
            elif action == "estop":
                gov.emergency_stop()
            elif gov.state is GovernorState.ENDED and self.h.driver.connected:
                self.h.session(program, duration)

    # ---- time and faults
    @rule(dt=steps)
    def advance(self, dt: float) -> None:
        self.h.clock.advance(dt)

    @rule(dt=st.floats(min_value=0.5, max_value=8.0))
    def advance_more(self, dt: float) -> None:
        self.h.clock.advance(dt)

    @rule(
        kind=st.sampled_from(FAULT_CHOICES),
        ch=st.integers(1, 2),
        value=st.sampled_from([0.5, 1.5, 5.0, 8.0]),
        toward_host=st.booleans(),
    )
    def fault(self, kind: FaultKind, ch: int, value: float, toward_host: bool) -> None:
        if kind not in self.protocol.faults:
            return
        direction = Direction.HOST if toward_host else Direction.DEVICE
        if kind is FaultKind.JUMP:
            self.h.inject(kind, channel=ch, value=max(value, 5.0))
        elif kind is FaultKind.DRIFT:
            self.h.inject(kind, channel=ch, value=value)
        elif kind in (FaultKind.LEAD_OFF, FaultKind.LEAD_ON, FaultKind.STUCK):
            self.h.inject(kind, channel=ch)
        elif kind in (FaultKind.GARBLE, FaultKind.DROP, FaultKind.DUPLICATE):
            self.h.inject(kind, direction=direction)
        elif kind is FaultKind.LATE:
            self.h.inject(kind, value=value * 300.0)
        elif kind in (FaultKind.MUTE, FaultKind.DISCONNECT):
            self.h.inject(kind, value=None if value > 5 else value)
        else:
            self.h.inject(kind)

    @invariant()
    def safe(self) -> None:
        if self._h is not None:
            self.h.note_caps()
            self.h.check_all(self.checked)

    def teardown(self) -> None:
        if self._h is None:
            return
        self.h.clock.advance(3.0)  # let every pending deadline pass, then check once more
        self.h.check_all(self.checked)
        self.h.close()


def machine_for(protocol: SimProtocol) -> type[GovernorMachine]:
    return type(f"GovernorMachine_{protocol.name}", (GovernorMachine,), {"protocol": protocol})


def test_random_sessions_never_break_a_safety_rule_on_the_delivered_record(
    sim_protocol: SimProtocol,
) -> None:
    run_state_machine_as_test(
        machine_for(sim_protocol),
        settings=settings(
            max_examples=40,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
