"""docs/performance.md, where every performance figure of the project lives: each benchmark rewrites its own section.

A section is the text between the page's `<!-- begin NAME -->` and `<!-- end NAME -->` lines; the prose around
the sections is written by hand and kept.
"""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def write_section(name: str, text: str, page: Path = PAGE) -> None:
    """Replace the section NAME of the page with text (the markers stay)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    whole = page.read_text()
    if whole.count(begin) != 1 or whole.count(end) != 1 or whole.index(begin) > whole.index(end):
        raise SystemExit(f"{page}: no single section {name!r} ({begin} ... {end})")
    head, rest = whole.split(begin)
    _old, tail = rest.split(end)
    page.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")
