"""Host driver for the Hasomed RehaStim 2 through ScienceMode2 (channel list mode).

What the device can and cannot do shapes this driver:

* **Link.** 460800 baud, 8E1. After power-on, and after its 1200 ms watchdog expired, the device
  sends ``Init`` every 500 ms until the host answers ``InitAck``. The driver answers every
  ``Init``. An ``Init`` after the link was up means the device restarted: output is off, every
  mode is reset, a :data:`~drivers.base.DeviceEventKind.DEVICE_RESET` event is reported and
  nothing resumes by itself.
* **Keep-alive.** ``Watchdog`` whenever nothing was sent for :data:`KEEPALIVE_S` (300 ms), on
  the clock, independent of the caller. ``GetStimulationMode`` every :data:`POLL_S` is the
  liveness check: no acknowledgement within 1 s -> ``COMMS_LOST``; the host then stops and never
  resumes by itself.
* **Programs.** Channel list mode has one main interval for every channel (8-1025 ms in 0.5 ms
  steps), an optional low-frequency factor (some channels fire every 2nd-8th interval), and
  single pulses, doublets or triplets per channel with one shared inter-pulse interval.
  :func:`plan_channel_list` maps :class:`~drivers.base.ChannelSettings` onto that and refuses,
  with a reason, what the device cannot do. Intervals are rounded *up* to the 0.5 ms grid, so
  the delivered pulse rate is never above the requested one.
* **Amplitude.** Sent as a ``StartChannelListMode`` update carrying every active channel's
  current (whole mA, 0-130). The device has no ramp; the governor ramps, one update per step.
* **No read-back.** The device reports neither current nor impedance. :class:`DeviceInfo` says
  ``reports_current=False`` and ``reports_impedance=False``; :class:`~drivers.base.Telemetry`
  samples (one per active channel per status poll while stimulating) carry the set current and
  ``None`` for measured current and impedance -- never invented numbers.
* **Errors.** Every acknowledgement result maps to a typed
  :class:`~drivers.base.DeviceRejectedError` (transfer -> CRC, parameter -> PARAMETER, wrong
  mode -> STATE, busy -> BUSY). ``StimulationError`` stops the device: emergency switch ->
  ``EMERGENCY_SWITCH``, electrode error -> ``LEAD_OFF`` with ``channel=None`` (the device does
  not say which channel; every channel is affected), module error -> ``FAULT``.

Threading: real time has a reader thread (the link), the clock's scheduler thread and callers.
One lock guards the state; reports are emitted and commands resolved *outside* the lock, so a
report handler may call back into the driver.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import serial

from drivers import exit_guard
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
    Pattern,
    Pending,
    PortError,
    Report,
    Telemetry,
    TensDriver,
    Waveform,
)
from drivers.clock import Clock, TimerHandle
from drivers.limits import DeviceProfile, get_profile
from drivers.link import SerialLink
from drivers.sciencemode2 import codec
from drivers.sciencemode2.codec import (
    ChannelPulse,
    Command,
    GetStimulationMode,
    GetStimulationModeAck,
    Init,
    InitAck,
    InitChannelListMode,
    Message,
    PulseMode,
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
from drivers.transport import PortInfo, candidate_ports, list_ports, open_port

log = logging.getLogger(__name__)

PROTOCOL = "sciencemode2"
BAUDRATE = 460800
FTDI_VID = 0x0403
PROFILE_ID = "rehastim2"

KEEPALIVE_S = 0.3
"""Send ``Watchdog`` whenever nothing was sent for this long (device watchdog 1.2 s)."""
POLL_S = 0.5
"""Ask ``GetStimulationMode`` this often while linked (liveness, mode check, telemetry)."""
INIT_WAIT_S = 2.5
"""How long ``identify()`` waits for the device's ``Init``: a device still linked to a previous
host needs up to 1.2 s for its watchdog, then sends ``Init`` every 0.5 s."""
INIT_REPEAT_WINDOW_S = 0.6
"""An ``Init`` this soon after our ``InitAck``, with nothing sent since, is a repeat sent before
our answer arrived -- not a restart."""
RETRIES = 2
"""Retransmissions after a transfer error (or busy) answer."""
BUSY_RETRY_S = 0.02
RESEND_S = 0.3
"""An idempotent command (status poll, stop, the newest amplitude update) still unanswered
after this long is sent again (a damaged frame cannot always be answered), at most
:data:`RETRIES` times, all within the 1 s acknowledgement timeout."""

MAX_CHANNELS = 8
MAX_CURRENT_MA = 130
MIN_PULSE_WIDTH_US = 20
MAX_PULSE_WIDTH_US = 500
MIN_MAIN_INTERVAL_MS = 8.0
MAX_MAIN_INTERVAL_MS = 1025.0
MIN_INTER_PULSE_MS = 1.5
MAX_INTER_PULSE_MS = 129.0
MAX_LOW_FREQUENCY_FACTOR = 7
CHANNEL_SLOT_MS = 1.5
"""Time each active channel takes in the main interval (sequential execution)."""
RATE_TOLERANCE = 0.05
"""A channel's delivered rate may be at most this fraction below the requested one."""

_RESULT_CODES: dict[int, ErrorCode] = {
    Result.TRANSFER_ERROR: ErrorCode.CRC,
    Result.PARAMETER_ERROR: ErrorCode.PARAMETER,
    Result.WRONG_MODE: ErrorCode.STATE,
    Result.BUSY: ErrorCode.BUSY,
    Result.INCOMPATIBLE_VERSION: ErrorCode.VERSION,
}
_RESULT_TEXT: dict[int, str] = {
    Result.TRANSFER_ERROR: "transfer error: the device received a damaged frame",
    Result.PARAMETER_ERROR: "parameter error: a value is outside what the device accepts",
    Result.WRONG_MODE: "wrong mode: the device is not in a state that allows this command",
    Result.BUSY: "busy: the device cannot take the command now",
    Result.INCOMPATIBLE_VERSION: "incompatible protocol version",
}


