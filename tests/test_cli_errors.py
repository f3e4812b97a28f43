"""Every command keeps its one-line errors when the file system or the reader of its output does
not cooperate (issue 12, points 7-11, 16, 17): a closed pipe, a read-only or non-writable folder,
a mistyped --db, a database on read-only media, global options before the command, a full disk,
and NaN in a bundle. Each case runs the real CLI in a subprocess, as a user would.

A folder "really" refuses writes here: as a normal user by its mode bits; as root (CI), whom mode
bits do not stop, the CLI runs as the unprivileged uid 65534 ("nobody", which needs no entry in
/etc/passwd), and the fixture first proves that this user cannot create a file there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.clock import VirtualClock
from tens_control.cli import EXIT_BROKEN_PIPE, hoist_global_options
from tests.store_support import open_virtual, run_session

NOBODY = 65534
ROOT = os.geteuid() == 0


@dataclass
class Cli:
    """Runs ``python -m tens_control`` with a private home, config and no $TENS_CONTROL_DB; as
    ``user`` if given (root only)."""

    home: Path
    user: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENS_CONTROL_")}
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            TENS_CONTROL_CONFIG=str(self.home / "config.toml"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(self.extra_env)
        return env

    def run(
        self, *args: str, stdout: int | None = None, preexec: Callable[[], object] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tens_control", *args],
            env=self.env(),
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=self.home,
            preexec_fn=preexec,
            user=self.user,
            group=self.user,
            extra_groups=None if self.user is None else [],
        )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The process failed with exactly one line on stderr, and no traceback anywhere."""
    assert "Traceback" not in done.stderr + (done.stdout or ""), done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tens-control: "), lines[0]
    return lines[0]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A scratch folder every user can enter (pytest's tmp_path is private to its owner, so
    uid 65534 could not even reach a folder inside it)."""
    path = Path(tempfile.mkdtemp(prefix="tc-cli-errors-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for folder in [path, *path.rglob("*")]:
            if folder.is_dir() and not folder.is_symlink():
                folder.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(home=tmp_path)


# --------------------------------------------------------------------------- 7: a closed pipe


def closed_pipe() -> tuple[int, int]:
    """A pipe whose reader has already gone, as after ``| head -1`` has read its line."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return read_end, write_end


@pytest.mark.parametrize(
    "args",
    [
        ("devices",),
        ("prescription", "show", "--current"),
        ("verify",),
        ("--help",),
    ],
)
def test_a_closed_pipe_ends_quietly(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    db = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(db, clock) as store:
        run_session(store, clock, samples=20)
    cli.extra_env["TENS_CONTROL_DB"] = str(db)
    full = cli.run(*args)
    assert full.returncode == 0, full.stderr
    assert full.stdout.strip(), "the command prints something to cut short"
    _, write_end = closed_pipe()
    try:
        cut = cli.run(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert "Traceback" not in cut.stderr, cut.stderr
    assert "BrokenPipe" not in cut.stderr, cut.stderr
    assert "Exception ignored" not in cut.stderr, cut.stderr
    assert cut.returncode in (0, EXIT_BROKEN_PIPE)
    if args != ("--help",):  # argparse's help exits 0 whatever its write did
        assert cut.returncode == EXIT_BROKEN_PIPE


def test_head_in_a_real_shell_pipeline(cli: Cli) -> None:
    """The case as typed: ``tens-control devices | head -1`` prints the first line only."""
    done = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -m tens_control devices | head -1'],
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout == "Serial ports:\n"
    assert done.stderr == ""


# --------------------------------------------------------------------------- 11: global options


def test_global_options_are_moved_behind_the_command() -> None:
    assert hoist_global_options(["--db", "X", "verify"]) == ["verify", "--db", "X"]
    assert hoist_global_options(["--db=X", "--patient", "p", "report", "-o", "-"]) == [
        "report",
        "-o",
        "-",
        "--db=X",
        "--patient",
        "p",
    ]
    assert hoist_global_options(["--db", "X", "prescription", "show", "--current"]) == [
        "prescription",
        "show",
        "--current",
        "--db",
        "X",
    ]
    # no command after them: the UI gets them, as before
    assert hoist_global_options(["--db", "X", "--simulator"]) == ["--db", "X", "--simulator"]
    assert hoist_global_options(["verify", "--db", "X"]) == ["verify", "--db", "X"]


@pytest.mark.parametrize("before", [True, False])
def test_db_before_or_after_the_command(cli: Cli, tmp_path: Path, before: bool) -> None:
    db = tmp_path / "log.sqlite3"
    clock = VirtualClock()
    with open_virtual(db, clock) as store:
        run_session(store, clock, samples=20)
    args = ["--db", str(db), "verify"] if before else ["verify", "--db", str(db)]
    done = cli.run(*args)
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout.lower() or "ok" in done.stdout.lower(), done.stdout
    show = cli.run("--db", str(db), "--patient", "patient-1", "prescription", "show", "--current")
    assert show.returncode == 0, show.stderr
    # the option before the command really reached it: another database says there is none
    other = cli.run("--db", str(tmp_path / "none.sqlite3"), "verify")
    assert "there is no database at" in one_line_error(other)
    assert str(tmp_path / "none.sqlite3") in other.stderr
