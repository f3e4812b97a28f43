"""Open the right driver for a device URL, with the right manufacturer profile.

Accepted device addresses (anything pyserial opens):

* ``sim://tsp``, ``sim://sciencemode2``, ``sim://sciencemode4`` (with options, e.g.
  ``sim://tsp?seed=3&faults=...``): the built-in simulator in this process (delivers no current
  to anybody);
* ``socket://127.0.0.1:7777``: a simulator (``tens-sim --tcp``) or a device behind a TCP bridge;
* a port path or name: ``/dev/ttyUSB0``, ``/dev/pts/5`` (``tens-sim --pty``), ``COM3``.

The protocol is chosen, in order, from an explicit ``protocol``, the protocol of an explicit
``profile``, the host part of a ``sim://`` URL, a USB id listed in a profile, and otherwise TSP
(the open protocol this project defines). The profile is, in order: explicit; the one whose model
the device reports when it identifies (TSP devices say who they are); ``rehastim2`` for
ScienceMode2 and ``p24`` for ScienceMode4 (a P24 is also recognised by its USB id, 0483:5740);
the generic two-channel home unit otherwise (noted as a guess). The device's own reported
limits are always intersected with the profile by the safety governor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import serial

import simulator  # noqa: F401 - registers the sim:// scheme with pyserial
from drivers.base import DeviceInfo, DriverError, PortError, TensDriver
from drivers.clock import Clock
from drivers.limits import DeviceProfile, ProfileError, builtin_profiles, get_profile
from drivers.runtime import DeviceRuntime
from drivers.sciencemode2.driver import BAUDRATE as SCIENCEMODE2_BAUDRATE
from drivers.sciencemode2.driver import PROFILE_ID as SCIENCEMODE2_PROFILE
from drivers.sciencemode2.driver import ScienceMode2Driver
from drivers.sciencemode4.driver import ScienceMode4Driver
from drivers.sciencemode4.plan import BAUDRATE as SCIENCEMODE4_BAUDRATE
from drivers.sciencemode4.plan import PROFILE_ID as SCIENCEMODE4_PROFILE
from drivers.transport import list_ports, open_port
from drivers.tsp.driver import TspDriver

log = logging.getLogger(__name__)

DEFAULT_DEVICE_URL = "sim://tsp"
"""The built-in simulator: used when no device is given or saved."""
PROTOCOLS = ("tsp", "sciencemode2", "sciencemode4")
FALLBACK_TSP_PROFILE = "generic-2ch"


@dataclass(frozen=True)
class DeviceChoice:
    """What to open and how, decided before anything is opened."""

    url: str
    protocol: str
    profile_id: str | None
    """Explicit (or from the sim:// URL); None: decided from the device's identity."""


@dataclass(frozen=True)
class OpenedDevice:
    """A driver that has identified its device, and the profile that applies to it."""

    url: str
    driver: TensDriver
    profile: DeviceProfile
    info: DeviceInfo
    profile_note: str = ""
    """Set when the profile was a guess (the device's model is not in the built-in profiles)."""
    port: serial.Serial | None = None
    """The open port (owned by the driver; tests reach the in-process simulator as
    ``port.device``)."""

    @property
    def is_simulator(self) -> bool:
        return self.info.is_simulator


def is_simulator_url(url: str) -> bool:
    return url.strip().lower().startswith("sim://")


def _sim_parts(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    protocol = (parts.netloc or parts.path.strip("/") or "tsp").lower()
    return protocol, dict(parse_qsl(parts.query, keep_blank_values=True))


def _profile(profile_id: str) -> DeviceProfile:
    try:
        return get_profile(profile_id)
    except ProfileError as error:
        raise PortError(str(error)) from None


def _usb_profile(url: str) -> DeviceProfile | None:
    """The profile whose USB id matches the port at ``url`` (a local port only)."""
    if "://" in url:
        return None
    with contextlib.suppress(Exception):  # best effort: port enumeration can fail
        for port in list_ports():
            if port.device != url or port.vid is None:
                continue
            for profile in builtin_profiles().values():
                for usb in profile.usb:
                    if usb.vid == port.vid and (usb.pid is None or usb.pid == port.pid):
                        return profile
    return None


def _usb_serial(url: str) -> str | None:
    """The USB serial number of a local port, if the OS reports one."""
    if "://" in url:
        return None
    with contextlib.suppress(Exception):  # best effort: only real USB ports have one
        for port in list_ports():
            if port.device == url:
                return port.serial_number
    return None


def choose_device(
    url: str | None, *, protocol: str | None = None, profile: str | None = None
) -> DeviceChoice:
    """Decide protocol (and maybe profile) for ``url`` (None: the built-in simulator)."""
    url = (url or "").strip() or DEFAULT_DEVICE_URL
    if protocol is not None and protocol not in PROTOCOLS:
        raise PortError(f"unknown protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}")
    chosen_profile = _profile(profile) if profile is not None else None
    if chosen_profile is not None:
        if protocol is not None and protocol != chosen_profile.protocol:
            raise PortError(
                f"profile {chosen_profile.id!r} speaks {chosen_profile.protocol}, not {protocol}; "
                "give a matching --protocol or leave it out"
            )
        protocol = chosen_profile.protocol
    profile_id = chosen_profile.id if chosen_profile is not None else None
    if is_simulator_url(url):
        sim_protocol, options = _sim_parts(url)
        if sim_protocol not in PROTOCOLS:
            raise PortError(
                f"the simulator speaks {', '.join(PROTOCOLS)}, not {sim_protocol!r}; "
                "use sim://tsp, sim://sciencemode2 or sim://sciencemode4"
            )
        if protocol is not None and protocol != sim_protocol:
            raise PortError(
                f"{url} is the {sim_protocol} simulator, but protocol {protocol} was asked for"
            )
        protocol = sim_protocol
        if profile_id is None and options.get("profile"):
            profile_id = options["profile"]
            _profile(profile_id)
    if protocol is None:
        usb = _usb_profile(url)
        if usb is not None:
            protocol = usb.protocol
            profile_id = usb.id
    return DeviceChoice(url=url, protocol=protocol or "tsp", profile_id=profile_id)


def _tsp_profile(info: DeviceInfo) -> tuple[DeviceProfile, str]:
    for candidate in builtin_profiles().values():
        if candidate.protocol == "tsp" and candidate.model == info.model:
            return candidate, ""
    fallback = _profile(FALLBACK_TSP_PROFILE)
    note = (
        f"device model {info.model!r} is not in the built-in profiles; using the "
        f"{fallback.name} profile (the device's own reported limits also apply)"
    )
    return fallback, note


def _identified(
    url: str, port: serial.Serial, profile: DeviceProfile, make: Callable[[], DeviceRuntime]
) -> OpenedDevice:
    """Attach the driver ``make`` builds to the open ``port`` and identify the device; on any
    failure the port is closed and the error raised."""
    try:
        driver = make()
    except BaseException:
        with contextlib.suppress(Exception):
            port.close()
        raise
    try:
        info = driver.identify()
    except BaseException:
        driver.close()
        raise
    return OpenedDevice(url, driver, profile, info, port=port)


def open_device(
    url: str | None,
    clock: Clock,
    *,
    protocol: str | None = None,
    profile: str | None = None,
) -> OpenedDevice:
    """Open and identify the device at ``url``; every output is left at 0 mA.

    Raises :class:`~drivers.base.PortError` (cannot open, unknown protocol or profile) or
    another :class:`~drivers.base.DriverError` (no answer, not a TENS unit), each one sentence.
    """
    choice = choose_device(url, protocol=protocol, profile=profile)
    if choice.protocol == "sciencemode2":
        chosen = _profile(choice.profile_id or SCIENCEMODE2_PROFILE)
        port = open_port(
            choice.url, clock=clock, baudrate=SCIENCEMODE2_BAUDRATE, parity=serial.PARITY_EVEN
        )
        return _identified(
            choice.url,
            port,
            chosen,
            lambda: ScienceMode2Driver(
                port, clock, profile=chosen, url=choice.url, serial_number=_usb_serial(choice.url)
            ),
        )
    if choice.protocol == "sciencemode4":
        chosen = _profile(choice.profile_id or SCIENCEMODE4_PROFILE)
        if chosen.protocol != "sciencemode4":
            raise PortError(f"profile {chosen.id!r} is for {chosen.protocol} devices, not a P24")
        port = open_port(choice.url, clock=clock, baudrate=SCIENCEMODE4_BAUDRATE)
        return _identified(
            choice.url,
            port,
            chosen,
            lambda: ScienceMode4Driver(port, clock, profile=chosen, url=choice.url),
        )
    port = open_port(choice.url, clock=clock)
    tsp = TspDriver.connect(port, clock, url=choice.url)
    info = tsp.info
    note = ""
    if choice.profile_id is not None:
        chosen = _profile(choice.profile_id)
    else:
        chosen, note = _tsp_profile(info)
        if note:
            log.warning("%s", note)
    if chosen.protocol != "tsp":
        tsp.close()
        raise PortError(f"profile {chosen.id!r} is for {chosen.protocol} devices, not TSP")
    return OpenedDevice(choice.url, tsp, chosen, info, note, port=port)


__all__ = [
    "DEFAULT_DEVICE_URL",
    "DeviceChoice",
    "DriverError",
    "OpenedDevice",
    "choose_device",
    "is_simulator_url",
    "open_device",
]