def error_for_result(result: int, command: str) -> DeviceRejectedError:
    """The typed error for a non-zero acknowledgement result."""
    code = _RESULT_CODES.get(result, ErrorCode.PARAMETER)
    text = _RESULT_TEXT.get(result, f"result {result}")
    return DeviceRejectedError(code, command, f"RehaStim 2 answered {result}: {text}")


class UnsupportedSettingsError(DeviceRejectedError):
    """The RehaStim 2 cannot deliver these settings. Checked on the host; nothing was sent."""

    def __init__(self, command: str, detail: str) -> None:
        super().__init__(ErrorCode.PARAMETER, command, detail)


class DriverRefusedError(DeviceRejectedError):
    """A command the device would refuse (wrong state, value off its grid), refused on the host
    before anything was sent."""


# --------------------------------------------------------------------------- programs


def _up_to_grid(ms: float) -> float:
    """Round a time up to the device's 0.5 ms grid (never a faster rate than requested)."""
    return math.ceil(ms * 2.0 - 1e-6) / 2.0


@dataclass(frozen=True)
class ChannelPlan:
    channel: int
    mode: PulseMode
    pulse_width_us: int
    requested_hz: float
    """Requested pulse (or train) rate."""
    delivered_hz: float
    """The rate the device will deliver (never above ``requested_hz``)."""


@dataclass(frozen=True)
class ChannelListPlan:
    """How a set of channel settings maps onto channel list mode."""

    init: InitChannelListMode
    channels: tuple[ChannelPlan, ...]

    @property
    def active(self) -> tuple[int, ...]:
        return tuple(c.channel for c in self.channels)

    def start_message(self, currents: Mapping[int, int]) -> StartChannelListMode:
        """StartChannelListMode with ``currents`` (missing channels at 0 mA)."""
        return StartChannelListMode(
            tuple(
                ChannelPulse(int(c.mode), c.pulse_width_us, currents.get(c.channel, 0))
                for c in self.channels
            )
        )


def _refuse(channel: int | None, detail: str) -> UnsupportedSettingsError:
    where = f"channel {channel}: " if channel is not None else ""
    return UnsupportedSettingsError("configure", f"{where}{detail}")


@dataclass
class _Wanted:
    channel: int
    period_ms: float
    mode: PulseMode
    pulse_width_us: int
    requested_hz: float
    inter_pulse_ms: float | None = None


def _wanted(channel: int, settings: ChannelSettings) -> _Wanted:
    if not 1 <= channel <= MAX_CHANNELS:
        raise _refuse(channel, f"the RehaStim 2 has channels 1-{MAX_CHANNELS}")
    if settings.waveform is not Waveform.SYMMETRIC_BIPHASIC:
        raise _refuse(channel, "the RehaStim 2 delivers only symmetric biphasic pulses")
    width = settings.pulse_width_us
    if not MIN_PULSE_WIDTH_US <= width <= MAX_PULSE_WIDTH_US:
        raise _refuse(
            channel,
            f"pulse width {width} µs is outside the RehaStim 2's "
            f"{MIN_PULSE_WIDTH_US}-{MAX_PULSE_WIDTH_US} µs",
        )
    if settings.pattern is Pattern.CONTINUOUS:
        hz = settings.frequency_hz
        return _Wanted(channel, 1000.0 / hz, PulseMode.SINGLE, width, hz)
    if settings.pattern is Pattern.BURST:
        assert settings.secondary_hz is not None
        assert settings.pulses_per_burst is not None
        trains = settings.secondary_hz
        pulses = settings.pulses_per_burst
        if pulses == 1:
            return _Wanted(channel, 1000.0 / trains, PulseMode.SINGLE, width, trains)
        if pulses > 3:
            raise _refuse(
                channel,
                f"bursts of {pulses} pulses are not possible: the RehaStim 2 fires at most 3 "
                "pulses per train (doublet or triplet); choose 2 or 3 pulses per burst or a "
                "continuous program",
            )
        mode = PulseMode.DOUBLET if pulses == 2 else PulseMode.TRIPLET
        gap = 1000.0 / settings.frequency_hz
        return _Wanted(channel, 1000.0 / trains, mode, width, trains, gap)
    raise _refuse(
        channel,
        f"the {settings.pattern.value} pattern is not possible: the RehaStim 2 cannot change "
        "its frequency during stimulation; choose a continuous or burst program",
    )


