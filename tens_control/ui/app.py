"""The Textual application: :class:`TensApp`, :func:`make_app` and :func:`run_ui`.

Threads and time. Device I/O and timing live in the session layer (its clock and threads). The
controller calls :meth:`TensApp._on_controller_update` from its own thread; that only posts a
:class:`~tens_control.ui.messages.SessionUpdated` message (``post_message`` is thread-safe), and
the handler on the UI thread takes a fresh snapshot and redraws. A timer only redraws (time left).
Blocking controller calls (connect, prepare, start, resume, finish) run in thread workers; quick
ones (intensity, pause, stop, ratings) run in order on a :class:`~tens_control.ui.calls.CallQueue`.
The emergency stop is called directly: it never waits.

Safety on exit. Quitting stops any session first; :meth:`TensApp._on_exit_app` and
:meth:`TensApp._handle_exception` stop output before Textual tears down, and :func:`run_ui`
stops and closes the controller in a ``finally`` whatever happens.

Start-up speed (DESIGN.md P6). This module imports only Textual and the small UI modules. The
home screen is the first screen and is drawn complete (body and keys) before anything else
happens; once its first frame is on the terminal it calls :meth:`TensApp.first_screen_painted`,
and only then does a loader thread import and open the store and the session controller (so
that thread does not compete with the first paint for the interpreter lock). Until the back end
is ready the screens say "Loading…"; help, quit and the emergency stop work all the time (the
stop is a no-op while nothing is connected). If opening fails, one banner says why.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType

from tens_control.ui.calls import CallQueue
from tens_control.ui.messages import BackendFailed, BackendReady, SessionUpdated, TaskDone
from tens_control.ui.screens.base import TensModal, TensScreen

if TYPE_CHECKING:
    from textual.screen import Screen

    from drivers.clock import Clock
    from tens_control.session import EndedUpdate, SessionController, Snapshot, Update
    from tens_control.store.store import Store

log = logging.getLogger(__name__)

BACKEND_FALLBACK_S = 1.0
"""Start the back end after this long even if the home screen never reported its first frame."""
BACKEND_CLOSE_TIMEOUT_S = 30.0
"""At exit, wait at most this long for a loader still opening the back end."""

TRACE_SAMPLES = 600
"""Live samples kept per channel for the sparklines (a minute of 10 Hz telemetry)."""


@dataclass
class UiOptions:
    """How the UI starts. Everything is optional; the defaults suit a patient at home."""

    device: str | None = None
    """Device URL or port; None: the saved device, else the built-in simulator."""
    protocol: str | None = None
    profile: str | None = None
    db: str | None = None
    """Database file; None: ``$TENS_CONTROL_DB`` or the user data directory."""
    patient: str | None = None
    session_minutes: float | None = None
    """Default session length (never above the prescription); None: the prescribed length."""
    live: bool = True
    """Redraw twice a second (time left). Tests turn it off for deterministic screens."""
    tz: tzinfo | None = None
    """Time zone for dates on screen; None: local time."""
    wall: Callable[[], datetime] | None = None
    """The current time for diary entries (tests: the store's virtual wall clock)."""
    cursor_blink: bool = True
    connect: bool = True
    """Connect to the device when the UI starts."""
    screening_on_start: bool = True
    """Show the safety questions at start when none are on record."""


@dataclass
class Trace:
    """Recent measured current and impedance per channel, for the live sparklines."""

    current: dict[int, deque[float]] = field(default_factory=dict)
    impedance: dict[int, deque[float]] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)

    def add(self, channel: int, time: float, measured: float | None, ohm: float | None) -> None:
        if self._last.get(channel) == time:
            return
        self._last[channel] = time
        self.current.setdefault(channel, deque(maxlen=TRACE_SAMPLES)).append(
            0.0 if measured is None else measured
        )
        if ohm is not None:
            self.impedance.setdefault(channel, deque(maxlen=TRACE_SAMPLES)).append(ohm)

    def clear(self) -> None:
        self.current.clear()
        self.impedance.clear()
        self._last.clear()


def describe_error(error: BaseException) -> str:
    """One sentence for the patient: the error's own message for errors a user can cause."""
    from drivers.base import DriverError
    from tens_control.errors import TensControlError

    if isinstance(error, TensControlError | DriverError):
        text = str(error)
        return text[:1].upper() + text[1:]
    log.error("unexpected error in the UI", exc_info=error)
    return f"Something went wrong ({type(error).__name__}: {error}). The output is off."


