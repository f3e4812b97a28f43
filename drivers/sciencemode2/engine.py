"""The ScienceMode2 protocol engine (Hasomed RehaStim 2, channel list mode), sans-I/O.

The life cycle it shares with every protocol (tickets, the 1 s acknowledgement timeout, S14
redundant zeroing, keep-alive) is :class:`drivers.engine.Engine`. What the device can and
cannot do shapes the rest:

* **Link.** After power-on, and after its 1200 ms watchdog expired, the device sends ``Init``
  every 500 ms until the host answers ``InitAck``. The engine answers every ``Init``. An
  ``Init`` after the link was up means the device restarted: output is off, every mode is
  reset, a ``DEVICE_RESET`` event is reported and nothing resumes by itself.
* **Keep-alive.** ``Watchdog`` whenever nothing was sent for :data:`KEEPALIVE_S`.
  ``GetStimulationMode`` every :data:`POLL_S` is the liveness check (its answer is due within
  1 s, like every command's) and, while stimulating, the source of telemetry: the device reports
  neither current nor impedance, so a sample carries the acknowledged current and ``None``,
  never an invented number, and ``output_on`` from the mode the device reports.
* **Amplitude.** A ``StartChannelListMode`` update carrying every active channel's current
  (whole mA, 0-130). The device has no ramp of its own: the host's governor ramps, one update per
  step. So S15 (the device refusing a jump) is not there to back the host up: here the host
  carries S14 alone (docs/devices.md says what that leaves uncovered).
* **Zeroing.** ``StopChannelListMode`` and every decrease are urgent (two frames at once, again
  every 20 ms until answered). A stop is idempotent; an update is an absolute vector of
  currents, so repeating the newest one is too. An older update is never sent again.
* **Errors.** Every acknowledgement result maps to a typed
  :class:`~drivers.base.DeviceRejectedError`. ``StimulationError`` stops the device: emergency
  switch -> ``EMERGENCY_SWITCH``, electrode error -> ``LEAD_OFF`` with ``channel=None`` (the device
  does not say which channel), module error -> ``FAULT``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from drivers.base import (
    ChannelSettings,
    CommsLostError,
    DeviceEvent,
    DeviceEventKind,
    DeviceInfo,
    DeviceRejectedError,
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
    LoadSignedCap,
    Ping,
    QueryStatus,
    SetAmplitude,
    StartOutput,
    StopOutput,
)
from drivers.limits import DeviceProfile
from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import (
    Command,
    GetStimulationMode,
    GetStimulationModeAck,
    Init,
    InitAck,
    InitChannelListMode,
    Message,
    Result,
    StartChannelListMode,
    StimulationError,
    StimulationErrorCode,
    StimulationMode,
    StopChannelListMode,
    UnknownCommand,
    Watchdog,
)
from drivers.sciencemode2.frame import FrameDecoder, RawFrame
from drivers.sciencemode2.plan import (
    MAX_CHANNELS,
    MAX_CURRENT_MA,
    PROTOCOL,
    ChannelListPlan,
    DriverRefusedError,
    error_for_result,
    plan_channel_list,
)

log = logging.getLogger(__name__)

DEVICE_WATCHDOG_MS = 1200
"""The RehaStim 2 stops and resets when it hears no valid packet for this long."""
KEEPALIVE_S = 0.3
"""Send ``Watchdog`` whenever nothing was sent for this long (device watchdog 1.2 s)."""
POLL_S = 0.5
"""Ask ``GetStimulationMode`` this often while linked (liveness, mode check, telemetry)."""
INIT_WAIT_S = 2.5
"""How long identifying waits for the device's ``Init``: a device still linked to a previous
host needs up to 1.2 s for its watchdog, then sends ``Init`` every 0.5 s."""
INIT_REPEAT_WINDOW_S = 0.6
"""An ``Init`` this soon after our ``InitAck``, with nothing sent since, is a repeat sent before
our answer arrived -- not a restart."""
RETRIES = 2
"""Retransmissions after a transfer error (or busy) answer."""
BUSY_RETRY_S = 0.02
RESEND_S = 0.3
"""An idempotent command (status poll, the newest amplitude update) still unanswered after this
long is sent again (a damaged frame cannot always be answered), at most :data:`RETRIES` times,
all within the 1 s acknowledgement timeout."""

Key = tuple[int, int]
"""(acknowledgement command, packet number): how an answer is matched to its command."""


@dataclass(eq=False)
class _Command:
    """What the engine needs to know about one command on the wire."""

    message: Message
    ack: Command
    accept: frozenset[int]
    on_ok: Callable[[Message], None] | None
    on_error: Callable[[DriverError], None] | None
    retries: int = RETRIES
    retry_now: bool = False
    """The device answered busy or a transfer error: send it again when its retry is due."""

    @property
    def idempotent(self) -> bool:
        """Safe to send twice: the device ends in the same state either way."""
        return isinstance(
            self.message, GetStimulationMode | StopChannelListMode | StartChannelListMode
        )


_Step = Callable[[], tuple[str, Message, frozenset[int], Callable[[Message], None]]]
"""Builds the next command of a chain when it is due: name, message, accepted results, on_ok."""


@dataclass
class _Chain:
    """Several commands, each sent when the previous one was acknowledged."""

    ticket: int
    epoch: int
    steps: list[_Step]
    index: int = 0


@dataclass
class _State:
    linked: bool = False
    linked_at: float = 0.0
    init_version: int | None = None
    mode: StimulationMode = StimulationMode.START
    device_init: InitChannelListMode | None = None
    """The InitChannelListMode the device acknowledged (None: not initialised)."""
    running: bool = False
    """Channel list mode started (outputs may be above 0)."""
    acked: dict[int, int] = field(default_factory=dict)
    """Per active channel: the current the device acknowledged."""
    sent: dict[int, int] = field(default_factory=dict)
    """Per active channel: the current in the newest update sent."""
    sent_since_link: bool = False


class ScienceMode2Engine(Engine):
    """One ScienceMode2 link (a new engine for every connection)."""

    resend_s = RESEND_S
    max_resends = RETRIES

    def __init__(self, profile: DeviceProfile, *, url: str = "", serial_number: str | None = None):
        super().__init__()
        self.profile = profile
        self.url = url
        self._serial_number = serial_number
        self._decoder = FrameDecoder()
        self._pkt = 0
        self._epoch = 0
        self._settings: dict[int, ChannelSettings] = {}
        self.plan: ChannelListPlan | None = None
        self.state = _State()
        self._updates: list[InFlight] = []
        """Unanswered StartChannelListMode commands, oldest first."""
        self._chains: list[_Chain] = []
        self._identify: int | None = None
        """The ticket of an identification waiting for the device's Init."""
        self._identify_until = math.inf
        self._next_poll: float | None = None
        self._poll: InFlight | None = None
        self.framing_errors = 0
        self.watchdogs_sent = 0

    # ------------------------------------------------------------------ engine hooks
    @property
    def keepalive_s(self) -> float | None:
        return KEEPALIVE_S if self.state.linked else None

    def _keepalive_frame(self) -> bytes:
        self.watchdogs_sent += 1
        return codec.encode(self._next_pkt(Command.WATCHDOG), Watchdog())

    def _stop_frame(self) -> bytes:
        return codec.encode(
            self._next_pkt(Command.STOP_CHANNEL_LIST_MODE_ACK), StopChannelListMode()
        )

    def _protocol_deadline(self) -> float | None:
        times = [
            t for t in (self._identify_until, self._next_poll) if t is not None and t < math.inf
        ]
        return min(times) if times else None

    def _due(self, now: float) -> None:
        self.now = now
        if self._identify is not None and not self.state.linked and now >= self._identify_until:
            ticket, self._identify = self._identify, None
            self._identify_until = math.inf
            self._complete(
                ticket,
                IdentityError(
                    f"no RehaStim 2 answered on {self.url or 'the port'}: it sent no ScienceMode2 "
                    f"Init within {INIT_WAIT_S:g} s; check that it is switched on, connected and "
                    "not in use by another program"
                ),
            )
        if self._next_poll is not None and now >= self._next_poll - 1e-9:
            self._next_poll = now + POLL_S
            if self._poll is None and self.state.linked:
                self._send_poll()

    def _may_resend(self, key: Hashable, flight: InFlight) -> bool:
        command: _Command = flight.context
        if command.retry_now:
            return True
        if not command.idempotent:
            return False
        # never an older update: the device would go back to its currents
        return not isinstance(command.message, StartChannelListMode) or (
            bool(self._updates) and self._updates[-1] is flight
        )

    def _resend(self, key: Hashable, flight: InFlight, now: float) -> None:
        """Send again under a new packet number (its answer is matched to that)."""
        command: _Command = flight.context
        fresh, command.retry_now = command.retry_now, False
        del self._flight[key]
        self._transmit(flight, fresh=fresh)

    def _lost_cleanup(self, why: str) -> None:
        self._device_stopped()
        self._cancel_chains(why, CommsLostError(f"program change {why}"))
        self._updates.clear()
        self._poll = None
        self._next_poll = None
        if self._identify is not None:
            ticket, self._identify = self._identify, None
            self._complete(ticket, self._unusable())

    # ------------------------------------------------------------------ commands
    def _check_linked(self, command: str) -> None:
        if not self.state.linked:
            raise DriverRefusedError(
                ErrorCode.STATE, command, "the RehaStim 2 has not completed its Init handshake"
            )

    def _submit(self, ticket: int, command: DeviceCommand, now: float) -> None:
        self.now = now
        if isinstance(command, Identify):
            if self.state.linked:
                self._ask_mode(ticket)
            else:
                self._identify = ticket
                self._identify_until = now + INIT_WAIT_S
        elif isinstance(command, Configure):
            self._configure(ticket, command)
        elif isinstance(command, SetAmplitude):
            self._amplitude(ticket, command.channel, command.milliamps)
        elif isinstance(command, StartOutput):
            self._start(ticket)
        elif isinstance(command, StopOutput):
            self._stop(ticket)
        elif isinstance(command, LoadSignedCap):
            raise DriverRefusedError(
                ErrorCode.UNKNOWN_COMMAND, "signed cap", "the RehaStim 2 cannot check signed caps"
            )
        elif isinstance(command, QueryStatus | Ping):
            self._check_linked("status")
            found: list[int] = []
            self._send_command(
                "GetStimulationMode",
                GetStimulationMode(),
                ticket,
                on_ok=lambda m: (
                    found.append(m.mode) if isinstance(m, GetStimulationModeAck) else None
                ),
            )
        else:  # pragma: no cover - DeviceCommand is closed
            raise TypeError(command)

    def _ask_mode(self, ticket: int) -> None:
        """Identification, once linked: read the mode (stop first if it is not idle)."""

        def on_ok(message: Message) -> None:
            assert isinstance(message, GetStimulationModeAck)
            try:
                mode = StimulationMode(message.mode)
            except ValueError:
                self._complete(
                    ticket,
                    IdentityError(
                        f"the device on {self.url or 'the port'} reported an unknown stimulation "
                        f"mode {message.mode}; it does not behave like a RehaStim 2"
                    ),
                )
                return
            if mode is not StimulationMode.START:
                log.warning("RehaStim 2 reports mode %s after Init; stopping it", mode.name)
                self._stop(None)
            self._complete(ticket, None, self._info())

        def on_error(error: DriverError) -> None:
            self._complete(
                ticket,
                IdentityError(
                    f"the device on {self.url or 'the port'} sent Init but did not answer "
                    f"GetStimulationMode ({error}); check the cable and that it is a RehaStim 2"
                ),
            )

        self._send_command(
            "GetStimulationMode", GetStimulationMode(), None, on_ok=on_ok, on_error=on_error
        )

    def _info(self) -> DeviceInfo:
        version = self.state.init_version
        return DeviceInfo(
            protocol=PROTOCOL,
            protocol_version=str(version) if version is not None else "unknown",
            model=self.profile.model,
            serial_number=self._serial_number or "not reported",
            firmware="not reported",
            channels=min(self.profile.channels, MAX_CHANNELS),
            limits=self.profile.device_limits(),
            reports_current=False,
            reports_impedance=False,
            watchdog_ms=DEVICE_WATCHDOG_MS,
        )

    def _configure(self, ticket: int, command: Configure) -> None:
        """Check and store the settings; the channel's current becomes 0 mA.

        Not stimulating: nothing is sent (the device is set up by the start). Stimulating: a
        pulse-width-only change is one update with the channel at 0 mA; a change of timing
        re-initialises channel list mode (stop, init, start at 0 mA), which stops *every*
        channel -- so it is refused (STATE, nothing sent) while another channel is above 0 mA."""
        self._check_linked("configure")
        channel, settings = command.channel, command.settings
        if self._chains:
            raise DriverRefusedError(
                ErrorCode.BUSY, "configure", "another program change is still in progress"
            )
        proposed = dict(self._settings)
        proposed[channel] = settings
        plan = plan_channel_list(proposed)
        for ch in plan.channels:
            if ch.channel == channel and ch.delivered_hz < ch.requested_hz - 1e-9:
                log.info(
                    "channel %d: %.4g Hz requested, the RehaStim 2 delivers %.4g Hz (0.5 ms grid)",
                    channel,
                    ch.requested_hz,
                    ch.delivered_hz,
                )
        state = self.state
        if not state.running:
            self._settings = proposed
            self.plan = plan
            self._complete(ticket)
            return
        if state.device_init == plan.init:
            # Same timing: one update with this channel at 0 mA and its new pulse shape.
            self._settings = proposed
            self.plan = plan
            currents = dict(state.sent)
            currents[channel] = 0
            self._send_update("configure", plan, currents, ticket)
            return
        live = sorted(
            other
            for other in set(state.sent) | set(state.acked)
            if other != channel and max(state.sent.get(other, 0), state.acked.get(other, 0))
        )
        if live:
            names = ", ".join(str(c) for c in live)
            raise DriverRefusedError(
                ErrorCode.STATE,
                "configure",
                f"this program change on channel {channel} makes the RehaStim 2 restart "
                f"every channel; lower channel(s) {names} to 0 mA first",
            )
        self._settings = proposed
        self.plan = plan
        self._start_chain("configure", plan, ticket, restart=True)

    def _amplitude(self, ticket: int, channel: int, milliamps: float) -> None:
        """One update: this channel at ``milliamps``, every other active channel unchanged.
        Whole mA, 0-130, only while stimulating."""
        self._check_linked("set amplitude")
        state = self.state
        plan = self.plan
        if self._chains:
            raise DriverRefusedError(
                ErrorCode.BUSY,
                "set amplitude",
                "the RehaStim 2 is being re-initialised; every channel restarts from 0 mA",
            )
        if not state.running or plan is None:
            raise DriverRefusedError(
                ErrorCode.STATE, "set amplitude", "the RehaStim 2 is not stimulating"
            )
        if channel not in plan.active:
            raise DriverRefusedError(
                ErrorCode.STATE, "set amplitude", f"channel {channel} is not configured"
            )
        if not math.isfinite(milliamps) or milliamps < 0:
            raise DriverRefusedError(
                ErrorCode.PARAMETER, "set amplitude", f"{milliamps!r} mA is not an amplitude"
            )
        if milliamps > MAX_CURRENT_MA:
            raise DriverRefusedError(
                ErrorCode.LIMIT,
                "set amplitude",
                f"{milliamps:g} mA is above the RehaStim 2's {MAX_CURRENT_MA} mA",
            )
        if abs(milliamps - round(milliamps)) > 1e-9:
            raise DriverRefusedError(
                ErrorCode.LIMIT,
                "set amplitude",
                f"{milliamps:g} mA is not a whole mA (the RehaStim 2's step is 1 mA)",
            )
        currents = dict(state.sent)
        currents[channel] = round(milliamps)
        self._send_update("set amplitude", plan, currents, ticket)

    def _start(self, ticket: int) -> None:
        """Initialise channel list mode (if needed) and start it with every current at 0 mA."""
        self._check_linked("start")
        if self.plan is None:
            raise DriverRefusedError(ErrorCode.STATE, "start", "no channel is configured")
        if self._chains:
            raise DriverRefusedError(
                ErrorCode.BUSY, "start", "a program change is still in progress"
            )
        state = self.state
        if state.mode is not StimulationMode.START and state.device_init == self.plan.init:
            self._send_update("start", self.plan, {}, ticket, starting=True)
            return
        self._start_chain(
            "start", self.plan, ticket, restart=state.mode is not StimulationMode.START
        )

    def _stop(self, ticket: int | None) -> None:
        """``StopChannelListMode``, urgent; every output 0."""
        self._cancel_chains("stopped")
        self._device_stopped()
        if not self.state.linked:
            # Before the Init handshake nothing was started; send it anyway, expect no answer.
            self._write(self._stop_frame(), self.now)
            self._complete(ticket)
            return
        # Stop is answered 0 in every mode (or -1 for a damaged frame); a wrong-mode answer
        # from some firmware still means it is not stimulating.
        self._send_command(
            "stop",
            StopChannelListMode(),
            ticket,
            accept=frozenset({Result.OK, Result.WRONG_MODE}),
            urgent=True,
        )

    # ------------------------------------------------------------------ sending
    def _next_pkt(self, ack: Command) -> int:
        for _ in range(256):
            self._pkt = (self._pkt + 1) % 256
            if (int(ack), self._pkt) not in self._flight:
                return self._pkt
        raise DriverRefusedError(
            ErrorCode.BUSY, "send", "256 commands are awaiting acknowledgement"
        )

    def _send_command(
        self,
        name: str,
        message: Message,
        ticket: int | None,
        *,
        accept: frozenset[int] = frozenset({Result.OK}),
        on_ok: Callable[[Message], None] | None = None,
        on_error: Callable[[DriverError], None] | None = None,
        urgent: bool = False,
    ) -> InFlight:
        ack = codec.ACK_FOR[Command(message.command)]
        command = _Command(message, ack, accept, on_ok, on_error)
        flight = InFlight(name, b"", self.now, self.now + self.ack_timeout_s, ticket, urgent)
        flight.context = command
        self._transmit(flight)
        return flight

    def _transmit(self, flight: InFlight, *, fresh: bool = True) -> None:
        """(Re)send ``flight`` under a new packet number. ``fresh``: a new 1 s window for its
        answer (a first send, or the device answered); otherwise a resend within the window."""
        command: _Command = flight.context
        now = self.now
        pkt = self._next_pkt(command.ack)
        key: Key = (int(command.ack), pkt)
        if fresh:
            flight.sent_at = now
            flight.deadline = now + self.ack_timeout_s
            flight.resends = 0
            flight.resend_at = now + (self.urgent_resend_s if flight.urgent else self.resend_s)
        if not flight.order:
            flight.order = next(self._order)
        if isinstance(command.message, StartChannelListMode) and flight not in self._updates:
            self._updates.append(flight)
        if isinstance(command.message, InitChannelListMode | StartChannelListMode):
            self.state.sent_since_link = True
        flight.wire = codec.encode(pkt, command.message)
        self._flight[key] = flight
        for _ in range(self.urgent_copies if flight.urgent and fresh else 1):
            self._write(flight.wire, now)

    def _forget(self, flight: InFlight) -> None:
        for key in [k for k, v in self._flight.items() if v is flight]:
            del self._flight[key]
        if flight in self._updates:
            self._updates.remove(flight)

    def _forget_all(self) -> list[InFlight]:
        waiting = [flight for _, flight in self._in_flight()]
        self._flight.clear()
        self._updates.clear()
        return waiting

    def _send_update(
        self,
        name: str,
        plan: ChannelListPlan,
        currents: dict[int, int],
        ticket: int | None,
        starting: bool = False,
    ) -> None:
        state = self.state
        message = plan.start_message(currents)
        vector = {c: currents.get(c, 0) for c in plan.active}
        urgent = any(vector[c] < max(state.sent.get(c, 0), state.acked.get(c, 0)) for c in vector)
        state.sent = dict(vector)
        epoch = self._epoch

        def on_ok(_: Message) -> None:
            if epoch != self._epoch:
                return  # a stop, restart or error came after it: that state stands
            state.acked = dict(vector)
            if starting:
                state.running = True
                state.mode = StimulationMode.STARTED

        def on_error(_: DriverError) -> None:
            if epoch == self._epoch:
                state.sent = dict(state.acked)

        self._send_command(
            f"{name} (StartChannelListMode)",
            message,
            ticket,
            on_ok=on_ok,
            on_error=on_error,
            urgent=urgent,
        )

    def _start_chain(self, name: str, plan: ChannelListPlan, ticket: int, *, restart: bool) -> None:
        """[Stop ->] InitChannelListMode -> StartChannelListMode(all 0 mA), one after another."""
        state = self.state
        steps: list[_Step] = []
        ok_only = frozenset({Result.OK})

        def stop_step() -> tuple[str, Message, frozenset[int], Callable[[Message], None]]:
            def done(_: Message) -> None:
                state.running = False
                state.mode = StimulationMode.START
                state.device_init = None

            state.running = False
            state.acked = dict.fromkeys(state.acked, 0)
            state.sent = dict.fromkeys(state.sent, 0)
            return (
                f"{name} (StopChannelListMode)",
                StopChannelListMode(),
                frozenset({Result.OK, Result.WRONG_MODE}),
                done,
            )

        def init_step() -> tuple[str, Message, frozenset[int], Callable[[Message], None]]:
            def done(_: Message) -> None:
                state.mode = StimulationMode.INITIALISED
                state.device_init = plan.init

            return (f"{name} (InitChannelListMode)", plan.init, ok_only, done)

        def start_step() -> tuple[str, Message, frozenset[int], Callable[[Message], None]]:
            zeros = dict.fromkeys(plan.active, 0)
            state.sent = dict(zeros)

            def done(_: Message) -> None:
                state.acked = dict(zeros)
                state.running = True
                state.mode = StimulationMode.STARTED

            return (f"{name} (StartChannelListMode)", plan.start_message(zeros), ok_only, done)

        if restart:
            steps.append(stop_step)
        steps += [init_step, start_step]
        chain = _Chain(ticket, self._epoch, steps)
        self._chains.append(chain)
        self._chain_next(chain)

    def _chain_next(self, chain: _Chain) -> None:
        if chain.epoch != self._epoch:
            return
        if chain.index >= len(chain.steps):
            self._chains.remove(chain)
            self._complete(chain.ticket)
            return
        step_name, message, accept, done = chain.steps[chain.index]()
        chain.index += 1

        def on_ok(reply: Message) -> None:
            if chain.epoch != self._epoch:
                return  # cancelled (stop, restart, error): its steps change nothing
            done(reply)
            self._chain_next(chain)

        def on_error(error: DriverError) -> None:
            if chain in self._chains:
                self._chains.remove(chain)
            self._complete(chain.ticket, error)

        self._send_command(step_name, message, None, accept=accept, on_ok=on_ok, on_error=on_error)

    def _cancel_chains(self, why: str, error: DriverError | None = None) -> None:
        self._epoch += 1
        for chain in self._chains:
            self._complete(
                chain.ticket,
                error or DriverRefusedError(ErrorCode.STATE, "program change", f"cancelled: {why}"),
            )
        self._chains.clear()

    def _send_poll(self) -> None:
        quiet = not self._flight and not self._chains
        expected = self.state.mode

        def on_ok(message: Message) -> None:
            self._poll = None
            assert isinstance(message, GetStimulationModeAck)
            still_quiet = quiet and not self._flight and not self._chains
            self._on_mode_report(message.mode, still_quiet, expected)

        def on_error(error: DriverError) -> None:
            self._poll = None
            log.warning("status poll refused: %s", error)

        self._poll = self._send_command(
            "status poll", GetStimulationMode(), None, on_ok=on_ok, on_error=on_error
        )

    def _on_mode_report(self, mode: int, quiet: bool, expected: StimulationMode) -> None:
        state = self.state
        now = self.now
        if mode == StimulationMode.STARTED and state.running:
            plan = self.plan
            for channel in plan.active if plan else ():
                self._report(
                    Telemetry(
                        now, channel, float(state.acked.get(channel, 0)), None, None, None, True
                    )
                )
            return
        if (
            quiet
            and state.running
            and expected is StimulationMode.STARTED
            and state.mode is expected
            and mode != StimulationMode.STARTED
        ):
            log.warning("RehaStim 2 reports mode %d while the host expected it stimulating", mode)
            self._device_stopped()
            self._report(
                DeviceEvent(
                    now,
                    DeviceEventKind.OUTPUT_STOPPED,
                    None,
                    "the RehaStim 2 reports that it is not stimulating; every output is 0",
                )
            )

    # ------------------------------------------------------------------ receiving
    def _receive(self, data: bytes, now: float) -> None:
        self.now = now
        for item in self._decoder.feed(data):
            if isinstance(item, FramingError):
                self.framing_errors += 1
                log.warning("bad frame from the RehaStim 2: %s", item)
                continue
            try:
                message = codec.from_frame(item)
            except FramingError as error:
                self.framing_errors += 1
                log.warning("bad message from the RehaStim 2: %s", error)
                continue
            self.last_rx = now
            self._dispatch(item, message)
            if self.lost is not None:
                return

    def _dispatch(self, frame: RawFrame, message: Message) -> None:
        if isinstance(message, Init):
            self._on_init(frame.pkt, message)
        elif isinstance(message, StimulationError):
            self._on_stimulation_error(message.error)
        elif isinstance(message, UnknownCommand):
            self._on_unknown_command(frame.pkt, message.unknown)
        elif frame.command in _ACK_COMMANDS:
            self._on_ack(frame.pkt, message)
        else:
            log.warning(
                "unexpected ScienceMode2 command %d from the device; ignored", frame.command
            )

    def _on_init(self, pkt: int, init: Init) -> None:
        self._write(codec.encode(pkt, InitAck(Result.OK)), self.now)
        state = self.state
        now = self.now
        if not state.linked:
            state.linked = True
            state.linked_at = now
            state.init_version = init.version
            state.sent_since_link = False
            log.info("RehaStim 2 Init (protocol version %d) answered", init.version)
            self._next_poll = now + POLL_S
            if self._identify is not None:
                ticket, self._identify = self._identify, None
                self._identify_until = math.inf
                self._ask_mode(ticket)
            return
        repeat = now - state.linked_at <= INIT_REPEAT_WINDOW_S and not state.sent_since_link
        state.linked_at = now
        state.sent_since_link = False
        state.init_version = init.version
        if repeat:
            log.info("repeated Init answered (it crossed our InitAck)")
            return
        was = "stimulating" if state.running else "idle"
        self._device_stopped()
        # The event first: whoever waits on a command learns why before its error arrives.
        self._report(
            DeviceEvent(
                now,
                DeviceEventKind.DEVICE_RESET,
                None,
                f"the RehaStim 2 restarted (it sent Init while {was}): every output is off and "
                "every channel must be configured and started again; nothing resumes by itself",
            )
        )
        self._cancel_chains("the device restarted")
        self._poll = None
        for flight in self._forget_all():
            self._complete(
                flight.ticket,
                DriverRefusedError(ErrorCode.STATE, flight.name, "the RehaStim 2 restarted"),
            )

    def _device_stopped(self) -> None:
        """The device stopped and reset its modes by itself (error, restart), or was stopped."""
        self._epoch += 1
        state = self.state
        state.running = False
        state.mode = StimulationMode.START
        state.device_init = None
        state.acked = dict.fromkeys(state.acked, 0)
        state.sent = dict.fromkeys(state.sent, 0)

    def _on_stimulation_error(self, error: int) -> None:
        self._device_stopped()
        now = self.now
        if error == StimulationErrorCode.EMERGENCY_SWITCH:
            event = DeviceEvent(
                now,
                DeviceEventKind.EMERGENCY_SWITCH,
                None,
                "the RehaStim 2's emergency switch was pressed (or is unplugged); output stopped",
            )
        elif error == StimulationErrorCode.ELECTRODE_ERROR:
            event = DeviceEvent(
                now,
                DeviceEventKind.LEAD_OFF,
                None,
                "electrode error: an electrode is off or has poor contact (the RehaStim 2 does "
                "not say which channel); every channel stopped",
            )
        else:
            detail = (
                "stimulation module error"
                if error == StimulationErrorCode.MODULE_ERROR
                else f"stimulation error {error}"
            )
            event = DeviceEvent(
                now, DeviceEventKind.FAULT, None, f"{detail}; the RehaStim 2 stopped output"
            )
        self._report(event)
        self._cancel_chains("the device stopped on a stimulation error")

    def _on_unknown_command(self, pkt: int, number: int) -> None:
        try:
            ack = codec.ACK_FOR[Command(number)]
        except (ValueError, KeyError):
            log.warning("device reports unknown command %d", number)
            return
        flight = self._flight.get((int(ack), pkt))
        if flight is None:
            log.warning("device reports unknown command %d (packet %d)", number, pkt)
            return
        self._forget(flight)
        error = DeviceRejectedError(
            ErrorCode.UNKNOWN_COMMAND, flight.name, "the device does not know this command"
        )
        self._fail(flight, error)

    def _failed(self, flight: InFlight, error: DriverError) -> None:
        self._fail(flight, error)

    def _fail(self, flight: InFlight, error: DriverError) -> None:
        command: _Command = flight.context
        if command.on_error is not None:
            command.on_error(error)
        self._complete(flight.ticket, error)

    def _on_ack(self, pkt: int, message: Message) -> None:
        key = (int(message.command), pkt)
        flight = self._flight.get(key)
        result = getattr(message, "result", Result.OK)
        if flight is None:
            if result == Result.TRANSFER_ERROR:
                self._on_unmatched_transfer_error(pkt, int(message.command))
            else:
                log.debug("acknowledgement %r for packet %d matches nothing", message, pkt)
            return
        self._forget(flight)
        command: _Command = flight.context
        if result in command.accept:
            if isinstance(command.message, StartChannelListMode | StopChannelListMode):
                self._supersede(flight, message)
            if command.on_ok is not None:
                command.on_ok(message)
            self._complete(flight.ticket)
            return
        if result in (Result.TRANSFER_ERROR, Result.BUSY) and command.retries > 0:
            command.retries -= 1
            log.info("%s answered %d; sending it again", flight.name, result)
            if result == Result.BUSY:
                self._flight[key] = flight  # still ours while it waits to be sent again
                command.retry_now = True
                flight.resend_at = self.now + BUSY_RETRY_S
                self._wake = None  # an earlier deadline than any booked
            else:
                self._transmit(flight)
            return
        self._fail(flight, error_for_result(result, flight.name))

    def _supersede(self, newer: InFlight, ack: Message) -> None:
        """The device answered ``newer`` (an update or a stop), so it has also dealt with
        every older unanswered update (it answers in order): their answers were lost, and the
        device's state now is what ``newer`` set. Complete them, oldest first."""
        for flight in [u for u in self._updates if u is not newer and u.order < newer.order]:
            self._forget(flight)
            command: _Command = flight.context
            if command.on_ok is not None:
                command.on_ok(ack)
            self._complete(flight.ticket)

    def _on_unmatched_transfer_error(self, pkt: int, ack: int) -> None:
        """The device could not read a frame and answered what it made of the packet number or
        command: send again what it most likely was (same packet, else same command, else the
        oldest unanswered command)."""
        waiting = self._in_flight()
        candidates = (
            [item for item in waiting if item[0] == (ack, pkt) or item[0][1] == pkt]  # type: ignore[index]
            or [item for item in waiting if item[0][0] == ack]  # type: ignore[index]
            or waiting
        )
        if not candidates:
            return
        key, flight = candidates[0]
        command: _Command = flight.context
        if command.retries <= 0:
            return  # its own timeout decides
        command.retries -= 1
        del self._flight[key]
        log.info("transfer error for an unreadable frame; sending %s again", flight.name)
        self._transmit(flight)


_ACK_COMMANDS = frozenset(int(c) for c in codec.ACK_FOR.values())
