"""Click commands that answer bad input with one line and exit code 2, never a traceback.

    @click.command(cls=OneLineErrors)
    def main(...): ...
    # $ fl-launch --client-num 0
    # fl-launch: error: Invalid value for '--client-num': 0 is not in the range x>=1.

A command raises UserError for a refusal of its own; the errors of the modules it calls
(contract.errors.InputError and its subclasses) are caught here, once, and printed the same way.
"""

from __future__ import annotations

import sys

import click

from contract.errors import InputError

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
            _refuse(prog, err.format_message())
        except InputError as err:  # any module's bad-input error: its message is the line
            _refuse(prog, str(err))


def _refuse(prog: str, message: str) -> None:
    click.echo(one_line(f"{prog}: error: {' '.join(message.split())}"), err=True)
    sys.exit(2)


def one_line(text: str) -> str:
    """``text`` printable on any terminal: bytes that were not UTF-8 (surrogates) shown escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
