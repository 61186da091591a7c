"""Flower's simulation runtime seen from the ServerApp: which client each virtual node is, messages by node.

    registered_partitions(grid)     # {node id: partition id} under the simulation runtime, else None
    index_messages_by_node(grid)    # the runtime finds a node's messages without scanning them all

Flower 1.41's simulation runtime (flwr/server/superlink/fleet/vce/vce_api.py) registers its N virtual
nodes one after another in one in-memory LinkState (``_register_nodes``: the i-th created node is
partition i) and gives each the node config ``partition-id`` = i (``_register_node_info_stores``). The
ServerApp runs in that process on an ``InMemoryGrid`` over the same state, whose ``nodes`` dict keeps
the order they were created in: its i-th key is the node of partition i. So the ServerApp knows every
virtual node's partition without a message per node. Beyond Flower's public API: pinned by
tests/test_flower_internals.py. Off the simulation runtime (process mode, devices) the grid talks to a
SuperLink over the network, holds no such state, and this returns None.

The runtime hands messages to its workers from a thread that, every 0.1 s, asks the state for each of
the N nodes' undelivered messages (``add_messages_to_queue``: ``get_message_ins(node_id, limit=1)``),
and the in-memory state answers each ask by checking every stored message (delivered ones stay until
the server pulls their replies): N x M checks a sweep, under the state's lock. With 50 in flight,
measured on 2 busy cores: 0.5 s a sweep at 500 nodes, 8 s at 3500 (the final evaluation's 17 ms a client).
``index_messages_by_node`` keeps, beside the state, each node's stored message ids, so an ask for a
node with nothing looks at nothing, and one with a message checks that message as Flower does.
"""

from __future__ import annotations

import threading

from flwr.app import Message
from flwr.server.superlink.linkstate import InMemoryLinkState
from flwr.supercore.date import now


def _simulation_state(grid) -> InMemoryLinkState | None:
    try:
        state = grid.state
    except AttributeError:
        return None
    return state if isinstance(state, InMemoryLinkState) else None


def registered_partitions(grid) -> dict[int, int] | None:
    """node id -> partition id, by registration order in the simulation runtime's state; None elsewhere.

    ``grid`` may be a wrapper that forwards attributes (simulator.deadline_grid, simulator.sampling)."""
    state = _simulation_state(grid)
    if state is None:
        return None
    with state.lock:  # nodes may still be registering: the order so far is already final
        order = list(state.nodes)
    return {node: partition for partition, node in enumerate(order)}


class MessagesByNode:
    """The state's ``store_message_ins`` and ``get_message_ins``, with each node's stored message ids kept."""

    def __init__(self, state: InMemoryLinkState) -> None:
        self._state = state
        self._store = state.store_message_ins
        self._pending: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        with state.lock:
            for message_id, message in state.message_ins_store.items():
                self._pending.setdefault(message.metadata.dst_node_id, []).append(message_id)

    def store_message_ins(self, message: Message) -> str | None:
        message_id = self._store(message)
        if message_id is not None:
            with self._lock:
                self._pending.setdefault(message.metadata.dst_node_id, []).append(message_id)
        return message_id

    def get_message_ins(self, node_id: int, limit: int | None, *, run_id: int | None = None) -> list[Message]:
        """As InMemoryLinkState.get_message_ins, over this node's messages only; delivered ones leave the index."""
        if limit is not None and limit < 1:
            raise AssertionError("`limit` must be >= 1")
        with self._lock:
            ids = self._pending.pop(node_id, None)
        if not ids:
            return []
        state, found, kept = self._state, [], []
        with state.lock:
            for message_id in ids:
                if limit and len(found) == limit:
                    kept.append(message_id)
                    continue
                state._check_stored_messages({message_id})  # expired or out of the federation: deleted
                message = state.message_ins_store.get(message_id)
                if message is None or message.metadata.delivered_at != "":
                    continue
                if run_id is not None and message.metadata.run_id != run_id:
                    kept.append(message_id)
                    continue
                found.append(message)
        if kept:
            with self._lock:
                self._pending[node_id] = kept + self._pending.get(node_id, [])
        delivered_at = now().isoformat()
        for message in found:
            message.metadata.delivered_at = delivered_at
        return found


def index_messages_by_node(grid) -> MessagesByNode | None:
    """Under the simulation runtime, its state's message store and lookup by node (above); None elsewhere."""
    state = _simulation_state(grid)
    if state is None:
        return None
    if isinstance(getattr(state, "get_message_ins", None), _IndexedLookup):
        return state.get_message_ins.index
    index = MessagesByNode(state)
    state.store_message_ins = index.store_message_ins
    state.get_message_ins = _IndexedLookup(index)
    return index


class _IndexedLookup:
    """The bound lookup set on the state (a callable that says which index it is)."""

    def __init__(self, index: MessagesByNode) -> None:
        self.index = index

    def __call__(self, node_id: int, limit: int | None, *, run_id: int | None = None) -> list[Message]:
        if node_id not in self.index._pending:  # most of a sweep's N asks: no lock, no call (a message stored
            return []  # while this reads is found by the next sweep, 0.1 s on)
        return self.index.get_message_ins(node_id, limit, run_id=run_id)
