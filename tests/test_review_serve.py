"""``tens-control review --serve`` (tens_control/review/serve.py) without a browser: the real
server process, spoken to over HTTP and websockets with aiohttp's client.

The token (or the clinic password) on every request, the review command and nothing else, one
process per tab that ends with its tab, Ctrl-C, loopback by default, no serving beside a running
session, and the HTML report download of the review app. The browser end to end is in
tests/test_review_serve_browser.py.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tens_control.cli import build_parser
from tens_control.cli import main as cli_main
from tens_control.review import serve
from tens_control.store.lock import SessionLock
from tens_control.ui.review.app import make_review_app
from tests.serve_support import (
    REVIEW_DAY,
    Served,
    alive,
    clinic_db,
    cmdline,
    serve_command,
    serve_env,
    served,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clinic_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clinic_db(tmp_path_factory.mktemp("clinic"))


@pytest.fixture
def db(tmp_path: Path, clinic_template: Path) -> Path:
    copy = tmp_path / "clinic.sqlite3"
    copy.write_bytes(clinic_template.read_bytes())
    return copy


@pytest.fixture
def server(db: Path) -> Iterator[Served]:
    with served(db) as s:
        yield s


def client() -> aiohttp.ClientSession:
    """A browser-like client (one that keeps cookies set by an IP address such as
    127.0.0.1)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def open_tab(
    session: aiohttp.ClientSession, s: Served, query: str = ""
) -> aiohttp.ClientWebSocketResponse:
    """A tab's websocket, as textual.js opens it (with the cookie the session holds)."""
    return await session.ws_connect(
        f"ws://127.0.0.1:{s.port}/ws?width=100&height=30{query}",
        origin=s.base,
    )


