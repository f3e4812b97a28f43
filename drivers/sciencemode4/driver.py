"""Host driver for the Hasomed P24 through ScienceMode4 (mid level): the one runtime
(:class:`~drivers.runtime.DeviceRuntime`) running a
:class:`~drivers.sciencemode4.engine.ScienceMode4Engine` on the P24's USB virtual COM port.

What the device can and cannot do is in ``drivers/sciencemode4/engine.py`` (the link) and
``drivers/sciencemode4/plan.py`` (programs); this module adds the profile, the device's status
and battery, a reset, and discovery of the P24 by its USB id (0483:5740) confirmed by its
device id.

**S17, and the one documented exception.** The P24 stops stimulating by itself 2 s after the
last Ml_Get_Current_Data -- longer than the 1.5 s tens-control otherwise requires of a device
watchdog. The P24 cannot be set shorter, so the exception is explicit here
(:attr:`ScienceMode4Driver.max_device_watchdog_ms`) and documented in ``docs/safety.md``: the
host keeps the link alive every 50 ms and stops on every way out it can catch; what is left is
a host that dies without a word (killed, frozen, powered off), after which the P24 may go on at
its last level for up to 2 s instead of 1.5 s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Self

import serial

from drivers.base import CommsLostError, DeviceInfo, DriverError, Pending
from drivers.clock import Clock
from drivers.engine import Engine
from drivers.limits import DeviceProfile, get_profile
from drivers.runtime import DeviceRuntime
from drivers.sciencemode4.engine import P24Status, ScienceMode4Engine
from drivers.sciencemode4.plan import (
    BAUDRATE,
    DEVICE_WATCHDOG_MS,
    PROFILE_ID,
    STM32_CDC_PID,
    STM32_VID,
)
from drivers.transport import PortInfo, candidate_ports, open_port

log = logging.getLogger(__name__)


class ScienceMode4Driver(DeviceRuntime):
    """A P24 on its USB serial port (or ``sim://sciencemode4``, a pty, TCP)."""

    baudrate = BAUDRATE
    parity = serial.PARITY_NONE
    device_name = "the P24"
    protocol_label = "ScienceMode4"
    max_device_watchdog_ms = DEVICE_WATCHDOG_MS
    """S17 exception (module docstring, docs/safety.md): the P24's fixed 2 s keep-alive timeout."""

    def __init__(
        self,
        port: serial.Serial,
        clock: Clock,
        *,
        url: str | None = None,
        profile: DeviceProfile | None = None,
    ) -> None:
        """Attach to an already-open port. Nothing is sent until :meth:`identify`."""
        self.profile = profile or get_profile(PROFILE_ID)
        super().__init__(port, clock, url=url)

    def _new_engine(self) -> Engine:
        return ScienceMode4Engine(self.profile, url=self.url)

    @classmethod
    def connect(
        cls,
        port: serial.Serial,
        clock: Clock,
        *,
        url: str | None = None,
        profile: DeviceProfile | None = None,
    ) -> Self:
        """Attach to an open port, identify and stop (S1). On failure the port is closed."""
        driver = cls(port, clock, url=url, profile=profile)
        driver._identify_and_stop()
        return driver

    @classmethod
    def open(cls, url: str, clock: Clock, *, profile: DeviceProfile | None = None) -> Self:
        """Open ``url`` (``/dev/ttyACM0``, ``COM5``, ``sim://sciencemode4``, ``socket://...``),
        identify and stop. Raises :class:`~drivers.base.PortError`,
        :class:`~drivers.base.IdentityError` or :class:`~drivers.base.CommsLostError` with one
        clear sentence."""
        port = open_port(url, clock=clock, baudrate=BAUDRATE)
        return cls.connect(port, clock, url=url, profile=profile)

    def __enter__(self) -> Self:
        return self

    @property
    def p24(self) -> ScienceMode4Engine:
        engine = self.engine
        assert isinstance(engine, ScienceMode4Engine)
        return engine

    @property
    def device_id(self) -> str | None:
        """The device id the P24 reported (its serial number)."""
        return self.p24.device_id

    @property
    def battery_pct(self) -> int | None:
        """The battery charge as last read (every second while connected)."""
        return self.p24.battery_pct

    @property
    def framing_errors(self) -> int:
        return self.p24.framing_errors

    @property
    def polls_sent(self) -> int:
        return self.p24.polls_sent

    def amplitudes(self) -> dict[int, float]:
        """The current (mA) per configured channel the device acknowledged."""
        with self.locked():
            return dict(self.p24.state.acked)

    def status(self) -> P24Status:
        """Get_Stim_Status and the battery as last read (blocking)."""
        pending = self.request_status()
        self.wait(pending)
        if not isinstance(pending.value, P24Status):
            raise CommsLostError("Get_Stim_Status not answered")
        return pending.value

    def reset(self) -> None:
        """General Reset (blocking): the P24 restarts with every output off. A real P24 may
        leave the USB bus while it restarts: reconnect afterwards."""
        with self.locked():
            now = self.clock.now()
            ticket, out = self.p24.submit_reset(now)
            pending = Pending("reset", now + self.ack_timeout_s)
            self._pendings[ticket] = pending
            self._apply(out)
        self.wait(pending)


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class FoundDevice:
    port: PortInfo
    info: DeviceInfo


def p24_ports(ports: list[PortInfo] | None = None) -> list[PortInfo]:
    """Serial ports with the P24's USB id (STM32 virtual COM port, 0483:5740)."""
    listed = ports if ports is not None else candidate_ports({STM32_VID})
    return [p for p in listed if p.vid == STM32_VID and p.pid == STM32_CDC_PID]


def discover(
    clock: Clock,
    *,
    profile: DeviceProfile | None = None,
    ports: list[PortInfo] | None = None,
) -> list[FoundDevice]:
    """Ports with the P24's USB id, confirmed as a P24 by its device id and stim status.

    Each candidate is opened, identified and closed again; ports that are busy, missing or
    silent are skipped (and logged). Other STM32 boards share the USB id: the device id is
    what confirms a P24."""
    found: list[FoundDevice] = []
    for port in p24_ports(ports):
        try:
            driver = ScienceMode4Driver.open(port.device, clock, profile=profile)
        except DriverError as error:
            log.info("%s is not a usable P24: %s", port.device, error)
            continue
        found.append(FoundDevice(port, driver.info))
        driver.close()
    return found


__all__ = ["FoundDevice", "P24Status", "ScienceMode4Driver", "discover", "p24_ports"]
