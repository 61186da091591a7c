"""A user's TOML file (a fleet file, a hosts file, a --config file) read once, its bad values named by file and line.

    toml = UserToml.read(path, FleetError, "fleet file")  # FleetError("PATH:3: Invalid value") for bad TOML
    toml.data                                  # what tomllib gives
    toml.at("profile", 1, "cpu")               # "PATH:7": the line of `cpu =` in the second [[profile]]
    toml.at("defaults", None, "user")          # ... in the [defaults] table
    toml.at_top("profiles")                    # the first line that sets or opens `profiles`
    key_line(text, "client-num")               # a top-level key's line (TOML `key =`, JSON `"key":`), 0 if none

tomllib gives values, not positions; these read the text the way the tables are written (one key per line),
and fall back to the table's header line, or line 1, where the key cannot be found. The error class is the
caller's (each an InputError: one line, exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tomllib

from contract.errors import InputError

_DECODE_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)")


@dataclass(frozen=True)
class UserToml:
    path: Path
    text: str
    data: dict

    @classmethod
    def read(cls, path: str | Path, error: type[InputError], what: str) -> "UserToml":
        """The file read and parsed; ``error`` with the file (and the line, for bad TOML) when it cannot be."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise error(f"{path}: cannot read the {what} ({getattr(err, 'strerror', None) or err})") from None
        return cls(path, text, parse(text, path, error))

    def line(self, table: str, index: int | None, key: str | None) -> int:
        return table_key_line(self.text, table, index, key)

    def at(self, table: str, index: int | None, key: str | None) -> str:
        """"PATH:LINE" of ``key`` in the ``index``-th ``[[table]]`` (``[table]`` for None)."""
        return f"{self.path}:{self.line(table, index, key)}"

    def at_top(self, key: str) -> str:
        """"PATH:LINE" of the first line that sets ``key`` or opens a table of that name (line 1 if none)."""
        return f"{self.path}:{key_line(self.text, key) or 1}"


def parse(text: str, path: str | Path, error: type[InputError]) -> dict:
    """tomllib's values; bad TOML is ``error("PATH:LINE: tomllib's message")``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        found = _DECODE_POSITION.search(str(err))
        where = f"{path}:{found.group(1)}" if found else f"{path}"
        raise error(f"{where}: {_DECODE_POSITION.sub('', str(err))}") from None


def key_line(text: str, key: str, after: str = "") -> int:
    """The 1-based line that sets a top-level ``key`` (TOML ``key =`` or ``[key]``, JSON ``"key":``), searching
    from the first ``after``; 0 when there is none."""
    quote = "[\"']?"
    pattern = re.compile(rf"^[ \t]*(?:\[+[ \t]*)?{quote}{re.escape(key)}{quote}[ \t]*[=:\].]", re.MULTILINE)
    found = pattern.search(text, max(text.find(after), 0) if after else 0)
    return text.count("\n", 0, found.start()) + 1 if found else 0


def table_key_line(text: str, table: str, index: int | None, key: str | None) -> int:
    """1-based line of ``key`` in the ``index``-th ``[[table]]`` (0-based), or in ``[table]`` for index None;
    the table's header line for key None or a key not found there; 1 without such a table."""
    lines = text.splitlines()
    name = re.escape(table)
    header = re.compile(rf"^\s*\[\s*{name}\s*\]" if index is None else rf"^\s*\[\[\s*{name}\s*\]\]")
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    position = 0 if index is None else index
    if position >= len(starts):
        return 1
    start = starts[position]
    if key is None:
        return start + 1
    key_re = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    for i in range(start + 1, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            break
        if key_re.match(lines[i]):
            return i + 1
    return start + 1
