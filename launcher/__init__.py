"""fl-launch: plan a run, spawn Flower's SuperLink and SuperNodes, supervise, stop.

    cli/        the fl-launch, fl-stats and fl-finish commands: options, errors, config files, live view
    run/        one run: its options and plan, its folder and status, the supervisor that runs it
    devices/    clients on other machines over SSH: hosts file, ssh, the device agent, preflight, install, TLS
    processes/  local processes: the process table, fork server, kill tags, cgroups, ports, nodes, restarts
    apps/       a user's own Flower app (--app): its folder, requirements, task logs, the virtual wrapper
    flower/     every use of Flower beyond its public API, each pinned by tests/test_flower_internals.py
    stats/      reading logs back: following a log, a client's history, tables and plots
    fleet/      an emulated device fleet: fleet file, link emulator, CPU and memory limits
    pyenv/      a Python environment's facts: installed distributions, markers, what a wheel needs

Imports go down this list: cli/ -> run/ -> devices/ -> fleet/ -> apps/ -> processes/ -> flower/ (the one
adapter to Flower, a leaf: it imports only contract/), with pyenv/ beside flower/; stats/ reads logs for run/
and cli/. Any of them may import contract/ (the launcher-app contract, top level); run/ and cli/ also
simulator/ (the built-in app, to plan its data and model) and partitions/. Nothing in contract/, simulator/
or partitions/ imports launcher/.
tests/test_layout.py checks these rules on every import.
"""
