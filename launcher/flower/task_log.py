"""A user's ClientApp (``fl-launch --app``) writing into client_<i>/client.log, with the launcher's round lines.

    log_app_tasks(client_dir)     # in the task process, before Flower's run_clientapp
    # client.log then holds, per task:
    # 2026-11-24 14:40:00.101 INFO: <FLClient> [round] iteration:2 start type:train
    # 2026-11-24 14:40:00.350 INFO: <FLClient> whatever the app printed
    # 2026-11-24 14:40:01.020 INFO: <FLClient> [round] iteration:2 end time:0.919s type:train metrics:train_loss:0.41
    # a task that raised: "[round] iteration:2 train task failed: ValueError: ..." and its traceback
    task_failures(run_dir)        # after the run: per round and task, who raised
    # [TaskFailures(round=2, task='train', failed=[1], clients=3)]

The round is the ``server-round`` that Flower's strategies put in the message's
config (0 when there is none); the metrics are the scalars of the reply's
MetricRecords, which is how an app reports them: no fl-launch import needed. What
the app prints (stdout, stderr) becomes free-form lines of the same log. Flower's
own logger keeps writing to the worker's log (worker.log).
"""

from __future__ import annotations

import io
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contract.loglines import LogWriter, client_log_path, iter_events

if TYPE_CHECKING:  # the supervisor reads task failures here without importing Flower
    from flwr.app import Message

SHOWN_PATHS = 5  # client logs named in a failure line; the rest counted


class LinesToLog(io.TextIOBase):
    """A text stream whose every complete line becomes one free-form log line."""

    def __init__(self, log: LogWriter, level: str) -> None:
        self._log, self._level, self._pending = log, level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._log.text(line.rstrip("\r"), level=self._level)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._log.text(self._pending, level=self._level)
            self._pending = ""


def server_round(message: Message) -> int:
    for record in message.content.config_records.values():
        if "server-round" in record:
            return int(record["server-round"])
    return 0


def reply_metrics(reply: Message) -> dict[str, float]:
    if reply.has_error():
        return {}
    found = {}
    for record in reply.content.metric_records.values():
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[key] = float(value)
    return found


def logged_task(log: LogWriter, call, message: Message, context) -> Message:
    """``call(message=..., context=...)`` (a ClientApp's) between the round's start and end lines in ``log``;
    one that raises: the failure line and its traceback, and it raises on."""
    number, task = server_round(message), message.metadata.message_type
    log.write("app_task_start", round=number, task=task)
    start = time.perf_counter()
    try:
        reply = call(message=message, context=context)
    except BaseException as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        log.write("app_task_failed", level="ERROR", round=number, task=task, reason=reason)
        for line in traceback.format_exc().rstrip().splitlines():
            log.text(line, level="ERROR")
        raise
    log.write("app_task_end", round=number, task=task, seconds=time.perf_counter() - start,
              metrics=reply_metrics(reply))
    return reply


def log_app_tasks(client_dir: str | Path) -> LogWriter:
    """Route this process's prints into the client log and wrap every ClientApp call in round lines."""
    from launcher.flower.clientapp_calls import around_every_call  # noqa: PLC0415 (Flower, in the task's process only)

    log = LogWriter(client_log_path(client_dir), "FLClient")
    sys.stdout = LinesToLog(log, "INFO")
    sys.stderr = LinesToLog(log, "WARNING")
    around_every_call(lambda call, message, context: logged_task(log, call, message, context))
    return log


@dataclass(frozen=True)
class TaskFailures:
    """The clients whose ClientApp raised in one round's task, out of those that ran it."""

    round: int
    task: str
    failed: list[int]
    clients: int

    def where(self) -> str:
        """Where the tracebacks are: ``client_1/client.log, client_4/client.log`` (the first few)."""
        shown = [f"client_{c}/client.log" for c in self.failed[:SHOWN_PATHS]]
        more = len(self.failed) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more else "")


def task_failures(run_dir: str | Path) -> list[TaskFailures]:
    """Every round and task in which some client's ClientApp raised, read from the clients' logs."""
    started: dict[tuple[int, str], set[int]] = {}
    failed: dict[tuple[int, str], set[int]] = {}
    for log in Path(run_dir).glob("client_*/client.log"):
        try:
            client = int(log.parent.name.split("_", 1)[1])
            text = log.read_text(errors="replace")
        except (ValueError, OSError):
            continue
        for kind, values in iter_events(text):
            if kind in ("app_task_start", "app_task_failed"):
                key = (values["round"], values["task"])
                (started if kind == "app_task_start" else failed).setdefault(key, set()).add(client)
    return [TaskFailures(rnd, task, sorted(who), len(started.get((rnd, task), who)))
            for (rnd, task), who in sorted(failed.items())]
