"""Nodes the launcher knows are gone, so the server neither samples nor waits for them.

    >>> add_lost(run_dir, 6909533205536486083)      # the launcher, when a client process dies
    >>> read_lost(run_dir)                          # the ServerApp, while it waits for replies
    {6909533205536486083}

Flower notices a lost SuperNode only after about a minute of missed heartbeats;
the launcher sees its process end at once and writes the node id here
(``<run-dir>/server/lost_nodes.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

NAME = Path("server") / "lost_nodes.json"


def read_lost(run_dir: str | Path) -> set[int]:
    try:
        return {int(n) for n in json.loads((Path(run_dir) / NAME).read_text())}
    except (OSError, ValueError, TypeError):
        return set()


def add_lost(run_dir: str | Path, node_id: int) -> None:
    path = Path(run_dir) / NAME
    nodes = sorted(read_lost(run_dir) | {int(node_id)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(nodes))
    tmp.replace(path)
