"""Are a Flower app's declared dependencies installed in the Python that will run it?

    needs = declared_requirements(Path("~/work/my-app"))      # [project] dependencies, flwr left out
    result = check_requirements(needs, installed_versions(), marker_environment())
    result.missing, result.mismatched
    # ([<Requirement('torchvision==0.20.0')>], [(<Requirement('torch==2.8.0')>, '2.13.0')])
    result.missing_line("python3")
    # "the app needs torchvision==0.20.0, which is not installed: python3 -m pip install 'torchvision==0.20.0'"

Flower runs an app with whatever its Python holds (runtime dependency installation is off), so a
missing distribution is a ServerApp or ClientApp that dies at import: refused before anything starts.
A version outside the specifier is only a warning: apps pin what they were written with (Flower's
embedded-devices example pins torch==2.8.0) and usually run on a neighbouring release. ``flwr`` itself
is checked elsewhere (--check compares the launcher's Flower with each device's). The check runs here
(where the ServerApp and local clients run) and, with --hosts, on each device from the same probe as
--check (launcher.devices.preflight).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from packaging.requirements import InvalidRequirement, Requirement

from contract.errors import InputError
from launcher.pyenv.python_facts import canonical_name, installed
from launcher.pyenv.wheel_needs import applies, fits

NOT_CHECKED = {"flwr"}


class RequirementsError(InputError):
    """An app whose pyproject.toml declares a dependency no one can read."""


def declared_requirements(app_path: Path) -> list[Requirement]:
    """The app's ``[project] dependencies``, parsed; flwr left out."""
    try:
        data = tomllib.loads((app_path / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []  # read_app has refused such a folder already
    found = []
    for text in data.get("project", {}).get("dependencies", []) or []:
        try:
            requirement = Requirement(str(text))
        except InvalidRequirement as err:
            raise RequirementsError(f"--app {app_path}: pyproject.toml's dependency {text!r} is no "
                                    f"requirement ({err})") from None
        if canonical_name(requirement.name) not in NOT_CHECKED:
            found.append(requirement)
    return found


def installed_versions() -> dict[str, str]:
    """This Python's distributions: canonical name -> version."""
    return {name: dist["version"] for name, dist in installed().items()}


@dataclass(frozen=True)
class RequirementCheck:
    missing: list[Requirement] = field(default_factory=list)
    mismatched: list[tuple[Requirement, str]] = field(default_factory=list)  # (requirement, installed version)

    def missing_line(self, python: str, where: str = "") -> str:
        """One line for the first missing distribution: its name and the pip command that installs it."""
        requirement = self.missing[0]
        more = f" (and {len(self.missing) - 1} more: {', '.join(r.name for r in self.missing[1:])})" \
            if len(self.missing) > 1 else ""
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        need = f"{requirement.name}{extras}{requirement.specifier}"  # no marker: it held here
        return (f"{where}the app needs {requirement.name}, which is not installed in {python}{more}: "
                f"{python} -m pip install '{need}'")

    def warning_lines(self, python: str, where: str = "") -> list[str]:
        return [f"warning: {where}the app asks for {requirement}; {python} has {requirement.name} {version} "
                f"(the run goes on)" for requirement, version in self.mismatched]


def check_requirements(requirements: list[Requirement], versions: dict[str, str], markers: dict) -> RequirementCheck:
    """Each requirement whose marker holds for ``markers``: missing, or installed outside its specifier."""
    result = RequirementCheck()
    for requirement in requirements:
        if not applies(requirement, markers):
            continue
        version = versions.get(canonical_name(requirement.name))
        if version is None:
            result.missing.append(requirement)
        elif not fits(version, requirement.specifier, unreadable=True):  # unreadable: nothing to say about it
            result.mismatched.append((requirement, version))
    return result
