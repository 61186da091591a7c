"""A run's processes as one kernel cgroup: who belongs to a run, whatever they do to their environment.

    group = RunGroup.claim("exp1")   # <cgroup2>/fl-launch/exp1; None where no cgroup2 is writable
    group.join()                     # this process; all it starts from now on is in the group too
    group.pids()                     # {1234, 1240, ...}: every live member, Ray's agents included
    group.kill(); group.wait_empty(5); group.remove()
    RunGroup.find("exp1")            # from another process: the group of the live run tagged exp1
    RunGroup.find("exp1", ident)     # ... only if it is still the group with that inode (RunGroup.ident)

A cgroup is inherited across fork and kept through setsid, exec and rewrites of /proc/PID/environ (Ray's
agents rewrite theirs, hiding FL_LAUNCH_TAG), and setting FL_LAUNCH_TAG by hand does not put a process in
it. The group is named by the kill tag, so a tag in use is found without any run folder. It lives in the
first writable cgroup2 hierarchy (/sys/fs/cgroup on a cgroup2-only system, /sys/fs/cgroup/unified on a
hybrid one); it needs no controller. Where none is writable (not root, no cgroupfs), or with
FL_LAUNCH_CGROUP=off, ``claim`` and ``find`` give None and callers fall back to the PIDs a run records.

This module is also the one reader of the machine's cgroup hierarchies for the rest of the launcher (the fleet's
CPU and memory limits, launcher/fleet/cgroup_limits.py, build on it): ``mounts``, ``cgroup2_root`` (writable, or
able to hand controllers down), ``v1_mount``, ``hierarchies``, ``own_group`` (a process's group in one of them),
``members`` and ``remove_group``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

BASE = "fl-launch"
SWITCH_ENV = "FL_LAUNCH_CGROUP"  # "off": do without


class TagInUse(RuntimeError):
    """A live group already has this tag; the message names a member PID."""


def mounts(kind: str) -> list[tuple[Path, set[str]]]:
    """(mount point, options) of every mount of this filesystem type ("cgroup2", "cgroup"), from
    /proc/self/mounts; none where it cannot be read."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    return [(Path(f[1]), set(f[3].split(","))) for f in (line.split() for line in lines)
            if len(f) >= 4 and f[2] == kind]


