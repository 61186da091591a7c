"""Options from a file: a TOML file of fl-launch's options, or an earlier run's run.json.

    $ cat exp.toml
    client-num = 50
    dataset = "femnist"
    data-dir = "~/data/femnist"
    clients-per-round = 10
    $ fl-launch --config exp.toml --rounds 5                 # the command line wins over the file
    $ fl-launch --config logs/20261124-140643-d1e1/run.json  # that run again, in a new run folder

Keys are the long option names, with '-' or '_'. From a run.json the run's own
options are taken, except its kill tag and --detach (a repeat gets its own). Each entry
keeps its line, so a value the option's type refuses is named by file and line:

    [(e.key, e.value, e.line) for e in read_config("exp.toml", known)]
    # [('client-num', 50, 1), ('dataset', 'femnist', 2), ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from contract.errors import InputError
from contract.user_toml import key_line, parse

NOT_REPEATED = ("kill_tag", "detach")
MAX_BYTES = 1 << 20


class ConfigError(InputError):
    """The one line a bad --config file gets."""


@dataclass(frozen=True)
class ConfigEntry:
    name: str  # the option's name, '_' form
    key: str  # as the file spells it
    value: object
    line: int  # 1-based; 0 where it cannot be found


def read_config(path: str | Path, known: set[str]) -> list[ConfigEntry]:
    """Each option the file sets, every key checked against ``known`` (option names, '_' form)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_file():
        raise ConfigError(f"--config {path}: not a regular file")
    if path.is_file() and path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"--config {path}: {path.stat().st_size} bytes; an options file is under {MAX_BYTES}")
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
        values = parse(text, f"--config {path}", ConfigError)
    entries = []
    for key, value in values.items():
        name = key.replace("-", "_")
        line = key_line(text, key, '"options"' if path.suffix == ".json" else "")
        where = f"--config {path}:{line}" if line else f"--config {path}"
        if name not in known:
            raise ConfigError(f"{where}: unknown option {key!r}")
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: {key} must be a single value")
        entries.append(ConfigEntry(name, key, value, line))
    return entries
