"""What a Python environment is and holds, as plain data: read here, or sent as source to a device's Python.

    facts = environment_facts()
    facts["python"], facts["platform"], facts["libc"], facts["pip"]
    # ('3.11.7', 'linux-x86_64', ['glibc', '2.36'], True)
    facts["installed"]["flwr"]
    # {'version': '1.41.0', 'requires': ['click<8.2.0', ..., 'ray==2.55.1; extra == "simulation"']}

``fl-launch --install`` runs this file with the device's interpreter (``python -c SOURCE``, one SSH call)
and compares the answer with what the launcher's wheel needs. Standard library only: the device's Python
may hold nothing else yet, not even pip.
"""

import importlib.util
import json
import os
import platform
import re
import sys
import sysconfig
from importlib.metadata import distributions


def canonical_name(name: str) -> str:
    """PEP 503's normal form: ``Typing_Extensions`` and ``typing.extensions`` are ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_text(info) -> str:
    text = f"{info.major}.{info.minor}.{info.micro}"
    return text if info.releaselevel == "final" else f"{text}{info.releaselevel[0]}{info.serial}"


def marker_environment() -> dict:
    """The values PEP 508 markers (``; sys_platform == "linux"``) are evaluated against, as packaging computes them."""
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": _version_text(sys.implementation.version),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def installed() -> dict:
    """Each distribution this interpreter imports, by canonical name: the first on sys.path wins, as for import."""
    found = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and canonical_name(name) not in found:
            found[canonical_name(name)] = {"version": dist.version, "requires": list(dist.requires or [])}
    return found


def environment_facts() -> dict:
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "abiflags": getattr(sys, "abiflags", ""),
        "platform": sysconfig.get_platform(),
        "libc": list(platform.libc_ver()),
        "markers": marker_environment(),
        "pip": importlib.util.find_spec("pip") is not None,
        "installed": installed(),
    }


if __name__ == "__main__":
    print(json.dumps(environment_facts()))
