"""The ScienceMode4 protocol engine (Hasomed P24, mid level), sans-I/O.

The life cycle it shares with every protocol (tickets, the 1 s acknowledgement timeout, S14
redundant zeroing) is :class:`drivers.engine.Engine`. What the device can and cannot do shapes
the rest (``docs/devices.md``, the P24 section, says where each fact comes from):

* **Link.** No handshake: the device answers every command with the command number + 1 and the
  same packet number (0-63). Identifying asks Get_Stim_Status (and stops a device someone left
  in the mid or low level), Get_Device_Id, Get_Extended_Version and Get_Battery_Status.
* **Keep-alive and liveness.** While stimulating, ``Ml_Get_Current_Data`` every :data:`POLL_S`
  (the device stops after 2 s without one): it is also how the host learns each channel's
  state, so S7 holds within 100 ms. Otherwise Get_Stim_Status every :data:`STATUS_POLL_S`;
  Get_Battery_Status every :data:`BATTERY_POLL_S`. Every answer is due within 1 s (S8). The
  device answers in order, so an answer means every older poll's answer was lost (no
  resend, no comms loss for one lost frame).
* **Amplitude.** Ml_Update is an absolute description of all 8 channels: every change sends
  every configured channel's pattern at its current (0-130 mA in 0.5 mA steps). The device
  does not ramp an enabled channel by itself, so the host's governor ramps, one update per step
  (the ``ramp`` field is sent as 0). Starting enters the mid level (Ml_Init, high voltage on)
  and enables every configured channel at 0 mA. ``stop_all_channels_on_error`` is *off*: the
  device stops channels by itself without telling the host, and the next absolute update --
  sent before the host has heard of the stop -- would switch every stopped channel on again at
  its level at once. With it off, only the channel with the error stops; the governor then
  pauses every channel within one poll (S7).
* **Zeroing.** Ml_Stop and every update that lowers a channel are urgent (two packets at once,
  again every 20 ms until answered); both are idempotent. An older update is never sent again.
* **Channel states.** Electrode error and low current (the set current cannot be reached: poor
  contact) -> ``LEAD_OFF`` for that channel (S7; the device has stopped every channel);
  timeout (the period cannot be achieved) -> ``FAULT``. The device reports neither current nor
  impedance: telemetry carries the acknowledged current, ``None`` for measurements, and the
  device's own electrode flag, repeated in every answer. Get_Current_Data answered "not
  initialised" while stimulating -> ``DEVICE_RESET`` (the device left the mid level by itself).
* **Errors.** Every result maps to a typed :class:`~drivers.base.DeviceRejectedError`;
  General_Error (unsolicited) with a transfer error sends the commands in flight again, any
  other result is a device ``FAULT``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from drivers.base import (
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DriverError,
    ErrorCode,
    FramingError,
    IdentityError,
    Telemetry,
)
from drivers.engine import (
    Configure,
    DeviceCommand,
    Engine,
    Identify,
    InFlight,
    Output,
    Ping,
    QueryStatus,
    SetAmplitude,
    StartOutput,
    StopOutput,
)
from drivers.limits import DeviceProfile
from drivers.sciencemode4 import codec
from drivers.sciencemode4.codec import (
    ACK_FOR,
    ChannelState,
    GeneralError,
    GetBatteryStatus,
    GetBatteryStatusAck,
    GetDeviceId,
    GetDeviceIdAck,
    GetExtendedVersion,
    GetExtendedVersionAck,
    GetStimStatus,
    GetStimStatusAck,
    LlStop,
    Message,
    MlGetCurrentData,
    MlGetCurrentDataAck,
    MlInit,
    MlStop,
    MlUpdate,
    Reply,
    Request,
    Reset,
    Result,
    StimStatus,
    UnknownCommand,
)
from drivers.sciencemode4.frame import PACKET_NUMBERS, FrameDecoder, RawFrame
from drivers.sciencemode4.plan import (
    DEVICE_WATCHDOG_MS,
    MAX_CHANNELS,
    PROTOCOL,
    ChannelPattern,
    DriverRefusedError,
    build_update,
    check_duty,
    error_for_result,
    plan_channel,
    result_text,
)

log = logging.getLogger(__name__)

POLL_S = 0.05
"""Ml_Get_Current_Data this often while stimulating: the keep-alive (the device allows 2 s) and
the source of every channel's state (S7 within 100 ms)."""
STATUS_POLL_S = 0.5
"""Get_Stim_Status this often while identified and not stimulating (S8 liveness)."""
BATTERY_POLL_S = 1.0
BATTERY_LOW_PCT = 15
"""At or below this charge the host reports ``BATTERY_LOW`` (once, until it is above again)."""
SCIENCEMODE_MAJOR = 4
RESEND_S = 0.3
RETRIES = 2
BUSY_RETRY_S = 0.02
OK_OR_NOT_INITIALISED = frozenset({Result.SUCCESSFUL, Result.NOT_INITIALIZED_ERROR})
"""Ml_Stop and Ll_Stop: a device that was not in that level is stopped all the same."""

