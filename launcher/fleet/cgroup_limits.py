"""CPU share and memory limits as kernel cgroups: cgroup v2 (cpu.max, memory.max) or v1 (CFS quota, limit_in_bytes).

    roots = v1_roots()                        # {"cpu": Path, "memory": Path} where both are writable, else None
    client = CgroupV1Limit("exp1-client-3", cpu=0.25, memory=100 * 2**20, profile="pi4", roots=roots)
    client.add(pid)                           # the process and its descendants; its later children are born in
    client.oom_kills()                        # memory.oom_control's oom_kill count (v2: memory.events)
    client.close()                            # members still alive go back where they were; the groups are removed
    TagGroups.find("exp1").remove()           # every fleet group of a run's tag, wherever it was made


    root = v2_root()                          # a cgroup2 mount whose cpu and memory controllers can be enabled
    client = CgroupV2Limit("exp1-client-3", cpu=0.25, memory=None, profile="pi4", parent=root / BASE)

The groups are named BASE/NAME: under each v1 hierarchy below this process's own group there (so a container's
own accounting still covers them), on cgroup2 under ``parent`` (default ROOT/BASE, a group with no processes of
its own, as cgroup2 wants of a group that hands controllers down). On cgroup2 a process is in one group only: a
client moved into a limit group leaves launcher.processes.cgroup's run group, unless ``parent`` is below it.
Children inherit a cgroup at fork, so a client's forked task processes are held to its limits too. Where the
v1 CPU quota period is 100 ms, a share of 0.25 runs 25 ms of CPU time in each 100 ms, and the groups have the
highest CPU weight, so other work on this machine does not take a client below its share. A client's group is named
``group_name(tag, client)``; one left by a run that was killed (its supervisor SIGKILLed) is adopted when the run
makes it again, and ``TagGroups`` finds the tag's groups in every hierarchy for fl-finish and the run's end.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from launcher.fleet.handle import LimitHandle, with_descendants
from launcher.processes.cgroup import cgroup2_root, hierarchies, members, own_group, remove_group, v1_mount

BASE = "fl-launch-fleet"
PERIOD_US = 100_000
CONTROLLERS = frozenset({"cpu", "memory"})
# The highest CPU weight (v1 cpu.shares, v2 cpu.weight), on a client's group and the groups above it that we
# make: a share is then the client's to use whatever else runs on this machine, as a device's core is its own
# (at the default weight, beside other sessions' work at load 12, clients held to 0.35 and 0.87 ran their tasks
# 4x and 12x slower than the devices they stood for: benchmarks.closed_loop); its quota still caps it.
V1_SHARES, V2_WEIGHT = "262144", "10000"


def _can_make_groups(parent: Path) -> bool:
    """Whether a group can be made (and removed) here."""
    probe = parent / BASE / f"probe-{os.getpid()}"
    try:
        probe.mkdir(parents=True)
        probe.rmdir()
        return True
    except OSError:
        return False
    finally:
        try:
            probe.parent.rmdir()  # unless other clients' groups are in it
        except OSError:
            pass


def v1_roots() -> dict[str, Path] | None:
    """Where this process may make v1 cpu and memory groups: {"cpu": dir, "memory": dir}, or None."""
    roots: dict[str, Path] = {}
    for controller in ("cpu", "memory"):
        mount = v1_mount(controller)
        if mount is None:
            return None
        try:
            here = mount / own_group("self", controller)
        except OSError:
            return None
        if not _can_make_groups(here):
            return None
        roots[controller] = here
    return roots


def v2_root() -> Path | None:
    """The cgroup2 mount where the cpu and memory controllers are available and can be handed down, or None."""
    return cgroup2_root(CONTROLLERS)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _make(group: Path) -> None:
    """mkdir with its parents, or adopt the group as it is (left by a killed run of the same tag: its limits are
    written again, its out-of-memory count taken as the start); another client's close may remove the shared
    parent meanwhile: try again."""
    for _ in range(5):
        try:
            group.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    group.mkdir(parents=True, exist_ok=True)


def group_name(tag: str, client: int | str) -> str:
    """The name of a client's groups (under BASE in each hierarchy)."""
    return f"{tag}-client-{client}"


