"""Flower's log lines without ANSI colour where they go to a file; coloured still on a terminal.

    colour_only_on_a_terminal()        # in a process of ours that imported Flower (SuperNode, task host)
    records_only_at_written_levels()   # in one that runs no user code (SuperLink, SuperNode)
    python -m launcher.flower.plain_logs flwr run APP local --stream   # one of Flower's own commands

Flower's console handler (flwr.supercore.logger.ConsoleHandler) colours every level name and has no
switch outside the process, so superlink.log, serverapp.log, supernode.log and worker.log held escape
codes. Flower's commands that the launcher starts itself run through this module's main, which turns the
colour off when stderr is not a terminal, drops any escape sequence written to a stdout or stderr that is
not one (Ray's coloured worker prefixes in flwr-simulation, the ServerApp's streamed lines in ``flwr run``),
and then runs Flower's unchanged entry point. The SuperLink starts
a SuperExec, and the SuperExec each ``flwr-serverapp`` / ``flwr-simulation`` (whose output the SuperLink
also streams to ``flwr run``, hence serverapp.log): ``plain_superexec_command`` and the SuperExec's
``Popen`` go through this module too (one substitution in each process's namespace, Flower's files untouched).
tests/test_flower_internals.py pins what this relies on.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from launcher.flower.forked_tasks import fork_task
from launcher.flower.imports_frozen import imports_frozen

# Flower's commands that a SuperExec starts (flwr.supercore.constant.TASK_TYPE_TO_COMMAND's values we run)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TASK_COMMANDS = frozenset({"flwr-serverapp", "flwr-simulation", "flwr-clientapp"})


def colour_only_on_a_terminal() -> None:
    """Flower's console handler writes to stderr: colour it only when that is a terminal."""
    from flwr.supercore.logger import update_console_handler  # noqa: PLC0415 pylint: disable=import-outside-toplevel

    update_console_handler(colored=sys.stderr.isatty())


def records_only_at_written_levels() -> None:
    """Flower's logger makes a record of every call at its own level, DEBUG, which its console handler (INFO
    unless FLWR_LOG_LEVEL says otherwise) then drops: a SuperLink made ~10 a task for nothing (a few percent of
    its CPU). Its level here is its handlers' lowest. Only in our processes that run no user code (SuperLink,
    SuperNode): an app may add a handler of its own at any level (flwr.common.configure)."""
    from flwr.supercore.logger import FLOWER_LOGGER  # noqa: PLC0415 pylint: disable=import-outside-toplevel

    levels = [handler.level for handler in FLOWER_LOGGER.handlers]
    if levels:
        FLOWER_LOGGER.setLevel(max(FLOWER_LOGGER.level, min(levels)))


class PlainStream:
    """A text stream to a file that drops ANSI escape sequences (colour that others' code, Ray's worker
    prefixes and the lines it forwards from its workers, writes to this process's stdout or stderr)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(ANSI.sub("", text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def plain_streams() -> None:
    """This process's stdout and stderr drop escape sequences where they are not a terminal."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not stream.isatty():
            setattr(sys, name, PlainStream(stream))


def plain(command: list[str]) -> list[str]:
    """``command`` (a Flower console script and its arguments) run through this module."""
    return [sys.executable, "-m", __spec__.name, *command]  # this module (entry_modules.PLAIN_LOGS)


class _PlainPopen:
    """Stands in for the ``subprocess`` module inside Flower's SubprocessExecutor: a task command
    (``flwr-serverapp ...``) starts through this module, forked by the run's fork server where it has one
    (launcher.flower.forked_tasks)."""

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 (subprocess's own name)
        if isinstance(args, list) and args and args[0] in TASK_COMMANDS:
            forked = None if rest else fork_task(__spec__.name, args, **kwargs)  # a ServerApp, warm
            if forked is not None:
                return forked
            args = plain(args)
        return subprocess.Popen(args, *rest, **kwargs)

    def __getattr__(self, name):
        return getattr(subprocess, name)


def install_in_superlink() -> None:
    """The SuperLink's own SuperExec (and so its ServerApps) starts through this module."""
    # the module, not the function of the same name that flwr.superlink.cli exports
    flower_superlink = importlib.import_module("flwr.superlink.cli.flower_superlink")
    superexec_command = flower_superlink._get_superexec_command  # noqa: SLF001

    def plain_superexec_command(*args, **kwargs) -> list[str]:
        return plain(superexec_command(*args, **kwargs))

    flower_superlink._get_superexec_command = plain_superexec_command  # noqa: SLF001


def _install_in_superexec() -> None:
    from flwr.supercore.superexec.executor import subprocess_executor  # noqa: PLC0415 pylint: disable=import-outside-toplevel

    subprocess_executor.subprocess = _PlainPopen()


def _entry_point(name: str):
    found = entry_points(group="console_scripts", name=name)
    if not found:
        raise SystemExit(f"plain_logs: no console script named {name!r}")
    return next(iter(found)).load()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m launcher.flower.plain_logs FLOWER_COMMAND [ARGS...]")
    name, args = Path(argv[0]).name, argv[1:]
    with imports_frozen():  # Flower's command and what it imports, made with the collector off
        run = _entry_point(name)
        colour_only_on_a_terminal()
        plain_streams()
        if name == "flower-superexec":
            _install_in_superexec()
        if name == "flwr-serverapp":
            from launcher.flower.object_batch import install_in_serverapp  # noqa: PLC0415
            from launcher.flower.reply_batch import install as replies_in_one  # noqa: PLC0415

            install_in_serverapp()  # not about logs: the one place of ours a ServerApp process runs (object_batch)
            replies_in_one()  # its grid's replies: their objects in one exchange, their confirmations in one
    sys.argv = [name, *args]  # Flower reads its command's name from argv[0] (flwr.supercore.exit)
    sys.exit(run())


if __name__ == "__main__":
    main()
