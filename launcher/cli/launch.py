"""``fl-launch``: train (or serve a model to) N Flower clients on this machine.

    $ fl-launch --client-num 10 --task train                 # digits, 10 IID clients
    $ fl-launch --client-num 10 --dataset cifar10 --data-dir ~/data/cifar-10-batches-py
    $ fl-launch --client-num 3 --task inference              # the newest run's model
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import click
from rich.table import Table

from contract.run_settings import DEVICES, STRATEGY_NAMES
from launcher.apps.requirements import declared_requirements
from launcher.apps.user_app import read_app
from launcher.cli.config_file import read_config
from launcher.cli.errors import CONTEXT, OneLineErrors, UserError
from launcher.cli.live_view import make_console, make_view, print_summary
from launcher.cli.option_types import (
    MAX_CLASSES,
    SECONDS_MAX,
    SEED_MAX,
    FiniteFloat,
    KillTag,
    PathText,
    Text,
    WholeNumber,
)
from launcher.devices.bench import BenchSpec, run_bench
from launcher.devices.hosts import load_hosts
from launcher.devices.install import SOURCE_ROOT, build_wheel, install_on
from launcher.devices.preflight import check_devices
from launcher.devices.remote import RemoteDevice, unused_ssh_config
from launcher.flower.release import unsupported_flower
from launcher.processes.entry_modules import SUPERVISOR
from launcher.processes.table import RUN_ENV, TAG_ENV
from launcher.run.folder import RunFolder
from launcher.run.options import MODES, NATURAL, PROCESS_MODE_UP_TO, TASKS, LaunchOptions
from launcher.run.plan import check_tag_free, discard_all, prepare_resume, prepare_run
from launcher.run.ray_cluster import check_cluster_nodes, check_ray_address
from launcher.run.record import RunRecord
from launcher.run.run_status import RunStatus
from launcher.run.supervisor import Supervisor
from partitions import SCHEMES
from simulator.datasets import DATASETS

POSITIVE = FiniteFloat(min=0, min_open=True)
SECONDS = FiniteFloat(min=0, min_open=True, max=SECONDS_MAX)
COUNT = WholeNumber(min=1)
D = LaunchOptions()  # every default below comes from here
NOT_FROM_A_FILE = {"config", "help", "check", "bench", "install", "resume"}


def _options_from_file(ctx: click.Context, _param, value: str | None) -> None:
    """--config: the file's values become the defaults, so the command line still wins."""
    if value is None:
        return
    params = {p.name: p for p in ctx.command.params if p.name not in NOT_FROM_A_FILE}
    entries = read_config(value, set(params))
    options = {}
    for entry in entries:
        if entry.value is None:
            continue
        try:  # the option's own type, so the file gets the command line's checks, named by file and line
            options[entry.name] = params[entry.name].type_cast_value(ctx, entry.value)
        except (click.BadParameter, TypeError, ValueError) as err:  # TypeError: a TOML date where a number goes
            where = f"{value}:{entry.line}" if entry.line else value
            message = err.message if isinstance(err, click.BadParameter) else f"not a {params[entry.name].type.name}"
            raise UserError(f"--config {where}: {entry.key} = {entry.value!r}: {message}") from None
    ctx.meta["fl_launch.config"] = value
    ctx.default_map = {**(ctx.default_map or {}), **options}


@click.command("fl-launch", cls=OneLineErrors, context_settings=CONTEXT)
@click.option("--config", type=PathText(dir_okay=False), default=None, is_eager=True, expose_value=False,
              callback=_options_from_file, help="Options from a TOML file (keys: the long option names), or an "
              "earlier run's run.json to repeat it; the command line wins.")
@click.option("--client-num", type=COUNT, default=D.client_num,
              help="Clients: one process each, or virtual clients sharing a few workers (--mode).")
@click.option("--task", type=click.Choice(TASKS), default=D.task,
              help="train: FedAvg rounds; getModel: each client receives and saves an earlier run's model; "
                   "inference: each client labels its test split with it.")
