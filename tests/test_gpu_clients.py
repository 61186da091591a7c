"""GPU clients (issue 30) on a machine without a GPU: --device, --gpus-per-client, the memory bound, the peak.

CI has no GPU. The real run below uses the test-only seam of simulator.device (FL_LAUNCH_FAKE_CUDA): in every
process that imports it, torch.cuda answers as a host with FL_LAUNCH_FAKE_GPUS GPUs would (tensors stay on
the CPU) and each call into torch.cuda is appended to a file with the caller's pid, parent and
CUDA_VISIBLE_DEVICES. The oracle is that file read against the pids run.json recorded: no call from the fork
server, a SuperNode or a client's task host (processes that fork), every task call from a child of a task host.
Tests that need a real GPU skip with the reason where torch sees none.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch

from contract.run_settings import RunSettings
from launcher.processes.gpus import HostGpus, gpu_of, gpu_slot_count, host_gpus, virtual_gpu_config
from simulator import device as device_module
from tests import devices as lab_devices
from tests.helpers import run, run_json, runs

ROOT = Path(__file__).resolve().parents[1]

TASK_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) task \S+: waited ([\d.]+) s for its message, ([\d.]+) s for a "
                       r"compute slot, ran ([\d.]+) s", re.MULTILINE)
ROUND_GPU = re.compile(r"\[round\] iteration:1 end .* peak_gpu:([\d.]+)MiB$", re.MULTILINE)
FORKING_ROLES = {"forkserver", "supernode", "clientapp", "superlink"}
PROBE_CALLS = {"is_available", "device_count", "get_device_properties"}


# --- a real run on two fake GPUs --------------------------------------------------------------------------------

def _task_spans(worker_log: str) -> list[tuple[datetime, datetime]]:
    """When each task computed (held its compute slot), from the task host's own lines in worker.log."""
    spans = []
    for stamp, message, slot, ran in TASK_LINE.findall(worker_log):
        begun = datetime.strptime(stamp, "%H:%M:%S.%f") + timedelta(seconds=float(message) + float(slot))
        spans.append((begun, begun + timedelta(seconds=float(ran))))
    return spans