async def drain(tab: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in tab:
        pass


async def let_in(session: aiohttp.ClientSession, s: Served) -> None:
    async with session.get(s.address, allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/"
    assert session.cookie_jar.filter_cookies(URL(s.base))[s.cookie].value == s.token


# --- the token --------------------------------------------------------------------------------


async def test_without_the_token_nothing_of_the_app_is_served(server: Served) -> None:
    async with client() as session:
        for path in ("/", "/static/js/textual.js", "/static/css/xterm.css", "/download/x"):
            async with session.get(server.base + path, allow_redirects=False) as response:
                body = await response.text()
                assert response.status == 403, path
                assert "textual.js" not in body, path
                assert "terminal" not in body, path
        async with session.get(server.base + "/") as response:
            assert "?token=" in await response.text()  # says what to open instead
        async with session.get(server.base + "/?token=wrong" + server.token[5:]) as response:
            assert response.status == 403
            assert "not the one the server printed" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_tab(session, server)
        assert refused.value.status == 403
    assert server.review_processes() == set()  # no process was started for anyone


async def test_the_token_sets_a_cookie_that_opens_the_page_and_the_tab(server: Served) -> None:
    async with client() as session:
        await let_in(session, server)
        async with session.get(server.base + "/") as page:
            assert page.status == 200
            body = await page.text()
            assert "textual.js" in body
            assert f'data-session-websocket-url="ws://127.0.0.1:{server.port}/ws"' in body
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
            assert page.headers["Referrer-Policy"] == "no-referrer"
        cookie = next(c for c in session.cookie_jar if c.key == server.cookie)
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        async with session.get(server.base + "/static/js/textual.js") as script:
            assert script.status == 200


async def test_a_page_of_another_origin_cannot_open_a_tab(server: Served) -> None:
    async with client() as session:
        await let_in(session, server)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"ws://127.0.0.1:{server.port}/ws", origin="http://evil")
        assert refused.value.status == 403
    assert server.review_processes() == set()


async def test_the_clinic_password_opens_the_review_instead_of_the_token(
    db: Path, tmp_path: Path
) -> None:
    config = tmp_path / "clinic.toml"
    config.write_text(
        f'[review.serve]\npassword_hash = "{serve.hash_password("correct horse battery")}"\n'
    )
    with served(db, "--clinic-config", str(config)) as s:
        async with client() as session:
            async with session.get(s.base + "/") as page:
                assert page.status == 403
                assert 'type="password"' in await page.text()
            login = s.base + "/login"
            async with session.post(login, data={"password": "wrong"}) as wrong:
                assert wrong.status == 403
                assert "Wrong password" in await wrong.text()
            assert s.cookie not in {c.key for c in session.cookie_jar}
            async with session.post(
                login, data={"password": "correct horse battery"}, allow_redirects=False
            ) as right:
                assert right.status == 302
            async with session.get(s.base + "/") as page:
                assert page.status == 200
                assert "textual.js" in await page.text()


async def test_wrong_passwords_pause_logins(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "clinic.toml"
    config.write_text(f'[review.serve]\npassword_hash = "{serve.hash_password("x" * 12)}"\n')
    with served(db, "--clinic-config", str(config)) as s:
        async with client() as session:
            statuses = []
            for _ in range(serve.LOGIN_FAILURES_PER_MINUTE + 1):
                async with session.post(s.base + "/login", data={"password": "no"}) as r:
                    statuses.append(r.status)
            async with session.post(s.base + "/login", data={"password": "x" * 12}) as r:
                statuses.append(r.status)
    assert statuses == [403] * serve.LOGIN_FAILURES_PER_MINUTE + [429, 429]


def test_password_hashes_check_and_the_settings_name_what_is_wrong(tmp_path: Path) -> None:
    stored = serve.hash_password("a long password")
    assert serve.check_password("a long password", stored)
    assert not serve.check_password("a long passwore", stored)
    assert stored != serve.hash_password("a long password")  # salted
    config = tmp_path / "clinic.toml"
    assert serve.load_serve_settings(config).password_hash is None  # no file: the token only
    config.write_text('[review.serve]\npassword_hash = "hunter2"\n')
    with pytest.raises(serve.ServeError, match=r"password_hash.*--hash-password"):
        serve.load_serve_settings(config)
    config.write_text('[review.serve]\npasword = "x"\n')
    with pytest.raises(serve.ServeError, match=r"pasword.*known settings are: password_hash"):
        serve.load_serve_settings(config)
    config.write_text("[review.serve\n")
    with pytest.raises(serve.ServeError, match="not valid TOML"):
        serve.load_serve_settings(config)
    config.write_text('[database]\nurl = "x"\n')  # the clinic's other settings are not ours
    assert serve.load_serve_settings(config).password_hash is None


def test_hash_password_prints_the_line_for_the_clinic_configuration(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tens_control", "review", "--hash-password"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        check=True,
    )
    config = tmp_path / "clinic.toml"
    config.write_text(result.stdout)
    stored = serve.load_serve_settings(config).password_hash
    assert stored is not None
    assert serve.check_password("correct horse battery", stored)
    short = subprocess.run(
        [sys.executable, "-m", "tens_control", "review", "--hash-password"],
        input="short\n",
        capture_output=True,
        text=True,
    )
    assert short.returncode == 2
    assert "shorter than 12" in short.stderr
    assert short.stdout == ""


# --- the command and its processes -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["clinic.sqlite3", "--serve", "-x; tens-control ui", "$(tens-control ui)", "a b'c\"d.db"],
)
def test_the_served_command_is_the_review_whatever_the_file_is_called(
    tmp_path: Path, name: str
) -> None:
    db = tmp_path / name
    argv = shlex.split(serve.review_command(db, today=date(2026, 3, 30)))
    assert argv[:4] == [sys.executable, "-m", "tens_control", "review"]
    args = build_parser(only="review").parse_args(argv[3:])
    assert args.command == "review"
    assert not args.serve  # a tab never serves, and never runs anything but the review
    assert Path(args.db) == db.resolve()
    assert args.period_to == date(2026, 3, 30)


async def test_each_tab_is_one_review_process_that_ends_with_its_tab(
    server: Served, db: Path
) -> None:
    expected = shlex.split(serve.review_command(db, today=date.fromisoformat(REVIEW_DAY)))
    async with client() as session:
        await let_in(session, server)
        # a query string cannot choose what runs
        first = await open_tab(session, server, "&command=tens-control+ui&cmd=ui")
        second = await open_tab(session, server)
        pids = wait_for(
            "two review processes",
            lambda: server.review_processes() if len(server.review_processes()) == 2 else None,
        )
        for pid in pids:
            assert cmdline(pid)[-len(expected) + 1 :] == expected[1:]
        message = await asyncio.wait_for(first.receive(), 30)  # the app draws in the tab
        assert message.type == aiohttp.WSMsgType.BINARY
        await first.close()  # closing the tab ...
        # (the server says so once it has reaped the tab's process)
        closed = server.wait_line(r"tab closed \(process (\d+) ended; 1 open\)")
        assert int(closed[1]) in pids
        # ... ended its process, and only its process
        assert {pid for pid in pids if alive(pid)} == pids - {int(closed[1])}
        await second.close()
        server.wait_line(r"tab closed \(process \d+ ended; 0 open\)")
    assert not any(alive(pid) for pid in pids)
    assert server.review_processes() == set()


async def test_ctrl_c_closes_every_tab_and_stops(server: Served) -> None:
    async with client() as session:
        await let_in(session, server)
        tab = await open_tab(session, server)
        await asyncio.wait_for(tab.receive(), 30)
        pids = server.review_processes()
        assert len(pids) == 1
        # the tab reads on, as a browser does, until the server closes it
        drawn = asyncio.create_task(drain(tab))
        # Ctrl-C in the terminal: SIGINT to the server's process group (the tabs' processes
        # are in sessions of their own, so the server ends them)
        os.killpg(server.process.pid, signal.SIGINT)
        code = await asyncio.to_thread(server.process.wait, 30)
        await asyncio.wait_for(drawn, 30)
        assert tab.closed
    assert code == 0
    while server.read_line():
        pass
    assert any("stopped: every tab's review process has ended" in line for line in server.lines)
    assert not any(alive(pid) for pid in pids)


async def test_tabs_beyond_the_limit_are_refused(db: Path) -> None:
    with served(db, "--max-tabs", "1") as s:
        async with client() as session:
            await let_in(session, s)
            tab = await open_tab(session, s)
            await asyncio.wait_for(tab.receive(), 30)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await open_tab(session, s)
            assert refused.value.status == 503
            await tab.close()


# --- where and when it serves -----------------------------------------------------------------


def test_only_loopback_without_allow_remote(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.check_host("127.0.0.1", False) is None
    assert serve.check_host("::1", False) is None
    assert serve.check_host("localhost", False) is None
    with pytest.raises(serve.ServeError, match="--allow-remote"):
        serve.check_host("0.0.0.0", False)
    warning = serve.check_host("192.0.2.7", True)
    assert warning is not None
    assert "not encrypted" in warning
    assert cli_main(["review", "--serve", "--db", str(db), "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert cli_main(["review", "--db", str(db), "--port", "8000"]) == 2  # without --serve
    assert "only apply with --serve" in capsys.readouterr().err


def test_a_database_with_a_running_session_is_not_served(db: Path) -> None:
    lock = SessionLock(db)
    assert lock.acquire("pid 1 tens-control run (started 09:00)") is None
    try:
        result = subprocess.run(
            serve_command(db), capture_output=True, text=True, env=serve_env(), timeout=60
        )
    finally:
        lock.release()
    assert result.returncode == 2
    assert "a session is running" in result.stderr
    assert "tens-control run" in result.stderr
    assert "open:" not in result.stdout


async def test_no_new_tab_while_a_session_runs(server: Served, db: Path) -> None:
    async with client() as session:
        await let_in(session, server)
        lock = SessionLock(db)
        assert lock.acquire("pid 1 tens-control run") is None
        try:
            async with session.get(server.base + "/") as page:
                assert page.status == 409
                assert "session is running" in await page.text()
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await open_tab(session, server)
        finally:
            lock.release()
        async with session.get(server.base + "/") as page:
            assert page.status == 200
    assert server.review_processes() == set()


# --- the report download in the review app ----------------------------------------------------


async def test_the_download_key_is_the_served_reviews_and_delivers_the_html(
    db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "downloads"
    out.mkdir()
    app = make_review_app(db, tz=UTC, export_dir=out, today=date(2026, 3, 30), cursor_blink=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        # in a terminal the key is hidden (the export dialog writes files there)
        assert app.screen.check_action("download", ()) is False
        app.download_report("P-050")
        await app.workers.wait_for_complete()
        while not app.exported:  # the delivery is a thread of Textual's; bounded by the timeout
            await pilot.pause(0.05)
        expected = app.source.render("P-050", "html")
    path = app.exported[-1]
    assert path == out / "P-050-review.html"
    assert path.read_bytes() == expected
    assert expected.startswith(b"<!DOCTYPE html>")
    assert b"P-050" in expected


async def test_a_tab_process_that_does_not_quit_is_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textual_serve.download_manager import DownloadManager

    monkeypatch.setattr(serve, "QUIT_GRACE_S", 0.5)
    sent: list[bytes] = []

    async def write(data: bytes | str) -> None:
        sent.append(data.encode() if isinstance(data, str) else data)

    async def close() -> None:
        return None

    # a program that ignores the quit message on its standard input
    tab = serve.ReviewTab(
        shlex.join([sys.executable, "-c", "import time; time.sleep(120)"]),
        write_bytes=write,
        write_str=write,
        close=close,
        download_manager=DownloadManager(),
    )
    await tab.start(80, 24)
    assert tab.pid is not None
    assert alive(tab.pid)
    await tab.stop()
    assert not alive(tab.pid)


def test_an_unknown_patient_is_refused_before_serving(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["review", "--serve", "--db", str(db), "--port", "0", "--patient", "P-NOBODY"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "there is no patient 'P-NOBODY'" in err
    assert "Traceback" not in err
