"""``tens-control``: the entry point. With no command it opens the patient UI.

Each command lives in its own module under ``tens_control.commands`` and provides
``add_parser(subparsers)`` and ``run(args) -> int``. Errors a user can cause are printed as one
line naming what is wrong and what to do -- never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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

GLOBAL_OPTIONS = ("--db", "--patient")
"""Options (each taking a value) that may also come before the command:
``tens-control --db X verify`` is ``tens-control verify --db X``."""

EXIT_BROKEN_PIPE = 128 + 13
"""Exit status when the reader of our output went away (``| head``): 128 + SIGPIPE, as a
shell reports a program killed by SIGPIPE."""


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
        epilog="--db PATH and --patient ID may be given before or after the command "
        "(tens-control --db X verify). Data, permissions and read-only media: docs/data.md.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        if load_all or name == only:
            _load(name).add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """Move global options given before the command (:data:`GLOBAL_OPTIONS`, as ``--db X`` or
    ``--db=X``) behind it, where the command's parser reads them; anything else is left as it
    is (no command after them: the options go to the default command)."""
    leading: list[str] = []
    i = 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        if name not in GLOBAL_OPTIONS:
            break
        takes = 1 if "=" in args[i] else 2
        leading.extend(args[i : i + takes])
        i += takes
    rest = list(args[i:])
    if not leading or not rest or rest[0] not in COMMANDS:
        return list(args)
    # at the end (before a "--"), so that a command with sub-commands (prescription show)
    # gets them in the innermost parser
    end = rest.index("--") if "--" in rest else len(rest)
    return [*rest[:end], *leading, *rest[end:]]


class _OneLine(logging.Formatter):
    """A warning or error the program logs, as one line (``tens-control: warning: ...``):
    no traceback (set TENS_CONTROL_DEBUG=1 to get them)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"tens-control: {record.levelname.lower()}: {record.getMessage()}"
        if os.environ.get("TENS_CONTROL_DEBUG") and record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _log_to_stderr() -> None:
    """Commands (not the UI, which owns the terminal) print logged warnings and errors as one
    line each, unless logging was configured already (by a test, or a program embedding us)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)


def _broken_pipe() -> int:
    """The reader of standard output has gone (``tens-control devices | head -1``): no
    traceback, and nothing more is written (standard output now points at devnull, so that the
    final flush at exit cannot fail again)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _broken_pipe()


def _main(argv: Sequence[str] | None) -> int:
    storage = sys.modules.get("tens_control.commands.storage")
    if storage is not None:  # a database made before this command (a caller's) is not its news
        storage.CREATED.clear()
    args_list = hoist_global_options(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list = [DEFAULT_COMMAND, *args_list]
    parser = build_parser(only=args_list[0])
    args = parser.parse_args(args_list)
    command = args.command or DEFAULT_COMMAND
    if command != DEFAULT_COMMAND:
        _log_to_stderr()
    status = 2
    try:
        status = int(_load(command).run(args))
        return status
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
        status = 130
        return status
    finally:
        storage = sys.modules.get("tens_control.commands.storage")  # loaded by a write command
        if storage is not None:
            storage.announce_created(status)
