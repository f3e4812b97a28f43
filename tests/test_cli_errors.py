"""Every command keeps its one-line errors when the file system or the reader of its output does
not cooperate (issue 12, points 7-11, 16, 17): a closed pipe, a read-only or non-writable folder,
a mistyped --db, a database on read-only media, global options before the command, a full disk,
and NaN in a bundle. Each case runs the real CLI in a subprocess, as a user would.

A folder "really" refuses writes here: as a normal user by its mode bits; as root (CI), whom mode
bits do not stop, by also making it immutable (``chattr +i``, which stops root too; .ci/run
installs e2fsprogs for it). The fixture first proves that a file cannot be created there.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.clock import VirtualClock
from tens_control.cli import EXIT_BROKEN_PIPE, hoist_global_options, main
from tens_control.store import (
    Actor,
    AmplitudeChanged,
    CommandSent,
    EndReason,
    InvalidRecordError,
    Store,
)
from tens_control.ui.app import make_app
from tens_control.ui.review.app import make_review_app
from tests.store_support import DEVICE, PLAN, open_virtual, run_session
from tests.ui_support import screen_text, settle, wait_for

ROOT = os.geteuid() == 0


@dataclass
class Cli:
    """Runs ``python -m tens_control`` with a private home, config and no $TENS_CONTROL_DB."""

    home: Path
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
        )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The process failed with exactly one line on stderr, and no traceback anywhere."""
    assert "Traceback" not in done.stderr + (done.stdout or ""), done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tens-control: "), lines[0]
    return lines[0]


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


# --------------------------------------------------------------------------- 8-10: folders


@dataclass
class Locked:
    """``folder`` refuses writes for real once :meth:`lock` ran: by its mode bits, and as root
    (whom they do not stop) by being immutable. Until then it can be filled."""

    folder: Path
    immutable: list[Path] = field(default_factory=list)

    def lock(self) -> None:
        files = list(self.folder.iterdir())
        for file in files:
            file.chmod(0o444)
        self.folder.chmod(0o555)
        if ROOT:
            for path in [*files, self.folder]:
                done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
                assert done.returncode == 0, f"chattr +i {path} (how root is refused): {done}"
                self.immutable.append(path)
        with pytest.raises(PermissionError):
            (self.folder / "probe").open("x")

    def unlock(self) -> None:
        for path in reversed(self.immutable):
            subprocess.run(["chattr", "-i", str(path)], check=True)
        self.immutable.clear()
        self.folder.chmod(0o755)

    def listing(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir())


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Locked]:
    folder = tmp_path / "ro"
    folder.mkdir()
    locked = Locked(folder=folder)
    try:
        yield locked
    finally:
        locked.unlock()


def make_log(path: Path) -> Path:
    clock = VirtualClock()
    with open_virtual(path, clock) as store:
        run_session(store, clock, samples=20)
    return path


def prescription_file(folder: Path) -> Path:
    path = folder / "rx.toml"
    assert main(["prescription", "new", "-o", str(path)]) == 0
    return path


def bundle_file(db: Path, folder: Path) -> Path:
    path = folder / "bundle.json"
    assert main(["export", "--db", str(db), "-o", str(path)]) == 0
    return path


