"""A client's rounds, epochs and events, rebuilt from its log (fl-launch's or MindSpore's).

    h = read_client_log("logs/latest/client_0/client.log")
    h.rounds[0]
    # {'round': 1, 'acc': 0.0722, 'train_loss': 1.7654, 'epochs': 1, 'seconds': 1.563, ...}
    h.skipped, h.format
    # (0, 'fl-launch')

Round numbers come from fl-launch's ``[round] iteration:R/N start`` lines. MindSpore's
logs have none, so there an ``evaluate acc`` line opens the next round, as its
client evaluates each downloaded model before training on it. A line that is
neither an event, a free-form log line, nor a java.util.logging time line is
counted in ``skipped`` (a garbled write, a client killed mid-line), never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contract.loglines import count_unreadable, has_java_time_lines, iter_events


@dataclass
class ClientHistory:
    path: str
    rounds: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    inference: list[dict] = field(default_factory=list)
    get_model: int = 0
    final_acc: float | None = None
    skipped: int = 0
    lines: int = 0
    format: str = "empty"


def read_client_log(path: str | Path) -> ClientHistory:
    path = Path(path)
    history = ClientHistory(str(path))
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        history.skipped = 1
        return history
    if text and not text.endswith("\n"):  # a last line without its newline: being written, or cut off
        history.skipped += 1
        text = text[: text.rfind("\n") + 1]
    history.lines = text.count("\n")
    events = 0
    current: dict | None = None
    explicit_rounds = False

    def open_round(number: int) -> dict:
        record = {"round": number, "acc": None, "train_loss": None, "epochs": 0, "seconds": None,
                  "peak_mib": None, "peak_gpu_mib": None, "recv_bytes": None, "sent_bytes": None, "_losses": []}
        history.rounds.append(record)
        return record

    for kind, v in iter_events(text):
        events += 1
        if kind == "resume":  # what the aborted attempt wrote for this round and later is superseded
            history.rounds = [r for r in history.rounds if r["round"] < v["round"]]
            history.epochs = [e for e in history.epochs if e["round"] < v["round"]]
            current = history.rounds[-1] if history.rounds else None
        elif kind == "round_start":
            explicit_rounds = True
            current = open_round(v["round"])
        elif kind == "app_task_start":  # a user's app (--app): a round's train and evaluate tasks share a record
            explicit_rounds = True
            if current is None or current["round"] != v["round"]:
                current = open_round(v["round"])
        elif kind == "app_task_end" and current is not None:
            _take_app_metrics(current, v["task"], v["metrics"], v["seconds"])
        elif kind == "evaluate":
            if current is None or current["acc"] is not None:  # MindSpore: each evaluation opens a round
                current = open_round(current["round"] + 1 if current else 1)
            current["acc"] = v["acc"]
        elif kind == "epoch":
            if current is None:
                current = open_round(1)
            current["_losses"].append(v["loss"])
            history.epochs.append({"round": current["round"], "epoch": v["epoch"], "loss": v["loss"]})
        elif kind in ("round_end", "round_end_fleet", "round_end_gpu") and current is not None:  # fleet, GPU: more
            current.update(seconds=v["seconds"], peak_mib=v["peak_mib"], recv_bytes=v["recv_bytes"],
                           sent_bytes=v["sent_bytes"], peak_gpu_mib=v.get("peak_gpu_mib"))
        elif kind == "final_evaluate":
            history.final_acc = v["acc"]
        elif kind == "get_model":
            history.get_model += 1
        elif kind == "inference":
            history.inference.append({"labels": v["labels"], "count": len(v["labels"])})
        elif kind == "inference_acc" and history.inference:
            history.inference[-1]["acc"] = v["acc"]
    history.skipped += count_unreadable(text, events)
    for record in history.rounds:
        losses = record.pop("_losses")
        record["epochs"] = len(losses)
        record["train_loss"] = sum(losses) / len(losses) if losses else record.pop("_app_loss", None)
    if history.lines:
        history.format = "mindspore" if not explicit_rounds and has_java_time_lines(text) else "fl-launch"
    return history


def _take_app_metrics(record: dict, task: str, metrics: dict, seconds: float) -> None:
    """The reply's metrics of a user's app: every one kept; an ``*acc*`` one is the round's accuracy (the
    evaluate task's over the train task's), a train task's ``train_loss`` (or ``*loss*``) its loss."""
    record.setdefault("metrics", {}).update({f"{task}.{k}": v for k, v in metrics.items()})
    record["seconds"] = (record["seconds"] or 0.0) + seconds
    acc = next((k for k in metrics if "acc" in k.lower()), None)
    if acc is not None and (record["acc"] is None or task == "evaluate"):
        record["acc"] = metrics[acc]
    loss = "train_loss" if "train_loss" in metrics else next((k for k in metrics if "loss" in k.lower()), None)
    if task == "train" and loss is not None:
        record["_app_loss"] = metrics[loss]
