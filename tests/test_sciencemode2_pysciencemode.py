"""pyScienceMode, the public host of the real RehaStim 2, against the RehaStim 2 emulator.

pyScienceMode (PyPI ``pysciencemode`` 1.1.5, MIT, s2mLab) drives a RehaStim 2 through its
``Rehastim2`` and ``Channel`` classes. Its own RehaStim 2 tests
(``tests/test_update_parameter_rehastim2.py``, ``tests/test_raise_error_rehastim2.py``) need a
real device on ``COM3``; here each of their scenarios runs against ``tens-sim --protocol
sciencemode2 --pty`` (a fresh emulator per test), through pyScienceMode's public API exactly as
a user calls it, and every assertion about output is on the emulator's delivered record.

pyScienceMode is used unchanged. The only addition is a spy on its serial port (a subclass of
``serial.Serial`` that notes the time and bytes of every write and read), so that each change
of the delivered current can be matched with the command that caused it: see
:func:`assert_delivered_as_commanded`, the rule every scenario is checked against.

Things of pyScienceMode's that shape the scenarios (see docs/devices.md, RehaStim 2):

* Its keep-alive thread sends ``Watchdog`` only when its 0.8 s check finds the link idle for
  0.8 s, so after a command the next frame may come up to 1.6 s later: over the device's 1.2 s
  watchdog. The device then stops -- that is the real device's rule, so the tests assert it
  (:func:`test_a_keep_alive_gap_over_1200_ms_stops_the_device`), and the rule checks it in
  every scenario.
* It sends ``StopChannelListMode`` before its first Init and, with ``show_log=True``, treats any
  answer but 0 as fatal; its default inter-pulse interval is 2 ms (below the firmware's 8 ms).
* Its byte stuffing differs from the description: it also escapes 0x55 and 0x0A in the data,
  and XORs packet and command numbers in place without an escape byte (so GetStimulationMode,
  command 10, goes out as command 95). :func:`test_pysciencemode_frames_are_understood` feeds
  frames from its own encoder to the emulator.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
import serial
from pysciencemode import Channel, Device, Modes, Rehastim2
from pysciencemode.utils import packet_construction

from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import (
    Command,
    Init,
    InitChannelListMode,
    InitChannelListModeAck,
    Message,
    StartChannelListMode,
    StartChannelListModeAck,
    StimulationError,
    StopChannelListMode,
    StopChannelListModeAck,
    UnknownCommand,
)
from drivers.sciencemode2.frame import FrameDecoder, RawFrame
from simulator.firmware import DeliveredRecord
from tests.sim_process import SimProcess, start_tens_sim
from tests.test_sciencemode2_sim import RawHost

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="ptys are POSIX"),
]

SM2 = ("--protocol", "sciencemode2", "--pty", "--seed", "11")
CHANNEL = 2
"""pyScienceMode's tests stimulate channel 2."""
WATCHDOG_S = 1.2
GUARD_S = 0.1
"""How far a host-side silence may differ from the one the device saw (the two frames' trips
through the pty): silences within this of 1.2 s may or may not trip the watchdog."""
SLACK_S = 1.0
"""Scheduling slack of busy processes on a loaded machine (not a timing claim)."""
THREAD_ERROR = "ignore::pytest.PytestUnhandledThreadExceptionWarning"
"""With show_log=True pyScienceMode raises device errors in its ack thread (its design)."""


# --------------------------------------------------------------------------- the wire


M = TypeVar("M")


@dataclass(frozen=True)
class Sent(Generic[M]):
    time: float
    """When pyScienceMode began writing it (time.monotonic, the record's clock)."""
    pkt: int
    message: M


@dataclass(frozen=True)
class Received(Generic[M]):
    time: float
    """When pyScienceMode's read returned the last byte of it."""
    pkt: int
    message: M