def _hierarchies() -> list[Path]:
    """Every hierarchy where the backends make groups."""
    return hierarchies(set(CONTROLLERS))


def _base_dirs(hierarchy: Path, depth: int = 8) -> list[Path]:
    """The BASE folders in a hierarchy, at any group (a v1 group is made below its maker's own group there)."""
    found = []
    for here, dirs, _files in os.walk(hierarchy):
        if len(Path(here).relative_to(hierarchy).parts) >= depth:
            dirs.clear()
        if Path(here).name == BASE:
            found.append(Path(here))
            dirs.clear()  # client groups have no groups below them
    return found


@dataclass
class TagGroups:
    """The fleet groups of every run with one kill tag, in every hierarchy, whoever made them and wherever."""

    tag: str
    paths: list[Path]

    @classmethod
    def find(cls, tag: str) -> "TagGroups":
        name = re.compile(re.escape(group_name(tag, "")) + r"[0-9]+")
        paths = [group for hierarchy in _hierarchies() for base in _base_dirs(hierarchy)
                 for group in _groups_in(base) if name.fullmatch(group.name)]
        return cls(tag, paths)

    def pids(self) -> set[int]:
        """Their live members."""
        return set().union(*(members(group) for group in self.paths))

    def remove(self, timeout: float = 3.0) -> dict[Path, str]:
        """Remove the groups (all of them within ``timeout`` seconds, while dying members hold them), and BASE
        where it is left empty; the groups that could not be removed, each with why."""
        deadline = time.monotonic() + timeout
        left = {group: why for group in self.paths if (why := remove_group(group, deadline)) is not None}
        for base in {group.parent for group in self.paths}:
            try:
                base.rmdir()
            except OSError:
                pass
        return left


def _groups_in(base: Path) -> list[Path]:
    """The groups in a BASE folder; none when it went meanwhile (another client's close, a run's end)."""
    try:
        return sorted(group for group in base.iterdir() if group.is_dir())
    except OSError:
        return []


class _CgroupLimit(LimitHandle):
    """What v1 and v2 share: one or more groups that each process is written into."""

    def __init__(self, name: str, profile: str, groups: list[Path]) -> None:
        super().__init__(name, profile)
        self.groups = groups
        self.homes: dict[Path, Path] = {}  # group -> where its first process came from
        self._oom_seen = 0
        self._oom_before = 0  # the count an adopted group had already (its counter is cumulative)
        self.closed = False

    def _home_of(self, group: Path, pid: int) -> Path:
        raise NotImplementedError

    def add(self, pid: int) -> None:
        for member in sorted(with_descendants(pid) or {pid}):
            for group in self.groups:
                if group not in self.homes:
                    try:
                        self.homes[group] = self._home_of(group, member)
                    except OSError:
                        pass
                try:
                    _write(group / "cgroup.procs", str(member))
                except ProcessLookupError:
                    break  # it ended meanwhile
                except OSError as error:
                    if psutil.pid_exists(member):
                        raise OSError(f"cannot move pid {member} into {group}: {error}") from error
                    break

    def pids(self) -> set[int]:
        return set().union(*(members(group) for group in self.groups))

    def oom_kills(self) -> int:
        if not self.closed:
            self._oom_seen = max(self._oom_seen, self._read_oom_kills() - self._oom_before)
        return self._oom_seen

    def _read_oom_kills(self) -> int:
        raise NotImplementedError

    def close(self, until: float | None = None) -> bool:
        """Move live members back home, remove the groups (and the shared BASE when it is empty), waiting for
        a dying member until ``until`` (time.monotonic(); default 3 s from now)."""
        if self.closed:
            return True
        deadline = time.monotonic() + 3.0 if until is None else until
        self.oom_kills()
        self.closed = True
        removed = True
        for group in self.groups:
            if not group.is_dir():
                continue
            home = self.homes.get(group, group.parents[1])
            for pid in members(group):
                try:
                    _write(home / "cgroup.procs", str(pid))
                except OSError:
                    continue
            removed = remove_group(group, deadline) is None and removed
            if group.parent.name == BASE:
                try:
                    group.parent.rmdir()  # once the last client's group is gone
                except OSError:
                    pass
        return removed