class TensApp(App[int]):
    """The patient UI. Build it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "tens-control"
    AUTO_FOCUS = ""
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape",
            "emergency_stop",
            "STOP",
            key_display="Esc/Space",
            priority=True,
            id="estop",
        ),
        Binding("space", "emergency_stop", "STOP", show=False, priority=True, id="estop-space"),
        Binding("ctrl+e", "emergency_stop", "STOP", show=False, priority=True, id="estop-ctrl-e"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        # Ctrl+C in a terminal means "stop this now": output first, then quit (never Textual's
        # "press ctrl+q to quit" while the output stays on)
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="interrupt"),
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(
        self,
        options: UiOptions | None = None,
        *,
        controller: SessionController | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        owns_backend: bool = False,
    ) -> None:
        super().__init__()
        self.options = options or UiOptions()
        self.controller = controller
        self.store = store
        self.clock = clock
        self.owns_backend = owns_backend
        """True: this app opened the store and controller and closes them."""
        self.snapshot: Snapshot | None = None
        self.ready = False
        """The store and the controller are open."""
        self.connecting = False
        self.notices: dict[str, tuple[str, str]] = {}
        """App banners: key -> (level, text) (e.g. the emergency stop, a failed connect)."""
        self.trace = Trace()
        self.calls = CallQueue()
        self.limit_messages: dict[int, str] = {}
        """The last refusal or limit message per channel (shown under the channel)."""
        self.last_message = ""
        self.backend_error = ""
        self.needs_screening = False
        self._stopped_on_exit = False
        self._listening = False
        self.first_paint_done = False
        """The home screen's first frame has been drawn (the back end loads after it)."""
        self._backend_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._opened: tuple[SessionController, Store] | None = None
        """The controller and store the loader opened (this app closes them)."""
        self._closing = False

    # ------------------------------------------------------------------ start-up
    def get_default_screen(self) -> Screen[Any]:
        """The home screen is the bottom of the stack: it is the first screen drawn."""
        from tens_control.ui.screens.home import HomeScreen

        return HomeScreen()

    def on_mount(self) -> None:
        if self.controller is not None and self.store is not None:
            self._backend_ready(self.controller, self.store)
        else:
            # the home screen starts the back end once it is on the terminal; this timer only
            # matters if that never happens (it never runs the loader twice)
            self.set_timer(BACKEND_FALLBACK_S, self.start_backend, name="backend-fallback")
        if self.options.live:
            self.set_interval(0.5, self._tick, name="redraw")

    @property
    def loading(self) -> bool:
        """The store and the controller are not open yet (and have not failed to open)."""
        return not self.ready

    def first_screen_painted(self) -> None:
        """The home screen's first frame (body and keys) is on the terminal: start the back
        end now, so that importing it does not compete with painting for the interpreter."""
        self.first_paint_done = True
        self.start_backend()

    def start_backend(self) -> None:
        """Open the store and the controller on a thread (once; nothing if the app was given
        them). The result arrives as :class:`BackendReady` or :class:`BackendFailed`."""
        with self._backend_lock:
            if self.controller is not None or self._loader is not None or self._closing:
                return
            self._loader = threading.Thread(
                target=self._load_backend, name="tens-ui-backend", daemon=True
            )
            self._loader.start()

    def _load_backend(self) -> None:
        """The loader thread: import and open the back end; hand it to the UI thread, or close
        it if the app is already closing."""
        try:
            controller, store, clock = self.open_backend()
        except Exception as error:
            self.post_message(BackendFailed(describe_error(error)))
            return
        with self._backend_lock:
            closing = self._closing
            if not closing:
                self._opened = (controller, store)
        if closing:
            close_backend(controller, store)
            return
        self.clock = clock
        self.post_message(BackendReady(controller, store))

    def open_backend(self) -> tuple[SessionController, Store, Clock]:
        """Import and open the store and the controller (on the loader thread; the heavy
        imports -- SQLAlchemy, pydantic models, the device layer -- happen here)."""
        from drivers.clock import RealClock
        from tens_control.config import load_config
        from tens_control.session import SessionController
        from tens_control.store.store import Store

        clock = self.clock if self.clock is not None else RealClock()
        patient = self.options.patient or load_config().patient
        # recover=False: the controller closes the sessions a crash left open, and says so
        wall = self.options.wall
        store = Store.open(
            self.options.db,
            clock=clock,
            wall=wall,
            patient=patient,
            recover=False,
            make_folders=False,
        )
        try:
            controller = SessionController(store, clock, patient=patient, wall=wall)
        except BaseException:
            store.close()
            raise
        return controller, store, clock

    def on_backend_ready(self, message: BackendReady) -> None:
        self.owns_backend = True
        self._backend_ready(message.controller, message.store)

    def on_backend_failed(self, message: BackendFailed) -> None:
        text = message.text.rstrip()
        if not text.endswith((".", "!", "?")):
            text += "."
        self.backend_error = text
        self.notices["backend"] = (
            "alarm",
            f"tens-control could not start: {text} Press Q to quit.",
        )
        self.ready = True
        self.refresh_screen()

    def _backend_ready(self, controller: SessionController, store: Store) -> None:
        self.controller = controller
        self.store = store
        self.ready = True
        if not self._listening:
            controller.add_listener(self._on_controller_update)
            self._listening = True
        self.snapshot = controller.snapshot()
        if self.options.screening_on_start:
            self.check_screening_on_start()
        if self.options.connect and controller.device is None:
            self.connect_device(self.options.device, self.options.protocol, self.options.profile)
        self.refresh_screen()
        from tens_control.ui.screens.home import HomeScreen

        for screen in self.screen_stack:
            if isinstance(screen, HomeScreen):
                screen.reload()  # its data can be read now

    def close_owned_backend(self, timeout: float = BACKEND_CLOSE_TIMEOUT_S) -> None:
        """After the UI has closed: wait for a loader still opening the back end (it closes
        what it opens once it sees the app closing), then close what this app opened."""
        with self._backend_lock:
            self._closing = True
            loader = self._loader
        if loader is not None and loader is not threading.current_thread():
            loader.join(timeout)
            if loader.is_alive():
                log.warning("the back end was still opening when the UI closed")
        with self._backend_lock:
            opened, self._opened = self._opened, None
        controller, store = self.controller, self.store
        if opened is None and self.owns_backend and controller is not None and store is not None:
            opened = (controller, store)
        if opened is not None:
            close_backend(*opened)

    @work(thread=True, exit_on_error=False, group="screening-check")
    def check_screening_on_start(self) -> None:
        store, controller = self.store, self.controller
        if store is None or controller is None:
            return
        try:
            missing = store.latest_screening(controller.patient) is None
        except Exception:
            log.exception("could not read the screening")
            return
        if missing:
            self.post_message(TaskDone("screening-needed", result=True))

    # ------------------------------------------------------------------ controller updates
    def _on_controller_update(self, update: Update) -> None:
        """Called by the controller on its thread: record the trace, post a message. Quick."""
        from tens_control.session import ChannelUpdate

        coalesce = ""
        if isinstance(update, ChannelUpdate):
            view = update.channel
            self.trace.add(view.channel, update.time, view.measured_ma, view.impedance_ohm)
            coalesce = "channels"  # the handler redraws every channel from a fresh snapshot
        self.post_message(SessionUpdated(update, coalesce))

    def on_session_updated(self, message: SessionUpdated) -> None:
        from tens_control.session import (
            EndedUpdate,
            HabituationDue,
            MessageUpdate,
            SessionState,
            StateUpdate,
        )

        update = message.update
        self.take_snapshot()
        if isinstance(update, StateUpdate):
            if update.state is SessionState.RUNNING and update.previous is SessionState.READY:
                self.trace.clear()
                self.limit_messages.clear()
                self.notices.pop("estop", None)
        elif isinstance(update, MessageUpdate) and not update.banner:
            key = update.message.key
            if key.startswith("limit-") and key[6:].isdigit():
                self.limit_messages[int(key[6:])] = update.message.text
            else:
                self.last_message = update.message.text
                self.notify(update.message.text, timeout=8)
        elif isinstance(update, HabituationDue):
            self.ask_habituation(update.question)
        elif isinstance(update, EndedUpdate):
            self.session_ended(update)
        self.refresh_screen()

    def take_snapshot(self) -> None:
        if self.controller is not None and not self._exit:
            self.snapshot = self.controller.snapshot()

    def _tick(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        """Redraw only (time left, live values; the redraw timer calls this). The truth is in
        the controller."""
        if self.controller is None:
            return
        self.take_snapshot()
        self.refresh_screen()

    def refresh_screen(self) -> None:
        if not self.screen_stack:
            return  # shutting down
        screen = self.screen
        if isinstance(screen, TensScreen | TensModal):
            screen.refresh_view()

    def banners(self) -> list[tuple[str, str, str]]:
        """(key, level, text) of every banner to show: the app's notices, then the
        controller's."""
        out = [(key, level, text) for key, (level, text) in self.notices.items()]
        snapshot = self.snapshot
        if snapshot is not None:
            out.extend((m.key, str(m.level), m.text) for m in snapshot.banners)
        seen: set[str] = set()
        unique = []
        for banner in out:  # e.g. "comms lost" and "ended" can say the same thing
            if banner[2] not in seen:
                seen.add(banner[2])
                unique.append(banner)
        return unique

    @property
    def cursor_blink_enabled(self) -> bool:
        return self.options.cursor_blink

    @property
    def session_active(self) -> bool:
        """A session is running or paused, or some output may still be above 0."""
        from tens_control.ui.widgets.status import session_active

        return session_active(self.snapshot)

    # ------------------------------------------------------------------ emergency stop
    def action_emergency_stop(self) -> None:
        """S10: every output to 0 now. Works on every screen, in every dialog and text box."""
        controller = self.controller
        was_active = self.session_active or str(getattr(self.snapshot, "state", "")) == "ready"
        if controller is not None:
            controller.emergency_stop()  # first: never waits, never raises
        if was_active:
            self.notices["estop"] = (
                "alarm",
                "EMERGENCY STOP — every output was switched off at once.",
            )
        else:
            self.notify("STOP: every output is off (no session was running).", timeout=5)
        self.take_snapshot()
        self.refresh_screen()

    def stop_output_now(self, why: str) -> None:
        """Stop any output before the UI goes away (quit, exit, crash). Never raises."""
        controller = self.controller
        if controller is None or self._stopped_on_exit:
            return
        try:
            snapshot = controller.snapshot()
            if snapshot.stimulating or str(snapshot.state) in ("running", "paused", "ready"):
                log.info("stopping output: %s", why)
                controller.emergency_stop()
        except Exception:
            log.exception("stop on %s failed", why)
        self._stopped_on_exit = True

    async def action_quit(self) -> None:
        """Quit: stop any session first (stopped by user), then leave."""
        controller = self.controller
        if controller is not None and self.session_active:
            try:
                controller.stop()
            except Exception:
                log.exception("stop on quit failed")
                controller.emergency_stop()
        self.stop_output_now("quit")
        self.exit(0)

    async def _on_exit_app(self) -> None:
        self.stop_output_now("exit")
        await super()._on_exit_app()

    def _handle_exception(self, error: Exception) -> None:
        self.stop_output_now("a crash in the UI")
        super()._handle_exception(error)

    # ------------------------------------------------------------------ tasks
    @work(thread=True, exit_on_error=False)
    def run_task(self, task: str, call: Callable[[], Any]) -> None:
        """A blocking controller call on a worker thread; the outcome comes back as TaskDone."""
        try:
            result = call()
        except Exception as error:
            check = str(getattr(error, "check", "") or "")
            self.post_message(TaskDone(task, error=describe_error(error), check=check))
            return
        self.post_message(TaskDone(task, result=result))

    def queue_call(self, task: str, call: Callable[[], Any]) -> None:
        """A quick controller call, run in order off the UI thread; outcome as TaskDone."""

        def done(result: Any, error: BaseException | None) -> None:
            if error is None:
                self.post_message(TaskDone(task, result=result))
            else:
                check = str(getattr(error, "check", "") or "")
                self.post_message(TaskDone(task, error=describe_error(error), check=check))

        if not self.calls.submit(call, done):
            log.warning("UI call %s dropped: the app is closing", task)

    def on_task_done(self, message: TaskDone) -> None:
        if message.task == "connect":
            self.connecting = False
            if message.error is None:
                self.notices.pop("connect", None)
            else:
                self.notices["connect"] = (
                    "warning",
                    f"Could not connect: {message.error} Press C to choose a device.",
                )
        elif message.task == "screening-needed":
            self.needs_screening = True
            self.show_screening(first_run=True)
        elif message.task == "quiet-finish" and message.error is not None:
            log.warning("could not get ready for another session: %s", message.error)
        elif message.task == "call" and message.error is not None:
            self.notify(message.error, severity="warning", timeout=8)
        self.take_snapshot()
        handler = getattr(self.screen, "task_done", None)
        if callable(handler):
            handler(message)
        self.refresh_screen()

    # ------------------------------------------------------------------ actions used by screens
    def connect_device(
        self, url: str | None, protocol: str | None = None, profile: str | None = None
    ) -> None:
        controller = self.controller
        if controller is None:
            return
        self.connecting = True
        self.notices.pop("connect", None)
        self.run_task(
            "connect", lambda: controller.connect(url, protocol=protocol, profile=profile)
        )
        self.refresh_screen()

    def action_help(self) -> None:
        from tens_control.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def show_screening(self, first_run: bool = False) -> None:
        from tens_control.ui.screens.screening import ScreeningScreen

        if not isinstance(self.screen, ScreeningScreen):
            self.push_screen(ScreeningScreen(first_run=first_run))

    def go_home(self) -> None:
        """Back to the home screen (everything above it is closed)."""
        from tens_control.ui.screens.home import HomeScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()
        if isinstance(self.screen, HomeScreen):
            self.screen.reload()

    def replace_flow(self, screen: TensScreen) -> None:
        """Show ``screen`` as the next step of a flow started from home."""
        from tens_control.ui.screens.home import HomeScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()
        self.push_screen(screen)

    def ask_habituation(self, question: str) -> None:
        from tens_control.ui.screens.habituation import HabituationModal
        from tens_control.ui.screens.running import RunningScreen

        if isinstance(self.screen, HabituationModal):
            return
        running = [s for s in self.screen_stack if isinstance(s, RunningScreen)]
        if not running:
            return
        self.push_screen(HabituationModal(question))

    def session_ended(self, update: EndedUpdate) -> None:
        """The session is over: rate pain afterwards (or, with no session logged, get ready)."""
        from tens_control.ui.screens.rating import RatingScreen

        controller = self.controller
        snapshot = self.snapshot
        if controller is None:
            return
        if snapshot is None or snapshot.session_id is None:
            self.queue_call("quiet-finish", controller.finish)
            self.go_home()
            return
        self.replace_flow(RatingScreen.after_session(self, update.message, update.reason.value))

    def start_session_flow(self) -> None:
        from tens_control.ui.screens.setup import SetupScreen

        self.notices.pop("estop", None)
        self.replace_flow(SetupScreen())

    def now(self) -> datetime:
        """The current wall time (aware)."""
        wall = self.options.wall
        return wall() if wall is not None else datetime.now(UTC)

    def wait_calls(self, timeout: float = 10.0) -> bool:
        """Tests: block until every queued quick call has finished."""
        return self.calls.wait_idle(timeout)


def make_app(
    controller: SessionController | None = None,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    options: UiOptions | None = None,
    **option_values: Any,
) -> TensApp:
    """Build the UI.

    With ``controller`` and ``store`` (tests: a controller on the simulator with a
    :class:`~drivers.clock.VirtualClock`), the app uses them and does not close them. Without,
    it opens the store (``options.db``) and creates the controller itself, on a worker thread,
    and closes them when :func:`run_ui` returns. ``option_values`` set fields of
    :class:`UiOptions` (e.g. ``live=False``, ``device="sim://tsp"``).
    """
    opts = options or UiOptions()
    for name, value in option_values.items():
        if not hasattr(opts, name):
            raise TypeError(f"unknown UI option {name!r}")
        setattr(opts, name, value)
    if (controller is None) != (store is None):
        raise TypeError("give both controller and store, or neither")
    return TensApp(opts, controller=controller, store=store, clock=clock)


def close_backend(controller: SessionController, store: Store) -> None:
    """Close a controller and its store. Never raises (logs)."""
    try:
        controller.close()
    except Exception:
        log.exception("closing the session controller failed")
    try:
        store.close()
    except Exception:
        log.exception("closing the store failed")


def run_ui(app: TensApp) -> int:
    """Run the UI in this terminal. Whatever happens (quit, crash, Ctrl+C), any output is
    stopped first, then the controller and store the app opened are closed."""
    try:
        result = app.run()
    finally:
        app.stop_output_now("the end of the UI")
        app.calls.close()
        app.close_owned_backend()
    if app.return_code not in (None, 0):
        return int(app.return_code)
    return int(result or 0)
