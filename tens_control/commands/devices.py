"""``tens-control devices``: serial ports that may be TENS units, and the built-in simulator.

A port whose USB id belongs to a built-in profile is named with that profile. A Hasomed P24
(USB id 0483:5740, the STM32 virtual COM port that other STM32 boards share too) is opened and
confirmed by its device id -- a short exchange that changes nothing and leaves every output at
0 mA -- unless ``--no-probe`` is given.
"""

from __future__ import annotations

import argparse
from typing import Any

from drivers.limits import DeviceProfile, builtin_profiles
from drivers.transport import PortInfo, list_ports

PROBE_PROTOCOLS = ("sciencemode4",)
"""Protocols whose devices are confirmed by asking them who they are (a P24 answers at once;
a RehaStim 2 would have to be listened to for up to 2.5 s, so FTDI ports are only named)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("devices", help="list serial ports, known device profiles and the simulator")
    p.set_defaults(command="devices")
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="do not open ports to confirm what is on them (P24s are asked for their device id)",
    )


def usb_profile(port: PortInfo) -> DeviceProfile | None:
    """The built-in profile whose USB id the port has (an exact VID:PID match first)."""
    if port.vid is None:
        return None
    matches = [
        (usb.pid is not None, profile)
        for profile in builtin_profiles().values()
        for usb in profile.usb
        if usb.vid == port.vid and usb.pid in (None, port.pid)
    ]
    matches.sort(key=lambda match: not match[0])
    return matches[0][1] if matches else None


def confirm(port: PortInfo, profile: DeviceProfile) -> str:
    """Open the port, ask the device who it is, close it: one line for people."""
    from drivers.base import DriverError  # imported here: listing stays fast without a probe
    from drivers.clock import RealClock
    from tens_control.device import open_device

    clock = RealClock()
    try:
        try:
            opened = open_device(port.device, clock, protocol=profile.protocol, profile=profile.id)
        except DriverError as error:
            return f"not confirmed as a {profile.model}: {error}"
        info = opened.info
        opened.driver.close()
    finally:
        clock.close()
    return (
        f"{profile.model} confirmed: device id {info.serial_number}, firmware {info.firmware}, "
        f"{info.protocol} {info.protocol_version} (profile {profile.id})"
    )


def run(args: argparse.Namespace) -> int:
    ports = list_ports()
    print("Serial ports:")
    if not ports:
        print("  (none found)")
    for port in ports:
        print(f"  {port.describe()}")
        profile = usb_profile(port)
        if profile is None:
            continue
        if profile.protocol in PROBE_PROTOCOLS and not args.no_probe:
            print(f"      {confirm(port, profile)}")
        else:
            print(f"      looks like: {profile.name} (profile {profile.id})")
    print("Built-in simulator (no stimulation is delivered):")
    print("  sim://tsp            TSP simulator in this process")
    print("  sim://sciencemode2   RehaStim 2 emulation in this process")
    print("  sim://sciencemode4   P24 emulation in this process")
    print("  tens-sim --pty       simulator in another process on a pseudo-terminal")
    print("Device profiles:")
    for profile in builtin_profiles().values():
        print(f"  {profile.id:14} {profile.name}")
    return 0
