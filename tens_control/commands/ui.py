"""``tens-control`` (or ``tens-control ui``): open the patient UI.

With no device given or saved, the UI connects to the built-in simulator and says so on every
screen. ``--device URL`` picks a unit for this run (``tens-control devices`` lists ports); the
connect screen can save a choice. This module imports nothing heavy until ``run`` (start-up
speed): Textual, the store and the session layer load when the UI starts.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ui",
        help="open the patient UI (the default when no command is given)",
        description="Open the patient UI. Without --device it uses the saved device, or the "
        "built-in simulator (which delivers no stimulation).",
    )
    p.set_defaults(command="ui")
    p.add_argument(
        "--device",
        metavar="URL",
        default=None,
        help="the TENS unit for this run: a port (/dev/ttyUSB0, COM3), socket://HOST:PORT, "
        "or sim://tsp for the simulator (default: the saved device, else the simulator)",
    )
    p.add_argument(
        "--protocol", choices=("tsp", "sciencemode2", "sciencemode4"), default=None, help="protocol"
    )
    p.add_argument("--profile", metavar="ID", default=None, help="device profile id")
    p.add_argument(
        "--simulator",
        action="store_true",
        help="use the built-in simulator even if a device is saved",
    )
    # --db and --patient, as the other commands have them (defined here so that the store
    # package is not imported before the first screen)
    p.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="database file (default: $TENS_CONTROL_DB, else the user data directory)",
    )
    p.add_argument(
        "--patient",
        metavar="ID",
        default=None,
        help="patient pseudonym (default: $TENS_CONTROL_PATIENT, the saved patient, else "
        "patient-1)",
    )
    # for tests and demonstrations: a shorter session than prescribed (never longer)
    p.add_argument("--session-minutes", type=float, default=None, help=argparse.SUPPRESS)
    # for the end-to-end test of a week of use: the calendar runs this many days ahead
    p.add_argument("--days-ahead", type=float, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from tens_control.errors import TensControlError

    minutes = getattr(args, "session_minutes", None)
    if minutes is not None and not minutes > 0:
        raise TensControlError("--session-minutes must be a positive number of minutes")
    device = getattr(args, "device", None)
    if getattr(args, "simulator", False):
        if device is not None:
            raise TensControlError("give either --device or --simulator, not both")
        device = "sim://tsp"
    from tens_control.ui.app import UiOptions, make_app, run_ui

    wall = None
    days = getattr(args, "days_ahead", None)
    if days is not None:
        from datetime import UTC, datetime, timedelta

        ahead = timedelta(days=days)

        def wall() -> datetime:
            return datetime.now(UTC) + ahead

    options = UiOptions(
        wall=wall,
        device=device,
        protocol=getattr(args, "protocol", None),
        profile=getattr(args, "profile", None),
        db=getattr(args, "db", None),
        patient=getattr(args, "patient", None),
        session_minutes=minutes,
    )
    return run_ui(make_app(options=options))
