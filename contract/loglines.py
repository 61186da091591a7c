"""The one place that writes and parses client and server log lines.

    log = LogWriter("run/client_0/client.log", "FLClient")
    log.write("evaluate", acc=0.125)
    # 2026-11-24 05:30:00.123 INFO: <FLClient> [evaluate] evaluate acc: 0.125
    parse_line("INFO: <FLClient> [evaluate] evaluate acc: 0.125")
    # Event(source='FLClient', kind='evaluate', values={'acc': 0.125}, time=None)

Every line is ``<timestamp> <LEVEL>: <FLClient|FLServer> <message>``. The client
messages keep MindSpore's exact substrings (``average loss:``, ``evaluate acc:``,
``the predicted labels:``, ``get response from server ok!``), so its tutorial's
greps work, and the parser also reads MindSpore's own client logs, whose
timestamp stands on the line before.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# kind -> message template. Field names select their type in _CONVERT.
TEMPLATES: dict[str, str] = {
    # client
    "round_start": "[round] iteration:{round}/{rounds} start",
    "epoch": "----------epoch:{epoch},average loss:{loss} ----------",
    "evaluate": "[evaluate] evaluate acc: {acc}",
    "round_end": "[round] iteration:{round} end time:{seconds}s peak_rss:{peak_mib}MiB "
    "recv:{recv_bytes}B sent:{sent_bytes}B train_samples:{num_train} test_samples:{num_test}",
    "round_end_gpu": "[round] iteration:{round} end time:{seconds}s peak_rss:{peak_mib}MiB "
    "recv:{recv_bytes}B sent:{sent_bytes}B train_samples:{num_train} test_samples:{num_test} "
    "peak_gpu:{peak_gpu_mib}MiB",  # a task on a GPU (--device): the most it allocated there
    "final_evaluate": "[final] final model accuracy: {acc} test_samples:{num_test}",
    "get_model": "[getModel] get response from server ok!",
    "model_saved": "[getModel] saved global model of round {round} to {path}",
    "inference": "[model inference] the predicted labels: {labels}",
    "inference_acc": "[model inference] accuracy on the test split: {acc} test_samples:{num_test}",
    # written by the launcher into a client's log
    "app_task_start": "[round] iteration:{round} start type:{task}",  # around a --app ClientApp's tasks
    "app_task_end": "[round] iteration:{round} end time:{seconds}s type:{task} metrics:{metrics}",
    "app_task_failed": "[round] iteration:{round} {task} task failed: {reason}",  # its traceback follows
    "client_restart": "[launcher] {role} exited, restart {restart} of {max_restarts}: {cause}",
    "client_lost": "[launcher] {role} exited, no restart left: {cause}",
    "client_renewed": "[launcher] {role} restarted: {cause}",
    "ray_node": "[ray] node:{node} ip:{ip}",  # virtual mode: the Ray node whose worker opened this log
    "resume": "[launcher] resumed from round {round}: later lines replace what an aborted attempt wrote",
    # server
    "server_waiting": "[server] waiting for {clients} clients to connect",
    "server_round_start": "[round] iteration:{round}/{rounds} start sampled:{sampled}",
    "server_sampled": "[round] iteration:{round} clients:{partitions}",
    "server_round_end": "[round] iteration:{round}/{rounds} end replies:{replies} failures:{failures} "
    "aggregated:{aggregated} acc:{acc} test_samples:{num_test} train_loss:{loss} time:{seconds}s",
    "round_not_aggregated": "[round] iteration:{round} not aggregated: {reason}",
    "checkpoint": "[checkpoint] iteration:{round} saved {path}",
    "final_start": "[final] evaluating the final model on {clients} clients",
    "server_final": "[final] final model accuracy: {acc} test_samples:{num_test} clients:{replies}",
    "served": "[{task}] served the round {round} global model to {replies} of {clients} clients",
    "app_clients_failed": "[round] iteration:{round} type:{task} {failures} of {clients} clients raised; "
    "tracebacks in {path}",  # --app: written by the launcher from the clients' logs
    # an emulated fleet (contract.fleet_record), a round deadline or over-commit: lines only such runs write
    "round_end_fleet": "[round] iteration:{round} end time:{seconds}s peak_rss:{peak_mib}MiB "
    "recv:{recv_bytes}B sent:{sent_bytes}B train_samples:{num_train} test_samples:{num_test} "
    "profile:{profile} compute:{compute_s}s transfer:{transfer_s}s download:{download_s}s waiting:{waiting_s}s "
    "emulated:{emulated_s}s",  # download: the model's share of transfer before the task (exchange_clock)
    "client_straggler": "[round] iteration:{round} straggler: reply discarded by the server ({reason})",
    "server_round_clock": "[round] iteration:{round} clock emulated:{emulated_s}s real:{seconds}s "
    "deadline:{deadline_s}s sampled:{sampled} taken:{replies} offline:{offline} stragglers:{stragglers}",
    "server_offline": "[round] iteration:{round} offline clients:{partitions}",  # not sampled: offline
    # process mode: when the server held a client's reply, in seconds from the round's start (its round time)
    "server_reply": "[round] iteration:{round} reply client:{client} after:{seconds}s",
    "round_failed": "[round] iteration:{round} failed at the deadline, the model stays as it was: {reason}",
    "run_finished": "[run] finished",
    "run_failed": "[run] failed: {reason}",
}

_INT = {"client", "round", "rounds", "epoch", "recv_bytes", "sent_bytes", "num_train", "num_test",
        "clients", "sampled", "replies", "failures", "restart", "max_restarts", "offline"}
_FLOAT = {"loss", "acc", "seconds", "peak_mib", "peak_gpu_mib", "compute_s", "transfer_s", "download_s", "waiting_s",
          "emulated_s", "deadline_s"}
_DIGITS = {"seconds": 3, "peak_mib": 1, "peak_gpu_mib": 1, "compute_s": 4, "transfer_s": 4, "download_s": 4,
           "waiting_s": 4, "emulated_s": 4, "deadline_s": 3}  # decimals written; others get 7
_LISTS = ("labels", "partitions", "stragglers")  # [1, 2, 3]
_TEXT_TAIL = {"path", "reason", "cause", "metrics"}  # may hold spaces: runs to the end of the line


def _number(text: str) -> float | None:
    return None if text == "nan" else float(text)


def _convert(name: str, text: str):
    if name in _INT:
        return int(text)
    if name in _FLOAT:
        return _number(text)
    if name == "aggregated":
        return text == "yes"
    if name in _LISTS:
        return [int(v) for v in ast.literal_eval(text)]
    if name == "metrics":  # name:value name:value, or "-"
        return {} if text == "-" else {k: _number(v) for k, v in (pair.rsplit(":", 1) for pair in text.split())}
    return text


def _pattern(kind: str, template: str) -> str:
    """The template as a regex whose groups are named ``<kind>__<field>``."""
    out = []
    for part in re.split(r"(\{\w+\})", template):
        m = re.fullmatch(r"\{(\w+)\}", part)
        if not m:
            out.append(re.escape(part))
            continue
        name = m.group(1)
        if name in _LISTS:
            body = r"\[[-\d, ]*\]"
        elif name in _TEXT_TAIL:
            body = r".+"
        else:
            body = r"[^\s,/]+"
        out.append(f"(?P<{kind}__{name}>{body})")
    return f"(?P<{kind}>{''.join(out)})"


# One alternation over every template: one C-level match per line, whatever the kind.
_ALTERNATION = "(?:" + "|".join(_pattern(k, t) for k, t in TEMPLATES.items()) + ")"
_MESSAGE = re.compile(_ALTERNATION + r"\s*$")
_FIELDS = {kind: [(f"{kind}__{name}", name) for name in re.findall(r"\{(\w+)\}", t)]
           for kind, t in TEMPLATES.items()}
_HEAD = re.compile(
    r"^(?:(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?)\s+)?"
    r"(?P<level>[A-Z]+):?\s+<(?P<source>FLClient|FLServer)>\s?(?P<msg>.*)$"
)
# The literal start of each event message: a line that starts so but does not parse is damaged.
EVENT_PREFIXES = tuple(sorted({t.split("{", 1)[0] for t in TEMPLATES.values() if len(t.split("{", 1)[0]) > 3}))


_HEAD_SRC = (r"^(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?[ \t]+)?"
             r"[A-Z]+:?[ \t]+<(?:FLClient|FLServer)>")
# Whole-text scanners (re.MULTILINE): the bulk path for thousands of logs, no Python per line.
_EVENT_LINES = re.compile(_HEAD_SRC + "[ \t]?" + _ALTERNATION + r"[ \t\r]*$", re.MULTILINE)
_BLANK_LINES = re.compile(r"^[ \t\r]*$", re.MULTILINE)


def iter_events(text: str):
    """(kind, values) for every well-formed event line of a whole log text, in order."""
    for m in _EVENT_LINES.finditer(text):
        kind = m.lastgroup
        try:
            yield kind, {name: _convert(name, m.group(group)) for group, name in _FIELDS[kind]}
        except (ValueError, SyntaxError):
            continue


def has_java_time_lines(text: str) -> bool:
    return _JAVA_TIME_LINES.search(text) is not None


def count_unreadable(text: str, events: int) -> int:
    """Lines that are no event, no free-form log line, no java time line and not blank."""
    lines = text.count("\n")
    free_form = sum(1 for m in _FREE_FORM_LINES.finditer(text))
    java = len(_JAVA_TIME_LINES.findall(text))
    blank = len(_BLANK_LINES.findall(text)) - (1 if text.endswith("\n") or not text else 0)
    return max(0, lines - events - free_form - java - blank)


# java.util.logging puts the time on a line of its own: "Nov 24, 2026 5:30:00 AM com.mindspore... method"
_JAVA_TIME_LINES = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d\d:\d\d [AP]M\b[^\n]*$", re.MULTILINE)
_FREE_FORM_LINES = re.compile(_HEAD_SRC + "(?![ \t]?(?:" + "|".join(re.escape(p) for p in EVENT_PREFIXES)
                              + r"))[^\n\ufffd]*$", re.MULTILINE)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass
class Event:
    source: str
    kind: str
    values: dict = field(default_factory=dict)
    time: dt.datetime | None = None


def format_message(kind: str, **values) -> str:
    def show(name, v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            if v != v:
                return "nan"
            return f"{v:.{_DIGITS.get(name, 7)}f}".rstrip("0").rstrip(".") or "0"
        if isinstance(v, dict):  # metrics: name:value pairs, names without spaces
            return " ".join(f"{'_'.join(str(k).split())}:{show(k, float(x))}" for k, x in v.items()) or "-"
        return str(v)

    return TEMPLATES[kind].format(**{k: show(k, v) for k, v in values.items()})


def parse_message(source: str, msg: str, time: dt.datetime | None = None) -> Event | None:
    m = _MESSAGE.match(msg)
    if m is None:
        return None
    kind = m.lastgroup
    try:
        values = {name: _convert(name, m.group(group)) for group, name in _FIELDS[kind]}
    except (ValueError, SyntaxError):
        return None
    return Event(source, kind, values, time)


def parse_line(line: str, time: dt.datetime | None = None) -> Event | None:
    """One line of ours or of MindSpore's; None when it is not an event line."""
    m = _HEAD.match(line.strip())
    if not m:
        return None
    if m.group("ts"):
        time = _parse_time(m.group("ts")) or time
    return parse_message(m.group("source"), m.group("msg").strip(), time)


