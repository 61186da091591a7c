"""Distributions a device may hold a build of its own (a Jetson's CUDA torch), and the range fl-launch takes.

    OWN_BUILDS["torch"]
    # 'torch>=2.1,<2.14'
    kept_builds(["torch>=2.1,<2.14", "psutil"], {"torch": SpecifierSet("==2.13.0")}, device)
    # {'torch': '2.5.0a0+872d972e41.nv24.08'}   a device's own torch inside the range: kept

setup.py reads OWN_BUILDS (with ast: no import at build time) into its install_requires, so each range
is stated once. Inside that range a device's own build is kept: ``fl-launch --install`` neither pins it
to constraints.txt (whose exact pin chooses what is installed where nothing fits) nor replaces it with the
index's wheel; ``--check`` reports one outside the range. Only torch today: its builds are made for the
hardware (CUDA on a Jetson), a wheel from the index is not.
"""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from launcher.pyenv.python_facts import canonical_name
from launcher.pyenv.wheel_needs import DeviceFacts, fits

OWN_BUILDS = {"torch": "torch>=2.1,<2.14"}  # tested here with 2.13.0 (constraints.txt)


def own_range(name: str) -> SpecifierSet:
    return Requirement(OWN_BUILDS[name]).specifier


def in_range(name: str, installed_version: str | None) -> bool:
    """Is this version of an own-build distribution inside fl-launch's range? (None: not installed.)"""
    return installed_version is not None and fits(installed_version, own_range(name))


def kept_builds(roots: list[str], constraints: dict[str, SpecifierSet], device: DeviceFacts) -> dict[str, str]:
    """The own-build distributions the device holds inside the roots' own range but outside constraints.txt's
    pin: name -> the device's version."""
    kept = {}
    for line in roots:
        req = Requirement(line)
        name = canonical_name(req.name)
        held = device.installed.get(name)
        if name in OWN_BUILDS and held is not None and fits(held["version"], req.specifier) \
                and not fits(held["version"], req.specifier & constraints.get(name, SpecifierSet())):
            kept[name] = held["version"]
    return kept
