"""Where the database lives, and the defaults a single-user home install relies on."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import platformdirs

ENV_DB = "TENS_CONTROL_DB"
"""Environment variable naming the database file (overridden by ``--db``)."""

ENV_PATIENT = "TENS_CONTROL_PATIENT"
"""Environment variable naming the current patient's pseudonym."""

DEFAULT_PATIENT = "patient-1"
"""The pseudonym of the one patient of a single-user home install."""

DB_FILENAME = "tens-control.sqlite3"

_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_db_path() -> Path:
    """The database in the user data directory (e.g. ``~/.local/share/tens-control/``)."""
    return Path(platformdirs.user_data_dir("tens-control", appauthor=False)) / DB_FILENAME


def resolve_db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` (``--db``) if given, else ``$TENS_CONTROL_DB``, else :func:`default_db_path`."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    from_env = os.environ.get(ENV_DB, "")
    if from_env:
        return Path(from_env).expanduser()
    return default_db_path()


def configured_patient() -> str:
    """``$TENS_CONTROL_PATIENT`` if set, else :data:`DEFAULT_PATIENT`."""
    return os.environ.get(ENV_PATIENT, "") or DEFAULT_PATIENT


def check_pseudonym(pseudonym: str) -> str:
    """Return ``pseudonym`` if it is a valid pseudonym, else raise ``ValueError``.

    1-64 characters: letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit.
    (A pseudonym, never a name: the store cannot check that, the clinic must.)
    """
    if not _PSEUDONYM.match(pseudonym):
        raise ValueError(
            f"pseudonym {pseudonym!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return pseudonym


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """Add the standard ``--db PATH`` option to a command's parser."""
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help=f"database file (default: ${ENV_DB}, else {default_db_path()})",
    )


def add_patient_argument(parser: argparse.ArgumentParser) -> None:
    """Add the standard ``--patient ID`` option (default: the current patient)."""
    parser.add_argument(
        "--patient",
        metavar="ID",
        default=None,
        help=f"patient pseudonym (default: ${ENV_PATIENT}, else the only patient in the "
        f"database, else {DEFAULT_PATIENT})",
    )