@dataclass
class Wire:
    """Every write and read of pyScienceMode's port, with its time."""

    writes: list[tuple[float, bytes]] = field(default_factory=list)
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    def sent(self) -> list[Sent[Message]]:
        out: list[Sent[Message]] = []
        for when, data in list(self.writes):
            out += [Sent(when, f.pkt, m) for f, m in _frames(FrameDecoder(), data)]
        return out

    def received(self) -> list[Received[Message]]:
        decoder = FrameDecoder()
        out: list[Received[Message]] = []
        for when, data in list(self.reads):
            out += [Received(when, f.pkt, m) for f, m in _frames(decoder, data)]
        return out

    def ack(self, command: Sent[Any]) -> Received[Message] | None:
        """The device's acknowledgement of ``command`` (same packet number, after it)."""
        wanted = codec.ACK_FOR[Command(command.message.command)]
        return next(
            (
                r
                for r in self.received()
                if r.pkt == command.pkt and r.message.command == wanted and r.time >= command.time
            ),
            None,
        )

    def silences(self, start: float, end: float) -> list[tuple[float, float]]:
        """``(from, to)`` between consecutive writes in ``[start, end]``, longest first."""
        times = sorted(t for t, _ in self.writes if start <= t <= end)
        gaps = list(itertools.pairwise(times))
        return sorted(gaps, key=lambda gap: gap[1] - gap[0], reverse=True)


def _frames(decoder: FrameDecoder, data: bytes) -> list[tuple[RawFrame, Message]]:
    return [(f, codec.from_frame(f)) for f in decoder.feed(data) if isinstance(f, RawFrame)]


def _spy_class(wire: Wire) -> type[serial.Serial]:
    class SpySerial(serial.Serial):
        """pyserial as pyScienceMode opens it, noting every write and read."""

        def write(self, b: Any, /) -> int | None:
            wire.writes.append((time.monotonic(), bytes(b)))
            return super().write(b)

        def read(self, size: int = 1) -> bytes:
            data = super().read(size)
            if data:
                wire.reads.append((time.monotonic(), data))
            return data

    return SpySerial


# --------------------------------------------------------------------------- fixtures


@dataclass
class Bench:
    sim: SimProcess
    wire: Wire

    def record(self) -> DeliveredRecord:
        return self.sim.delivered()

    @contextmanager
    def rehastim2(self, *, show_log: bool = False) -> Iterator[Any]:
        """``Rehastim2(port=<the pty>)``; on the way out ``disconnect()`` and ``close_port()``,
        as pyScienceMode's tests end (its threads would otherwise keep the process alive)."""
        stimulator = Rehastim2(port=self.sim.url, show_log=show_log)
        try:
            yield stimulator
        finally:
            stimulator.disconnect()
            _drain(stimulator.port)
            stimulator.close_port()


def _drain(port: serial.Serial) -> None:
    """Read what arrived after pyScienceMode's last read (an acknowledgement it did not wait
    for, having raised first), so that every command can be matched with its answer."""
    quiet_since = time.monotonic()
    deadline = quiet_since + 5.0
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.3:
        if port.read(port.in_waiting or 1):
            quiet_since = time.monotonic()


def _bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Iterator[Bench]:
    wire = Wire()
    monkeypatch.setattr(serial, "Serial", _spy_class(wire))
    yield from (Bench(sim, wire) for sim in start_tens_sim(tmp_path, *SM2, *extra, channels=8))


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    yield from _bench(tmp_path, monkeypatch)


@pytest.fixture
def bench_electrode_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """Channel 2's electrode is off from power-on (before any frame of pyScienceMode's can
    arrive: pyScienceMode may well be connected and stimulating 0.1 s after power-on)."""
    yield from _bench(tmp_path, monkeypatch, "--fault", f"leadoff@0:{CHANNEL}")


@pytest.fixture
def bench_electrode_comes_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """Channel 2's electrode comes off 5 s after the emulator started (during stimulation)."""
    yield from _bench(tmp_path, monkeypatch, "--fault", f"leadoff@5:{CHANNEL}")


def _channel(
    mode: Any = Modes.SINGLE, amplitude: int = 10, pulse_width: int = 300, **extra: Any
) -> Any:
    return Channel(
        mode=mode,
        no_channel=extra.pop("no_channel", CHANNEL),
        amplitude=amplitude,
        pulse_width=pulse_width,
        device_type=Device.Rehastim2,
        **extra,
    )


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Outcome:
    watchdog_stops: list[float]
    """When the device's watchdog ended the channel's output (record times)."""


