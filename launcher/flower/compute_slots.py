"""A few tasks compute at a time on a host (one per core); the others wait without CPU.

    slots = ComputeSlots(run_dir / "slots", count=os.cpu_count())
    with slots.held():
            run_the_task()

Fifty clients training at once on two cores finish no sooner than a few at a time, but each
holds its activations and optimiser state meanwhile: measured on W2 (50 clients x 20 epochs,
2 cores), peak memory 4.8 GiB without slots, 3.7 GiB with three, and the same time per
round. One per core, not one more: three tasks time-sliced on two cores cost a third more
CPU each (their data evicting each other's from the caches) and a round's last task computes
alone (W1, 10 clients x 5000 samples: 8.74 s a round with three slots, 6.14 s with two).
Clients held to a share of a core by an emulated fleet (launcher.fleet) do not fill a core
each: one more computes beside them.

A slot is an flock on a file in the run folder: the kernel releases it when its holder dies,
however it dies, so a killed client never keeps one. Waiters queue on one more lock, first
come, first served; the head of the queue sleeps on the slots' bell (contract.wakeups: an
abstract Unix socket, nothing in the run folder) that a holder rings as it lets go, so a freed
slot is taken at once, and looks again every DEATH_POLL_SECONDS for a holder that died
without ringing.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from contract.wakeups import WakeupSocket, wake

POLL_SECONDS = 0.01  # where the bell cannot be bound: only the process at the head of the queue polls
DEATH_POLL_SECONDS = 0.05  # a holder killed before it could ring: its slot is seen free within this
BELL = "slots"  # the bell's role name (contract.wakeups), keyed by the slots folder


class ComputeSlots:
    def __init__(self, folder: Path, count: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.queue = folder / "queue.lock"
        self.paths = [folder / f"slot_{i}.lock" for i in range(max(1, count))]

    @staticmethod
    def _lock(path: Path, block: bool) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            return fd
        except BlockingIOError:
            os.close(fd)
            return None

    def _first_free(self) -> int | None:
        """The descriptor of the first slot this process could lock, or None when all are held."""
        for path in self.paths:
            if (fd := self._lock(path, block=False)) is not None:
                return fd
        return None

    @contextmanager
    def held(self):
        """Queue (asleep, in the kernel) for the right to look; the one at the head sleeps on the bell between
        looks at the slots."""
        queue = self._lock(self.queue, block=True)
        bell = None
        try:
            bell = WakeupSocket(self.folder, BELL)  # bound before the first look: a slot freed after it rings it
            while (fd := self._first_free()) is None:
                bell.wait(DEATH_POLL_SECONDS if bell.bound else POLL_SECONDS)
        finally:
            if bell is not None:
                bell.close()
            os.close(queue)
        try:
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the lock
            wake(self.folder, BELL)  # the head of the queue, if one waits


def gpu_slot_count(gpus_per_client: float) -> int:
    """Tasks that compute on one GPU at once, each taking ``gpus_per_client`` of it."""
    return max(1, int(1.0 / gpus_per_client + 1e-9))


def cpu_slot_count(torch_threads: int, held: bool = False) -> int:
    """Tasks that compute on this host's CPUs at once: one per core (each taking ``torch_threads``), one more
    for clients ``held`` to a share of a core (an emulated fleet's)."""
    return max(1, (os.cpu_count() or 1) // max(1, torch_threads)) + (1 if held else 0)


def host_slots(folder: Path, gpu: str | None, gpus_per_client: float, torch_threads: int,
               held: bool = False) -> ComputeSlots:
    """A client's slots: the host's CPU slots (cpu_slot_count), or, for a client given a GPU, that GPU's:
    floor(1/F) tasks at once."""
    if gpu is not None and gpus_per_client > 0:
        return ComputeSlots(folder / f"gpu-{gpu}", count=gpu_slot_count(gpus_per_client))
    return ComputeSlots(folder, count=cpu_slot_count(torch_threads, held))
