"""Host driver for the Hasomed RehaStim 2 through ScienceMode2: the one runtime
(:class:`~drivers.runtime.DeviceRuntime`) running a
:class:`~drivers.sciencemode2.engine.ScienceMode2Engine`, at 460800 baud 8E1.

What the device can and cannot do is described in ``drivers/sciencemode2/engine.py`` (the link)
and ``drivers/sciencemode2/plan.py`` (how programs map onto channel list mode); this module adds
the device's profile, its USB serial number and discovery of FTDI ports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Self

import serial

from drivers.base import DeviceInfo, DriverError
from drivers.clock import Clock
from drivers.engine import Engine
from drivers.limits import DeviceProfile, get_profile
from drivers.runtime import DeviceRuntime
from drivers.sciencemode2.codec import StimulationMode
from drivers.sciencemode2.engine import (
    INIT_WAIT_S,
    KEEPALIVE_S,
    POLL_S,
    RESEND_S,
    RETRIES,
    ScienceMode2Engine,
)
from drivers.sciencemode2.plan import (
    BAUDRATE,
    FTDI_VID,
    MAX_CHANNELS,
    MAX_CURRENT_MA,
    PROFILE_ID,
    PROTOCOL,
    ChannelListPlan,
    ChannelPlan,
    DriverRefusedError,
    UnsupportedSettingsError,
    error_for_result,
    plan_channel_list,
)
from drivers.transport import PortInfo, candidate_ports, list_ports, open_port

log = logging.getLogger(__name__)


class ScienceMode2Driver(DeviceRuntime):
    """A RehaStim 2 on a serial port (or ``sim://sciencemode2``, a pty, TCP)."""

    baudrate = BAUDRATE
    parity = serial.PARITY_EVEN
    device_name = "the RehaStim 2"
    protocol_label = "ScienceMode2"

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
        self.profile = profile or get_profile(PROFILE_ID)
        self._serial_number = serial_number
        super().__init__(port, clock, url=url)

    def _new_engine(self) -> Engine:
        return ScienceMode2Engine(self.profile, url=self.url, serial_number=self._serial_number)

    @classmethod
    def connect(
        cls,
        port: serial.Serial,
        clock: Clock,
        *,
        url: str | None = None,
        profile: DeviceProfile | None = None,
        serial_number: str | None = None,
    ) -> Self:
        """Attach to an open port, wait for the device's Init, identify and stop (S1).

        On failure the port is closed and the error is raised."""
        driver = cls(port, clock, url=url, profile=profile, serial_number=serial_number)
        driver._identify_and_stop()
        return driver

    @classmethod
    def open(cls, url: str, clock: Clock, *, profile: DeviceProfile | None = None) -> Self:
        """Open ``url`` at 460800 baud 8E1 (``/dev/ttyUSB0``, ``COM3``, ``sim://sciencemode2``,
        ``socket://...``), identify and stop. Raises :class:`~drivers.base.PortError`,
        :class:`~drivers.base.IdentityError` or :class:`~drivers.base.CommsLostError` with one
        clear sentence."""
        port = open_port(url, clock=clock, baudrate=BAUDRATE, parity=serial.PARITY_EVEN)
        return cls.connect(
            port, clock, url=url, profile=profile, serial_number=_usb_serial_number(url)
        )

    @property
    def sm2(self) -> ScienceMode2Engine:
        engine = self.engine
        assert isinstance(engine, ScienceMode2Engine)
        return engine

    @property
    def plan(self) -> ChannelListPlan | None:
        """How the configured channels map onto channel list mode (None if none configured)."""
        return self.sm2.plan

    @property
    def stimulation_mode(self) -> StimulationMode:
        """The device's mode as the host knows it."""
        return self.sm2.state.mode

    @property
    def framing_errors(self) -> int:
        return self.sm2.framing_errors

    @property
    def watchdogs_sent(self) -> int:
        return self.sm2.watchdogs_sent

    def amplitudes(self) -> dict[int, int]:
        """The current (mA) per active channel the device acknowledged."""
        with self.locked():
            return dict(self.sm2.state.acked)


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


__all__ = [
    "BAUDRATE",
    "FTDI_VID",
    "INIT_WAIT_S",
    "KEEPALIVE_S",
    "MAX_CHANNELS",
    "MAX_CURRENT_MA",
    "POLL_S",
    "PROFILE_ID",
    "PROTOCOL",
    "RESEND_S",
    "RETRIES",
    "ChannelListPlan",
    "ChannelPlan",
    "DriverRefusedError",
    "FoundDevice",
    "ScienceMode2Driver",
    "UnsupportedSettingsError",
    "discover",
    "error_for_result",
    "plan_channel_list",
]
