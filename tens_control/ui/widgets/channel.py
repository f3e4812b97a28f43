"""One stimulation channel on the running screen: set and measured mA in large digits, the ramp
(target versus delivered), the limit in force and where it comes from, and live sparklines of
the measured current and the electrode impedance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Digits, Sparkline, Static

from tens_control.ui.text import CAP_SHORT, CAP_WORDS, fmt_ma, fmt_ohm, level_text
from tens_control.ui.widgets.chart import ScaleChart

if TYPE_CHECKING:
    from tens_control.session import ChannelView


def ramp_text(view: ChannelView, running: bool) -> str:
    """Target versus delivered, in words (the ramp is visible)."""
    target, now = view.target_ma, view.set_ma
    if view.lead_off:
        return "ELECTRODE OFF — output 0; put the pad back on"
    if target > now + 1e-9:
        return f"▲ rising to {fmt_ma(target)} mA (now {fmt_ma(now)} mA)"
    if now > target + 1e-9:
        return f"▼ lowering to {fmt_ma(target)} mA"
    if now <= 0 and running:
        return "at 0 mA — press ↑ to raise"
    return f"steady at {fmt_ma(now)} mA"


def limit_text(view: ChannelView) -> tuple[str, bool]:
    """(text, at the limit) for the highest level allowed now and its source."""
    source = str(view.cap_source)
    at_limit = view.cap_ma > 0 and view.target_ma >= view.cap_ma - 1e-9
    if at_limit:
        words = CAP_WORDS.get(source, source)
        return f"AT LIMIT {fmt_ma(view.cap_ma)} mA ({words})", True
    return f"limit {fmt_ma(view.cap_ma)} mA ({CAP_SHORT.get(source, source)})", False


class ChannelPanel(Vertical):
    """A channel's live state. ``show`` redraws it from a ChannelView."""

    def __init__(self, channel: int) -> None:
        super().__init__(id=f"channel-{channel}")
        self.channel = channel
        self._pending: tuple[ChannelView, dict[str, Any]] | None = None
        self._composed = False

    def on_mount(self) -> None:
        self._composed = True
        if self._pending is not None:
            view, values = self._pending
            self._pending = None
            self.show(view, **values)

    def compose(self) -> ComposeResult:
        yield Static(f"Channel {self.channel}", classes="channel-title", markup=False)
        with Horizontal(classes="digits-row"):
            with Vertical(classes="digits-box"):
                yield Static("SET mA", classes="digits-label")
                yield Digits("0", classes="set-digits")
            with Vertical(classes="digits-box"):
                yield Static("MEASURED mA", classes="digits-label")
                yield Digits("-", classes="measured-digits")
        yield Static("", classes="line ramp-line", markup=False)
        yield Static("", classes="line limit-line", markup=False)
        yield Static("", classes="line message-line", markup=False)
        with Horizontal(classes="line"):
            yield Static("current   ", classes="spark-label current-label")
            # a fixed scale, 0 to the limit: a steady 5 mA looks steady, a steady 40 mA full
            yield ScaleChart(axis=False, classes="current-spark")
        with Horizontal(classes="line"):
            yield Static("impedance ", classes="spark-label")
            yield Sparkline([], classes="impedance-spark", summary_function=max)

    def show(
        self,
        view: ChannelView,
        *,
        selected: bool,
        running: bool,
        message: str,
        current: Sequence[float],
        impedance: Sequence[float],
        reports_current: bool,
    ) -> None:
        if not self._composed:
            self._pending = (
                view,
                {
                    "selected": selected,
                    "running": running,
                    "message": message,
                    "current": current,
                    "impedance": impedance,
                    "reports_current": reports_current,
                },
            )
            return
        marker = "▶ " if selected else "  "
        state = "PAD OFF" if view.lead_off else level_text(view.set_ma, view.cap_ma)
        chosen = " (selected)" if selected else ""
        self.query_one(".channel-title", Static).update(
            f"{marker}Channel {view.channel} · {state}{chosen}"
        )
        self.set_class(selected, "selected")
        self.query_one(".set-digits", Digits).update(fmt_ma(view.set_ma, "0"))
        measured = fmt_ma(view.measured_ma, "-") if reports_current else "-"
        self.query_one(".measured-digits", Digits).update(measured)
        self.query_one(".ramp-line", Static).update(ramp_text(view, running))
        text, at_limit = limit_text(view)
        limit = self.query_one(".limit-line", Static)
        limit.update(text)
        limit.set_class(at_limit, "at-limit")
        msg = self.query_one(".message-line", Static)
        msg.update(message)
        msg.display = bool(message)
        ohm = f" · {fmt_ohm(view.impedance_ohm)}" if view.impedance_ohm is not None else ""
        top = view.cap_ma if view.cap_ma > 0 else max([1.0, *current])
        self.query_one(".current-label", Static).update(f"current 0–{fmt_ma(top)} mA")
        self.query_one(".current-spark", ScaleChart).set_values(current, top)
        imp = self.query_one(".impedance-spark", Sparkline)
        imp.data = list(impedance)
        labels = self.query(".spark-label")
        if len(labels) == 2:
            imp_label = labels[1]
            if isinstance(imp_label, Static):
                imp_label.update(f"impedance{ohm} " if ohm else "impedance ")
