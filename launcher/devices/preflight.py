"""``fl-launch --hosts FILE --check``: can each device run its clients?

    rows = check_devices(devices, ssh_config=None)
    rows[0]["ok"], rows[0]["problems"]
    # (True, [])

One SSH call per device runs a short Python snippet with the device's
interpreter and reports: Python, fl-launch, Flower and torch versions (each must
match this machine's; torch, which a device may hold its own build of, must be inside fl-launch's range,
launcher.pyenv.own_builds), free memory, CPUs, free disk in the work dir, and the
clock offset (the device's time, read as its answer is printed, against this
machine's when the answer arrives), its torch's CUDA GPUs (names, memory); with ``--app``, the app's declared
dependencies against the device's installed distributions (launcher.apps.requirements).
"""

from __future__ import annotations

import json
import platform
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

from launcher.apps.requirements import check_requirements
from launcher.devices.hosts import Device
from launcher.devices.remote import python_command
from launcher.devices.ssh import Ssh, last_line, remote_path
from launcher.processes.entry_modules import GPU_PROBE
from launcher.processes.gpus import HostGpus
from launcher.pyenv import python_facts
from launcher.pyenv.own_builds import OWN_BUILDS, in_range

PROBE_TAIL = r"""
import json, os, platform, shutil, sys, time
from importlib.metadata import version, PackageNotFoundError
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None
wd = sys.argv[1]
os.makedirs(wd, exist_ok=True)
mem = {}
with open("/proc/meminfo") as fh:
    for line in fh:
        k, rest = line.split(":", 1)
        mem[k] = int(rest.split()[0]) // 1024
gpu = None
if sys.argv[2:] == ["gpu"]:  # torch's CUDA, asked in a python of its own (launcher.processes.gpus)
    import subprocess
    try:
        out = subprocess.run([sys.executable, "-m", "GPU_PROBE"], capture_output=True, text=True,
                             timeout=150).stdout.strip().splitlines()
        gpu = json.loads(out[-1]) if out else {"cuda": False, "gpus": [], "error": "no answer"}
    except Exception as err:
        gpu = {"cuda": False, "gpus": [], "error": str(err)}
print(json.dumps({"python": platform.python_version(), "fl-launch": v("fl-launch"), "flwr": v("flwr"),
                  "torch": v("torch"), "mem_free_mib": mem.get("MemAvailable"), "cpus": os.cpu_count(), "cuda": gpu,
                  "disk_free_mib": shutil.disk_usage(wd).free // 2**20, "time": time.time(),
                  "installed": {k: d["version"] for k, d in installed().items()}, "markers": marker_environment()}))
"""
# launcher.pyenv.python_facts's functions (standard library only) come first: the installed distributions, markers
PROBE = Path(python_facts.__file__).read_text().split('\nif __name__ == "__main__":')[0] + \
    PROBE_TAIL.replace("GPU_PROBE", GPU_PROBE)
MIN_MEM_MIB = 400  # one client process with torch peaks near 400 MiB
MIN_DISK_MIB = 200
MAX_CLOCK_OFFSET = 5.0


def local_versions() -> dict:
    def v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"python": ".".join(platform.python_version_tuple()[:2]), "fl-launch": v("fl-launch"),
            "flwr": v("flwr"), "torch": v("torch")}


def check_device(device: Device, ssh_config: str | None, requirements: list[Requirement] | None = None,
                 gpus: bool = False, need_cuda: bool = False) -> dict:
    """``requirements``: an app's declared dependencies (launcher.apps.requirements), checked against the
    device's installed distributions: ``app_missing`` (one line, a problem) and ``app_warnings``. ``gpus``: also
    its torch's CUDA (``gpu``: 'CUDA: 1 GPU(s): Orin (7620 MiB)' or 'no CUDA GPU'); ``need_cuda``: none is a
    problem (--device cuda)."""
    ssh = Ssh(device, ssh_config)
    python = python_command(device)
    workdir = device.workdir
    wd_arg = remote_path(workdir)
    result = ssh.run(f"{python} -c {shlex.quote(PROBE)} {wd_arg}" + (" gpu" if gpus or need_cuda else ""),
                     timeout=200 if gpus or need_cuda else 60)
    arrived = time.time()
    row = {"host": device.host, "slots": device.slots, "ok": False, "problems": []}
    if result.returncode == 255:
        row["problems"].append(f"unreachable: {last_line(result.stderr) or 'ssh failed'}")
        return row
    if result.returncode != 0:
        row["problems"].append(f"python failed: {last_line(result.stderr) or result.returncode}")
        return row
    try:
        facts = json.loads(last_line(result.stdout))
    except json.JSONDecodeError:
        row["problems"].append("unreadable answer from the device")
        return row
    row.update(facts)
    row["clock_offset_s"] = facts["time"] - arrived
    mine = local_versions()
    if ".".join(str(facts["python"]).split(".")[:2]) != mine["python"]:
        row["problems"].append(f"Python {facts['python']} (here {mine['python']})")
    for package in ("fl-launch", "flwr", "torch"):
        if package in OWN_BUILDS and facts.get(package):  # a device's own build (a Jetson's torch): in range
            if not in_range(package, facts[package]):
                row["problems"].append(f"{package} {facts[package]} outside fl-launch's range "
                                       f"{OWN_BUILDS[package]} (here {mine[package]})")
        elif facts.get(package) != mine[package]:
            row["problems"].append(f"{package} {facts.get(package) or 'missing'} (here {mine[package]})")
    if (facts.get("mem_free_mib") or 0) < MIN_MEM_MIB * device.slots:
        row["problems"].append(f"{facts.get('mem_free_mib')} MiB free for {device.slots} client(s)")
    if (facts.get("disk_free_mib") or 0) < MIN_DISK_MIB:
        row["problems"].append(f"{facts.get('disk_free_mib')} MiB free in {workdir}")
    if facts.get("cuda") is not None:
        found = HostGpus.from_json(row.pop("cuda"))
        row["gpu"] = found.describe()
        if need_cuda and not found.cuda:
            row["problems"].append(f"--device cuda: torch there sees {found.describe()}")
    if abs(row["clock_offset_s"]) > MAX_CLOCK_OFFSET:
        row["problems"].append(f"clock off by {row['clock_offset_s']:.1f} s")
    if requirements:
        found = check_requirements(requirements, facts.get("installed") or {}, facts.get("markers") or {})
        row["app_warnings"] = found.warning_lines(device.python, where=f"{device.host}: ")
        if found.missing:
            row["app_missing"] = found.missing_line(device.python, where=f"{device.host}: ")
            row["problems"].append(row["app_missing"])
    row.pop("installed", None)
    row.pop("markers", None)
    row["ok"] = not row["problems"]
    return row


def check_devices(devices: list[Device], ssh_config: str | None,
                  requirements: list[Requirement] | None = None, gpus: bool = False,
                  need_cuda: bool = False) -> list[dict]:
    with ThreadPoolExecutor(max_workers=min(16, len(devices))) as pool:
        return list(pool.map(lambda d: check_device(d, ssh_config, requirements, gpus, need_cuda), devices))
