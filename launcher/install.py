"""``fl-launch --hosts FILE --install``: put this launcher's own version onto every device.

    >>> wheel = build_wheel(Path("/tmp/x"))          # fl_launch-0.1.0-py3-none-any.whl, from this checkout
    >>> install_on(RemoteDevice(...), wheel, constraints)
    (True, 'Successfully installed fl-launch-0.1.0')

The wheel and constraints.txt travel as a tar stream over ssh into
``<workdir>/wheels/``; the device's own Python then pip-installs the wheel
(forced, so a device holding another build of the same version gets this one)
and whatever it needs, pinned by the same constraints (flwr, torch).
"""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

from launcher.remote import RemoteDevice
from launcher.ssh import last_line, remote_path

SOURCE_ROOT = Path(__file__).resolve().parents[1]


class InstallError(RuntimeError):
    pass


def build_wheel(dest: Path) -> Path:
    if not (SOURCE_ROOT / "setup.py").is_file():
        raise InstallError(f"--install builds from a source checkout; {SOURCE_ROOT} has no setup.py")
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(dest), str(SOURCE_ROOT)], capture_output=True, text=True)
    wheels = sorted(dest.glob("fl_launch-*.whl"))
    if result.returncode != 0 or not wheels:
        raise InstallError(f"building the wheel failed: {last_line(result.stderr.encode())}")
    return wheels[-1]


def install_on(device: RemoteDevice, wheel: Path, constraints: Path) -> tuple[bool, str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(wheel, arcname=f"wheels/{wheel.name}")
        tar.add(constraints, arcname="wheels/constraints.txt")
    workdir = remote_path(device.device.workdir)
    python = device.python_word()
    whl = shlex.quote(f"wheels/{wheel.name}")
    pip = f"{python} -m pip install -q --disable-pip-version-check -c wheels/constraints.txt"
    command = (f"mkdir -p {workdir} && cd {workdir} && tar -xf - && "
               f"{pip} --force-reinstall --no-deps {whl} && {pip} {whl} && "
               f"{python} -c 'from importlib.metadata import version; print(\"fl-launch\", version(\"fl-launch\"))'")
    result = device.ssh.run(command, stdin=buffer.getvalue(), timeout=1800)
    if result.returncode != 0:
        return False, last_line(result.stderr) or f"exit {result.returncode}"
    return True, f"installed {last_line(result.stdout)}"
