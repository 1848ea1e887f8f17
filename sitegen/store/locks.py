"""Advisory locks between sitegen processes: one render into a folder at a time, one process on a piece of
work or an entry's merge at a time.

``fcntl.flock`` locks belong to an open file and end with the process that holds
them, so a build killed with SIGKILL leaves nothing locked.  Lock files are
never removed (removing one while another process waits on it would let two
hold "the" lock); names are hashed into a bounded number of slots per purpose,
so they do not pile up.  Where ``fcntl`` is missing (Windows) locking does
nothing: one process at a time is then the user's business.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

fcntl: ModuleType | None  # None where the platform has no fcntl
try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

SLOTS = 4096  # lock files per purpose at most


def slot(folder: Path, name: str) -> Path:
    """The lock file of ``name`` under ``folder``: one of SLOTS files."""
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % SLOTS
    return folder / f"{digest:03x}.lock"


class Lock:
    """An exclusive lock on one lock file, taken with :meth:`take` or :meth:`try_take`."""

    def __init__(self, path: Path):
        self.path = path
        self.handle: int | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def try_take(self) -> bool:
        """Take the lock if no other process holds it; say whether it was taken."""
        handle = self._open()
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                return False
        self.handle = handle
        return True

    def take(self, waiting: Callable[[], None] | None = None) -> None:
        """Take the lock, waiting for it; ``waiting`` is called once if another process holds it."""
        if self.try_take():
            return
        if waiting is not None:
            waiting()
        handle = self._open()
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        self.handle = handle

    def current(self) -> bool:
        """Whether the lock held is on the file at its path now (a clean may have removed the file while
        this process waited on it: then another process can lock the new one, and this lock means nothing)."""
        if self.handle is None:  # not held
            return False
        try:
            held, now = os.fstat(self.handle), os.stat(self.path)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)  # closing the file ends its lock
            self.handle = None


@contextlib.contextmanager
def held(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock on ``path`` for a block of code."""
    lock = Lock(path)
    lock.take(waiting)
    try:
        yield
    finally:
        lock.release()
