"""Flower's own reader of ``--node-config`` / ``--run-config`` text, so fl-launch reads it as a SuperNode does.

    parse_config_pairs('partition-id=0 data-file="data/client_0.npz"')
    # {'partition-id': 0, 'data-file': 'data/client_0.npz'}
    load_node_config("client_0/node_config.toml")     # a file path works as for flower-supernode
    # {'partition-id': 0, ...}

Flower parses each ``key=value`` pair with the pattern in PAIR and the value as TOML; what the
pattern does not match it drops silently, which is why launcher.processes.node_config checks the
whole text against PAIR first. Pinned by tests/test_flower_internals.py.
"""

from __future__ import annotations

import re

# Flower's pair pattern (flwr.common.config.parse_config_args): what it does not match, it drops
PAIR = re.compile(r"(\S+?)=(\'[^\']*\'|\"[^\"]*\"|\S+)")


def parse_config_pairs(text: str) -> dict:
    """``'k=v k2="text"'`` -> {k: v}; raises click.ClickException or ValueError on a value that is no TOML."""
    from flwr.common.config import parse_config_args  # noqa: PLC0415 (imports Flower only when used)

    return parse_config_args([text])


def load_node_config(arg: str) -> dict:
    """A ``--node-config`` as the SuperNode reads it: ``'k=v ...'`` or a TOML file."""
    return parse_config_pairs(arg)
