"""A run's rounds as TensorBoard scalars, written with the tensorboard package's own writer.

    write_run(Path("logs/20261206-104530-d61e"), Path("tb"))     # tb/20261206-104530-d61e/events.out.tfevents...
    # ['client_0/acc', 'client_0/train_loss', ..., 'clients/AVG', 'clients/TOP5', 'clients/LOW5', ...]

One folder per run under DIR, so ``tensorboard --logdir DIR`` shows several runs side by side. Steps are
rounds. Tags:
    client_<i>/acc, client_<i>/train_loss         each client's evaluate acc (the received model) and its
                                                   training loss, per round (its client.log)
    clients/AVG, clients/TOP5, clients/LOW5       across the clients that reported acc (launcher.stats.tables)
    clients/min, clients/max, clients/train_loss
    client_<i>/<TASK.NAME>                         an --app's reply metrics
    fleet/round_emulated_s, fleet/deadline_s       an emulated fleet's round (server.log's round clock line)
    fleet/client_<i>/round_s                       a fleet client's round time (launcher.stats.fleet_runs)
The tensorboard package is an extra (``pip install fl-launch[tensorboard]``); without it, one line says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from contract.errors import InputError
from launcher.stats.fleet_runs import FleetStatsError, read_fleet_run
from launcher.stats.tables import across_clients, client_tables, metric_names, read_logs

NEEDS = "--tensorboard needs the tensorboard package: pip install 'fl-launch[tensorboard]'"


class TensorBoardError(InputError):
    """One line: why no event file could be written."""


def _writer(folder: Path):
    try:
        from tensorboard.summary import Writer  # noqa: PLC0415 (an extra: imported only when asked for)
    except ImportError:
        raise TensorBoardError(NEEDS) from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Writer(str(folder))
    except OSError as err:
        raise TensorBoardError(f"--tensorboard {folder}: {err.strerror or err}") from None


def run_scalars(run_dir: Path, info: dict) -> dict[str, dict[int, float]]:
    """tag -> {round: value} for the run in ``run_dir`` (``info``: its run.json, {} if none)."""
    logs = sorted(run_dir.glob("client_*/client.log"))
    rounds, _ = client_tables(read_logs(logs))
    scalars: dict[str, dict[int, float]] = {}

    def put(tag: str, step, value) -> None:
        if value is not None and step == step and not (isinstance(value, float) and math.isnan(value)):
            scalars.setdefault(tag, {})[int(step)] = float(value)

    names = ["acc", "train_loss", *metric_names(rounds)]
    for row in rounds.dropna(subset=["client"]).to_dict("records"):
        for name in names:
            put(f"client_{int(row['client'])}/{name}", row["round"], pd.to_numeric(row[name], errors="coerce"))
    for step, row in across_clients(rounds).iterrows():
        for column, value in row.items():
            if column != "clients":
                put(f"clients/{column}", step, value)
    try:
        fleet = read_fleet_run(run_dir, info)
    except FleetStatsError:
        return scalars
    for number, r in fleet.rounds.items():
        put("fleet/round_emulated_s", number, r.emulated_s)
        put("fleet/deadline_s", number, r.deadline_s or None)
    for cr in fleet.client_rounds:
        put(f"fleet/client_{cr.client}/round_s", cr.round, fleet.round_time(cr))
    return scalars


def write_run(run_dir: Path, out: Path, info: dict) -> list[str]:
    """Write the run's scalars into ``out/<run id>``; the tags written."""
    scalars = run_scalars(run_dir, info)
    writer = _writer(out / run_dir.name)
    try:
        for tag in sorted(scalars):
            for step, value in sorted(scalars[tag].items()):
                writer.add_scalar(tag, value, step)
        writer.flush()
    finally:
        writer.close()
    return sorted(scalars)
