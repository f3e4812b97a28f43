"""Opening the database for a command that writes to it, as a user named it (``--db``,
``$TENS_CONTROL_DB``, else the default in the user data folder): only the default data folder is
created by itself, so a mistyped ``--db`` is refused rather than starting a new, empty database
somewhere; a new database is announced on standard error. Commands that only read use
:meth:`Store.open_to_read`. The rules: docs/data.md, "Where the database lives"."""

from __future__ import annotations

import sys
from typing import Any

from tens_control.store import Store


def open_to_write(db: str | None, **options: Any) -> Store:
    """:meth:`Store.open` for a command's ``--db``, with a note when it created the database."""
    store = Store.open(db, make_folders=False, **options)
    if store.created:
        print(f"tens-control: note: created a new database at {store.path}", file=sys.stderr)
    return store