@click.option("--rounds", type=COUNT, default=D.rounds, help="Federated iterations.")
@click.option("--local-epochs", type=COUNT, default=D.local_epochs, help="Local epochs per round.")
@click.option("--batch-size", type=COUNT, default=D.batch_size, help="Local mini-batch size.")
@click.option("--lr", type=POSITIVE, default=D.lr, help="Adam learning rate.")
@click.option("--fraction-fit", type=FiniteFloat(0, 1, min_open=True), default=None,
              help="Share of the clients taking part in each round (or --clients-per-round).  [default: 1.0]")
@click.option("--clients-per-round", type=COUNT, default=None,
              help="Clients taking part in each round, drawn by client number from --seed.  [default: all]")
@click.option("--min-clients", type=COUNT, default=None,
              help="Fewest replies a round needs to be aggregated.  [default: all taking part]")
@click.option("--round-timeout", type=SECONDS, default=D.round_timeout,
              help="Seconds the server waits for a round's replies.")
@click.option("--round-deadline", type=SECONDS, default=None,
              help="Close each round at this many seconds with the replies it has (when at least --min-clients "
                   "replied; else the round fails and the run goes on with the same model); later replies are "
                   "discarded and logged as stragglers.  [default: none]")
@click.option("--overcommit", type=FiniteFloat(1, 10), default=D.overcommit,
              help="Sample ceil(K x F) clients each round and aggregate the first K replies (K: the clients "
                   "taking part per round); the rest are stragglers.")
@click.option("--fleet", type=PathText(dir_okay=False), default=None,
              help="A fleet file (TOML, see docs/fleet.md): each client emulated as a device profile: CPU share, "
                   "memory, link (rate, latency, loss) and availability; virtual mode emulates the same on an "
                   "emulated clock.")
@click.option("--seed", type=WholeNumber(0, SEED_MAX), default=D.seed,
              help="Same seed: same partitions, same initial model.")
@click.option("--log-dir", type=PathText(file_okay=False), default=D.log_dir, help="Root of the run folders.")
@click.option("--kill-tag", type=KillTag(), default=None,
              help="Tag every process of the run carries, for fl-finish.  [default: the run id]")
@click.option("--dataset", type=click.Choice(DATASETS), default=D.dataset,
              help="digits: scikit-learn's bundled handwriting; cifar10: --data-dir in the python pickle format; "
                   "synthetic: generated 3x32x32 images; femnist: --data-dir with LEAF's JSON or MindSpore's "
                   "per-writer .bin folders; npz: --data-dir with your own client_<i>.npz files (x_train, y_train, "
                   "x_test, y_test).")
@click.option("--data-dir", type=PathText(), default=None, help="Where the data set lies (cifar10, femnist, npz).")
@click.option("--partition", type=click.Choice((*SCHEMES, NATURAL)), default=None,
              help="iid; dirichlet (label skew by --alpha); shards (each client sees few classes); natural "
                   "(femnist: client i is the i-th writer; npz: client_<i>.npz).  "
                   "[default: natural for femnist and npz, else iid]")
@click.option("--app", type=PathText(file_okay=False), default=None,
              help="Run your own Flower app (a folder with a pyproject.toml, as flwr run takes) instead of the "
                   "built-in one; each client gets partition-id and num-partitions in its node config.")
@click.option("--run-config", type=Text(), default=None, metavar="'KEY=VALUE ...'",
              help="--app: overrides of the app's [tool.flwr.app.config], as flwr run --run-config takes them.")
@click.option("--node-config", type=Text(), default=None, metavar="'KEY=VALUE ...'",
              help="Added to every client's node config beside partition-id and num-partitions, as "
                   "flower-supernode --node-config takes it; in a string {i} is the client number, {n} the client "
                   "count. A device's node-config in --hosts wins.")
@click.option("--model", type=Text(), default=D.model, metavar="MODULE:CLASS",
              help="A torch.nn.Module class to train instead of LeNet5, built with channels/in_channels and "
                   "num_classes where its constructor takes them; imported from here or the installed packages.  "
                   "[default: LeNet5]")
@click.option("--strategy", type=click.Choice(STRATEGY_NAMES), default=D.strategy,
              help="Flower's aggregation strategy.")
@click.option("--proximal-mu", type=FiniteFloat(min=0), default=D.proximal_mu,
              help="fedprox: weight of the proximal term each client adds to its loss.")