def test_clients_share_fake_gpus_and_only_task_workers_touch_cuda(tmp_path, monkeypatch):
    """3 clients, 2 GPUs, 0.6 of a GPU each: clients 0 and 2 share GPU 0 (one compute slot: never at once),
    client 1 has GPU 1; each task bounds its memory to 0.6 before it computes; CUDA is never touched in a
    process that forks (the fork server, a task host): only in the clients' own processes, which run their tasks;
    each round line carries the GPU peak."""
    calls = tmp_path / "cuda_calls.jsonl"
    monkeypatch.setenv(device_module.FAKE_ENV, str(calls))
    monkeypatch.setenv(device_module.FAKE_GPUS_ENV, "2")
    logs = tmp_path / "logs"
    done = run("fl-launch", "--client-num", "3", "--rounds", "1", "--local-epochs", "2", "--device", "cuda",
               "--gpus-per-client", "0.6", "--log-dir", str(logs), timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = runs(logs)[0]
    info = run_json(run_dir)
    procs = info["processes"]
    forking = {p["pid"] for p in procs if p["role"] in FORKING_ROLES} | {info["supervisor"]["pid"]}
    clients = {p["pid"]: p["client"] for p in procs if p["role"] == "client"}
    records = [json.loads(line) for line in calls.read_text().splitlines()]
    assert records
    assert not [r for r in records if r["pid"] in forking], "CUDA touched in a process that forks"
    by_client: dict[int, list[dict]] = {}
    for r in records:
        if r["pid"] in clients:  # the client's own process, which runs its tasks and never forks
            by_client.setdefault(clients[r["pid"]], []).append(r)
        else:  # the launcher's GPU probe: a python of its own, started by fl-launch, that asks and exits
            assert r["ppid"] == info["supervisor"]["pid"] and r["call"] in PROBE_CALLS, r
    assert sorted(by_client) == [0, 1, 2]
    for client, seen in by_client.items():
        assert {r["cvd"] for r in seen} == {("0", "1")[client % 2]}, (client, seen)
        order = [r["call"] for r in seen]
        bound = order.index("set_per_process_memory_fraction")
        assert [r["args"] for r in seen if r["call"] == "set_per_process_memory_fraction"] == [[0.6]]
        assert bound < order.index("reset_peak_memory_stats"), order  # bounded before the task computes
        assert float(ROUND_GPU.search((run_dir / f"client_{client}" / "client.log").read_text()).group(1)) == 3.0
    shared = [span for client in (0, 2) for span in
              _task_spans((run_dir / f"client_{client}" / "worker.log").read_text())]
    assert len(shared) >= 4  # each: its round and the final evaluation
    shared.sort()
    assert all(a[1] <= b[0] + timedelta(milliseconds=5) for a, b in zip(shared, shared[1:])), shared
    stats = run("fl-stats", "client_1", "--json", "--run", run_dir.name, "--log-dir", str(logs))
    assert json.loads(stats.stdout)["rounds"][0]["peak_gpu_mib"] == 3.0
    table = run("fl-stats", "--run", run_dir.name, "--log-dir", str(logs))
    assert "peak GPU memory" in table.stdout


@pytest.mark.slow
def test_virtual_clients_get_their_gpu_share_from_ray(tmp_path, monkeypatch):
    """--mode virtual: Flower's num_gpus=0.5 on a Ray told of the one (fake) GPU: Ray gives each worker that GPU
    (CUDA_VISIBLE_DEVICES, which it sets only for a GPU share), each bounds its memory to 0.5 before computing,
    and nothing the launcher records (SuperLink, flwr run, the simulation under it) touches CUDA."""
    calls = tmp_path / "cuda_calls.jsonl"
    monkeypatch.setenv(device_module.FAKE_ENV, str(calls))
    monkeypatch.setenv(device_module.FAKE_GPUS_ENV, "1")
    logs = tmp_path / "logs"
    done = run("fl-launch", "--client-num", "3", "--mode", "virtual", "--workers", "2", "--rounds", "1",
               "--local-epochs", "1", "--device", "cuda", "--gpus-per-client", "0.5", "--log-dir", str(logs),
               timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = runs(logs)[0]
    info = run_json(run_dir)
    recorded = {p["pid"] for p in info["processes"]} | {info["supervisor"]["pid"]}
    records = [json.loads(line) for line in calls.read_text().splitlines()]
    tasks = [r for r in records if r["ppid"] != info["supervisor"]["pid"]]  # not the launcher's probe
    assert tasks and not [r for r in records if r["pid"] in recorded]
    assert {r["cvd"] for r in tasks} == {"0"}
    for pid in {r["pid"] for r in tasks}:
        order = [r["call"] for r in tasks if r["pid"] == pid]
        assert order.index("set_per_process_memory_fraction") < order.index("reset_peak_memory_stats"), order
    for client in range(3):
        assert ROUND_GPU.search((run_dir / f"client_{client}" / "client.log").read_text())


def test_device_cuda_without_a_gpu_is_one_line_before_anything_starts(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here")
    logs = tmp_path / "logs"
    done = run("fl-launch", "--client-num", "2", "--rounds", "1", "--device", "cuda", "--log-dir", str(logs))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "--device cuda" in done.stderr and "no CUDA GPU" in done.stderr
    assert not logs.exists()


def test_gpus_per_client_with_device_cpu_is_refused(tmp_path):
    done = run("fl-launch", "--client-num", "2", "--device", "cpu", "--gpus-per-client", "0.5",
               "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 2 and "--gpus-per-client is for --device auto or cuda" in done.stderr


# --- the logic, in process ---------------------------------------------------------------------------------------

def test_clients_spread_over_the_visible_gpus_and_slots_follow_the_share():
    assert [gpu_of(c, ("3", "5")) for c in range(5)] == ["3", "5", "3", "5", "3"]
    assert gpu_of(4, ()) is None
    assert [gpu_slot_count(f) for f in (1.0, 0.5, 0.34, 0.33, 0.25, 0.2)] == [1, 2, 2, 3, 4, 5]


def test_virtual_mode_asks_flower_for_the_same_share():
    assert virtual_gpu_config(("0", "1"), 0.25, on_cluster=False) == \
        " client-resources-num-gpus=0.25 init-args-num-gpus=2"
    assert virtual_gpu_config((), 0.25, on_cluster=True) == " client-resources-num-gpus=0.25"
    assert virtual_gpu_config((), 0.25, on_cluster=False) == ""  # Ray would wait for a GPU forever
    assert virtual_gpu_config(("0",), 0.0, on_cluster=False) == ""


class _RecordingCuda:
    """torch.cuda's calls the device logic makes, recorded; a host with ``count`` GPUs."""

    def __init__(self, monkeypatch, count: int = 1) -> None:
        self.calls: list[tuple] = []
        for name, result in (("is_available", count > 0), ("device_count", count), ("current_device", 0),
                             ("set_per_process_memory_fraction", None), ("reset_peak_memory_stats", None),
                             ("max_memory_allocated", 5 * 2**20), ("empty_cache", None)):
            monkeypatch.setattr(torch.cuda, name, self._record(name, result))
        monkeypatch.setattr(torch.cuda, "get_device_properties", self._record(
            "get_device_properties", lambda i: types.SimpleNamespace(name=f"GPU {i}", total_memory=8 * 2**30)))
        monkeypatch.setattr(device_module, "_bounded", set())
        monkeypatch.delenv(device_module.FAKE_ENV, raising=False)

    def _record(self, name, result):
        def call(*args, **_):
            self.calls.append((name, *args))
            return result(*args) if callable(result) else result
        return call


def test_the_memory_bound_is_set_once_before_the_first_task_computes(monkeypatch):
    cuda = _RecordingCuda(monkeypatch)
    dev = device_module.task_device("cuda", 0.25)
    assert dev.gpu and dev.torch.type == "cuda"
    assert ("set_per_process_memory_fraction", 0.25) in cuda.calls
    device_module.task_device("cuda", 0.25)
    assert cuda.calls.count(("set_per_process_memory_fraction", 0.25)) == 1
    assert device_module.peak_gpu_mib(dev) == 5.0


def test_auto_decides_per_host_and_cpu_never_asks_cuda(monkeypatch):
    cuda = _RecordingCuda(monkeypatch, count=0)
    assert device_module.task_device("cpu", 0.5) == device_module.CPU and cuda.calls == []
    assert device_module.task_device("auto", 0.5) == device_module.CPU and cuda.calls == [("is_available",)]
    cuda = _RecordingCuda(monkeypatch, count=1)
    assert device_module.task_device("auto", 1.0).gpu
    assert not [c for c in cuda.calls if c[0] == "set_per_process_memory_fraction"]  # a whole GPU: no bound


def test_gpu_ids_follow_cuda_visible_devices(monkeypatch):
    _RecordingCuda(monkeypatch, count=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    facts = HostGpus.from_json(device_module.gpu_facts())
    assert facts.ids == ("3", "5") and facts.gpus[0].memory_mib == 8192
    assert "2 GPU(s): GPU 0 (8192 MiB)" in facts.describe()


def test_the_probe_runs_in_a_process_of_its_own_and_answers_here():
    found = host_gpus()
    assert found.cuda == torch.cuda.is_available() and not found.error
    assert RunSettings.from_config({"gpus-per-client": "0.25", "device": "cuda"}).gpus_per_client == 0.25


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here: torch.cuda.is_available() is False")
def test_a_task_on_a_real_gpu_is_bounded_and_reports_its_peak():
    dev = device_module.task_device("cuda", 0.5)
    x = torch.zeros(1024, 1024, device=dev.torch)
    assert device_module.peak_gpu_mib(dev) >= 4.0
    total = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        torch.empty(int(total * 0.6) // 4, dtype=torch.float32, device=dev.torch)
    del x


class _LocalShell:
    """ssh to a device, replaced by this machine's shell: the probe --check sends runs here as it would there."""

    def __init__(self, *_args) -> None:
        pass

    def run(self, command: str, timeout: float = 60, **_):
        return subprocess.run(["bash", "-c", command], capture_output=True, timeout=timeout)


def test_check_reports_a_devices_gpus_and_device_cuda_needs_one(tmp_path, monkeypatch):
    from launcher.devices import preflight
    from launcher.devices.hosts import Device

    monkeypatch.setattr(preflight, "Ssh", _LocalShell)
    device = Device("jetson", python=sys.executable, workdir=str(tmp_path / "wd"))
    monkeypatch.setenv(device_module.FAKE_ENV, str(tmp_path / "calls.jsonl"))
    row = preflight.check_device(device, None, gpus=True, need_cuda=True)
    assert row["gpu"] == "CUDA: 1 GPU(s): fake GPU 0 (16384 MiB)" and not any("cuda" in p for p in row["problems"])
    monkeypatch.delenv(device_module.FAKE_ENV)
    row = preflight.check_device(device, None, gpus=True, need_cuda=True)
    if not torch.cuda.is_available():
        assert row["gpu"] == "no CUDA GPU" and "--device cuda: torch there sees no CUDA GPU" in row["problems"]


@pytest.mark.slow
@pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available()))
def test_device_clients_share_the_devices_own_gpus(tmp_path):
    """A device (namespaces over SSH, tests/devices.py) with 2 fake GPUs in its hosts entry's env: --device cuda is
    checked there before the run starts, the device's agent asks its own GPUs and gives its two clients one each
    (client i: GPU i mod 2), bounded to 0.5; only the clients' own processes touch CUDA (none that forks)."""
    calls = tmp_path / "cuda_calls.jsonl"
    with lab_devices.make_devices(tmp_path / "lab", 1) as lab:
        [device] = lab.devices
        hosts = tmp_path / "devices.toml"
        hosts.write_text(f'[[device]]\nhost = "{device.name}"\npython = "{sys.executable}"\nslots = 2\n'
                         f'workdir = "{device.root}"\nenv = {{ PYTHONPATH = "{ROOT}", '
                         f'{device_module.FAKE_ENV} = "{calls}", {device_module.FAKE_GPUS_ENV} = "2" }}\n')
        done = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--client-num", "2",
                   "--rounds", "1", "--local-epochs", "1", "--device", "cuda", "--gpus-per-client", "0.5",
                   "--log-dir", str(tmp_path / "logs"), timeout=400)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        run_dir = runs(tmp_path / "logs")[0]
        agent = json.loads((device.root / "runs" / run_dir.name / "agent.json").read_text())
    records = [json.loads(line) for line in calls.read_text().splitlines()]  # pids as the device numbers them
    forking = {p["pid"] for p in agent["processes"] if p["role"] != "client"} | {agent["pid"]}
    assert not [r for r in records if r["pid"] in forking]
    clients = {p["pid"]: p["client"] for p in agent["processes"] if p["role"] == "client"}
    for client in (0, 1):
        tasks = [r for r in records if clients.get(r["pid"]) == client]
        assert tasks and {r["cvd"] for r in tasks} == {str(client)}, (client, tasks)
        assert [r["args"] for r in tasks if r["call"] == "set_per_process_memory_fraction"] == [[0.5]]
        assert ROUND_GPU.search((run_dir / f"client_{client}" / "client.log").read_text())
