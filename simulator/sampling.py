"""Which clients take part in a round: K partition ids drawn from the seed, then their node ids.

    choose_partitions(range(3500), k=50, seed=0, server_round=3)[:4]     # the same on every run
    # [2071, 1590, 2740, 1142]
    directory = NodeDirectory()
    directory.learn(grid, node_ids)          # the partition-id of each node it has not met
    directory.nodes_for([2071, 1590], among=node_ids)      # -> their Flower node ids

Flower's own sampler draws over node ids, which are random for each run (and new
when a client restarts), so the same seed would not pick the same clients. Here
the draw is over partition ids. Under Flower's simulation runtime the ServerApp
reads each virtual node's partition from the runtime's own registration
(simulator.simulation_nodes), with no message; elsewhere (process mode, devices)
each node says its partition once, in a ``query.partition`` message the built-in
ClientApp answers without touching torch or its data.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Message, RecordDict

from simulator.simulation_nodes import registered_partitions

PARTITION_QUERY = "query.partition"


def choose_partitions(available: Iterable[int], k: int, seed: int, server_round: int) -> list[int]:
    """``k`` of the available partition ids (all when fewer), drawn from (seed, round) only."""
    pool = sorted(set(available))
    if k >= len(pool):
        return pool
    rng = np.random.default_rng([seed, server_round])
    return sorted(int(p) for p in rng.choice(pool, size=k, replace=False))


class NodeDirectory:
    """node id -> partition id: from the simulation runtime's registration, else by asking each node once."""

    def __init__(self) -> None:
        self.partition_of: dict[int, int] = {}

    def learn(self, grid, node_ids: Iterable[int], timeout: float | None = None) -> None:
        unknown = [n for n in node_ids if n not in self.partition_of]
        registered = registered_partitions(grid) if unknown else None
        if registered:
            self.partition_of.update((n, registered[n]) for n in unknown if n in registered)
            unknown = [n for n in unknown if n not in self.partition_of]
        if not unknown:
            return
        asks = [Message(RecordDict(), message_type=PARTITION_QUERY, dst_node_id=n) for n in unknown]
        for reply in grid.send_and_receive(asks, timeout=timeout):
            if not reply.has_error() and "metrics" in reply.content:
                self.partition_of[reply.metadata.src_node_id] = int(reply.content["metrics"]["partition-id"])

    def nodes_for(self, partitions: Iterable[int], among: Iterable[int]) -> list[int]:
        """The node ids, out of ``among`` (connected and not lost), that hold these partitions."""
        wanted = set(partitions)
        by_partition = {self.partition_of[n]: n for n in among if self.partition_of.get(n) in wanted}
        return [by_partition[p] for p in sorted(by_partition)]


class ChosenNodes:
    """A grid whose ``get_node_ids`` lists only the chosen nodes, so Flower's strategy sends to exactly them."""

    def __init__(self, grid, node_ids: list[int]) -> None:
        self._grid = grid
        self._node_ids = list(node_ids)

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)