@click.option("--server-lr", type=FiniteFloat(min=0), default=D.server_lr,
              help="fedadam, fedyogi, fedadagrad: the server's step size (eta); 0: Flower's default for the "
                   "strategy (0.1, or 0.01 for fedyogi).")
@click.option("--beta-1", type=FiniteFloat(0, 1, max_open=True), default=D.beta_1,
              help="fedadam, fedyogi: first-moment decay.")
@click.option("--beta-2", type=FiniteFloat(0, 1, max_open=True), default=D.beta_2,
              help="fedadam, fedyogi: second-moment decay.")
@click.option("--tau", type=POSITIVE, default=D.tau, help="fedadam, fedyogi, fedadagrad: adaptivity (epsilon).")
@click.option("--alpha", type=POSITIVE, default=D.alpha, help="Dirichlet concentration: smaller is more skewed.")
@click.option("--samples-per-client", type=WholeNumber(min=2), default=D.samples_per_client,
              help="synthetic: samples per client.")
@click.option("--num-classes", type=WholeNumber(2, MAX_CLASSES), default=D.num_classes,
              help="synthetic: number of classes.")
@click.option("--torch-threads", type=WholeNumber(1, 1024), default=D.torch_threads,
              help="Torch threads per client process.")
@click.option("--device", type=click.Choice(DEVICES), default=D.device,
              help="Where the built-in app trains and evaluates: cuda, cpu, or auto (CUDA where torch sees a GPU, "
                   "decided on each host, devices included). The model travels and is saved as CPU tensors.")
@click.option("--gpus-per-client", type=FiniteFloat(0, 1, min_open=True), default=None, metavar="F",
              help="Each client's share of a GPU (0.25: four compute on one GPU at once, each bounded to a quarter "
                   "of its memory); process mode spreads the clients over the visible GPUs, virtual mode gives "
                   "Flower's client resources num_gpus=F.  [default: no bound, no GPU slots]")
@click.option("--mode", type=click.Choice(MODES), default=D.mode,
              help=f"process: one OS process per client; virtual: Flower's simulation runtime, many clients "
                   f"sharing --workers processes (this machine, or a Ray cluster: --ray-address); auto: virtual "
                   f"above {PROCESS_MODE_UP_TO} clients.")
@click.option("--workers", type=COUNT, default=None,
              help="--mode virtual: worker processes the clients share.  [default: one per core]")
@click.option("--ray-address", type=Text(), default=None, metavar="HOST:PORT",
              help="--mode virtual: run the clients on this existing Ray cluster (its head's address).  "
                   "[default: $RAY_ADDRESS, else a Ray of the run's own on this machine]")
@click.option("--run", "run", type=Text(), default=None,
              help="getModel/inference: the earlier run (id or folder).  [default: the newest with a checkpoint]")
@click.option("--startup-timeout", type=SECONDS, default=None,
              help="Seconds for all clients to connect.  [default: 60 + 3 per client]")
@click.option("--max-restarts", type=WholeNumber(min=0), default=D.max_restarts,
              help="Times a local client whose process dies is started again; it rejoins from the next round.")
@click.option("--grace", type=FiniteFloat(min=0, max=SECONDS_MAX), default=D.grace,
              help="Seconds between SIGTERM and SIGKILL when stopping.")
@click.option("--hosts", type=PathText(dir_okay=False), default=None,
              help="TOML file of devices to place clients on over SSH (see docs/devices.md).  [default: this machine]")
@click.option("--ssh-config", type=PathText(dir_okay=False), default=None,
              help="An ssh config file to use instead of ~/.ssh/config.")
@click.option("--remote-data-dir", type=Text(), default=None,
              help="With --hosts: the partitions are already on each device in this folder (client_<i>.npz, e.g. "
                   "an earlier run's runs/RUN/data); do not copy them.  [default: copy the launcher's split]")
@click.option("--tls", is_flag=True, help="Serve the SuperLink over TLS with a CA and certificate made for this "
              "run; every node verifies it.")
@click.option("--server-address", type=Text(), default=None, metavar="HOST",
              help="With --hosts: devices connect to the SuperLink's Fleet API at HOST (an address of this machine) "
                   "directly, not through SSH tunnels; turns on --tls and Flower's SuperNode authentication (a key "
                   "pair per node, made for the run).")
