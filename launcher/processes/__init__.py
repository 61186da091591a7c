"""A run's local processes: the process table and roles, fork server, kill tags, cgroups, ports,
node commands, restarts, a host's GPUs and how its clients share them.

    cgroup.py        A run's processes as one kernel cgroup: who belongs to a run, whatever they do to their
                     environment
    clock.py         Timestamps as run.json and a device's agent.json write them
    entry_modules.py The modules fl-launch runs as processes of their own, named once: ``python -m`` targets and
                     preloads
    gpus.py          A host's GPUs (asked in a Python of its own) and how its local clients share them
    fork_server.py   One process that imports torch, Flower and the app once, then forks every client process
                     (and the built-in app's ServerApp, for the SuperExec)
    node_config.py   What a user adds to every client's node config (``--node-config``, hosts.toml's ``node-config``)
    nodes.py         How one client node is started, on this machine or on a device: the same two processes
    ports.py         Free TCP ports on 127.0.0.1, picked by the kernel
    restarts.py      What happens when one of a client's two processes dies mid-run, wherever it runs
    roles.py         The roles a run's processes play, as run.json and agent.json record them
    table.py         Spawn a run's processes, each in its own session, reap them, stop them TERM then KILL
    tagged.py        Find and stop the processes that carry a run's kill tag, by exact environment match

Imports flower/ (the programs it starts), pyenv/ and contract/; never apps/, devices/, run/ or cli/.
"""
