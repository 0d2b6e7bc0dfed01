"""One process per output directory.

Two runs writing one directory would interleave ``log.txt``, write every iteration twice into
``metrics.jsonl`` and race for ``model_final.pth``. A run therefore holds an exclusive
``flock`` on ``DIR/.lock`` while it works. The kernel releases the lock when the holder ends,
however it ends (``kill -9`` and a node crash included), so a crashed run never blocks the
``--resume`` that continues it; the file itself stays behind, harmlessly. It records the
holder's process id, host and command, for the message the next process shows.
"""
import fcntl
import os
import socket
import sys
from typing import Optional

from ..errors import UserError

LOCK_FILE = ".lock"


class DirectoryInUse(UserError):
    """Another process holds the output directory."""


class DirectoryLock:
    """``with DirectoryLock(dir, "training run"):`` holds ``dir`` or raises :class:`DirectoryInUse`."""

    def __init__(self, directory: str, what: str = "run") -> None:
        self.directory = directory
        self.what = what
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> "DirectoryLock":
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DirectoryInUse(
                f"{self.directory} is in use by {holder}; a second {self.what} there would mix its outputs "
                "with the first's. Wait for it to end (or stop it), or use another --output-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)})\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(directory: str) -> Optional[str]:
    """Who holds ``directory`` right now, or None when nobody does (checked by trying the lock)."""
    path = os.path.join(directory, LOCK_FILE)
    if not os.path.isfile(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 4096).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)
    return None
