"""Turn validated options into a prepared run folder that a Supervisor can execute.

    folder = prepare_run(opts)            # partitions, app dir, configs, run.json
    Supervisor(folder).run()

The run folder and a first run.json (its id, kill tag and this process as its supervisor)
come first, so the run is found by its tag while its data is prepared (fl-finish stops it
then too); everything that can fail on bad input (the data set, the split, an earlier
run's checkpoint) fails before anything is written into it, and a refused or interrupted
launch leaves no folder behind. What the Supervisor needs later is run.json's record (launcher.run.record:
the options, and the plan's facts).

A run folder is self-contained: run.json and the files in it name paths relative to
the folder (getModel/inference copy the served checkpoint in, as served/round_NNNN.pt),
and each start gives Flower the folder's absolute location of the moment, so a run
folder that was copied or moved is resumed where it is now.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path

from contract.errors import InputError
from contract.fleet_record import write_fleet
from contract.loglines import LogWriter, client_log_path
from contract.run_settings import RunSettings, checkpoint_path, latest_checkpoint, resume_checkpoint
from launcher.apps.user_app import AppError, read_app
from launcher.devices.direct import addresses_of, make_node_keys
from launcher.devices.hosts import Device, HostsError, by_device, load_hosts, place_clients
from launcher.devices.tls import make_run_certificates
from launcher.fleet.profiles import cpu_warning, holds_cpu
from launcher.flower.compute_slots import cpu_slot_count
from launcher.processes.clock import now_iso
from launcher.processes.node_config import NodeConfigError, for_client, parse_node_config_option, write_extra
from launcher.processes.nodes import NODE_KEYS, write_node_config
from launcher.processes.table import create_time
from launcher.run.folder import RunFolder, RunFolderError
from launcher.run.journal import write_record
from launcher.run.options import MIN_SAMPLES_PER_CLIENT, CheckedOptions, LaunchOptions
from launcher.run.record import RunRecord, recorded_rounds
from launcher.run.run_plan import NodePlacement, RunPlan, Virtual
from launcher.run.run_status import RunStatus
from partitions import PartitionError, split
from simulator.client_data import write_partitions
from simulator.datasets import DataSetError, load_dataset
from simulator.femnist import open_femnist
from simulator.flower_app import write_app_dir
from simulator.npz_split import open_npz_split

SERVED = "served"  # getModel/inference: the served checkpoint's copy in the run folder


class PlanError(InputError):
    """Bad input found while planning; the message is the one line the user sees."""


def prepare_run(opts: LaunchOptions | CheckedOptions, made: list[RunFolder] | None = None) -> RunFolder:
    """A new run folder, ready, whose supervisor lock this process holds; on any error or Ctrl-C, none.
    ``opts``: validated already (CheckedOptions, the CLI's), or checked here as the CLI does, but for the
    options it alone knows the user set. ``made``: the caller's list the folder goes into as soon as it
    exists, so a caller interrupted even as this returns still finds it to discard (discard_all)."""
    checked = opts if isinstance(opts, CheckedOptions) else opts.validate()
    made = [] if made is None else made
    try:
        return _prepare_run(checked, made)
    except BaseException:  # a refused or interrupted preparation leaves no half-made folder
        discard_all(made)
        raise


def discard_all(made: list[RunFolder]) -> None:
    """discard_prepared each folder of ``made``, taking it off the list once it is gone."""
    while made:
        discard_prepared(made[-1])
        made.pop()


def discard_prepared(folder: RunFolder) -> None:
    """Remove a run folder prepared (or half prepared) by this process, which holds its lock: removed first,
    then the lock let go, so nobody (fl-stats --runs marking it interrupted) writes into it meanwhile."""
    shutil.rmtree(folder.path, ignore_errors=True)
    folder.release()
    folder.unpoint_latest()


def _new_folder(opts: LaunchOptions, made: list[RunFolder]) -> tuple[RunFolder, str]:
    """The run's folder and its first run.json, before anything slow: from here the run is found by its tag
    (fl-finish stops this process, the run's supervisor while it prepares), and is listed as prepared."""
    try:
        folder = RunFolder.create(opts.log_dir)
    except RunFolderError as err:
        raise PlanError(str(err)) from None
    made.append(folder)
    if not folder.claim():  # a folder this process just made: nobody else can hold it
        raise PlanError(f"cannot lock the new run folder {folder.path}")
    tag = opts.kill_tag or folder.run_id
    folder.begin(run_id=folder.run_id, kill_tag=tag, status=RunStatus.PREPARED, created=now_iso(), task=opts.task,
                 supervisor={"pid": os.getpid(), "created": create_time(os.getpid()), "host": "localhost"},
                 processes=[], activity="preparing the data")
    return folder, tag


def _prepare_run(checked: CheckedOptions, made: list[RunFolder]) -> RunFolder:
    opts, fleet = checked.options, checked.fleet
    folder, tag = _new_folder(opts, made)
    checkpoint = source_run = source_checkpoint = None
    if opts.task != "train":  # the served model is copied into the new run folder: it keeps its round in its name
        source, (_, found) = _model_source(opts)
        checkpoint, source_run, source_checkpoint = Path(SERVED, found.name), source.run_id, _as_given(opts, found)
    by_client = dataset = parts = user_app = None  # by_client: a data set that comes split by client
    channels, num_classes = RunSettings.channels, RunSettings.num_classes
    try:
        extra = parse_node_config_option(opts.node_config) if opts.node_config else {}
        if opts.app:  # the user's app brings its own data and model
            user_app = read_app(opts.app, opts.run_config)
        elif opts.dataset == "femnist":  # by writer: listed now, read when the folder exists
            by_client = open_femnist(opts.data_dir)
            by_client.check_clients(opts.client_num)
            channels, num_classes = by_client.channels, by_client.num_classes
            shape = (channels, 32, 32)
        elif opts.dataset == "npz":  # the user's own split: linked as it is
            by_client = open_npz_split(opts.data_dir)
            by_client.check_clients(opts.client_num)
            channels, num_classes, shape = by_client.channels, by_client.num_classes, by_client.shape
        else:
            dataset = load_dataset(
                opts.dataset, opts.data_dir, seed=opts.seed,
                num_samples=opts.samples_per_client * opts.client_num, num_classes=opts.num_classes,
            )
            parts = split(dataset.y, opts.client_num, opts.scheme(), seed=opts.seed, alpha=opts.alpha,
                          min_size=MIN_SAMPLES_PER_CLIENT)
            channels, num_classes = dataset.channels, dataset.num_classes
            shape = tuple(dataset.x.shape[1:])
        if opts.model or opts.dataset == "npz":  # a user's model, or images of the user's size
            _check_model(opts.model, shape, num_classes, keep_out=folder.lock_fd)
    except (DataSetError, PartitionError, AppError, NodeConfigError) as err:
        raise PlanError(str(err)) from None

    placement = _placement(opts)
    if opts.device == "cuda" and placement:
        _check_devices_cuda(placement, opts.ssh_config)
    warnings = _check_app_requirements(user_app, placement, opts.ssh_config) if user_app else []
    if fleet is not None and not opts.is_virtual():
        warnings += _fleet_cpu_warning(fleet, opts, placement)
    settings = opts.app_settings(channels, num_classes, checkpoint=str(checkpoint or ""))
    if fleet is not None:  # the app and the supervisor read it there (contract.fleet_record)
        write_fleet(folder.path, fleet)
    if user_app is not None:
        samples = [0] * opts.client_num
    elif by_client is not None:
        try:
            samples = by_client.write_clients(opts.client_num, folder.path / "data", seed=opts.seed)
        except DataSetError as err:  # a malformed writer, found while reading (prepare_run removes the folder)
            raise PlanError(str(err)) from None
    else:
        write_partitions(dataset, parts, folder.path / "data", seed=opts.seed)
        samples = [len(p) for p in parts]
    if checkpoint:
        (folder.path / SERVED).mkdir()
        shutil.copyfile(found, folder.path / checkpoint)
    # the built-in app's folder is in the run folder (relative); a --app folder is the user's, kept as given
    app_dir = user_app.path if user_app else write_app_dir(folder.path / "app", settings).relative_to(folder.path)
    virtual = opts.is_virtual()
    if user_app and virtual:  # the simulation runtime runs a copy whose ClientApp logs as in process mode
        from launcher.apps.virtual_clientapp import prepare_virtual_app  # noqa: PLC0415 (it imports flwr)

        try:
            app_dir = prepare_virtual_app(user_app, folder.path).relative_to(folder.path)
        except (AppError, OSError) as err:
            raise PlanError(str(err)) from None
    nodes = []
    for client in range(opts.client_num):
        device = placement[client] if placement else None
        if virtual:  # Flower's simulation runtime gives each virtual node its partition-id
            folder.client_dir(client).mkdir()
            if user_app and extra:  # the wrapping ClientApp adds them (launcher.apps.virtual_clientapp)
                write_extra(folder.client_dir(client), for_client(extra, client, opts.client_num))
            node_config = None
        elif device is None:
            node_config = str(write_node_config(folder.path, client, opts.client_num,
                                                extra=for_client(extra, client, opts.client_num))
                              .relative_to(folder.path))
        else:  # the device's agent writes it there, with the device's paths (and these values, staged)
            write_extra(folder.client_dir(client), for_client({**extra, **device.node_config}, client,
                                                              opts.client_num))
            node_config = None
        nodes.append(NodePlacement(client, device.host if device else "localhost", node_config, int(samples[client])))
    folder.server_dir.mkdir()
    tls = None
    if opts.tls or opts.server_address:  # nodes reach the SuperLink at 127.0.0.1 (here, and on devices through
        # their tunnel), or directly at --server-address, which needs TLS and keys for the nodes to authenticate
        direct = [opts.server_address, *addresses_of(opts.server_address)] if opts.server_address else []
        paths = make_run_certificates(folder.path / "tls", hosts=list(dict.fromkeys(["127.0.0.1", "localhost",
                                                                                      *direct])))
        tls = paths.relative_to(folder.path)
    if opts.server_address:  # a key pair per start of each client (its first, one per restart)
        make_node_keys(folder.path / NODE_KEYS, [node.client for node in nodes], opts.max_restarts + 1)
    plan = RunPlan(app_dir=str(app_dir), nodes=tuple(nodes), startup_timeout=opts.startup_deadline(),
                   grace=opts.grace, torch_threads=opts.torch_threads,
                   devices=tuple(by_device(placement)) if placement and not virtual else (),
                   tls=tls, virtual=Virtual(opts.worker_count(), opts.ray_address) if virtual else None,
                   channels=channels, classes=num_classes, checkpoint=settings.checkpoint,
                   model_path=settings.model_path)
    write_record(folder, RunRecord.made(opts, plan),
                 run_id=folder.run_id, kill_tag=tag, status=RunStatus.PREPARED, task=opts.task, source_run=source_run,
                 source_checkpoint=source_checkpoint, processes=[], activity=None,
                 **({"warnings": warnings} if warnings else {}),
                 **({"fleet": fleet.as_record()} if fleet is not None else {}))
    folder.point_latest()
    return folder


def _fleet_cpu_warning(fleet, opts: LaunchOptions, placement) -> list[str]:
    """Process mode: whether this machine has the cores for the CPU shares of the clients training at once
    (a warning line, printed and kept for run.json; a device's own cores are its own)."""
    local = [c for c in range(opts.client_num) if not placement or placement[c] is None]
    cores = os.cpu_count() or 1
    at_once = min(opts.sampled_per_round(), len(local), cpu_slot_count(opts.torch_threads, holds_cpu(fleet, local)))
    line = cpu_warning(fleet, local, at_once, cores)
    if line:
        print(line, file=sys.stderr, flush=True)
    return [line] if line else []


def _check_devices_cuda(placement: list[Device], ssh_config: str | None) -> None:
    """--device cuda on devices: each device's torch must see a GPU (one SSH call each, as --check's)."""
    from launcher.devices.preflight import check_devices  # noqa: PLC0415

    devices = list({d.host: d for d in placement}.values())
    for row in check_devices(devices, ssh_config, need_cuda=True):
        if row.get("gpu") and "--device cuda" in "; ".join(row["problems"]):
            raise PlanError(f"--device cuda: {row['host']}: torch there sees {row['gpu']}")


def _check_app_requirements(app, placement: list[Device] | None, ssh_config: str | None) -> list[str]:
    """The app's declared dependencies, here and on each device: a missing one refuses the run
    (PlanError), a version outside its specifier is a warning line (printed, and returned for run.json)."""
    from launcher.apps.requirements import (  # noqa: PLC0415
        RequirementsError,
        check_requirements,
        declared_requirements,
        installed_versions,
    )
    from launcher.devices.preflight import check_devices  # noqa: PLC0415
    from launcher.pyenv.python_facts import marker_environment  # noqa: PLC0415

    try:
        requirements = declared_requirements(app.path)
    except RequirementsError as err:
        raise PlanError(str(err)) from None
    if not requirements:
        return []
    here = check_requirements(requirements, installed_versions(), marker_environment())
    if here.missing:
        raise PlanError(here.missing_line(sys.executable))
    warnings = here.warning_lines(sys.executable)
    devices = list({d.host: d for d in placement or []}.values())
    for row in check_devices(devices, ssh_config, requirements) if devices else []:
        if row.get("app_missing"):
            raise PlanError(row["app_missing"])
        warnings += row.get("app_warnings", [])
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
    return warnings


def _check_model(spec: str, shape: tuple[int, ...], num_classes: int, keep_out: int | None = None) -> None:
    """simulator.model.check_model in a forked child: the user's module is imported, built and run there, so
    one that exits (``sys.exit``, even ``os._exit``) or crashes while it is, is one line and not this
    process's end; this process does not import it at all (nor torch, which the child imports).
    ``keep_out``: a descriptor the child closes first (the run folder's supervisor lock, which only this
    process may hold). The child dies with this process (PR_SET_PDEATHSIG), and is killed when this process
    is interrupted (Ctrl-C, fl-finish) while it waits for it."""
    name = _model_named(spec)
    sys.stdout.flush()  # what is buffered here is printed once, not again by the child
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:  # nothing of fl-launch's own code runs in the child past this, whatever is raised
            _detach_child(parent, keep_out, read_end)
            code = _model_check_child(spec, name, shape, num_classes, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reply:
            verdict = reply.read().decode("utf-8", "replace")
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # an interrupted check leaves no process behind
        raise
    finally:
        _, status = os.waitpid(pid, 0)
    if verdict.startswith("ok"):
        return
    if verdict.startswith("error:"):
        lines = verdict.removeprefix("error:").strip().splitlines()
        raise PlanError(lines[0] if lines else f"{name}: its check failed without saying why")
    code = os.waitstatus_to_exitcode(status)
    ended = f"was killed by signal {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    raise PlanError(f"{name}: the process importing, building and running it {ended}")


PR_SET_PDEATHSIG = 1


def _detach_child(parent: int, keep_out: int | None, read_end: int) -> None:
    """In the model check's child: holds no lock of the run's, and dies with its parent."""
    if keep_out is not None:
        os.close(keep_out)
    os.close(read_end)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _model_named(spec: str) -> str:
    """As simulator.model names a model in its messages."""
    return f"--model {spec}" if spec else "the built-in LeNet5 (--model)"


def _signal_name(number: int) -> str:
    """SIGABRT, SIGRTMIN+2, or the number where the signal has no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN < number <= signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return str(number)


def _model_check_child(spec: str, name: str, shape: tuple[int, ...], num_classes: int, write_end: int) -> int:
    """In the child: 'ok', or 'error: LINE' (a ModelError, or the module's SystemExit) on write_end."""
    verdict = "ok"
    try:
        if "torch" in sys.modules:  # imported before the fork: keep its thread pool out of this child
            sys.modules["torch"].set_num_threads(1)
        from simulator.model import ModelError, check_model  # noqa: PLC0415 (torch only for a user's model)
        try:
            check_model(spec, shape, num_classes, search_path=os.getcwd())
        except ModelError as err:
            verdict = f"error: {err}"
    except SystemExit as exit_:
        verdict = f"error: {name}: it called sys.exit({exit_.code!r}) while it was imported, built or run"
    except BaseException as err:  # noqa: BLE001 (anything else the module raised past check_model's own checks)
        verdict = f"error: {name}: {type(err).__name__} while it was imported, built or run: {err}"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(write_end, verdict.encode())
    except OSError:
        return 1
    return 0


def prepare_resume(log_dir: str, run: str, ssh_config: str | None = None) -> RunFolder:
    """Ready an ended training run to go on from its newest checkpoint, in its own folder.
    ``ssh_config``: the one named to this resume (a run on devices), never run.json's."""
    try:
        folder = RunFolder.resolve(log_dir, run)
        info = folder.read()
    except RunFolderError as err:
        raise PlanError(f"--resume: {err}") from None
    if info.get("task") != "train" or "options" not in info or "plan" not in info:
        raise PlanError(f"--resume: run {folder.run_id} is not a training run")
    _check_devices(folder, info, ssh_config)
    stop_it = f"fl-finish --run {folder.run_id} --log-dir {log_dir} stops it"
    try:
        claimed = folder.claim()  # held until the resumed run ends: a second --resume is refused here
    except OSError as err:
        raise PlanError(f"--resume: cannot lock run {folder.run_id} ({err.strerror}): "
                        f"is its folder writable?") from None
    if not claimed:
        raise PlanError(f"--resume: run {folder.run_id} is still running ({stop_it})")
    try:
        _check_resumable(folder, stop_it)
        return _ready_resume(folder, info)
    except BaseException:
        folder.release()
        raise


def _check_devices(folder: RunFolder, info: dict, ssh_config: str | None) -> None:
    """A run folder is data: its devices pass the hosts file's checks before ssh sees them."""
    from launcher.devices.remote import devices_of  # noqa: PLC0415 (keeps plan's imports light)

    try:
        devices = devices_of(info, ssh_config)
    except (KeyError, TypeError):
        raise PlanError(f"--resume: run {folder.run_id}: its run.json's devices are not fl-launch's") from None
    except HostsError as err:
        raise PlanError(f"--resume: run {folder.run_id}: {err}") from None
    if ssh_config is not None and not devices:
        raise PlanError(f"--ssh-config is for a run on devices; run {folder.run_id} has none")


def _check_resumable(folder: RunFolder, stop_it: str) -> None:
    """Nothing of the run lives on (a killed supervisor's orphans), and no live run carries its tag."""
    from launcher.run.liveness import run_processes  # noqa: PLC0415 (keeps plan's imports light)

    info = folder.read()
    if left := run_processes(info):
        raise PlanError(f"--resume: run {folder.run_id} still has {len(left)} process(es) without a supervisor "
                        f"(pid {left[0].pid}; {stop_it})")
    check_tag_free(info["kill_tag"])


def _ready_resume(folder: RunFolder, info: dict) -> RunFolder:
    not_ours = PlanError(f"--resume: run {folder.run_id}: its run.json's record is not fl-launch's")
    if (rounds := recorded_rounds(info)) is None:
        raise not_ours
    found = resume_checkpoint(folder.path, rounds)
    if found is None:
        raise PlanError(f"--resume: run {folder.run_id} has no checkpoint")
    done, path = found
    if done >= rounds and info.get("status") == RunStatus.FINISHED:
        raise PlanError(f"--resume: run {folder.run_id} already completed its {rounds} rounds")
    if done >= rounds and path == checkpoint_path(folder.path, 0):
        done = 0  # every round failed at its deadline: nothing learnt to evaluate; it trains again, from round 1
    # done == rounds: stopped after its last round, it goes on with the final evaluation only
    _check_checkpoint(path)
    try:
        record = RunRecord.from_json(info)
    except (KeyError, TypeError, ValueError):
        raise not_ours from None
    record = RunRecord.made(record.options, replace(record.plan, checkpoint=str(path.relative_to(folder.path))),
                            start_round=done + 1)
    write_app_dir(folder.path / "app", record.settings)
    local = [n.client for n in record.plan.nodes if n.local]  # devices mark their own
    logs = [(folder.server_dir / "server.log", "FLServer"),
            *((client_log_path(folder.client_dir(c)), "FLClient") for c in local)]
    for path, source in logs:
        log = LogWriter(path, source)
        log.write("resume", level="WARNING", round=done + 1)
        log.close()

    def attempt(data: dict) -> None:
        data.setdefault("attempts", []).append({
            "status": data.get("status"), "reason": data.get("reason"), "started": data.get("started"),
            "ended": data.get("ended"), "rounds_done": data.get("rounds_done"), "processes": data.get("processes"),
        })
        for key in ("reason", "ended", "rounds_done", "final_accuracy", "final_test_samples", "running_since"):
            data.pop(key, None)

    write_record(folder, record, before=attempt, status=RunStatus.PREPARED, processes=[],
                 resumed_from_round=done + 1)
    return folder


def check_tag_free(tag: str) -> None:
    """A kill tag that processes of a live run carry (its cgroup's members, or the tag in their
    environment) is refused: fl-finish of one run would stop the other."""
    from launcher.processes.cgroup import RunGroup  # noqa: PLC0415
    from launcher.processes.tagged import tagged_processes  # noqa: PLC0415

    group = RunGroup.find(tag)
    holders = sorted(group.pids()) if group else []
    holders = holders or sorted(p.pid for p in tagged_processes(tag))
    if holders:
        raise PlanError(f"kill tag {tag} is carried by a live run (pid {holders[0]}): choose another --kill-tag, "
                        f"or stop that run with fl-finish --kill-tag {tag}")


def _placement(opts: LaunchOptions) -> list[Device] | None:
    if opts.hosts is None:
        return None
    try:
        return place_clients(load_hosts(opts.hosts), opts.client_num)
    except HostsError as err:
        raise PlanError(str(err)) from None


def _check_checkpoint(path: Path) -> None:
    """A checkpoint that torch cannot read is bad input, refused before anything starts."""
    import torch  # only getModel and inference pay for it

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise PlanError(f"checkpoint {path} cannot be read: {type(err).__name__}") from None
    if not isinstance(state, dict) or not state:
        raise PlanError(f"checkpoint {path} holds no state_dict")


def _model_source(opts: LaunchOptions):
    """The run whose newest checkpoint getModel/inference serve: --run, else the newest with one."""
    try:
        if opts.run is not None:
            candidates = [RunFolder.resolve(opts.log_dir, opts.run)]
        else:
            candidates = RunFolder.listed(opts.log_dir)[::-1]  # the newest first
    except RunFolderError as err:
        raise PlanError(f"--task {opts.task} needs an earlier run's model: {err}") from None
    for source in candidates:
        found = latest_checkpoint(source.path.resolve())
        if found is not None:
            _check_checkpoint(found[1])
            return source, found
    if opts.run is not None:
        raise PlanError(f"run {candidates[0].run_id} has no checkpoint to serve")
    raise PlanError(f"--task {opts.task} needs an earlier training run; none in {opts.log_dir} has a checkpoint")


def _as_given(opts: LaunchOptions, checkpoint: Path) -> str:
    """Where a served checkpoint came from, for run.json: relative to the log dir, else under --run as given."""
    try:
        return str(checkpoint.relative_to(Path(opts.log_dir).resolve()))
    except ValueError:
        return str(Path(opts.run or "") / checkpoint.parent.name / checkpoint.name)
