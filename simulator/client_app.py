"""The built-in ClientApp: each train message evaluates the received model, then trains.

    flower-supernode ... --node-config client_3/node_config.toml   # partition-id, data-file
    # fl-launch's warm host calls preload(node_config) once, then serves each task
    # in a child forked from it, so torch and the partition stay loaded.

Lines go to ``<client-dir>/client.log`` through contract.loglines. In a run with a fleet
(``<run-dir>/fleet.json``) the round's end line names the client's profile and its emulated figures,
and the reply carries its emulated duration (simulator.fleet_rounds).
"""

from __future__ import annotations

import functools
import resource
import time
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from contract.fleet_record import FLEET_FILE, UNCONSTRAINED, Fleet, Profile, read_fleet_json
from contract.loglines import LogWriter, client_log_path, write_ray_node
from contract.run_settings import RunSettings, node_paths
from simulator.client_data import Partition, load_partition
from simulator.device import TaskDevice, peak_gpu_mib, release, reset_peak, task_device
from simulator.exchange_clock import ExchangeTimes, exchange_times, node_work_seconds
from simulator.fleet_rounds import EMULATED_METRIC
from simulator.model import model_for
from simulator.training import evaluate, predict, train, warm_up
from simulator.wire import KEY, pack, unpack

app = ClientApp()

# The client this process serves now: its partition and its open log. A process serves one client
# (fl-launch's warm host) or, under Flower's simulation runtime, many in turn: one of each is kept.
_CURRENT: dict[str, tuple[Path, object]] = {}
_WARMED: set[tuple[int, int]] = set()  # (channels, classes) this process (or the one it was forked from) warmed up


def _current(kind: str, key: Path, make, drop=lambda value: None):
    held = _CURRENT.get(kind)
    if held is None or held[0] != key:
        if held is not None:
            drop(held[1])
        _CURRENT[kind] = (key, make(key))
    return _CURRENT[kind][1]


def preload(node_config: dict, torch_threads: int = 1) -> None:
    """Load this node's partition before any task arrives (called by the warm host)."""
    torch.set_num_threads(max(1, torch_threads))
    _, _, data_file = node_paths(node_config, run_dir=".")
    _warm(_partition(data_file))  # every task forked from this process starts warm


def _partition(path: Path) -> Partition:
    return _current("partition", path, load_partition)


def _test_partition(path: Path) -> Partition:
    """For a task that only evaluates: the partition held when it is this client's, else its test split alone
    (the final evaluation visits each of a virtual run's clients once: reading the train split is waste)."""
    held = _CURRENT.get("partition")
    if held is not None and held[0] == path:
        return held[1]
    return _current("partition", (path, "test"), lambda key: load_partition(key[0], train=False))


def _warm(part: Partition) -> None:
    """Pay the runtime's first-step costs (torch's lazy imports and kernels: ~2 s, against ~0.2 s for a step
    after) once per process, before any timed task: they are the emulator's, not a device's, and divided by a
    profile's CPU share they would cut a client at a deadline (a Ray worker's first task in virtual mode)."""
    key = (part.channels, max(part.num_classes, 2))
    if key not in _WARMED:
        warm_up(*key)
        _WARMED.add(key)


def _ready(context: Context) -> None:
    """What a device has before a round starts: its partition loaded and its runtime warm (untimed)."""
    settings = RunSettings.from_config(context.run_config)
    torch.set_num_threads(max(1, settings.torch_threads))
    _warm(_partition(node_paths(context.node_config, settings.run_dir)[2]))


def _log(client_dir: Path) -> LogWriter:
    return _current("log", client_log_path(client_dir), _open_log, LogWriter.close)


def _open_log(path: Path) -> LogWriter:
    """A client's log, opened by the process that serves it now; a Ray worker (virtual mode) first says on
    which Ray node it runs, so the tasks below the line ran there (on a cluster: which machine)."""
    log = LogWriter(path, "FLClient")
    write_ray_node(log)
    return log


def _received_model(settings: RunSettings, arrays: ArrayRecord):
    """The model ``arrays`` holds, built and loaded."""
    model = model_for(settings)
    model.load_state_dict(unpack(arrays, model.state_dict()))
    return model


def _shared_model(settings: RunSettings, arrays: ArrayRecord):
    """The received model for a task that only reads it (evaluate, getModel, inference): the one this process
    built last when the same model came again. The final evaluation sends every client the same model, so a
    worker serving many virtual clients builds and loads it once, not once per client."""
    key = (settings.model, settings.model_path, settings.channels, settings.num_classes, arrays[KEY].data)
    return _current("model", key, lambda _: _received_model(settings, arrays))


