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

# command name -> (module implementing it, its one-line help). Modules are imported only for
# the command run: `tens-control --help` lists the commands from this table alone (a test checks
# it says what each module's own parser says).
COMMANDS: dict[str, tuple[str, str]] = {
    "devices": (
        "tens_control.commands.devices",
        "list serial ports, known device profiles and the simulator",
    ),
    "run": ("tens_control.commands.run", "run one whole session without the UI (scripts, tests)"),
    "verify": (
        "tens_control.commands.verify",
        "check the session log for edited, inserted or deleted records",
    ),
    "export": (
        "tens_control.commands.export",
        "write all of a patient's data to a self-verifying JSON file",
    ),
    "delete-patient": (
        "tens_control.commands.delete_patient",
        "delete all of a patient's data (asks for confirmation)",
    ),
    "prescription": (
        "tens_control.commands.prescription",
        "write, check and import a clinician's prescription (TOML)",
    ),
    "screening": (
        "tens_control.commands.screening",
        "answer the safety questions before the first session (clinicians: --override)",
    ),
    "enrol": (
        "tens_control.commands.enrol",
        "pin your clinic's enrolment file (its keys then sign your prescriptions)",
    ),
    "clinician": (
        "tens_control.commands.clinician",
        "clinicians: make a signing key, write a patient's enrolment file",
    ),
    "report": (
        "tens_control.commands.report",
        "write a patient's clinician report (html, pdf, csv, json or fhir)",
    ),
    "import": (
        "tens_control.commands.import_bundle",
        "import a patient's exported bundle (verified first)",
    ),
    "review": (
        "tens_control.commands.review",
        "clinicians: review patients' sessions, pain and faults, and export reports",
    ),
    "ui": (
        "tens_control.commands.ui",
        "open the patient UI (the default when no command is given)",
    ),
}
DEFAULT_COMMAND = "ui"
"""Run when no command is given (options alone, e.g. ``--device URL``, go to it)."""


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


def build_parser(only: str | None = None, *, load_all: bool = False) -> argparse.ArgumentParser:
    """The parser. The command ``only`` gets its full parser (its module imported); every other
    command is listed by name and help alone, unless ``load_all``."""
    parser = argparse.ArgumentParser(
        prog="tens-control",
        description="Run TENS sessions safely, log them, and review them. "
        "With no command, opens the patient UI (on the built-in simulator unless a device "
        "is configured).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        if load_all or name == only:
            _load(name).add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list = [DEFAULT_COMMAND, *args_list]
    parser = build_parser(only=args_list[0])
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
