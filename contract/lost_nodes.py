"""Nodes the launcher knows are gone or away, so the server neither samples nor waits for them.

    add_lost(run_dir, 6909533205536486083)      # the launcher, when a client process dies
    set_away(run_dir, "pi-01", {42})            # ... when a device drops off the network
    set_away(run_dir, "pi-01", set())           # ... and when it is back
    read_lost(run_dir)                          # the ServerApp, while it waits for replies
    # {6909533205536486083}
    add_lost_client(run_dir, 3)                 # a client lost for good (no restart left)
    read_lost_clients(run_dir)                  # the ServerApp waits for that many fewer nodes to connect
    # {3}

Flower notices a lost SuperNode only after about a minute of missed heartbeats;
the launcher sees its process end at once and writes the node id here
(``<run-dir>/server/lost_nodes.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

NAME = Path("server") / "lost_nodes.json"  # for good: dead processes
AWAY = Path("server") / "away_nodes.json"  # for now: {device: [node ids]} while it is unreachable
LOST_CLIENTS = Path("server") / "lost_clients.json"  # for good, no restart left: client numbers


def _load(path: Path, empty):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return empty


def _store(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def read_lost(run_dir: str | Path) -> set[int]:
    """Every node not to sample or wait for: lost for good, or away right now."""
    try:
        lost = {int(n) for n in _load(Path(run_dir) / NAME, [])}
        away = {int(n) for ids in _load(Path(run_dir) / AWAY, {}).values() for n in ids}
    except (TypeError, ValueError, AttributeError):
        return set()
    return lost | away


def add_lost(run_dir: str | Path, node_id: int) -> None:
    path = Path(run_dir) / NAME
    _store(path, sorted({int(n) for n in _load(path, [])} | {int(node_id)}))


def set_away(run_dir: str | Path, device: str, node_ids: set[int]) -> None:
    path = Path(run_dir) / AWAY
    data = _load(path, {})
    data[device] = sorted(node_ids)
    _store(path, data)


def add_lost_client(run_dir: str | Path, client: int) -> None:
    path = Path(run_dir) / LOST_CLIENTS
    _store(path, sorted({int(c) for c in _load(path, [])} | {int(client)}))


def read_lost_clients(run_dir: str | Path) -> set[int]:
    try:
        return {int(c) for c in _load(Path(run_dir) / LOST_CLIENTS, [])}
    except (TypeError, ValueError):
        return set()
