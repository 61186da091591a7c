"""The modules fl-launch runs as processes of their own, named once: ``python -m`` targets and preloads.

    [sys.executable, "-m", SUPERVISOR, str(run_dir)]              # fl-launch --detach
    table.fork("supernode", QUICK_SUPERNODE, [...])                # the fork server runs its main
    f"python3 -m {DEVICE_AGENT} --run-dir runs/RUN ..."            # over SSH, on a device

A device runs these names with its own installed copy of fl-launch, so a module that moves
must move here too: tests/test_entry_modules.py imports every name below and checks it
has the entry point its callers use (``main``, or the attribute after ``:``).
"""

SUPERVISOR = "launcher.run.supervisor"  # main(RUN_DIR [LOCK_FD]): a detached run's supervisor
FORK_SERVER = "launcher.processes.fork_server"  # main(): imports torch and Flower once, forks the two below
QUICK_SUPERNODE = "launcher.flower.quick_supernode"  # main(): Flower's SuperNode with bells
QUICK_SUPERLINK = "launcher.flower.quick_superlink"  # main(): Flower's SuperLink, its middleware gated
WARM_CLIENTAPP = "launcher.flower.warm_clientapp"  # main(): the node's task host
PLAIN_LOGS = "launcher.flower.plain_logs"  # main(FLOWER_COMMAND ...): a Flower command, no colour in files
DEVICE_AGENT = "launcher.devices.agent"  # main(): a run's part on a device
FLEET_LINK = "launcher.fleet.link"  # main(): an emulated client's link to the SuperLink (--fleet)
FINISH = "launcher.cli.finish"  # main(): fl-finish, run on a device by the supervisor's stop
REGISTER_NODES = "launcher.flower.register_nodes"  # main(CONNECTION KEY.pub ...): nodes' keys to the SuperLink
GPU_PROBE = "simulator.device"  # main: prints this host's GPUs as torch sees them (launcher.processes.gpus)
BUILT_IN_PRELOAD = "simulator.client_app:preload"  # what a task host of the built-in app imports first

ENTRY_MODULES = (SUPERVISOR, FORK_SERVER, QUICK_SUPERNODE, QUICK_SUPERLINK, WARM_CLIENTAPP, PLAIN_LOGS, DEVICE_AGENT,
                 FLEET_LINK, FINISH, REGISTER_NODES)
