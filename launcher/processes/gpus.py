"""A host's GPUs and how its local clients share them (--device, --gpus-per-client).

    gpus = this_host_gpus()                 # HostGpus(cuda=True, gpus=(Gpu(id='0', name=..., memory_mib=...),))
    gpu_of(client=5, ids=("0", "1"))        # '1': clients spread over the visible GPUs, round robin
    gpu_slot_count(0.25)                    # 4 tasks compute on one GPU at once

The question is asked in a Python of its own (``python -m simulator.device``): torch.cuda.is_available()
initialises the CUDA driver, which does not survive a fork, and the processes that ask (the supervisor, a
device's agent) start the fork server and the clients. A client gets its GPU as CUDA_VISIBLE_DEVICES (so its
task sees it as cuda:0) and computes only while it holds one of that GPU's compute slots
(launcher.flower.compute_slots): floor(1 / F) at once per GPU; its task's memory there is bounded to F of
the GPU by torch's per-process memory fraction (simulator.device).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from dataclasses import dataclass

from launcher.flower.compute_slots import gpu_slot_count  # noqa: F401 (the slots are the adapter's)
from launcher.processes.entry_modules import GPU_PROBE

PROBE_TIMEOUT = 180.0  # importing torch on a loaded machine, and a driver's first answer


@dataclass(frozen=True)
class Gpu:
    id: str  # what CUDA_VISIBLE_DEVICES names it by
    name: str
    memory_mib: int


@dataclass(frozen=True)
class HostGpus:
    cuda: bool
    gpus: tuple[Gpu, ...] = ()
    error: str = ""  # why torch could not tell (a broken driver, a probe that failed)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(g.id for g in self.gpus)

    def describe(self) -> str:
        """One line: 'CUDA: 2 GPUs: NVIDIA H100 (81559 MiB), ...' or why there is none."""
        if not self.cuda:
            return "no CUDA GPU" + (f" ({self.error})" if self.error else "")
        return f"CUDA: {len(self.gpus)} GPU(s): " + ", ".join(f"{g.name} ({g.memory_mib} MiB)" for g in self.gpus)

    @classmethod
    def from_json(cls, data: dict) -> "HostGpus":
        gpus = tuple(Gpu(str(g["id"]), str(g["name"]), int(g["memory_mib"])) for g in data.get("gpus") or [])
        return cls(bool(data.get("cuda")) and bool(gpus), gpus, str(data.get("error") or ""))


def host_gpus(python: str = sys.executable, env: dict[str, str] | None = None) -> HostGpus:
    """This host's GPUs as its torch sees them, asked in a fresh process."""
    try:
        done = subprocess.run([python, "-m", GPU_PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                              env=env)
        lines = done.stdout.strip().splitlines()
        return HostGpus.from_json(json.loads(lines[-1])) if lines else \
            HostGpus(False, error=(done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as err:
        return HostGpus(False, error=f"the GPU probe failed: {err}")


@functools.lru_cache(maxsize=1)
def this_host_gpus() -> HostGpus:
    """host_gpus() of this Python, asked once per process (options checked twice, then the supervisor)."""
    return host_gpus()


def virtual_gpu_config(gpus: tuple[str, ...], share: float, on_cluster: bool) -> str:
    """What `flwr run --federation-config` adds for virtual clients with ``share`` of a GPU each: Flower's client
    resources (num_gpus, a soft limit: Ray runs floor(GPUs / share) clients at once; the memory bound is the
    task's, simulator.device), and a Ray of the run's own is told this machine's GPUs (on a cluster its nodes'
    decide). Nothing without a share, or without a GPU here (Ray would wait for one forever)."""
    if share <= 0 or not (gpus or on_cluster):
        return ""
    return f" client-resources-num-gpus={share!r}" + ("" if on_cluster else f" init-args-num-gpus={len(gpus)}")


def gpu_of(client: int, ids: tuple[str, ...]) -> str | None:
    """The GPU a client computes on: the visible GPUs in turn by client number; None without one."""
    return ids[client % len(ids)] if ids else None
