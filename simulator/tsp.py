"""The TSP/2 front-end of the simulated firmware (docs/protocol.md).

Bytes in -> :class:`~drivers.tsp.frame.FrameDecoder` -> :func:`~drivers.tsp.codec.decode_command`
-> :class:`~simulator.firmware.Firmware` -> ``ACK``/``ERR`` frames out. Plus, unsolicited:
``TEL`` at 10 Hz for every channel while a host is talking (in every state: each carries the
channel's state, so a lost ``EVT`` cannot leave the host wrong for long) and ``EVT`` for every
firmware event. The firmware enforces its own ramp (S15). A repeat of any of the last
:data:`REPLY_CACHE` commands is answered from a cache, never executed twice. The framing and
message codec are the host driver's own (``drivers/tsp``): one definition of the wire format
for both ends.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict

from drivers.base import DeviceEvent, DeviceEventKind, DeviceInfo, ErrorCode, FramingError
from drivers.clock import TimerHandle
from drivers.tsp.codec import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    TELEMETRY_HZ,
    Ack,
    ChannelState,
    Command,
    Configure,
    DeviceMessage,
    DeviceState,
    DeviceStatus,
    Err,
    EventFrame,
    EventName,
    Hello,
    MessageError,
    Ping,
    SetAmplitude,
    SignedCap,
    Start,
    Status,
    Stop,
    TelemetryFrame,
    cap_message,
    decode_command,
    encode_device_message,
    framing_error_reply,
    hello_ack,
    message_error_reply,
    status_ack,
)
from drivers.tsp.frame import MAX_SEQ, Frame, FrameDecoder
from simulator.firmware import OutputState, Refused
from simulator.frontends import FrontEndContext

log = logging.getLogger(__name__)

REPLY_CACHE = 16
"""How many recent commands a TSP/2 device answers again from its cache (docs/protocol.md §7)."""
ALWAYS_EXECUTED = frozenset({"STOP", "HELLO", "PING", "STATUS"})
"""Verbs executed even when they repeat a remembered line: harmless to repeat, and a STOP must
never be answered from a cache (it could be an old line of an earlier host's)."""

_UNSAFE = re.compile(r"[^\x21-\x29\x2b-\x7e ]+")


def _detail(text: str) -> str:
    """An error detail that is always a valid run of TSP tokens."""
    return " ".join(_UNSAFE.sub("?", text).split())[:120]


def _token(text: str) -> str:
    return _UNSAFE.sub("-", text).replace(" ", "-").replace("=", "-") or "-"


class TspFrontEnd:
    """One TSP/2 device: answers every command, streams telemetry, reports events."""

    def __init__(self, context: FrontEndContext) -> None:
        self.firmware = context.firmware
        self.clock = context.clock
        self._send = context.send
        self._decoder = FrameDecoder()
        self._seq = 0
        self._tel_timer: TimerHandle | None = None
        self._replies: OrderedDict[Frame, bytes] = OrderedDict()
        self._closed = False
        fw = self.firmware
        identity = fw.identity
        self.info = DeviceInfo(
            protocol="TSP",
            protocol_version=f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}",
            model=_token(identity.model),
            serial_number=_token(identity.serial_number),
            firmware=_token(identity.firmware),
            channels=identity.channels,
            limits=fw.limits.model_copy(
                update={
                    "ramp_step_ma": fw.ramp_step_ma,
                    "ramp_interval_ms": round(fw.ramp_interval_s * 1000, 3),
                }
            ),
            reports_current=fw.profile.reports_current,
            reports_impedance=fw.profile.lead_off_detection,
            reported_simulator=True,
        )
        self._watchdog_ms = round(fw.watchdog_s * 1000)
        key = fw.clinic_key
        self._cap_key_id = None if key is None else hashlib.sha256(key).hexdigest()[:16]
        self._tel_period = 1.0 / TELEMETRY_HZ
        self._channels = range(1, fw.channel_count + 1)
        fw.add_event_handler(self._on_event)

    # ------------------------------------------------------------------ output
    def _emit(self, message: DeviceMessage) -> None:
        self._send(encode_device_message(message))

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = 0 if seq >= MAX_SEQ else seq + 1
        return seq

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes) -> None:
        if self._closed:
            return
        for item in self._decoder.feed(data):
            if isinstance(item, FramingError):
                log.debug("bad line from host: %s", item)
                self._emit(framing_error_reply(item))
                continue
            # any valid frame feeds the watchdog, even one we then refuse
            self.firmware.feed()
            self._start_telemetry()
            cached = None if item.verb in ALWAYS_EXECUTED else self._replies.get(item)
            if cached is not None:
                # a repeat of a command already executed: answer again, never execute twice
                self._send(cached)
                continue
            try:
                command = decode_command(item)
                if isinstance(command, Hello):
                    self._replies.clear()  # a new host: its numbers start again
                reply = self._execute(item.seq, command)
            except MessageError as error:
                reply = message_error_reply(item.seq, error)
            except Refused as refusal:
                reply = Err(item.seq, refusal.code, _detail(refusal.detail))
            encoded = encode_device_message(reply)
            self._replies[item] = encoded
            if len(self._replies) > REPLY_CACHE:
                self._replies.popitem(last=False)
            self._send(encoded)

    def _execute(self, seq: int, command: Command) -> Ack | Err:
        fw = self.firmware
        if isinstance(command, SetAmplitude):
            fw.set_amplitude(command.channel, command.milliamps)
            return Ack(seq)
        if isinstance(command, Ping):
            return Ack(seq)
        if isinstance(command, Configure):
            fw.configure(command.channel, command.settings)
            return Ack(seq)
        if isinstance(command, Start):
            fw.start()
            return Ack(seq)
        if isinstance(command, Stop):
            fw.stop()
            return Ack(seq)
        if isinstance(command, SignedCap):
            message = cap_message(fw.identity.serial_number, command.max_ma, command.issued)
            fw.load_signed_cap(
                command.max_ma, command.issued, bytes.fromhex(command.signature), message
            )
            return Ack(seq)
        if isinstance(command, Status):
            running = fw.state is OutputState.RUNNING
            status = DeviceStatus(
                DeviceState.RUNNING if running else DeviceState.IDLE,
                round(fw.battery_pct()),
                {ch: fw.set_amplitude_of(ch) for ch in range(1, fw.channel_count + 1)},
            )
            return status_ack(seq, status)
        if isinstance(command, Hello):
            if command.major != PROTOCOL_MAJOR:
                return Err(seq, ErrorCode.VERSION, str(PROTOCOL_MAJOR))
            fw.new_link()
            info = self.info.model_copy(
                update={
                    "odometer_sessions": fw.odometer.sessions,
                    "odometer_stimulation_s": fw.output_seconds(),
                    "cap_key_id": self._cap_key_id,
                    "signed_cap_ma": fw.signed_cap_ma,
                }
            )
            return hello_ack(seq, info, watchdog_ms=self._watchdog_ms)
        return Err(seq, ErrorCode.UNKNOWN_COMMAND)  # pragma: no cover - every Command is handled

    # ------------------------------------------------------------------ telemetry
    def _start_telemetry(self) -> None:
        if self._tel_timer is None:
            self._tel_timer = self.clock.call_later(self._tel_period, self._telemetry)

    def _stop_telemetry(self) -> None:
        if self._tel_timer is not None:
            self._tel_timer.cancel()
            self._tel_timer = None

    def _telemetry(self) -> None:
        """One ``TEL`` per channel, in every state, while a host is talking (S15)."""
        self._tel_timer = None
        fw = self.firmware
        if self._closed:
            return
        running = fw.state is OutputState.RUNNING
        idle = ChannelState.FAULT if fw.fault else ChannelState.IDLE
        for channel in self._channels:
            sample = fw.read_back(channel)
            if not running:
                state = idle
            elif fw.is_cut(channel):
                state = ChannelState.LEADOFF
            else:
                state = ChannelState.RUN
            self._emit(
                TelemetryFrame(
                    self._next_seq(),
                    channel,
                    sample.set_ma,
                    sample.measured_ma,
                    sample.impedance_ohm,
                    state,
                )
            )
        self._tel_timer = self.clock.call_later(self._tel_period, self._telemetry)

    # ------------------------------------------------------------------ events
    def _on_event(self, event: DeviceEvent) -> None:
        if self._closed:
            return
        kind = event.kind
        if kind is DeviceEventKind.DEVICE_RESET:
            # a restart forgets partial input and counts its own frames from 0 again
            self._decoder.reset()
            self._replies.clear()
            self._seq = 0
            self._stop_telemetry()
            self._emit(EventFrame(self._next_seq(), EventName.RESET))
            return
        if kind is DeviceEventKind.LEAD_OFF:
            frame = EventFrame(self._next_seq(), EventName.LEADOFF, channel=event.channel)
        elif kind is DeviceEventKind.WATCHDOG_TRIP:
            self._stop_telemetry()
            frame = EventFrame(self._next_seq(), EventName.WDT)
        elif kind is DeviceEventKind.BATTERY_LOW:
            pct = round(self.firmware.battery_pct())
            frame = EventFrame(
                self._next_seq(), EventName.BATLOW, battery_pct=max(0, min(100, pct))
            )
        elif kind is DeviceEventKind.FAULT:
            frame = EventFrame(
                self._next_seq(), EventName.FAULT, code=_token(event.detail or "internal")
            )
        elif kind is DeviceEventKind.EMERGENCY_SWITCH:
            frame = EventFrame(self._next_seq(), EventName.FAULT, code="estop")
        else:
            return
        self._emit(frame)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_telemetry()
        self.firmware.remove_event_handler(self._on_event)
