"""One sandbox per state folder: an advisory lock on `<state folder>/sandbox.lock`.

A second sandbox started on the same folder would write its own kubeconfig over the first's
and, when it stops, delete it, leaving the first unreachable. The lock (`flock`, released by
the kernel when the process dies, so a crashed sandbox never leaves a stale lock) lets the
second one refuse before it touches anything. The file holds the holder's pid and, once it
listens, its URL, so the refusal can say which sandbox is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

LOCK_NAME = "sandbox.lock"


class AlreadyRunning(Exception):
    """Another sandbox holds the state folder."""

    def __init__(self, pid: int | None, server: str | None) -> None:
        self.pid = pid
        self.server = server
        where = ", ".join(part for part in (f"pid {pid}" if pid else "", server or "") if part)
        super().__init__(
            "a sandbox is already running"
            + (f" ({where})" if where else "")
            + ": stop it first, or give this one another state folder (--kubeconfig DIR/kubeconfig)"
        )


class StateLock:
    """The lock on one state folder, held for the sandbox's life."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `AlreadyRunning` without changing anything in the folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: opening the holder's file must not erase what it wrote.
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, server = _read(descriptor)
            os.close(descriptor)
            raise AlreadyRunning(pid, server) from None
        self._descriptor = descriptor
        self.record(None)

    def record(self, server: str | None) -> None:
        """Write this process's pid and (once known) its URL into the lock file."""
        if self._descriptor is None:
            raise RuntimeError("the state lock is not held")
        data = json.dumps({"pid": os.getpid(), "server": server}).encode()
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, data, 0)

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race a starting sandbox)."""
        if self._descriptor is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._descriptor, 0)
        os.close(self._descriptor)  # closing the descriptor releases the flock
        self._descriptor = None


def _read(descriptor: int) -> tuple[int | None, str | None]:
    """The holder's pid and URL, or None for what is unreadable (it may be mid-write)."""
    try:
        text = os.pread(descriptor, 4096, 0)
        value = json.loads(text) if text else {}
    except (OSError, ValueError):
        return None, None
    if not isinstance(value, dict):
        return None, None
    pid, server = value.get("pid"), value.get("server")
    return (
        pid if isinstance(pid, int) else None,
        server if isinstance(server, str) else None,
    )
