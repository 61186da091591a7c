"""What a user adds to every client's node config (``--node-config``, hosts.toml's ``node-config``).

    >>> extra = parse_node_config_option('dataset-path="data/part_{i}" batch=32')
    >>> extra
    {'dataset-path': 'data/part_{i}', 'batch': 32}
    >>> for_client(extra, client=2, num_clients=3)
    {'dataset-path': 'data/part_2', 'batch': 32}
    >>> node_config_words({"dataset-path": "data/part 2", "batch": 32})
    'dataset-path="data/part 2" batch=32'

The option takes Flower's own syntax (``flower-supernode --node-config``), read by Flower's
own parser; in a string value ``{i}`` becomes the client number and ``{n}`` the client count.
The keys the launcher sets itself (``partition-id``, ``num-partitions``, and the built-in
app's ``client-dir`` and ``data-file``) cannot be given. A device's ``node-config`` table
in hosts.toml wins over the option for that device's clients. For a device, each client's
values travel as ``client_<i>/extra_node_config.toml`` (EXTRA_FILE) in its staged files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import tomllib

from contract.errors import InputError
from launcher.flower.config_args import PAIR, parse_config_pairs

RESERVED = ("partition-id", "num-partitions", "client-dir", "data-file")
EXTRA_FILE = "extra_node_config.toml"
_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class NodeConfigError(InputError):
    """The one line a bad node config gets."""


def parse_node_config_option(text: str, where: str = "--node-config") -> dict:
    """``'k=v k2="text"'`` -> {k: v}, as a SuperNode reads its ``--node-config``; checked."""
    import click  # noqa: PLC0415

    if PAIR.sub("", text).strip() or not text.strip():
        raise NodeConfigError(f"{where} {text!r}: expected key=value pairs separated by spaces "
                              f"(strings in quotes: key=\"text\")")
    try:
        values = parse_config_pairs(text)
    except (click.ClickException, ValueError):
        raise NodeConfigError(f"{where} {text!r}: a value is no TOML value (bool, int, float, or a "
                              f"string in quotes: key=\"text\")") from None
    return check_node_config(values, where)


def check_node_config(values: dict, where: str) -> dict:
    """Flat keys of scalars, none of the launcher's own, each value one a SuperNode can be given."""
    for key, value in values.items():
        if key in RESERVED:
            raise NodeConfigError(f"{where}: {key} is set by fl-launch for every client "
                                  f"(partition-id and num-partitions: the client number and count)")
        if not isinstance(key, str) or not _KEY.match(key):
            raise NodeConfigError(f"{where}: key {key!r} must be letters, digits, '-', '_' (and '.')")
        if isinstance(value, dict):
            raise NodeConfigError(f"{where}: {key} must be a bool, int, float or string, not a table")
        if not isinstance(value, (str, int, float, bool)):
            raise NodeConfigError(f"{where}: {key} must be a bool, int, float or string")
        if isinstance(value, str) and '"' in value and ("'" in value or "\n" in value):
            raise NodeConfigError(f"{where}: {key}'s value holds both kinds of quote (a SuperNode cannot be given it)")
    return dict(values)


def for_client(extra: dict, client: int, num_clients: int) -> dict:
    """The values of one client: ``{i}`` and ``{n}`` in strings replaced."""
    return {key: value.replace("{i}", str(client)).replace("{n}", str(num_clients)) if isinstance(value, str)
            else value for key, value in extra.items()}


def toml_value(value) -> str:
    """A value as TOML (and as Flower's ``--node-config`` pair pattern takes it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value) if '"' not in value else f"'{value}'"
    return repr(value)


def node_config_words(values: dict) -> str:
    return " ".join(f"{key}={toml_value(value)}" for key, value in values.items())


def toml_lines(values: dict) -> str:
    """``"key" = value`` lines (quoted keys: a dotted key stays one flat key)."""
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in values.items())


def write_extra(client_dir: Path, values: dict) -> None:
    client_dir.mkdir(parents=True, exist_ok=True)
    (client_dir / EXTRA_FILE).write_text(toml_lines(values))


def read_extra(client_dir: Path) -> dict:
    try:
        with open(client_dir / EXTRA_FILE, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
