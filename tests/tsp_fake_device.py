"""A small scripted TSP device on a virtual clock, for driver tests.

It is deliberately simple (the real device model is the simulator): it answers every command
per docs/protocol.md, keeps a record of what it delivered, and lets a test override the answer
to any verb, go silent, or vanish like an unplugged USB port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import serial

from drivers.base import DeviceInfo, DeviceLimits, ErrorCode, FramingError
from drivers.clock import Callback, Clock, VirtualClock
from drivers.tsp.codec import (
    PROTOCOL_MAJOR,
    Ack,
    Err,
    MessageError,
    decode_command,
    encode_device_message,
    framing_error_reply,
    hello_ack,
    message_error_reply,
)
from drivers.tsp.frame import Frame, FrameDecoder

FAKE_INFO = DeviceInfo(
    protocol="TSP",
    protocol_version="2.0",
    model="FAKE-2",
    serial_number="F-0001",
    firmware="0.1",
    channels=2,
    limits=DeviceLimits(
        max_amplitude_ma=80,
        amplitude_step_ma=0.5,
        min_frequency_hz=1,
        max_frequency_hz=150,
        min_pulse_width_us=50,
        max_pulse_width_us=300,
        ramp_step_ma=1.0,
        ramp_interval_ms=500.0,
    ),
    reports_current=True,
    reports_impedance=True,
    reported_simulator=True,
    odometer_sessions=0,
    odometer_stimulation_s=0.0,
)

Reply = list[bytes] | None
"""Wire frames to answer with; ``None`` means "use the default behaviour"."""


@dataclass(frozen=True)
class Received:
    time: float
    frame: Frame


class FakePort:
    """A :class:`~drivers.transport.ClockedPort` wired to a :class:`FakeTspDevice`."""

    def __init__(self, device: FakeTspDevice) -> None:
        self.device = device
        self.port = "fake://tsp"
        self.is_open = True
        self.broken = False
        self.writes: list[tuple[float, bytes]] = []
        self._rx = bytearray()
        self._callback: Callback | None = None

    # ClockedPort
    def use_clock(self, clock: Clock) -> None:
        pass

    def set_data_callback(self, callback: Callback | None) -> None:
        self._callback = callback

    # the parts of serial.Serial the link uses
    @property
    def in_waiting(self) -> int:
        if self.broken:
            raise serial.SerialException("device reports readiness to read but returned no data")
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        if self.broken:
            raise serial.SerialException("read failed: device disconnected")
        data = bytes(self._rx[:size])
        del self._rx[:size]
        return data

    def write(self, data: bytes) -> int:
        if self.broken or not self.is_open:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        self.writes.append((self.device.clock.now(), bytes(data)))
        self.device.journal.append(
            f"{self.device.name} write {data.strip().decode(errors='replace')}"
        )
        self.device.host_bytes(self, bytes(data))
        return len(data)

    def open(self) -> None:
        if self.broken:
            raise serial.SerialException(f"could not open port {self.port}: no such device")
        self.is_open = True

    def close(self) -> None:
        if self.is_open:
            self.device.journal.append(f"{self.device.name} close")
        self.is_open = False

    @property
    def written(self) -> bytes:
        return b"".join(data for _, data in self.writes)

    # far end
    def deliver(self, data: bytes) -> None:
        """Bytes from the device become readable (call from a clock callback)."""
        if not self.is_open or self.broken:
            return
        self._rx += data
        if self._callback is not None:
            self._callback()

    def as_serial(self) -> serial.Serial:
        return cast(serial.Serial, self)


class FakeTspDevice:
    """Answers TSP commands after ``latency`` seconds of virtual time."""

    def __init__(
        self,
        clock: VirtualClock,
        *,
        info: DeviceInfo = FAKE_INFO,
        watchdog_ms: int = 1000,
        latency: float = 0.002,
        name: str = "fake",
        journal: list[str] | None = None,
    ) -> None:
        self.clock = clock
        self.name = name
        self.journal: list[str] = [] if journal is None else journal
        """Port writes and closes, in order (share one list between devices to interleave)."""
        self.info = info
        self.watchdog_ms = watchdog_ms
        self.latency = latency
        self.received: list[Received] = []
        self.bad_lines = 0
        self.silent = False
        self.script: dict[str, Callable[[Frame], Reply]] = {}
        self.running = False
        self.configured: set[int] = set()
        self.amplitudes: dict[int, float] = {}
        self.delivered: list[tuple[float, int, float]] = []
        """(time, channel, mA) at every change of delivered amplitude."""
        self.port: FakePort | None = None
        self._decoder = FrameDecoder()
        self._out_seq = 0

    # ---- wiring
    def plug(self) -> FakePort:
        """A fresh port to this device (also after an unplug)."""
        self.port = FakePort(self)
        self._decoder = FrameDecoder()
        return self.port

    def unplug(self) -> None:
        """The USB device vanishes: reads and writes raise SerialException."""
        port = self.port
        if port is None:
            return
        port.broken = True
        self._set_all(0.0)
        self.running = False
        callback = port._callback
        if callback is not None:
            self.clock.call_soon(callback)

    # ---- host -> device
    def host_bytes(self, port: FakePort, data: bytes) -> None:
        self.clock.call_later(self.latency, lambda: self._process(port, data))

    def _process(self, port: FakePort, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, FramingError):
                self.bad_lines += 1
                if not self.silent:
                    port.deliver(encode_device_message(framing_error_reply(item)))
                continue
            self.received.append(Received(self.clock.now(), item))
            if self.silent:
                continue
            replies: Reply = None
            if item.verb in self.script:
                replies = self.script[item.verb](item)
            if replies is None:
                replies = [encode_device_message(self.default_reply(item))]
            for wire in replies:
                port.deliver(wire)

    def default_reply(self, frame: Frame) -> Ack | Err:
        try:
            command = decode_command(frame)
        except MessageError as error:
            return message_error_reply(frame.seq, error)
        verb = frame.verb
        limits = self.info.limits
        assert limits is not None
        if verb == "HELLO":
            if frame.args != (str(PROTOCOL_MAJOR),):
                return Err(frame.seq, ErrorCode.VERSION, str(PROTOCOL_MAJOR))
            return hello_ack(frame.seq, self.info, watchdog_ms=self.watchdog_ms)
        if verb == "CFG":
            channel = int(frame.args[0])
            if channel > self.info.channels:
                return Err(frame.seq, ErrorCode.PARAMETER, "channel")
            self.configured.add(channel)
            self._set(channel, 0.0)
            return Ack(frame.seq)
        if verb == "AMP":
            channel, milliamps = int(frame.args[0]), float(frame.args[1])
            if not self.running or channel not in self.configured:
                return Err(frame.seq, ErrorCode.STATE, "not running")
            if milliamps > limits.max_amplitude_ma:
                return Err(frame.seq, ErrorCode.LIMIT, f"maxma={limits.max_amplitude_ma:g}")
            self._set(channel, milliamps)
            return Ack(frame.seq)
        if verb == "START":
            if not self.configured:
                return Err(frame.seq, ErrorCode.STATE, "nothing configured")
            self.running = True
            self._set_all(0.0)
            return Ack(frame.seq)
        if verb == "STOP":
            self.running = False
            self._set_all(0.0)
            return Ack(frame.seq)
        if verb == "STATUS":
            state = "RUNNING" if self.running else "IDLE"
            amps = [
                f"a{ch}={self.amplitudes.get(ch, 0.0):g}" for ch in range(1, self.info.channels + 1)
            ]
            return Ack(frame.seq, (f"state={state}", "bat=90", *amps))
        assert command is not None
        return Ack(frame.seq)  # PING

    # ---- device -> host
    def send(self, wire: bytes) -> None:
        """Send raw bytes to the host now (from the test, between clock waits)."""
        port = self.port
        assert port is not None
        self.clock.call_soon(lambda: port.deliver(wire))

    def next_seq(self) -> int:
        seq = self._out_seq
        self._out_seq = (seq + 1) % 65536
        return seq

    # ---- delivered record
    def _set(self, channel: int, milliamps: float) -> None:
        if self.amplitudes.get(channel, 0.0) != milliamps:
            self.delivered.append((self.clock.now(), channel, milliamps))
        self.amplitudes[channel] = milliamps

    def _set_all(self, milliamps: float) -> None:
        for channel in list(self.amplitudes):
            self._set(channel, milliamps)

    # ---- queries
    def verbs(self) -> list[str]:
        return [r.frame.verb for r in self.received]

    def output_ma(self) -> float:
        """Total delivered right now (0 when stopped)."""
        return sum(self.amplitudes.values()) if self.running else 0.0
