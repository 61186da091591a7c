"""Nodes the launcher knows are gone or away, so the server neither samples nor waits for them; and clients
restarting as they asked, whose new node the server waits for.

    add_lost(run_dir, 6909533205536486083)      # the launcher, when a client process dies
    set_away(run_dir, "pi-01", {42})            # ... when a device drops off the network
    set_away(run_dir, "pi-01", set())           # ... and when it is back
    read_lost(run_dir)                          # the ServerApp, while it waits for replies
    # {6909533205536486083}
    add_lost_client(run_dir, 3)                 # a client lost for good (no restart left)
    read_lost_clients(run_dir)                  # the ServerApp waits for that many fewer nodes to connect
    # {3}
    start_renewal(run_dir, 1, 4242)             # client 1's node 4242 leaves to be restarted (its memory grew)
    end_renewal(run_dir, 1)                     # ... and its new node is connected
    read_renewals(run_dir)                      # the ServerApp waits for the renewing ones, never samples the old
    # Renewals(pending=set(), nodes={4242})

Flower notices a lost SuperNode only after about a minute of missed heartbeats;
the launcher sees its process end at once and writes the node id here
(``<run-dir>/server/lost_nodes.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

NAME = Path("server") / "lost_nodes.json"  # for good: dead processes
AWAY = Path("server") / "away_nodes.json"  # for now: {device: [node ids]} while it is unreachable
LOST_CLIENTS = Path("server") / "lost_clients.json"  # for good, no restart left: client numbers
RENEWING = Path("server") / "renewing"  # <client>.json: {"node": its old node id, "pending": until the new one is up}


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


@dataclass(frozen=True)
class Renewals:
    pending: set[int]  # clients whose node left to be restarted and whose new node is not connected yet
    nodes: set[int]  # the nodes that left so (never to sample or wait for)


def start_renewal(run_dir: str | Path, client: int, node_id: int) -> None:
    """Written by a node that will leave to be restarted, before its last reply leaves it: the server's next
    round then waits for the client's new node instead of sampling the old one (one file per client: no two
    writers)."""
    folder = Path(run_dir) / RENEWING
    folder.mkdir(parents=True, exist_ok=True)
    _store(folder / f"{int(client)}.json", {"node": int(node_id), "pending": True})


def end_renewal(run_dir: str | Path, client: int) -> None:
    """Written by the client's new node once it is connected (nothing when the client was not renewing)."""
    path = Path(run_dir) / RENEWING / f"{int(client)}.json"
    data = _load(path, None)
    if isinstance(data, dict) and data.get("pending"):
        _store(path, {**data, "pending": False})


def read_renewals(run_dir: str | Path) -> Renewals:
    pending, nodes = set(), set()
    for path in (Path(run_dir) / RENEWING).glob("*.json"):
        data = _load(path, None)
        try:
            nodes.add(int(data["node"]))
            if data["pending"]:
                pending.add(int(path.stem))
        except (TypeError, ValueError, KeyError):
            continue
    return Renewals(pending, nodes)
