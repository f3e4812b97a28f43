"""The Hasomed P24 (ScienceMode4, mid level) front-end of the simulated firmware.

The device side of the P24's ScienceMode4 as far as the public ScienceMode4 C library describes
it, on top of the protocol-independent :class:`~simulator.firmware.Firmware` (which keeps the
delivered-output record, the watchdog timer and the faults). ``docs/devices.md`` (the P24
section) lists every fact and every place where the emulator has to guess.

* **Answers.** Every command is answered with the command number + 1 and its packet number,
  in the order received: Get_Device_Id, Get_Version_Main, Get_Extended_Version,
  Get_Battery_Status, Get_Stim_Status, Reset, Ml_Init, Ml_Update, Ml_Stop,
  Ml_Get_Current_Data, Ll_Stop. Any other command number gets Unknown_Cmd (result 11); a
  packet with a bad length or CRC gets General_Error (result 1, transfer error); a known
  command with a malformed payload is answered with result 2 (parameter error).
* **Mid level.** Ml_Init switches the high voltage on (its answer comes after 80 ms, commands
  arriving meanwhile wait); Ml_Update (refused with result 7 outside the mid level, result 2
  for a value the C library's ``smpt_is_valid_ml_update`` refuses: more than ±130 mA, a period
  of 0 or above 16383 ms, all channels together busy 100 % of the time) enables, changes or
  disables each channel at once -- a channel being switched on with ``ramp`` = n rises over
  n pulses; Ml_Stop stops every channel and switches the high voltage off (40 ms).
* **Keep-alive.** After an Ml_Update has started stimulation, Ml_Get_Current_Data must come at
  least every 2 s (``wdms``); otherwise the device stops and leaves the mid level.
* **Electrodes.** An electrode that comes off is detected only while its channel delivers at
  least ``electrode_min_ma`` (15 mA, the C library's "a minimum current of 15 mA is
  required"): the channel state becomes electrode error and every channel stops
  (``stop_all_channels_on_error``, else only that one); Ml_Get_Current_Data reports it until
  the next Ml_Update. Below that current nothing is detected: the channel keeps its set
  current, and when the electrode is back, current flows again at once.
* **Faults.** An internal fault, an empty battery or the emergency switch (the P24 has no
  message for it) send General_Error and leave the mid level; a reset or the watchdog leave
  it silently (Ml_Get_Current_Data then answers result 7). The battery level is what
  Get_Battery_Status reports. The device reports no current and no impedance.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

from drivers.base import ChannelSettings, DeviceEvent, DeviceEventKind
from drivers.clock import TimerHandle
from drivers.sciencemode4 import codec
from drivers.sciencemode4.codec import (
    CHANNELS,
    Ack,
    ChannelState,
    Command,
    GeneralError,
    GetBatteryStatus,
    GetBatteryStatusAck,
    GetDeviceId,
    GetDeviceIdAck,
    GetExtendedVersion,
    GetExtendedVersionAck,
    GetStimStatus,
    GetStimStatusAck,
    GetVersionMain,
    GetVersionMainAck,
    HighVoltage,
    LlStop,
    Message,
    MlChannel,
    MlData,
    MlGetCurrentData,
    MlGetCurrentDataAck,
    MlInit,
    MlStop,
    MlUpdate,
    PayloadError,
    Reset,
    Result,
    StimStatus,
    UnknownCommand,
)
from drivers.sciencemode4.frame import FrameDecoder, RawFrame, TransferError
from drivers.sciencemode4.plan import (
    CURRENT_STEP_MA,
    DUTY_EXTRA_US,
    DUTY_LIMIT_PERMILLE,
    ELECTRODE_CHECK_MIN_MA,
    MAX_CURRENT_MA,
    MAX_PERIOD_MS,
    MIN_POINT_US,
)
from simulator.firmware import OutputState, Refused
from simulator.frontends import FrontEndContext

log = logging.getLogger(__name__)

FIRMWARE_VERSION = (1, 0, 0)
SCIENCEMODE_VERSION = (4, 0, 0)
FIRMWARE_HASH = 0x53494D34  # "SIM4"
HV_ON_S = 0.08
"""Ml_Init: "switches on the high voltage for both modules (execution duration 2 x 40 ms)"."""
HV_OFF_S = 0.04
"""Ml_Stop: "switches off the high voltage for both modules (execution duration 40 ms)"."""
CONTACT_CHECK_S = 0.01
"""While an undetected electrode is off: how often the emulator notices it is back."""

_COMMANDS = frozenset(
    int(c)
    for c in (
        Command.GET_DEVICE_ID,
        Command.GET_VERSION_MAIN,
        Command.GET_EXTENDED_VERSION,
        Command.GET_BATTERY_STATUS,
        Command.GET_STIM_STATUS,
        Command.RESET,
        Command.ML_INIT,
        Command.ML_UPDATE,
        Command.ML_STOP,
        Command.ML_GET_CURRENT_DATA,
        Command.LL_STOP,
    )
)
_GENERAL_ERROR_FOR: dict[DeviceEventKind, Result] = {
    DeviceEventKind.FAULT: Result.UC_STIM_TIMEOUT_ERROR,
    DeviceEventKind.EMERGENCY_SWITCH: Result.HV_ERROR,
}


class _Reject(Exception):
    def __init__(self, result: Result, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


@dataclass
class _Live:
    """One enabled channel on the device."""

    config: MlChannel
    settings: ChannelSettings
    level: float
    """The current the channel is set to (its pattern's peak)."""
    active: bool = True
    state: ChannelState = ChannelState.OK
    undetected_off: bool = False
    """The electrode is off while the channel runs below the detection current."""


def settings_of(config: MlChannel) -> ChannelSettings:
    """A mid-level pattern as the firmware model records it: one symmetric biphasic pulse per
    period whose phase is half of the pattern's time carrying current (all of it while every
    point is at 0 mA), an upper bound for the dose (a tens-control pattern is exactly that
    pulse, or a burst with the same r.m.s. value)."""
    carrying = [p for p in config.points if p.current_ma] or list(config.points)
    active = sum(max(p.time_us, MIN_POINT_US) for p in carrying)
    width = min(max(MIN_POINT_US, math.ceil(active / 2)), 4095)
    return ChannelSettings(frequency_hz=1000.0 / config.period_ms, pulse_width_us=width)


def device_id(seed: int) -> str:
    """The emulated P24's 10-character device id (its serial number)."""
    return f"SIM{seed % 10_000_000:07d}"


def _option_ma(text: str | None) -> float:
    if not text:
        return ELECTRODE_CHECK_MIN_MA
    from simulator.device import SimConfigError  # here: simulator.device imports front-ends

    try:
        value = float(text)
    except ValueError:
        raise SimConfigError(f"option electrode_min_ma={text!r} is not a number") from None
    if not 0 <= value <= MAX_CURRENT_MA:
        raise SimConfigError(f"option electrode_min_ma={text!r} must be between 0 and 130")
    return value


class ScienceMode4FrontEnd:
    """A P24 as seen from its USB serial port."""

    def __init__(self, context: FrontEndContext) -> None:
        self.firmware = context.firmware
        self.clock = context.clock
        self._send_frame = context.send
        self.electrode_min_ma = _option_ma(context.options.get("electrode_min_ma"))
        self._decoder = FrameDecoder()
        self.status = StimStatus.UNINITIALIZED
        self.high_voltage = False
        self.stop_all_on_error = True
        self.live: dict[int, _Live] = {}
        self._queue: deque[RawFrame | TransferError] = deque()
        self._busy: TimerHandle | None = None
        self._ramps: dict[int, list[TimerHandle]] = {}
        self._contact_timer: TimerHandle | None = None
        self._closed = False
        self.transfer_errors = 0
        self.device_id = device_id(self.firmware.seed)
        self.firmware.add_event_handler(self._on_firmware_event)

    # ------------------------------------------------------------------ output
    def _send(self, pkt: int, message: Message) -> None:
        if not self._closed:
            self._send_frame(codec.encode(pkt, message))

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes) -> None:
        if self._closed:
            return
        for item in self._decoder.feed(data):
            if isinstance(item, RawFrame | TransferError):
                self._queue.append(item)
            else:
                log.debug("sciencemode4: %s", item)
        self._run_queue()

    def _run_queue(self) -> None:
        while self._queue and self._busy is None and not self._closed:
            item = self._queue.popleft()
            if isinstance(item, TransferError):
                self.transfer_errors += 1
                self._send(item.pkt or 0, GeneralError(Result.TRANSFER_ERROR))
            else:
                self._on_frame(item)

    def _hold(self, seconds: float, pkt: int, answer: Message) -> None:
        """Busy for ``seconds`` (switching the high voltage): answer then, and only then take
        the next command."""

        def done() -> None:
            self._busy = None
            self._send(pkt, answer)
            self._run_queue()

        self._busy = self.clock.call_later(seconds, done)

    def _on_frame(self, frame: RawFrame) -> None:
        command = frame.command
        if command not in _COMMANDS:
            self._send(frame.pkt, UnknownCommand(Result.INVALID_CMD_ERROR))
            return
        ack = command + 1
        try:
            message = codec.from_frame(frame)
        except PayloadError as error:
            log.debug("sciencemode4: %s", error)
            self._send(frame.pkt, self._refusal(ack, Result.PARAMETER_ERROR))
            return
        try:
            self._execute(frame.pkt, ack, message)
        except _Reject as reject:
            log.debug("sciencemode4: %s refused: %s", type(message).__name__, reject.detail)
            self._send(frame.pkt, self._refusal(ack, reject.result))

    @staticmethod
    def _refusal(ack: int, result: Result) -> Message:
        if ack == Command.ML_GET_CURRENT_DATA_ACK:
            return MlGetCurrentDataAck(result)
        if ack == Command.GET_DEVICE_ID_ACK:
            return GetDeviceIdAck(result, "")
        if ack == Command.GET_STIM_STATUS_ACK:
            return GetStimStatusAck(result, 0, 0)
        if ack == Command.GET_BATTERY_STATUS_ACK:
            return GetBatteryStatusAck(result, 0, 0)
        if ack == Command.GET_EXTENDED_VERSION_ACK:
            return GetExtendedVersionAck(result, (0, 0, 0), (0, 0, 0))
        if ack == Command.GET_VERSION_MAIN_ACK:
            return GetVersionMainAck(result, (0, 0, 0), (0, 0, 0))
        return Ack(ack, result)

    # ------------------------------------------------------------------ commands
    def _execute(self, pkt: int, ack: int, message: Message) -> None:
        """Carry out a command and answer it, or raise :class:`_Reject` having changed
        nothing."""
        fw = self.firmware
        if isinstance(message, MlGetCurrentData):
            fw.feed()  # the mid level's keep-alive
            self._send(pkt, self._current_data(message.selection))
        elif isinstance(message, MlUpdate):
            self._update(message)
            self._send(pkt, Ack(ack))
        elif isinstance(message, MlStop):
            was_on = self.high_voltage
            self._leave_mid_level()
            if was_on:
                self._hold(HV_OFF_S, pkt, Ack(ack))
            else:
                self._send(pkt, Ack(ack))
        elif isinstance(message, MlInit):
            self._init(pkt, ack, message)
        elif isinstance(message, GetStimStatus):
            hv = HighVoltage.V150 if self.high_voltage else HighVoltage.OFF
            self._send(pkt, GetStimStatusAck(Result.SUCCESSFUL, self.status, hv))
        elif isinstance(message, GetBatteryStatus):
            pct = max(0, min(100, round(fw.battery_pct())))
            self._send(pkt, GetBatteryStatusAck(Result.SUCCESSFUL, pct, 3300 + 9 * pct))
        elif isinstance(message, GetDeviceId):
            self._send(pkt, GetDeviceIdAck(Result.SUCCESSFUL, self.device_id))
        elif isinstance(message, GetExtendedVersion):
            self._send(
                pkt,
                GetExtendedVersionAck(
                    Result.SUCCESSFUL, FIRMWARE_VERSION, SCIENCEMODE_VERSION, FIRMWARE_HASH, 1, True
                ),
            )
        elif isinstance(message, GetVersionMain):
            self._send(
                pkt, GetVersionMainAck(Result.SUCCESSFUL, FIRMWARE_VERSION, SCIENCEMODE_VERSION)
            )
        elif isinstance(message, Reset):
            self._send(pkt, Ack(ack))
            fw.reset()  # its DEVICE_RESET event clears every mode
        elif isinstance(message, LlStop):
            if self.status is StimStatus.LL_INITIALIZED:  # pragma: no cover - never entered
                self.status = StimStatus.UNINITIALIZED
            self._send(pkt, Ack(ack))
        else:  # pragma: no cover - _COMMANDS lists what is handled
            raise _Reject(Result.INVALID_CMD_ERROR, f"unexpected {message!r}")

    def _init(self, pkt: int, ack: int, init: MlInit) -> None:
        if self.status is StimStatus.LL_INITIALIZED:  # pragma: no cover - never entered
            raise _Reject(Result.NOT_INITIALIZED_ERROR, "the low level is active")
        fw = self.firmware
        if fw.battery_pct() <= fw.battery_empty_pct:
            raise _Reject(Result.HV_ERROR, "battery empty: no high voltage")
        self.stop_all_on_error = init.stop_all_channels_on_error
        if self.status in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            self._send(pkt, Ack(ack))  # already in the mid level: nothing changes
            return
        self.status = StimStatus.ML_INITIALIZED
        self.high_voltage = True
        self._hold(HV_ON_S, pkt, Ack(ack))

    def _check(self, update: MlUpdate) -> dict[int, ChannelSettings]:
        if self.status not in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            raise _Reject(Result.NOT_INITIALIZED_ERROR, "the mid level is not initialised")
        settings: dict[int, ChannelSettings] = {}
        duty = 0.0
        for channel in update.enabled:
            config = update.channels[channel - 1]
            assert config is not None
            if channel > self.firmware.channel_count:
                raise _Reject(Result.PARAMETER_ERROR, f"no channel {channel}")
            if not 0 < config.period_ms <= MAX_PERIOD_MS:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: period")
            if config.peak_ma > MAX_CURRENT_MA:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: current above 130 mA")
            if any(p.interpolation > 1 for p in config.points):
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: interpolation mode")
            busy = sum(p.time_us for p in config.points) + DUTY_EXTRA_US
            duty += busy / config.period_ms
            try:
                settings[channel] = settings_of(config)
                self.firmware.check_settings(channel, settings[channel])
                self.firmware.check_amplitude(config.peak_ma)
            except (Refused, ValueError) as error:
                raise _Reject(Result.PARAMETER_ERROR, f"channel {channel}: {error}") from None
        if math.ceil(duty - 1e-9) >= DUTY_LIMIT_PERMILLE:
            raise _Reject(Result.PARAMETER_ERROR, "the channels need more than 100 % of the time")
        return settings

    def _update(self, update: MlUpdate) -> None:
        settings = self._check(update)
        fw = self.firmware
        if not settings:
            for channel in list(self.live):
                self._disable(channel)
            self.status = StimStatus.ML_INITIALIZED
            return
        starting = fw.state is not OutputState.RUNNING
        if starting:
            for channel, s in settings.items():
                fw.configure(channel, s, 0.0)
            fw.feed()  # the 2 s keep-alive starts with stimulation
            try:
                fw.start()
            except Refused as error:
                raise _Reject(Result.HV_ERROR, str(error)) from None
            self.live.clear()
        for channel in [c for c in self.live if c not in settings]:
            self._disable(channel)
        for channel, config in ((c, update.channels[c - 1]) for c in settings):
            assert config is not None
            self._apply_channel(channel, config, settings[channel])
        self.status = StimStatus.ML_RUNNING
        self._watch_contact()

    def _apply_channel(self, channel: int, config: MlChannel, settings: ChannelSettings) -> None:
        fw = self.firmware
        before = self.live.get(channel)
        self._cancel_ramp(channel)
        level = config.peak_ma
        if fw.settings(channel) != settings:
            fw.configure(channel, settings, 0.0)
        switched_on = before is None or not before.active
        live = _Live(config, settings, level)
        self.live[channel] = live
        if fw.is_lead_off(channel):
            if level >= self.electrode_min_ma:
                self._electrode_error(channel)
            else:
                live.undetected_off = level > 0
            return
        if switched_on and config.ramp and level > 0:
            self._ramp(channel, live)
        else:
            fw.set_amplitude(channel, level)

    def _ramp(self, channel: int, live: _Live) -> None:
        """``ramp`` pulses of linearly rising current, then the full current."""
        ramp = live.config.ramp
        period_s = live.config.period_ms / 1000.0
        timers: list[TimerHandle] = []
        for k in range(1, ramp + 2):
            step = live.level * k / (ramp + 1)
            level = live.level if k > ramp else math.floor(step / CURRENT_STEP_MA) * CURRENT_STEP_MA

            def pulse(value: float = level) -> None:
                if self.live.get(channel) is live and live.active and not live.undetected_off:
                    self.firmware.set_amplitude(channel, value)

            if k == 1:
                pulse()
            else:
                timers.append(self.clock.call_later((k - 1) * period_s, pulse))
        self._ramps[channel] = timers

    def _cancel_ramp(self, channel: int) -> None:
        for timer in self._ramps.pop(channel, []):
            timer.cancel()

    def _disable(self, channel: int) -> None:
        self._cancel_ramp(channel)
        self.live.pop(channel, None)
        self._zero(channel)

    def _stop_channel(self, channel: int) -> None:
        live = self.live.get(channel)
        if live is None:
            return
        self._cancel_ramp(channel)
        live.active = False
        live.undetected_off = False
        self._zero(channel)

    def _zero(self, channel: int) -> None:
        fw = self.firmware
        if fw.settings(channel) is not None and fw.state is OutputState.RUNNING:
            fw.set_amplitude(channel, 0.0)

    def _electrode_error(self, channel: int) -> None:
        log.info("sciencemode4: electrode error on channel %d", channel)
        live = self.live[channel]
        live.state = ChannelState.ELECTRODE_ERROR
        for other in list(self.live) if self.stop_all_on_error else [channel]:
            self._stop_channel(other)
        if not any(v.active for v in self.live.values()):
            self.status = StimStatus.ML_INITIALIZED

    def _leave_mid_level(self) -> None:
        """Every channel off, high voltage off, the mid level left (stop, watchdog, fault)."""
        for channel in list(self._ramps):
            self._cancel_ramp(channel)
        self.live.clear()
        self.firmware.stop()
        self.status = StimStatus.UNINITIALIZED
        self.high_voltage = False

    def _current_data(self, selection: int) -> MlGetCurrentDataAck:
        if self.status not in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            return MlGetCurrentDataAck(Result.NOT_INITIALIZED_ERROR, selection)
        active = tuple(
            bool(self.live.get(c) and self.live[c].active) for c in range(1, CHANNELS + 1)
        )
        states = tuple(
            int(self.live[c].state) if c in self.live else 0 for c in range(1, CHANNELS + 1)
        )
        if selection == MlData.CHANNELS:
            return MlGetCurrentDataAck(Result.SUCCESSFUL, selection, active, states)
        running = 0x10 if any(active) else 0
        errors = [s == ChannelState.ELECTRODE_ERROR for s in states]
        low = sum(1 << i for i in range(4) if errors[i])
        high = sum(1 << i for i in range(4) if errors[i + 4])
        if selection == MlData.STIMULATION:
            extra = bytes((running | low,))
        elif selection == MlData.STIMULATION_EIGHT_CHANNELS:
            extra = bytes((running | low, running | high))
        else:
            return MlGetCurrentDataAck(Result.PARAMETER_ERROR, selection)
        return MlGetCurrentDataAck(Result.SUCCESSFUL, selection, extra=extra)

    # ------------------------------------------------------------------ electrodes
    def _watch_contact(self) -> None:
        if self._contact_timer is None and any(v.undetected_off for v in self.live.values()):
            self._contact_timer = self.clock.call_later(CONTACT_CHECK_S, self._contact_check)

    def _contact_check(self) -> None:
        self._contact_timer = None
        if self._closed:
            return
        for channel, live in list(self.live.items()):
            if live.undetected_off and not self.firmware.is_lead_off(channel):
                # the P24 never stopped: with the electrode back, its current flows again
                live.undetected_off = False
                if live.active:
                    self.firmware.set_amplitude(channel, live.level)
        self._watch_contact()

    # ------------------------------------------------------------------ firmware events
    def _on_firmware_event(self, event: DeviceEvent) -> None:
        if self._closed:
            return
        kind = event.kind
        if kind is DeviceEventKind.LEAD_OFF:
            live = self.live.get(event.channel or 0)
            if live is None or not live.active or self.status is not StimStatus.ML_RUNNING:
                return
            if live.level >= self.electrode_min_ma:
                self._electrode_error(event.channel or 0)
            else:
                live.undetected_off = True
                self._watch_contact()
        elif kind is DeviceEventKind.WATCHDOG_TRIP:
            log.info("sciencemode4: no Ml_Get_Current_Data for 2 s; stimulation stopped")
            self._leave_mid_level()
        elif kind is DeviceEventKind.DEVICE_RESET:
            self._decoder.reset()
            self._queue.clear()
            if self._busy is not None:
                self._busy.cancel()
                self._busy = None
            self._leave_mid_level()
        elif kind in _GENERAL_ERROR_FOR:
            result = _GENERAL_ERROR_FOR[kind]
            if event.detail == "battery_empty":
                result = Result.HV_ERROR
            self._leave_mid_level()
            self._send(0, GeneralError(result))
        # BATTERY_LOW: the level is what Get_Battery_Status reports

    # ------------------------------------------------------------------ power
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.firmware.remove_event_handler(self._on_firmware_event)
        for channel in list(self._ramps):
            self._cancel_ramp(channel)
        for timer in (self._busy, self._contact_timer):
            if timer is not None:
                timer.cancel()
        self._busy = self._contact_timer = None


__all__ = ["ScienceMode4FrontEnd", "device_id", "settings_of"]