def timed_events(text: str) -> list[Event]:
    """Each event line of a log that carries its time stamp, in order (``event.time``: when it was written)."""
    events = (parse_line(line) for line in text.splitlines())
    return [e for e in events if e is not None and e.time is not None]


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None


class LogWriter:
    """Appends timestamped event lines to one file, each flushed as written."""

    def __init__(self, path: str | Path, source: str) -> None:
        self.source = source
        try:  # its folder is there but for the first line (a virtual worker opens thousands in turn)
            self._fh = open(path, "a", buffering=1, encoding="utf-8")
        except FileNotFoundError:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, kind: str, level: str = "INFO", **values) -> str:
        stamp = dt.datetime.now().strftime(TIME_FORMAT)[:-3]
        line = f"{stamp} {level}: <{self.source}> {format_message(kind, **values)}"
        self._fh.write(line + "\n")
        return line

    def text(self, message: str, level: str = "INFO") -> None:
        """A free-form line (warnings, errors) that the parser skips."""
        stamp = dt.datetime.now().strftime(TIME_FORMAT)[:-3]
        self._fh.write(f"{stamp} {level}: <{self.source}> {message}\n")

    def close(self) -> None:
        self._fh.close()


def write_ray_node(log: LogWriter) -> None:
    """In a Ray worker (virtual mode): the line saying on which Ray node it runs, so the tasks logged below it
    ran there (on a cluster: which machine). Elsewhere nothing; Ray is never imported here."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        log.write("ray_node", node=ray.get_runtime_context().get_node_id(), ip=ray.util.get_node_ip_address())


def client_log_path(client_dir: str | os.PathLike) -> Path:
    return Path(client_dir) / "client.log"