def write_command(name: str, db: Path, rx: Path, bundle: Path) -> list[str]:
    args = {
        "screening": ["screening", "--none"],
        "prescription import": ["prescription", "import", str(rx)],
        "import": ["import", str(bundle)],
        "run": ["run", "--virtual-time", "--program", "conventional", "--seconds", "2"],
    }[name]
    return [*args, "--db", str(db)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A prescription file and an export bundle (the input of the write commands)."""
    folder = tmp_path_factory.mktemp("inputs")
    rx = prescription_file(folder)
    bundle = bundle_file(make_log(folder / "source.sqlite3"), folder)
    return rx, bundle


@pytest.mark.parametrize("command", ["screening", "prescription import", "import", "run"])
def test_a_new_database_in_a_read_only_folder_is_refused_in_one_line(
    locked: Locked, cli: Cli, inputs: tuple[Path, Path], command: str
) -> None:
    locked.lock()
    db = locked.folder / "x.db"
    done = cli.run(*write_command(command, db, *inputs))
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done)
    assert f"cannot write the database {db}" in line
    assert f"the folder {locked.folder} is read-only" in line
    assert "--db" in line  # what to do
    assert locked.listing() == []


@pytest.mark.parametrize("command", ["screening", "prescription import", "import", "run"])
def test_a_database_on_read_only_media_is_not_written_by_write_commands(
    locked: Locked, cli: Cli, inputs: tuple[Path, Path], command: str
) -> None:
    db = make_log(locked.folder / "log.sqlite3")
    before = db.read_bytes()
    files = locked.listing()
    locked.lock()
    done = cli.run(*write_command(command, db, *inputs))
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done)
    assert f"cannot write the database {db}" in line
    assert "read-only" in line
    assert "nothing was written" in line
    assert db.read_bytes() == before
    assert locked.listing() == files


def test_a_report_into_a_read_only_folder_is_one_line(
    locked: Locked, cli: Cli, tmp_path: Path
) -> None:
    db = make_log(tmp_path / "log.sqlite3")
    locked.lock()
    out = locked.folder / "r.pdf"
    done = cli.run("report", "--format", "pdf", "-o", str(out), "--db", str(db))
    assert done.returncode == 2
    line = one_line_error(done)
    assert f"cannot write {out}" in line
    assert "-o" in line
    assert locked.listing() == []


def test_read_commands_read_a_database_on_read_only_media(locked: Locked, cli: Cli) -> None:
    db = make_log(locked.folder / "log.sqlite3")
    before = db.read_bytes()
    files = locked.listing()
    assert not [name for name in files if name.endswith(("-wal", "-shm"))]
    locked.lock()
    verify = cli.run("verify", "--db", str(db))
    assert verify.returncode == 0, verify.stderr
    assert "intact" in verify.stdout.lower(), verify.stdout
    report = cli.run("report", "--format", "json", "-o", "-", "--db", str(db))
    assert report.returncode == 0, report.stderr
    assert '"sessions"' in report.stdout
    show = cli.run("--db", str(db), "prescription", "show", "--current")
    assert show.returncode == 0, show.stderr
    assert "over-the-counter defaults" in show.stdout
    export = cli.run("export", "-o", "-", "--db", str(db))
    assert export.returncode == 0, export.stderr
    assert '"chains"' in export.stdout
    # the clinician review UI's store, on the same media
    review = make_review_app(db)
    try:
        assert review.source.pseudonyms() == ["patient-1"]
    finally:
        review.source.close()
    assert db.read_bytes() == before
    assert locked.listing() == files


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_the_ui_says_what_is_wrong_with_a_read_only_folder(
    locked: Locked, size: tuple[int, int]
) -> None:
    """The patient UI, as it starts from the command line with --db in a read-only folder: the
    store's sentence on the screen, not "Something went wrong (OSError ...)"."""
    locked.lock()
    db = locked.folder / "x.db"
    app = make_app(db=str(db), live=False, screening_on_start=False)
    try:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, app, lambda: app.backend_error is not None, "error", tries=200)
            await settle(pilot, app)
            assert app.backend_error is not None
            assert app.backend_error.startswith(f"Cannot write the database {db}: the folder")
            assert "read-only" in app.backend_error
            text = " ".join(screen_text(app).split())
            assert "could not start: Cannot write the database" in text
            assert "Something went wrong" not in text
    finally:
        app.calls.close()
    assert locked.listing() == []


# --------------------------------------------------------------------------- 9: a mistyped --db


@pytest.mark.parametrize("command", ["screening", "prescription import", "import", "run"])
def test_a_mistyped_db_folder_is_not_created(
    cli: Cli, tmp_path: Path, inputs: tuple[Path, Path], command: str
) -> None:
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    done = cli.run(*write_command(command, db, *inputs))
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done)
    assert f"there is no folder {db.parent} for the database {db}" in line
    assert "typo" in line
    assert not (tmp_path / "nonexistent").exists()


