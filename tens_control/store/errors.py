"""Errors of the session store. Each message names what is wrong and what to do."""

from __future__ import annotations

from tens_control.errors import TensControlError


class StoreError(TensControlError):
    """Base of every error the store raises."""


class DatabaseMissingError(StoreError):
    """There is no database at the given path (and creating one was not asked for)."""


class DatabaseFolderMissingError(DatabaseMissingError):
    """An explicit ``--db`` (or ``$TENS_CONTROL_DB``) names a file in a folder that does not
    exist: most likely a typo, so no folder is created (only the default data folder is)."""


class DatabaseNotWritableError(StoreError):
    """A command that writes was given a database (or, for a new one, a folder) this user
    cannot write: read-only media, a read-only folder or file, or a file in place of a folder.
    Nothing was written. Reading commands open such a database read-only."""


class DiskFullError(StoreError):
    """A write failed because the disk (or the file size limit) is full. Everything committed
    before it is kept."""


class NotATensControlDatabaseError(StoreError):
    """The file is not a tens-control database (not SQLite at all, or another program's)."""


class DatabaseCorruptError(StoreError):
    """The file looks like a tens-control database but cannot be read (truncated, damaged)."""


class NewerSchemaError(StoreError):
    """The database was written by a newer tens-control with a schema this one does not know."""


class MigrationError(StoreError):
    """Upgrading an older database failed; the database was left as it was."""


class UnknownPatientError(StoreError):
    """No patient with that pseudonym."""


class UnknownSessionError(StoreError):
    """No session with that id."""


class InvalidRecordError(StoreError):
    """A record (rating, diary entry, ...) breaks a rule; the message names the field."""


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class StoreBusyError(StoreError):
    """Another tens-control process is using the database in a way that forbids this action."""


class BundleError(StoreError):
    """An export bundle is malformed, tampered with, or conflicts with the database."""


class RewrittenHistoryError(BundleError):
    """A bundle does not extend the history an earlier import of the same patient received
    (records were cut or rewritten since): refused, and the bundle kept aside."""
