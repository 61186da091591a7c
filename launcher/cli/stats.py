"""``fl-stats``: loss and accuracy out of client logs, per client or across a run's clients.

    $ fl-stats client_0                 # a client of the newest run: per round and per epoch
    $ fl-stats logs/r1/client_3/client.log --csv -o c3.csv
    $ fl-stats                          # the newest run: AVG / TOP5 / LOW5 per round
    $ fl-stats --run r1 --plot acc.png  # the figure of MindSpore's tutorial
    $ fl-stats --metric eval_loss       # an --app run: AVG/TOP5/LOW5 of another of its reply metrics
    $ fl-stats --csv                    # per round: AVG/TOP5/LOW5 and every client's every metric
    $ fl-stats path/to/mindspore/run    # any folder of client_*/client.log, MindSpore's too
    $ fl-stats --runs                   # every run in the log dir and its state
    $ fl-stats --pull --run r1          # bring r1's client logs over again from its devices
    $ fl-stats --by profile             # an emulated fleet's run (--fleet): one row per profile
    $ fl-stats --plot-timeline round.png   # its rounds as bars per client: download, waiting, compute, upload
    $ fl-stats --compare r1 r2          # two fleet runs' round times per round and profile, and r2/r1
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.live import Live
from rich.table import Table

from launcher.cli.errors import CONTEXT, OneLineErrors, UserError
from launcher.cli.live_view import make_console
from launcher.cli.option_types import FiniteFloat, PathText, Text
from launcher.devices.hosts import HostsError
from launcher.devices.remote import devices_of, unused_ssh_config
from launcher.flower.strategy_log import read_strategy_log
from launcher.run.folder import RUN_JSON, RunFolder, RunFolderError, RunFolderGone
from launcher.run.liveness import LIVE, live_status
from launcher.run.record import recorded_ssh_config, runs_user_app
from launcher.run.run_status import RunStatus
from launcher.stats.fleet_runs import by_profile, compare, plot_timeline, read_fleet_run
from launcher.stats.history import read_client_log
from launcher.stats.tables import (
    GPU_COLUMN,
    across_clients,
    client_tables,
    metric_names,
    per_client,
    plot_across,
    read_logs,
)
from launcher.stats.tensorboard import write_run


def _client_logs(folder: Path) -> list[Path]:
    logs = [p for p in folder.glob("client_*/client.log")]
    def number(log: Path) -> int:
        tail = log.parent.name.rpartition("_")[2]
        return int(tail) if tail.isdigit() else 1 << 30

    return sorted(logs, key=number)


def resolve(target: str | None, run: str | None, log_dir: Path) -> tuple[str, Path]:
    """('client', log file) or ('run', folder) for what the user named."""
    if target is not None:
        path = Path(target)
        if path.is_file():
            return "client", path
        if path.is_dir() and (path / "client.log").is_file():
            return "client", path / "client.log"
        if path.is_dir() and (_client_logs(path) or (path / RUN_JSON).is_file()):
            return "run", path
        if "/" not in target and target.startswith("client_"):
            folder = _run_folder(run, log_dir)
            log = folder / target / "client.log"
            if not log.is_file():
                raise UserError(f"no {target}/client.log in run {folder.name}")
            return "client", log
        raise UserError(f"{target}: not a client log, a client folder, a run folder or a client name")
    return "run", _run_folder(run, log_dir)


def _run_folder(run: str | None, log_dir: Path) -> Path:
    return RunFolder.resolve(log_dir, run).path


def _emit(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).write_text(text)
        except OSError as err:
            raise UserError(f"-o {out}: cannot write it ({err.strerror})") from None
    else:
        sys.stdout.write(text)


def _check_writable(path: str, flag: str) -> None:
    """A file fl-stats is told to write: into an existing, writable folder, and not a folder itself."""
    target = Path(path).expanduser()
    folder = target.parent
    if target.is_dir():
        raise UserError(f"{flag} {path} is a folder; name a file")
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UserError(f"{flag} {path}: not writable")


def _info(folder: Path) -> dict:
    """The run's run.json, or {} where there is none or it is not a run's (the logs still tell the rounds)."""
    try:
        return RunFolder(folder).read()
    except RunFolderError:
        return {}


def _fmt(value, digits=4) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(title: str, frame: pd.DataFrame, index_name: str | None = None) -> Table:
    table = Table(title=title)
    columns = ([index_name] if index_name else []) + list(frame.columns)
    for column in columns:
        table.add_column(str(column), justify="right")
    for idx, *cells in frame.astype(object).itertuples():
        table.add_row(*(([str(idx)] if index_name else []) + [_fmt(v) for v in cells]))
    return table


def _clean(value):
    return None if isinstance(value, float) and value != value else value


@click.command("fl-stats", cls=OneLineErrors, context_settings=CONTEXT)
@click.argument("target", type=Text(), required=False)
@click.option("--run", "run", type=Text(), default=None, help="The run (id or folder).  [default: the newest]")
@click.option("--log-dir", type=PathText(file_okay=False), default="logs", help="Where the run folders are.")
@click.option("--csv", "as_csv", is_flag=True, help="Write the per-round table as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Write everything as JSON.")
@click.option("-o", "--output", type=PathText(dir_okay=False), default=None,
              help="File for --csv/--json.  [default: stdout]")
@click.option("--plot", type=PathText(dir_okay=False), default=None, help="Draw AVG/TOP5/LOW5 per round into this PNG.")
@click.option("--metric", type=Text(), default=None,
              help="The metric of the AVG/TOP5/LOW5 table and --plot: an app's reply metric, as NAME or TASK.NAME.  "
                   "[default: the first whose name holds acc]")
@click.option("--watch", is_flag=True, help="Refresh while the run is live.")
@click.option("--interval", type=FiniteFloat(min=0.2, max=3600.0), default=2.0,
              help="Seconds between --watch refreshes.")
@click.option("--runs", "list_runs", is_flag=True, help="List the runs in the log dir.")
@click.option("--pull", is_flag=True, help="First bring the run's client logs over again from its devices.")
@click.option("--ssh-config", type=PathText(dir_okay=False), default=None,
              help="With --pull: the ssh config to reach the devices with (never the one run.json names).  "
                   "[default: your own]")
@click.option("--by", "by", type=click.Choice(["profile"]), default=None,
              help="An emulated fleet's run (--fleet): per profile its clients, rounds taken part (client-rounds "
                   "with a round end line), mean and p95 round time and the mean of its parts (download, waiting, "
                   "compute, upload), stragglers cut, out-of-memory kills, offline rounds and accuracy (mean of "
                   "its clients' last evaluate acc).  A round time runs from the round's start to the server "
                   "holding the client's reply, both transfers included: emulated in virtual mode, real in "
                   "process mode.")
@click.option("--plot-timeline", "timeline", type=PathText(dir_okay=False), default=None,
              help="An emulated fleet's run: draw each round as one bar per client from the round's start to "
                   "its reply, in its parts (download, waiting, compute, upload), coloured by profile, the round's "
                   "end and deadline marked, stragglers edged in black, into this PNG.  Time axis: "
                   "seconds from the first round's start, emulated in virtual mode, real in process mode.")
@click.option("--tensorboard", type=PathText(file_okay=False), default=None,
              help="Write the run's rounds (with --runs: every run's, side by side) as TensorBoard scalars into "
                   "DIR/<run>: per client acc and train_loss, clients/AVG, TOP5, LOW5, a fleet's round times.  "
                   "Needs pip install 'fl-launch[tensorboard]'.")
@click.option("--compare", "runs_compared", type=Text(), nargs=2, default=None, metavar="RUN_A RUN_B",
              help="Two emulated fleets' runs (ids or folders), e.g. one on your devices and one emulated: per "
                   "round the round's own time and each profile's mean round time (as --by profile counts it) "
                   "of both side by side, with RUN_B's over RUN_A's; then each profile's mean over those rounds.")
@click.pass_context
def main(ctx, target, run, log_dir, as_csv, as_json, output, plot, metric, watch, interval, list_runs, pull,
         ssh_config, by, timeline, tensorboard, runs_compared) -> None:
    """Loss and accuracy per round out of client logs: one client, or AVG/TOP5/LOW5 across a run."""
    console = make_console()
    log_path = Path(log_dir)
    _check_combination(ctx, target, run, as_csv, as_json, output, plot, watch, list_runs, pull)
    _check_fleet_combination(by, timeline, as_csv, as_json, plot, metric, watch, list_runs, pull)
    if ssh_config is not None and not pull:
        raise UserError("--ssh-config is for --pull (reaching the run's devices)")
    if metric is not None and list_runs:
        raise UserError("--runs lists every run in the log dir; drop --metric")
    for path, flag in ((output, "-o"), (plot, "--plot"), (timeline, "--plot-timeline")):
        if path is not None:
            _check_writable(path, flag)
    if tensorboard is not None:
        for given, flag in ((as_csv, "--csv"), (as_json, "--json"), (plot, "--plot"), (watch, "--watch"),
                            (by, "--by"), (timeline, "--plot-timeline"), (metric, "--metric")):
            if given:
                raise UserError(f"--tensorboard writes event files; drop {flag}")
        if pull:
            _pull(_run_folder(run, log_path), console, ssh_config)
        folders = [f.path for f in RunFolder.listed(log_path)] if list_runs else [_run_path(target, run, log_path)]
        if not folders:
            raise UserError(f"no runs in {log_path}")
        for folder in folders:
            tags = write_run(folder, Path(tensorboard), _info(folder))
            console.print(f"{folder.name}: {len(tags)} scalar tags -> {Path(tensorboard) / folder.name}",
                          markup=False, highlight=False)
        return
    if runs_compared:
        _check_compare(target, run, by, timeline, plot, metric, watch, list_runs, pull)
        _compare([_run_folder(name, log_path) for name in runs_compared], console, as_csv, as_json, output)
        return
    if by or timeline:
        kind, path = resolve(target, run, log_path)
        if kind != "run":
            raise UserError(f"--{'by' if by else 'plot-timeline'} reports on a run; name a run, not a client")
        _fleet(path, console, by, timeline, as_csv, as_json, output)
        return
    if list_runs:
        _list_runs(log_path, console, as_json, output)
        return
    if pull:
        _pull(_run_folder(run, log_path), console, ssh_config)
        if target is None and not (as_csv or as_json or plot or watch):
            return
    kind, path = resolve(target, run, log_path)
    if plot and kind != "run":
        raise UserError("--plot draws across a run's clients; name a run, not a client")
    if metric is not None and kind != "run":
        raise UserError("--metric picks what AVG/TOP5/LOW5 show across a run's clients; name a run, not a client")
    if watch:
        _watch(kind, path, console, interval, metric)
        return
    if kind == "client":
        _client(path, console, as_csv, as_json, output)
    else:
        _run(path, console, as_csv, as_json, output, plot, metric)


def _run_path(target: str | None, run: str | None, log_path: Path) -> Path:
    kind, path = resolve(target, run, log_path)
    if kind != "run":
        raise UserError("--tensorboard writes a run's clients; name a run, not a client")
    return path


def _check_combination(ctx, target, run, as_csv, as_json, output, plot, watch, list_runs, pull) -> None:
    """Refuse what the chosen mode would ignore: one line each, before anything is read."""
    if as_csv and as_json:
        raise UserError("--csv and --json exclude each other")
    if output is not None and not (as_csv or as_json):
        raise UserError("-o is for --csv or --json (the table goes to the terminal)")
    if list_runs:
        for given, flag in ((target, "TARGET"), (run, "--run"), (as_csv, "--csv"), (plot, "--plot"),
                            (watch, "--watch"), (pull, "--pull")):
            if given:
                raise UserError(f"--runs lists every run in the log dir; drop {flag}")
    if watch:
        for given, flag in ((as_csv, "--csv"), (as_json, "--json"), (plot, "--plot")):
            if given:
                raise UserError(f"--watch refreshes the table in the terminal; drop {flag}")
    elif ctx.get_parameter_source("interval") == click.core.ParameterSource.COMMANDLINE:
        raise UserError("--interval is for --watch")


def _check_fleet_combination(by, timeline, as_csv, as_json, plot, metric, watch, list_runs, pull) -> None:
    if not (by or timeline):
        return
    flag = "--by profile" if by else "--plot-timeline"
    for given, other in ((plot, "--plot"), (metric, "--metric"), (watch, "--watch"), (list_runs, "--runs"),
                         (pull, "--pull")):
        if given:
            raise UserError(f"{flag} reports an emulated fleet's run; drop {other}")
    if (as_csv or as_json) and not by:
        raise UserError("--csv and --json write the --by profile table; add --by profile")


def _check_compare(target, run, by, timeline, plot, metric, watch, list_runs, pull) -> None:
    for given, other in ((target, "TARGET"), (run, "--run"), (by, "--by"), (timeline, "--plot-timeline"),
                         (plot, "--plot"), (metric, "--metric"), (watch, "--watch"), (list_runs, "--runs"),
                         (pull, "--pull")):
        if given:
            raise UserError(f"--compare names its two runs; drop {other}")


def _compare(folders: list[Path], console: Console, as_csv: bool, as_json: bool, output: str | None) -> None:
    """--compare RUN_A RUN_B: both fleet runs' round times per round and profile, and B over A."""
    a, b = (read_fleet_run(folder, _info(folder)) for folder in folders)
    table = compare(a, b)
    clocks = {run.name: "emulated" if run.virtual else "real" for run in (a, b)}
    if as_csv:
        _emit(table.to_csv(index=False), output)
    elif as_json:
        described = [{"run": run.name, "mode": "virtual" if run.virtual else "process", "clock": clocks[run.name]}
                     for run in (a, b)]
        _emit(json.dumps({"a": described[0], "b": described[1],
                          "rows": [{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")]},
                         indent=2) + "\n", output)
    else:
        shown = table.set_index("round").rename(columns={"a_s": f"A_s ({clocks[a.name]})",
                                                         "b_s": f"B_s ({clocks[b.name]})", "ratio": "B/A"})
        console.print(_table(f"A {a.name} vs B {b.name}: round times in seconds", shown, "round"))


def _fleet(folder: Path, console: Console, by: str | None, timeline: str | None, as_csv: bool, as_json: bool,
           output: str | None) -> None:
    """--by profile and --plot-timeline: an emulated fleet's run per profile, and its rounds as bars."""
    fleet_run = read_fleet_run(folder, _info(folder))
    if timeline:
        if not fleet_run.client_rounds:
            raise UserError(f"run {folder.name}: no client logged a round under its fleet: nothing to plot")
        try:
            plot_timeline(fleet_run, Path(timeline))
        except (OSError, ValueError) as err:  # an unwritable file, or a format matplotlib does not know
            raise UserError(f"--plot-timeline {timeline}: {' '.join(str(err).split())}") from None
    if not by:
        console.print(f"timeline: {timeline}", markup=False, highlight=False)
        return
    table = by_profile(fleet_run)
    if as_csv:
        _emit(table.to_csv(), output)
    elif as_json:
        _emit(json.dumps({"run": folder.name, "mode": "virtual" if fleet_run.virtual else "process",
                          "round_time": "emulated" if fleet_run.virtual else "real: round start to reply held",
                          "profiles": [{"profile": name, **{k: _clean(v) for k, v in row.items()}}
                                       for name, row in table.astype(object).iterrows()]}, indent=2) + "\n", output)
    else:
        clock = "emulated" if fleet_run.virtual else "real"
        console.print(_table(f"{folder.name}: per profile, round times in seconds ({clock})", table, "profile"))
        if timeline:
            console.print(f"timeline: {timeline}", markup=False, highlight=False)


def _client(log: Path, console: Console, as_csv: bool, as_json: bool, output: str | None) -> None:
    history = read_client_log(log)
    rounds, epochs = client_tables([history])
    rounds = rounds.drop(columns=["client"]).set_index("round")
    if as_csv:
        _emit(rounds.to_csv(), output)
        return
    if as_json:
        _emit(json.dumps({
            "log": str(log), "format": history.format, "skipped_lines": history.skipped,
            "rounds": [{k: _clean(v) for k, v in r.items()} for r in history.rounds],
            "epochs": history.epochs, "final_accuracy": history.final_acc,
            "get_model": history.get_model, "inference": history.inference,
        }, indent=2) + "\n", output)
        return
    console.print(_table(f"{log} ({history.format} format): per round", rounds, "round"))
    if not epochs.empty:
        console.print(_table("per epoch", epochs.drop(columns=["client"]).set_index(["round", "epoch"])
                             .reset_index(), None))
    if history.final_acc is not None:
        console.print(f"final model accuracy: {history.final_acc:.4f}")
    if history.get_model:
        console.print(f"getModel: {history.get_model} response(s) from the server")
    for inf in history.inference:
        acc = f", accuracy {inf['acc']:.4f}" if "acc" in inf else ""
        console.print(f"inference: {inf['count']} predicted labels{acc}")
    _report_skipped(console, [history])


def _report_skipped(console: Console, histories) -> None:
    skipped = sum(h.skipped for h in histories)
    if skipped:
        bad = [h.path for h in histories if h.skipped]
        console.print(f"skipped {skipped} unreadable line(s) in {len(bad)} file(s), e.g. {bad[0]}")


def pick_metric(rounds: pd.DataFrame, name: str | None) -> str:
    """The column of ``rounds`` that ``--metric NAME`` names (``acc`` without one); a user error if none or
    several (a NAME that both the train and the evaluate replies carry)."""
    if name is None:
        return "acc"
    names = metric_names(rounds)
    if name in names:
        return name
    found = [n for n in names if n.partition(".")[2] == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"--metric {name} is in several replies; name one of {', '.join(found)}")
    known = ", ".join(dict.fromkeys(n.partition(".")[2] for n in names)) or "none (not an --app run)"
    raise UserError(f"--metric {name}: no such metric in the client logs; they hold {known}")


def _run_tables(folder: Path, metric: str | None = None):
    logs = _client_logs(folder)
    histories = read_logs(logs)
    rounds, _ = client_tables(histories)
    column = pick_metric(rounds, metric) if histories else "acc"
    return histories, rounds, column, across_clients(rounds, column)


def _no_client_logs(folder: Path, console: Console, as_csv: bool, as_json: bool, output: str | None,
                    plot: str | None) -> None:
    """A run that left no client log (it failed at start): its status and reason, from run.json."""
    try:
        state = live_status(RunFolder(folder))
    except RunFolderError as err:
        raise UserError(f"{folder} holds no client_*/client.log ({err})") from None
    status, reason = state["status"], state.get("reason")
    said = f"run {folder.name}: {status}" + (f": {reason}" if reason else "") + "; no client logged a round"
    if plot:
        raise UserError(f"{said}: nothing to plot")
    if as_csv:
        _emit(across_clients(client_tables([])[0]).to_csv(), output)
    elif as_json:
        _emit(json.dumps({"run": folder.name, "status": status, "reason": reason, "clients": 0,
                          "skipped_lines": 0, "metric": None, "metrics": [], "rounds": [], "per_client": []},
                         indent=2) + "\n", output)
    else:
        console.print(said, markup=False, highlight=False)


def _run(folder: Path, console: Console, as_csv: bool, as_json: bool, output: str | None, plot: str | None,
         metric: str | None = None) -> None:
    histories, rounds, column, table = _run_tables(folder, metric)
    if not histories:
        _no_client_logs(folder, console, as_csv, as_json, output, plot)
        return
    names = metric_names(rounds)
    if plot:
        if table.empty:
            raise UserError(f"no {'evaluate acc' if column == 'acc' else column} values in {folder}: nothing to plot")
        try:
            plot_across(table, Path(plot), f"{folder.name}: {len(histories)} clients"
                        + ("" if column == "acc" else f", {column}"), column)
        except (OSError, ValueError) as err:  # an unwritable file, or a format matplotlib does not know
            raise UserError(f"--plot {plot}: {' '.join(str(err).split())}") from None
    if as_csv:
        _emit(table.join(per_client(rounds, names), how="outer").to_csv(), output)
        return
    info = _info(folder)
    server_rows = read_strategy_log(folder / "server" / "serverapp.log") if runs_user_app(info) else []
    gpu = _gpu_peaks(rounds)
    if as_json:
        _emit(json.dumps({
            "run": folder.name, "clients": len(histories), "skipped_lines": sum(h.skipped for h in histories),
            **({"peak_gpu_mib": [{k: _clean(v) for k, v in row.items()}
                                 for row in gpu.reset_index().to_dict("records")]} if gpu is not None else {}),
            "final_accuracy": info.get("final_accuracy"), "metric": column, "metrics": names,
            "rounds": [{k: _clean(v) for k, v in row.items()} for row in table.reset_index().to_dict("records")],
            "per_client": [{"client": int(row["client"]), "round": int(row["round"]),
                            "metrics": {n: row[n] for n in names if row[n] == row[n] and row[n] is not None}}
                           for row in rounds.dropna(subset=["client"]).to_dict("records")] if names else [],
            "server_metrics": server_rows,
        }, indent=2) + "\n", output)
        return
    what = "accuracy of the received model" if column == "acc" else column
    console.print(_table(f"{folder.name}: {len(histories)} client logs, {what}", table, "round"))
    if gpu is not None:
        console.print(_table("peak GPU memory (MiB) of a client's round task, over the clients", gpu, "round"))
    if names:
        console.print(_table("every client's reply metrics, mean over the clients",
                             rounds.astype({n: float for n in names}).groupby("round")[names].mean(), "round"))
    if server_rows:
        wide = pd.DataFrame([{"round": r["round"], **{f"{r['phase']}.{k}": v for k, v in r["metrics"].items()}}
                             for r in server_rows]).groupby("round").first()
        console.print(_table("what the app's strategy aggregated (server/serverapp.log)", wide, "round"))
    if info.get("final_accuracy") is not None:
        console.print(f"final model accuracy: {info['final_accuracy']:.4f} "
                      f"over {info.get('final_test_samples')} test samples")
    if plot:
        console.print(f"plot: {plot}")
    _report_skipped(console, histories)


def _gpu_peaks(rounds: pd.DataFrame) -> pd.DataFrame | None:
    """Per round, the clients' peak GPU memory (mean, max); None for a run whose rounds ran on CPUs."""
    if GPU_COLUMN not in rounds.columns:
        return None
    return rounds.dropna(subset=[GPU_COLUMN]).astype({GPU_COLUMN: float}).groupby("round")[GPU_COLUMN] \
        .agg(["mean", "max"]).rename(columns={"mean": "mean_mib", "max": "max_mib"})


def _watch(kind: str, path: Path, console: Console, interval: float, metric: str | None = None) -> None:
    folder = path if kind == "run" else path.parent.parent
    with Live(console=console, refresh_per_second=2) as live:
        try:
            while True:
                if kind == "run":
                    histories, _, _, table = _run_tables(folder, metric)
                    view = _table(f"{folder.name}: {len(histories)} clients (watching)", table.tail(20), "round")
                else:
                    rounds, _ = client_tables([read_client_log(path)])
                    recent = rounds.drop(columns=["client"]).set_index("round").tail(20)
                    view = _table(f"{path} (watching)", recent, "round")
                live.update(view)
                try:
                    state = live_status(RunFolder(folder))["status"] if (folder / RUN_JSON).is_file() else "?"
                except RunFolderError:
                    state = "unknown"
                if state not in LIVE:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


def _pull(folder: Path, console: Console, ssh_config: str | None) -> None:
    """A run folder is data: its devices checked as a hosts file's, ssh reading the config given here (or yours)."""
    info = RunFolder(folder).read()
    try:
        devices = devices_of(info, ssh_config)
    except (KeyError, TypeError):  # devices recorded in another shape than fl-launch writes
        raise UserError(f"run {folder.name}: its run.json's devices are not fl-launch's") from None
    except HostsError as err:
        raise UserError(f"run {folder.name}: {err}; nothing pulled") from None
    if not devices:
        raise UserError(f"run {folder.name} has no devices to pull from")
    if note := unused_ssh_config(recorded_ssh_config(info), ssh_config):
        click.echo(f"fl-stats: run {folder.name}: {note}", err=True)
    for device, clients in devices:
        state = "pulled" if device.pull(folder) is not None else "unreachable or empty"
        device.close()
        console.print(f"{device.host}: clients {', '.join(map(str, clients))}: {state}")


def _status_text(row: dict) -> str:
    """A run's status, with what it is doing when its supervisor says ("starting: 3 of 5 clients connected",
    "running: restarting client 2"); a run still preparing says only that ("preparing the data")."""
    activity = row.get("activity")
    if not activity:
        return row["status"]
    return activity if row["status"] == RunStatus.PREPARED else f"{row['status']}: {activity}"


def _list_runs(log_dir: Path, console: Console, as_json: bool, output: str | None) -> None:
    rows = []
    for folder in RunFolder.listed(log_dir):
        try:
            row = live_status(folder)
        except RunFolderGone:  # removed while listed (a run discarded as it prepared): no run any more
            continue
        except RunFolderError:
            row = {"run": folder.run_id, "status": "unreadable run.json"}
        if not folder.gone():
            rows.append(row)
    if as_json:
        _emit(json.dumps(rows, indent=2) + "\n", output)
        return
    table = Table(title=f"runs in {log_dir}")
    for column in ("run", "tag", "task", "status", "clients alive", "rounds done", "final acc"):
        table.add_column(column)
    for r in rows:
        status = _status_text(r)
        table.add_row(r["run"], r.get("tag", ""), r.get("task") or "", status,
                      f"{r.get('clients_alive', 0)}/{r.get('clients', 0)}",
                      f"{r.get('rounds_done', 0)}/{r.get('rounds') or '?'}" if r.get("task") == "train" else "-",
                      _fmt(r.get("final_accuracy")))
    console.print(table if rows else f"no runs in {log_dir}")


if __name__ == "__main__":
    main()
