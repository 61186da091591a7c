"""Write the built-in app as a Flower app folder that ``flwr run`` can build a FAB from.

    write_app_dir("run/app", RunSettings(rounds=3))
    # PosixPath('run/app')
    run_dir_config(Path("/data/logs/run"))          # each start: where the run folder is now
    # "run-dir='/data/logs/run'"
    $ flwr run run/app CONNECTION --run-config "run-dir='$PWD/run'"   # also works by hand

The components live in the installed ``simulator`` package, so the folder holds
only pyproject.toml (its flwr dependency: the release installed here); its
``[tool.flwr.app.config]`` is the run's settings, which also declares every key a
``--run-config`` may override. The settings hold no
absolute path of the run folder (``run-dir = '.'``, the checkpoint relative to it),
so a copied or moved run folder goes on where it is now.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from contract.run_settings import RunSettings

SERVERAPP = "simulator.server_app:app"
CLIENTAPP = "simulator.client_app:app"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if "'" in text or "\n" in text:
        raise ValueError(f"cannot write {text!r} into the app config")
    return f"'{text}'"


def run_dir_config(run_dir: Path) -> str:
    """The ``flwr run --run-config`` override that tells the app where its run folder is now."""
    return f"run-dir={_toml_value(Path(run_dir).resolve())}"


def write_app_dir(folder: str | Path, settings: RunSettings) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = "\n".join(f"{key} = {_toml_value(v)}" for key, v in settings.to_config().items())
    (folder / "pyproject.toml").write_text(
        f"""# Written by fl-launch for one run. `flwr run` builds its FAB from this folder.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fl-launch-lenet"
version = "1.0.0"
description = "fl-launch's built-in LeNet5 FedAvg app"
license = "Apache-2.0"
dependencies = ["flwr=={version('flwr')}", "torch==2.13.0"]

[tool.flwr.app]
publisher = "fl-launch"

[tool.flwr.app.components]
serverapp = "{SERVERAPP}"
clientapp = "{CLIENTAPP}"

[tool.flwr.app.config]
{config}
""",
        encoding="utf-8",
    )
    return folder
