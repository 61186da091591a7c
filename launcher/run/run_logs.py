"""What a live run's logs say, read at each poll into its Progress (launcher.run.outcome).

    logs = RunLogs(folder.server_dir, progress, view, user_app=False)
    logs.follow(resumed=False)     # from the watch on (a resumed run's earlier lines are history)
    if logs.read(time.monotonic()):
        ...                        # the run is running from now on: its status to record
    logs.events                    # server.log's events so far, for the summary

server.log holds the built-in app's events (rounds, its own [run] line); a user's app (--app) writes none of
them, and its rounds are read from Flower's strategy log (server/serverapp.log) instead.
"""

from __future__ import annotations

from pathlib import Path

from contract.loglines import Event
from launcher.flower.strategy_log import round_started
from launcher.run.outcome import Progress
from launcher.stats.follow import LogFollower


class RunLogs:
    def __init__(self, server_dir: Path, progress: Progress, view, user_app: bool) -> None:
        self.server_dir, self.progress, self.view, self.user_app = server_dir, progress, view, user_app
        self.events: list[Event] = []
        self._server_log: LogFollower | None = None
        self._app_log: LogFollower | None = None

    def follow(self, resumed: bool) -> None:
        self._server_log = LogFollower(self.server_dir / "server.log", from_end=resumed)
        self._app_log = LogFollower(self.server_dir / "serverapp.log") if self.user_app else None

    def read(self, now: float) -> bool:
        """Take in what was written since the last read; True when the run began running meanwhile."""
        began = False
        for event in self._server_log.events() if self._server_log else []:
            self.events.append(event)
            self.view.event(event)
            began = self.progress.take(event, now) or began
        for started, rounds in filter(None, map(round_started, self._app_log.lines() if self._app_log else [])):
            began = self.progress.app_round(started, rounds, now) or began
        return began
