"""Flower's own SuperLink, its HTTP middleware run only on the requests it acts on.

    python -m launcher.flower.quick_superlink --insecure --host 127.0.0.1 --port 9092 ...
    python -m launcher.flower.quick_superlink --fleet-host 192.168.1.20 --fleet-port 41234 --ssl-certfile ...

The arguments are flower-superlink's, but ``--fleet-host``/``--fleet-port``: the Fleet API (only it) served on
that address too, for nodes that connect directly (launcher.flower.fleet_listener).
This runs Flower's unchanged flower-superlink entry point after
one substitution in this process (Flower's files are not touched): the app it builds answers Flower's
unary Fleet and Runtime API calls through the middleware that acts on them, as plain awaits
(launcher.flower.quick_http), and gates the rest (launcher.flower.http_gates); its server ticks once a second
while idle (launcher.flower.server_tick); a node's signed timestamp is verified once, not on every call
(launcher.flower.node_signatures).
The SuperExec and ServerApp it starts are Flower's own commands, as ever, started through
launcher.flower.plain_logs (no colour codes in log files).
"""

from __future__ import annotations

import argparse
import sys

from launcher.flower.imports_frozen import imports_frozen


def main(argv: list[str] | None = None) -> None:
    with imports_frozen():  # Flower's imports and ours, made with the collector off
        from flwr.superlink.cli import flower_superlink  # noqa: PLC0415

        from launcher.flower.fleet_listener import listen_also  # noqa: PLC0415
        from launcher.flower.node_signatures import verify_once_in_superlink  # noqa: PLC0415
        from launcher.flower.plain_logs import (  # noqa: PLC0415
            colour_only_on_a_terminal,
            install_in_superlink,
            records_only_at_written_levels,
        )
        from launcher.flower.quick_http import install  # noqa: PLC0415
        from launcher.flower.server_tick import install as slow_tick  # noqa: PLC0415

        argv = list(sys.argv[1:] if argv is None else argv)
        own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        own.add_argument("--fleet-host")
        own.add_argument("--fleet-port", type=int)
        fleet, argv = own.parse_known_args(argv)
        if fleet.fleet_host is not None:
            listen_also(fleet.fleet_host, fleet.fleet_port)
        install("flwr.superlink.main")
        slow_tick()
        verify_once_in_superlink()  # each node's signed timestamp checked once, not on every Fleet call
        colour_only_on_a_terminal()
        records_only_at_written_levels()
        install_in_superlink()  # its SuperExec and ServerApps log without colour into files too
    sys.argv = ["flower-superlink", *argv]
    flower_superlink()


if __name__ == "__main__":
    main()
