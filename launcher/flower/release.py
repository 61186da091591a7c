"""The Flower releases fl-launch is tested with, and whether the one installed here is one of them.

    FLOWER_RANGE           # SpecifierSet('<1.43,>=1.41'): setup.py's flwr requirement, the same text
    installed_flower()     # Version('1.42.0'), or None where flwr is not installed
    unsupported_flower()   # None here; else one line: 'fl-launch runs on flwr>=1.41,<1.43; this Python has flwr 1.40.0'

Every Flower internal this package uses is pinned by tests/test_flower_internals.py for each release in the
range (CI runs them on both ends: .ci/run); code that differs between releases asks ``installed_flower()``
here, inside launcher/flower/ only. Reads the installed distribution's metadata: Flower is not imported.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

FLOWER_REQUIREMENT = ">=1.41,<1.43"  # setup.py's install_requires states the same (a test compares them)
FLOWER_RANGE = SpecifierSet(FLOWER_REQUIREMENT)


def installed_flower() -> Version | None:
    try:
        return Version(version("flwr"))
    except (PackageNotFoundError, InvalidVersion):
        return None


def unsupported_flower() -> str | None:
    """None when the installed flwr is in FLOWER_RANGE; else the one line saying which is here and what is needed."""
    here = installed_flower()
    if here is not None and here in FLOWER_RANGE:
        return None
    found = f"flwr {here}" if here is not None else "no flwr"
    return f"fl-launch runs on flwr{FLOWER_REQUIREMENT}; this Python has {found}"


def flwr_bin(name: str) -> str:
    """A Flower entry point from the same environment as this Python."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
