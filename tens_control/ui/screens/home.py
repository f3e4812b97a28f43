"""Home: the device, today's sessions against the prescription, recent pain, what to do next."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from tens_control.ui.screens.base import KeyFooter, TensScreen
from tens_control.ui.text import fmt_minutes
from tens_control.ui.widgets.chart import ScaleChart

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tens_control.session import SessionController
    from tens_control.store.records import PainRating
    from tens_control.store.store import Store

LOADING = "Loading…"
STILL_LOADING = "tens-control is still starting (loading your records). Try again in a moment."
RELOAD_S = 5.0
"""How often the home screen reads the store again while it is shown."""
MAX_PAINT_CHECKS = 20
"""Refreshes to wait for the keys to be laid out before starting the back end anyway."""


@dataclass(frozen=True)
class HomeData:
    """What the home screen shows from the store (read on a worker thread)."""

    sessions_today: int = 0
    minutes_today: float = 0.0
    sessions_per_day: int | None = None
    minutes_per_day: int | None = None
    session_minutes: int = 30
    prescription: str = ""
    first_program: str = ""
    ratings: tuple[int, ...] = ()
    """The charted pain ratings (numbers only: skipped ratings are left out), oldest first:
    those before each session (the pain the sessions start from), else every rating."""
    ratings_label: str = ""
    pain_lines: tuple[str, ...] = ()
    """The recent ratings in words, each row labelled (before / after sessions, other)."""
    blocked: str = ""
    """Why no session may start now (daily limits, the gap between sessions); "" if one may."""
    short_stops: int = 0
    """Sessions stopped early today that do not count against the allowance."""
    last_session: str = ""
    screening: str = "none"
    """none, clear, blocked, overridden."""
    screening_labels: tuple[str, ...] = field(default_factory=tuple)
    run_in_days: int = 0
    """The run-in the prescription asks for (daily ratings before the first session); 0 when
    there is none or the first session has happened."""
    run_in_rated: int = 0
    """Days with a pain rating in the last ``run_in_days`` days (today included)."""
    rated_today: bool = False
    run_in_complete: bool = False
    """Every one of the ``run_in_days`` days before today has a rating."""
    pgic_due: bool = False
    """A week of sessions and no impression of change in the last week: offer the question."""
    reminder: str = ""
    """When the next session is due and the days missed (``tens_control.reminders``)."""


def run_in_progress(rated_days: set[date], today: date, run_in_days: int) -> tuple[int, bool, bool]:
    """(days rated in the last ``run_in_days`` days, today included; rated today; run-in
    complete: every one of the ``run_in_days`` days before today rated). The review's run-in
    is the days before the first session, so a session today counts on a complete run-in only
    when the days before today are rated."""
    first = today - timedelta(days=run_in_days - 1)
    rated = sum(1 for d in rated_days if first <= d <= today)
    before = sum(1 for d in rated_days if first - timedelta(days=1) <= d < today)
    return rated, today in rated_days, before >= run_in_days


def load_home_data(
    store: Store,
    controller: SessionController,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> HomeData:
    """Read everything the home screen shows (any thread); ``now`` and ``tz`` place the
    run-in days (the machine's zone by default)."""
    from tens_control.allowance import daily_use  # late: the first screen starts faster
    from tens_control.screening import SHORT_LABELS, Question

    patient = controller.patient
    controller.refresh_prescription()  # a clinician may have imported one meanwhile
    rx = controller.prescription
    now = now or datetime.now().astimezone()
    if rx.is_over_the_counter:
        rx_text = "No prescription on record: over-the-counter defaults"
    else:
        rx_text = f"Prescription version {rx.version} by {rx.written_by}"
    programs = controller.available_programs()
    ratings = [
        r for r in store.pain_ratings(patient) if r.nrs is not None and r.context.value == "rest"
    ]
    primary = [r for r in ratings if r.pain.value == "phantom"] or ratings
    label = ""
    if primary:
        label = {
            "phantom": "phantom pain",
            "residual_limb": "residual-limb pain",
            "other": "pain",
        }.get(primary[-1].pain.value, "pain")
    pain_lines, recent = pain_summary(primary)
    use = daily_use(store, patient, now, tz)
    from tens_control.ui.screens.pgic import pgic_due

    last = store.last_session(patient)
    run_in = rx.run_in_days if last is None else 0
    run_in_rated, rated_today, complete = 0, False, False
    if run_in:
        today = now.astimezone(tz).date()
        days = {r.at.astimezone(tz).date() for r in ratings}
        run_in_rated, rated_today, complete = run_in_progress(days, today, run_in)
    due = False
    reminder_text = ""
    if last is not None:
        from tens_control.reminders import Schedule, reminder

        every = store.sessions(patient, with_ratings=False)
        schedule = Schedule(
            rx.sessions_per_day, rx.minutes_per_day, rx.session_minutes, rx.min_gap_minutes
        )
        reminder_text = reminder(schedule, [(x.started_at, x.ended_at) for x in every], now, tz)
        first = every[0].started_at
        answers = store.pgic_ratings(patient)
        due = pgic_due(first, answers[-1] if answers else None, now)
    last_text = ""
    if last is not None:
        ended = "still open" if last.end_reason is None else last.end_reason.value.replace("_", " ")
        last_text = f"Last session: {last.program}, {ended}"
    screening = store.latest_screening(patient)
    state = "none"
    labels: tuple[str, ...] = ()
    if screening is not None:
        known = {q.value for q in Question}
        yes = [Question(q) for q, answer in screening.answers.items() if answer and q in known]
        covered = {Question(o.question) for o in screening.overrides if o.question in known}
        open_yes = [q for q in yes if q not in covered]
        labels = tuple(SHORT_LABELS[q] for q in open_yes)
        state = "blocked" if open_yes else ("overridden" if yes else "clear")
    return HomeData(
        sessions_today=use.sessions,
        minutes_today=use.minutes,
        sessions_per_day=rx.sessions_per_day,
        minutes_per_day=rx.minutes_per_day,
        session_minutes=rx.session_minutes,
        prescription=rx_text,
        first_program=programs[0].title if programs else "",
        ratings=recent,
        ratings_label=label,
        pain_lines=pain_lines,
        blocked=use.block_reason(rx) or "",
        short_stops=use.short_stops,
        last_session=last_text,
        screening=state,
        screening_labels=labels,
        run_in_days=run_in,
        run_in_rated=run_in_rated,
        rated_today=rated_today,
        run_in_complete=complete,
        pgic_due=due,
        reminder=reminder_text,
    )


PAIN_SHOWN = 8
"""Ratings shown in words of each kind (before, after, other)."""


def pain_summary(ratings: Sequence[PainRating]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(rows in words, the charted values) of one pain's ratings, oldest first. Before and after
    a session are never mixed: each row says which it is."""
    groups = (
        ("before sessions", [r for r in ratings if r.when.value == "before"]),
        ("after sessions", [r for r in ratings if r.when.value == "after"]),
        ("other times", [r for r in ratings if r.when.value not in ("before", "after")]),
    )
    parts = []
    for name, group in groups:
        numbers = [str(r.nrs) for r in group if r.nrs is not None][-PAIN_SHOWN:]
        if numbers:
            parts.append(f"{name}: {' '.join(numbers)}")
    # before and after on one line (80 × 24 has room for it), other times below
    rows = ["   ".join(p for p in parts if not p.startswith("other"))]
    rows += [p for p in parts if p.startswith("other")]
    rows = [r for r in rows if r]
    charted = groups[0][1] or list(ratings)
    return tuple(rows), tuple(int(r.nrs) for r in charted[-30:] if r.nrs is not None)


class HomeScreen(TensScreen):
    TITLE_TEXT = "Home"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n,enter", "new_session", "New session", key_display="N"),
        Binding("c", "connect", "Connect"),
        Binding("h", "history", "History"),
        Binding("d", "diary", "Diary"),
        Binding("r", "rate_today", "Rate pain", show=False),
        Binding("g", "pgic", "Change since start", show=False),
        Binding("s", "screening", "Safety questions", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data: HomeData | None = None
        self._paint_checks = 0

    def compose_body(self) -> ComposeResult:
        # titles and texts are set here, not after mounting, so that the first frame is whole
        with VerticalScroll(id="home-body"):
            with Horizontal(id="home-top"):
                with card("home-device", "Device"):
                    yield Static(LOADING, id="device-text", markup=False)
                with card("home-today", "Today"):
                    yield Static(LOADING, id="today-text", markup=False)
            with card("home-pain", "Your pain lately"):
                yield Static(LOADING, id="pain-text", markup=False)
                spark = ScaleChart(id="pain-spark")
                spark.display = False
                yield spark
            with card("home-next", "What next"):
                yield Static("\n".join(self._next_actions(None)), id="next-text", markup=False)

    def on_mount(self) -> None:
        self.reload()
        self.call_after_refresh(self._check_first_paint)
        if self.tapp.options.live:
            # what another process changed meanwhile (a clinician imported a prescription;
            # midnight renewed the daily allowance) shows without a key press
            self.set_interval(RELOAD_S, self._reload_if_shown, name="home-reload")

    def _check_first_paint(self) -> None:
        """Runs after a refresh: once the keys are laid out, the whole first frame has been
        drawn, and the app may start loading its back end (DESIGN.md P6)."""
        if self.tapp.first_paint_done:
            return
        self._paint_checks += 1
        keys = self.query_one(KeyFooter).children
        if (not keys or not keys[0].region) and self._paint_checks < MAX_PAINT_CHECKS:
            self.call_after_refresh(self._check_first_paint)
            return
        self.tapp.first_screen_painted()

    def _reload_if_shown(self) -> None:
        if self.is_current:
            self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Read the store again (after a session, a rating or a diary entry)."""
        if self.tapp.store is not None and self.tapp.controller is not None:
            self._load()
        self.refresh_view()

    @work(thread=True, exit_on_error=False, exclusive=True, group="home-data")
    def _load(self) -> None:
        store, controller = self.tapp.store, self.tapp.controller
        if store is None or controller is None:
            return
        try:
            data = load_home_data(store, controller, self.tapp.now(), self.tapp.options.tz)
        except Exception:
            import logging

            logging.getLogger(__name__).exception("could not read the home screen data")
            return
        self.app.call_from_thread(self._loaded, data)

    def _loaded(self, data: HomeData) -> None:
        self.data = data
        self.refresh_view()

    def task_done(self, message: object) -> None:
        if getattr(message, "task", "") in ("connect", "quiet-finish", "rating", "pgic"):
            self.reload()

    def refresh_body(self) -> None:
        app = self.tapp
        snapshot = app.snapshot
        data = self.data
        # device
        lines: list[str] = []
        device = snapshot.device if snapshot is not None else None
        if app.backend_error:
            lines.append("Not started: see the message above.")
        elif app.loading:
            lines.append(LOADING)
        elif device is None:
            lines.append("Connecting…" if app.connecting else "Not connected.")
            lines.append("Press C to connect your device or the simulator.")
        else:
            kind = "the built-in SIMULATOR" if device.is_simulator else "a real TENS unit"
            lines.append(f"{device.model}: {kind}")
            lines.append(f"{device.url} · {device.protocol} · {device.channels} channels")
            flags = [f for f in device.flags if f != "simulator"]
            if flags:
                lines.append("Note: " + ", ".join(flags))
            state = str(snapshot.state) if snapshot is not None else ""
            lines.append(f"State: {state}")
        set_text(self.query_one("#device-text", Static), "\n".join(x for x in lines if x.strip()))
        # today
        today: list[str] = []
        if data is None:
            today.append("-" if app.backend_error else LOADING)
        else:
            allowed = f" of {data.sessions_per_day} allowed" if data.sessions_per_day else ""
            today.append(f"Sessions today: {data.sessions_today}{allowed}")
            if data.short_stops:
                today.append(f"(stopped early, not counted: {data.short_stops})")
            per_day = f" of {data.minutes_per_day}" if data.minutes_per_day else ""
            today.append(f"Minutes today: {round(data.minutes_today)}{per_day}")
            today.append(f"One session: {fmt_minutes(data.session_minutes)}")
            today.append(data.prescription)
            if data.reminder:
                today.append(data.reminder)
        set_text(self.query_one("#today-text", Static), "\n".join(today))
        # pain
        spark = self.query_one("#pain-spark", ScaleChart)
        pain = self.query_one("#pain-text", Static)
        if data is None:
            set_text(pain, "-" if app.backend_error else LOADING)
            spark.display = False
        elif not data.ratings:
            set_text(pain, "No pain ratings yet. You rate your pain before and after each session.")
            spark.set_values([])
            spark.display = False
        else:
            chart = "before each session" if data.pain_lines[0].startswith("before") else "all"
            label = data.ratings_label[:1].upper() + data.ratings_label[1:]
            head = f"{label} at rest, 0–10, oldest first (chart: {chart})"
            set_text(pain, "\n".join((head, *data.pain_lines)))
            spark.set_values([float(n) for n in data.ratings])
            spark.display = True
        # next
        set_text(self.query_one("#next-text", Static), "\n".join(self._next_actions(data)))

    def _next_actions(self, data: HomeData | None) -> list[str]:
        app = self.tapp
        snapshot = app.snapshot
        out: list[str] = []
        if app.backend_error:
            return ["Q  quit (see the message above)"]
        if app.loading:
            return [
                "tens-control is starting: your records load and your device connects in a moment.",
                "Esc/Space  STOP    ?  help and safety    Q  quit",
            ]
        if data is not None and data.screening == "none":
            out.append("S  answer the safety questions (needed before the first session)")
        if data is not None and data.run_in_days:
            out.append(run_in_text(data))
        if data is not None and data.pgic_due:
            out.append("G  how has your pain changed since you started TENS? (once a week)")
        if data is not None and data.screening == "blocked":
            labels = ", ".join(data.screening_labels)
            if (
                snapshot is not None
                and snapshot.device is not None
                and (snapshot.device.is_simulator)
            ):
                out.append(
                    f"You answered yes to: {labels}. Contact your clinician before using a real "
                    "TENS unit. The simulator delivers no current, so you may practise."
                )
            else:
                out.append(
                    f"Stimulation is blocked: you answered yes to: {labels}. Please contact "
                    "your clinician; they must review your answers first."
                )
        if snapshot is None or snapshot.device is None:
            out.append("C  connect your device (or the simulator)")
        else:
            what = ""
            if data is not None and data.first_program:
                what = f": {data.first_program}, {fmt_minutes(data.session_minutes)}"
            if data is not None and data.blocked:
                out.append(f"No session now: {data.blocked}.")
            else:
                out.append(f"N  start a session{what}")
            out.append("C  change or reconnect the device")
        out.append("H  history and pain trend    D  diary    ?  help and safety    Q  quit")
        if data is not None and data.last_session:
            out.append(data.last_session)
        return out

    # ------------------------------------------------------------------ actions
    def _still_loading(self) -> bool:
        """True (and says so) while the back end is not open yet, or failed to open."""
        app = self.tapp
        if app.backend_error:
            self.notify("tens-control could not start (see the message above). Press Q to quit.")
            return True
        if app.store is None or app.controller is None:
            self.notify(STILL_LOADING, timeout=4)
            return True
        return False

    def action_new_session(self) -> None:
        app = self.tapp
        if self._still_loading():
            return
        if app.snapshot is None or app.snapshot.device is None:
            self.notify("Connect a device first: press C.", severity="warning")
            return
        if self.data is not None and self.data.blocked:
            self.notify(f"No session now: {self.data.blocked}.", severity="warning", timeout=8)
            return
        app.start_session_flow()

    def action_connect(self) -> None:
        from tens_control.ui.screens.connect import ConnectScreen

        if not self._still_loading():
            self.app.push_screen(ConnectScreen())

    def action_history(self) -> None:
        from tens_control.ui.screens.history import HistoryScreen

        if not self._still_loading():
            self.app.push_screen(HistoryScreen())

    def action_rate_today(self) -> None:
        from tens_control.ui.screens.rating import RatingScreen

        if not self._still_loading():
            self.app.push_screen(RatingScreen.daily(self.tapp))

    def action_pgic(self) -> None:
        from tens_control.ui.screens.pgic import ask_pgic

        if not self._still_loading():
            ask_pgic(self.tapp)

    def action_diary(self) -> None:
        from tens_control.ui.screens.diary import DiaryScreen

        if not self._still_loading():
            self.app.push_screen(DiaryScreen())

    def action_screening(self) -> None:
        if not self._still_loading():
            self.tapp.show_screening()


def run_in_text(data: HomeData) -> str:
    """What the home screen says during the run-in (before the first session). It asks; it
    never blocks a session."""
    n, k = data.run_in_days, min(data.run_in_rated, data.run_in_days)
    if data.run_in_complete:
        return f"Run-in done ({days(n)} rated): you can start your sessions."
    if data.rated_today and k >= n:
        return f"Today's pain rating is done ({n} of {days(n)}): start your sessions tomorrow."
    if data.rated_today:
        return f"Today's pain rating is done ({k} of {days(n)} of the run-in). Rate again tomorrow."
    return (
        f"R  rate today's pain: one rating a day for {days(n)} before your first session "
        f"({k} of {n} done)"
    )


def days(n: int) -> str:
    """``1 day``, ``3 days``."""
    return f"{n} day" if n == 1 else f"{n} days"


def card(id: str, title: str) -> Vertical:
    """A bordered box with a title."""
    box = Vertical(id=id, classes="card")
    box.border_title = title
    return box


def set_text(widget: Static, text: str) -> None:
    """Update a text only when it changed (no needless repaint)."""
    if str(widget.content) != text:
        widget.update(text)
