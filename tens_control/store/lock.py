"""Liveness lock: tells a starting process whether another process may have a session running.

A process that runs sessions holds a *shared* ``flock`` on ``<database>.lock`` for as long as its
store is open. Crash recovery needs the *exclusive* lock: if it cannot get it, another live
process may be in the middle of a session, and its unfinished session is not a crash. The kernel
drops the lock of a process that dies, however it dies (SIGKILL included).

On systems without ``fcntl`` (Windows) the lock is a no-op: recovery assumes no other process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class LivenessLock:
    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None
        self._mode: str = ""

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    @property
    def mode(self) -> str:
        """``""`` (not held), ``"shared"`` or ``"exclusive"``."""
        return self._mode

    def try_exclusive(self) -> bool:
        """Take the exclusive lock without waiting; False if another process holds the lock."""
        if fcntl is None:
            self._mode = "exclusive"
            return True
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._mode = "exclusive"
        return True

    def shared(self, timeout_s: float = 10.0) -> bool:
        """Hold the shared lock (converting an exclusive one). Another process holds the lock
        exclusively only briefly (while recovering or deleting), so wait up to ``timeout_s``;
        False if it is still held then."""
        if self._mode == "shared":
            return True
        if fcntl is not None:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(self._open(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.05)
        self._mode = "shared"
        return True

    def release(self) -> None:
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._mode = ""


class SessionLock:
    """One running session per database (DESIGN.md §12): an exclusive ``flock`` on
    ``<database>.session``, held by the store that runs a session from its start to its end.

    The holder writes its process id, command line and the session's start into the file, so a
    second program that is refused can say which program is running. The kernel drops the lock
    of a process that dies, however it dies. Without ``fcntl`` (Windows) it is a no-op.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".session")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, who: str) -> str | None:
        """Take the lock and record ``who``; returns None, or (when another program holds it)
        what that program wrote about itself."""
        if self._fd is not None or fcntl is None:
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            return holder or "another tens-control program"
        os.ftruncate(fd, 0)
        os.pwrite(fd, who.encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd
        return None

    def holder(self) -> str | None:
        """What the program holding the lock wrote about itself, or None if no other program
        holds it (this store holding it does not count)."""
        if self._fd is not None or fcntl is None or not self.path.exists():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 4096).decode("utf-8", "replace").strip()
                return text or "another tens-control program"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
