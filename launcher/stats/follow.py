"""Read the complete lines a log file gained since the last call, as parsed events.

    follow = LogFollower(run / "server" / "server.log")
    for event in follow.events():       # [] until the server writes
            print(event.kind, event.values)
"""

from __future__ import annotations

from pathlib import Path

from contract.loglines import Event, parse_line


class LogFollower:
    def __init__(self, path: str | Path, from_end: bool = False) -> None:
        """``from_end``: only what is written from now on (a resumed run's earlier lines are history)."""
        self.path = Path(path)
        self._offset = self.path.stat().st_size if from_end and self.path.exists() else 0
        self._partial = b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]

    def events(self) -> list[Event]:
        return [e for e in map(parse_line, self.lines()) if e is not None]
