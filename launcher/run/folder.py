"""A run's folder under the log dir, its ``latest`` link and its run.json.

    folder = RunFolder.create("logs")           # logs/20261124-053012-4f2a/
    folder.update(status="running")              # atomic read-modify-write
    RunFolder.resolve("logs", None).run_id       # the newest run
    # '20261124-053012-4f2a'

No run ever writes into another run's folder: ids are unique (time plus random
suffix, created with ``mkdir`` that fails on a clash), and ``latest`` is a
symlink replaced atomically.

Who supervises a run is a kernel lock, not a record: the process that prepares a
run takes ``.supervisor.lock`` (flock) and holds it through the run (a detached
supervisor inherits it); the kernel drops it when that process dies, however it
dies. ``supervised()`` asks the kernel, so a copy of a folder, a killed
supervisor or a stale run.json never reads as supervised.

    folder.claim()                               # False: another process supervises it
    RunFolder("logs/20261124-053012-4f2a").supervised()
    # True
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from contract.errors import InputError
from contract.run_layout import RUN_JSON, client_dir

LATEST = "latest"
SUPERVISOR_LOCK = ".supervisor.lock"
RESERVE = ".reserve"  # room kept on the disk for run.json's last words (freed when the disk is full)
RESERVE_BYTES = 1 << 20
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # \Z: no newline after it


class RunFolderError(InputError):
    """An unknown run, an unwritable log dir, a malformed run.json."""


class RunFolderGone(RunFolderError):
    """The run folder (or its run.json) was removed: nothing writes a new one in its place."""


def malformed_kill_tag(tag: str) -> str | None:
    """Why ``tag`` cannot be a kill tag (it names cgroups and rides in environments), or None: it can."""
    if RUN_ID_RE.match(tag):
        return None
    return f"malformed kill tag {tag!r}: 1-64 letters, digits, '.', '_' or '-'"


_NONE = type(None)
_NUMBER = (int, float, _NONE)
SHAPE = {  # the fields commands read, with the types they take; a run.json with others is not a run's
    "run_id": (str,), "kill_tag": (str,), "status": (str,), "task": (str, _NONE), "reason": (str, _NONE),
    "source_run": (str, _NONE), "options": (dict,), "settings": (dict,), "plan": (dict,), "processes": (list,),
    "supervisor": (dict, _NONE), "attempts": (list,), "restarts": (list,), "finish": (list,),
    "rounds_done": _NUMBER, "final_accuracy": _NUMBER, "final_test_samples": _NUMBER,
}
PROCESS_SHAPE = {"role": (str,), "pid": (int, _NONE), "created": _NUMBER, "host": (str, _NONE)}
PLAN_SHAPE = {"nodes": (list,), "devices": (list,), "grace": _NUMBER, "startup_timeout": _NUMBER}


def _misshapen(data: dict) -> str | None:
    """What in a parsed run.json is not of the shape fl-launch writes (None: all of it is)."""
    for fields, where in ((SHAPE, data), (PLAN_SHAPE, data.get("plan") or {})):
        for key, types in fields.items():
            if key in where and not isinstance(where[key], types):
                return f"{key} is a {type(where[key]).__name__}"
    # both name paths (the tag's cgroups, runs/RUN on a device): checked as at launch, whoever wrote them
    if "run_id" in data and not RUN_ID_RE.match(data["run_id"]):
        return f"malformed run id {data['run_id']!r}"
    if "kill_tag" in data and (why := malformed_kill_tag(data["kill_tag"])) is not None:
        return why
    supervisor = data.get("supervisor") or {}
    for record in [*data.get("processes", []), *([supervisor] if supervisor else [])]:
        if not isinstance(record, dict):
            return "a process record is not an object"
        for key, types in PROCESS_SHAPE.items():
            if key in record and not isinstance(record[key], types):
                return f"a process record's {key} is a {type(record[key]).__name__}"
    for key in ("nodes", "devices"):
        if not all(isinstance(item, dict) for item in (data.get("plan") or {}).get(key, [])):
            return f"plan.{key} holds a non-object"
    return None


class RunFolder:
    def __init__(self, path: str | Path, lock_fd: int | None = None) -> None:
        self.path = Path(path)
        self.lock_fd = lock_fd  # the supervisor lock, when this process holds it

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    def client_dir(self, client: int) -> Path:
        return client_dir(self.path, client)

    @property
    def server_dir(self) -> Path:
        return self.path / "server"

    @classmethod
    def create(cls, log_dir: str | Path) -> "RunFolder":
        log_dir = Path(log_dir)
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(f"cannot create log dir {log_dir}: {err.strerror}") from None
        if not os.access(log_dir, os.W_OK | os.X_OK):
            raise RunFolderError(f"log dir {log_dir} is not writable")
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for _ in range(20):
            path = log_dir / f"{stamp}-{secrets.token_hex(2)}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise RunFolderError(f"cannot create a run folder in {log_dir}: {err.strerror}") from None
            return cls(path.resolve())
        raise RunFolderError(f"could not find a free run id in {log_dir}")

    def point_latest(self) -> None:
        """Point ``latest`` here, unless a ``latest`` that is not a link (not ours) is in the way."""
        link = self.path.parent / LATEST
        if link.exists() and not link.is_symlink():
            return
        tmp = self.path.parent / f".{LATEST}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.path.name)
        tmp.replace(link)

    def unpoint_latest(self) -> None:
        """Remove ``latest`` if it points here (a run discarded as its preparation ended)."""
        link = self.path.parent / LATEST
        try:
            if link.is_symlink() and os.readlink(link) == self.path.name:
                link.unlink()
        except OSError:
            pass

    @classmethod
    def listed(cls, log_dir: str | Path) -> list["RunFolder"]:
        """The run folders of a log dir (those with a run.json; ``latest`` and other links skipped), oldest first."""
        log_dir = Path(log_dir)
        if not log_dir.is_dir():
            return []
        return [cls(p.parent) for p in sorted(log_dir.glob(f"*/{RUN_JSON}")) if not p.parent.is_symlink()]

    @classmethod
    def resolve(cls, log_dir: str | Path, run: str | None) -> "RunFolder":
        """A run by id or path (None: the latest) that has a run.json."""
        log_dir = Path(log_dir)
        if run is None:
            candidate = log_dir / LATEST
            if not candidate.is_symlink():  # absent, or someone else's file: the newest run by its id
                newest = [f for f in cls.listed(log_dir) if RUN_ID_RE.match(f.run_id) and f.run_id != LATEST]
                if not newest:
                    raise RunFolderError(f"no earlier run in {log_dir}")
                return cls(newest[-1].path.resolve())
            if not candidate.exists():
                raise RunFolderError(f"no earlier run in {log_dir}")
            candidate = candidate.resolve()
        elif "/" in run or run in (".", ".."):
            candidate = Path(run)
        else:
            if not RUN_ID_RE.match(run):
                raise RunFolderError(f"malformed run id {run!r}")
            candidate = log_dir / run
        if not (candidate / RUN_JSON).is_file():
            raise RunFolderError(f"unknown run {run or LATEST!r}: no {RUN_JSON} in {candidate}")
        return cls(candidate.resolve())

    # who supervises it ----------------------------------------------------
    def claim(self, wait: float = 1.0) -> bool:
        """Take the supervisor lock (retrying ``wait`` s past a reader's probe); False: someone holds it."""
        if self.lock_fd is not None:
            return True
        fd = os.open(self.path / SUPERVISOR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.lock_fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def supervised(self) -> bool:
        """Does a live process hold this folder's supervisor lock?"""
        if self.lock_fd is not None:
            return True
        try:
            fd = os.open(self.path / SUPERVISOR_LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def keep_reserve(self) -> None:
        """Set aside a little disk so run.json can still be written when the disk fills up."""
        try:
            with open(self.path / RESERVE, "wb") as out:
                os.posix_fallocate(out.fileno(), 0, RESERVE_BYTES)
        except OSError:
            (self.path / RESERVE).unlink(missing_ok=True)

    def drop_reserve(self) -> None:
        (self.path / RESERVE).unlink(missing_ok=True)

    # run.json -----------------------------------------------------------
    def gone(self) -> bool:
        """Is this folder's run.json no longer there (the folder removed, or emptied)?"""
        return not self.run_json.is_file()

    @contextmanager
    def _locked(self, new: bool = False):
        """Under run.json's lock; the folder's run.json must be there (unless ``new``): the lock file is never
        made in a folder that was removed and made again by someone else's write."""
        if not new and self.gone():
            raise self._removed()
        try:
            lock = open(self.path / ".run.json.lock", "a")
        except FileNotFoundError:
            raise self._removed() from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict:
        try:
            data = json.loads(self.run_json.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{self.run_json} is not valid JSON: {err}") from None
        except OSError as err:
            raise RunFolderError(f"{self.run_json} cannot be read: {err.strerror}") from None
        if not isinstance(data, dict):
            raise RunFolderError(f"{self.run_json} is not a run's record (a JSON object)")
        if (why := _misshapen(data)) is not None:
            raise RunFolderError(f"{self.run_json} is not a run's record ({why})")
        return data

    def _write(self, data: dict) -> None:
        tmp = self.run_json.with_name(f".{RUN_JSON}.{os.getpid()}")
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        try:
            tmp.write_text(text)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            reserve = self.path / RESERVE
            if err.errno not in (errno.ENOSPC, errno.EDQUOT) or not reserve.exists():
                raise
            reserve.unlink()  # the disk is full: spend the reserve on the run's record
            tmp.write_text(text)
        tmp.replace(self.run_json)

    def begin(self, **fields) -> dict:
        """The first run.json of a new folder (update and edit change an existing one, never make one)."""
        with self._locked(new=True):
            if not self.gone():
                raise RunFolderError(f"{self.run_json} exists already")
            self._write(fields)
            return fields

    def _existing(self) -> dict:
        if self.gone():  # removed after the lock was taken: a run.json written now would be a stranger's
            raise self._removed()
        return self.read()

    def _removed(self) -> RunFolderGone:
        return RunFolderGone(f"the run folder {self.path} was removed")

    def update(self, **fields) -> dict:
        with self._locked():
            data = self._existing()
            data.update(fields)
            self._write(data)
            return data

    def edit(self, fn) -> dict:
        """Apply fn(data) under the lock and write the result."""
        with self._locked():
            data = self._existing()
            fn(data)
            self._write(data)
            return data
