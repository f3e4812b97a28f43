"""Helpers for tests that talk to the simulator below the driver: a raw TSP host.

:class:`RawTspHost` opens a ``sim://`` port on a :class:`~drivers.clock.VirtualClock`, sends
commands (or raw bytes) and keeps every frame the device sent, with its arrival time. It does
no keep-alive, no retransmission and no checking: it is the tool for testing the device itself
(and for faking a misbehaving host).
"""

from __future__ import annotations

import serial

from drivers.base import FramingError, TensDriver
from drivers.clock import VirtualClock
from drivers.tsp.codec import (
    Ack,
    Command,
    DeviceMessage,
    Err,
    EventFrame,
    MessageError,
    Ping,
    SetAmplitude,
    TelemetryFrame,
    decode_device_message,
    encode_command,
)
from drivers.tsp.frame import FrameDecoder
from simulator.device import SimDevice
from simulator.protocol_sim import Serial as SimSerial

Received = tuple[float, DeviceMessage | FramingError]


def ramp_driver(driver: TensDriver, channel: int, milliamps: float) -> None:
    """Raise ``channel`` to ``milliamps`` through a bare driver (no governor) the way a TSP/2
    device allows (S15): steps of at most its ramp step, each at least its ramp interval after
    the previous one was acknowledged. Decreases go at once."""
    limits = driver.info.limits
    step = limits.ramp_step_ma if limits is not None and limits.ramp_step_ma else 1.0
    interval_ms = limits.ramp_interval_ms if limits is not None and limits.ramp_interval_ms else 0
    level = 0.0
    while level < milliamps - 1e-9:
        level = min(milliamps, round(level + step, 6))
        driver.set_amplitude(channel, level)
        if level < milliamps - 1e-9:
            driver.clock.sleep(interval_ms / 1000.0)


class RawTspHost:
    """A bare TSP host on an in-process simulator, in virtual time."""

    def __init__(self, url: str = "sim://tsp", clock: VirtualClock | None = None) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        port = serial.serial_for_url(url, do_not_open=True, timeout=0)
        assert isinstance(port, SimSerial)
        port.use_clock(self.clock)
        port.open()
        port.set_data_callback(self._on_data)
        self.port = port
        self.received: list[Received] = []
        self._decoder = FrameDecoder()
        self._seq = 0
        self.lost: serial.SerialException | None = None

    @property
    def device(self) -> SimDevice:
        return self.port.device

    def _on_data(self) -> None:
        try:
            data = self.port.read(self.port.in_waiting)
        except serial.SerialException as error:
            self.lost = error
            return
        now = self.clock.now()
        for item in self._decoder.feed(data):
            if isinstance(item, FramingError):
                self.received.append((now, item))
                continue
            try:
                self.received.append((now, decode_device_message(item)))
            except MessageError as error:
                self.received.append((now, error))

    # ---- sending
    def next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < 65535 else 1
        return self._seq

    def send(self, command: Command, seq: int | None = None) -> int:
        """Write one command; return its sequence number."""
        seq = self.next_seq() if seq is None else seq
        self.port.write(encode_command(seq, command))
        return seq

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)

    def reply(self, seq: int, timeout: float = 1.0) -> Ack | Err | None:
        """Advance virtual time until the reply to ``seq`` arrives (None on timeout)."""
        found: list[Ack | Err] = []

        def arrived() -> bool:
            for _, message in self.received:
                if isinstance(message, Ack | Err) and message.seq == seq:
                    found.append(message)
                    return True
            return False

        self.clock.wait_until(arrived, timeout)
        return found[0] if found else None

    def command(self, command: Command, timeout: float = 1.0) -> Ack | Err:
        """Send and wait for the reply; raise AssertionError if none comes."""
        seq = self.send(command)
        reply = self.reply(seq, timeout)
        if reply is None:
            raise AssertionError(f"no reply to {command!r} within {timeout} s")
        return reply

    def ramp_to(self, channel: int, milliamps: float) -> None:
        """Raise ``channel`` to ``milliamps`` the way the device allows (S15): steps of at most
        its ramp step, one ramp interval apart, each acknowledged."""
        fw = self.device.firmware
        level = fw.delivered(channel)
        while level < milliamps - 1e-9:
            level = min(milliamps, round(level + fw.ramp_step_ma, 6))
            reply = self.command(SetAmplitude(channel, level))
            if not isinstance(reply, Ack):
                raise AssertionError(f"AMP {channel} {level} refused: {reply}")
            self.clock.advance(fw.ramp_interval_s)

    def keep_alive(self, seconds: float, period: float = 0.3) -> None:
        """Send PING every ``period`` for ``seconds`` of virtual time."""
        end = self.clock.now() + seconds
        while self.clock.now() + period <= end:
            self.send(Ping())
            self.clock.advance(period)
        self.clock.run_until(end)

    # ---- reading
    def messages(self) -> list[DeviceMessage | FramingError]:
        return [message for _, message in self.received]

    def telemetry(self, channel: int | None = None) -> list[tuple[float, TelemetryFrame]]:
        return [
            (t, m)
            for t, m in self.received
            if isinstance(m, TelemetryFrame) and (channel is None or m.channel == channel)
        ]

    def events(self) -> list[tuple[float, EventFrame]]:
        return [(t, m) for t, m in self.received if isinstance(m, EventFrame)]

    def replies(self) -> list[tuple[float, Ack | Err]]:
        return [(t, m) for t, m in self.received if isinstance(m, Ack | Err)]

    def close(self) -> None:
        self.port.close()