Key = tuple[int, int]
"""(acknowledgement command, packet number): how an answer is matched to its command."""


@dataclass(frozen=True)
class P24Status:
    """What QueryStatus returns: Get_Stim_Status, and the battery as last read."""

    stim_status: int
    high_voltage: int
    battery_pct: int | None
    battery_mv: int | None


@dataclass(eq=False)
class _Command:
    """What the engine needs to know about one command on the wire."""

    message: Request
    accept: frozenset[int]
    on_ok: Callable[[Reply], None] | None = None
    on_error: Callable[[DriverError], None] | None = None
    poll: bool = False
    """A periodic query: a newer answer means its own was lost; never sent again."""
    retries: int = RETRIES
    retry_now: bool = False


_Step = Callable[[], tuple[str, Request, frozenset[int], Callable[[Reply], None]]]
"""Builds the next command of a chain when it is due: name, message, accepted results, on_ok."""


@dataclass
class _Chain:
    """Several commands, each sent when the previous one was acknowledged."""

    ticket: int | None
    steps: list[_Step]
    index: int = 0
    result: Callable[[], object] = lambda: None


@dataclass
class _State:
    identified: bool = False
    initialised: bool = False
    """The device acknowledged Ml_Init (it is in the mid level, high voltage on)."""
    running: bool = False
    """An Ml_Update enabling the configured channels was acknowledged."""
    acked: dict[int, float] = field(default_factory=dict)
    """Per configured channel: the current the device acknowledged."""
    sent: dict[int, float] = field(default_factory=dict)
    """Per configured channel: the current in the newest update sent."""
    errors: dict[int, int] = field(default_factory=dict)
    """Per channel: the error state already reported (cleared when stimulation restarts)."""


