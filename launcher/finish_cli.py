"""``fl-finish``: stop a run by its kill tag (filled in by the next issue)."""

import click

from launcher.cli_errors import OneLineErrors


@click.command(cls=OneLineErrors)
def main() -> None:
    raise click.ClickException("fl-finish is not implemented yet")
