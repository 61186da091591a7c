"""Click commands that answer bad input with one line and exit code 2, never a traceback.

    @click.command(cls=OneLineErrors)
    def main(...): ...
    # $ fl-launch --client-num 0
    # fl-launch: error: Invalid value for '--client-num': 0 is not in the range x>=1.
"""

from __future__ import annotations

import sys

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}  # every command's click settings


class UserError(click.ClickException):
    exit_code = 2


class OneLineErrors(click.Command):
    def main(self, args=None, prog_name=None, **extra):
        prog = prog_name or self.name
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.Abort:
            sys.exit(130)
        except click.ClickException as err:
            message = " ".join(err.format_message().split())
            click.echo(one_line(f"{prog}: error: {message}"), err=True)
            sys.exit(2)


def one_line(text: str) -> str:
    """``text`` printable on any terminal: bytes that were not UTF-8 (surrogates) shown escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