def plan_channel_list(settings: Mapping[int, ChannelSettings]) -> ChannelListPlan:
    """Map per-channel settings onto channel list mode, or raise
    :class:`UnsupportedSettingsError` naming the channel and the reason."""
    if not settings:
        raise _refuse(None, "no channel is configured")
    wanted = [_wanted(ch, s) for ch, s in sorted(settings.items())]
    for w in wanted:
        if w.period_ms < MIN_MAIN_INTERVAL_MS - 1e-9:
            raise _refuse(
                w.channel,
                f"{w.requested_hz:g} Hz is above the RehaStim 2's "
                f"{1000.0 / MIN_MAIN_INTERVAL_MS:g} Hz",
            )
    main = _up_to_grid(min(w.period_ms for w in wanted))
    if main > MAX_MAIN_INTERVAL_MS:
        raise _refuse(
            None,
            f"{1000.0 / main:.3g} Hz is below the RehaStim 2's "
            f"{1000.0 / MAX_MAIN_INTERVAL_MS:.3g} Hz",
        )
    # One low-frequency factor for every slower channel.
    factor = 1
    slow: list[int] = []
    delivered: dict[int, float] = {}
    for w in wanted:
        multiple = max(1, math.ceil(w.period_ms / main - 1e-9))
        if main * multiple > w.period_ms * (1.0 + RATE_TOLERANCE):
            fastest = min(wanted, key=lambda x: x.period_ms)
            raise _refuse(
                w.channel,
                f"{w.requested_hz:g} Hz cannot run beside {fastest.requested_hz:g} Hz on channel "
                f"{fastest.channel}: the RehaStim 2 runs every channel at one base rate or at "
                "that rate divided by 2-8",
            )
        if multiple > 1:
            if multiple - 1 > MAX_LOW_FREQUENCY_FACTOR:
                raise _refuse(
                    w.channel,
                    f"{w.requested_hz:g} Hz is more than 8 times slower than another channel; "
                    "the RehaStim 2 can divide the base rate by 2-8 only",
                )
            if factor not in (1, multiple):
                raise _refuse(
                    w.channel,
                    "the RehaStim 2 allows only one slower rate beside the base rate; use at "
                    "most two different frequencies",
                )
            factor = multiple
            slow.append(w.channel)
        delivered[w.channel] = 1000.0 / (main * multiple)
    # One inter-pulse interval for every doublet/triplet channel.
    gaps = [w for w in wanted if w.inter_pulse_ms is not None]
    gap = MIN_INTER_PULSE_MS
    if gaps:
        gap = _up_to_grid(max(w.inter_pulse_ms or 0.0 for w in gaps))
        for w in gaps:
            assert w.inter_pulse_ms is not None
            if gap > w.inter_pulse_ms * (1.0 + RATE_TOLERANCE):
                raise _refuse(
                    w.channel,
                    "every burst channel must use the same pulse frequency within its bursts",
                )
        if not MIN_INTER_PULSE_MS <= gap <= MAX_INTER_PULSE_MS:
            raise _refuse(
                gaps[0].channel,
                f"the pulse spacing within a burst ({gap:g} ms) is outside the RehaStim 2's "
                f"{MIN_INTER_PULSE_MS:g}-{MAX_INTER_PULSE_MS:g} ms",
            )
    extra = max((w.mode for w in wanted), default=PulseMode.SINGLE)
    busy_ms = len(wanted) * CHANNEL_SLOT_MS + int(extra) * (gap if gaps else 0.0)
    if busy_ms > main:
        raise _refuse(
            None,
            f"{len(wanted)} channels need {busy_ms:g} ms per pulse round but the interval is "
            f"{main:g} ms; use fewer channels or a lower frequency",
        )
    init = InitChannelListMode(
        low_frequency_factor=factor - 1,
        active_mask=codec.mask_of({w.channel for w in wanted}),
        low_frequency_mask=codec.mask_of(set(slow)),
        inter_pulse_code=codec.inter_pulse_interval_code(gap),
        main_interval_code=codec.main_interval_code(main),
        execution=codec.ChannelExecution.SEQUENTIAL,
    )
    return ChannelListPlan(
        init,
        tuple(
            ChannelPlan(w.channel, w.mode, w.pulse_width_us, w.requested_hz, delivered[w.channel])
            for w in wanted
        ),
    )


# --------------------------------------------------------------------------- commands in flight


@dataclass
class _Outstanding:
    """One command sent and awaiting its acknowledgement."""

    name: str
    message: Message
    pkt: int
    ack: Command
    pending: Pending
    accept: frozenset[int]
    on_ok: Callable[[Message], None] | None
    on_error: Callable[[DriverError], None] | None
    retries: int = RETRIES
    resends: int = 0
    first_sent: float = 0.0
    order: int = 0
    """Position in the send order (the device answers in that order)."""
    timer: TimerHandle | None = None

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

    pending: Pending
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


