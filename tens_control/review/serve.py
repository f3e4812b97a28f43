"""``tens-control review --serve``: the clinician review in a browser (docs/review.md, "In a
browser").

`textual-serve <https://github.com/Textualize/textual-serve>`_ turns a Textual app into a web
page: each browser tab opens a websocket, and the server starts one process of the app's command
for it, relaying the terminal over the socket. This module puts that in front of a clinic
database, safely:

- **The review app only.** The command is built here, from the database path alone:
  ``python -m tens_control review --db=PATH`` (read-only). Nothing in a request chooses or
  changes it, so the patient UI (and with it any stimulation) can never run from a browser.
- **A token on every request.** A fresh random token is printed at start in the address to
  open; a request with it gets a cookie (HttpOnly, SameSite=Strict, this port only) and is
  redirected to the address without it. A request with neither the token nor the cookie gets
  403 and nothing of the app: no page, no script, no websocket, no process. As an alternative,
  the clinic's configuration may hold a password hash (``[review.serve] password_hash``); the
  403 page then offers a password form.
- **Loopback unless told otherwise.** Any other address needs ``--allow-remote`` and gets a
  warning: the connection is plain HTTP.
- **No running session.** A database with a session running (its session lock held) is
  refused at start, and a new tab is refused while one runs.
- **Processes end with their tab.** Closing a tab closes its websocket, and its app process is
  told to quit (and killed if it has not quit within :data:`QUIT_GRACE_S`). Ctrl-C (or SIGTERM)
  closes every tab that way, then the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import secrets
import shlex
import signal
import sys
import time
import tomllib
from asyncio.subprocess import Process
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TextIO

import platformdirs
from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from textual_serve.app_service import AppService
from textual_serve.server import Server

from tens_control.errors import TensControlError
from tens_control.review.source import list_patients
from tens_control.store import Store

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_TABS = 8
"""Open tabs (app processes) at once; one more is refused with 503 until one closes."""
QUIT_GRACE_S = 10.0
"""How long a tab's process may take to quit after it was told to, before it is killed."""
ENV_CLINIC_CONFIG = "TENS_CONTROL_CLINIC_CONFIG"
CLINIC_CONFIG_FILENAME = "clinic.toml"
LOGIN_FAILURES_PER_MINUTE = 5
"""Wrong passwords accepted per minute (for the whole server) before logins pause."""
SECURITY_HEADERS = {
    # Everything from this server and nothing from elsewhere (textual-serve's page would
    # fetch a web font from a third party: the browser is told not to).
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_PASSWORD_HASH = r"^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$"


class ServeError(TensControlError):
    """The review cannot be served as asked; the message says what to do."""


# --- the command and the address -------------------------------------------------------------


def review_command(db: Path, *, today: date | None = None, patient: str | None = None) -> str:
    """The one command a tab runs: the review app, read-only, on ``db`` (an absolute path, so
    that no file name can be read as an option)."""
    args = [sys.executable, "-m", "tens_control", "review", f"--db={db.resolve()}"]
    if today is not None:
        args.append(f"--to={today.isoformat()}")
    if patient is not None:
        args.append(f"--patient={patient}")
    return shlex.join(args)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> str | None:
    """None for a loopback address; the warning to print for another address when
    ``allow_remote``; raises :class:`ServeError` otherwise."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ServeError(
            f"--host {host} is not a loopback address: anyone who can reach it could try to "
            "read every patient's data. Add --allow-remote if that is meant, or leave out "
            f"--host to serve on {DEFAULT_HOST} only"
        )
    return (
        f"warning: serving on {host}, reachable from other machines. The connection is plain "
        "HTTP (not encrypted): the token, the password and every figure cross the network in "
        "the clear. Use it only on a network you trust, or behind a TLS proxy."
    )


def url_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 addresses in brackets)."""
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


# --- the password from the clinic's configuration --------------------------------------------


class ServeSettings(BaseModel):
    """``[review.serve]`` in the clinic's configuration file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    password_hash: Annotated[str, StringConstraints(pattern=_PASSWORD_HASH)] | None = None
    """The hash of the password that opens the served review (made by ``tens-control review
    --hash-password``); None: the printed token only."""


def clinic_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` if given, else ``$TENS_CONTROL_CLINIC_CONFIG``, else ``clinic.toml`` in the
    user configuration directory."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_CLINIC_CONFIG, "")
    if env:
        return Path(env).expanduser()
    config_dir = platformdirs.user_config_dir("tens-control", appauthor=False)
    return Path(config_dir) / CLINIC_CONFIG_FILENAME


def load_serve_settings(path: Path) -> ServeSettings:
    """The ``[review.serve]`` table of ``path`` (other tables are not this module's); empty
    settings if the file does not exist."""
    try:
        with path.open("rb") as fp:
            document = tomllib.load(fp)
    except FileNotFoundError:
        return ServeSettings()
    except tomllib.TOMLDecodeError as error:
        raise ServeError(f"{path}: not valid TOML ({error}); fix the file") from None
    except OSError as error:
        raise ServeError(f"{path}: cannot be read ({error.strerror})") from None
    table = document.get("review", {})
    table = table.get("serve", {}) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        raise ServeError(f"{path}: [review.serve] must be a table")
    try:
        return ServeSettings.model_validate(table)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        hint = (
            "make it with: tens-control review --hash-password"
            if field == "password_hash"
            else f"the known settings are: {', '.join(ServeSettings.model_fields)}"
        )
        raise ServeError(f"{path}: [review.serve] {field}: {first['msg']}; {hint}") from None


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, as ``password_hash`` stores it."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=2**26, **_SCRYPT)
    b64 = base64.b64encode
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode("utf-8"),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=2**26,
        dklen=len(expected),
    )
    return hmac.compare_digest(actual, expected)


# --- the server ------------------------------------------------------------------------------


class ReviewTab(AppService):
    """One tab's app process: started without a shell, in a session of its own (Ctrl-C in the
    server's terminal reaches the server only, which then ends every tab in order);
    :meth:`stop` ends it whatever it does."""

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        # textual-serve's, with no shell between the server and the app, and a new session
        self._process = process = await asyncio.create_subprocess_exec(
            *shlex.split(self.command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            start_new_session=True,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def stop(self) -> None:
        """Tell the app to quit (textual-serve's stop) and wait until its process has ended;
        kill it if it has not within :data:`QUIT_GRACE_S`."""
        process = self._process
        quitting = asyncio.ensure_future(self._quit())
        done, _ = await asyncio.wait({quitting}, timeout=QUIT_GRACE_S)
        if not done and process is not None and process.returncode is None:
            log.warning("a tab's review process did not quit; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its session: it and anything it began
        await quitting  # (textual-serve's stop returns once the process's output has ended)

    async def _quit(self) -> None:
        await super().stop()
        if self._process is not None:
            await self._process.wait()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid


@dataclass(frozen=True)
class ServeOptions:
    db: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allow_remote: bool = False
    max_tabs: int = DEFAULT_MAX_TABS
    today: date | None = None
    patient: str | None = None
    password_hash: str | None = None


class ReviewServer(Server):
    """textual-serve's server with the guard of this module in front of every request."""

    def __init__(self, options: ServeOptions, store: Store, out: TextIO = sys.stdout) -> None:
        super().__init__(
            review_command(options.db, today=options.today, patient=options.patient),
            host=options.host,
            port=options.port,
            title="tens-control review",
        )
        self.options = options
        self.store = store
        """Kept open (read-only) to see whether a session starts while the server runs."""
        self.token = secrets.token_urlsafe(32)
        self.out = out
        self.cookie = f"tens_review_{options.port}"
        self.tabs: dict[asyncio.Task[Any], ReviewTab | None] = {}
        self._failures: deque[float] = deque()
        self._runner: web.AppRunner | None = None

    # --- requests ----------------------------------------------------------------------------

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        app.router.add_post("/login", self.handle_login, name="login")
        return app

    async def on_startup(self, app: web.Application) -> None:
        """(textual-serve prints its logo here; :meth:`_banner` says what matters.)"""

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _authorised(self, request: web.Request) -> bool:
        cookie = request.cookies.get(self.cookie, "")
        return hmac.compare_digest(cookie.encode(), self.token.encode())

    def _let_in(self, location: str) -> web.HTTPFound:
        response = web.HTTPFound(location)
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        return response

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._decide(request, handler)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _decide(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = request.query.get("token")
        if token is not None:
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                return self.refused(request.path, "This token is not the one the server printed.")
            rest = request.rel_url.with_query(
                {k: v for k, v in request.query.items() if k != "token"}
            )
            return self._let_in(str(rest))
        if request.path == "/login" and request.method == "POST":
            return await handler(request)
        if not self._authorised(request):
            return self.refused(request.path)
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return web.Response(status=403, text="403: this page may not open the review")
        if request.path in ("/", "/ws"):
            holder = await asyncio.to_thread(self.store.running_elsewhere)
            if holder is not None:
                return web.Response(
                    status=409,
                    text=f"A session is running on this database ({holder}). The review is "
                    "not served while a session runs; try again when it has ended.",
                )
        return await handler(request)

    def refused(self, path: str, why: str = "") -> web.Response:
        """403 with nothing of the app: a page that says what to do for ``/``, a line of text
        for anything else."""
        if path != "/":
            return web.Response(
                status=403,
                text="403: open the address printed by tens-control review --serve (with its "
                "?token=...)",
            )
        form = ""
        if self.options.password_hash is not None:
            form = (
                '<form method="post" action="/login"><label>Clinic password '
                '<input type="password" name="password" autofocus></label> '
                '<button type="submit">Open the review</button></form>'
            )
        body = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>tens-control review"
            "</title></head><body><h1>tens-control review</h1>"
            f"<p>{html.escape(why)}</p><p>This review needs the address that <code>"
            "tens-control review --serve</code> printed when it started (it ends with "
            "<code>?token=…</code>). Open that address"
            f"{', or give the clinic password' if form else ''}.</p>{form}</body></html>"
        )
        return web.Response(status=403, text=body, content_type="text/html")

    async def handle_login(self, request: web.Request) -> web.StreamResponse:
        stored = self.options.password_hash
        if stored is None:
            return self.refused("/")
        now = time.monotonic()
        while self._failures and now - self._failures[0] > 60:
            self._failures.popleft()
        if len(self._failures) >= LOGIN_FAILURES_PER_MINUTE:
            return web.Response(
                status=429, text="Too many wrong passwords; wait a minute, then try again."
            )
        form = await request.post()
        password = form.get("password")
        if isinstance(password, str) and await asyncio.to_thread(check_password, password, stored):
            return self._let_in("/")
        self._failures.append(now)
        return self.refused("/", "Wrong password.")

    async def handle_index(self, request: web.Request) -> Any:
        # textual-serve builds the page's websocket address from ``public_url``: make it the
        # address this browser used (there is no await before it is read).
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: its websocket and its review process (textual-serve's handler, with the
        tab counted, refused beyond ``max_tabs`` and its process ended by :class:`ReviewTab`)."""
        if len(self.tabs) >= self.options.max_tabs:
            raise web.HTTPServiceUnavailable(
                text=f"{len(self.tabs)} tabs are open, the most this server allows "
                "(--max-tabs); close one and reload"
            )
        task = asyncio.current_task()
        assert task is not None
        websocket = web.WebSocketResponse(heartbeat=15)
        width = _int(request.query.get("width"), 80)
        height = _int(request.query.get("height"), 24)
        tab: ReviewTab | None = None
        self.tabs[task] = None

        async def close() -> None:
            await websocket.close()

        try:
            await websocket.prepare(request)
            tab = ReviewTab(
                self.command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=close,
                download_manager=self.download_manager,
            )
            self.tabs[task] = tab
            await tab.start(width, height)
            self._say(f"tab opened (process {tab.pid}; {len(self.tabs)} open)")
            await self._process_messages(websocket, tab)
        except asyncio.CancelledError:
            pass  # the server is stopping: the tab is closed below
        finally:
            if tab is not None:
                await tab.stop()
            await websocket.close()
            del self.tabs[task]
            if tab is not None:
                self._say(f"tab closed (process {tab.pid} ended; {len(self.tabs)} open)")
        return websocket

    async def _process_messages(self, websocket: web.WebSocketResponse, app_service: Any) -> None:
        # textual-serve's loop asserts on what the browser sends; a malformed message from
        # the browser ends the tab instead of raising in the server.
        try:
            await super()._process_messages(websocket, app_service)
        except (AssertionError, ValueError, KeyError, TypeError, IndexError):
            log.warning("a tab sent a malformed message; closing it")

    # --- running -----------------------------------------------------------------------------

    def address(self) -> str:
        return f"http://{url_host(self.options.host)}:{self.port}/?token={self.token}"

    async def start(self) -> None:
        """Listen (``port`` 0: any free port; :attr:`port` then says which)."""
        app = await self._make_app()
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise ServeError(
                f"cannot listen on {self.options.host} port {self.options.port}: "
                f"{error.strerror}; choose another --port"
            ) from None
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        self.cookie = f"tens_review_{self.port}"

    async def stop(self) -> None:
        """Close every tab (each process told to quit, killed if it does not), then stop."""
        tasks = list(self.tabs)
        if tasks:
            self._say(f"closing {len(tasks)} open tab{'s' if len(tasks) != 1 else ''}…")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve_until_stopped(self) -> None:
        """Serve until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await self.start()
        try:
            self._banner()
            await stopping.wait()
            self._say("stopping (Ctrl-C)…")
        finally:
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        self._say("stopped: every tab's review process has ended")

    def _banner(self) -> None:
        o = self.options
        self._say(f"tens-control review: serving {o.db} read-only, for browsers")
        self._say(f"  open:  {self.address()}")
        if o.password_hash is not None:
            self._say("  or open it without ?token=... and give the clinic password")
        self._say(
            "  each browser tab runs its own review (the patient UI is never served); "
            f"at most {o.max_tabs} tabs at once"
        )
        self._say("  Ctrl-C stops the server and every tab")


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def serve_review(options: ServeOptions, out: TextIO = sys.stdout) -> int:
    """``tens-control review --serve``: check, then serve until Ctrl-C."""
    warning = check_host(options.host, options.allow_remote)
    if not 0 <= options.port <= 65535:
        raise ServeError(f"--port {options.port} is not a port number (1 to 65535)")
    if options.max_tabs < 1:
        raise ServeError("--max-tabs must be at least 1")
    with Store.open(options.db, read_only=True) as store:
        holder = store.running_elsewhere()
        if holder is not None:
            raise ServeError(
                f"a session is running on {store.path} ({holder}): the review is not served "
                "from a database with a running session; serve it when the session has ended"
            )
        if options.patient is not None and options.patient not in {
            p.pseudonym for p in list_patients(store)
        }:
            raise ServeError(
                f"there is no patient {options.patient!r} in {store.path}; leave out --patient "
                "to start every tab on the patient list"
            )
        options = dataclasses.replace(options, db=store.path)
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)
        server = ReviewServer(options, store, out=out)
        asyncio.run(server.serve_until_stopped())
    return 0