def assert_delivered_as_commanded(bench: Bench, channel: int = CHANNEL) -> Outcome:
    """What the device delivered on ``channel`` is what pyScienceMode commanded, and the
    device's watchdog did what the description says:

    * every change of the delivered level happened between the write of a command the device
      accepted that asks for that level (Start with that current, Stop: 0) and the read of its
      acknowledgement; or is a 0 by the watchdog (at least 1.2 s after the host's last write
      before it: the device counts from the frame's arrival, which is after the write); or a 0
      the device reported with StimulationError (read after it);
    * after every accepted command the level is the one asked for, unless the device reported
      StimulationError before the host's next command;
    * every host silence longer than 1.2 s (plus a guard) while the channel delivered ended
      the output by the time the host wrote again.
    """
    record, wire = bench.record(), bench.wire
    sent, received = wire.sent(), wire.received()
    errors = [r.time for r in received if isinstance(r.message, StimulationError)]
    writes = sorted(t for t, _ in wire.writes)
    # every command the device accepted, its acknowledgement, and the level it asks for
    accepted: list[tuple[Sent[Message], Received[Message], float]] = []
    active: tuple[int, ...] = ()
    for command in sent:
        message = command.message
        if not isinstance(
            message, InitChannelListMode | StartChannelListMode | StopChannelListMode
        ):
            continue
        ack = wire.ack(command)
        assert ack is not None, f"no acknowledgement of {message!r}"
        if getattr(ack.message, "result", None) != 0:
            continue
        if isinstance(message, InitChannelListMode):
            active = message.active_channels
        elif isinstance(message, StartChannelListMode):
            currents = dict(zip(active, (c.current_ma for c in message.channels), strict=True))
            accepted.append((command, ack, float(currents.get(channel, 0))))
        else:
            accepted.append((command, ack, 0.0))

    watchdog_stops: list[float] = []
    for change in record.changes(channel):
        if change.time < writes[0]:
            assert change.ma == 0.0, "the device delivered before pyScienceMode connected"
            continue
        if any(c.time <= change.time <= a.time and ma == change.ma for c, a, ma in accepted):
            continue
        if change.ma == 0.0 and any(t >= change.time for t in errors):
            continue
        last_write = max(t for t in writes if t <= change.time)
        unexplained = (
            f"channel {channel}: {change.ma} mA at {change.time:.3f} is no command's doing"
        )
        assert change.ma == 0.0, unexplained
        assert change.time >= last_write + WATCHDOG_S, unexplained + " and no watchdog stop"
        watchdog_stops.append(change.time)

    for index, (command, ack, ma) in enumerate(accepted):
        following = accepted[index + 1][0].time if index + 1 < len(accepted) else float("inf")
        if any(ack.time <= t <= following for t in errors):
            continue
        assert record.level_at(channel, ack.time) == ma, (
            f"{command.message!r} was acknowledged, but channel {channel} delivers "
            f"{record.level_at(channel, ack.time)} mA"
        )

    for start, end in wire.silences(writes[0], writes[-1]):
        if end - start <= WATCHDOG_S + GUARD_S:
            break
        # what the channel delivers in the silence: the level of the last command written
        # before it (acknowledged perhaps after its start), unless the device reported an error
        before = [(a, ma) for c, a, ma in accepted if c.time <= start]
        if not before or before[-1][1] == 0.0:
            continue
        if any(before[-1][0].time <= t <= end for t in errors):
            continue
        zero = record.zero_at(channel, before[-1][0].time)
        assert zero is not None, f"a {end - start:.2f} s silence, and no watchdog stop"
        assert start + WATCHDOG_S <= zero <= end
    return Outcome(watchdog_stops)


def _changes(record: DeliveredRecord, channel: int = CHANNEL) -> list[float]:
    return [d.ma for d in record.changes(channel)]


def _no_other_channel(record: DeliveredRecord) -> None:
    assert all(record.max_level(ch) == 0.0 for ch in range(1, 9) if ch != CHANNEL)


def _sent(bench: Bench, kind: type[M]) -> list[Sent[M]]:
    return [
        Sent(s.time, s.pkt, s.message) for s in bench.wire.sent() if isinstance(s.message, kind)
    ]


def _received(bench: Bench, kind: type[M]) -> list[Received[M]]:
    return [
        Received(r.time, r.pkt, r.message)
        for r in bench.wire.received()
        if isinstance(r.message, kind)
    ]


# --------------------------------------------------------------------------- test_update_parameter