def _device(settings: RunSettings) -> TaskDevice:
    """Where this task computes (--device), decided here, in the process that runs it: never in one that forks
    after (simulator.device). The model comes and goes as CPU tensors."""
    dev = task_device(settings.device, settings.gpus_per_client)
    reset_peak(dev)
    return dev


def _setup(msg: Message, context: Context, read_only: bool = False):
    settings = RunSettings.from_config(context.run_config)
    torch.set_num_threads(max(1, settings.torch_threads))
    partition, client_dir, data_file = node_paths(context.node_config, settings.run_dir)
    dev = _device(settings)
    # on a GPU for this task only: its memory is the slot's (on_gpu); an evaluation reads the test split alone
    part = (_test_partition if read_only else _partition)(data_file).to(dev.torch)
    model = (_shared_model if read_only else _received_model)(settings, msg.content["arrays"]).to(dev.torch)
    return settings, partition, client_dir, part, model, _log(client_dir), dev


def _nbytes(arrays: ArrayRecord) -> int:
    return sum(_array_bytes(arrays))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fleet(run_dir: str) -> Fleet | None:
    return _current("fleet", Path(run_dir) / FLEET_FILE, lambda path: read_fleet_json(path.parent))


@functools.lru_cache(maxsize=256)
def _transfer(down: float | None, up: float | None, latency: float,
              recv: tuple[int, ...], sent: tuple[int, ...]) -> ExchangeTimes:
    link = Profile(name="link", down=down, up=up, latency=latency)
    return exchange_times(link, recv, sent)


def _array_bytes(arrays: ArrayRecord) -> tuple[int, ...]:
    return tuple(len(a.data) for a in arrays.values())


def _fleet_figures(fleet: Fleet, partition: int, config, seconds: float, cpu_seconds: float, began: float,
                   recv: tuple[int, ...], sent: tuple[int, ...], node_state: RecordDict | None = None) -> dict:
    """This task on its profile's device: compute (measured; emulated: its CPU time over the CPU share, as the
    task's wall time here would count the time it waited for a core on a loaded machine), transfer over
    the profile's link as Flower exchanges the task and its reply (simulator.exchange_clock; ``recv``/``sent``:
    each array's bytes; ``download``: its part before the task), waiting since the round started (0 emulated: each
    device starts when the round does). On the emulated clock a device's node keeps its pull phase in
    ``node_state`` (its Context's state): the round's message waits for that node's next idle pull, counted from
    when it last went back to pulling (its previous reply pushed), not half a cycle (the mean, its first task)."""
    profile = fleet.profile_of(partition) if 0 <= partition < fleet.num_clients else UNCONSTRAINED
    now = float(config.get("fleet-time", 0.0))  # the run's clock at the round's start
    profile = profile.link_at(now)  # a schedule: the link of the round's start
    emulated = config.get("fleet-clock", "real") == "emulated"
    compute = profile.compute_seconds(cpu_seconds) if emulated else seconds
    transfer = _transfer(profile.down, profile.up, profile.latency, recv, sent)
    node = node_work_seconds(profile) if transfer.total_s else 0.0  # a device's node: its exchange's own work
    if emulated and node_state is not None and transfer.total_s:
        transfer = transfer.at_phase(_pulling_since(node_state, now))
        _pulls_again(node_state, now + transfer.before_task_s + node + compute + transfer.pushed_s)
    waiting = 0.0 if emulated else max(0.0, began - float(config.get("round-start", began)))
    return {"profile": profile.name, "compute_s": compute, "transfer_s": transfer.total_s + node,
            "download_s": transfer.before_task_s + node / 2, "waiting_s": waiting,
            "emulated_s": compute + transfer.total_s + node}


PULL_PHASE = "fleet-pull-phase"  # a node's Context state: when (the run's emulated clock) it went back to pulling


def _pulling_since(node_state: RecordDict, now: float) -> float | None:
    """How long before ``now`` the node went back to pulling (below 0: it is still pushing a late reply); None
    when it has had no task yet."""
    record = node_state.get(PULL_PHASE)
    return None if record is None else now - float(record["at"])


def _pulls_again(node_state: RecordDict, at: float) -> None:
    node_state[PULL_PHASE] = ConfigRecord({"at": at})


