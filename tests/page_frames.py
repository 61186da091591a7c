"""The memory processes hold together, read from the kernel's page tables: an oracle for the fleet's memory limit.

    physical_bytes({1234, 1240})   # distinct physical pages mapped by either, in bytes; None where hidden (not root)

/proc/PID/pagemap gives each virtual page's page frame number (root only: others read zeros); a page that
several processes map (copy-on-write after a fork) has one frame, so it counts once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = np.uint64(1 << 63)
FRAME = np.uint64((1 << 55) - 1)


def physical_bytes(pids) -> int | None:
    frames = []
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
                for line in maps:
                    if line.endswith("[vsyscall]"):
                        continue
                    start, end = (int(x, 16) for x in line.split()[0].split("-"))
                    pagemap.seek(start // PAGE * 8)
                    data = pagemap.read((end - start) // PAGE * 8)
                    entries = np.frombuffer(data, dtype="<u8")
                    frames.append(entries[(entries & PRESENT) != 0] & FRAME)
        except OSError:
            continue  # gone meanwhile
    distinct = np.unique(np.concatenate(frames)) if frames else np.array([], dtype=np.uint64)
    if len(distinct) and not distinct.any():
        return None
    return len(distinct) * PAGE
