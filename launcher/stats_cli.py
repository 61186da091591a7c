"""``fl-stats``: loss and accuracy out of a run's logs (filled in by the next issue)."""

import click

from launcher.cli_errors import OneLineErrors


@click.command("fl-stats", cls=OneLineErrors)
def main() -> None:
    """Not yet: reads client logs."""
    raise click.ClickException("fl-stats is not implemented yet")


if __name__ == "__main__":
    main()