class ScienceMode4Engine(Engine):
    """One ScienceMode4 link (a new engine for every connection)."""

    resend_s = RESEND_S
    max_resends = RETRIES

    def __init__(self, profile: DeviceProfile, *, url: str = "") -> None:
        super().__init__()
        self.profile = profile
        self.url = url
        self._decoder = FrameDecoder()
        self._pkt = 0
        self._epoch = 0
        self.patterns: dict[int, ChannelPattern] = {}
        self.state = _State()
        self.info: DeviceInfo | None = None
        self.device_id: str | None = None
        self.firmware: tuple[int, int, int] | None = None
        self.sciencemode: tuple[int, int, int] | None = None
        self.battery_pct: int | None = None
        self.battery_mv: int | None = None
        self._battery_low = False
        self._chains: list[_Chain] = []
        self._updates: list[InFlight] = []
        """Ml_Update and Ml_Stop commands in flight, oldest first (the newest decides)."""
        self._next_poll: float | None = None
        self._next_status: float | None = None
        self._next_battery: float | None = None
        self.framing_errors = 0
        self.polls_sent = 0

    # ------------------------------------------------------------------ engine hooks
    def _keepalive_frame(self) -> bytes:  # pragma: no cover - keepalive_s is None: polls instead
        return codec.encode(
            self._next_pkt(int(codec.Command.ML_GET_CURRENT_DATA_ACK)), MlGetCurrentData()
        )

    def _stop_frame(self) -> bytes:
        return codec.encode(self._next_pkt(int(codec.Command.ML_STOP_ACK)), MlStop())

    def _protocol_deadline(self) -> float | None:
        if not self.state.identified:
            return None
        poll = self._next_poll if self.state.running else self._next_status
        times = [t for t in (poll, self._next_battery) if t is not None]
        return min(times) if times else None

    def _due(self, now: float) -> None:
        self.now = now
        state = self.state
        if not state.identified:
            return
        if state.running:
            if self._next_poll is not None and now >= self._next_poll - 1e-9:
                self._next_poll = now + POLL_S
                self._poll(MlGetCurrentData(), self._on_current_data)
        elif self._next_status is not None and now >= self._next_status - 1e-9:
            self._next_status = now + STATUS_POLL_S
            self._poll(GetStimStatus(), self._on_stim_status)
        if self._next_battery is not None and now >= self._next_battery - 1e-9:
            self._next_battery = now + BATTERY_POLL_S
            self._poll(GetBatteryStatus(), self._on_battery)

    def _may_resend(self, key: Hashable, flight: InFlight) -> bool:
        command: _Command = flight.context
        if command.retry_now:
            return True
        if command.poll or isinstance(command.message, Reset):
            return False
        return self._current(flight)

    def _resend(self, key: Hashable, flight: InFlight, now: float) -> None:
        flight.context.retry_now = False
        self._write(flight.wire, now)

    def _failed(self, flight: InFlight, error: DriverError) -> None:
        command: _Command = flight.context
        if command.on_error is not None:
            command.on_error(error)
        self._complete(flight.ticket, error)

    def _lost_cleanup(self, why: str) -> None:
        self._device_stopped()
        self._cancel_chains(CommsLostError(f"not confirmed: {why}"))
        self._updates.clear()
        self._next_poll = self._next_status = self._next_battery = None

    # ------------------------------------------------------------------ commands
    def _submit(self, ticket: int, command: DeviceCommand, now: float) -> None:
        self.now = now
        if isinstance(command, Identify):
            self._identify(ticket)
            return
        if isinstance(command, StopOutput):
            self._stop(ticket)
            return
        if not self.state.identified:
            raise DriverRefusedError(
                ErrorCode.STATE, "command", "the P24 has not been identified yet"
            )
        if isinstance(command, Configure):
            self._configure(ticket, command)
        elif isinstance(command, SetAmplitude):
            self._amplitude(ticket, command.channel, command.milliamps)
        elif isinstance(command, StartOutput):
            self._start(ticket)
        elif isinstance(command, QueryStatus | Ping):
            self._query_status(ticket)
        else:  # pragma: no cover - DeviceCommand is closed
            raise TypeError(command)

    def submit_reset(self, now: float) -> tuple[int, Output]:
        """General Reset: the device restarts (every output off, every mode left). Like
        :meth:`submit`: raises when the link is lost, else a ticket and the output to apply."""
        self.now = now
        if self.lost is not None or self.closed:
            raise self._unusable()
        ticket = next(self._tickets)
        self._cancel_chains(DriverRefusedError(ErrorCode.STATE, "program change", "reset"))
        self._device_stopped()

        def on_ok(_: Reply) -> None:
            self._device_reset("the P24 was reset on request: every output is off")

        self._send_command("reset", Reset(), ticket, on_ok=on_ok)
        return ticket, self._finish(now)

    # ---- identify
    def _identify(self, ticket: int) -> None:
        where = self.url or "the port"

        def ask_status() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
            def done(reply: Reply) -> None:
                assert isinstance(reply, GetStimStatusAck)
                if reply.status in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
                    chain.steps.insert(chain.index, stop_step(MlStop()))
                elif reply.status == StimStatus.LL_INITIALIZED:
                    chain.steps.insert(chain.index, stop_step(LlStop()))

            return ("Get_Stim_Status", GetStimStatus(), frozenset({Result.SUCCESSFUL}), done)

        def stop_step(message: MlStop | LlStop) -> _Step:
            def step() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
                log.warning("%s: the P24 was left stimulating or initialised; stopping it", where)
                return ("stop (identify)", message, OK_OR_NOT_INITIALISED, lambda _: None)

            return step

        def ask_id() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
            def done(reply: Reply) -> None:
                assert isinstance(reply, GetDeviceIdAck)
                self.device_id = reply.device_id.strip() or None

            return ("Get_Device_Id", GetDeviceId(), frozenset({Result.SUCCESSFUL}), done)

        def ask_version() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
            def done(reply: Reply) -> None:
                assert isinstance(reply, GetExtendedVersionAck)
                self.firmware = reply.firmware
                self.sciencemode = reply.sciencemode

            return ("Get_Extended_Version", GetExtendedVersion(), frozenset({0}), done)

        def ask_battery() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
            return ("Get_Battery_Status", GetBatteryStatus(), frozenset({0}), self._on_battery)

        def result() -> object:
            version = self.sciencemode
            if version is None or version[0] != SCIENCEMODE_MAJOR:
                said = "no version" if version is None else ".".join(map(str, version))
                return IdentityError(
                    f"the device on {where} speaks ScienceMode {said}; tens-control speaks "
                    f"ScienceMode {SCIENCEMODE_MAJOR} (update the P24 firmware or this program)"
                )
            state = self.state
            state.identified = True
            self.info = self._make_info()
            self._next_status = self.now + STATUS_POLL_S
            self._next_battery = self.now + BATTERY_POLL_S
            return self.info

        chain = _Chain(ticket, [ask_status, ask_id, ask_version, ask_battery])
        chain.result = result
        self._run_chain(chain, identify=True)

    def _make_info(self) -> DeviceInfo:
        firmware = ".".join(map(str, self.firmware)) if self.firmware else "not reported"
        version = ".".join(map(str, self.sciencemode)) if self.sciencemode else "unknown"
        return DeviceInfo(
            protocol=PROTOCOL,
            protocol_version=version,
            model=self.profile.model,
            serial_number=self.device_id or "not reported",
            firmware=firmware,
            channels=min(self.profile.channels, MAX_CHANNELS),
            limits=self.profile.device_limits(),
            reports_current=False,
            reports_impedance=False,
            watchdog_ms=DEVICE_WATCHDOG_MS,
        )

    # ---- configure, amplitude, start, stop
    def _busy(self, command: str) -> None:
        if self._chains:
            raise DriverRefusedError(
                ErrorCode.BUSY, command, "the P24 is still being set up; try again"
            )

    def _configure(self, ticket: int, command: Configure) -> None:
        """Check and store the pattern; the channel's current becomes 0 mA. While stimulating,
        one update with this channel at 0 mA in its new pattern."""
        self._busy("configure")
        channel = command.channel
        if self.info is not None and not 1 <= channel <= self.info.channels:
            raise DriverRefusedError(
                ErrorCode.PARAMETER, "configure", f"the P24 has channels 1-{self.info.channels}"
            )
        pattern = plan_channel(channel, command.settings)
        proposed = dict(self.patterns)
        proposed[channel] = pattern
        check_duty(proposed.values())
        if pattern.delivered_hz < pattern.requested_hz - 1e-9:
            log.info(
                "channel %d: %.4g Hz requested, the P24 delivers %.4g Hz (0.5 ms grid)",
                channel,
                pattern.requested_hz,
                pattern.delivered_hz,
            )
        state = self.state
        if not state.running:
            self.patterns = proposed
            state.sent[channel] = state.acked[channel] = 0.0
            self._complete(ticket)
            return
        currents = dict(state.sent)
        currents[channel] = 0.0
        update = build_update(proposed, currents)
        self.patterns = proposed
        self._send_update("configure", update, currents, ticket)

    def _amplitude(self, ticket: int, channel: int, milliamps: float) -> None:
        self._busy("set amplitude")
        state = self.state
        if not state.running:
            raise DriverRefusedError(ErrorCode.STATE, "set amplitude", "the P24 is not stimulating")
        if channel not in self.patterns:
            raise DriverRefusedError(
                ErrorCode.STATE, "set amplitude", f"channel {channel} is not configured"
            )
        currents = dict(state.sent)
        currents[channel] = milliamps
        update = build_update(self.patterns, currents)  # refuses off-grid values: nothing sent
        self._send_update("set amplitude", update, currents, ticket)

    def _start(self, ticket: int) -> None:
        """Enter the mid level (if not in it) and enable every configured channel at 0 mA."""
        self._busy("start")
        if not self.patterns:
            raise DriverRefusedError(ErrorCode.STATE, "start", "no channel is configured")
        zeros = dict.fromkeys(self.patterns, 0.0)
        update = build_update(self.patterns, zeros)
        state = self.state
        self._epoch += 1
        state.errors.clear()
        steps: list[_Step] = []

        def init_step() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
            def done(_: Reply) -> None:
                state.initialised = True

            # only the channel with an error stops (see the module docstring)
            init = MlInit(stop_all_channels_on_error=False)
            return ("start (Ml_Init)", init, frozenset({Result.SUCCESSFUL}), done)

        def update_step() -> tuple[str, Request, frozenset[int], Callable[[Reply], None]]:
            state.sent = dict(zeros)

            def done(_: Reply) -> None:
                state.acked = dict(zeros)
                state.running = True
                self._next_poll = self.now + POLL_S

            return ("start (Ml_Update)", update, frozenset({Result.SUCCESSFUL}), done)

        if not state.initialised:
            steps.append(init_step)
        steps.append(update_step)
        self._run_chain(_Chain(ticket, steps))

    def _stop(self, ticket: int | None) -> None:
        """Ml_Stop, urgent: every output 0, high voltage off, the mid level left."""
        self._cancel_chains(DriverRefusedError(ErrorCode.STATE, "program change", "stopped"))
        self._device_stopped()
        self._send_command(
            "stop", MlStop(), ticket, accept=OK_OR_NOT_INITIALISED, urgent=True, update=True
        )

    def _query_status(self, ticket: int) -> None:
        def on_ok(reply: Reply) -> None:
            assert isinstance(reply, GetStimStatusAck)
            status = P24Status(reply.status, reply.high_voltage, self.battery_pct, self.battery_mv)
            self._complete(ticket, None, status)

        def on_error(error: DriverError) -> None:
            self._complete(ticket, error)

        self._send_command("Get_Stim_Status", GetStimStatus(), None, on_ok=on_ok, on_error=on_error)

    def _device_stopped(self) -> None:
        """The device stopped (on request, on its own, or the link is gone): every output 0."""
        self._epoch += 1
        state = self.state
        state.initialised = False
        state.running = False
        state.acked = dict.fromkeys(state.acked, 0.0)
        state.sent = dict.fromkeys(state.sent, 0.0)
        self._next_poll = None
        if state.identified and self.lost is None:
            self._next_status = self.now + STATUS_POLL_S

    # ------------------------------------------------------------------ chains
    def _run_chain(self, chain: _Chain, *, identify: bool = False) -> None:
        self._chains.append(chain)
        self._chain_next(chain, identify)

    def _chain_next(self, chain: _Chain, identify: bool = False) -> None:
        if chain not in self._chains:
            return
        if chain.index >= len(chain.steps):
            self._chains.remove(chain)
            value = chain.result()
            if isinstance(value, DriverError):
                self._complete(chain.ticket, value)
            else:
                self._complete(chain.ticket, None, value)
            return
        name, message, accept, done = chain.steps[chain.index]()
        chain.index += 1

        def on_ok(reply: Reply) -> None:
            if chain not in self._chains:
                return  # cancelled (stop, error): its steps change nothing more
            done(reply)
            self._chain_next(chain, identify)

        def on_error(error: DriverError) -> None:
            if chain in self._chains:
                self._chains.remove(chain)
                if identify and not isinstance(error, CommsLostError):
                    error = IdentityError(
                        f"the device on {self.url or 'the port'} did not answer {name} like a "
                        f"P24 ({error}); check that it is a P24, switched on and not in use by "
                        "another program"
                    )
                self._complete(chain.ticket, error)

        self._send_command(name, message, None, accept=accept, on_ok=on_ok, on_error=on_error)

    def _cancel_chains(self, error: DriverError) -> None:
        chains, self._chains = self._chains, []
        for chain in chains:
            self._complete(chain.ticket, error)

    # ------------------------------------------------------------------ sending
    def _next_pkt(self, ack: int) -> int:
        for _ in range(PACKET_NUMBERS):
            self._pkt = (self._pkt + 1) % PACKET_NUMBERS
            if (ack, self._pkt) not in self._flight:
                return self._pkt
        raise DriverRefusedError(ErrorCode.BUSY, "send", "64 commands are awaiting an answer")

    def _send_command(
        self,
        name: str,
        message: Request,
        ticket: int | None,
        *,
        accept: frozenset[int] = frozenset({Result.SUCCESSFUL}),
        on_ok: Callable[[Reply], None] | None = None,
        on_error: Callable[[DriverError], None] | None = None,
        urgent: bool = False,
        poll: bool = False,
        update: bool = False,
    ) -> InFlight:
        ack = ACK_FOR[int(message.command)]
        pkt = self._next_pkt(ack)
        command = _Command(message, accept, on_ok, on_error, poll)
        flight = self._send(
            (ack, pkt),
            name,
            codec.encode(pkt, message),
            self.now,
            ticket=ticket,
            urgent=urgent,
            context=command,
        )
        if update:
            self._updates.append(flight)
        return flight

    def _send_update(
        self, name: str, update: MlUpdate, currents: dict[int, float], ticket: int | None
    ) -> None:
        state = self.state
        urgent = any(
            currents.get(c, 0.0) < max(state.sent.get(c, 0.0), state.acked.get(c, 0.0))
            for c in self.patterns
        )
        state.sent = dict(currents)
        epoch = self._epoch

        def on_ok(_: Reply) -> None:
            if epoch == self._epoch:
                state.acked = dict(currents)

        def on_error(_: DriverError) -> None:
            if epoch == self._epoch:
                state.sent = dict(state.acked)

        self._send_command(
            f"{name} (Ml_Update)",
            update,
            ticket,
            on_ok=on_ok,
            on_error=on_error,
            urgent=urgent,
            update=True,
        )

    def _poll(self, message: Request, on_ok: Callable[[Reply], None]) -> None:
        if len(self._flight) >= PACKET_NUMBERS // 2:
            return  # the oldest will time out first (S8)
        self.polls_sent += 1
        epoch = self._epoch

        def answered(reply: Reply) -> None:
            if epoch == self._epoch:
                on_ok(reply)

        self._send_command(
            type(message).__name__,
            message,
            None,
            accept=frozenset(range(256)),
            on_ok=answered,
            poll=True,
        )

    def _current(self, flight: InFlight) -> bool:
        """No newer update or stop has overtaken ``flight`` (for updates and stops)."""
        if flight not in self._updates:
            return True
        return self._updates[-1] is flight

    # ------------------------------------------------------------------ receiving
    def _receive(self, data: bytes, now: float) -> None:
        self.now = now
        # answers move this protocol's own timers (the keep-alive starts when stimulation has
        # started; a stop brings the status poll back): the engine's cached wake-up is no
        # longer a lower bound, so it is computed again
        self._wake = None
        for item in self._decoder.feed(data):
            if isinstance(item, FramingError):
                self.framing_errors += 1
                log.warning("bad packet from the P24: %s", item)
                continue
            try:
                message = codec.from_frame(item)
            except FramingError as error:
                self.framing_errors += 1
                log.warning("bad message from the P24: %s", error)
                continue
            self.last_rx = now
            self._dispatch(item, message)
            if self.lost is not None:
                return

    def _dispatch(self, frame: RawFrame, message: Message) -> None:
        if isinstance(message, GeneralError):
            self._on_general_error(message.result)
        elif isinstance(message, UnknownCommand):
            self._on_unknown_command(frame.pkt)
        elif isinstance(message, Reply):
            self._on_reply(frame.pkt, message)
        else:
            log.warning("unexpected ScienceMode4 command %d from the device", frame.command)

    def _forget(self, flight: InFlight) -> None:
        for key in [k for k, v in self._flight.items() if v is flight]:
            del self._flight[key]
        if flight in self._updates:
            self._updates.remove(flight)

    def _overtaken(self, answered: InFlight, answered_update: bool) -> None:
        """The device answers in order: every older poll, and (``answered_update``: an update
        or a stop was answered) every older update, is done -- its answer was lost; what the
        newer one set stands. Older commands that are still current wait for their own
        answer (or are sent again)."""
        for _, flight in self._in_flight():
            if flight.order >= answered.order:
                break
            command: _Command = flight.context
            if command.poll:
                self._forget(flight)
            elif answered_update and flight in self._updates:
                self._forget(flight)
                self._complete(flight.ticket)  # what the newer command set stands

    def _on_reply(self, pkt: int, reply: Reply) -> None:
        key = (int(reply.command), pkt)
        flight = self._flight.get(key)
        if flight is None:
            log.debug("answer %r for packet %d matches nothing", reply, pkt)
            return
        command: _Command = flight.context
        result = getattr(reply, "result", Result.SUCCESSFUL)
        update = flight in self._updates
        if result in command.accept:
            self._forget(flight)
            self._overtaken(flight, update)
            if command.on_ok is not None:
                command.on_ok(reply)
            self._complete(flight.ticket)
            return
        if result in (Result.TRANSFER_ERROR, Result.BUSY) and command.retries > 0:
            command.retries -= 1
            log.info("%s answered %s; sending it again", flight.name, result_text(result))
            if result == Result.BUSY:
                command.retry_now = True
                flight.resend_at = self.now + BUSY_RETRY_S
            else:
                self._resend(key, flight, self.now)
            return
        self._forget(flight)
        self._overtaken(flight, update)
        if (
            result == Result.NOT_INITIALIZED_ERROR
            and isinstance(command.message, MlUpdate)
            and self.state.running
        ):
            self._left_mid_level()  # the event first: the refusal then has its reason
        self._failed(flight, error_for_result(result, flight.name))

    def _on_unknown_command(self, pkt: int) -> None:
        for key, flight in self._in_flight():
            if key[1] == pkt:  # type: ignore[index]
                self._forget(flight)
                self._failed(
                    flight,
                    error_for_result(Result.INVALID_CMD_ERROR, flight.name),
                )
                return
        log.warning("the P24 reports an unknown command (packet %d)", pkt)

    def _on_general_error(self, result: int) -> None:
        if result == Result.TRANSFER_ERROR:
            # a packet of ours arrived damaged: send again what may be lost (its own number
            # could not be read); every command here is safe to repeat
            for key, flight in self._in_flight():
                command: _Command = flight.context
                if not command.poll and self._may_resend(key, flight) and command.retries > 0:
                    command.retries -= 1
                    self._resend(key, flight, self.now)
            return
        was = "stimulating" if self.state.running else "idle"
        self._device_stopped()
        self._cancel_chains(error_for_result(result, "program change"))
        self._report(
            DeviceEvent(
                self.now,
                DeviceEventKind.FAULT,
                None,
                f"the P24 reported a general error while {was} ({result_text(result)}); its "
                "output is off",
            )
        )

    # ------------------------------------------------------------------ poll answers
    def _on_stim_status(self, reply: Reply) -> None:
        if not isinstance(reply, GetStimStatusAck) or reply.result != Result.SUCCESSFUL:
            log.warning("Get_Stim_Status answered %r", reply)

    def _on_battery(self, reply: Reply) -> None:
        if not isinstance(reply, GetBatteryStatusAck) or reply.result != Result.SUCCESSFUL:
            log.warning("Get_Battery_Status answered %r", reply)
            return
        self.battery_pct = reply.level_pct
        self.battery_mv = reply.voltage_mv
        if reply.level_pct <= BATTERY_LOW_PCT and not self._battery_low:
            self._battery_low = True
            if self.state.identified:
                self._report(
                    DeviceEvent(
                        self.now,
                        DeviceEventKind.BATTERY_LOW,
                        None,
                        f"the P24's battery is at {reply.level_pct} % ({reply.voltage_mv} mV)",
                    )
                )
        elif reply.level_pct > BATTERY_LOW_PCT:
            self._battery_low = False

    def _on_current_data(self, reply: Reply) -> None:
        assert isinstance(reply, MlGetCurrentDataAck)
        state = self.state
        now = self.now
        if not state.running:
            return
        if reply.result == Result.NOT_INITIALIZED_ERROR:
            self._left_mid_level()
            return
        if reply.selection != codec.MlData.CHANNELS:
            log.warning("Ml_Get_Current_Data answered with selection %d", reply.selection)
            return
        lead_off: set[int] = set()
        for channel in sorted(self.patterns):
            code = reply.states[channel - 1]
            if code in (ChannelState.ELECTRODE_ERROR, ChannelState.LOW_CURRENT_ERROR):
                lead_off.add(channel)
            if code != ChannelState.OK and state.errors.get(channel) != code:
                state.errors[channel] = code
                self._report_channel_state(channel, code)
                if self.lost is not None or not state.running:
                    return
        if (
            reply.result in (Result.ELECTRODE_ERROR, Result.PULSE_LOW_CURRENT_ERROR)
            and not lead_off
        ):
            self._report(
                DeviceEvent(
                    now,
                    DeviceEventKind.LEAD_OFF,
                    None,
                    f"the P24 reports {result_text(reply.result)}",
                )
            )
            return
        if reply.result not in (
            Result.SUCCESSFUL,
            Result.ELECTRODE_ERROR,
            Result.PULSE_LOW_CURRENT_ERROR,
        ):
            self._device_stopped()
            self._report(
                DeviceEvent(
                    now,
                    DeviceEventKind.FAULT,
                    None,
                    f"the P24 answered the keep-alive with {result_text(reply.result)}",
                )
            )
            return
        for channel in sorted(self.patterns):
            self._report(
                Telemetry(
                    now,
                    channel,
                    state.acked.get(channel, 0.0),
                    None,
                    None,
                    True if channel in lead_off else None,
                    reply.active[channel - 1],
                )
            )

    def _left_mid_level(self) -> None:
        """The P24 says it is not in the mid level while the host has it stimulating."""
        self._device_reset(
            "the P24 has left the mid level by itself (it restarted or stopped on its "
            "keep-alive timeout): every output is off and nothing resumes by itself"
        )

    def _device_reset(self, detail: str) -> None:
        self._device_stopped()
        self._report(DeviceEvent(self.now, DeviceEventKind.DEVICE_RESET, None, detail))

    def _report_channel_state(self, channel: int, code: int) -> None:
        now = self.now
        if code == ChannelState.ELECTRODE_ERROR:
            self._report(
                DeviceEvent(
                    now,
                    DeviceEventKind.LEAD_OFF,
                    channel,
                    f"electrode error on channel {channel}: the electrode is off or has poor "
                    "contact; the P24 stopped stimulating",
                )
            )
        elif code == ChannelState.LOW_CURRENT_ERROR:
            self._report(
                DeviceEvent(
                    now,
                    DeviceEventKind.LEAD_OFF,
                    channel,
                    f"the P24 cannot reach the set current on channel {channel} (low current: "
                    "poor electrode contact or too high a load); it stopped stimulating",
                )
            )
        else:
            self._device_stopped()
            what = (
                "its period cannot be achieved"
                if code == ChannelState.TIMEOUT_ERROR
                else f"channel state {code}"
            )
            self._report(
                DeviceEvent(
                    now,
                    DeviceEventKind.FAULT,
                    channel,
                    f"the P24 stopped channel {channel}: {what}",
                )
            )


__all__ = [
    "BATTERY_LOW_PCT",
    "BATTERY_POLL_S",
    "POLL_S",
    "STATUS_POLL_S",
    "P24Status",
    "ScienceMode4Engine",
]
