"""What every screen shares: the status lines, the banners, the footer with STOP, help."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from tens_control.ui.widgets.status import BannerBar, StatusBar

if TYPE_CHECKING:
    from tens_control.ui.app import TensApp

T = TypeVar("T")

STOP_BINDING = Binding(
    "escape", "app.emergency_stop", "STOP", key_display="Esc/Space", show=True, id="estop-footer"
)
"""Shown first in every footer (the App-level priority bindings do the work)."""

HELP_BINDING = Binding("question_mark,f1", "app.help", "Help", key_display="?")


class KeyFooter(Footer):
    """Textual's footer, with the screen's keys in the screen's first frame.

    Textual's ``Footer`` composes its keys only after the screen reports its bindings, one
    refresh after the screen is first painted, so the first frame had an empty bottom line. The
    keys (STOP first) are known when the footer is composed; this footer shows them at once and
    then updates like Textual's, but only when the keys changed (start-up speed, DESIGN.md P6:
    the first frame is the whole screen, and drawing it does no needless work).
    """

    def __init__(self) -> None:
        super().__init__()
        # Footer.compose yields nothing until this is set (textual 8.2: set by the screen's
        # first bindings_updated signal)
        self.set_reactive(Footer._bindings_ready, True)
        self._composed: tuple[tuple[object, ...], ...] | None = None

    def _keys(self) -> tuple[tuple[object, ...], ...]:
        """What the footer shows: each shown binding's key, label, action, state, tooltip."""
        return tuple(
            (
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                enabled,
                tooltip,
            )
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )

    def compose(self) -> ComposeResult:
        self._composed = self._keys()
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                # a key restyles itself twice as it is mounted (its "compact" watcher, then
                # the binding to this footer's "compact"), unless it has the value already
                widget.set_reactive(FooterKey.compact, self.compact)
            yield widget

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if self._composed is not None and screen is self.screen and self._keys() == self._composed:
            return  # the same keys: nothing to recompose
        super().bindings_changed(screen)


class TensScreen(Screen[None]):
    """A full screen: status lines, banners, the body, the footer."""

    TITLE_TEXT: ClassVar[str] = ""
    AUTO_FOCUS = ""  # letter keys are commands: no text box takes them unless chosen
    BINDINGS: ClassVar[list[BindingType]] = [STOP_BINDING, HELP_BINDING]
    HIDDEN_BANNERS: ClassVar[frozenset[str]] = frozenset({"simulator"})
    """Banner keys this screen does not list (the status line already shows the simulator)."""

    @property
    def tapp(self) -> TensApp:
        return cast("TensApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.TITLE_TEXT)
        yield BannerBar()
        yield from self.compose_body()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        """Redraw from the app's latest snapshot (called on every update and redraw tick)."""
        app = self.tapp
        try:
            status = self.query_one(StatusBar)
            banners = self.query_one(BannerBar)
            status.show(app.snapshot, app.ready, app.connecting, bool(app.backend_error))
            hidden = self.hidden_banner_texts()
            banners.show(
                [b for b in app.banners() if b[0] not in self.HIDDEN_BANNERS and b[2] not in hidden]
            )
            self.refresh_body()
        except NoMatches:
            # part of the screen is not composed yet (a redraw can arrive first, from another
            # thread's update); the next update or redraw tick draws it
            return

    def hidden_banner_texts(self) -> frozenset[str]:
        """Banner texts this screen already shows in its own words."""
        return frozenset()

    def refresh_body(self) -> None:
        """Screens redraw their own content here."""


class TensModal(ModalScreen[T]):
    """A dialog over a screen: the status lines and the STOP footer stay visible."""

    TITLE_TEXT: ClassVar[str] = ""
    AUTO_FOCUS = ""
    BINDINGS: ClassVar[list[BindingType]] = [STOP_BINDING]

    @property
    def tapp(self) -> TensApp:
        return cast("TensApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.TITLE_TEXT)
        yield from self.compose_body()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        app = self.tapp
        try:
            self.query_one(StatusBar).show(
                app.snapshot, app.ready, app.connecting, bool(app.backend_error)
            )
            self.refresh_body()
        except NoMatches:
            return  # not composed yet: the next update or redraw tick draws it

    def refresh_body(self) -> None:
        """Dialogs redraw their own content here."""
