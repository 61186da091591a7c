"""Virtual clients on a Ray cluster the user already has (--ray-address), and Ray's own logs in the run folder.

The cluster test makes a two-node Ray cluster on this machine (tests/ray_cluster.py: the worker node in its own
network namespace, each node in a cgroup of the test's own; the worker's Python reports a fake torch version,
which `fl-launch --check --ray-address` must name), runs 200 virtual clients on it, and judges where
each client's tasks ran by the node addresses the test gave the nodes; the cluster's own processes are listed
from the test's cgroups before and after the run and after fl-finish, and must be the same and alive.
"""

from __future__ import annotations

import re
import socket
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.helpers import run, run_json, runs, wait_for_status
from tests.ray_cluster import available, ray_cluster

RAY_NODE_LINE = re.compile(r"<FLClient> \[ray\] node:\w+ ip:([\d.]+)")


def _launch(log_dir: Path, *args: str, timeout: float = 600):
    return run("fl-launch", "--mode", "virtual", "--rounds", "1", "--local-epochs", "1", "--log-dir", str(log_dir),
               *args, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


def _links_to(run_dir: Path) -> list[Path]:
    """Links under /tmp whose target is the run folder (or inside it)."""
    target = str(run_dir.resolve())
    return [p for p in Path("/tmp").iterdir() if p.is_symlink() and str(p.resolve()).startswith(target)]


def test_an_unreachable_ray_address_is_one_line_and_nothing_starts(tmp_path, monkeypatch):
    address = f"127.0.0.1:{_closed_port()}"
    for args, env in (((("--ray-address", address)), None), ((), address)):
        if env is not None:
            monkeypatch.setenv("RAY_ADDRESS", env)
        started = time.monotonic()
        result = _launch(tmp_path / "logs", "--client-num", "3", *args, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert time.monotonic() - started < 30  # Ray itself retries an absent head for minutes
        assert result.stderr.count("\n") == 1 and address in result.stderr, result.stderr
        assert runs(tmp_path / "logs") == []


def test_ray_address_is_for_virtual_mode_and_must_be_host_port(tmp_path, monkeypatch):
    result = _launch(tmp_path / "logs", "--client-num", "3", "--mode", "process", "--ray-address", "127.0.0.1:6379")
    assert result.returncode == 2 and "--ray-address is for --mode virtual" in result.stderr, result.stderr
    result = _launch(tmp_path / "logs", "--client-num", "3", "--ray-address", "ray://head:10001")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr, result.stderr
    assert runs(tmp_path / "logs") == []


@pytest.mark.slow
def test_a_local_virtual_runs_ray_logs_are_in_its_run_folder(tmp_path, monkeypatch):
    """Ray's session (GCS, raylet, workers' logs) goes to RUN/ray, not to $TMPDIR/ray (or /tmp/ray)."""
    tmp = Path(tempfile.mkdtemp(prefix="flt", dir="/tmp"))  # where Ray would put its session without the fix
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        result = _launch(tmp_path / "logs", "--client-num", "2", "--kill-tag", "test-ray-logs")
        assert result.returncode == 0, result.stdout + result.stderr
        run_dir = runs(tmp_path / "logs")[0]
        sessions = list((run_dir / "ray").glob("session_*/logs"))
        assert len(sessions) == 1, list((run_dir / "ray").iterdir()) if (run_dir / "ray").exists() else "no RUN/ray"
        names = {p.name for p in sessions[0].iterdir()}
        assert {"raylet.out", "gcs_server.out"} <= names, names
        assert any(n.startswith("worker-") for n in names), names
        assert not (tmp / "ray").exists(), list((tmp / "ray").iterdir())
        assert _links_to(run_dir) == []  # the short link Ray's sockets went through is gone with the run
    finally:
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
        tmp.rmdir()


PRESTARTED_WORKER = re.compile(r"worker-[0-9a-f]+-ffffffff-\d+\.out")  # Ray's log of a worker of no job


@pytest.mark.slow
def test_a_local_virtual_run_starts_no_ray_workers_that_serve_no_client(tmp_path, monkeypatch):
    """Ray prestarts a Python worker per CPU for its first driver, but Flower's job (its runtime environment) starts
    its actors' workers itself, and the prestarted ones, each importing Ray within round 1, exit unused. Ray's own
    logs (RUN/ray) have a log per worker process, named by its job: the nil job's are the prestarted."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_prestart_worker_first_driver", raising=False)
    result = _launch(tmp_path / "logs", "--client-num", "2", "--workers", "2", "--kill-tag", "test-ray-prestart")
    assert result.returncode == 0, result.stdout + result.stderr
    logs = list((runs(tmp_path / "logs")[0] / "ray").glob("session_*/logs"))
    assert len(logs) == 1, logs
    names = sorted(p.name for p in logs[0].iterdir())
    workers = [n for n in names if n.startswith("worker-") and n.endswith(".out")]
    assert workers, names  # the oracle's files are there
    assert [n for n in workers if PRESTARTED_WORKER.fullmatch(n)] == [], workers
    assert len(workers) <= 2, workers  # an actor per worker Ray is given (--workers 2), nothing else


OBJECT_STORE_USED = re.compile(r"Object store memory is idle|num bytes created total: [1-9]")


@pytest.mark.slow
def test_a_virtual_runs_models_travel_inside_the_task_calls_not_through_rays_object_store(tmp_path, monkeypatch):
    """Each virtual client's task carries the model (0.25 MB, over Ray's 100 KiB default for a call's own bytes):
    through the object store it cost the raylet ~2.8 ms of CPU a task, and the driver and worker more. Ray's own
    raylet log says when its object store went back to idle and how many bytes it ever held: neither here."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_max_direct_call_object_size", raising=False)
    result = _launch(tmp_path / "logs", "--client-num", "2", "--kill-tag", "test-ray-inline")
    assert result.returncode == 0, result.stdout + result.stderr
    raylet = list((runs(tmp_path / "logs")[0] / "ray").glob("session_*/logs/raylet.out"))
    assert len(raylet) == 1, raylet
    text = raylet[0].read_text()
    assert "Plasma store debug dump" in text  # the log the oracle reads is there and Ray's own
    assert OBJECT_STORE_USED.findall(text) == []


def test_a_users_own_ray_inline_limit_is_kept(monkeypatch, tmp_path):
    from launcher.run.ray_cluster import INLINE_BYTES, INLINE_ENV, ray_env
    monkeypatch.delenv(INLINE_ENV, raising=False)
    assert ray_env(None, tmp_path)[INLINE_ENV] == str(INLINE_BYTES)
    monkeypatch.setenv(INLINE_ENV, "2048")
    assert ray_env("10.0.0.5:6379", tmp_path)[INLINE_ENV] == "2048"


def _actors(cluster) -> dict[int, str]:
    return {pid: cmd for pid, cmd in cluster.cmdlines().items() if "ClientAppActor" in cmd}


def _daemons(cluster) -> set[tuple[int, float]]:
    """The nodes' own processes (GCS, raylets, agents): not the workers Ray starts and ends as it likes."""
    cmdlines = cluster.cmdlines()
    return {(pid, created) for pid, created in cluster.members()
            if not re.match(r"ray::(IDLE|ClientAppActor)", cmdlines.get(pid, "ray::IDLE"))
            and "default_worker.py" not in cmdlines.get(pid, "")}


def _wait_no_actors(cluster, timeout: float = 30) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := _actors(cluster)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.slow
@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_200_virtual_clients_on_a_two_node_ray_cluster_which_the_run_leaves_as_it_was(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_cluster(tmp_path, worker_fake=("torch", "0.0.1")) as cluster:
        head, worker = sorted(cluster.node_ips)
        check = run("fl-launch", "--check", "--ray-address", cluster.address, timeout=300)
        assert check.returncode == 2, check.stdout + check.stderr  # a node lacks this torch: one line for it
        assert check.stderr.strip() == f"ray node {worker}: torch 0.0.1 (here {version('torch')})", check.stderr
        assert check.stdout.strip() == f"ray node {head}: ok", check.stdout
        daemons = _daemons(cluster)
        assert len(daemons) >= 6, cluster.cmdlines()  # GCS, 2 raylets, their agents, ...
        assert _actors(cluster) == {}

        # a run to its end: tasks on both nodes, each client's log in the run folder here
        result = _launch(tmp_path / "logs", "--client-num", "200", "--clients-per-round", "20",
                         "--ray-address", cluster.address, "--kill-tag", "test-ray-cluster")
        assert result.returncode == 0, result.stdout + result.stderr
        run_dir = runs(tmp_path / "logs")[0]
        assert run_json(run_dir)["options"]["ray_address"] == cluster.address
        where: dict[str, set[int]] = {}
        for i in range(200):
            text = (run_dir / f"client_{i}" / "client.log").read_text()
            assert "[final] final model accuracy:" in text, f"client {i}: {text[-300:]}"
            for ip in RAY_NODE_LINE.findall(text):
                where.setdefault(ip, set()).add(i)
        assert set(where) == cluster.node_ips, where  # tasks ran on both nodes, and only there
        assert all(len(clients) >= 10 for clients in where.values()), {ip: len(c) for ip, c in where.items()}
        assert _wait_no_actors(cluster) == {}  # the run's actors went with its driver
        assert daemons <= cluster.members() and cluster.alive_nodes() == 2  # the cluster as it was
        assert _links_to(run_dir) == []

        # a detached run stopped by fl-finish: its actors go, the cluster stays
        started = _launch(tmp_path / "logs2", "--client-num", "4", "--rounds", "50", "--detach",
                          "--ray-address", cluster.address, "--kill-tag", "test-ray-cluster-2")
        assert started.returncode == 0, started.stdout + started.stderr
        run_dir = runs(tmp_path / "logs2")[0]
        deadline = time.monotonic() + 180
        while not (live_actors := _actors(cluster)) and time.monotonic() < deadline:
            time.sleep(1)  # Ray's idle workers become the run's actors once the simulation starts
        assert live_actors, cluster.cmdlines()  # the run's actors live on the cluster's nodes
        done = run("fl-finish", "--kill-tag", "test-ray-cluster-2", "--log-dir", str(tmp_path / "logs2"),
                   timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for_status(run_dir, {"stopped", "interrupted"}, timeout=30)
        assert _wait_no_actors(cluster) == {}
        assert not {pid for pid, _ in cluster.members()} & set(live_actors)
        assert daemons <= cluster.members() and cluster.alive_nodes() == 2
        assert _links_to(run_dir) == []