@click.option("--check", is_flag=True, help="With --ray-address: check each Ray node has this Python, fl-launch, "
              "flwr, torch (and --app's requirements). With --hosts: check every device (reachable, versions, memory, "
              "CPUs, disk, clock) and exit; non-zero when one fails.")
@click.option("--bench", is_flag=True, help="With --check: also time a few batches of the run's model and data "
              "shape and the SSH link on every device, and print a fleet.toml of them on stdout (the table on "
              "stderr).")
@click.option("--install", is_flag=True, help="With --hosts: build this launcher's wheel and pip-install it "
              "(and the pinned dependencies the device lacks, carried from here: the device needs no internet) "
              "into each device's Python, then exit.")
@click.option("--resume", "resume", type=Text(), default=None, metavar="RUN",
              help="Go on with an ended training run (id or folder) from its newest checkpoint, with its own "
                   "options, in its own folder; its logs continue.")
@click.option("--detach", is_flag=True,
              help="Return once all clients are up; a small supervisor process keeps the run going.")
@click.pass_context
def main(ctx: click.Context, **kwargs) -> None:
    """Start a Flower SuperLink and N client nodes on this machine, train, and stop them all."""
    if wrong_flower := unsupported_flower():
        raise UserError(wrong_flower)
    check, install, resume, bench = (kwargs.pop(k) for k in ("check", "install", "resume", "bench"))
    if bench and not check:
        raise UserError("--bench measures the devices of --check: give --hosts FILE --check --bench")
    if resume is not None:
        _check_resume_alone(ctx, kwargs, check, install)
        folder = prepare_resume(kwargs["log_dir"], resume, kwargs["ssh_config"])
        record = RunRecord.read(folder)  # prepare_resume read it: of fl-launch's shape
        opts = replace(record.options, detach=kwargs["detach"], log_dir=kwargs["log_dir"],
                       ssh_config=kwargs["ssh_config"])  # a run folder is data: ssh's config is named now
        if opts.ray_address is not None:  # the cluster it ran on must still be there
            check_ray_address(opts.ray_address)
        if note := unused_ssh_config(record.options.ssh_config if record.plan.devices else None,
                                      opts.ssh_config):
            click.echo(f"fl-launch: run {folder.run_id}: {note}", err=True)
        sys.exit(_detach(folder, opts) if opts.detach else _foreground(folder, opts.ssh_config))
    opts = _with_ray_address_from_env(LaunchOptions(**kwargs))
    if install:
        sys.exit(_install(opts))
    if check:
        sys.exit(_check(opts, bench))
    checked = opts.validate(_given())  # prepare_run checks (and reads) nothing again
    stops = _PreparingStops()
    made: list[RunFolder] = []  # the run's folder from the moment it exists, even before prepare_run returns
    try:
        stops.install()  # fl-finish (SIGTERM) stops the run while it prepares, as Ctrl-C does
        if opts.kill_tag is not None:
            check_tag_free(opts.kill_tag)
        folder = prepare_run(checked, made)
        if stops.received:  # raised where a library swallowed it (an import inside numpy may)
            raise KeyboardInterrupt
    except KeyboardInterrupt:  # a signal after prepare_run returned too: its folder is in made
        discard_all(made)  # no second signal interrupts this (_PreparingStops raises once)
        click.echo("fl-launch: interrupted while preparing the run; nothing was started, no run folder kept", err=True)
        sys.exit(130)
    finally:  # the supervisor (or the detached one) takes the signals from here
        stops.uninstall()
    if opts.hosts and not opts.tls and not opts.server_address:
        click.echo("note: without --tls, Flower's traffic is plain HTTP; between machines it travels inside the "
                   "SSH tunnels, on each machine's loopback it is clear text", err=True)
    sys.exit(_detach(folder, opts) if opts.detach else _foreground(folder, opts.ssh_config))


def _with_ray_address_from_env(opts: LaunchOptions) -> LaunchOptions:
    """RAY_ADDRESS, as Ray users set it, names the cluster of a virtual run that gives no --ray-address."""
    from_env = os.environ.get("RAY_ADDRESS", "").strip()
    if opts.ray_address is None and from_env and opts.is_virtual():
        return replace(opts, ray_address=from_env)
    return opts


