"""Pain rating: one key per question (0-9, T for 10, S to skip; a skip is stored as missing,
never as 0). Phantom and residual-limb pain are asked separately when the prescription says
so, and pain on movement too when it asks for that."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from tens_control.ui.screens.base import TensScreen
from tens_control.ui.text import fmt_nrs

if TYPE_CHECKING:
    from tens_control.ui.app import TensApp

SCALE = (
    "  0    1    2    3    4    5    6    7    8    9    10(T)\n"
    "  no pain                              worst pain you can think of"
)

PAIN_NAMES = {
    "phantom": "Phantom pain (in the missing limb)",
    "residual_limb": "Residual-limb pain (in the stump)",
    "other": "Your pain",
}


@dataclass(frozen=True)
class RatingQuestion:
    when: str
    """before, after (``tens_control.store.records.RatingTime`` values)."""
    pain: str
    """phantom, residual_limb, other."""
    context: str
    """rest, movement."""
    prompt: str

    @property
    def label(self) -> str:
        where = "when moving" if self.context == "movement" else "at rest"
        return f"{PAIN_NAMES.get(self.pain, self.pain)}, {where}"


def questions_for(app: TensApp, when: str) -> list[RatingQuestion]:
    """The questions the prescription asks (``when``: before or after)."""
    from tens_control.pain import PainContext, PainSite, rating_prompt

    controller = app.controller
    separate, movement = True, False
    if controller is not None:
        rx = controller.prescription
        separate = rx.rate_phantom_and_residual_separately
        movement = rx.rate_on_movement
    sites = [PainSite.PHANTOM, PainSite.RESIDUAL_LIMB] if separate else [PainSite.OTHER]
    contexts = [PainContext.REST, PainContext.MOVEMENT] if movement else [PainContext.REST]
    return [
        RatingQuestion(when, site.value, context.value, rating_prompt(site, context))
        for site in sites
        for context in contexts
    ]


DIGIT_KEYS = [Binding(str(n), f"rate({n})", str(n), show=False) for n in range(10)]


class RatingScreen(TensScreen):
    TITLE_TEXT = "Pain rating"
    HIDDEN_BANNERS = frozenset({"simulator", "ended"})
    BINDINGS: ClassVar[list[BindingType]] = [
        *DIGIT_KEYS,
        Binding("t", "rate(10)", "10", key_display="T"),
        Binding("s", "rate(-1)", "Skip"),
        Binding("b", "back", "Back"),
    ]

    def __init__(
        self,
        questions: list[RatingQuestion],
        heading: str,
        on_done: Callable[[list[tuple[RatingQuestion, int | None]]], None],
        end_message: str = "",
    ) -> None:
        super().__init__()
        self.questions = questions
        self.heading = heading
        self.on_done = on_done
        self.end_message = end_message
        self.answers: list[int | None] = []
        self.finished = False

    @classmethod
    def before_session(cls, app: TensApp) -> RatingScreen:
        from tens_control.ui.screens.ready import ReadyScreen

        def done(answers: list[tuple[RatingQuestion, int | None]]) -> None:
            record_ratings(app, answers)
            app.replace_flow(ReadyScreen())

        return cls(
            questions_for(app, "before"),
            "Before the session: how is your pain right now?",
            done,
        )

    @classmethod
    def after_session(cls, app: TensApp, end_message: str, reason: str) -> RatingScreen:
        from tens_control.ui.screens.post import PostSessionScreen

        def done(answers: list[tuple[RatingQuestion, int | None]]) -> None:
            record_ratings(app, answers)
            app.replace_flow(PostSessionScreen(end_message, reason))

        return cls(
            questions_for(app, "after"),
            "After the session: how is your pain now?",
            done,
            end_message,
        )

    @classmethod
    def daily(cls, app: TensApp) -> RatingScreen:
        """Today's pain on a day without a session (the run-in before the first session):
        stored as diary ratings, linked to no session."""

        def done(answers: list[tuple[RatingQuestion, int | None]]) -> None:
            record_daily_ratings(app, answers)
            app.go_home()

        return cls(questions_for(app, "diary"), "Today's pain: how is your pain right now?", done)

    def hidden_banner_texts(self) -> frozenset[str]:
        return frozenset({self.end_message})

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="rating-body", can_focus=False):
            yield Static("", id="rating-end", markup=False)
            yield Static("", id="rating-progress", markup=False)
            yield Static("", id="rating-question", classes="big-prompt", markup=False)
            yield Static(SCALE, id="rating-scale", markup=False)
            yield Static(
                "Press one key: 0–9, T for 10, S to skip this question, B to go back.",
                classes="hint",
            )
            yield Static("", id="rating-answers", markup=False)

    def refresh_body(self) -> None:
        end = self.query_one("#rating-end", Static)
        end.update(self.end_message)
        end.set_classes("error-box" if self.end_message and "EMERGENCY" in self.end_message else "")
        if self.end_message and "EMERGENCY" not in self.end_message:
            end.set_classes("ok-box")
        end.display = bool(self.end_message)
        index = min(len(self.answers), len(self.questions) - 1)
        question = self.questions[index] if self.questions else None
        self.query_one("#rating-progress", Static).update(
            f"{self.heading}  (question {index + 1} of {len(self.questions)})"
        )
        self.query_one("#rating-question", Static).update(
            "" if question is None else f"{question.label}\n{question.prompt}"
        )
        done = [
            f"{q.label}: {fmt_nrs(a)}" for q, a in zip(self.questions, self.answers, strict=False)
        ]
        self.query_one("#rating-answers", Static).update("\n".join(done))

    def action_rate(self, value: int) -> None:
        if self.finished:
            return
        self.answers.append(None if value < 0 else value)
        if len(self.answers) >= len(self.questions):
            self.finished = True
            self.on_done(list(zip(self.questions, self.answers, strict=True)))
            return
        self.refresh_view()

    def action_back(self) -> None:
        if self.answers and not self.finished:
            self.answers.pop()
            self.refresh_view()


def record_ratings(app: TensApp, answers: list[tuple[RatingQuestion, int | None]]) -> None:
    """Give each rating to the controller (in order, off the UI thread)."""
    controller = app.controller
    if controller is None:
        return
    from tens_control.store.records import PainContext, PainSite, RatingTime

    for question, value in answers:
        when = RatingTime(question.when)
        pain = PainSite(question.pain)
        context = PainContext(question.context)

        def call(
            value: int | None = value,
            when: RatingTime = when,
            pain: PainSite = pain,
            context: PainContext = context,
        ) -> None:
            controller.record_pain(value, when=when, pain=pain, context=context)

        app.queue_call("rating", call)


def record_daily_ratings(app: TensApp, answers: list[tuple[RatingQuestion, int | None]]) -> None:
    """Store day ratings straight in the log (off the UI thread): a rating given at home
    while a device is connected must not become the next session's "before" rating."""
    store, controller = app.store, app.controller
    if store is None or controller is None:
        return
    from tens_control.store.records import PainContext, PainSite, RatingTime

    patient, at = controller.patient, app.now()

    def call() -> None:
        for question, value in answers:
            store.add_pain_rating(
                value,
                RatingTime.DIARY,
                PainSite(question.pain),
                context=PainContext(question.context),
                at=at,
                patient=patient,
            )

    app.queue_call("rating", call)