class ScienceMode2Driver(TensDriver):
    """A RehaStim 2 on a serial port (or ``sim://sciencemode2``, a pty, TCP)."""

    ack_timeout_s: float = 1.0
    """S8: a command unacknowledged this long means the link is lost."""
    """How long :meth:`close` waits for the stop acknowledgement before closing the port."""

    def __init__(
        self,
        port: serial.Serial,
        clock: Clock,
        *,
        url: str | None = None,
        profile: DeviceProfile | None = None,
        serial_number: str | None = None,
    ) -> None:
        """Attach to an already-open port and listen; nothing is sent until the device's Init
        arrives (answering it starts the keep-alive). See :meth:`connect` and :meth:`open`."""
        super().__init__(clock)
        self.profile = profile or get_profile(PROFILE_ID)
        self.url = url or str(getattr(port, "portstr", None) or getattr(port, "port", "") or "")
        self._serial_number = serial_number
        self._lock = threading.RLock()
        self._depth = 0
        self._deferred: list[Callable[[], None]] = []
        self._pkt = 0
        self._order = 0
        self._epoch = 0
        self._settings: dict[int, ChannelSettings] = {}
        self._plan: ChannelListPlan | None = None
        self._info: DeviceInfo | None = None
        self.framing_errors = 0
        self.watchdogs_sent = 0
        self._attach(port)

    def _attach(self, port: serial.Serial) -> None:
        with self._lock:
            self._decoder = FrameDecoder()
            self._outstanding: dict[tuple[int, int], _Outstanding] = {}
            self._updates: list[_Outstanding] = []
            """Unanswered StartChannelListMode commands, oldest first."""
            self._chains: list[_Chain] = []
            self._state = _State()
            self._lost = False
            self._lost_detail = ""
            self._closed = False
            self._last_tx = self.clock.now()
            self._keepalive: TimerHandle | None = None
            self._poll_timer: TimerHandle | None = None
            self._poll: Pending | None = None
            self._link = SerialLink(
                port, self.clock, self._on_bytes, self._on_link_lost, name=f"sm2-reader {self.url}"
            )
        self._link.start()
        exit_guard.register(self)

    @classmethod
    def connect(
        cls,
        port: serial.Serial,
        clock: Clock,
        *,
        url: str | None = None,
        profile: DeviceProfile | None = None,
        serial_number: str | None = None,
    ) -> ScienceMode2Driver:
        """Attach to an open port, wait for the device's Init, identify and stop (S1).

        On failure the port is closed and the error is raised."""
        driver = cls(port, clock, url=url, profile=profile, serial_number=serial_number)
        try:
            driver.identify()
            driver.wait(driver.request_stop())
        except BaseException:
            driver.close()
            raise
        return driver

    @classmethod
    def open(
        cls, url: str, clock: Clock, *, profile: DeviceProfile | None = None
    ) -> ScienceMode2Driver:
        """Open ``url`` at 460800 baud 8E1 (``/dev/ttyUSB0``, ``COM3``, ``sim://sciencemode2``,
        ``socket://...``), identify and stop. Raises :class:`~drivers.base.PortError`,
        :class:`IdentityError` or :class:`CommsLostError` with one clear sentence."""
        port = open_port(url, clock=clock, baudrate=BAUDRATE, parity=serial.PARITY_EVEN)
        return cls.connect(
            port, clock, url=url, profile=profile, serial_number=_usb_serial_number(url)
        )

    def reconnect(self, port: serial.Serial | None = None) -> DeviceInfo:
        """Close the link, open the same port object again (or use ``port``, already open),
        wait for Init, identify and stop. Every output is left at 0; stimulation never resumes
        by itself; every channel must be configured again. Raises :class:`PortError` if the
        port cannot be opened, :class:`IdentityError` if no RehaStim 2 answers."""
        old = self._link.port
        self._teardown("reconnecting")
        if port is None:
            port = self._reopen(old)
        self._settings = {}
        self._plan = None
        self._attach(port)
        try:
            info = self.identify()
            self.wait(self.request_stop())
        except BaseException:
            self._teardown("reconnect failed")
            raise
        return info

    def _reopen(self, port: serial.Serial) -> serial.Serial:
        """Open the same port object again (same path or URL and settings; for ``sim://`` the
        same simulated device)."""
        try:
            if port.is_open:
                port.close()
            port.open()
        except (serial.SerialException, OSError, ValueError) as error:
            raise PortError(
                f"port {self.url or 'of the RehaStim 2'} could not be opened again ({error}); "
                "check that it is plugged in and switched on, then reconnect"
            ) from None
        return port

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the state lock; run deferred actions (reports, resolutions) after release."""
        actions: list[Callable[[], None]] = []
        try:
            with self._lock:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                    if self._depth == 0:
                        actions, self._deferred = self._deferred, []
        finally:
            for action in actions:
                try:
                    action()
                except Exception:  # a handler bug must not break the driver
                    log.exception("report handler or completion callback failed")
            if actions:
                self.clock.notify()

    def _later(self, action: Callable[[], None]) -> None:
        self._deferred.append(action)

    def _report(self, report: Report) -> None:
        self._later(lambda: self._emit(report))

    def _resolve(self, pending: Pending, error: DriverError | None = None) -> None:
        self._later(lambda: pending.resolve(error))

    def _event(self, kind: DeviceEventKind, channel: int | None = None, detail: str = "") -> None:
        self._report(DeviceEvent(self.clock.now(), kind, channel, detail))

    # ------------------------------------------------------------------ public state
    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            raise IdentityError("the RehaStim 2 has not been identified yet; call identify()")
        return self._info

    @property
    def connected(self) -> bool:
        return not self._lost and not self._closed and self._link.alive

    @property
    def port(self) -> serial.Serial:
        """The port this driver owns (tests reach the simulator through it)."""
        return self._link.port

    @property
    def plan(self) -> ChannelListPlan | None:
        """How the configured channels map onto channel list mode (None if none configured)."""
        return self._plan

    @property
    def stimulation_mode(self) -> StimulationMode:
        """The device's mode as the host knows it."""
        return self._state.mode

    def amplitudes(self) -> dict[int, int]:
        """The current (mA) per active channel the device acknowledged."""
        with self._lock:
            return dict(self._state.acked)

    # ------------------------------------------------------------------ identify
    def identify(self) -> DeviceInfo:
        """Wait for the device's Init, answer it, read its mode; never changes the output."""
        self._check_usable("identify")
        ok = self.clock.wait_until(lambda: self._state.linked or self._lost, INIT_WAIT_S)
        if self._lost:
            raise CommsLostError("the link to the RehaStim 2 was lost while connecting")
        if not ok:
            raise IdentityError(
                f"no RehaStim 2 answered on {self.url or 'the port'}: it sent no ScienceMode2 "
                f"Init within {INIT_WAIT_S:g} s; check that it is switched on, connected and "
                "not in use by another program"
            )
        try:
            mode = self._ask_mode()
        except CommsLostError as error:
            raise IdentityError(
                f"the device on {self.url or 'the port'} sent Init but did not answer "
                f"GetStimulationMode ({error}); check the cable and that it is a RehaStim 2"
            ) from None
        if mode is not StimulationMode.START:
            log.warning("RehaStim 2 reports mode %s after Init; stopping it", mode.name)
            self.wait(self.request_stop())
        profile = self.profile
        version = self._state.init_version
        self._info = DeviceInfo(
            protocol=PROTOCOL,
            protocol_version=str(version) if version is not None else "unknown",
            model=profile.model,
            serial_number=self._serial_number or "not reported",
            firmware="not reported",
            channels=min(profile.channels, MAX_CHANNELS),
            limits=profile.device_limits(),
            reports_current=False,
            reports_impedance=False,
            is_simulator=self.url.startswith("sim://"),
        )
        return self._info

    def _ask_mode(self) -> StimulationMode:
        found: list[int] = []

        def on_ok(message: Message) -> None:
            assert isinstance(message, GetStimulationModeAck)
            found.append(message.mode)

        with self._locked():
            pending = self._send_command("GetStimulationMode", GetStimulationMode(), on_ok=on_ok)
        self.wait(pending)
        try:
            return StimulationMode(found[0])
        except ValueError:
            raise IdentityError(
                f"the device on {self.url or 'the port'} reported an unknown stimulation mode "
                f"{found[0]}; it does not behave like a RehaStim 2"
            ) from None

    # ------------------------------------------------------------------ commands
    def _check_usable(self, command: str) -> None:
        if self._closed:
            raise CommsLostError(f"cannot {command}: the RehaStim 2 driver is closed")
        if self._lost or not self._link.alive:
            raise CommsLostError(
                f"cannot {command}: the link to the RehaStim 2 was lost "
                f"({self._lost_detail or 'port closed'}); reconnect to continue"
            )

    def _check_linked(self, command: str) -> None:
        self._check_usable(command)
        if not self._state.linked:
            raise DriverRefusedError(
                ErrorCode.STATE, command, "the RehaStim 2 has not completed its Init handshake"
            )

    def request_configure(self, channel: int, settings: ChannelSettings) -> Pending:
        """Check and store ``settings``; the channel's current becomes 0 mA.

        Not stimulating: nothing is sent (the device is set up by :meth:`request_start`).
        Stimulating: a pulse-width-only change is one update with the channel at 0 mA; a
        change of timing (frequency, pattern, channel set) re-initialises channel list mode
        (stop, init, start at 0 mA), which stops *every* channel -- so it is refused with
        :class:`DriverRefusedError` (STATE, nothing sent) while another channel is above
        0 mA. Settings the device cannot deliver raise :class:`UnsupportedSettingsError`."""
        with self._locked():
            self._check_linked("configure")
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
                        "channel %d: %.4g Hz requested, the RehaStim 2 delivers %.4g Hz "
                        "(0.5 ms grid)",
                        channel,
                        ch.requested_hz,
                        ch.delivered_hz,
                    )
            state = self._state
            if not state.running:
                self._settings = proposed
                self._plan = plan
                pending = Pending("configure", self.clock.now())
                pending.resolve()
                return pending
            if state.device_init == plan.init:
                # Same timing: one update with this channel at 0 mA and its new pulse shape.
                self._settings = proposed
                self._plan = plan
                currents = dict(state.sent)
                currents[channel] = 0
                return self._send_update("configure", plan, currents)
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
            self._plan = plan
            return self._start_chain("configure", plan, restart=True)

    def request_amplitude(self, channel: int, milliamps: float) -> Pending:
        """One ``StartChannelListMode`` update: this channel at ``milliamps``, every other active
        channel unchanged. Whole mA, 0-130, only while stimulating."""
        with self._locked():
            self._check_linked("set amplitude")
            state = self._state
            plan = self._plan
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
            return self._send_update("set amplitude", plan, currents)

    def request_start(self) -> Pending:
        """Initialise channel list mode (if needed) and start it with every current at 0 mA."""
        with self._locked():
            self._check_linked("start")
            if self._plan is None:
                raise DriverRefusedError(ErrorCode.STATE, "start", "no channel is configured")
            if self._chains:
                raise DriverRefusedError(
                    ErrorCode.BUSY, "start", "a program change is still in progress"
                )
            state = self._state
            if state.mode is not StimulationMode.START and state.device_init == self._plan.init:
                return self._send_update("start", self._plan, {}, starting=True)
            return self._start_chain(
                "start", self._plan, restart=state.mode is not StimulationMode.START
            )

    def request_stop(self) -> Pending:
        """``StopChannelListMode`` written before this returns; every output 0. Never raises:
        with the link gone the returned command is already resolved with the error."""
        with self._locked():
            self._cancel_chains("stopped")
            state = self._state
            state.running = False
            state.mode = StimulationMode.START
            state.device_init = None
            state.acked = dict.fromkeys(state.acked, 0)
            state.sent = dict.fromkeys(state.sent, 0)
            if self._closed or self._lost or not self._link.alive:
                pending = Pending("stop", self.clock.now())
                pending.resolve(CommsLostError("stop not sent: the link to the RehaStim 2 is lost"))
                return pending
            if not state.linked:
                # Before the Init handshake nothing was started; send it anyway, expect no answer.
                self._write_or_lose(
                    codec.encode(
                        self._next_pkt(Command.STOP_CHANNEL_LIST_MODE_ACK), StopChannelListMode()
                    )
                )
                pending = Pending("stop", self.clock.now())
                pending.resolve()
                return pending
            # Wrong mode (-3) means it was not stimulating: stopped all the same.
            return self._send_command(
                "stop",
                StopChannelListMode(),
                accept=frozenset({Result.OK, Result.WRONG_MODE}),
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def _teardown(self, reason: str) -> None:
        with self._locked():
            self._closed = True
            self._cancel_chains(reason)
            self._cancel_timers()
            for out in self._forget_all():
                self._resolve(out.pending, CommsLostError(f"{out.name} not confirmed: {reason}"))
        self._link.close()
        exit_guard.unregister(self)
        self.clock.notify()

    def wait(self, pending: Pending) -> None:
        """Block until the command (or chain of commands) is answered; raise its error.

        The driver's own timers always resolve a command (acknowledgement, error, 1 s timeout
        or comms loss); the limit here is only a backstop."""
        limit = self.ack_timeout_s * (RETRIES + 1) * 3 + 0.5
        if not self.clock.wait_until(pending.done, limit):
            raise CommsLostError(f"no acknowledgement for {pending.command}")
        pending.raise_for_error()

    # ------------------------------------------------------------------ sending (lock held)
    def _next_pkt(self, ack: Command) -> int:
        for _ in range(256):
            self._pkt = (self._pkt + 1) % 256
            if (int(ack), self._pkt) not in self._outstanding:
                return self._pkt
        raise CommsLostError("256 commands are awaiting acknowledgement")  # pragma: no cover

    def _write(self, data: bytes) -> None:
        self._last_tx = self.clock.now()
        self._link.write(data)

    def _write_or_lose(self, data: bytes) -> bool:
        try:
            self._write(data)
        except CommsLostError:
            return False  # the link reported the loss (COMMS_LOST follows)
        return True

    def _send_command(
        self,
        name: str,
        message: Message,
        *,
        accept: frozenset[int] = frozenset({Result.OK}),
        on_ok: Callable[[Message], None] | None = None,
        on_error: Callable[[DriverError], None] | None = None,
        pending: Pending | None = None,
    ) -> Pending:
        ack = codec.ACK_FOR[Command(message.command)]
        if pending is None:
            pending = Pending(name, self.clock.now() + self.ack_timeout_s)
        out = _Outstanding(name, message, 0, ack, pending, accept, on_ok, on_error)
        self._transmit(out)
        return pending

    def _transmit(self, out: _Outstanding, *, fresh: bool = True) -> None:
        """(Re)send ``out`` under a new packet number. ``fresh``: a new 1 s window for the
        acknowledgement (a first send, or the device answered); otherwise a silent resend
        within the window of the first send."""
        now = self.clock.now()
        out.pkt = self._next_pkt(out.ack)
        key = (int(out.ack), out.pkt)
        self._outstanding[key] = out
        if fresh:
            out.first_sent = now
        if not out.order:
            self._order += 1
            out.order = self._order
        if isinstance(out.message, StartChannelListMode) and out not in self._updates:
            self._updates.append(out)
        if isinstance(out.message, InitChannelListMode | StartChannelListMode):
            self._state.sent_since_link = True
        deadline = out.first_sent + self.ack_timeout_s
        out.pending.deadline = max(out.pending.deadline, deadline)
        due = deadline
        if out.idempotent and out.resends < RETRIES:
            due = min(due, now + RESEND_S)
        out.timer = self.clock.call_at(due, lambda: self._on_timeout(key, out))
        if not self._write_or_lose(codec.encode(out.pkt, out.message)):
            self._forget(key, out)
            self._resolve(out.pending, CommsLostError(f"{out.name} not sent: the port is gone"))

    def _forget(self, key: tuple[int, int] | None, out: _Outstanding) -> None:
        """No longer wait for ``out``'s acknowledgement (``key`` None: find it)."""
        keys = [key] if key is not None else [k for k, v in self._outstanding.items() if v is out]
        for k in keys:
            if self._outstanding.get(k) is out:
                del self._outstanding[k]
        if out.timer is not None:
            out.timer.cancel()
        if out in self._updates:
            self._updates.remove(out)

    def _forget_all(self) -> list[_Outstanding]:
        """Stop waiting for every command; return them (oldest first)."""
        waiting = sorted(self._outstanding.values(), key=lambda o: o.order)
        for out in waiting:
            if out.timer is not None:
                out.timer.cancel()
        self._outstanding.clear()
        self._updates.clear()
        return waiting

    def _send_update(
        self, name: str, plan: ChannelListPlan, currents: dict[int, int], starting: bool = False
    ) -> Pending:
        state = self._state
        message = plan.start_message(currents)
        vector = {c: currents.get(c, 0) for c in plan.active}
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

        return self._send_command(
            f"{name} (StartChannelListMode)", message, on_ok=on_ok, on_error=on_error
        )

    def _start_chain(self, name: str, plan: ChannelListPlan, *, restart: bool) -> Pending:
        """[Stop ->] InitChannelListMode -> StartChannelListMode(all 0 mA), one after another."""
        state = self._state
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
        deadline = self.clock.now() + len(steps) * self.ack_timeout_s
        chain = _Chain(Pending(name, deadline), self._epoch, steps)
        self._chains.append(chain)
        self._chain_next(chain)
        return chain.pending

    def _chain_next(self, chain: _Chain) -> None:
        if chain.epoch != self._epoch:
            return
        if chain.index >= len(chain.steps):
            self._chains.remove(chain)
            self._resolve(chain.pending)
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
            self._resolve(chain.pending, error)

        step = Pending(step_name, self.clock.now() + self.ack_timeout_s)
        self._send_command(
            step_name, message, accept=accept, on_ok=on_ok, on_error=on_error, pending=step
        )

    def _cancel_chains(self, why: str) -> None:
        self._epoch += 1
        for chain in self._chains:
            self._resolve(
                chain.pending,
                DriverRefusedError(ErrorCode.STATE, chain.pending.command, f"cancelled: {why}"),
            )
        self._chains.clear()

    # ------------------------------------------------------------------ timers (clock thread)
    def _start_link_timers(self) -> None:
        if self._keepalive is None:
            self._keepalive = self.clock.call_at(self._last_tx + KEEPALIVE_S, self._on_keepalive)
        if self._poll_timer is None:
            self._poll_timer = self.clock.call_later(POLL_S, self._on_poll)

    def _cancel_timers(self) -> None:
        for timer in (self._keepalive, self._poll_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive = self._poll_timer = None

    def _dead(self) -> bool:
        return self._closed or self._lost

    def _on_keepalive(self) -> None:
        with self._locked():
            self._keepalive = None
            if self._dead() or not self._state.linked:
                return
            quiet = self.clock.now() - self._last_tx >= KEEPALIVE_S - 1e-6
            if quiet and self._write_or_lose(
                codec.encode(self._next_pkt(Command.WATCHDOG), Watchdog())
            ):
                self.watchdogs_sent += 1
            if not self._dead():
                self._keepalive = self.clock.call_at(
                    self._last_tx + KEEPALIVE_S, self._on_keepalive
                )

    def _on_poll(self) -> None:
        with self._locked():
            self._poll_timer = None
            if self._dead() or not self._state.linked:
                return
            if self._poll is None:
                self._send_poll()
            if not self._dead():
                self._poll_timer = self.clock.call_later(POLL_S, self._on_poll)

    def _send_poll(self) -> None:
        quiet = not self._outstanding and not self._chains
        expected = self._state.mode

        def on_ok(message: Message) -> None:
            self._poll = None
            assert isinstance(message, GetStimulationModeAck)
            still_quiet = quiet and not self._outstanding and not self._chains
            self._on_mode_report(message.mode, still_quiet, expected)

        def on_error(error: DriverError) -> None:
            self._poll = None
            log.warning("status poll refused: %s", error)

        self._poll = self._send_command(
            "status poll", GetStimulationMode(), on_ok=on_ok, on_error=on_error
        )

    def _on_mode_report(self, mode: int, quiet: bool, expected: StimulationMode) -> None:
        state = self._state
        now = self.clock.now()
        if mode == StimulationMode.STARTED and state.running:
            plan = self._plan
            for channel in plan.active if plan else ():
                self._report(
                    Telemetry(now, channel, float(state.acked.get(channel, 0)), None, None)
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
            self._event(
                DeviceEventKind.OUTPUT_STOPPED,
                None,
                "the RehaStim 2 reports that it is not stimulating; every output is 0",
            )

    def _on_timeout(self, key: tuple[int, int], out: _Outstanding) -> None:
        with self._locked():
            if self._outstanding.get(key) is not out or self._dead():
                return
            now = self.clock.now()
            deadline = out.first_sent + self.ack_timeout_s
            if now >= deadline - 1e-9:
                self._comms_lost(
                    f"no acknowledgement for {out.name} within {self.ack_timeout_s:g} s"
                )
                return
            newest = not self._updates or self._updates[-1] is out
            if (
                out.idempotent
                and out.resends < RETRIES
                and (newest or not isinstance(out.message, StartChannelListMode))
            ):
                out.resends += 1
                del self._outstanding[key]
                log.info(
                    "%s unanswered after %.0f ms; sending it again",
                    out.name,
                    (now - out.first_sent) * 1000,
                )
                self._transmit(out, fresh=False)
                return
            out.timer = self.clock.call_at(deadline, lambda: self._on_timeout(key, out))

    # ------------------------------------------------------------------ receiving
    def _on_bytes(self, data: bytes) -> None:
        with self._locked():
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
                self._dispatch(item, message)
        self.clock.notify()

    def _dispatch(self, frame: RawFrame, message: Message) -> None:
        if self._closed:
            return
        if isinstance(message, Init):
            self._on_init(frame.pkt, message)
        elif isinstance(message, StimulationError):
            self._on_stimulation_error(message.error)
        elif isinstance(message, UnknownCommand):
            self._on_unknown_command(frame.pkt, message.unknown)
        elif frame.command in {int(c) for c in codec.ACK_FOR.values()}:
            self._on_ack(frame.pkt, message)
        else:
            log.warning(
                "unexpected ScienceMode2 command %d from the device; ignored", frame.command
            )

    def _on_init(self, pkt: int, init: Init) -> None:
        if self._lost:
            return
        self._write_or_lose(codec.encode(pkt, InitAck(Result.OK)))
        state = self._state
        now = self.clock.now()
        if not state.linked:
            state.linked = True
            state.linked_at = now
            state.init_version = init.version
            state.sent_since_link = False
            log.info("RehaStim 2 Init (protocol version %d) answered", init.version)
            self._start_link_timers()
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
        self._event(
            DeviceEventKind.DEVICE_RESET,
            None,
            f"the RehaStim 2 restarted (it sent Init while {was}): every output is off and "
            "every channel must be configured and started again; nothing resumes by itself",
        )
        self._cancel_chains("the device restarted")
        self._poll = None
        for out in self._forget_all():
            self._resolve(
                out.pending,
                DriverRefusedError(ErrorCode.STATE, out.name, "the RehaStim 2 restarted"),
            )

    def _device_stopped(self) -> None:
        """The device stopped and reset its modes by itself (error, restart)."""
        self._epoch += 1
        state = self._state
        state.running = False
        state.mode = StimulationMode.START
        state.device_init = None
        state.acked = dict.fromkeys(state.acked, 0)
        state.sent = dict.fromkeys(state.sent, 0)

    def _on_stimulation_error(self, error: int) -> None:
        self._device_stopped()
        self._stimulation_error_event(error)
        self._cancel_chains("the device stopped on a stimulation error")

    def _stimulation_error_event(self, error: int) -> None:
        if error == StimulationErrorCode.EMERGENCY_SWITCH:
            self._event(
                DeviceEventKind.EMERGENCY_SWITCH,
                None,
                "the RehaStim 2's emergency switch was pressed (or is unplugged); output stopped",
            )
        elif error == StimulationErrorCode.ELECTRODE_ERROR:
            self._event(
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
            self._event(DeviceEventKind.FAULT, None, f"{detail}; the RehaStim 2 stopped output")

    def _on_unknown_command(self, pkt: int, number: int) -> None:
        try:
            ack = codec.ACK_FOR[Command(number)]
        except (ValueError, KeyError):
            log.warning("device reports unknown command %d", number)
            return
        key = (int(ack), pkt)
        out = self._outstanding.get(key)
        if out is None:
            log.warning("device reports unknown command %d (packet %d)", number, pkt)
            return
        self._forget(key, out)
        error = DeviceRejectedError(
            ErrorCode.UNKNOWN_COMMAND, out.name, "the device does not know this command"
        )
        if out.on_error is not None:
            out.on_error(error)
        self._resolve(out.pending, error)

    def _on_ack(self, pkt: int, message: Message) -> None:
        key = (int(message.command), pkt)
        out = self._outstanding.get(key)
        result = getattr(message, "result", Result.OK)
        if out is None:
            if result == Result.TRANSFER_ERROR:
                self._on_unmatched_transfer_error(pkt, int(message.command))
            else:
                log.debug("acknowledgement %r for packet %d matches nothing", message, pkt)
            return
        self._forget(key, out)
        if result in out.accept:
            if isinstance(out.message, StartChannelListMode | StopChannelListMode):
                self._supersede(out, message)
            if out.on_ok is not None:
                out.on_ok(message)
            self._resolve(out.pending)
            return
        if result in (Result.TRANSFER_ERROR, Result.BUSY) and out.retries > 0 and not self._dead():
            out.retries -= 1
            log.info("%s answered %d; sending it again", out.name, result)
            if result == Result.BUSY:
                self._outstanding[key] = out  # still ours while it waits to be sent again
                out.timer = self.clock.call_later(BUSY_RETRY_S, lambda: self._retransmit(key, out))
            else:
                self._transmit(out)
            return
        error = error_for_result(result, out.name)
        if out.on_error is not None:
            out.on_error(error)
        self._resolve(out.pending, error)

    def _supersede(self, newer: _Outstanding, ack: Message) -> None:
        """The device answered ``newer`` (an update or a stop), so it has also dealt with
        every older unanswered update (it answers in order): their answers were lost, and the
        device's state now is what ``newer`` set. Resolve them, oldest first."""
        older = [u for u in self._updates if u is not newer and u.order < newer.order]
        for out in older:
            self._forget(None, out)
            if out.on_ok is not None:
                out.on_ok(ack)
            self._resolve(out.pending)

    def _on_unmatched_transfer_error(self, pkt: int, ack: int) -> None:
        """The device could not read a frame and answered what it made of the packet number
        or command: send again what it most likely was (same packet, else same command, else
        the oldest unanswered command)."""
        waiting = list(self._outstanding.items())
        candidates = (
            [item for item in waiting if item[0][1] == pkt]
            or [item for item in waiting if item[0][0] == ack]
            or waiting
        )
        if not candidates:
            return
        key, out = candidates[0]
        if out.retries <= 0:
            return  # its own timeout decides
        out.retries -= 1
        self._forget(key, out)
        log.info("transfer error for an unreadable frame; sending %s again", out.name)
        self._transmit(out)

    def _retransmit(self, key: tuple[int, int], out: _Outstanding) -> None:
        with self._locked():
            if self._dead() or self._outstanding.get(key) is not out:
                return
            self._forget(key, out)
            self._transmit(out)

    # ------------------------------------------------------------------ loss
    def _on_link_lost(self, detail: str) -> None:
        with self._locked():
            self._comms_lost(detail)

    def _comms_lost(self, detail: str) -> None:
        if self._lost or self._closed:
            return
        self._lost = True
        self._lost_detail = detail
        if self._link.alive:
            with contextlib.suppress(DriverError):
                self._write(
                    codec.encode(
                        self._next_pkt(Command.STOP_CHANNEL_LIST_MODE_ACK), StopChannelListMode()
                    )
                )
        self._device_stopped()
        log.warning("RehaStim 2 comms lost: %s", detail)
        self._event(
            DeviceEventKind.COMMS_LOST,
            None,
            f"{detail}; stimulation stopped and will not resume by itself",
        )
        self._cancel_chains("comms lost")
        self._cancel_timers()
        for out in self._forget_all():
            self._resolve(out.pending, CommsLostError(f"{out.name}: {detail}"))


# --------------------------------------------------------------------------- discovery


def _usb_serial_number(url: str) -> str | None:
    """The USB serial number of the adapter at ``url`` (real ports only), if the OS knows it."""
    if "://" in url:
        return None
    try:
        for info in list_ports():
            if info.device == url:
                return info.serial_number
    except Exception:  # best effort: port listing can fail on odd systems
        log.debug("could not list ports to find the serial number of %s", url)
    return None


@dataclass(frozen=True)
class FoundDevice:
    port: PortInfo
    info: DeviceInfo


def discover(
    clock: Clock,
    *,
    profile: DeviceProfile | None = None,
    ports: list[PortInfo] | None = None,
) -> list[FoundDevice]:
    """FTDI (VID 0x0403) serial ports confirmed as a RehaStim 2 by the Init handshake.

    Each candidate is opened, identified (up to 2.5 s) and closed again; ports that are busy,
    missing or silent are skipped (and logged)."""
    found: list[FoundDevice] = []
    for port in ports if ports is not None else candidate_ports({FTDI_VID}):
        try:
            driver = ScienceMode2Driver.open(port.device, clock, profile=profile)
        except DriverError as error:
            log.info("%s is not a usable RehaStim 2: %s", port.device, error)
            continue
        found.append(FoundDevice(port, driver.info))
        driver.close()
    return found
