"""SuperNodes' public keys registered with a SuperLink whose nodes must authenticate (--enable-supernode-auth).

    python -m launcher.flower.register_nodes local tls/nodes/client_0.0.pub tls/nodes/client_1.0.pub
    # exit 0; exit 1 with Flower's word on stderr (the key named) when one was not registered

Each key goes through Flower's own ``flwr supernode register KEY CONNECTION`` (the Control API, with the
connection of ``$FLWR_HOME/config.toml``), all in this one process: ``flwr`` started once per key would cost
about a second of CPU each. The ``flwr`` command's Typer app is its console entry point (flwr.cli.app:app).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys

import click
from flwr.cli.app import app as flwr_cli

REGISTERED = re.compile(r"SuperNode \d+ registered")  # what `flwr supernode register` says when it did


def register(connection: str, key: str) -> None:
    """RuntimeError: Flower's reason the SuperLink did not register the key."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            flwr_cli(["supernode", "register", key, connection], standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise RuntimeError(out.getvalue().strip() or f"exit {exit_.code}") from None
    except click.ClickException as err:  # raised as they are without standalone mode
        raise RuntimeError(err.format_message()) from None
    if not REGISTERED.search(out.getvalue()):
        raise RuntimeError(out.getvalue().strip() or "no answer")


def main(argv: list[str] | None = None) -> int:
    connection, *keys = sys.argv[1:] if argv is None else argv
    for key in keys:
        try:
            register(connection, key)
        except RuntimeError as err:
            print(f"{key}: {str(err).strip().splitlines()[-1]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
