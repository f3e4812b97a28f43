"""Connect: the serial ports found (with what they look like), the simulator, reconnect, save.

Listing ports only asks the operating system what exists; nothing is opened until the patient
chooses one, and then the session controller opens it and identifies the unit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tens_control.ui.messages import TaskDone
from tens_control.ui.screens.base import TensScreen
from tens_control.ui.widgets.inputs import SafeInput

log = logging.getLogger(__name__)

SIMULATOR_URL = "sim://tsp"


@dataclass(frozen=True)
class Choice:
    url: str
    label: str


def find_choices() -> tuple[list[Choice], str]:
    """The simulator, the saved device and every serial port (any thread); and the saved URL."""
    from drivers.transport import list_ports
    from tens_control.config import ConfigError, load_config
    from tens_control.device import choose_device

    choices = [Choice(SIMULATOR_URL, "Built-in simulator (sim://tsp) — delivers no stimulation")]
    saved = ""
    try:
        saved = load_config().device or ""
    except ConfigError as error:
        log.warning("%s", error)
    if saved and saved != SIMULATOR_URL:
        choices.append(Choice(saved, f"Your saved device: {saved}"))
    try:
        ports = list_ports()
    except Exception:
        log.exception("could not list serial ports")
        ports = []
    for port in ports:
        parts = [port.device, port.description or "no description"]
        if port.vid is not None:
            parts.append(f"USB {port.usb_id}")
        if port.serial_number:
            parts.append(f"serial {port.serial_number}")
        try:
            choice = choose_device(port.device)
            if choice.profile_id:
                parts.append(f"looks like: {choice.profile_id} ({choice.protocol})")
        except Exception:
            log.debug("no profile guess for %s", port.device, exc_info=True)
        choices.append(Choice(port.device, " — ".join(parts)))
    return choices, saved


class ConnectScreen(TensScreen):
    TITLE_TEXT = "Connect a device"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reconnect", "Reconnect"),
        Binding("s", "save", "Save device"),
        Binding("u", "type_address", "Address"),
        Binding("f", "find", "Find ports again", show=False),
        Binding("b", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.choices: list[Choice] = []
        self.saved = ""
        self.last_url = ""
        self.note = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="connect-body", can_focus=False):
            with Vertical(id="connect-current", classes="card"):
                yield Static("", id="connect-identity", markup=False)
            yield Static("Choose a device with ↑ ↓ and press Enter to connect:", classes="hint")
            yield OptionList(id="connect-list")
            yield SafeInput(
                placeholder="or type an address (e.g. /dev/ttyUSB1, socket://127.0.0.1:7777)",
                id="connect-url",
            )
            yield Static("", id="connect-note", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#connect-current").border_title = "Now connected"
        self.action_find()
        self.query_one("#connect-list", OptionList).focus()

    def action_find(self) -> None:
        self.note = "Looking for serial ports…"
        self._find()
        self.refresh_view()

    @work(thread=True, exit_on_error=False, exclusive=True, group="find-ports")
    def _find(self) -> None:
        try:
            choices, saved = find_choices()
        except Exception as error:
            log.exception("could not list devices")
            choices, saved = [Choice(SIMULATOR_URL, "Built-in simulator (sim://tsp)")], ""
            self.app.call_from_thread(setattr, self, "note", f"Could not list ports: {error}")
        self.app.call_from_thread(self._found, choices, saved)

    def _found(self, choices: list[Choice], saved: str) -> None:
        self.choices = choices
        self.saved = saved
        options = self.query_one("#connect-list", OptionList)
        options.clear_options()
        options.add_options([Option(c.label, id=f"choice-{i}") for i, c in enumerate(choices)])
        options.highlighted = 0
        ports = len(choices) - 1 - (1 if saved and saved != SIMULATOR_URL else 0)
        self.note = (
            f"{ports} serial port(s) found."
            if ports
            else "No serial ports found. Plug the unit in and press F to look again."
        )
        self.refresh_view()

    def refresh_body(self) -> None:
        snapshot = self.tapp.snapshot
        device = snapshot.device if snapshot is not None else None
        if self.tapp.connecting:
            text = "Connecting…"
        elif device is None:
            text = "Nothing is connected."
        else:
            kind = "SIMULATOR (no stimulation is delivered)" if device.is_simulator else "TENS unit"
            text = (
                f"{device.model} — {kind}\n"
                f"serial {device.serial_number} · firmware {device.firmware} · {device.protocol}\n"
                f"on {device.url} · profile: {device.profile_name}"
            )
            if device.profile_note:
                text += f"\n{device.profile_note}"
        self.query_one("#connect-identity", Static).update(text)
        self.query_one("#connect-note", Static).update(self.note)

    # ------------------------------------------------------------------ choosing
    def _highlighted(self) -> Choice | None:
        options = self.query_one("#connect-list", OptionList)
        index = options.highlighted
        if index is None or not 0 <= index < len(self.choices):
            return None
        return self.choices[index]

    @on(OptionList.OptionSelected, "#connect-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        index = event.option_index
        if 0 <= index < len(self.choices):
            self._connect(self.choices[index].url)

    @on(Input.Submitted, "#connect-url")
    def _typed(self, event: Input.Submitted) -> None:
        url = event.value.strip()
        if url:
            self._connect(url)

    def _connect(self, url: str) -> None:
        if self.tapp.session_active:
            self.note = "A session is running: stop it before connecting another device."
            self.refresh_view()
            return
        self.last_url = url
        self.note = f"Connecting to {url}…"
        self.tapp.connect_device(url)
        self.refresh_view()

    def action_reconnect(self) -> None:
        snapshot = self.tapp.snapshot
        url = self.last_url
        if not url and snapshot is not None and snapshot.device is not None:
            url = snapshot.device.url
        if not url:
            url = self.tapp.options.device or ""
        self._connect(url) if url else self._connect_default()

    def _connect_default(self) -> None:
        if self.tapp.session_active:
            return
        self.note = "Connecting to the saved device (or the simulator)…"
        self.tapp.connect_device(None)
        self.refresh_view()

    def action_save(self) -> None:
        choice = self._highlighted()
        url = choice.url if choice is not None else ""
        typed = self.query_one("#connect-url", SafeInput).value.strip()
        if typed and self.query_one("#connect-url", SafeInput).has_focus:
            url = typed
        if not url:
            return
        self._save(url)

    @work(thread=True, exit_on_error=False, group="save-device")
    def _save(self, url: str) -> None:
        from tens_control.config import update_config

        try:
            update_config(device=url)
        except Exception as error:
            self.post_message(TaskDone("save-device", error=str(error)))
            return
        self.post_message(TaskDone("save-device", result=url))

    def on_task_done(self, message: TaskDone) -> None:
        if message.task != "save-device":
            return
        message.stop()
        if message.error is not None:
            self.note = f"Not saved: {message.error}"
        else:
            self.note = f"Saved: tens-control will use {message.result} from now on."
            self.action_find()
        self.refresh_view()

    def task_done(self, message: TaskDone) -> None:
        if message.task == "connect":
            if message.error is None:
                self.note = "Connected."
                self.app.pop_screen()
            else:
                self.note = f"Could not connect: {message.error}"
        self.refresh_view()

    def action_type_address(self) -> None:
        self.query_one("#connect-url", SafeInput).focus()

    def action_back(self) -> None:
        self.app.pop_screen()
