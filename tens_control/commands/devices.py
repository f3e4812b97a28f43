"""``tens-control devices``: serial ports that may be TENS units, and the built-in simulator."""

from __future__ import annotations

import argparse
from typing import Any

from drivers.limits import builtin_profiles
from drivers.transport import list_ports


def add_parser(sub: Any) -> None:
    p = sub.add_parser("devices", help="list serial ports, known device profiles and the simulator")
    p.set_defaults(command="devices")


def run(args: argparse.Namespace) -> int:
    ports = list_ports()
    print("Serial ports:")
    if not ports:
        print("  (none found)")
    for port in ports:
        print(f"  {port.describe()}")
    print("Built-in simulator (no stimulation is delivered):")
    print("  sim://tsp            TSP simulator in this process")
    print("  sim://sciencemode2   RehaStim 2 emulation in this process")
    print("  tens-sim --pty       simulator in another process on a pseudo-terminal")
    print("Device profiles:")
    for profile in builtin_profiles().values():
        print(f"  {profile.id:14} {profile.name}")
    return 0
