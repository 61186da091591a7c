"""fl-launch: plan a run, spawn Flower's SuperLink and SuperNodes, supervise, stop.

    cli/        the fl-launch, fl-stats and fl-finish commands: options, errors, config files, live view
    run/        one run: its options and plan, its folder and status, the supervisor that runs it
    processes/  local processes: the process table, fork server, kill tags, cgroups, ports, nodes, restarts
    devices/    clients on other machines over SSH: hosts file, ssh, the device agent, preflight, install, TLS
    apps/       a user's own Flower app (--app): its folder, requirements, node config, task logs
    flower/     every use of Flower beyond its public API, each pinned by tests/test_flower_internals.py
    stats/      reading logs back: following a log, a client's history, tables and plots

Imports go down this list's direction: cli -> run -> (processes, devices, apps, stats) -> flower;
everything may import contract/ (the launcher-app contract), simulator/ (the built-in app, for
planning its data and model) and partitions/; nothing in those imports launcher/.
"""
