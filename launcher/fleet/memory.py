"""The memory a client's processes hold together, as a device's memory would hold them, and the gauge that watches it.

    held_bytes({1234, 1240})          # bytes: every page they use, a page several of them map counted once
    exact_counting()                  # True where page frame numbers can be read (root): held_bytes is exact
    gauge = MemoryGauge(limit=900 * 2**20)
    gauge.over(processes)             # True when they hold more than the limit (cheap on most polls)

Where /proc/PID/pagemap gives page frame numbers (root; others read zeros), held_bytes counts the distinct
physical frames the processes map (and their distinct swap slots): exact, whoever else shares those pages (the
fork server they came from, other clients), as a device with its own memory would hold them all. Elsewhere it
falls back to /proc/PID/smaps, mapping by mapping: each process's private pages and swap, plus a mapping's
shared pages once (the most any of them has in a mapping with the same header line). That is a lower bound:
processes that each copied a different part of a mapping they share with a process outside still map the rest of
each other's part, which the fallback counts once only.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT = np.uint64(1 << 63)
_SWAPPED = np.uint64(1 << 62)
_FRAME = np.uint64((1 << 55) - 1)  # bits 0-54: the frame number, or the swap type and offset
EXACT = "distinct physical page frames (/proc/PID/pagemap): exact"
LOWER_BOUND = ("pages from /proc/PID/smaps, a mapping's shared pages counted once: a lower bound (page frames "
               "are readable by root only)")


def held_bytes(pids) -> int:
    """The physical memory these processes hold together (plus what they have in swap), a page they share counted
    once: exact from their page frames where readable, else the smaps lower bound. Processes gone count nothing."""
    frames = _frames(pids)
    return _smaps_bytes(pids) if frames is None else frames


def exact_counting() -> bool:
    """Whether held_bytes counts page frames here (this process may read its own frame numbers)."""
    return _frames([os.getpid()]) is not None


def describe() -> str:
    """What held_bytes counts on this machine, for run.json and the console."""
    return EXACT if exact_counting() else LOWER_BOUND


def _frames(pids) -> int | None:
    """Distinct frames and swap slots the processes map, in bytes; None where frame numbers read as zeros."""
    chunks = []
    for pid in pids:
        try:
            ranges = _ranges(Path(f"/proc/{pid}/maps").read_text())
            with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap:
                for start, end in ranges:
                    pagemap.seek(start // PAGE * 8)
                    chunks.append(pagemap.read((end - start) // PAGE * 8))
        except OSError:
            continue  # gone meanwhile
    entries = np.frombuffer(b"".join(chunks), dtype="<u8")
    frames = entries[(entries & _PRESENT) != 0] & _FRAME
    if len(frames) and not frames.any():
        return None  # frame numbers hidden from this process
    slots = entries[(entries & (_PRESENT | _SWAPPED)) == _SWAPPED] & _FRAME
    return (_distinct(frames) + _distinct(slots)) * PAGE


def _ranges(maps: str) -> list[tuple[int, int]]:
    """The address ranges that can hold pages (not a no-access reservation), adjacent mappings joined."""
    ranges: list[tuple[int, int]] = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) < 2 or fields[1].startswith("---") or line.endswith("[vsyscall]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return ranges


def _distinct(values: np.ndarray) -> int:
    """How many different values (a sort: quicker here than np.unique's hash)."""
    if not len(values):
        return 0
    values = np.sort(values)
    return 1 + int(np.count_nonzero(values[1:] != values[:-1]))


_SMAPS = re.compile(rb"^(?:([0-9a-f]+-[0-9a-f]+ .*)|(Shared|Private)_(?:Clean|Dirty):\s+(\d+) kB|Swap:\s+(\d+) kB)$",
                    re.MULTILINE)


def _smaps_bytes(pids) -> int:
    """The fallback: private pages and swap of each process, plus each mapping's shared pages once (the most any
    process has in a mapping of the same header line: address range, permissions, offset, device, inode, path)."""
    private = 0
    shared: dict[bytes, int] = {}  # mapping header -> the most shared kB any process has there
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps").read_bytes()
        except OSError:
            continue
        here: dict[bytes, int] = {}
        header = b""
        for match in _SMAPS.finditer(text):
            mapping, kind, kb, swap = match.groups()
            if mapping is not None:
                header = mapping
            elif swap is not None:
                private += int(swap)
            elif kind == b"Private":
                private += int(kb)
            else:
                here[header] = here.get(header, 0) + int(kb)
        for header, kb in here.items():
            shared[header] = max(shared.get(header, 0), kb)
    return (private + sum(shared.values())) * 1024


REMEASURE = 1.0  # seconds between two reads of held_bytes while the estimate is near the limit
REFRESH = 5.0  # ... while it is well below the limit (the resident sets add up over it)
MARGIN = 0.15  # near: the estimate within this fraction of the limit


def resident_bytes(pid: int) -> int:
    """The process's resident set plus its swap (/proc/PID/status: cheap); 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith((b"VmRSS:", b"VmSwap:")):
            total += int(line.split()[1]) * 1024
    return total


@dataclass
class MemoryGauge:
    """How much memory one client's processes hold (held_bytes), cheap enough to look at each poll.

        gauge = MemoryGauge(limit=900 * 2**20)
        gauge.over(processes)      # psutil.Process objects (or anything with .pid): True above the limit

    Their resident sets plus swap added up (/proc/PID/status) count a shared page once per process, so they are
    never below what held_bytes counts: while that sum is within the limit, nothing more is read. Above it the
    estimate is the sum less the double count the last held_bytes read found (new memory shows in the resident
    sets at once); held_bytes is read again at once when the set of processes changed, every REMEASURE seconds
    while the estimate is within MARGIN of the limit, and every REFRESH seconds otherwise."""

    limit: int
    held: int = 0  # the figure at the last look
    reads: int = 0  # how many times held_bytes was read
    _overlap: int = 0  # bytes the resident sets counted more than once, at the last read
    _pids: frozenset = frozenset()
    _read_at: float = float("-inf")

    def over(self, processes) -> bool:
        resident = {}
        for process in processes:
            if size := resident_bytes(process.pid):
                resident[process.pid] = size
        total = sum(resident.values())
        if total <= self.limit:
            self.held = total
            return False
        pids, since = frozenset(resident), time.monotonic() - self._read_at
        near = total - self._overlap > self.limit * (1 - MARGIN)
        if pids != self._pids or since >= REFRESH or (near and since >= REMEASURE):
            self._overlap = max(0, total - held_bytes(pids))
            self._pids, self._read_at = pids, time.monotonic()
            self.reads += 1
        self.held = total - self._overlap
        return self.held > self.limit
