"""What the launcher and the built-in app both rely on: the run's settings, its log lines, its node lists, its bells.

    from contract.run_settings import RunSettings       # the app's config, written by the launcher (its
                                                         # AppOptions are fl-launch options of the same name)
    from contract.loglines import LogWriter, parse_line  # one place writes a log line, one parses it
    from contract.lost_nodes import add_lost, read_lost  # server/lost_nodes.json, away_nodes.json
    from contract.bells import Bell, ring                # wake a node's processes without polling

Neither side owns it: launcher/ and simulator/ import from here; this package imports
neither of them (nor torch, nor Flower), so a device or a ServerApp loads it cheaply.
"""
