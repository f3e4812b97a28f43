"""The RehaStim 2 (ScienceMode2) front-end of the simulated firmware.

The device side of ``../shared/protocols/sciencemode2.md``, on top of the protocol-independent
:class:`~simulator.firmware.Firmware` (which keeps the delivered-output record, the watchdog
timer and the faults). It follows the public protocol description (v1.24) as far as it goes;
where the description is silent the choice made here is listed, with the reason, in
``docs/devices.md`` ("What the RehaStim 2 emulator has to guess"):

* After power-on, after a restart and after a watchdog expiry it sends ``Init`` every 500 ms
  until the host answers ``InitAck`` with the same packet number.
* Watchdog: no valid packet for exactly 1200 ms -> stop, every mode back to the start mode,
  ``Init`` again (the firmware's watchdog runs whenever a host has spoken). A host whose
  keep-alive leaves longer gaps (pyScienceMode's can leave 1.6 s) sees the device stop.
* Modes: start (0) -> ``InitChannelListMode`` -> initialised (1) -> ``StartChannelListMode`` ->
  started (2); ``StartChannelListMode`` again updates. ``StopChannelListMode`` always stops and
  is answered 0, in every mode (the description allows only 0 and -1, a transfer error). Init,
  Start and SinglePulse in the wrong mode are answered with result -3 and change nothing.
* Every parameter is checked (result -2, nothing changes) against the description's ranges --
  not against the ``rehastim2`` profile's 1-125 Hz, which is the host's view: main interval
  8-1025 ms, low-frequency factor 0-7, pulse width 0-500 µs (below 20 µs delivered as 20 µs),
  0-130 mA. An inter-pulse interval below the firmware's 8 ms minimum is accepted at Init and
  delivered as 8 ms, like pulse widths below 20 µs; a doublet or triplet that does not fit
  (main interval < pulses per group x inter-pulse interval) is refused at Start.
* A frame with a bad CRC or length is answered with result -1 (transfer error) when its
  command is readable; a command it does not know (including 50-90, the ergometer commands) is
  answered with ``UnknownCommand``. ``81 x`` is un-escaped for any x, so hosts that escape more
  bytes than the three required (pyScienceMode escapes 0x55 and 0x0A too) are understood.
* Faults: an electrode off (lead-off, drift) on an active channel while stimulating, or at
  start -> ``StimulationError`` -2 and stop (the resistance test precedes every pulse, also
  at 0 mA); the emergency switch -> ``StimulationError`` -1; an internal fault ->
  ``StimulationError`` -3. The device reports no current and no impedance, and nothing about
  the battery.
* Response latency is the link's (``latency_ms``, see :class:`~simulator.device.SimConfig`;
  the real device answers within 100 ms, typically under 20 ms).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from drivers.base import ChannelSettings, DeviceEvent, DeviceEventKind, Pattern, Waveform
from drivers.clock import TimerHandle
from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import (
    ChannelPulse,
    Command,
    GetStimulationMode,
    GetStimulationModeAck,
    Init,
    InitAck,
    InitChannelListMode,
    InitChannelListModeAck,
    Message,
    PayloadError,
    PulseMode,
    Result,
    SinglePulse,
    SinglePulseAck,
    StartChannelListMode,
    StartChannelListModeAck,
    StimulationError,
    StimulationErrorCode,
    StimulationMode,
    StopChannelListMode,
    StopChannelListModeAck,
    UnknownCommand,
    Watchdog,
)
from drivers.sciencemode2.frame import FrameDecoder, RawFrame, TransferError
from simulator.firmware import Refused
from simulator.frontends import FrontEndContext

log = logging.getLogger(__name__)

INIT_REPEAT_S = 0.5
WATCHDOG_MS = 1200
PROTOCOL_VERSION = codec.PROTOCOL_VERSION
MAX_CURRENT_MA = 130
MAX_PULSE_WIDTH_US = 500
MIN_EFFECTIVE_PULSE_WIDTH_US = 20
"""Pulse widths below this are delivered as this (the device's rule)."""
MIN_MAIN_INTERVAL_CODE = 14
"""8 ms, the firmware's minimum main interval."""
MAX_MAIN_INTERVAL_CODE = 2048
MAX_MAIN_INTERVAL_MS = codec.main_interval_ms(MAX_MAIN_INTERVAL_CODE)
MAX_LOW_FREQUENCY_FACTOR = 7
MIN_INTER_PULSE_MS = 8.0
"""The firmware's minimum inter-pulse interval; a shorter one is delivered as this."""
CHANNEL_SLOT_MS = 1.5
SINGLE_PULSE_S = 0.002
"""How long a single pulse (test pulse + biphasic pulse) shows in the delivered record."""

_HOST_COMMANDS = frozenset(
    {
        Command.INIT_ACK,
        Command.WATCHDOG,
        Command.GET_STIMULATION_MODE,
        Command.INIT_CHANNEL_LIST_MODE,
        Command.START_CHANNEL_LIST_MODE,
        Command.STOP_CHANNEL_LIST_MODE,
        Command.SINGLE_PULSE,
    }
)
_ACKS: dict[int, type[Message]] = {
    Command.GET_STIMULATION_MODE: GetStimulationModeAck,
    Command.INIT_CHANNEL_LIST_MODE: InitChannelListModeAck,
    Command.START_CHANNEL_LIST_MODE: StartChannelListModeAck,
    Command.STOP_CHANNEL_LIST_MODE: StopChannelListModeAck,
    Command.SINGLE_PULSE: SinglePulseAck,
}


_DEVICE_FREQUENCIES = {
    "min_frequency_hz": 1000.0 / (MAX_MAIN_INTERVAL_MS * (MAX_LOW_FREQUENCY_FACTOR + 1)),
    "max_frequency_hz": 1000.0 / MIN_INTER_PULSE_MS,
}
"""The device's own frequency range, for the firmware's checks: the slowest a channel can
pulse (1025 ms main interval, a low-frequency channel on every 8th) to the fastest (8 ms
between pulses). The ``rehastim2`` profile's 1-125 Hz is what the host offers, not what the
device refuses."""


class _Reject(Exception):
    def __init__(self, result: Result, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


def _ack(command: int, result: int, mode: int = 0) -> Message:
    if command == Command.GET_STIMULATION_MODE:
        return GetStimulationModeAck(result, mode)
    if command == Command.INIT_CHANNEL_LIST_MODE:
        return InitChannelListModeAck(result)
    if command == Command.START_CHANNEL_LIST_MODE:
        return StartChannelListModeAck(result)
    if command == Command.STOP_CHANNEL_LIST_MODE:
        return StopChannelListModeAck(result)
    return SinglePulseAck(result)


@dataclass(frozen=True)
class _ListMode:
    """The device's channel list mode configuration (from InitChannelListMode)."""

    init: InitChannelListMode

    @property
    def active(self) -> tuple[int, ...]:
        return self.init.active_channels

    @property
    def one_shot(self) -> bool:
        return self.init.main_interval_code == 0

    @property
    def inter_pulse_ms(self) -> float:
        """The interval between the pulses of a doublet or triplet as delivered."""
        return max(MIN_INTER_PULSE_MS, self.init.inter_pulse_ms)

    def settings_for(self, channel: int, entry: ChannelPulse) -> ChannelSettings:
        """The channel's pulses as the firmware describes them."""
        width = max(MIN_EFFECTIVE_PULSE_WIDTH_US, entry.pulse_width_us)
        main_ms = self.init.main_interval_ms if not self.one_shot else 1000.0
        if channel in codec.channels_of(self.init.low_frequency_mask):
            main_ms *= self.init.low_frequency_factor + 1
        rate = 1000.0 / main_ms
        if entry.mode == PulseMode.SINGLE:
            return ChannelSettings(frequency_hz=rate, pulse_width_us=width)
        pulse_hz = 1000.0 / self.inter_pulse_ms
        if (entry.mode + 1) * self.inter_pulse_ms >= main_ms:
            # the groups fill the interval: one pulse every inter-pulse interval
            return ChannelSettings(frequency_hz=pulse_hz, pulse_width_us=width)
        return ChannelSettings(
            frequency_hz=pulse_hz,
            pulse_width_us=width,
            waveform=Waveform.SYMMETRIC_BIPHASIC,
            pattern=Pattern.BURST,
            secondary_hz=rate,
            pulses_per_burst=entry.mode + 1,
        )


class ScienceMode2FrontEnd:
    """A RehaStim 2 as seen from its serial port."""

    def __init__(self, context: FrontEndContext) -> None:
        self.firmware = context.firmware
        self.firmware.limits = self.firmware.limits.model_copy(update=_DEVICE_FREQUENCIES)
        self.clock = context.clock
        self._send_frame = context.send
        self.version = PROTOCOL_VERSION
        self._decoder = FrameDecoder()
        self._pkt = 0
        self.mode = StimulationMode.START
        self.linked = False
        self._init_pkts: set[int] = set()
        self._init_timer: TimerHandle | None = None
        self._list: _ListMode | None = None
        self._entries: dict[int, ChannelPulse] = {}
        self._pulse_timer: TimerHandle | None = None
        self._closed = False
        self.inits_sent = 0
        self.transfer_errors = 0
        self.firmware.add_event_handler(self._on_firmware_event)
        self._begin_init()

    # ------------------------------------------------------------------ output
    def _send(self, pkt: int, message: Message) -> None:
        if not self._closed:
            self._send_frame(codec.encode(pkt, message))

    def _next_pkt(self) -> int:
        self._pkt = (self._pkt + 1) % 256
        return self._pkt

    # ------------------------------------------------------------------ Init / link
    def _begin_init(self) -> None:
        """Power-on, restart or watchdog: unlinked, start mode, Init every 500 ms."""
        self.linked = False
        self._init_pkts.clear()
        self._reset_modes()
        if self._init_timer is not None:
            self._init_timer.cancel()
        self._init_timer = self.clock.call_soon(self._send_init)

    def _send_init(self) -> None:
        self._init_timer = None
        if self._closed or self.linked:
            return
        pkt = self._next_pkt()
        self._init_pkts.add(pkt)
        self.inits_sent += 1
        self._send(pkt, Init(self.version))
        self._init_timer = self.clock.call_later(INIT_REPEAT_S, self._send_init)

    def _reset_modes(self) -> None:
        self.mode = StimulationMode.START
        self._list = None
        self._entries = {}
        if self._pulse_timer is not None:
            self._pulse_timer.cancel()
            self._pulse_timer = None

    def _stop_output(self) -> None:
        self.firmware.stop()

    # ------------------------------------------------------------------ firmware events
    def _on_firmware_event(self, event: DeviceEvent) -> None:
        if self._closed:
            return
        kind = event.kind
        if kind is DeviceEventKind.WATCHDOG_TRIP:
            log.info("sciencemode2: watchdog expired; stopping and sending Init again")
            self._begin_init()
        elif kind is DeviceEventKind.DEVICE_RESET:
            self._decoder.reset()
            self._begin_init()
        elif kind is DeviceEventKind.EMERGENCY_SWITCH:
            self._stimulation_error(StimulationErrorCode.EMERGENCY_SWITCH)
        elif kind is DeviceEventKind.FAULT:
            self._stimulation_error(StimulationErrorCode.MODULE_ERROR)
        elif kind is DeviceEventKind.LEAD_OFF:
            channel = event.channel
            if self.mode is StimulationMode.STARTED and (
                channel is None or channel in self._entries
            ):
                self._stimulation_error(StimulationErrorCode.ELECTRODE_ERROR)
        # BATTERY_LOW: the RehaStim 2 has no such message.

    def _stimulation_error(self, code: StimulationErrorCode) -> None:
        self._stop_output()
        self._reset_modes()
        self._send(self._next_pkt(), StimulationError(int(code)))

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes) -> None:
        if self._closed:
            return
        for item in self._decoder.feed(data):
            if isinstance(item, RawFrame):
                self._on_frame(item)
            elif isinstance(item, TransferError):
                self.transfer_errors += 1
                command = item.command
                if item.pkt is not None and command in _ACKS:
                    assert command is not None
                    self._send(item.pkt, _ack(command, Result.TRANSFER_ERROR, self.mode))
            else:
                log.debug("sciencemode2: %s", item)

    def _on_frame(self, frame: RawFrame) -> None:
        self.firmware.feed()
        command = frame.command
        if command not in _HOST_COMMANDS:
            self._send(frame.pkt, UnknownCommand(command))
            return
        try:
            message = codec.from_frame(frame)
        except PayloadError as error:
            log.debug("sciencemode2: %s", error)
            if command != Command.STOP_CHANNEL_LIST_MODE:
                if command in _ACKS:
                    self._send(frame.pkt, _ack(command, Result.PARAMETER_ERROR, self.mode))
                return
            message = StopChannelListMode()  # a stop is a stop, whatever bytes came with it
        if isinstance(message, InitAck):
            self._on_init_ack(frame.pkt, message.result)
            return
        if isinstance(message, Watchdog):
            return
        try:
            after = self._execute(message)
        except _Reject as reject:
            log.debug("sciencemode2: %s refused: %s", type(message).__name__, reject.detail)
            self._send(frame.pkt, _ack(command, reject.result, self.mode))
            return
        self._send(frame.pkt, _ack(command, Result.OK, self.mode))
        if after is not None:
            self._stimulation_error(after)

    def _on_init_ack(self, pkt: int, result: int) -> None:
        if self.linked or pkt not in self._init_pkts:
            return
        if result != Result.OK:
            log.info("sciencemode2: host refused Init (result %d); repeating Init", result)
            return
        self.linked = True
        self._init_pkts.clear()
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None

    # ------------------------------------------------------------------ commands
    def _execute(self, message: Message) -> StimulationErrorCode | None:
        """Carry out a command, or raise :class:`_Reject` having changed nothing.

        Returns a stimulation error to raise right after the acknowledgement (an electrode
        found off by the test pulse)."""
        if isinstance(message, GetStimulationMode):
            return None
        if isinstance(message, InitChannelListMode):
            self._init_list(message)
            return None
        if isinstance(message, StartChannelListMode):
            return self._start_list(message)
        if isinstance(message, StopChannelListMode):
            # In every mode (the description allows only 0 and -1): nothing is running in the
            # start mode, which is what the host asked for.
            self._stop_output()
            self._reset_modes()
            return None
        if isinstance(message, SinglePulse):
            return self._single_pulse(message)
        raise _Reject(Result.PARAMETER_ERROR, f"unexpected {message!r}")  # pragma: no cover

    def _init_list(self, init: InitChannelListMode) -> None:
        if self.mode is not StimulationMode.START:
            raise _Reject(Result.WRONG_MODE, "channel list mode is already initialised")
        if init.low_frequency_factor > MAX_LOW_FREQUENCY_FACTOR:
            raise _Reject(Result.PARAMETER_ERROR, "low-frequency factor above 7")
        if init.active_mask == 0:
            raise _Reject(Result.PARAMETER_ERROR, "no active channel")
        if init.low_frequency_mask & ~init.active_mask:
            raise _Reject(Result.PARAMETER_ERROR, "low-frequency channel is not active")
        code = init.main_interval_code
        if code != 0 and not MIN_MAIN_INTERVAL_CODE <= code <= MAX_MAIN_INTERVAL_CODE:
            raise _Reject(Result.PARAMETER_ERROR, f"main interval code {code} out of range")
        if init.execution > 1:
            raise _Reject(Result.PARAMETER_ERROR, "channel execution must be 0 or 1")
        if len(init.active_channels) > self.firmware.channel_count:
            raise _Reject(Result.PARAMETER_ERROR, "more channels than the device has")
        if code != 0 and len(init.active_channels) * CHANNEL_SLOT_MS > init.main_interval_ms:
            raise _Reject(Result.PARAMETER_ERROR, "main interval too short for the channels")
        self._list = _ListMode(init)
        self._entries = {}
        self.mode = StimulationMode.INITIALISED

    def _start_list(self, start: StartChannelListMode) -> StimulationErrorCode | None:
        if self.mode is StimulationMode.START or self._list is None:
            raise _Reject(Result.WRONG_MODE, "channel list mode is not initialised")
        mode = self._list
        active = mode.active
        if len(start.channels) != len(active):
            raise _Reject(
                Result.PARAMETER_ERROR,
                f"{len(start.channels)} channel entries for {len(active)} active channels",
            )
        entries = dict(zip(active, start.channels, strict=True))
        settings: dict[int, ChannelSettings] = {}
        for channel, entry in entries.items():
            if entry.mode > PulseMode.TRIPLET:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: pulse mode {entry.mode}")
            if entry.pulse_width_us > MAX_PULSE_WIDTH_US:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: pulse width")
            if entry.current_ma > MAX_CURRENT_MA:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: current")
            group_ms = (entry.mode + 1) * mode.inter_pulse_ms
            if entry.mode and not mode.one_shot and group_ms > mode.init.main_interval_ms:
                # the description's rule: main interval >= pulses per group x inter-pulse interval
                raise _Reject(
                    Result.PARAMETER_ERROR,
                    f"channel {channel}: {entry.mode + 1} pulses {mode.inter_pulse_ms:g} ms apart "
                    f"need a main interval of at least {group_ms:g} ms, not "
                    f"{mode.init.main_interval_ms:g} ms",
                )
            try:
                settings[channel] = mode.settings_for(channel, entry)
                self.firmware.check_settings(channel, settings[channel])
                self.firmware.check_amplitude(float(entry.current_ma))
            except (Refused, ValueError) as error:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: {error}") from None
        # Checked: apply.
        firmware = self.firmware
        if self.mode is StimulationMode.INITIALISED or mode.one_shot:
            for channel in active:
                firmware.configure(channel, settings[channel])
            try:
                firmware.start()
            except Refused as error:
                raise _Reject(Result.PARAMETER_ERROR, str(error)) from None
        electrode_error = False
        for channel, entry in entries.items():
            current = float(entry.current_ma)
            before = self._entries.get(channel)
            if firmware.is_lead_off(channel):
                electrode_error = True
                current = 0.0
            reshaped = before is not None and (before.mode, before.pulse_width_us) != (
                entry.mode,
                entry.pulse_width_us,
            )
            try:
                if reshaped:
                    firmware.configure(channel, settings[channel], current)
                else:
                    firmware.set_amplitude(channel, current)
            except Refused as error:  # pragma: no cover - checked above
                log.warning("sciencemode2: firmware refused channel %d: %s", channel, error)
        self._entries = entries
        self.mode = StimulationMode.STARTED
        if mode.one_shot:
            self._schedule_pulse_end()
        if electrode_error:
            return StimulationErrorCode.ELECTRODE_ERROR
        return None

    def _schedule_pulse_end(self) -> None:
        if self._pulse_timer is not None:
            self._pulse_timer.cancel()

        def end() -> None:
            self._pulse_timer = None
            for channel in self._entries:
                if self.firmware.delivered(channel):
                    self.firmware.set_amplitude(channel, 0.0)

        self._pulse_timer = self.clock.call_later(SINGLE_PULSE_S, end)

    def _single_pulse(self, pulse: SinglePulse) -> StimulationErrorCode | None:
        if self.mode is not StimulationMode.START:
            raise _Reject(Result.WRONG_MODE, "single pulses only in the start mode")
        channel = pulse.channel + 1
        if not 1 <= channel <= self.firmware.channel_count:
            raise _Reject(Result.PARAMETER_ERROR, f"channel {pulse.channel} does not exist")
        if pulse.pulse_width_us > MAX_PULSE_WIDTH_US or pulse.current_ma > MAX_CURRENT_MA:
            raise _Reject(Result.PARAMETER_ERROR, "pulse width or current out of range")
        width = max(MIN_EFFECTIVE_PULSE_WIDTH_US, pulse.pulse_width_us)
        settings = ChannelSettings(
            frequency_hz=self.firmware.limits.min_frequency_hz, pulse_width_us=width
        )
        try:
            self.firmware.check_settings(channel, settings)
            self.firmware.check_amplitude(float(pulse.current_ma))
        except Refused as error:
            raise _Reject(Result.PARAMETER_ERROR, str(error)) from None
        if pulse.current_ma > 0 and self.firmware.is_lead_off(channel):
            return StimulationErrorCode.ELECTRODE_ERROR
        if pulse.current_ma == 0:
            return None
        firmware = self.firmware
        firmware.configure(channel, settings)
        try:
            firmware.start()
        except Refused as error:
            raise _Reject(Result.PARAMETER_ERROR, str(error)) from None
        firmware.set_amplitude(channel, float(pulse.current_ma))

        def end() -> None:
            self._pulse_timer = None
            if self.mode is StimulationMode.START:
                firmware.stop()

        if self._pulse_timer is not None:
            self._pulse_timer.cancel()
        self._pulse_timer = self.clock.call_later(SINGLE_PULSE_S, end)
        return None

    # ------------------------------------------------------------------ power
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.firmware.remove_event_handler(self._on_firmware_event)
        for timer in (self._init_timer, self._pulse_timer):
            if timer is not None:
                timer.cancel()
        self._init_timer = self._pulse_timer = None


__all__ = ["ScienceMode2FrontEnd"]
