"""What Flower's own strategy logs in server/serverapp.log (``flwr run --stream``): rounds and aggregated metrics.

    round_started("INFO :      [ROUND 2/5]")
    # (2, 5)
    aggregated_rounds("logs/latest/server/serverapp.log")
    # {1, 2, 3}
    read_strategy_log("logs/latest/server/serverapp.log")
    # [{'round': 1, 'phase': 'train', 'metrics': {'train_loss': 0.29}},
    # {'round': 1, 'phase': 'evaluate', 'metrics': {'eval_acc': 0.92, 'eval_loss': 0.31}}, ...]

Any app whose ServerApp runs one of Flower's strategies (``strategy.start``)
logs ``[ROUND r/n]``, then ``aggregate_train: ...`` and ``Aggregated
MetricRecord: {...}``, then the same for ``aggregate_evaluate``, then
``Global evaluation`` and ``MetricRecord: {...}`` (phase ``server``). The
built-in app writes its own lines instead (contract.loglines).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
_RECORD = re.compile(r"(Aggregated )?MetricRecord: (\{.*\})\s*$")
_TRAIN_RESULTS = re.compile(r"aggregate_train: Received (\d+) results")
_PHASES = (("aggregate_train:", "train"), ("aggregate_evaluate:", "evaluate"), ("Global evaluation", "server"))


def _rounds_lines(path: str | Path):
    """(round, line) for each line of the log from the first ``[ROUND r/n]`` on, its colours taken out."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    current = 0
    for line in _ANSI.sub("", text).splitlines():
        if m := _ROUND.search(line):
            current = int(m.group(1))
        if current:
            yield current, line


def aggregated_rounds(path: str | Path) -> set[int]:
    """The rounds in which Flower's strategy aggregated replies: its own count of each round's training replies
    (``aggregate_train: Received 2 results and 0 failures``, which FedAvg and the strategies built on it log
    every round, whatever the replies carry), or an aggregated metric record (another strategy's)."""
    counted = {r for r, line in _rounds_lines(path) if (m := _TRAIN_RESULTS.search(line)) and int(m.group(1))}
    return counted | {row["round"] for row in read_strategy_log(path)}


def read_strategy_log(path: str | Path) -> list[dict]:
    rows, phase = [], ""
    for current, line in _rounds_lines(path):
        if _ROUND.search(line):
            phase = ""
            continue
        for marker, name in _PHASES:
            if marker in line:
                phase = name
        if m := _RECORD.search(line):
            try:
                record = ast.literal_eval(m.group(2))
            except (ValueError, SyntaxError):
                continue
            metrics = {k: float(v) for k, v in record.items() if isinstance(v, (int, float))}
            if metrics:
                rows.append({"round": current, "phase": phase or "train", "metrics": metrics})
    return rows


def round_started(line: str) -> tuple[int, int] | None:
    """(round, rounds) when the line is Flower's strategy starting a round (``[ROUND r/n]``), else None."""
    m = _ROUND.search(_ANSI.sub("", line))
    return (int(m.group(1)), int(m.group(2))) if m else None
