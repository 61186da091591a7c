"""A SuperNode's pull of a message, visible to its task host: held while the message's objects come in.

    with PullLock(client_dir).held():       # launcher.flower.quick_supernode, around Flower's pull
        pull_and_store_message(...)
    PullLock(client_dir).wait_free(stop=lambda: stopping)   # warm_clientapp, before it runs a task

Flower's SuperNode makes a task visible to its task runner before it has pulled the task's message
objects from the SuperLink. On a slow link (an emulated fleet, a device on Wi-Fi) the runner would take
a compute slot and start a task that then waits for those bytes, retrying after 1 s, 2 s, 4 s... and so
starts up to a backoff step after they arrived. The runner waits on this lock instead and starts the task
when the pull is done. It is an flock on ``<client-dir>/pull.lock``: the kernel releases it if the
SuperNode dies, so a waiter is never stuck on a dead holder.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

PULL_LOCK = "pull.lock"
WAIT_POLL = 0.02


class PullLock:
    def __init__(self, client_dir: str | Path) -> None:
        self.path = Path(client_dir) / PULL_LOCK

    def _open(self) -> int | None:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:  # no client folder here: nothing to wait for
            return None

    @contextmanager
    def held(self):
        fd = self._open()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)

    def wait_free(self, stop=lambda: False) -> bool:
        """True once no pull holds the lock (at once when none does); False when ``stop()`` turned true first
        (checked every WAIT_POLL seconds, so a SIGTERM during a long pull is answered)."""
        fd = self._open()
        if fd is None:
            return True
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if stop():
                        return False
                    time.sleep(WAIT_POLL)
        finally:
            os.close(fd)
