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
    "enrol": "tens_control.commands.enrol",
    "clinician": "tens_control.commands.clinician",
    "report": "tens_control.commands.report",
    "import": "tens_control.commands.import_bundle",
    "review": "tens_control.commands.review",
    "ui": "tens_control.commands.ui",
}
DEFAULT_COMMAND = "ui"
"""Run when no command is given (options alone, e.g. ``--device URL``, go to it)."""


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``only``: load just that command (the UI starts without importing the
    others)."""
    parser = argparse.ArgumentParser(
        prog="tens-control",
        description="Run TENS sessions safely, log them, and review them. "
        "With no command, opens the patient UI (on the built-in simulator unless a device "
        "is configured).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        _load(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list = [DEFAULT_COMMAND, *args_list]
    parser = build_parser(only=args_list[0] if args_list[0] == DEFAULT_COMMAND else None)
    args = parser.parse_args(args_list)
    command = args.command or DEFAULT_COMMAND
    try:
        return int(_load(command).run(args))
    except TensControlError as error:
        print(f"tens-control: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from drivers.base import DriverError  # imported late: the UI starts faster

        if not isinstance(error, DriverError):
            raise
        print(f"tens-control: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tens-control: interrupted", file=sys.stderr)
        return 130
