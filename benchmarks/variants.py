"""The four ways the benchmark runs a workload, each returning the same Measured figures.

    >>> m = fl_launch(W["W1"], Path("bench/logs"))
    >>> m.per_round_s, m.to_round1_s, m.peak_pss_mib

- floor: each client's round work (evaluate the received model, train its local
  epochs), no federation, on a pool of single-thread worker processes, one per core.
- fl_launch: the `fl-launch` command (its default mode: one process per client up to 100 clients);
  fl_launch_virtual: the same with `--mode virtual` (virtual clients on Ray).
- plain_flower: what a user starts by hand: flower-superlink, N flower-supernode in
  their default (subprocess) isolation, `flwr run` of the same app.
- simulation: Flower's simulation runtime (`flower-superlink --simulation`, Ray) on
  the same app.
All but the floor run the same ServerApp and ClientApp, so their round times and the
final accuracy come from the same server.log lines, and their CPU per task from /proc at
those lines (benchmarks.round_cpu).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from benchmarks.memory import PeakMemory
from benchmarks.round_cpu import RoundCpu, per_task, run_processes
from benchmarks.workloads import Workload
from launcher.flower.release import flwr_bin
from launcher.processes.nodes import flower_env
from launcher.processes.ports import free_ports, wait_for_port
from launcher.processes.table import ProcessTable, terminate_then_kill
from launcher.processes.tagged import tagged_processes
from launcher.run.flower_commands import write_flwr_config
from launcher.run.plan import prepare_run
from launcher.run.record import RunRecord
from launcher.stats.follow import LogFollower
from simulator.client_data import partition_files

CORES = 2
MEMORY_LIMIT_MIB = 16 * 1024  # a variant past this is stopped (24 GiB machine) and reported with what it reached


@dataclass
class Measured:
    variant: str
    status: str = "ok"
    wall_s: float = 0.0
    per_round_s: float | None = None
    later_round_s: float | None = None  # rounds 2 on (round 1 pays the start)
    to_round1_s: float | None = None
    peak_pss_mib: float = 0.0
    processes: int = 0
    final_acc: float | None = None
    round_s: list[float] = field(default_factory=list)
    latency: dict | None = None  # latency_breakdown()
    cpu_ms_per_task: float | None = None  # rounds 2 on, every process of the variant (benchmarks.round_cpu)
    cpu_by_role: dict = field(default_factory=dict)
    run_dir: str = ""
    note: str = ""
    task_cpu_s: list[float] = field(default_factory=list)  # floor: each task's CPU-seconds, in task order

    def as_dict(self) -> dict:
        return asdict(self)


def _round_times(events, start_kind: str, end_kind: str) -> tuple[dict, dict]:
    """{round: time} of each start line and each end line."""
    starts = {e.values["round"]: e.time for e in events if e.kind == start_kind}
    ends = {e.values["round"]: e.time for e in events if e.kind == end_kind}
    return starts, ends


def latency_breakdown(server_events, client_events: list) -> dict | None:
    """Mean seconds per round: server push -> client start (delivery), client start -> end (task),
    last client end -> server round end (return), from the ServerApp's and the clients' own lines."""
    server_start, server_end = _round_times(server_events, "server_round_start", "server_round_end")
    clients = [_round_times(events, "round_start", "round_end") for events in client_events]
    delivery, task, back = [], [], []
    for r, pushed in server_start.items():
        began = [s[r] for s, _ in clients if r in s]
        ended = [e[r] for _, e in clients if r in e]
        if not began or not ended or r not in server_end:
            continue
        delivery += [(t - pushed).total_seconds() for t in began]
        task += [(e[r] - s[r]).total_seconds() for s, e in clients if r in s and r in e]
        back.append((server_end[r] - max(ended)).total_seconds())
    if not delivery:
        return None
    mean = lambda xs: round(sum(xs) / len(xs), 3)  # noqa: E731
    return {"delivery_s": mean(delivery), "delivery_max_s": round(max(delivery), 3), "task_s": mean(task),
            "return_s": mean(back)}


def read_logs(run_dir: Path, started: dt.datetime, measured: Measured) -> None:
    """Round times, time to round 1, final accuracy and where a round goes, from the run's own lines."""
    server = LogFollower(run_dir / "server" / "server.log").events()
    starts, ends = _round_times(server, "server_round_start", "server_round_end")
    measured.round_s = [e.values["seconds"] for e in server if e.kind == "server_round_end"]
    measured.final_acc = next((e.values["acc"] for e in server if e.kind == "server_final"), None)
    if starts:
        measured.to_round1_s = round((min(starts.values()) - started).total_seconds(), 2)
    if starts and ends:
        measured.per_round_s = round((max(ends.values()) - min(starts.values())).total_seconds() / len(ends), 2)
    later = [r for r in ends if r >= 2]
    if later and min(later) in starts:
        measured.later_round_s = round((max(ends.values()) - starts[min(later)]).total_seconds() / len(later), 2)
    clients = [LogFollower(p).events() for p in sorted(run_dir.glob("client_*/client.log"))]
    measured.latency = latency_breakdown(server, clients)


