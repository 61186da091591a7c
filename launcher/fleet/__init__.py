"""An emulated IoT fleet (issue 18): each simulated client held to a device profile's CPU, memory and link.

    fleet = read_fleet_file("fleet.toml", num_clients=40) # launcher.fleet.profiles
    fleet.profile_of(7).down                              # 8000000.0 (bits per second)
    link = start_link(0, "127.0.0.1:8000", LinkSpec(down=8e6, up=2e6, latency=0.04), counters=path)
    limiter = Limiter.choose()                            # cgroup v2, cgroup v1 or the unprivileged fallback
    with limiter.limit("exp1-client-3", ClientLimits(cpu=0.3, memory=900 * 2**20), profile="pi4") as client:
        client.add(pid)

    units.py          sizes, rates and durations as a fleet file and the link's options write them
    profiles.py       the fleet file: profiles, which clients each takes, availability and traces
    link.py           the link emulator between one client's SuperNode and the SuperLink (its own process)
    limits.py         a client's CPU share and memory limit: the backend chosen, one handle per client
    cgroup_limits.py  the cgroup v1 and v2 backends (on launcher.processes.cgroup, the one reader of the
                      hierarchies); a kill tag's groups wherever they were made (TagGroups)
    duty_cycle.py     the unprivileged fallback: SIGSTOP/SIGCONT duty cycle and a resident-memory watchdog
    handle.py         what a client's limit handle offers, whatever the backend
    memory.py         the memory a client's processes hold together (page frames counted once) and its gauge
    emulation.py      a run's local clients held to their profiles: links, limits, online or not (the supervisor's side)
    fedscale.py       FedScale's capacity and behaviour traces as a fleet file and a trace CSV (python -m)

Imports launcher.processes and contract only (nothing above: not run/, cli/, devices/).
"""
