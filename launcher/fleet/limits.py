"""A client's CPU share and memory limit, enforced on its real processes by the best backend this machine allows.

    limiter = Limiter.choose()            # or Limiter.choose("fallback"); FL_LAUNCH_LIMITS=fallback forces it too
    limiter.backend                       # Backend.CGROUP1
    limiter.description                   # the one line to print and record in run.json
    with limiter.limit("exp1-client-3", ClientLimits(cpu=0.25, memory=900 * 2**20), profile="pi4") as client:
        client.add(supernode_pid)
        client.add(taskhost_pid)          # its forked children are held to the same limits
        ...
        if client.cause():                # "out of memory (profile pi4)"
            ...
    limiter.close()                       # closes any client not closed yet

Backends, tried in this order unless one is asked for: cgroup v2 (cpu.max, memory.max) where the cpu and
memory controllers can be enabled, cgroup v1 (CFS quota, memory.limit_in_bytes) where both hierarchies are
writable, else the fallback that needs no privileges (SIGSTOP/SIGCONT duty cycling, a memory watchdog).
A share is of one core of this machine, 0.01 to 1; memory is bytes the client's processes hold (memory.held_bytes:
a page they share counted once), None for no limit. A cgroup's limit charges only the pages the client touched
first, not those it maps from the process it was forked from; the supervisor's watch (launcher.fleet.emulation)
holds the client to the same figure as held_bytes counts it.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from contract.errors import InputError
from launcher.fleet.cgroup_limits import BASE, CgroupV1Limit, CgroupV2Limit, v1_roots, v2_root
from launcher.fleet.duty_cycle import PERIOD, DutyCycleLimit
from launcher.fleet.handle import LimitHandle

SWITCH_ENV = "FL_LAUNCH_LIMITS"  # auto, cgroup2, cgroup1 or fallback
MIN_SHARE = 0.01
MIN_MEMORY = 16 * 2**20


class LimitsError(InputError):
    """Limits that cannot be: a share out of range, a backend unknown or not available here."""


class Backend(enum.Enum):
    CGROUP2 = "cgroup2"
    CGROUP1 = "cgroup1"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class ClientLimits:
    """cpu: share of one core (0.01..1); memory: bytes held (memory.held_bytes) above which the client is killed."""

    cpu: float = 1.0
    memory: int | None = None

    def __post_init__(self) -> None:
        if not MIN_SHARE <= self.cpu <= 1.0:
            raise LimitsError(f"cpu share {self.cpu} is outside {MIN_SHARE}..1 (a share of one core)")
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise LimitsError(f"memory limit {self.memory} bytes is below {MIN_MEMORY // 2**20} MiB")


@dataclass
class Limiter:
    """The backend chosen for a run, and the clients it limits."""

    backend: Backend
    description: str
    v1: dict[str, Path] | None = None
    v2: Path | None = None
    v2_parent: Path | None = None
    clients: list[LimitHandle] = field(default_factory=list)

    @classmethod
    def choose(cls, want: Backend | str | None = None, cgroup2_parent: Path | None = None) -> "Limiter":
        """The backend asked for (argument, else FL_LAUNCH_LIMITS), or the best one available."""
        asked = want if want is not None else (os.environ.get(SWITCH_ENV) or "auto")
        if isinstance(asked, str):
            names = [b.value for b in Backend]
            if asked.lower() not in (*names, "auto"):
                source = f"{SWITCH_ENV}={asked}" if want is None else repr(asked)
                raise LimitsError(f"{source}: unknown limits backend (auto, {', '.join(names)})")
            asked = None if asked.lower() == "auto" else Backend(asked.lower())
        forced = "" if asked is None else " (asked for)" if want is not None else f" (forced by {SWITCH_ENV})"
        if asked in (None, Backend.CGROUP2) and (root := v2_root()) is not None:
            where = cgroup2_parent or root / BASE
            return cls(Backend.CGROUP2, f"cgroup v2: cpu.max and memory.max of a group per client under {where}"
                       f"{forced}", v2=root, v2_parent=cgroup2_parent)
        if asked in (None, Backend.CGROUP1) and (roots := v1_roots()) is not None:
            return cls(Backend.CGROUP1, "cgroup v1: CFS quota (cpu.cfs_quota_us) and memory.limit_in_bytes of a group"
                       f" per client under {roots['cpu'] / BASE} and {roots['memory'] / BASE}{forced}", v1=roots)
        if asked not in (None, Backend.FALLBACK):
            raise LimitsError(f"limits backend {asked.value} is not available here (no writable {asked.value} cpu "
                              "and memory controllers); use auto or fallback")
        why = forced or " (no writable cgroup cpu and memory controllers)"
        return cls(Backend.FALLBACK, f"no cgroups{why}: CPU by SIGSTOP/SIGCONT duty cycling in "
                   f"{PERIOD * 1000:.0f} ms periods, memory by a watchdog that SIGKILLs the client")

    def limit(self, name: str, limits: ClientLimits, profile: str) -> LimitHandle:
        """A handle for one client (name: unique among live clients, a file name); add its processes to it."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise LimitsError(f"client name {name!r} is not usable as a group name")
        if self.backend is Backend.CGROUP2:
            handle: LimitHandle = CgroupV2Limit(name, limits.cpu, limits.memory, profile, self.v2, self.v2_parent)
        elif self.backend is Backend.CGROUP1:
            handle = CgroupV1Limit(name, limits.cpu, limits.memory, profile, self.v1)
        else:
            handle = DutyCycleLimit(name, limits.cpu, limits.memory, profile)
        self.clients.append(handle)
        return handle

    def close(self) -> None:
        """Close every client's limits (lifted from live processes, groups removed)."""
        for handle in self.clients:
            handle.close()
        self.clients.clear()
