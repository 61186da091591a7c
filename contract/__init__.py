"""What the launcher and the built-in app both rely on: the run's settings, its log lines, its node lists, its bells.

    from contract.run_settings import RunSettings       # the app's config, written by the launcher (its
                                                         # AppOptions are fl-launch options of the same name)
    from contract.loglines import LogWriter, parse_line  # one place writes a log line, one parses it
    from contract.lost_nodes import add_lost, read_lost  # server/lost_nodes.json, away_nodes.json
    from contract.wakeups import WakeupSocket, wake   # wake a node's processes without polling

    wakeups.py       wake-ups between a run's processes on one host, so none sleeps through a message
    fork_requests.py asking a run's fork server for a process: its address, a request, its readiness
    errors.py        InputError: the one base class of errors in what the user gave (one line, exit 2)
    fleet_record.py  the emulated fleet as both sides read it: profiles, availability, fleet.json
    loglines.py      the one writer and parser of client and server log lines
    lost_nodes.py    nodes known gone, away or renewing (server/lost_nodes.json, away_nodes.json, renewing/)
    run_layout.py    where a client's files lie in a run folder
    run_settings.py  the keys the built-in app reads from Flower's run config and node config
    user_toml.py     a user's TOML file (fleet, hosts, --config) read once, its errors named by file and line

Neither side owns it: launcher/ and simulator/ import from here; this package imports
nothing of ours (neither of them, nor torch, nor Flower), so a device or a ServerApp loads it cheaply.
"""