def _start_for_half_a_second(bench: Bench, channel: Any, interval_ms: int = 30) -> None:
    """pyScienceMode's update tests: init, start for 0.5 s (then it pauses), disconnect."""
    with bench.rehastim2() as stimulator:
        stimulator.init_channel(list_channels=[channel], stimulation_interval=interval_ms)
        stimulator.start_stimulation(upd_list_channels=[channel], stimulation_duration=0.5)


def _assert_half_a_second_at(bench: Bench, ma: float) -> None:
    record = bench.record()
    outcome = assert_delivered_as_commanded(bench)
    assert outcome.watchdog_stops == []  # the 0.5 s pause comes before any gap can trip it
    assert _changes(record) == [ma, 0.0]
    on, off = (d.time for d in record.changes(CHANNEL))
    starts = _sent(bench, StartChannelListMode)
    assert [s.message.channels[0].current_ma for s in starts] == [ma, 0]
    assert starts[0].time <= on
    assert starts[1].time <= off
    _no_other_channel(record)
    # the Stop pyScienceMode sends before its first Init is answered 0 (stopped)
    stop_acks = _received(bench, StopChannelListModeAck)
    assert [r.message.result for r in stop_acks] == [0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("amplitude", [10, 20, 30])
def test_update_amplitude(bench: Bench, amplitude: int) -> None:
    channel = _channel(amplitude=amplitude, pulse_width=300)
    channel.set_amplitude(amplitude)
    assert channel.get_amplitude() == amplitude
    _start_for_half_a_second(bench, channel)
    _assert_half_a_second_at(bench, float(amplitude))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pulse_width", [100, 350, 500])
def test_update_pulse_width(bench: Bench, pulse_width: int) -> None:
    channel = _channel(amplitude=10, pulse_width=pulse_width)
    channel.set_pulse_width(pulse_width=pulse_width)
    assert channel.get_pulse_width() == pulse_width
    _start_for_half_a_second(bench, channel)
    _assert_half_a_second_at(bench, 10.0)
    (start, _) = _sent(bench, StartChannelListMode)
    assert start.message.channels[0].pulse_width_us == pulse_width


@pytest.mark.timeout(60)
@pytest.mark.parametrize("frequency", [10, 30, 50])
def test_update_frequency(bench: Bench, frequency: int) -> None:
    interval = round(1 / frequency * 1000)
    with bench.rehastim2() as stimulator:
        stimulator.init_channel(
            list_channels=[_channel(amplitude=10, pulse_width=400)], stimulation_interval=interval
        )
        assert stimulator.stimulation_interval == interval
    (init,) = _sent(bench, InitChannelListMode)
    assert init.message.main_interval_ms == interval
    assert init.message.active_channels == (CHANNEL,)
    assert [r.message.result for r in _received(bench, InitChannelListModeAck)] == [0]
    assert bench.record().max_level() == 0.0  # initialised, never started
    assert_delivered_as_commanded(bench)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", [Modes.SINGLE, Modes.DOUBLET, Modes.TRIPLET])
def test_update_mode(bench: Bench, mode: Any) -> None:
    """Doublets and triplets with pyScienceMode's default 2 ms inter-pulse interval: accepted
    at Init and delivered (at the firmware's 8 ms), not refused at Start."""
    channel = _channel(mode=mode, amplitude=10, pulse_width=350)
    channel.set_mode(mode=mode)
    assert channel.get_mode() == mode.value
    _start_for_half_a_second(bench, channel)
    (init,) = _sent(bench, InitChannelListMode)
    assert init.message.inter_pulse_ms == 2.0
    assert [r.message.result for r in _received(bench, StartChannelListModeAck)] == [0, 0]
    _assert_half_a_second_at(bench, 10.0)


# --------------------------------------------------------------------------- test_raise_error


def _stimulate_until_an_error(stimulator: Any, channels: list[Any], seconds: float) -> None:
    """pyScienceMode's electrode test: stimulate again and again until it raises."""

    def again_and_again() -> None:
        for _ in range(100):
            stimulator.start_stimulation(upd_list_channels=channels, stimulation_duration=seconds)

    with pytest.raises(RuntimeError, match="Stimulation error"):
        again_and_again()


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings(THREAD_ERROR)
def test_electrode_error_when_the_electrode_is_off_at_the_start(
    bench_electrode_off: Bench,
) -> None:
    """pyScienceMode's ``test_electrode_error``, with the electrode not connected: the test
    pulse before the first pulse finds it, so nothing is delivered."""
    bench = bench_electrode_off
    with bench.rehastim2(show_log=True) as stimulator:
        channels = [_channel(amplitude=10, pulse_width=300)]
        stimulator.init_channel(list_channels=channels, stimulation_interval=30)
        _stimulate_until_an_error(stimulator, channels, 2.0)
    assert [r.message.error for r in _received(bench, StimulationError)] == [-2]
    assert bench.record().max_level() == 0.0
    assert_delivered_as_commanded(bench)


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings(THREAD_ERROR)
def test_electrode_error_when_the_electrode_comes_off(bench_electrode_comes_off: Bench) -> None:
    """pyScienceMode's ``test_electrode_error`` as its docstring runs it: stimulate, then the
    electrode comes off. Its loop stimulates 10 s a time; here 0.5 s a time, so that its own
    commands keep the link alive and the electrode, not the watchdog, ends the output (the
    watchdog has its own test)."""
    bench = bench_electrode_comes_off
    with bench.rehastim2(show_log=True) as stimulator:
        channels = [_channel(amplitude=10, pulse_width=300)]
        stimulator.init_channel(list_channels=channels, stimulation_interval=30)
        _stimulate_until_an_error(stimulator, channels, 0.5)
    (error,) = _received(bench, StimulationError)
    assert error.message.error == -2
    record = bench.record()
    outcome = assert_delivered_as_commanded(bench)
    assert outcome.watchdog_stops == []
    zero = record.zero_at(CHANNEL, error.time)
    assert zero == error.time  # already 0 when pyScienceMode read the error
    assert record.max_between(CHANNEL, error.time, time.monotonic()) == 0.0
    assert record.max_level(CHANNEL) == 10.0  # it was stimulating before
    _no_other_channel(record)


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings(THREAD_ERROR)
def test_stimulation_duration_too_short_leaves_the_device_stimulating(bench: Bench) -> None:
    """pyScienceMode's ``test_stimulation_duration_too_short``: its error comes after the
    Start was acknowledged and it sends no pause, so the device goes on stimulating -- until
    the host goes away and the device's own watchdog stops it."""
    with bench.rehastim2(show_log=True) as stimulator:
        channels = [_channel(amplitude=10, pulse_width=300)]
        stimulator.init_channel(list_channels=channels, stimulation_interval=30)
        with pytest.raises(RuntimeError, match="Asked stimulation duration too short"):
            stimulator.start_stimulation(upd_list_channels=channels, stimulation_duration=0.001)
        raised = time.monotonic()
    closed = time.monotonic()
    record = bench.record()
    assert record.level_at(CHANNEL, raised) == 10.0
    _wait(lambda: bench.record().zero_at(CHANNEL, raised) is not None, WATCHDOG_S + 10.0)
    record = bench.record()
    zero = record.zero_at(CHANNEL, raised)
    assert zero is not None, "the device never stopped by itself"
    last_write = max(t for t, _ in bench.wire.writes)
    assert zero >= last_write + WATCHDOG_S  # nothing but its watchdog stopped it
    assert zero - closed <= WATCHDOG_S + SLACK_S
    assert [s.message.channels[0].current_ma for s in _sent(bench, StartChannelListMode)] == [10]
    assert len(_sent(bench, StopChannelListMode)) == 1  # the one before its Init: no stop since
    outcome = assert_delivered_as_commanded(bench)
    assert outcome.watchdog_stops == [zero]


@pytest.mark.timeout(60)
def test_channel_list_empty(bench: Bench) -> None:
    with (
        bench.rehastim2(show_log=True) as stimulator,
        pytest.raises(ValueError, match=r"Please provide at least one channel for stimulation\."),
    ):
        stimulator.init_channel(list_channels=[], stimulation_interval=30)
    # the Stop it sends first is answered 0; nothing else reaches the device
    assert [r.message.result for r in _received(bench, StopChannelListModeAck)] == [0]
    assert _sent(bench, InitChannelListMode) == []
    assert bench.record().max_level() == 0.0


@pytest.mark.timeout(60)
def test_no_channel_instance_error(bench: Bench) -> None:
    list_channels = [1]
    with (
        bench.rehastim2(show_log=True) as stimulator,
        pytest.raises(
            TypeError,
            match=r"Item at index 0 is not a Channel instance, got int type instead\.",
        ),
    ):
        stimulator.init_channel(list_channels=list_channels, stimulation_interval=30)
    assert [r.message.result for r in _received(bench, StopChannelListModeAck)] == [0]
    assert bench.record().max_level() == 0.0


# --------------------------------------------------------------------------- a whole session


@pytest.mark.timeout(90)
def test_a_session_as_in_the_rehastim2_example(bench: Bench) -> None:
    """pyScienceMode's ``Examples/rehastim2_example.py`` (channel 1 on the low-frequency
    factor), its waits of 2-10 s shortened to 0.5 s: start, update the amplitude, pause, start
    again for a while, re-initialise with another interval twice, start, end."""
    list_channels = [
        _channel(
            amplitude=50, pulse_width=100, enable_low_frequency=True, name="Biceps", no_channel=1
        )
    ]
    with bench.rehastim2(show_log=True) as stimulator:
        stimulator.init_channel(
            stimulation_interval=200, list_channels=list_channels, low_frequency_factor=2
        )
        stimulator.start_stimulation()
        list_channels[0].set_amplitude(10)
        time.sleep(0.5)
        stimulator.start_stimulation(upd_list_channels=list_channels)
        time.sleep(0.5)
        stimulator.pause_stimulation()
        stimulator.start_stimulation(stimulation_duration=0.5)
        stimulator.init_channel(stimulation_interval=10, list_channels=list_channels)
        stimulator.start_stimulation(stimulation_duration=0.5)
        stimulator.init_channel(stimulation_interval=15, list_channels=list_channels)
        stimulator.start_stimulation(0.5, list_channels)
        stimulator.end_stimulation()
    record = bench.record()
    outcome = assert_delivered_as_commanded(bench, 1)
    assert outcome.watchdog_stops == []
    assert _changes(record, 1) == [50.0, 10.0, 0.0, 10.0, 0.0, 10.0, 0.0, 10.0, 0.0]
    assert all(record.max_level(ch) == 0.0 for ch in range(2, 9))
    assert {r.message.result for r in _received(bench, StartChannelListModeAck)} == {0}
    assert {r.message.result for r in _received(bench, InitChannelListModeAck)} == {0}
    assert {r.message.result for r in _received(bench, StopChannelListModeAck)} == {0}
    inits = _sent(bench, InitChannelListMode)
    assert [i.message.main_interval_ms for i in inits] == [200.0, 10.0, 15.0]
    assert [i.message.low_frequency_factor for i in inits] == [2, 0, 0]
    assert {i.message.low_frequency_mask for i in inits} == {0b1}
    assert _received(bench, StimulationError) == []


@pytest.mark.timeout(60)
def test_a_doublet_that_does_not_fit_the_main_interval_is_refused(bench: Bench) -> None:
    """A doublet in a 10 ms main interval: with the firmware's 8 ms between its pulses (not
    pyScienceMode's 2 ms) the pair needs 16 ms, so the device refuses the Start (-2) and
    delivers nothing; a single pulse on the same interval is fine."""
    channels = [_channel(mode=Modes.DOUBLET, amplitude=10, pulse_width=200)]
    with bench.rehastim2() as stimulator:
        stimulator.init_channel(list_channels=channels, stimulation_interval=10)
        stimulator.start_stimulation(upd_list_channels=channels)
        channels[0].set_mode(Modes.SINGLE)
        stimulator.start_stimulation(upd_list_channels=channels)
        stimulator.pause_stimulation()
    acks = [r.message.result for r in _received(bench, StartChannelListModeAck)]
    assert acks == [-2, 0, 0]
    assert _changes(bench.record()) == [10.0, 0.0]
    assert_delivered_as_commanded(bench)


# --------------------------------------------------------------------------- the keep-alive gap


@pytest.mark.timeout(60)
def test_a_keep_alive_gap_over_1200_ms_stops_the_device(bench: Bench) -> None:
    """pyScienceMode's keep-alive thread checks every 0.8 s, from the moment it connected, and
    sends only when the link has been idle 0.8 s. A user who starts stimulating right after
    connecting (as its tests and examples do) and then lets it run gets the next frame about
    1.6 s later: the device's watchdog (1200 ms, exactly as the description says) stops the
    output, resets to the start mode and announces itself again; pyScienceMode does not notice,
    and its pause at the end is refused as wrong mode."""
    with bench.rehastim2() as stimulator:
        channels = [_channel(amplitude=12, pulse_width=300)]
        stimulator.init_channel(list_channels=channels, stimulation_interval=30)
        stimulator.start_stimulation(upd_list_channels=channels, stimulation_duration=2.5)
    (start, pause) = _sent(bench, StartChannelListMode)
    ((silence_from, silence_to), *_) = bench.wire.silences(start.time, pause.time)
    assert silence_from == start.time
    assert silence_to - silence_from > WATCHDOG_S + GUARD_S  # the gap its thread leaves
    record = bench.record()
    outcome = assert_delivered_as_commanded(bench)
    (stopped,) = outcome.watchdog_stops
    assert silence_from + WATCHDOG_S <= stopped <= silence_to
    assert _changes(record) == [12.0, 0.0]
    assert record.max_between(CHANNEL, stopped, time.monotonic()) == 0.0
    assert any(r.time >= stopped for r in _received(bench, Init))  # Init again
    pause_ack = bench.wire.ack(pause)
    assert pause_ack is not None
    assert pause_ack.message == StartChannelListModeAck(-3)  # the start mode: nothing to pause


# --------------------------------------------------------------------------- its frames


def test_pysciencemode_frames_are_understood() -> None:
    """Frames from pyScienceMode's own encoder (``utils.packet_construction``), where its
    stuffing differs from the description: 0x55 and 0x0A escaped in the data; packet numbers
    F0/0F/81/55/0A XORed with 0x55 in place (the device answers the number it received);
    GetStimulationMode's command 10 sent as 95 (UnknownCommand)."""
    host = RawHost()
    host.link()

    def send(pkt: int, name: str, data: list[int] | None = None) -> int:
        wire = packet_construction(pkt, name, data)
        host.port.write(wire)
        return int(wire[5])  # the packet number on the wire

    pkt = send(0x0A, "StopChannelListMode")
    assert pkt == 0x0A ^ 0x55
    assert host.reply(pkt, Command.STOP_CHANNEL_LIST_MODE_ACK) == StopChannelListModeAck(0)
    # channel 1, 30 ms (code 58), inter-pulse code 1 (2 ms)
    pkt = send(0x0F, "InitChannelListMode", [0, 0b1, 0, 1, 0, 58, 0])
    assert pkt == 0x0F ^ 0x55
    assert host.reply(pkt, Command.INIT_CHANNEL_LIST_MODE_ACK) == InitChannelListModeAck(0)
    # 266 µs (MSB 1, LSB 0x0A) at 85 mA (0x55): both escaped by pyScienceMode
    pkt = send(0x55, "StartChannelListMode", [0, 1, 0x0A, 0x55])
    assert pkt == 0x00
    assert host.reply(pkt, Command.START_CHANNEL_LIST_MODE_ACK) == StartChannelListModeAck(0)
    fw = host.device.firmware
    assert fw.delivered(1) == 85.0
    settings = fw.settings(1)
    assert settings is not None
    assert settings.pulse_width_us == 266
    for number, on_wire in ((0x81, 0xD4), (0xF0, 0xA5)):
        pkt = send(number, "StartChannelListMode", [0, 0, 200, 10])  # 10 mA: 0x0A
        assert pkt == on_wire
        assert host.reply(pkt, Command.START_CHANNEL_LIST_MODE_ACK) == StartChannelListModeAck(0)
    assert fw.delivered(1) == 10.0
    pkt = send(3, "GetStimulationMode")
    assert host.reply(pkt, Command.UNKNOWN_COMMAND) == UnknownCommand(0x0A ^ 0x55)
    pkt = send(4, "StopChannelListMode")
    assert host.reply(pkt, Command.STOP_CHANNEL_LIST_MODE_ACK) == StopChannelListModeAck(0)
    assert fw.delivered(1) == 0.0
    assert host.device.front_end.transfer_errors == 0  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- helpers


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