class CgroupV1Limit(_CgroupLimit):
    """A client's groups in the v1 cpu and memory hierarchies."""

    def __init__(self, name: str, cpu: float, memory: int | None, profile: str, roots: dict[str, Path]) -> None:
        cpu_group, memory_group = roots["cpu"] / BASE / name, roots["memory"] / BASE / name
        super().__init__(name, profile, [cpu_group, memory_group])
        self.controllers = {cpu_group: "cpu", memory_group: "memory"}
        try:
            _make(cpu_group)
            _write(cpu_group / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu_group / "cpu.cfs_quota_us", str(max(1000, round(cpu * PERIOD_US))))
            for group in (cpu_group.parent, cpu_group):  # BASE, then the client's
                _write(group / "cpu.shares", V1_SHARES)
            _make(memory_group)
            if memory is not None:
                _write(memory_group / "memory.limit_in_bytes", str(memory))
                if (memory_group / "memory.memsw.limit_in_bytes").exists():  # no escaping into swap
                    try:
                        _write(memory_group / "memory.memsw.limit_in_bytes", str(memory))
                    except OSError:
                        pass
            self._oom_before = self._read_oom_kills()
        except BaseException:
            self.close()
            raise

    def _home_of(self, group: Path, pid: int) -> Path:
        controller = self.controllers[group]
        return (v1_mount(controller) or group.parents[1]) / own_group(pid, controller)

    def _read_oom_kills(self) -> int:
        group = self.groups[1]
        try:
            fields = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
            if "oom_kill" in fields:
                return int(fields["oom_kill"])
            return 1 if int((group / "memory.failcnt").read_text()) else 0  # kernels before 4.13
        except (OSError, ValueError):
            return 0


class CgroupV2Limit(_CgroupLimit):
    """A client's group on cgroup2, with the cpu and memory controllers handed down to it."""

    def __init__(self, name: str, cpu: float, memory: int | None, profile: str, root: Path,
                 parent: Path | None = None) -> None:
        parent = parent or root / BASE
        group = parent / name
        super().__init__(name, profile, [group])
        self.root = root
        try:
            _make(parent)
            steps = parent.relative_to(root).parts
            for here in [root, *(root.joinpath(*steps[:depth]) for depth in range(1, len(steps) + 1))]:
                enabled = set((here / "cgroup.subtree_control").read_text().split())
                if not CONTROLLERS <= enabled:
                    _write(here / "cgroup.subtree_control", "+cpu +memory")
            _make(group)
            _write(group / "cpu.max", f"{max(1000, round(cpu * PERIOD_US))} {PERIOD_US}")
            for weighted in (group.parent, group):
                if weighted != root and (weighted / "cpu.weight").exists():
                    _write(weighted / "cpu.weight", V2_WEIGHT)
            if memory is not None:
                _write(group / "memory.max", str(memory))
                for knob, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if (group / knob).exists():
                        _write(group / knob, value)
            self._oom_before = self._read_oom_kills()
        except BaseException:
            self.close()
            raise

    def _home_of(self, group: Path, pid: int) -> Path:
        return self.root / own_group(pid)

    def _read_oom_kills(self) -> int:
        try:
            fields = dict(line.split() for line in (self.groups[0] / "memory.events").read_text().splitlines())
            return int(fields.get("oom_kill", 0))
        except (OSError, ValueError):
            return 0
