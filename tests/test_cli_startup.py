"""`tens-control --help` lists every command without importing any (issue 15: start-up near
its floor), and says exactly what each command's own parser says."""

from __future__ import annotations

import subprocess
import sys

from tens_control.cli import COMMANDS, build_parser


def test_the_command_list_says_what_each_commands_parser_says() -> None:
    assert build_parser().format_help() == build_parser(load_all=True).format_help()


def test_help_imports_no_command_and_no_heavy_library() -> None:
    probe = (
        "import sys\n"
        "from tens_control.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(done.stdout.split("\n")[-2].split())
    assert "COMMAND" in done.stdout
    heavy = {"sqlalchemy", "textual", "pydantic", "serial", "cryptography", "fpdf"}
    commands = {module for module, _ in COMMANDS.values()}
    assert not (heavy | commands) & loaded
    assert not any(m.startswith("tens_control.session") for m in loaded)
