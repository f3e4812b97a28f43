"""Opening the database for a command that writes to it, as a user named it (``--db``,
``$TENS_CONTROL_DB``, else the default in the user data folder): only the default data folder is
created by itself, so a mistyped ``--db`` is refused rather than starting a new, empty database
somewhere; a new database is announced on standard error when the command is done. Commands
that only read use :meth:`Store.open_to_read`. The rules: docs/data.md, "When the file system
does not cooperate"."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tens_control.store import Store

CREATED: list[Path] = []
"""Databases this process created; ``tens_control.cli`` announces them when the command did not
fail (exit status 2 means nothing was done: its one-line error is all it prints)."""


def open_to_write(db: str | None, **options: Any) -> Store:
    """:meth:`Store.open` for a command's ``--db``; a database it creates is remembered in
    :data:`CREATED`."""
    store = Store.open(db, make_folders=False, **options)
    if store.created:
        CREATED.append(store.path)
    return store


def announce_created(status: int) -> None:
    """After the command: ``note: created a new database at PATH`` for each one it made, unless
    it failed with a usage error."""
    if status != 2:
        for path in CREATED:
            print(f"tens-control: note: created a new database at {path}", file=sys.stderr)
    CREATED.clear()
