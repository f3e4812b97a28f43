"""Unit tests of the SafetyGovernor (S1-S10) against a small fake driver, in virtual time.

The fake driver records every request the governor makes and models a minimal device (it
applies each command when it acknowledges it and keeps a record of the output it delivered),
so the tests assert both "nothing was sent" and "what the device delivered".
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import pytest

from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DeviceLimits,
    DeviceRejectedError,
    DriverError,
    ErrorCode,
    Pattern,
    Pending,
    Telemetry,
    TensDriver,
    Waveform,
)
from drivers.clock import VirtualClock
from drivers.limits import CapLayer, CapSource, DeviceProfile, get_profile
from drivers.safety import (
    Connected,
    GovernorEvent,
    GovernorState,
    GovernorStateError,
    SafetyEventKind,
    SafetyGovernor,
    SafetyRejection,
    StopReason,
)

CONVENTIONAL = ChannelSettings(frequency_hz=100, pulse_width_us=200)
ACUPUNCTURE = ChannelSettings(frequency_hz=4, pulse_width_us=250)
AREAS = {1: 25.0, 2: 25.0}

Request = tuple[object, ...]


class FakeDriver(TensDriver):
    """Records every request; acknowledges after ``latency`` and applies it to a tiny device."""

    def __init__(
        self,
        clock: VirtualClock,
        *,
        channels: int = 2,
        max_ma: float = 100.0,
        step_ma: float = 0.5,
        reports_current: bool = True,
        latency: float = 0.005,
    ) -> None:
        super().__init__(clock)
        self.vclock = clock
        self.latency = latency
        self.requests: list[Request] = []
        self.auto_ack = True
        self.unanswered: list[Pending] = []
        self.fail_next: dict[str, DriverError] = {}
        self.raise_on_request: Exception | None = None
        self.latencies: dict[str, float] = {}
        self.hold: set[str] = set()
        """Verbs not acknowledged automatically (their pendings go to ``unanswered``)."""
        self._connected = True
        self._info = DeviceInfo(
            protocol="fake",
            protocol_version="1.0",
            model="FAKE",
            serial_number="F-1",
            firmware="1",
            channels=channels,
            limits=DeviceLimits(
                max_amplitude_ma=max_ma,
                amplitude_step_ma=step_ma,
                min_frequency_hz=1,
                max_frequency_hz=150,
                min_pulse_width_us=50,
                max_pulse_width_us=400,
            ),
            reports_current=reports_current,
            reports_impedance=True,
            is_simulator=True,
        )
        self.running = False
        self.output = dict.fromkeys(range(1, channels + 1), 0.0)
        self.delivered: dict[int, list[tuple[float, float]]] = {
            ch: [(clock.now(), 0.0)] for ch in self.output
        }

    # ---- device model
    def _set(self, channel: int, value: float) -> None:
        if self.output[channel] != value:
            self.output[channel] = value
            self.delivered[channel].append((self.vclock.now(), value))

    def _apply(self, request: Request) -> DriverError | None:
        verb = request[0]
        if verb == "STOP":
            self.running = False
            for ch in self.output:
                self._set(ch, 0.0)
        elif verb == "START":
            self.running = True
            for ch in self.output:
                self._set(ch, 0.0)
        elif verb == "CFG":
            self._set(int(str(request[1])), 0.0)
        elif verb == "AMP":
            if not self.running:
                return DeviceRejectedError(ErrorCode.STATE, "AMP")
            value = request[2]
            assert isinstance(value, float)
            self._set(int(str(request[1])), value)
        return None

    def _pend(self, request: Request) -> Pending:
        if self.raise_on_request is not None:
            raise self.raise_on_request
        self.requests.append(request)
        verb = str(request[0])
        pending = Pending(verb, self.vclock.now() + self.ack_timeout_s)
        if not self.auto_ack or verb in self.hold:
            self.unanswered.append(pending)
            return pending
        failure = self.fail_next.pop(verb, None)

        def answer() -> None:
            error = failure if failure is not None else self._apply(request)
            pending.resolve(error)

        self.vclock.call_later(self.latencies.get(verb, self.latency), answer)
        return pending

    # ---- TensDriver
    @property
    def info(self) -> DeviceInfo:
        return self._info

    def identify(self) -> DeviceInfo:
        self.requests.append(("HELLO",))
        return self._info

    def request_configure(self, channel: int, settings: ChannelSettings) -> Pending:
        return self._pend(("CFG", channel, settings))

    def request_amplitude(self, channel: int, milliamps: float) -> Pending:
        return self._pend(("AMP", channel, float(milliamps)))

    def request_start(self) -> Pending:
        return self._pend(("START",))

    def request_stop(self) -> Pending:
        return self._pend(("STOP",))

    def close(self) -> None:
        if self._connected:
            self.requests.append(("CLOSE",))
        self._connected = False

    @property
    def closed(self) -> bool:
        return not self._connected

    def _teardown(self, reason: str) -> None:
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    # ---- helpers for tests
    def report(self, report: Telemetry | DeviceEvent) -> None:
        self._emit(report)

    def amps(self, channel: int | None = None) -> list[float]:
        return [
            float(str(r[2]))
            for r in self.requests
            if r[0] == "AMP" and (channel is None or r[1] == channel)
        ]

    def verbs(self) -> list[str]:
        return [str(r[0]) for r in self.requests]


class Rig:
    """A governor on a fake driver with its event log."""

    def __init__(
        self,
        profile: DeviceProfile | None = None,
        *,
        layers: tuple[CapLayer, ...] = (),
        areas: dict[int, float] | None = None,
        dose_override: bool = False,
        **driver_args: float | bool | int,
    ) -> None:
        self.clock = VirtualClock()
        self.driver = FakeDriver(self.clock, **driver_args)  # type: ignore[arg-type]
        self.events: list[GovernorEvent] = []
        self.gov = SafetyGovernor(
            self.driver,
            profile or get_profile("tens-sim"),
            self.clock,
            on_event=self.events.append,
            layers=layers,
            electrode_areas_cm2=AREAS if areas is None else areas,
            dose_override=dose_override,
        )

    def running(self, *channels: int, duration_s: float = 1800.0) -> Rig:
        self.gov.connect()
        for ch in channels or (1,):
            self.gov.configure(ch, CONVENTIONAL)
        self.gov.start(duration_s)
        return self

    def kinds(self) -> list[SafetyEventKind]:
        return [e.kind for e in self.events]

    def last(self, kind: SafetyEventKind) -> Any:
        return [e for e in self.events if e.kind is kind][-1]

    def ramp_to(self, channel: int, ma: float) -> None:
        self.gov.set_target(channel, ma)
        self.clock.wait_until(lambda: self.driver.output[channel] >= ma, 600)
        assert self.driver.output[channel] == ma


@pytest.fixture
def rig() -> Rig:
    return Rig()


def max_rise(record: list[tuple[float, float]], step: float, rate: float) -> float:
    """The largest excess of out(t2) - out(t1) over step + rate·(t2 - t1) on a record."""
    worst = -math.inf
    for i, (t1, v1) in enumerate(record):
        for t2, v2 in record[i + 1 :]:
            worst = max(worst, (v2 - v1) - (step + rate * (t2 - t1)))
    return worst


# ----------------------------------------------------------------------------- connect, S1, S3


def test_connect_identifies_zeroes_every_output_and_reports_caps(rig: Rig) -> None:
    info = rig.gov.connect()
    assert info.model == "FAKE"
    assert rig.driver.verbs() == ["HELLO", "STOP"]
    assert rig.gov.state is GovernorState.IDLE
    assert rig.kinds() == [SafetyEventKind.CONNECTED]
    connected = rig.events[0]
    assert isinstance(connected, Connected)
    assert (connected.caps[0].channel, connected.caps[0].max_ma) == (1, 100.0)
    assert connected.max_session_min == 60.0
    assert rig.gov.channels == (1, 2)


def test_caps_intersect_profile_device_and_layers_with_the_binding_source() -> None:
    prescription = CapLayer(source=CapSource.PRESCRIPTION, channel_max_amplitude_ma={2: 30.0})
    r = Rig(layers=(prescription,), max_ma=60.0)
    r.gov.connect()
    assert (r.gov.caps.channel(1).max_amplitude.value, r.gov.max_amplitude(1).source) == (
        60.0,
        CapSource.DEVICE,
    )
    assert r.gov.max_amplitude(2).value == 30.0
    assert r.gov.max_amplitude(2).source is CapSource.PRESCRIPTION


def test_devices_without_readback_or_lead_off_detection_are_flagged() -> None:
    r = Rig(get_profile("rehastim2"), reports_current=False, channels=8, max_ma=130, step_ma=1)
    r.gov.connect()
    assert SafetyEventKind.NO_READBACK in r.kinds()
    assert r.gov.readback is False
    no_lead_off = get_profile("tens-sim").model_copy(update={"lead_off_detection": False})
    r2 = Rig(no_lead_off)
    r2.gov.connect()
    assert SafetyEventKind.NO_LEAD_OFF_DETECTION in r2.kinds()
    assert r2.gov.lead_off_detection is False


def test_a_device_step_coarser_than_the_ramp_step_is_refused() -> None:
    r = Rig(max_ma=100.0, step_ma=2.0)
    with pytest.raises(DriverError, match="cannot be ramped safely"):
        r.gov.connect()
    assert r.gov.state is GovernorState.DISCONNECTED


def test_every_session_starts_at_zero(rig: Rig) -> None:
    rig.running(1)
    assert rig.driver.verbs() == ["HELLO", "STOP", "CFG", "START"]
    assert rig.gov.channel_status(1).target_ma == 0.0
    assert rig.driver.output == {1: 0.0, 2: 0.0}
    assert rig.last(SafetyEventKind.STARTED).duration_s == 1800.0


# ----------------------------------------------------------------------------- S4 rejections


def test_amplitude_above_the_prescription_cap_is_rejected_and_nothing_is_written() -> None:
    prescription = CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=40.0)
    r = Rig(layers=(prescription,)).running(1)
    before = list(r.driver.requests)
    with pytest.raises(SafetyRejection) as caught:
        r.gov.set_target(1, 45.0, who="patient", why="stronger")
    error = caught.value
    assert str(error) == (
        "amplitude 45 mA on channel 1 is above the prescription cap of 40 mA; nothing was sent"
    )
    assert (error.parameter, error.value, error.limit, error.source, error.channel) == (
        "amplitude",
        45.0,
        40.0,
        CapSource.PRESCRIPTION,
        1,
    )
    r.clock.advance(5)
    assert r.driver.requests == before
    rejected = r.last(SafetyEventKind.REJECTED)
    assert rejected.source == "prescription"
    assert rejected.who == "patient"
    assert rejected.why == "stronger"
    assert rejected.channel == 1


@pytest.mark.parametrize(
    ("value", "parameter"),
    [
        (-1.0, "amplitude"),
        (math.nan, "amplitude"),
        (math.inf, "amplitude"),
        (10.25, "amplitude step"),
    ],
)
def test_invalid_amplitudes_are_rejected_not_rounded(
    rig: Rig, value: float, parameter: str
) -> None:
    rig.running(1)
    before = list(rig.driver.requests)
    with pytest.raises(SafetyRejection) as caught:
        rig.gov.set_target(1, value)
    assert caught.value.parameter == parameter
    assert "nothing was sent" in str(caught.value)
    rig.clock.advance(2)
    assert rig.driver.requests == before


def test_a_channel_the_device_does_not_have_is_rejected(rig: Rig) -> None:
    rig.running(1)
    with pytest.raises(SafetyRejection, match="channel 3 does not exist"):
        rig.gov.set_target(3, 1.0)


@pytest.mark.parametrize(
    ("settings", "parameter", "source"),
    [
        (ChannelSettings(frequency_hz=151, pulse_width_us=200), "frequency", CapSource.PROFILE),
        (ChannelSettings(frequency_hz=100, pulse_width_us=401), "pulse width", CapSource.DEVICE),
        (ChannelSettings(frequency_hz=100, pulse_width_us=20), "pulse width", CapSource.PROFILE),
        (
            ChannelSettings(frequency_hz=100, pulse_width_us=200),
            "frequency",
            CapSource.PRESCRIPTION,
        ),
        (
            ChannelSettings(
                frequency_hz=100,
                pulse_width_us=200,
                pattern=Pattern.MIXED,
                secondary_hz=0.5,
                cycle_s=3,
            ),
            "frequency",
            CapSource.PROFILE,
        ),
    ],
)
def test_program_settings_outside_the_caps_are_rejected_before_any_byte(
    settings: ChannelSettings, parameter: str, source: CapSource
) -> None:
    prescription = CapLayer(source=CapSource.PRESCRIPTION, max_frequency_hz=80)
    profile = get_profile("tens-sim").model_copy(
        update={
            "pulse_width": get_profile("tens-sim").pulse_width.model_copy(update={"max_us": 500})
        }
    )
    r = Rig(profile, layers=(prescription,) if source is CapSource.PRESCRIPTION else ())
    r.gov.connect()
    before = list(r.driver.requests)
    with pytest.raises(SafetyRejection) as caught:
        r.gov.configure(1, settings)
    assert (caught.value.parameter, caught.value.source) == (parameter, source)
    assert r.driver.requests == before
    assert r.last(SafetyEventKind.REJECTED).parameter == parameter


def test_a_waveform_or_pattern_the_device_lacks_is_rejected() -> None:
    r = Rig(get_profile("rehastim2"), channels=8, max_ma=130, step_ma=1)
    r.gov.connect()
    asym = ChannelSettings(
        frequency_hz=100, pulse_width_us=200, waveform=Waveform.ASYMMETRIC_BIPHASIC
    )
    with pytest.raises(SafetyRejection, match="waveform asymmetric_biphasic"):
        r.gov.configure(1, asym)
    modulated = ChannelSettings(
        frequency_hz=100,
        pulse_width_us=200,
        pattern=Pattern.MODULATED,
        secondary_hz=50,
        cycle_s=2,
    )
    with pytest.raises(SafetyRejection, match="pattern modulated"):
        r.gov.configure(1, modulated)
    assert r.driver.verbs() == ["HELLO", "STOP"]


def test_state_errors_are_refused_logged_and_send_nothing(rig: Rig) -> None:
    rig.gov.connect()
    with pytest.raises(GovernorStateError):
        rig.gov.set_target(1, 1.0)
    with pytest.raises(GovernorStateError, match="no channel is configured"):
        rig.gov.start(60)
    assert rig.driver.verbs() == ["HELLO", "STOP"]
    assert rig.kinds().count(SafetyEventKind.REJECTED) == 2


def test_the_rejected_event_is_delivered_before_the_error_is_raised(rig: Rig) -> None:
    rig.running(1)
    seen: list[int] = []
    try:
        rig.gov.set_target(1, 500.0)
    except SafetyRejection:
        seen.append(rig.kinds().count(SafetyEventKind.REJECTED))
    assert seen == [1]


# ----------------------------------------------------------------------------- S5 dose


def test_the_dose_limit_binds_on_small_electrodes_and_is_reported_as_the_cap() -> None:
    # 100 Hz, 200 µs on 4 cm²: 2 mA/cm² r.m.s. is reached at 40 mA peak
    r = Rig(areas={1: 4.0}).running(1)
    bound = r.gov.max_amplitude(1)
    assert (bound.value, bound.source) == (40.0, CapSource.DOSE)
    assert r.gov.channel_status(1).cap == bound
    r.gov.set_target(1, 40.0)
    with pytest.raises(SafetyRejection) as caught:
        r.gov.set_target(1, 40.5)
    assert caught.value.parameter == "current density"
    assert caught.value.source is CapSource.DOSE
    assert "needs a recorded clinician override" in str(caught.value)


def test_a_clinician_override_lifts_the_current_density_level_but_never_the_power_limit() -> None:
    settings = ChannelSettings(frequency_hz=150, pulse_width_us=400)
    r = Rig(areas={1: 0.5}, dose_override=True)
    r.gov.connect()
    r.gov.configure(1, settings)
    r.gov.start(600)
    bound = r.gov.max_amplitude(1)
    assert bound.source is CapSource.DOSE
    r.gov.set_target(1, bound.value)
    with pytest.raises(SafetyRejection) as caught:
        r.gov.set_target(1, bound.value + 0.5)
    assert caught.value.parameter == "power density"
    assert "0.25 W/cm²" in str(caught.value)


def test_without_an_electrode_area_on_record_no_current_is_allowed() -> None:
    r = Rig(areas={}).running(1)
    assert r.gov.max_amplitude(1).value == 0.0
    with pytest.raises(SafetyRejection, match="no electrode area on record"):
        r.gov.set_target(1, 0.5)
    assert r.driver.amps() == []


# ----------------------------------------------------------------------------- S2 ramp


def test_increases_ramp_in_steps_at_the_profile_rate_and_decreases_are_immediate(
    rig: Rig,
) -> None:
    rig.running(1)
    rig.gov.set_target(1, 10.0, who="patient", why="stronger")
    assert rig.driver.amps(1) == [1.0]  # the first step goes at once
    rig.clock.advance(30)
    assert rig.driver.amps(1) == [float(v) for v in range(1, 11)]
    record = rig.driver.delivered[1]
    assert max_rise(record, step=1.0, rate=2.0) <= 1e-9
    # 0 -> 10 mA at 2 mA/s takes at least 4.5 s after the first step
    assert record[-1][0] - record[1][0] >= 4.5
    steps = [e for e in rig.events if e.kind is SafetyEventKind.AMPLITUDE_SET]
    assert [(e.from_ma, e.to_ma) for e in steps][:2] == [(0.0, 1.0), (1.0, 2.0)]
    assert all(e.who == "patient" and e.why == "stronger" for e in steps)
    sent = len(rig.driver.requests)
    rig.gov.set_target(1, 2.0)
    assert rig.driver.requests[sent:] == [("AMP", 1, 2.0)]  # written before set_target returns


def test_a_decrease_during_a_ramp_is_sent_at_once_and_the_ramp_stops(rig: Rig) -> None:
    rig.running(1)
    rig.gov.set_target(1, 20.0)
    rig.clock.advance(2.2)
    level = rig.driver.output[1]
    assert 3.0 <= level <= 6.0
    rig.gov.set_target(1, 1.0)
    rig.clock.advance(0.01)
    assert rig.driver.output[1] == 1.0
    rig.clock.advance(20)
    assert rig.driver.output[1] == 1.0


def test_step_up_and_down_move_one_amplitude_step_and_stop_at_the_cap() -> None:
    comfort_capped = Rig()
    r = comfort_capped.running(1)
    r.gov.set_comfort_cap(1, 1.0)
    assert r.gov.step_up(1) == 0.5
    r.clock.advance(1.0)
    assert r.gov.step_up(1) == 1.0
    r.clock.advance(1.0)
    with pytest.raises(SafetyRejection) as caught:
        r.gov.step_up(1)
    assert caught.value.source is CapSource.COMFORT
    assert "the comfort cap of 1 mA" in str(caught.value)
    assert r.gov.step_down(1) == 0.5
    assert r.gov.step_down(1) == 0.0
    assert r.gov.step_down(1) == 0.0


def test_the_ramp_rate_holds_across_pause_and_resume(rig: Rig) -> None:
    rig.running(1)
    rig.gov.set_target(1, 3.0)
    rig.clock.advance(0.1)
    rig.gov.pause()
    rig.gov.resume()
    rig.gov.set_target(1, 3.0)
    rig.clock.advance(10)
    assert max_rise(rig.driver.delivered[1], step=1.0, rate=2.0) <= 1e-9


# ----------------------------------------------------------------------------- caps changing


def test_lowering_the_comfort_cap_below_the_output_lowers_it_at_once(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 6.0)
    sent = len(rig.driver.requests)
    rig.gov.set_comfort_cap(1, 4.0)
    assert rig.driver.requests[sent:] == [("AMP", 1, 4.0)]
    assert rig.gov.channel_status(1).target_ma == 4.0
    assert rig.gov.max_amplitude(1).source is CapSource.COMFORT
    changed = rig.last(SafetyEventKind.TARGET_CHANGED)
    assert (changed.to_ma, changed.who) == (4.0, "system")
    rig.gov.set_comfort_cap(1, None)
    rig.clock.advance(5)
    assert rig.driver.output[1] == 4.0  # widening a cap never raises output


def test_a_tighter_prescription_that_forbids_the_program_zeroes_the_channel(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 3.0)
    rig.gov.set_layers((CapLayer(source=CapSource.PRESCRIPTION, max_frequency_hz=50),))
    rig.clock.advance(0.1)
    assert rig.driver.output[1] == 0.0
    assert rig.gov.channel_status(1).settings is None
    with pytest.raises(GovernorStateError, match="configure it first"):
        rig.gov.set_target(1, 1.0)


# ----------------------------------------------------------------------------- program change


def test_a_program_change_while_running_zeroes_the_channel_first(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 3.0)
    sent = len(rig.driver.requests)
    other = ChannelSettings(frequency_hz=4, pulse_width_us=250)
    rig.gov.configure(1, other)
    assert [r[0] for r in rig.driver.requests[sent:]] == ["AMP", "CFG"]
    assert rig.driver.requests[sent] == ("AMP", 1, 0.0)
    status = rig.gov.channel_status(1)
    assert (status.settings, status.target_ma, status.set_ma) == (other, 0.0, 0.0)
    rig.gov.set_target(1, 2.0)
    rig.clock.advance(0.6)
    assert rig.driver.amps(1)[-1] == 1.0  # ramps again from 0


# ----------------------------------------------------------------------------- pause, stop, S6


def test_pause_zeroes_everything_at_once_and_resume_starts_from_zero(rig: Rig) -> None:
    rig.running(1, 2)
    rig.ramp_to(1, 4.0)
    rig.ramp_to(2, 2.0)
    sent = len(rig.driver.requests)
    rig.gov.pause()
    assert rig.driver.requests[sent:] == [("STOP",)]
    assert rig.gov.state is GovernorState.PAUSED
    rig.clock.advance(0.01)
    assert rig.driver.output == {1: 0.0, 2: 0.0}
    with pytest.raises(GovernorStateError):
        rig.gov.set_target(1, 1.0)
    rig.gov.resume()
    assert rig.gov.state in (GovernorState.RUNNING,)
    rig.clock.advance(5)
    assert rig.driver.output == {1: 0.0, 2: 0.0}  # nothing restored automatically
    assert rig.gov.channel_status(1).target_ma == 0.0


def test_stop_writes_stop_before_returning_and_ends_the_session(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 3.0)
    sent = len(rig.driver.requests)
    rig.gov.stop()
    assert rig.driver.requests[sent:] == [("STOP",)]
    assert (rig.gov.state, rig.gov.end_reason) == (GovernorState.ENDED, StopReason.USER)
    assert rig.last(SafetyEventKind.STOPPED).reason is StopReason.USER
    rig.clock.advance(1)
    assert rig.driver.output[1] == 0.0
    with pytest.raises(GovernorStateError):
        rig.gov.resume()
    rig.gov.stop()  # idempotent: STOP again, reason kept
    assert rig.driver.verbs()[-1] == "STOP"
    assert rig.gov.end_reason is StopReason.USER


def test_emergency_stop_from_every_state_writes_stop_first(rig: Rig) -> None:
    rig.gov.emergency_stop()  # before connect: nothing to send, never raises
    rig.running(1)
    rig.ramp_to(1, 3.0)
    sent = len(rig.driver.requests)
    rig.gov.emergency_stop()
    assert rig.driver.requests[sent:] == [("STOP",)]
    assert rig.kinds()[-2:] == [SafetyEventKind.EMERGENCY_STOP, SafetyEventKind.STOPPED]
    assert rig.gov.end_reason is StopReason.EMERGENCY
    rig.clock.advance(0.05)
    assert rig.driver.output[1] == 0.0
    rig.driver.raise_on_request = CommsLostError("gone")
    rig.gov.emergency_stop()  # a dead link must not make it raise


def test_the_session_stops_at_its_planned_duration_and_pauses_do_not_count(rig: Rig) -> None:
    rig.running(1, duration_s=60)
    t0 = rig.clock.now()
    rig.ramp_to(1, 2.0)
    rig.clock.run_until(t0 + 20)
    rig.gov.pause()
    rig.clock.run_until(t0 + 50)
    assert rig.gov.remaining_s() == pytest.approx(40.0, abs=0.01)
    remaining = rig.gov.remaining_s()
    assert remaining is not None
    resumed = rig.clock.now()
    rig.gov.resume()
    rig.gov.set_target(1, 2.0)
    rig.clock.run_until(resumed + remaining - 0.1)
    assert rig.gov.state is GovernorState.RUNNING
    assert rig.driver.output[1] == 2.0
    rig.clock.run_until(resumed + remaining + 1e-6)
    assert (rig.gov.state, rig.gov.end_reason) == (GovernorState.ENDED, StopReason.DURATION)
    assert rig.driver.verbs()[-1] == "STOP"
    rig.clock.advance(0.01)
    assert rig.driver.output[1] == 0.0


@pytest.mark.parametrize(
    ("layers", "source"),
    [
        ((), CapSource.PROFILE),
        (
            (CapLayer(source=CapSource.PRESCRIPTION, max_session_minutes=30),),
            CapSource.PRESCRIPTION,
        ),
    ],
)
def test_a_duration_above_the_maximum_is_rejected(
    layers: tuple[CapLayer, ...], source: CapSource
) -> None:
    r = Rig(layers=layers)
    r.gov.connect()
    r.gov.configure(1, CONVENTIONAL)
    limit = 60 if source is CapSource.PROFILE else 30
    with pytest.raises(SafetyRejection) as caught:
        r.gov.start(limit * 60 + 1)
    assert caught.value.source is source
    assert "START" not in r.driver.verbs()
    r.gov.start(limit * 60)
    assert r.gov.state is GovernorState.RUNNING


# ----------------------------------------------------------------------------- S7 lead-off


def test_a_lead_off_event_pauses_and_resuming_starts_from_zero(rig: Rig) -> None:
    rig.running(1, 2)
    rig.ramp_to(1, 4.0)
    rig.ramp_to(2, 2.0)
    sent = len(rig.driver.requests)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.LEAD_OFF, channel=1))
    assert rig.driver.requests[sent:] == [("STOP",)]
    assert rig.gov.state is GovernorState.PAUSED
    assert rig.gov.channel_status(1).lead_off
    paused = rig.last(SafetyEventKind.PAUSED)
    assert paused.reason is StopReason.LEAD_OFF
    assert rig.last(SafetyEventKind.LEAD_OFF).channel == 1
    rig.clock.advance(0.1)
    assert rig.driver.output == {1: 0.0, 2: 0.0}
    rig.gov.resume()
    rig.clock.advance(3)
    assert rig.driver.output == {1: 0.0, 2: 0.0}
    # the electrode is still off: that channel cannot be raised, the others can
    assert rig.gov.channel_status(1).lead_off
    with pytest.raises(GovernorStateError, match="electrode on channel 1 is off"):
        rig.gov.set_target(1, 1.0)
    rig.gov.set_target(2, 1.0)
    # telemetry shows good contact again: the flag clears and channel 1 may ramp from 0
    rig.driver.report(Telemetry(rig.clock.now(), 1, 0.0, 0.0, 900.0))
    assert not rig.gov.channel_status(1).lead_off
    assert rig.last(SafetyEventKind.LEAD_ON).channel == 1
    rig.gov.set_target(1, 1.0)
    rig.clock.advance(1)
    assert rig.driver.output == {1: 1.0, 2: 1.0}


def test_without_impedance_reporting_resume_clears_the_lead_off_flag() -> None:
    r = Rig()
    r.driver._info = r.driver._info.model_copy(update={"reports_impedance": False})
    r.running(1)
    r.driver.report(DeviceEvent(r.clock.now(), DeviceEventKind.LEAD_OFF, channel=1))
    assert r.gov.channel_status(1).lead_off
    r.gov.resume()
    assert not r.gov.channel_status(1).lead_off


def test_the_device_emergency_switch_ends_as_emergency_switch(rig: Rig) -> None:
    rig.running(1)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.EMERGENCY_SWITCH))
    assert rig.gov.end_reason is StopReason.EMERGENCY_SWITCH


def test_the_governor_knows_no_protocol_a_fault_code_is_a_device_fault(rig: Rig) -> None:
    # the TSP engine turns its own "EVT FAULT estop" into EMERGENCY_SWITCH; the governor does not
    # look inside a fault's detail
    rig.running(1)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.FAULT, detail="estop"))
    assert rig.gov.end_reason is StopReason.DEVICE_FAULT


def test_queued_presses_never_put_the_target_more_than_one_step_above_the_output(
    rig: Rig,
) -> None:
    """S16: 20 presses of "up" inside one ramp interval ask for one step, not 20."""
    rig.running(1)
    for _ in range(20):
        rig.gov.step_up(1)
    status = rig.gov.channel_status(1)
    assert status.target_ma == rig.gov.ramp_step_ma or status.target_ma == 0.5
    rig.clock.advance(30.0)
    assert max(rig.driver.output.values()) <= 1.0  # one step of the 0.5 mA grid, or two at most
    # holding the key (a press every 50 ms) rises at the ramp rate while held ...
    start = rig.clock.now()
    while rig.clock.now() - start < 3.0:
        rig.gov.step_up(1)
        rig.clock.advance(0.05)
    held = rig.driver.output[1]
    assert held >= 3.0
    # ... and releasing it stops the rise within one step
    rig.gov.hold(1)
    rig.clock.advance(30.0)
    assert rig.driver.output[1] <= held + rig.gov.ramp_step_ma


def test_a_lead_off_without_a_channel_pauses_every_channel(rig: Rig) -> None:
    rig.running(1, 2)
    rig.ramp_to(1, 2.0)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.LEAD_OFF, detail="electrode"))
    assert rig.gov.state is GovernorState.PAUSED
    assert rig.last(SafetyEventKind.PAUSED).reason is StopReason.LEAD_OFF
    assert rig.last(SafetyEventKind.LEAD_OFF).channel is None
    assert rig.gov.channel_status(1).lead_off
    assert rig.gov.channel_status(2).lead_off
    rig.clock.advance(0.1)
    assert rig.driver.output == {1: 0.0, 2: 0.0}


def test_impedance_over_threshold_in_telemetry_is_a_lead_off(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 2.0)
    rig.driver.report(Telemetry(rig.clock.now(), 1, 2.0, 2.0, 25_000.0))
    assert rig.gov.state is GovernorState.PAUSED
    assert rig.last(SafetyEventKind.LEAD_OFF).impedance_ohm == 25_000.0


# ----------------------------------------------------------------------------- S8 comms


def test_comms_lost_from_the_driver_ends_the_session_for_good(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 2.0)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.COMMS_LOST, detail="silent"))
    assert (rig.gov.state, rig.gov.end_reason) == (GovernorState.ENDED, StopReason.COMMS_LOST)
    assert rig.kinds()[-2:] == [SafetyEventKind.COMMS_LOST, SafetyEventKind.STOPPED]
    assert rig.driver.verbs()[-1] == "STOP"
    with pytest.raises(GovernorStateError):
        rig.gov.resume()
    with pytest.raises(GovernorStateError):
        rig.gov.start(60)


def test_a_command_unacknowledged_for_one_second_is_comms_loss(rig: Rig) -> None:
    rig.running(1)
    rig.driver.auto_ack = False
    rig.gov.set_target(1, 2.0)
    rig.clock.advance(0.99)
    assert rig.gov.state is GovernorState.RUNNING
    rig.clock.advance(0.02)
    assert rig.gov.end_reason is StopReason.COMMS_LOST
    assert "no acknowledgement" in rig.last(SafetyEventKind.COMMS_LOST).detail


def test_a_dead_port_while_sending_is_comms_loss(rig: Rig) -> None:
    rig.running(1)
    rig.driver.raise_on_request = CommsLostError("port write failed")
    rig.gov.set_target(1, 2.0)
    assert rig.gov.end_reason is StopReason.COMMS_LOST


# ----------------------------------------------------------------------------- S9 read-back


def test_two_consecutive_read_back_mismatches_stop_the_session(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 10.0)
    now = rig.clock.now
    rig.driver.report(Telemetry(now(), 1, 10.0, 10.9, 800.0))  # within 10 %
    rig.driver.report(Telemetry(now(), 1, 10.0, 11.2, 800.0))  # off
    rig.driver.report(Telemetry(now(), 1, 10.0, 10.1, 800.0))  # fine again: count resets
    rig.driver.report(Telemetry(now(), 1, 10.0, 11.2, 800.0))
    assert rig.gov.state is GovernorState.RUNNING
    rig.driver.report(Telemetry(now(), 1, 10.0, 11.2, 800.0))
    assert (rig.gov.state, rig.gov.end_reason) == (GovernorState.ENDED, StopReason.OUTPUT_MISMATCH)
    mismatch = rig.last(SafetyEventKind.OUTPUT_MISMATCH)
    assert (mismatch.channel, mismatch.measured_ma) == (1, 11.2)


def test_read_back_tolerance_is_the_stricter_of_ten_percent_and_two_milliamps(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 40.0)
    for _ in range(3):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 40.0, 41.9, 800.0))
    assert rig.gov.state is GovernorState.RUNNING
    for _ in range(2):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 40.0, 42.1, 800.0))
    assert rig.gov.end_reason is StopReason.OUTPUT_MISMATCH


def test_readings_during_a_change_in_flight_are_not_mismatches(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 5.0)
    rig.driver.auto_ack = False
    rig.gov.set_target(1, 1.0)  # in flight: the device may be at 5 or at 1
    for measured in (5.0, 1.0, 5.0):
        rig.driver.report(Telemetry(rig.clock.now(), 1, measured, measured, 800.0))
    assert rig.gov.state is GovernorState.RUNNING


def test_output_measured_while_paused_is_a_mismatch(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 5.0)
    rig.gov.pause()
    rig.clock.advance(0.1)
    for _ in range(2):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 0.0, 5.0, 800.0))
    assert rig.gov.end_reason is StopReason.OUTPUT_MISMATCH


# ----------------------------------------------------------------------------- device events


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (DeviceEventKind.FAULT, StopReason.DEVICE_FAULT),
        (DeviceEventKind.DEVICE_RESET, StopReason.DEVICE_RESET),
        (DeviceEventKind.WATCHDOG_TRIP, StopReason.WATCHDOG),
        (DeviceEventKind.EMERGENCY_SWITCH, StopReason.EMERGENCY_SWITCH),
        (DeviceEventKind.OUTPUT_STOPPED, StopReason.DEVICE_FAULT),
    ],
)
def test_device_events_end_the_session_with_the_matching_reason(
    rig: Rig, kind: DeviceEventKind, reason: StopReason
) -> None:
    rig.running(1)
    rig.ramp_to(1, 2.0)
    rig.driver.report(DeviceEvent(rig.clock.now(), kind, detail="x"))
    assert (rig.gov.state, rig.gov.end_reason) == (GovernorState.ENDED, reason)
    assert rig.last(SafetyEventKind.DEVICE_EVENT).event == kind.value
    assert rig.driver.verbs()[-1] == "STOP"


def test_battery_low_is_reported_and_nothing_else(rig: Rig) -> None:
    rig.running(1)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.BATTERY_LOW, detail="15"))
    assert rig.gov.state is GovernorState.RUNNING
    assert rig.last(SafetyEventKind.DEVICE_EVENT).event == "battery_low"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (ErrorCode.LIMIT, StopReason.LIMIT),
        (ErrorCode.STATE, StopReason.DEVICE_FAULT),
        (ErrorCode.CRC, StopReason.COMMS_LOST),
    ],
)
def test_a_device_error_on_an_amplitude_ends_the_session(
    rig: Rig, code: ErrorCode, reason: StopReason
) -> None:
    rig.running(1)
    rig.driver.fail_next["AMP"] = DeviceRejectedError(code, "AMP")
    rig.gov.set_target(1, 1.0)
    rig.clock.advance(0.1)
    assert rig.gov.end_reason is reason
    assert SafetyEventKind.DEVICE_REJECTED in rig.kinds()


def test_a_device_error_on_configure_is_raised_and_leaves_the_channel_unconfigured(
    rig: Rig,
) -> None:
    rig.gov.connect()
    rig.driver.fail_next["CFG"] = DeviceRejectedError(ErrorCode.PARAMETER, "CFG")
    with pytest.raises(DeviceRejectedError):
        rig.gov.configure(1, CONVENTIONAL)
    assert rig.gov.channel_status(1).settings is None
    assert rig.gov.state is GovernorState.IDLE


# ----------------------------------------------------------------------------- lifecycle


def test_close_stops_a_running_session_then_closes_the_port(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 2.0)
    rig.gov.close()
    assert rig.driver.verbs()[-2:] == ["STOP", "CLOSE"]
    assert rig.gov.state is GovernorState.DISCONNECTED
    assert rig.last(SafetyEventKind.STOPPED).reason is StopReason.CLOSED
    assert rig.kinds()[-1] is SafetyEventKind.CLOSED
    rig.gov.close()  # idempotent
    with pytest.raises(GovernorStateError):
        rig.gov.connect()


def test_reconnect_after_a_session_needs_a_fresh_program_and_never_resumes(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 3.0)
    rig.gov.stop()
    rig.gov.connect()
    assert rig.gov.state is GovernorState.IDLE
    assert rig.gov.channel_status(1).settings is None
    rig.clock.advance(5)
    assert rig.driver.output[1] == 0.0


def test_an_event_handler_may_call_the_governor() -> None:
    r = Rig()
    calls: list[SafetyEventKind] = []

    def handler(event: GovernorEvent) -> None:
        calls.append(event.kind)
        if event.kind is SafetyEventKind.LEAD_OFF:
            r.gov.stop()

    r.gov._on_event = handler
    r.running(1)
    r.driver.report(DeviceEvent(r.clock.now(), DeviceEventKind.LEAD_OFF, channel=1))
    assert r.gov.end_reason is StopReason.USER
    assert calls[-3:] == [SafetyEventKind.LEAD_OFF, SafetyEventKind.PAUSED, SafetyEventKind.STOPPED]


def test_a_failing_event_handler_does_not_break_the_safety_path() -> None:
    r = Rig()

    def broken(event: GovernorEvent) -> None:
        raise RuntimeError("disk full")

    r.gov._on_event = broken
    r.running(1)
    r.gov.emergency_stop()
    assert r.gov.end_reason is StopReason.EMERGENCY


def test_concurrent_callers_reports_and_clock_never_break_the_caps_or_the_ramp() -> None:
    """The UI thread, the reader thread and the clock thread all call in at once."""
    prescription = CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=20.0)
    r = Rig(layers=(prescription,)).running(1, 2)
    stop = threading.Event()
    errors: list[BaseException] = []

    def ui(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(400):
                ch = rng.choice((1, 2))
                action = rng.random()
                try:
                    if action < 0.4:
                        r.gov.set_target(ch, rng.choice((0.0, 2.0, 5.0, 10.0, 19.5, 20.0, 25.0)))
                    elif action < 0.7:
                        r.gov.step_up(ch)
                    elif action < 0.9:
                        r.gov.step_down(ch)
                    else:
                        r.gov.set_comfort_cap(ch, rng.choice((None, 8.0, 15.0)))
                except (SafetyRejection, GovernorStateError):
                    pass
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def reader() -> None:
        try:
            while not stop.is_set():
                for ch in (1, 2):
                    status = r.gov.channel_status(ch)
                    r.driver.report(
                        Telemetry(r.clock.now(), ch, status.set_ma, status.set_ma, 900.0)
                    )
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=ui, args=(seed,)) for seed in (1, 2, 3)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for _ in range(400):
        r.clock.advance(0.05)
    for thread in threads[:3]:
        thread.join(timeout=30)
    stop.set()
    threads[3].join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    r.clock.advance(20)
    # The reader reports the set current it read a moment before; when a change lands in
    # between, twice in a row, that is a read-back mismatch and the governor must end the
    # session (S9) -- then with every output at 0. Either way caps and ramp held throughout.
    if r.gov.state is not GovernorState.RUNNING:
        assert r.gov.state is GovernorState.ENDED
        assert r.gov.end_reason is StopReason.OUTPUT_MISMATCH
        assert all(r.driver.delivered[ch][-1][1] == 0.0 for ch in (1, 2))
    for ch in (1, 2):
        record = r.driver.delivered[ch]
        assert max(level for _, level in record) <= 20.0
        assert max_rise(record, step=1.0, rate=2.0) <= 1e-9


# ----------------------------------------------------------------------------- edges


def test_nothing_is_available_before_connect_and_unknown_channels_are_named() -> None:
    r = Rig()
    assert r.gov.driver is r.driver
    assert r.gov.profile.id == "tens-sim"
    for read in (lambda: r.gov.caps, lambda: r.gov.info, lambda: r.gov.channel_status(1)):
        with pytest.raises(GovernorStateError, match="connect first"):
            read()
    assert r.gov.remaining_s() is None
    r.driver.report(DeviceEvent(0.0, DeviceEventKind.COMMS_LOST))  # nothing to end yet
    assert r.gov.state is GovernorState.DISCONNECTED
    r.gov.connect()
    assert r.gov.info.model == "FAKE"
    with pytest.raises(GovernorStateError, match="no channel 9; channels are 1, 2"):
        r.gov.channel_status(9)
    assert r.gov.remaining_s() is None


def test_status_reports_the_ramp_in_progress(rig: Rig) -> None:
    rig.running(1)
    rig.gov.set_target(1, 5.0)
    status = rig.gov.channel_status(1)
    assert status.ramping
    assert (status.target_ma, status.commanded_ma) == (5.0, 1.0)
    assert rig.gov.remaining_s() == pytest.approx(1800.0, abs=0.01)
    rig.clock.advance(5)
    assert not rig.gov.channel_status(1).ramping


def test_a_session_cannot_be_reconnected_under_way(rig: Rig) -> None:
    rig.running(1)
    with pytest.raises(GovernorStateError, match="stop it before reconnecting"):
        rig.gov.connect()


@pytest.mark.parametrize("duration", [0.0, -5.0, math.nan])
def test_a_duration_that_is_not_a_positive_time_is_rejected(rig: Rig, duration: float) -> None:
    rig.gov.connect()
    rig.gov.configure(1, CONVENTIONAL)
    with pytest.raises(SafetyRejection, match="not a positive time"):
        rig.gov.start(duration)
    assert "START" not in rig.driver.verbs()


@pytest.mark.parametrize("cap", [-1.0, math.nan])
def test_an_invalid_comfort_cap_is_rejected(rig: Rig, cap: float) -> None:
    rig.gov.connect()
    with pytest.raises(SafetyRejection, match="comfort cap"):
        rig.gov.set_comfort_cap(1, cap)


def test_caps_set_before_connect_apply_at_connect() -> None:
    r = Rig()
    r.gov.set_comfort_cap(1, 12.0)
    r.gov.set_layers((CapLayer(source=CapSource.PRESCRIPTION, max_amplitude_ma=30.0),))
    r.gov.connect()
    assert r.gov.max_amplitude(1).value == 12.0
    assert r.gov.max_amplitude(1).source is CapSource.COMFORT
    assert r.gov.max_amplitude(2).source is CapSource.PRESCRIPTION


def test_a_forbidden_program_on_an_idle_channel_is_just_unconfigured(rig: Rig) -> None:
    rig.gov.connect()
    rig.gov.configure(1, CONVENTIONAL)
    rig.gov.set_layers((CapLayer(source=CapSource.PRESCRIPTION, max_frequency_hz=50),))
    assert rig.gov.channel_status(1).settings is None
    assert rig.driver.amps() == []


def test_the_dose_limit_stays_strictly_below_the_power_density_limit() -> None:
    # 100 Hz, 200 µs: 0.25 W/cm² on 0.128 cm² is reached at 40 mA; on a hair less area the
    # limit is a hair under 40 mA, where rounding to the grid must not land on 40 (refused)
    r = Rig(areas={1: 0.12799999936}, dose_override=True).running(1)
    bound = r.gov.max_amplitude(1)
    assert (bound.value, bound.source) == (39.5, CapSource.DOSE)
    with pytest.raises(SafetyRejection, match=r"0\.25 W/cm²") as caught:
        r.gov.set_target(1, 40.0)
    assert caught.value.parameter == "power density"


def test_readings_for_a_channel_the_governor_does_not_drive_are_ignored(rig: Rig) -> None:
    rig.running(1)
    for _ in range(3):
        rig.driver.report(Telemetry(rig.clock.now(), 5, 0.0, 9.0, 900.0))
    assert rig.gov.state is GovernorState.RUNNING


def test_a_channel_already_off_does_not_pause_again_on_each_reading(rig: Rig) -> None:
    rig.running(1, 2)
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.LEAD_OFF, channel=1))
    rig.gov.resume()
    rig.clock.advance(0.1)
    rig.gov.set_target(2, 1.0)
    for _ in range(3):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 0.0, 0.0, 100_000.0))
    assert rig.gov.state is GovernorState.RUNNING
    assert rig.gov.channel_status(1).lead_off


def test_the_device_reported_set_current_is_read_back_too(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 4.0)
    for _ in range(2):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 9.0, None, None))
    assert rig.gov.end_reason is StopReason.OUTPUT_MISMATCH
    assert rig.last(SafetyEventKind.OUTPUT_MISMATCH).device_set_ma == 9.0


def test_output_read_back_after_the_end_sends_stop_again(rig: Rig) -> None:
    rig.running(1)
    rig.gov.stop()
    rig.clock.advance(0.1)
    sent = len(rig.driver.requests)
    for _ in range(2):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 0.0, 6.0, 900.0))
    assert rig.driver.requests[sent:] == [("STOP",)]
    assert rig.last(SafetyEventKind.OUTPUT_MISMATCH).channel == 1
    assert rig.gov.end_reason is StopReason.USER


@pytest.mark.parametrize("answer", [None, DeviceRejectedError(ErrorCode.STATE, "AMP")])
def test_an_acknowledgement_from_before_a_reconnect_changes_nothing(
    rig: Rig, answer: DriverError | None
) -> None:
    rig.running(1)
    rig.driver.hold.add("AMP")
    rig.gov.set_target(1, 1.0)
    rig.gov.stop()
    rig.gov.connect()
    count = len(rig.events)
    rig.driver.unanswered[0].resolve(answer)  # the old AMP answered only now
    rig.clock.advance(2.0)
    assert rig.events[count:] == []
    assert rig.gov.channel_status(1).set_ma == 0.0
    assert rig.gov.state is GovernorState.IDLE


def test_a_driver_failure_of_an_unknown_kind_ends_the_session_as_a_device_fault(
    rig: Rig,
) -> None:
    rig.running(1)
    rig.driver.fail_next["AMP"] = DriverError("something odd")
    rig.gov.set_target(1, 1.0)
    rig.clock.advance(0.1)
    assert rig.gov.end_reason is StopReason.DEVICE_FAULT


def test_a_decrease_that_cannot_be_sent_ends_the_session(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 3.0)
    rig.driver.raise_on_request = CommsLostError("gone")
    rig.gov.set_target(1, 1.0)
    assert rig.gov.end_reason is StopReason.COMMS_LOST


def test_a_pause_that_cannot_be_sent_is_comms_loss(rig: Rig) -> None:
    rig.running(1)
    rig.driver.raise_on_request = CommsLostError("gone")
    rig.gov.pause()
    assert (rig.gov.state, rig.gov.end_reason) == (GovernorState.ENDED, StopReason.COMMS_LOST)
    assert rig.kinds()[-3:] == [
        SafetyEventKind.PAUSED,
        SafetyEventKind.COMMS_LOST,
        SafetyEventKind.STOPPED,
    ]


def test_a_program_change_that_cannot_zero_the_channel_ends_the_session(rig: Rig) -> None:
    rig.running(1)
    rig.ramp_to(1, 2.0)
    rig.driver.raise_on_request = CommsLostError("gone")
    with pytest.raises(GovernorStateError, match="session ended while zeroing"):
        rig.gov.configure(1, ACUPUNCTURE)
    assert rig.gov.end_reason is StopReason.COMMS_LOST


def test_a_configure_that_cannot_be_sent_or_is_lost_ends_as_comms_lost(rig: Rig) -> None:
    rig.gov.connect()
    rig.driver.fail_next["CFG"] = CommsLostError("no answer")
    with pytest.raises(CommsLostError):
        rig.gov.configure(1, CONVENTIONAL)
    assert rig.gov.end_reason is StopReason.COMMS_LOST
    r = Rig()
    r.gov.connect()
    r.driver.raise_on_request = CommsLostError("gone")
    with pytest.raises(CommsLostError):
        r.gov.configure(1, CONVENTIONAL)
    assert r.gov.end_reason is StopReason.COMMS_LOST


def test_an_unanswered_configure_ends_the_session_before_the_wait_gives_up(rig: Rig) -> None:
    rig.gov.connect()
    rig.driver.auto_ack = False
    with pytest.raises(CommsLostError):
        rig.gov.configure(1, CONVENTIONAL)
    assert rig.gov.end_reason is StopReason.COMMS_LOST


@pytest.mark.parametrize("resume", [False, True])
def test_a_start_that_fails_ends_the_session(rig: Rig, resume: bool) -> None:
    rig.gov.connect()
    rig.gov.configure(1, CONVENTIONAL)
    if resume:
        rig.gov.start(60)
        rig.gov.pause()
    rig.driver.fail_next["START"] = DeviceRejectedError(ErrorCode.STATE, "START")
    with pytest.raises(DeviceRejectedError):
        rig.gov.resume() if resume else rig.gov.start(60)
    assert rig.gov.end_reason is StopReason.DEVICE_FAULT


@pytest.mark.parametrize("resume", [False, True])
def test_a_start_that_cannot_be_sent_ends_the_session(rig: Rig, resume: bool) -> None:
    rig.gov.connect()
    rig.gov.configure(1, CONVENTIONAL)
    if resume:
        rig.gov.start(60)
        rig.gov.pause()
    rig.driver.raise_on_request = CommsLostError("gone")
    with pytest.raises(CommsLostError):
        rig.gov.resume() if resume else rig.gov.start(60)
    assert rig.gov.end_reason is StopReason.COMMS_LOST


def test_stop_before_connect_still_writes_stop_when_the_port_is_open() -> None:
    r = Rig()
    r.gov.stop()
    assert r.driver.verbs() == ["STOP"]
    assert r.gov.state is GovernorState.DISCONNECTED
    r.driver.close()
    r.gov.stop()
    assert r.driver.verbs() == ["STOP", "CLOSE"]


def test_a_driver_bug_in_stop_never_keeps_the_emergency_stop_from_ending(rig: Rig) -> None:
    rig.running(1)
    rig.driver.raise_on_request = RuntimeError("driver bug")
    rig.gov.emergency_stop()
    assert rig.gov.end_reason is StopReason.EMERGENCY
    assert "could not be sent" in rig.last(SafetyEventKind.EMERGENCY_STOP).detail


def test_timers_that_fire_late_do_nothing(rig: Rig) -> None:
    rig.running(1)
    done = Pending("PING", rig.clock.now())
    done.resolve()
    rig.gov._overdue(done)  # answered: not a comms loss
    rig.gov.stop()
    rig.gov._on_duration()  # a duration timer after the end
    rig.gov._ramp_tick(rig.gov._channels[1])  # a ramp tick after the end
    assert rig.gov.end_reason is StopReason.USER
    assert rig.driver.amps() == []


def test_events_from_another_thread_are_delivered_in_order_by_the_thread_delivering() -> None:
    r = Rig()
    r.running(1)
    seen: list[SafetyEventKind] = []
    entered = threading.Event()
    release = threading.Event()

    def slow(event: GovernorEvent) -> None:
        if event.kind is SafetyEventKind.TARGET_CHANGED:
            entered.set()
            release.wait(5)
        seen.append(event.kind)

    r.gov._on_event = slow
    ui = threading.Thread(target=lambda: r.gov.set_target(1, 0.5))
    ui.start()
    assert entered.wait(5)
    # the reader thread reports a lead-off while the UI thread is delivering: no waiting
    r.driver.report(DeviceEvent(r.clock.now(), DeviceEventKind.LEAD_OFF, channel=1))
    assert r.gov.state is GovernorState.PAUSED
    release.set()
    ui.join(5)
    assert not ui.is_alive()
    assert seen[:1] == [SafetyEventKind.TARGET_CHANGED]
    assert SafetyEventKind.LEAD_OFF in seen
    assert seen.index(SafetyEventKind.LEAD_OFF) < seen.index(SafetyEventKind.PAUSED)


def test_a_stop_refused_by_the_device_during_a_pause_ends_the_session(rig: Rig) -> None:
    rig.running(1)
    rig.driver.fail_next["STOP"] = DeviceRejectedError(ErrorCode.BUSY, "STOP")
    rig.gov.pause()
    rig.clock.advance(0.1)
    assert rig.gov.end_reason is StopReason.DEVICE_FAULT
    assert rig.driver.verbs()[-1] == "STOP"  # and STOP again on the way out


def test_a_smaller_last_step_is_rescheduled_sooner(rig: Rig) -> None:
    rig.running(1)
    rig.gov.set_target(1, 10.0)
    rig.clock.advance(0.01)  # 1 mA acknowledged; the next full step is due 0.5 s later
    acked = rig.last(SafetyEventKind.AMPLITUDE_SET).time
    rig.gov.set_target(1, 1.5)  # now only 0.5 mA to go: due 0.25 s after the last step
    rig.clock.advance(1.0)
    assert rig.driver.amps(1) == [1.0, 1.5]
    last = rig.last(SafetyEventKind.AMPLITUDE_SET)
    assert last.time - acked == pytest.approx(0.25 + rig.driver.latency)


def test_read_back_after_the_port_is_closed_only_reports(rig: Rig) -> None:
    rig.running(1)
    rig.gov.stop()
    rig.driver.close()
    for _ in range(2):
        rig.driver.report(Telemetry(rig.clock.now(), 1, 0.0, 6.0, 900.0))
    assert rig.last(SafetyEventKind.OUTPUT_MISMATCH).channel == 1
    assert rig.driver.verbs()[-1] == "CLOSE"


def test_a_lead_off_without_a_channel_while_paused_only_marks_the_channels(rig: Rig) -> None:
    rig.running(1)
    rig.gov.pause()
    rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.LEAD_OFF))
    assert rig.gov.state is GovernorState.PAUSED
    assert rig.gov.channel_status(1).lead_off
    assert not rig.gov.channel_status(2).lead_off  # not configured


def test_a_channel_reset_while_its_program_is_on_the_way_must_be_configured_again(
    rig: Rig,
) -> None:
    rig.running(1)
    rig.clock.call_later(
        0.001,
        lambda: rig.driver.report(DeviceEvent(rig.clock.now(), DeviceEventKind.LEAD_OFF, 1)),
    )
    with pytest.raises(GovernorStateError, match="configure it again"):
        rig.gov.configure(1, ACUPUNCTURE)
    assert rig.gov.state is GovernorState.PAUSED
    assert rig.gov.channel_status(1).settings is None
