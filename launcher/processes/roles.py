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
    CLIENTAPP = "clientapp"  # launcher.flower.warm_clientapp, serving one node's tasks
    FLWR_RUN = "flwr-run"  # `flwr run APP --stream`
    TUNNEL = "tunnel"  # ssh -R to a device
    LINK = "link"  # launcher.fleet.link: an emulated client's link to the SuperLink (--fleet)
    AGENT = "agent"  # launcher.devices.agent on a device
    SUPERVISOR = "supervisor"  # launcher.run.supervisor


CLIENT_ROLES = [Role.CLIENTAPP, Role.SUPERNODE]  # the two processes of one client node