def members(group: Path) -> set[int]:
    """The group's live processes (cgroup.procs, zombies left out); none when it is gone."""
    try:
        pids = {int(word) for word in (group / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()
    live = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                live.add(pid)
        except psutil.Error:
            continue
    return live


def cgroup2_root(controllers: frozenset[str] = frozenset()) -> Path | None:
    """The first cgroup2 mount this process may put processes in, or None; with ``controllers``, the first where
    those controllers are available and can be handed down to groups made below it."""
    for root, _options in mounts("cgroup2"):
        if not controllers:
            if os.access(root / "cgroup.procs", os.W_OK):
                return root
            continue
        try:
            available = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if controllers <= available and os.access(root / "cgroup.subtree_control", os.W_OK):
            return root
    return None


def v1_mount(controller: str) -> Path | None:
    """The mount point of the cgroup v1 hierarchy that holds this controller, or None."""
    return next((point for point, options in mounts("cgroup") if controller in options), None)


def hierarchies(controllers: set[str]) -> list[Path]:
    """Every cgroup2 mount and every v1 mount with one of these controllers."""
    found = [point for point, _ in mounts("cgroup2")]
    found += [point for point, options in mounts("cgroup") if options & controllers]
    return list(dict.fromkeys(found))


def own_group(pid: int | str = "self", controller: str | None = None) -> str:
    """A process's group, relative to its hierarchy: in the v1 hierarchy of ``controller``, or with None on cgroup2
    (the ``0::`` line of /proc/PID/cgroup); "" for the root. OSError when the process is gone."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        number, held, path = line.split(":", 2)
        if (controller is None and number == "0") or (controller is not None and controller in held.split(",")):
            return path.lstrip("/")
    return ""


def remove_group(group: Path, deadline: float) -> str | None:
    """rmdir a group, trying until the deadline (time.monotonic()) while a member being killed holds it; None
    once it is gone, else why not."""
    while True:
        try:
            group.rmdir()
            return None
        except FileNotFoundError:
            return None
        except PermissionError as error:
            return f"not allowed: {error.strerror}"
        except OSError as error:
            if time.monotonic() > deadline:
                return "a live process is in it" if members(group) else error.strerror
            time.sleep(0.05)


def _run_groups_root() -> Path | None:
    """Where run groups live: a writable cgroup2 mount, unless FL_LAUNCH_CGROUP turns them off."""
    if os.environ.get(SWITCH_ENV, "").lower() in ("off", "0", "no"):
        return None
    return cgroup2_root()


class RunGroup:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._home: Path | None = None  # where this process was before it joined

    def __repr__(self) -> str:
        return f"RunGroup({str(self.path)!r})"

    @classmethod
    def find(cls, tag: str, ident: int | None = None) -> "RunGroup | None":
        root = _run_groups_root()
        if root is None or not (root / BASE / tag).is_dir():
            return None
        group = cls(root / BASE / tag)
        try:
            return group if ident is None or group.ident == ident else None
        except OSError:
            return None

    @classmethod
    def claim(cls, tag: str) -> "RunGroup | None":
        """The tag's group, made now or left empty by an ended run; TagInUse when live processes hold it."""
        root = _run_groups_root()
        if root is None:
            return None
        group = cls(root / BASE / tag)
        for other in (root / BASE).glob("*") if (root / BASE).is_dir() else ():
            if other.name != tag:
                cls(other).remove()  # the empty groups of ended runs (a live one is not removed: EBUSY)
        try:
            group.path.mkdir(parents=True)
        except FileExistsError:
            if members := group.pids():
                raise TagInUse(f"kill tag {tag} is carried by a live run (pid {min(members)})") from None
        except OSError:
            return None
        return group

    @property
    def ident(self) -> int:
        """The group's inode: a group removed and made again under the same tag is another group."""
        return self.path.stat().st_ino

    def join(self, pid: int | None = None) -> None:
        """Move a process (default: this one) into the group; its later children are born in it."""
        if pid is None and self._home is None:
            self._home = self.path.parents[1] / own_group()
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def leave(self) -> None:
        """Move this process back to where it was before ``join``."""
        if self._home is not None:
            try:
                (self._home / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                (self.path.parents[1] / "cgroup.procs").write_text(str(os.getpid()))

    def _groups(self) -> list[Path]:
        """This group and every group below it (deepest first)."""
        below = [Path(top) / name for top, names, _ in os.walk(self.path) for name in names]  # a folder removed
        return sorted((p for p in [self.path, *below] if (p / "cgroup.procs").is_file()),  # meanwhile is skipped
                      key=lambda p: len(p.parts), reverse=True)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for group in self._groups():
            try:
                found |= {int(line) for line in (group / "cgroup.procs").read_text().split()}
            except OSError:
                continue
        return found

    def kill(self) -> None:
        """SIGKILL every member at once (cgroup.kill), or one by one on kernels before 5.14."""
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():
            try:
                kill_file.write_text("1")
                return
            except OSError:
                pass
        for pid in self.pids() - {os.getpid()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue

    def wait_empty(self, timeout: float, exclude: set[int] | None = None) -> bool:
        """True once no member (but ``exclude``) is left."""
        deadline = time.monotonic() + timeout
        while self.pids() - (exclude or set()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def clear(self, timeout: float) -> bool:
        """SIGKILL what is left, wait for it to go, remove the group; True when it went."""
        self.kill()
        gone = self.wait_empty(timeout, exclude={os.getpid()})
        return self.remove() and gone

    def remove(self) -> bool:
        """Remove the (empty) group and the groups below it."""
        try:
            for group in self._groups():
                group.rmdir()
            return True
        except OSError:
            return False
