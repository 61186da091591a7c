"""Click types that refuse what the run cannot use, from the command line or from a --config file.

    @click.option("--lr", type=FiniteFloat(min=0, min_open=True))          # refuses nan, inf, -1
    @click.option("--seed", type=WholeNumber(0, SEED_MAX))                  # refuses -1, 10**23, 2.5, true
    @click.option("--log-dir", type=PathText(file_okay=False))              # refuses '', non-UTF-8, NUL
    @click.option("--kill-tag", type=KillTag())                            # refuses '', 'a b;c', '-x'

Numbers: a float must be finite (click's FloatRange lets nan and inf through, since nan compares false
with every bound); a whole number from a config file may be 3 or 3.0 but never 2.5 (no truncation) or a
boolean, and every integer lies in the range numpy and torch take (int64, or less where the option says).
Text (names, paths): valid UTF-8 without NUL, so it survives run.json, TOML files and Flower's configs;
paths are non-empty ('' would silently mean the current folder) and on one line. A kill tag is a run id's
shape (launcher.run.folder.malformed_kill_tag): it names cgroups and rides in every process's environment.
"""

from __future__ import annotations

import math

import click

from launcher.run.folder import malformed_kill_tag
from simulator.datasets import MAX_CLASSES  # noqa: F401 (--num-classes' bound, re-exported for the CLI)

INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's RandomState bound; torch's and Flower's (int64) take it with room to spare
SECONDS_MAX = 7 * 86400.0  # waits beyond a week overflow some of Python's timeouts; nobody means them
FLOAT32_MAX = 3.4028234663852886e38  # larger steps or weights are inf in torch's float32 tensors


class FiniteFloat(click.FloatRange):
    """FloatRange that also refuses nan, inf and booleans."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = FLOAT32_MAX, min_open: bool = False,
                 max_open: bool = False) -> None:
        super().__init__(min=min, max=max, min_open=min_open, max_open=max_open)

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        if isinstance(value, str):
            value = value.strip()
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class WholeNumber(click.IntRange):
    """IntRange over a bounded range (int64 unless told) that refuses 2.5, '2.5', booleans and overflow."""

    name = "integer"

    def __init__(self, min: int | None = None, max: int | None = INT64_MAX) -> None:
        super().__init__(min=min, max=max)

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                self.fail(f"{value!r} is not a whole number", param, ctx)
            value = int(value)
        return super().convert(value, param, ctx)


def check_text(value: str, what: str) -> str | None:
    """Why ``value`` cannot travel through run.json, TOML and Flower's configs (None: it can)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} {value.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8 text"
    if "\0" in value:
        return f"{what} must not hold a NUL character"
    return None


class Text(click.ParamType):
    """A string option: valid UTF-8, no NUL; with ``line=True`` no newline either."""

    name = "text"

    def __init__(self, line: bool = True) -> None:
        self.line = line

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            self.fail(f"{value!r} is not text", param, ctx)
        if (why := check_text(value, "value")) is not None:
            self.fail(why, param, ctx)
        if self.line and any(c in value for c in "\n\r"):
            self.fail("must be on one line", param, ctx)
        return value


class PathText(click.Path):
    """click.Path that refuses '', non-UTF-8 names, NUL and newlines."""

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            self.fail(f"{value!r} is not a path", param, ctx)
        if value.strip() == "":
            self.fail("an empty path (it would mean the current folder)", param, ctx)
        if (why := check_text(value, "path")) is not None:
            self.fail(why, param, ctx)
        if any(c in value for c in "\n\r"):
            self.fail("a path must be on one line", param, ctx)
        return super().convert(value, param, ctx)


class KillTag(Text):
    """Text of a kill tag's shape: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""

    name = "tag"

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if (why := malformed_kill_tag(value)) is not None:
            self.fail(why, param, ctx)
        return value