class _PreparingStops:
    """While a run prepares: SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, and are remembered, so a
    library that swallows the exception does not swallow the stop. Only the first raises: a second Ctrl-C
    cannot break off the removal of the half-made folder that the first one began."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None
        self._before: dict[signal.Signals, object] = {}

    def _on_signal(self, signum, _frame) -> None:
        first = self.received is None
        self.received = self.received or signal.Signals(signum).name
        if first:
            raise KeyboardInterrupt

    def install(self) -> None:
        for sig in self.SIGNALS:
            if signal.getsignal(sig) != signal.SIG_IGN:  # one ignored when we started (nohup) stays ignored
                self._before[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)


def _foreground(folder: RunFolder, ssh_config: str | None) -> int:
    view = make_view(folder.run_id)
    view.start()
    supervisor = Supervisor(folder, view=view, ssh_config=ssh_config)
    try:
        code = supervisor.run()
    finally:
        view.stop()
    if folder.gone():  # removed under the run: its end in one line, from the supervisor
        status, reason = supervisor.outcome or (RunStatus.FAILED, "")
        view.console.print(f"run {folder.run_id} {status}: {reason}", markup=False, highlight=False)  # a path
        return code
    print_summary(folder.path, folder.read(), supervisor.events, view.console)
    return code


def _devices(opts: LaunchOptions, flag: str):
    if opts.hosts is None:
        raise UserError(f"{flag} needs --hosts FILE" + (" or --ray-address HOST:PORT" if flag == "--check" else ""))
    return load_hosts(opts.hosts)


def _install(opts: LaunchOptions) -> int:
    devices = _devices(opts, "--install")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp))
        table = Table(title=f"installing {wheel.name}")
        for column in ("host", "ok", "result"):
            table.add_column(column)
        ok = True
        for i, device in enumerate(devices):
            done, message = install_on(RemoteDevice(device, opts.ssh_config, "install", "install"), wheel,
                                       SOURCE_ROOT / "constraints.txt", Path(tmp) / f"device-{i}")
            ok &= done
            table.add_row(device.host, "yes" if done else "NO", message)
    make_console().print(table)
    return 0 if ok else 1


def _check(opts: LaunchOptions, bench: bool = False) -> int:
    cluster = opts.ray_address or os.environ.get("RAY_ADDRESS", "").strip()
    if opts.hosts is None and cluster and not bench:
        return _check_cluster(opts, cluster)
    devices = _devices(opts, "--check")
    # with --app: its declared dependencies, in the same SSH call as the rest
    requirements = declared_requirements(read_app(opts.app).path) if opts.app else None
    rows = check_devices(devices, opts.ssh_config, requirements, gpus=True, need_cuda=opts.device == "cuda")
    table = Table(title=f"devices in {opts.hosts}")
    for column in ("host", "ok", "python", "fl-launch", "flwr", "torch", "free MiB", "CPUs", "disk MiB",
                   "clock s", "GPU", "problems"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["host"], "yes" if r["ok"] else "NO", str(r.get("python", "-")), str(r.get("fl-launch", "-")),
                      str(r.get("flwr", "-")), str(r.get("torch", "-")), str(r.get("mem_free_mib", "-")),
                      str(r.get("cpus", "-")), str(r.get("disk_free_mib", "-")),
                      f"{r['clock_offset_s']:+.2f}" if "clock_offset_s" in r else "-", r.get("gpu", "-"),
                      "; ".join(r["problems"]))
    console = make_console(stderr=bench)  # with --bench the fleet file alone is on stdout
    console.print(table)
    if bench:  # the fleet file on stdout, the table above on stderr: `> fleet.toml` works
        text, measured = run_bench(devices, opts.ssh_config, BenchSpec(
            opts.dataset, opts.batch_size, opts.num_classes, opts.data_dir), rows)
        click.echo(text, nl=False)
        return 0 if measured and all(r["ok"] for r in rows) else 1
    return 0 if all(r["ok"] for r in rows) else 1


def _check_cluster(opts: LaunchOptions, address: str) -> int:
    """--check --ray-address: one line per node of the cluster; exit 2 when one lacks what the clients need."""
    requirements = declared_requirements(read_app(opts.app).path) if opts.app else None
    checks = check_cluster_nodes(address, requirements)
    for node in checks:
        click.echo(node.line(), err=bool(node.problems))
    return 2 if any(node.problems for node in checks) else 0


def _check_resume_alone(ctx: click.Context, kwargs: dict, check: bool, install: bool) -> None:
    """--resume takes the run's own options: only --log-dir, --detach and --ssh-config (a run folder is data:
    ssh reads the config named now, never run.json's) may come with it."""
    source = click.core.ParameterSource
    if check or install:
        raise UserError(f"--resume goes on with a run; drop {'--check' if check else '--install'}")
    if ctx.meta.get("fl_launch.config"):
        raise UserError("--resume goes on with the run's own options; drop --config")
    given = [name for name in kwargs if name not in ("log_dir", "detach", "ssh_config")
             and ctx.get_parameter_source(name) == source.COMMANDLINE]
    if given:
        raise UserError(f"--resume goes on with the run's own options; drop --{given[0].replace('_', '-')}")