# ---- (a) the compute floor ------------------------------------------------------------------

_PARTS: dict = {}


def _warm_worker() -> None:
    import torch  # noqa: PLC0415

    from simulator.training import warm_up  # noqa: PLC0415

    torch.set_num_threads(1)
    warm_up()


def _client_round(job) -> float:
    """One client's round work; returns its CPU-seconds (the worker is single-threaded: its wall time on a
    loaded machine is not the work's)."""
    from simulator.client_data import load_partition  # noqa: PLC0415
    from simulator.model import LeNet5  # noqa: PLC0415
    from simulator.training import evaluate, train  # noqa: PLC0415

    path, state, epochs, batch_size, lr, seed = job
    start = time.process_time()
    if path not in _PARTS:
        _PARTS[path] = load_partition(path)
    part = _PARTS[path]
    model = LeNet5(part.channels, part.num_classes)
    model.load_state_dict(state)
    evaluate(model, part.x_test, part.y_test)
    train(model, part.x_train, part.y_train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return time.process_time() - start


def _cpu_s(workers: list[psutil.Process]) -> dict[str, float]:
    """The pool's workers' CPU-seconds so far, as the floor's one role."""
    return {"compute": sum(sum(w.cpu_times()[:2]) for w in workers)}


def _set_cpu(measured: Measured, figures: dict) -> None:
    measured.cpu_ms_per_task = figures.get("cpu_ms_per_task")
    measured.cpu_by_role = figures.get("cpu_by_role", {})


def floor(workload: Workload, log_dir: Path, tag: str) -> Measured:
    """The clients' round work on CORES single-thread processes, over the partitions fl-launch makes."""
    from simulator.model import initial_model  # noqa: PLC0415

    opts = workload.options(str(log_dir), tag)
    folder = prepare_run(opts)
    measured = Measured("floor", run_dir=str(folder.path))
    files = partition_files(folder.path / "data")
    settings = RunRecord.from_json(folder.read()).settings
    state = initial_model(settings.channels, settings.num_classes, settings.seed).state_dict()
    pool = multiprocessing.get_context("fork").Pool(CORES, initializer=_warm_worker)
    workers = [psutil.Process(p.pid) for p in pool._pool]  # noqa: SLF001 (the pool's own processes)
    started = time.monotonic()
    cpu_marks = []  # the workers' CPU-seconds at the start of round 2, 3, ... and at the end
    with PeakMemory(lambda: [psutil.Process(), *workers]) as peak:
        for server_round in range(1, workload.rounds + 1):
            if server_round >= 2:
                cpu_marks.append(_cpu_s(workers))
            t0 = time.monotonic()
            jobs = [(str(f), state, opts.local_epochs, opts.batch_size, opts.lr, server_round * 10_007 + i)
                    for i, f in enumerate(files)]
            measured.task_cpu_s += pool.map(_client_round, jobs, chunksize=1)
            measured.round_s.append(round(time.monotonic() - t0, 3))
        cpu_marks.append(_cpu_s(workers))
    pool.close()
    pool.join()
    measured.wall_s = round(time.monotonic() - started, 1)
    measured.per_round_s = round(sum(measured.round_s) / len(measured.round_s), 2)
    if len(measured.round_s) >= 2:
        measured.later_round_s = round(sum(measured.round_s[1:]) / len(measured.round_s[1:]), 2)
    _set_cpu(measured, per_task(cpu_marks, len(files)))
    measured.peak_pss_mib, measured.processes = round(peak.mib, 1), peak.processes
    return measured


# ---- (b) fl-launch --------------------------------------------------------------------------

def fl_launch(workload: Workload, log_dir: Path, tag: str, timeout: float = 3600) -> Measured:
    return launch(workload.launch_args(str(log_dir), tag), log_dir, tag, timeout, tasks_per_round=workload.clients)


def fl_launch_virtual(workload: Workload, log_dir: Path, tag: str, timeout: float = 3600) -> Measured:
    return launch([*workload.launch_args(str(log_dir), tag), "--mode", "virtual"], log_dir, tag, timeout,
                  variant="fl-launch-virtual", tasks_per_round=workload.clients)


def launch(args: list[str], log_dir: Path, tag: str, timeout: float = 3600, variant: str = "fl-launch",
           tasks_per_round: int = 0) -> Measured:
    """``fl-launch ARGS`` (which must name ``--log-dir log_dir``), its peak memory and its run's own figures;
    with tasks_per_round, its CPU per task (rounds 2 on)."""
    measured = Measured(variant)
    argv = [flwr_bin("fl-launch"), *args]
    started, t0 = dt.datetime.now(), time.monotonic()
    with PeakMemory(lambda: run_processes(tag)) as peak, RoundCpu(tag, log_dir) as cpu:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(os.environ, FL_LAUNCH_TAG=tag), text=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, _ = proc.communicate()
            measured.status = "timeout"
    measured.wall_s = round(time.monotonic() - t0, 1)
    measured.peak_pss_mib, measured.processes = round(peak.mib, 1), peak.processes
    run_dir = (log_dir / "latest").resolve()
    measured.run_dir = str(run_dir)
    if proc.returncode != 0 and measured.status == "ok":
        measured.status = f"failed (exit {proc.returncode})"
        measured.note = out.strip().splitlines()[-1] if out.strip() else ""
    read_logs(run_dir, started, measured)
    _set_cpu(measured, cpu.per_task(tasks_per_round))
    return measured


# ---- (c) plain Flower, (d) Flower's simulation runtime ------------------------------------

def _by_hand(workload: Workload, log_dir: Path, tag: str, simulation: bool, timeout: float) -> Measured:
    measured = Measured("flower-simulation" if simulation else "plain-flower")
    started, t0 = dt.datetime.now(), time.monotonic()
    folder = prepare_run(workload.options(str(log_dir), tag))
    run_dir = folder.path
    measured.run_dir = str(run_dir)
    table = ProcessTable(tag, folder.run_id)
    env = flower_env(run_dir, threads=1)
    link_port, *node_ports = free_ports(1 + (0 if simulation else workload.clients))
    write_flwr_config(env, link_port, None)
    with (PeakMemory(lambda: run_processes(tag), limit_mib=MEMORY_LIMIT_MIB) as peak,
          RoundCpu(tag, log_dir, run_dir) as cpu):
        try:
            link = table.spawn("superlink", [flwr_bin("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                             "--port", str(link_port), "--disable-runtime-dependency-installation",
                                             *(["--simulation"] if simulation else [])],
                               log=run_dir / "server" / "superlink.log", env=env, cwd=run_dir)
            if not wait_for_port("127.0.0.1", link_port, 60, alive=lambda: (table.reap(), link.alive)[1]):
                raise RuntimeError("the SuperLink did not start")
            run_cmd = [flwr_bin("flwr"), "run", str(run_dir / "app"), "local", "--stream"]
            if simulation:
                run_cmd += ["--federation-config", f"num-supernodes={workload.clients} client-resources-num-cpus=1"]
            for client, port in zip(range(workload.clients), node_ports):
                client_dir = run_dir / f"client_{client}"
                table.spawn("supernode", [flwr_bin("flower-supernode"), "--insecure",
                                          "--superlink", f"127.0.0.1:{link_port}", "--host", "127.0.0.1",
                                          "--port", str(port), "--node-config", str(client_dir / "node_config.toml")],
                            log=client_dir / "supernode.log", cwd=client_dir,
                            env=dict(env, FLWR_HOME=str(run_dir / "flwr_home" / "nodes" / f"client_{client}")))
            flwr_run = table.spawn("flwr-run", run_cmd, log=run_dir / "server" / "serverapp.log", env=env,
                                   cwd=run_dir)
            while flwr_run.alive:
                table.reap()
                if peak.hit_limit:
                    measured.status = f"stopped at the {MEMORY_LIMIT_MIB / 1024:.0f} GiB memory limit"
                    break
                if time.monotonic() - t0 > timeout:
                    measured.status = "timeout"
                    break
                time.sleep(0.5)
            else:
                if flwr_run.exit_code not in (0, None):
                    measured.status = f"failed (flwr run exit {flwr_run.exit_code})"
        except Exception as err:  # noqa: BLE001 (reported in the table, not raised)
            measured.status, measured.note = "failed", str(err)
        finally:
            table.stop_all(grace=5)
            terminate_then_kill(tagged_processes(tag), grace=5)  # what the runtime started outside the tree
    measured.wall_s = round(time.monotonic() - t0, 1)
    measured.peak_pss_mib, measured.processes = round(peak.mib, 1), peak.processes
    read_logs(run_dir, started, measured)
    _set_cpu(measured, cpu.per_task(workload.clients))
    return measured


def plain_flower(workload: Workload, log_dir: Path, tag: str, timeout: float = 3600) -> Measured:
    return _by_hand(workload, log_dir, tag, simulation=False, timeout=timeout)


def simulation(workload: Workload, log_dir: Path, tag: str, timeout: float = 3600) -> Measured:
    return _by_hand(workload, log_dir, tag, simulation=True, timeout=timeout)

