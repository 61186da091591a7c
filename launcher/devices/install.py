"""``fl-launch --hosts FILE --install``: put this launcher's own version onto every device, no internet needed there.

    wheel = build_wheel(Path("/tmp/x"))          # fl_launch-0.1.0-py3-none-any.whl, from this checkout
    install_on(RemoteDevice(...), wheel, constraints, Path("/tmp/x/dev0"))
    # (True, 'installed fl-launch 0.1.0, 2 wheels carried')

One SSH call asks the device's Python what it is (version, platform) and what it holds
(launcher.pyenv.python_facts); launcher.pyenv.wheel_needs works out which of the wheel's requirements it lacks,
recursively and pinned by constraints.txt; ``pip download`` here fetches those wheels for the device's
platform (from pip's cache or the package index); they travel with the launcher's wheel and
constraints.txt as a tar stream over ssh into ``<workdir>/wheels/`` (emptied first), and the device's
Python installs from that folder only (``--no-index``): the wheel forced, so a device holding another
build of the same version gets this one. A torch of the device's own inside the launcher's range (a Jetson's
CUDA build; launcher.pyenv.own_builds) is kept: constraints.txt's pin of it is left out, and the line says so.
A device without pip gets pip's wheel too, and runs pip from it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

from contract.errors import InputError
from launcher.devices.remote import RemoteDevice
from launcher.devices.ssh import last_line, remote_path
from launcher.pyenv import python_facts
from launcher.pyenv.own_builds import OWN_BUILDS, kept_builds
from launcher.pyenv.python_facts import canonical_name
from launcher.pyenv.wheel_needs import DeviceFacts, MissingWheel, download_target, missing, read_constraints

SOURCE_ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT = 60
INSTALL_TIMEOUT = 1800


class InstallError(InputError):
    """One line saying why a device could not be installed."""


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


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's own Requires-Dist lines (what ``pip install`` of it asks for)."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []


def probe(device: RemoteDevice) -> DeviceFacts:
    source = Path(python_facts.__file__).read_text()
    result = device.ssh.run(f"{device.python_word()} -c {shlex.quote(source)}", timeout=PROBE_TIMEOUT)
    if result.returncode == 255:
        raise InstallError(f"unreachable: {last_line(result.stderr) or 'ssh failed'}")
    if result.returncode != 0:
        raise InstallError(f"{device.device.python} failed: {last_line(result.stderr) or result.returncode}")
    try:
        return DeviceFacts.parse(last_line(result.stdout))
    except (ValueError, KeyError, TypeError):
        raise InstallError(f"unreadable answer from {device.device.python}") from None


def fetch(needs: list[MissingWheel], facts: DeviceFacts, constraints: Path, dest: Path) -> list[Path]:
    """The wheels of ``needs`` for the device's platform, into ``dest`` (pip's cache first, else its index)."""
    dest.mkdir(parents=True, exist_ok=True)
    for with_dependencies in (False, True):
        batch = [need.requirement for need in needs if need.with_dependencies == with_dependencies]
        if not batch:
            continue
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             *([] if with_dependencies else ["--no-deps"]), *download_target(facts), "-c", str(constraints),
             "-d", str(dest), *batch], capture_output=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise InstallError(f"no wheels here for {facts.describe()}: {last_line(result.stderr)}")
    return sorted(dest.glob("*.whl"))


def constraints_without(constraints: Path, names: dict, scratch: Path) -> Path:
    """constraints.txt less the pins of ``names`` (what the device keeps of its own), in ``scratch``."""
    if not names:
        return constraints
    lines = [line for line in constraints.read_text().splitlines()
             if not (line.split("#", 1)[0].strip() and
                     canonical_name(Requirement(line.split("#", 1)[0].strip()).name) in names)]
    kept = scratch / "constraints.txt"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("\n".join(lines) + "\n")
    return kept


def _own(distribution: str) -> str | None:
    """This Python's version of a distribution, or None."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def install_on(device: RemoteDevice, wheel: Path, constraints: Path, scratch: Path) -> tuple[bool, str]:
    """Install ``wheel`` and what the device lacks of its requirements; (done, one line for the table)."""
    try:
        if _own("pip") is None:  # it fetches the wheels with this Python's pip
            raise InstallError(f"{sys.executable} has no pip to fetch wheels with: {sys.executable} -m ensurepip")
        facts = probe(device)
        roots, pins = wheel_requirements(wheel), read_constraints(constraints)
        kept = kept_builds(roots, pins, facts)  # a device's own torch (a Jetson's CUDA build) inside the range
        needs = missing(roots, {name: spec for name, spec in pins.items() if name not in kept}, facts)
        if not facts.pip:  # the device gets this Python's pip as a wheel
            needs.append(MissingWheel(f"pip=={_own('pip')}", with_dependencies=False))
        carried = fetch(needs, facts, constraints, scratch / "wheels")
    except InstallError as err:
        return False, str(err)
    bundle = scratch / "bundle.tar"
    with tarfile.open(bundle, mode="w") as tar:
        for path in [wheel, *carried]:
            tar.add(path, arcname=f"wheels/{path.name}")
        tar.add(constraints_without(constraints, kept, scratch), arcname="wheels/constraints.txt")
    python = device.python_word()
    pip_wheel = next((p.name for p in carried if p.name.startswith("pip-")), None)
    pip_word = f"{python} {shlex.quote(f'wheels/{pip_wheel}/pip')}" if pip_wheel else f"{python} -m pip"
    pip = (f"{pip_word} install -q --disable-pip-version-check --no-index --find-links wheels "
           f"-c wheels/constraints.txt")
    whl = shlex.quote(f"wheels/{wheel.name}")
    workdir = remote_path(device.device.workdir)
    command = (f"mkdir -p {workdir} && cd {workdir} && rm -rf wheels && tar -xf - && "
               f"{pip} --force-reinstall --no-deps {whl} && {pip} {whl} && "
               f"{python} -c 'from importlib.metadata import PackageNotFoundError, version; "
               f"print(\"fl-launch\", version(\"fl-launch\"))'")
    with open(bundle, "rb") as stream:
        result = device.ssh.run(command, stdin=stream, timeout=INSTALL_TIMEOUT)
    if result.returncode != 0:
        return False, last_line(result.stderr) or f"exit {result.returncode}"
    said = "".join(f", kept the device's {name} {held} ({OWN_BUILDS[name]})" for name, held in sorted(kept.items()))
    return True, f"installed {last_line(result.stdout)}, {len(carried)} wheel(s) carried{said}"