OPTION_NAMES = {f.name for f in fields(LaunchOptions)}


def _given() -> set[str]:
    """Options the user set: on the command line, or in a --config file to other than the default."""
    ctx = click.get_current_context(silent=True)
    given = set()
    for name in OPTION_NAMES:
        source = ctx.get_parameter_source(name) if ctx is not None else None
        if source == click.core.ParameterSource.COMMANDLINE or (
                source == click.core.ParameterSource.DEFAULT_MAP and ctx.params.get(name) != getattr(D, name)):
            given.add(name)
    return given


def _detach(folder: RunFolder, opts: LaunchOptions) -> int:
    """Start the supervisor in its own session; return when round 1 starts (or the run fails)."""
    info = folder.read()
    log = open(folder.path / "supervisor.log", "ab")
    env = dict(os.environ, **{TAG_ENV: info["kill_tag"], RUN_ENV: info["run_id"], "PYTHONSAFEPATH": "1"})
    proc = subprocess.Popen([sys.executable, "-m", SUPERVISOR, str(folder.path), str(folder.lock_fd),
                             *(["--ssh-config", str(Path(opts.ssh_config).expanduser().absolute())]
                               if opts.ssh_config else [])],  # it runs in the run folder
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env, cwd=folder.path, pass_fds=(folder.lock_fd,))
    folder.release()  # the supervisor holds the lock now (the same open file, inherited)
    try:
        return _wait_detached(folder, opts, proc)
    except KeyboardInterrupt:  # Ctrl-C while waiting for round 1: the user wants no run
        click.echo(f"\nrun {folder.run_id}: interrupted while starting; stopping it", err=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=opts.grace + 60)
        except subprocess.TimeoutExpired:
            click.echo(f"run {folder.run_id}: still stopping; fl-finish --kill-tag {info['kill_tag']} --log-dir "
                       f"{opts.log_dir} stops it", err=True)
            return 130
        click.echo(f"run {folder.run_id} {folder.read().get('status', 'interrupted')}: every process stopped",
                   err=True)
        return 130


def _wait_detached(folder: RunFolder, opts: LaunchOptions, proc: subprocess.Popen) -> int:
    info = folder.read()
    deadline = time.monotonic() + opts.startup_deadline() + 30
    while time.monotonic() < deadline:
        status = folder.read().get("status")
        if status in (RunStatus.RUNNING, RunStatus.FINISHED):
            click.echo(f"run {folder.run_id} is running in the background (supervisor pid {proc.pid}, "
                       f"kill tag {info['kill_tag']})\nrun folder: {folder.path}\n"
                       f"stop it with: fl-finish --kill-tag {info['kill_tag']}")
            return 0
        if status in (RunStatus.FAILED, RunStatus.INTERRUPTED) or proc.poll() is not None:
            info = folder.read()
            click.echo(f"run {folder.run_id} {info.get('status', 'failed')}: {info.get('reason', '')} "
                       f"(see {folder.path})", err=True)
            return 1
        time.sleep(0.25)
    click.echo(f"run {folder.run_id}: clients not up after {opts.startup_deadline():.0f} s; "
               f"it goes on in the background (fl-finish --kill-tag {info['kill_tag']} stops it)", err=True)
    return 1


if __name__ == "__main__":
    main()
