"""Messages the app posts to itself from other threads (``post_message`` is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from tens_control.session import SessionController, Update
    from tens_control.store.store import Store


@dataclass
class SessionUpdated(Message):
    """The session controller reported an update (posted from the controller's thread)."""

    update: Update
    coalesce: str = ""
    """Non-empty: a newer message with the same key replaces this one (display refreshes only;
    the controller has already logged everything)."""

    def can_replace(self, message: Message) -> bool:
        return (
            bool(self.coalesce)
            and isinstance(message, SessionUpdated)
            and message.coalesce == self.coalesce
        )


@dataclass
class BackendReady(Message):
    """The store is open and the session controller exists."""

    controller: SessionController
    store: Store


@dataclass
class BackendFailed(Message):
    """The store or the controller could not be opened. ``text`` says why and what to do."""

    text: str


@dataclass
class TaskDone(Message):
    """A blocking controller call (on a worker thread) finished.

    ``task``: connect, prepare, start, resume, finish, call. ``error``: one sentence for the
    patient when it failed (``None``: it worked). ``check``: the precondition that failed, if any.
    """

    task: str
    result: Any = None
    error: str | None = None
    check: str = ""