def test_read_commands_say_there_is_no_database(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    for args in (
        ["verify"],
        ["report", "--format", "json", "-o", "-"],
        ["export", "-o", "-"],
    ):
        done = cli.run(*args, "--db", str(db))
        assert done.returncode == 2, args
        assert f"there is no database at {db}" in one_line_error(done)
    assert not (tmp_path / "nonexistent").exists()


def test_a_new_database_in_an_existing_folder_is_announced(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite3"
    done = cli.run("screening", "--none", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"tens-control: note: created a new database at {db}\n"
    again = cli.run("screening", "--none", "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


def test_the_default_data_folder_is_still_created(cli: Cli) -> None:
    done = cli.run("screening", "--none")
    assert done.returncode == 0, done.stderr
    db = cli.home / "data" / "tens-control" / "tens-control.sqlite3"
    assert db.is_file()
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert f"created a new database at {db}" in done.stderr


def test_a_file_in_place_of_the_folder(cli: Cli, tmp_path: Path) -> None:
    """Fails for root too: no one can create a file under a file."""
    (tmp_path / "afile").write_text("not a folder")
    db = tmp_path / "afile" / "x.db"
    done = cli.run("screening", "--none", "--db", str(db))
    assert done.returncode == 2
    line = one_line_error(done)
    assert f"cannot write the database {db}: {tmp_path / 'afile'} is a file, not a folder" in line
    assert (tmp_path / "afile").read_text() == "not a folder"


# --------------------------------------------------------------------------- 17: NaN in a bundle


def damaged_bundle(folder: Path, where: str) -> tuple[Path, str]:
    """An exported bundle with one number made NaN or Infinity (json writes them as the
    literals NaN / Infinity, as a careless editor or a broken tool would), and the words the
    error must name."""
    db = make_log(folder / "source.sqlite3")
    clean = bundle_file(db, folder)
    bundle = json.loads(clean.read_text())
    if where == "event":
        (event,) = [e for e in bundle["chains"][0]["events"] if e["kind"] == "amplitude_changed"][
            :1
        ]
        event["payload"]["to_ma"] = float("nan")
        expected = f"event seq {event['seq']} (amplitude_changed)"
        expected += f" of chain {bundle['chains'][0]['uid'][:8]}: its payload.to_ma is nan"
    else:
        row = bundle["records"]["pain_ratings"][0]
        row["extra"] = [1, float("-inf")]
        expected = f"pain_ratings record {row['uid']}: its extra[1] is -inf"
    path = folder / f"damaged-{where}.json"
    path.write_text(json.dumps(bundle))
    assert ("NaN" if where == "event" else "-Infinity") in path.read_text()
    return path, expected


@pytest.mark.parametrize("where", ["event", "record"])
def test_nan_or_infinity_in_a_bundle_is_one_clear_line(
    cli: Cli, tmp_path: Path, where: str
) -> None:
    path, expected = damaged_bundle(tmp_path, where)
    verify = cli.run("verify", "--bundle", str(path))
    assert verify.returncode == 2
    line = one_line_error(verify)
    assert f"{path}: this bundle is damaged: {expected}" in line
    assert "not a finite number" in line
    assert "fresh export" in line
    target = tmp_path / "clinic.sqlite3"
    imported = cli.run("import", str(path), "--db", str(target))
    assert imported.returncode == 2
    line = one_line_error(imported)
    assert f"{path} was refused and nothing was imported" in line
    assert expected in line
    assert not target.exists()


def test_the_store_never_logs_nan(tmp_path: Path) -> None:
    clock = VirtualClock()
    with open_virtual(tmp_path / "log.sqlite3", clock) as store:
        store.ensure_patient()
        sid = store.begin_session(PLAN, device=DEVICE)
        before = store.events(session=sid)
        # the store's own records refuse it where they are made ...
        with pytest.raises(ValidationError, match="finite number"):
            CommandSent(command="set", channel=1, args={"ma": float("nan")})
        # ... and the store refuses any record holding one (the governor's events, or one that
        # slipped past its model), naming the field
        nan = AmplitudeChanged(
            time=1.0, channel=1, from_ma=0.0, to_ma=float("nan"), who=Actor.PATIENT
        )
        with pytest.raises(InvalidRecordError, match=r"payload\.to_ma is nan, not a finite"):
            store.append_event(sid, nan)
        sneaked = CommandSent.model_construct(
            kind="command", command="set", channel=1, args={"ma": float("inf")}, ok=True, error=""
        )
        with pytest.raises(InvalidRecordError, match=r"payload\.args\.ma is inf, not a finite"):
            store.append_event(sid, sneaked)
        assert store.events(session=sid) == before
        store.end_session(sid, EndReason.COMPLETED)
        assert store.verify().ok


# --------------------------------------------------------------------------- 16: a full disk


def file_size_limit(kib: int) -> Callable[[], object]:
    """``ulimit -f KIB`` for the child: no file it writes may grow beyond that (a write beyond
    fails with EFBIG, as a full disk fails with ENOSPC)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return limit


RUN = ["run", "--virtual-time", "--program", "conventional", "--minutes", "30", "--target-ma", "5"]


def test_a_full_disk_mid_session_stops_and_closes_the_session(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite3"
    assert cli.run("screening", "--none", "--db", str(db)).returncode == 0
    # room for the start and some seconds of telemetry (200 KiB more than the database has),
    # then none, even after a checkpoint
    limit = file_size_limit(db.stat().st_size // 1024 + 200)
    done = cli.run(*RUN, "--db", str(db), preexec=limit)
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_line_error(done)
    assert line.startswith("tens-control: session ended: host crash (the session log could not")
    assert f"cannot write the database {db}: the disk is full" in line
    status = [row for row in done.stdout.splitlines() if row.startswith("time=")]
    assert "state=running" in status[0], "it did start"
    assert len(status) < 600, "the session stopped when the disk was full, not at its end"
    assert "state=ended" in status[-1]
    assert "ch1_ma=0 " in status[-1]
    assert "ch2_ma=0 " in status[-1]
    # the session is closed with what could be written, and the log is intact
    with Store.open_to_read(db) as store:
        (session,) = store.sessions()
        assert session.end_reason is EndReason.HOST_CRASH
        assert session.ended_at is not None
        (end,) = store.events(session=session.uid, kinds=["session_ended"])
        assert "the disk is full" in end.payload["detail"]
        report = store.verify()
        assert report.ok, report.summary()
        assert report.unsealed_rows == 0


def test_a_full_disk_at_the_start_says_so(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite3"
    assert cli.run("screening", "--none", "--db", str(db)).returncode == 0
    before = db.read_bytes()
    done = cli.run(*RUN, "--db", str(db), preexec=file_size_limit(8))
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done)
    assert f"cannot write the database {db}: the disk is full" in line
    assert "choose a program first" not in line
    assert "state=running" not in done.stdout
    with Store.open_to_read(db) as store:
        assert store.sessions() == []
        assert store.verify().ok
    assert len(db.read_bytes()) == len(before)
