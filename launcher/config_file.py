"""Options from a file: a TOML file of fl-launch's options, or an earlier run's run.json.

    $ cat exp.toml
    client-num = 50
    dataset = "femnist"
    data-dir = "~/data/femnist"
    clients-per-round = 10
    $ fl-launch --config exp.toml --rounds 5                 # the command line wins over the file
    $ fl-launch --config logs/20261124-140643-d1e1/run.json  # that run again, in a new run folder

Keys are the long option names, with '-' or '_'. From a run.json the run's own
options are taken, except its kill tag and --detach (a repeat gets its own).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

NOT_REPEATED = ("kill_tag", "detach")


class ConfigError(ValueError):
    """The one line a bad --config file gets."""


def read_config(path: str | Path, known: set[str]) -> dict:
    """{option name: value} from the file, every key checked against ``known`` (option names, '_' form)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config {path}: cannot read it ({type(err).__name__})") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"--config {path}: not JSON ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
            raise ConfigError(f"--config {path}: a .json config must be a run's run.json (with its 'options')")
        values = {k: v for k, v in data["options"].items() if k not in NOT_REPEATED}
    else:
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"--config {path}: not TOML ({err})") from None
    options = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"--config {path}: unknown option {key!r}")
        if isinstance(value, (dict, list)):
            raise ConfigError(f"--config {path}: {key} must be a single value")
        options[name] = value
    return options
