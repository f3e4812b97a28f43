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
