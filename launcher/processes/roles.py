"""The roles a run's processes play, as run.json and agent.json record them.

    table.spawn(Role.SUPERLINK, [...], log=...)
    table.alive(Role.FLWR_RUN)
    record["role"] == Role.CLIENTAPP       # a str enum: run.json's strings compare equal

Local roles (launcher.processes.table) and the remote ones a device's agent reports; ``supervisor``
is the run's own supervisor, recorded apart in run.json.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SUPERLINK = "superlink"  # flower-superlink (its SuperExec and ServerApp below it)
    FORKSERVER = "forkserver"  # launcher.processes.fork_server
    SUPERNODE = "supernode"  # flower-supernode --isolation process
    CLIENTAPP = "clientapp"  # launcher.flower.warm_clientapp, serving one node's tasks (a user's --app)
    CLIENT = "client"  # flower-supernode running its own tasks (the built-in app): one process per client
    FLWR_RUN = "flwr-run"  # `flwr run APP --stream`
    TUNNEL = "tunnel"  # ssh -R to a device
    LINK = "link"  # launcher.fleet.link: an emulated client's link to the SuperLink (--fleet)
    AGENT = "agent"  # launcher.devices.agent on a device
    SUPERVISOR = "supervisor"  # launcher.run.supervisor


CLIENT_ROLES = [Role.CLIENTAPP, Role.SUPERNODE, Role.CLIENT]  # a client's processes: CLIENT, or the other two
NODE_ROLES = frozenset({Role.SUPERNODE, Role.CLIENT})  # a client's Flower node (its supernode.log)
TASK_ROLES = frozenset({Role.CLIENTAPP, Role.CLIENT})  # what runs a client's tasks: the client is alive while it is
