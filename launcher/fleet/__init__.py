"""An emulated IoT fleet (issue 18): per-client profiles from a fleet file and a user-space link emulator.

    fleet = read_fleet("fleet.toml", num_clients=40)      # launcher.fleet.profiles
    fleet.profile_of(7).down                              # 8000000.0 (bits per second)
    link = start_link(0, "127.0.0.1:8000", LinkSpec(down=8e6, up=2e6, latency=0.04), counters=path)

    units.py     sizes, rates and durations as a fleet file and the link's options write them
    profiles.py  the fleet file: profiles, which clients each takes, availability and traces
    link.py      the link emulator between one client's SuperNode and the SuperLink (its own process)

Imports launcher.processes and contract only (nothing above: not run/, cli/, devices/).
"""
