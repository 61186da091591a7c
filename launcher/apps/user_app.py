"""A user's own Flower app (``fl-launch --app DIR``), checked before anything starts.

    app = read_app("~/work/my-app", run_config="num-server-rounds=3 lr=0.1")
    app.path, app.serverapp, app.clientapp, app.run_config
    # (PosixPath('/home/me/work/my-app'), 'my_app.server_app:app', 'my_app.client_app:app', {...})

The folder is what ``flwr run`` takes: a pyproject.toml whose
``[tool.flwr.app.components]`` names a ServerApp and a ClientApp (Flower 1.41,
Message API). ``flwr run`` builds a FAB from it and the SuperLink hands that to
every SuperNode, on this machine or on a device, so the app's code travels by
itself (its dependencies must be installed where it runs). ``run_config`` uses
``flwr run --run-config``'s form, ``key=value ...``, and may only set keys the
app's ``[tool.flwr.app.config]`` declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from contract.errors import InputError


class AppError(InputError):
    """The one line a bad --app or --run-config gets."""


@dataclass
class UserApp:
    path: Path
    serverapp: str
    clientapp: str
    config: dict = field(default_factory=dict)  # the app's declared run config, flattened
    run_config: dict = field(default_factory=dict)  # the overrides given


def _flatten(table: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def parse_run_config(text: str) -> dict:
    """``key=value key2="text"`` -> {key: value}, values read as TOML (as flwr run reads them)."""
    pairs = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise AppError(f"--run-config {text!r}: expected key=value pairs separated by spaces")
        try:
            pairs[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise AppError(f"--run-config: {key}={value} is no TOML value (strings need quotes: "
                           f"{key}='{value}')") from None
    return pairs


def read_app(folder: str | Path, run_config: str | None = None) -> UserApp:
    path = Path(folder).expanduser().resolve()
    project = path / "pyproject.toml"
    if not project.is_file():
        raise AppError(f"--app {folder}: no pyproject.toml there (a Flower app folder, as flwr run takes)")
    try:
        data = tomllib.loads(project.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise AppError(f"--app {folder}: pyproject.toml is not TOML ({err})") from None
    flwr_app = data.get("tool", {}).get("flwr", {}).get("app", {})
    components = flwr_app.get("components", {})
    missing = [c for c in ("serverapp", "clientapp") if not isinstance(components.get(c), str)]
    if missing:
        raise AppError(f"--app {folder}: pyproject.toml's [tool.flwr.app.components] lacks {' and '.join(missing)}")
    declared = _flatten(flwr_app.get("config", {}))
    overrides = parse_run_config(run_config) if run_config else {}
    unknown = [k for k in overrides if k not in declared]
    if unknown:
        raise AppError(f"--run-config: the app declares no {unknown[0]!r} in [tool.flwr.app.config] "
                       f"(it has: {', '.join(declared) or 'none'})")
    return UserApp(path, components["serverapp"], components["clientapp"], declared, overrides)
