"""Per-client and across-client numbers out of client logs, as pandas tables.

    rounds, epochs = client_tables([read_client_log(p) for p in logs])
    across_clients(rounds)
           clients     AVG    TOP5    LOW5     min     max  train_loss
    round
    1            3  0.1056  0.1056  0.1056  0.0722  0.1333      1.9763

AVG is the mean over the clients that reported an ``evaluate acc`` that round,
TOP5 the mean of the five best, LOW5 of the five worst (MindSpore's tutorial
plots these three). Reading many logs uses a process per core.

A user's app (``--app``) reports its own metrics: each becomes a column of
``rounds`` named ``TASK.NAME`` (``evaluate.eval_acc``), and ``across_clients``
takes any of them in place of ``acc``:

    metric_names(rounds)
    # ['train.train_loss', 'train.num-examples', 'evaluate.eval_loss', 'evaluate.eval_acc', ...]
    across_clients(rounds, "evaluate.eval_loss")
    per_client(rounds, metric_names(rounds)).columns[0]
    # 'client_0/train.train_loss'
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from launcher.stats.history import ClientHistory, read_client_log

ROUND_COLUMNS = ["client", "round", "acc", "train_loss", "epochs", "seconds", "peak_mib", "recv_bytes", "sent_bytes"]
GPU_COLUMN = "peak_gpu_mib"  # a round on a GPU (--device): the most its task allocated there; only when a log has it
ACROSS_COLUMNS = ["clients", "AVG", "TOP5", "LOW5", "min", "max", "train_loss"]
PARALLEL_FROM = 64  # below this many files, one process is faster than a pool


def client_number(path: Path) -> int | None:
    """``client_12/client.log`` -> 12."""
    name = path.parent.name if path.name == "client.log" else path.name
    suffix = name.rpartition("_")[2]
    return int(suffix) if name.startswith("client_") and suffix.isdigit() else None


def read_logs(paths: list[Path]) -> list[ClientHistory]:
    if len(paths) < PARALLEL_FROM:
        return [read_client_log(p) for p in paths]
    workers = max(1, min(os.cpu_count() or 1, 8))
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(read_client_log, paths, chunksize=max(1, len(paths) // (workers * 8))))


def client_tables(histories: list[ClientHistory]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per client and round (the app's metrics as ``TASK.NAME`` columns), one per client and epoch."""
    round_rows, epoch_rows, names = [], [], {}
    for h in histories:
        client = client_number(Path(h.path))
        for r in h.rounds:
            metrics = r.get("metrics") or {}
            names.update(dict.fromkeys(metrics))
            round_rows.append({"client": client, **{k: v for k, v in r.items() if k != "metrics"}, **metrics})
        epoch_rows += [{"client": client, **e} for e in h.epochs]
    base = ROUND_COLUMNS + ([GPU_COLUMN] if any(r.get(GPU_COLUMN) is not None for r in round_rows) else [])
    rounds = pd.DataFrame(round_rows, columns=base + [n for n in names if n not in base])
    epochs = pd.DataFrame(epoch_rows, columns=["client", "round", "epoch", "loss"])
    return rounds, epochs


def metric_names(rounds: pd.DataFrame) -> list[str]:
    """The app's metrics in ``rounds`` (``TASK.NAME``), in the order the logs first show them."""
    return [c for c in rounds.columns if c not in ROUND_COLUMNS and c != GPU_COLUMN]


def per_client(rounds: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """One row per round, a ``client_<i>/METRIC`` column per client and metric (NaN where it did not report)."""
    if rounds.empty or not names:
        return pd.DataFrame(index=pd.Index([], name="round"))
    known = rounds.dropna(subset=["client"]).astype({n: float for n in names})
    wide = known.groupby(["round", "client"])[names].last().unstack("client")
    wide = wide.reindex(columns=[(n, c) for c in sorted(known["client"].unique()) for n in names])
    wide.columns = [f"client_{int(c)}/{n}" for n, c in wide.columns]
    return wide


def across_clients(rounds: pd.DataFrame, metric: str = "acc", k: int = 5) -> pd.DataFrame:
    """Per round over the clients that reported ``metric``: count, AVG, TOPk, LOWk, min, max, loss."""
    rated = rounds.dropna(subset=[metric]).astype({metric: float})
    if rated.empty:
        return pd.DataFrame(columns=ACROSS_COLUMNS, index=pd.Index([], name="round"))
    ordered = rated.sort_values(["round", metric], ascending=[True, False])
    by_round = ordered.groupby("round")[metric]
    table = pd.DataFrame({
        "clients": by_round.size(),
        "AVG": by_round.mean(),
        f"TOP{k}": by_round.head(k).groupby(ordered["round"]).mean(),
        f"LOW{k}": by_round.tail(k).groupby(ordered["round"]).mean(),
        "min": by_round.min(),
        "max": by_round.max(),
        "train_loss": rounds.groupby("round")["train_loss"].mean(),
    })
    table.index.name = "round"
    return table


def plot_across(table: pd.DataFrame, out: Path, title: str, metric: str = "acc") -> None:
    """AVG/TOP5/LOW5 of ``metric`` per round (test accuracy, as MindSpore's tutorial draws it); no display
    needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for column, style in (("TOP5", "-"), ("AVG", "-"), ("LOW5", "-")):
        ax.plot(table.index, table[column], style, marker="o" if len(table) <= 30 else None, label=column)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("federated round")
    if metric == "acc":
        ax.set_ylabel("test accuracy of the received global model")
        ax.set_ylim(0, 1)
    else:
        ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
