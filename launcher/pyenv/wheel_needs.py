"""Which wheels a device lacks for ``pip install fl_launch.whl``, and pip's flags to fetch them for its platform.

    device = DeviceFacts.parse(json_from_the_device)       # launcher.pyenv.python_facts, run there
    needs = missing(["flwr[simulation]==1.41.0", "psutil"], constraints, device, here=local_installed())
    [n.requirement for n in needs]
    # ['click==8.4.0', 'psutil==7.2.2']
    download_target(device)
    # ['--python-version', '3.11', '--implementation', 'cp', '--abi', 'cp311', ..., '--platform', 'linux_x86_64']

The walk is what pip's resolver does on the device, with the device's installed distributions and markers:
a requirement the device already satisfies (its version within the requirement and constraints.txt) is
followed into the device's own copy's requirements; one it lacks is pinned to the version this environment
holds (and followed into this copy's requirements), or, when nothing here fits, fetched with its dependencies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from launcher.pyenv.python_facts import canonical_name, installed

IMPLEMENTATIONS = {"cpython": "cp", "pypy": "pp"}
OLDEST_MANYLINUX = 5  # manylinux_2_5 is manylinux1
LEGACY_MANYLINUX = ((17, "manylinux2014"), (12, "manylinux2010"), (5, "manylinux1"))


@dataclass(frozen=True)
class DeviceFacts:
    python: str  # "3.11.2"
    implementation: str  # "cpython"
    abiflags: str
    platform: str  # sysconfig's: "linux-x86_64", "linux-aarch64", "macosx-11.0-arm64"
    libc: tuple[str, str]  # ("glibc", "2.36"), ("", "") for musl
    markers: dict
    pip: bool
    installed: dict  # canonical name -> {"version", "requires"}

    @classmethod
    def parse(cls, text: str) -> "DeviceFacts":
        data = json.loads(text)
        return cls(python=data["python"], implementation=data["implementation"], abiflags=data["abiflags"],
                   platform=data["platform"], libc=tuple(data["libc"]), markers=data["markers"], pip=data["pip"],
                   installed=data["installed"])

    def describe(self) -> str:
        return f"{self.implementation} {self.python} on {self.platform}"


@dataclass(frozen=True)
class MissingWheel:
    requirement: str  # what `pip download` fetches: "psutil==7.2.2", or a range when nothing here fits
    with_dependencies: bool  # not walked here: pip download fetches its dependencies too

    @property
    def name(self) -> str:
        return canonical_name(Requirement(self.requirement).name)


def read_constraints(path: Path) -> dict[str, SpecifierSet]:
    """constraints.txt (``name==version`` lines, ``#`` comments) by canonical name."""
    pins: dict[str, SpecifierSet] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[canonical_name(req.name)] = pins.get(canonical_name(req.name), SpecifierSet()) & req.specifier
    return pins


def fits(version: str, spec: SpecifierSet, unreadable: bool = False) -> bool:
    """Is this installed version inside the specifier? (``unreadable``: the answer for a version packaging
    cannot parse.)"""
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return unreadable


def applies(req: Requirement, markers: dict, extras: frozenset[str] = frozenset()) -> bool:
    """Does the requirement's marker hold in this environment (for one of these extras)?"""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**markers, "extra": extra}) for extra in extras | {""})


def _parsed(lines: list[str]) -> list[Requirement]:
    found = []
    for line in lines:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue  # pip would refuse it on the device too, in its own words
    return found


def missing(roots: list[str], constraints: dict[str, SpecifierSet], device: DeviceFacts,
            here: dict | None = None) -> list[MissingWheel]:
    """What the device lacks of ``roots`` and everything they need in turn (sorted by name).

    ``here``: this environment's installed distributions (launcher.pyenv.python_facts.installed()), the versions
    a lacking requirement is pinned to."""
    here = installed() if here is None else here
    todo = [(req, frozenset()) for req in _parsed(roots)]
    seen: set[tuple[str, str, frozenset]] = set()
    needs: dict[str, MissingWheel] = {}
    while todo:
        req, extras_of_parent = todo.pop()
        if not applies(req, device.markers, extras_of_parent):
            continue
        name = canonical_name(req.name)
        spec = req.specifier & constraints.get(name, SpecifierSet())
        key = (name, str(spec), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        source = device.installed.get(name)
        if source is None or not fits(source["version"], spec):
            source = here.get(name)
            if source is None or not fits(source["version"], spec):
                needs.setdefault(name, MissingWheel(f"{name}{spec}", with_dependencies=True))
                continue
            needs.setdefault(name, MissingWheel(f"{name}=={source['version']}", with_dependencies=False))
        todo += [(r, frozenset(req.extras)) for r in _parsed(source["requires"])]
    return [needs[name] for name in sorted(needs)]


def _platforms(platform: str, libc: tuple[str, str]) -> list[str]:
    """pip's ``--platform`` values a wheel for this machine may carry (pip expands macOS, not manylinux_2_X)."""
    tag = platform.replace("-", "_").replace(".", "_")
    if not tag.startswith("linux_") or libc[0] != "glibc":
        return [tag]
    arch = tag[len("linux_"):]
    major, minor = (int(part) for part in libc[1].split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, OLDEST_MANYLINUX - 1, -1)] if major == 2 else []
    tags += [f"{legacy}_{arch}" for since, legacy in LEGACY_MANYLINUX if major == 2 and minor >= since]
    return [*tags, tag]


def download_target(device: DeviceFacts) -> list[str]:
    """``pip download`` flags that select wheels for the device's interpreter and platform, not this one's."""
    major, minor = device.python.split(".")[:2]
    impl = IMPLEMENTATIONS.get(device.implementation, device.implementation)
    flags = ["--only-binary=:all:", "--python-version", f"{major}.{minor}", "--implementation", impl,
             "--abi", f"{impl}{major}{minor}{device.abiflags}", "--abi", "abi3", "--abi", "none"]
    for platform in _platforms(device.platform, device.libc):
        flags += ["--platform", platform]
    return flags
