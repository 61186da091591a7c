"""Where a key stands in a TOML file, so a bad value is named by file and line (fleet files, hosts files).

    key_line(text, "profile", 1, "cpu")      # the line of `cpu =` in the second [[profile]]
    key_line(text, "defaults", None, "user") # ... in the [defaults] table
    top_key_line(text, "profiles")           # the first line that sets or opens `profiles`

tomllib gives values, not positions; these read the text the way the tables are written (one key per
line), and fall back to the table's header line, or line 1, where the key cannot be found.
"""

from __future__ import annotations

import re


def key_line(text: str, table: str, index: int | None, key: str | None) -> int:
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


def top_key_line(text: str, key: str) -> int:
    """The first line that sets ``key`` or opens a table of that name; 1 when there is none."""
    for i, line in enumerate(text.splitlines()):
        if re.match(rf"^\s*(\[+\s*)?\"?{re.escape(key)}\b", line):
            return i + 1
    return 1
