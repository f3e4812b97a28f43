"""``tens-control``: the entry point. With no command it opens the patient UI.

Each command lives in its own module under ``tens_control.commands`` and provides
``add_parser(subparsers)`` and ``run(args) -> int``. Errors a user can cause are printed as one
line naming what is wrong and what to do -- never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from drivers.base import DriverError
from tens_control.errors import TensControlError

# command name -> module implementing it (imported lazily, so `--help` stays fast)
COMMANDS: dict[str, str] = {
    "devices": "tens_control.commands.devices",
    "run": "tens_control.commands.run",
    "verify": "tens_control.commands.verify",
    "export": "tens_control.commands.export",
    "delete-patient": "tens_control.commands.delete_patient",
    "prescription": "tens_control.commands.prescription",
    "screening": "tens_control.commands.screening",
    "report": "tens_control.commands.report",
    "import": "tens_control.commands.import_bundle",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tens-control",
        description="Run TENS sessions safely, log them, and review them. "
        "With no command, opens the patient UI (on the built-in simulator unless a device "
        "is configured).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        _load(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    command = args.command or "ui"
    try:
        if command == "ui" and "ui" not in COMMANDS:
            return int(_load("devices").run(args))
        return int(_load(command).run(args))
    except (TensControlError, DriverError) as error:
        print(f"tens-control: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tens-control: interrupted", file=sys.stderr)
        return 130