def on_gpu(handler):
    """A task whose GPU memory is given back when it ends (its tensors gone with its frame), so a client waiting
    for its GPU's compute slot finds it free (launcher.processes.gpus)."""
    @functools.wraps(handler)
    def task(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        finally:
            release(RunSettings.from_config(context.run_config).device)
    return task


def _task_cpu_clock():
    """The task's CPU clock: its own thread's when torch computes on it alone (a Ray worker's or a SuperNode's
    other threads, their polls and heartbeats, are not the device's compute), else the process's (all of
    torch's threads: one core's work; with CUDA, autograd's backward runs on a thread of its own)."""
    alone = torch.get_num_threads() == 1 and not torch.cuda.is_available()
    return time.thread_time if alone else time.process_time


@app.train()
@on_gpu
def train_round(msg: Message, context: Context) -> Message:
    began = time.time()
    _ready(context)  # a worker's first task, or a client new to it: not the device's compute
    cpu_clock = _task_cpu_clock()
    start, cpu_start = time.perf_counter(), cpu_clock()
    settings, partition, _, part, model, log, dev = _setup(msg, context)
    server_round = int(msg.content["config"]["server-round"])
    log.write("round_start", round=server_round, rounds=settings.rounds)
    correct, total, _ = evaluate(model, part.x_test, part.y_test)
    log.write("evaluate", acc=correct / total)
    losses = train(
        model, part.x_train, part.y_train,
        epochs=settings.local_epochs, batch_size=settings.batch_size, lr=settings.lr,
        seed=settings.seed * 1_000_003 + server_round * 10_007 + partition,
        on_epoch=lambda epoch, loss: log.write("epoch", epoch=epoch, loss=loss),
        proximal_mu=float(msg.content["config"].get("proximal-mu", 0.0)),  # FedProx puts it there
    )
    arrays = pack(model.state_dict())
    metrics = MetricRecord({
        "num-examples": part.num_train,
        "train-loss": float(sum(losses) / len(losses)) if losses else float("nan"),
        "eval-correct": correct,
        "eval-total": total,
    })
    seconds = time.perf_counter() - start
    line = {"round": server_round, "seconds": seconds, "peak_mib": _peak_mib(),
            "recv_bytes": _nbytes(msg.content["arrays"]), "sent_bytes": _nbytes(arrays),
            "num_train": part.num_train, "num_test": part.num_test}
    fleet = _fleet(settings.run_dir)
    if fleet is None and dev.gpu:
        log.write("round_end_gpu", **line, peak_gpu_mib=peak_gpu_mib(dev))
    elif fleet is None:
        log.write("round_end", **line)
    else:  # an emulated device: its figures in its log, its emulated duration to the server (fleet_rounds)
        figures = _fleet_figures(fleet, partition, msg.content["config"], seconds, cpu_clock() - cpu_start,
                                 began,
                                 _array_bytes(msg.content["arrays"]), _array_bytes(arrays), context.state)
        log.write("round_end_fleet", **line, **figures)
        metrics[EMULATED_METRIC] = figures["emulated_s"]
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
@on_gpu
def final_evaluate(msg: Message, context: Context) -> Message:
    _, _, _, part, model, log, _ = _setup(msg, context, read_only=True)
    correct, total, loss = evaluate(model, part.x_test, part.y_test)
    log.write("final_evaluate", acc=correct / total, num_test=total)
    metrics = MetricRecord({"num-examples": total, "eval-correct": correct, "eval-total": total, "eval-loss": loss})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


@app.query("partition")
def tell_partition(msg: Message, context: Context) -> Message:
    """The server's sampler asks once which partition this node holds (simulator.sampling)."""
    partition = int(context.node_config["partition-id"])
    return Message(RecordDict({"metrics": MetricRecord({"partition-id": partition})}), reply_to=msg)


@app.query()
@on_gpu
def serve_model(msg: Message, context: Context) -> Message:
    """getModel: keep the received global model; inference: label the test split with it."""
    settings, _, client_dir, part, model, log, _ = _setup(msg, context, read_only=True)
    config = msg.content["config"]
    metrics = {"num-examples": part.num_test}
    if settings.task == "getModel":
        log.write("get_model")
        path = client_dir / "model.pt"
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
        log.write("model_saved", round=int(config["model-round"]), path=str(path.relative_to(client_dir.parent)))
    else:
        labels = predict(model, part.x_test)
        log.write("inference", labels=labels.tolist())
        correct = int((labels == part.y_test).sum())  # both on the task's device
        log.write("inference_acc", acc=correct / part.num_test, num_test=part.num_test)
        metrics.update({"eval-correct": correct, "eval-total": part.num_test})
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
