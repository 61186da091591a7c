"""The rules that turn what a run's watch saw (its log's events, which processes live, the clock) into its end.

    progress = Progress(rounds=3, rounds_done=0, clients=2, task="train", started=time.monotonic())
    progress.take(event, now)          # one server.log event; True: the run is running from now on
    decide(progress, Seen(stop_reason=None, folder_gone=False, flwr_run_alive=True, superlink_alive=True),
           Limits(startup_timeout=66, round_timeout=600, user_app=False, run_dir=path), now, flower=ask_flower)
    # None: keep going; else (RunStatus, reason)

Pure: no process, file or clock is touched here (``flower`` is asked only once `flwr run` has ended: what the
SuperLink recorded of the run), so tests/test_outcome_rules.py checks every rule in milliseconds. The
supervisor (launcher.run.supervisor) gathers what it saw and acts on the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from launcher.run.run_status import RunStatus

Outcome = tuple[RunStatus, str]  # how the run ended, and why (empty when it finished)
NO_PROGRESS_SLACK_S = 60.0  # beyond the round timeout, before a silent run is failed


@dataclass
class Progress:
    """What the run's logs said so far; its fields are what the live view shows."""

    rounds: int
    rounds_done: int  # rounds aggregated without a gap (a resumed run starts after its last one)
    clients: int
    task: str
    started: float  # the clock when the watch began
    last_progress: float = 0.0  # the clock at the last event or round line (from the start: started)
    round: int = 0
    acc: float | None = None
    phase: str = "starting"
    alive: int = 0
    said: Outcome | None = None  # the built-in app's own [run] line

    def __post_init__(self) -> None:
        self.last_progress = max(self.last_progress, self.started)

    def take(self, event, now: float) -> bool:
        """One server.log event; True when the run is running from now on (its status to record)."""
        self.last_progress = now
        kind, v = event.kind, event.values
        began = False
        if kind == "server_round_start":
            began = self.round == 0  # the first round of this attempt: every client is in
            self.round, self.phase = v["round"], "training"
        elif kind == "final_start" and self.round == 0:  # resumed after its last round: the final
            began = True  # evaluation is all it does
            self.round, self.phase = self.rounds, "final evaluation"
        elif kind == "server_round_end":
            self.acc = v["acc"]
            if v["aggregated"] and v["round"] == self.rounds_done + 1:
                self.rounds_done = v["round"]  # done without a gap (resume starts at a gap)
        elif kind == "served" and self.task != "train":
            began, self.phase = True, "serving"
        elif kind == "run_finished":
            self.said = RunStatus.FINISHED, ""
        elif kind == "run_failed":
            self.said = RunStatus.FAILED, v["reason"]
        return began

    def app_round(self, started: int, rounds: int, now: float) -> bool:
        """A user's app started a round (Flower's strategy log); True when it is its first."""
        began = self.round == 0
        self.round, self.rounds, self.phase, self.last_progress = started, rounds, "training", now
        return began

    def view(self) -> dict:
        return {"round": self.round, "rounds": self.rounds, "acc": self.acc, "clients": self.clients,
                "alive": self.alive, "phase": self.phase, "rounds_done": self.rounds_done}


@dataclass(frozen=True)
class Seen:
    """What the supervisor saw at one poll besides the logs."""

    stop_reason: str | None  # the signal that asked the supervisor to stop
    folder_gone: bool
    flwr_run_alive: bool
    superlink_alive: bool


@dataclass(frozen=True)
class Limits:
    startup_timeout: float  # seconds for round 1 to start
    round_timeout: float  # a round's own limit; silence beyond it (and NO_PROGRESS_SLACK_S) fails the run
    user_app: bool  # --app: only Flower's record of the run says it finished
    run_dir: Path


def stopping(progress: Progress, seen: Seen) -> bool:
    """Has a stop begun (no client is restarted then): a signal, the run's own end (its [run] line, or
    `flwr run` gone), or the run folder removed."""
    return (seen.stop_reason is not None or progress.said is not None or seen.folder_gone
            or not seen.flwr_run_alive)


def gone_reason(run_dir: Path) -> str:
    return f"the run folder {run_dir} was removed while the run went on"


def decide(progress: Progress, seen: Seen, limits: Limits, now: float,
           flower: Callable[[], Outcome]) -> Outcome | None:
    """The run's outcome once there is one; None: keep going. ``flower()``: the run's end as its SuperLink
    recorded it, asked only once `flwr run` has ended."""
    if seen.stop_reason:
        return RunStatus.INTERRUPTED, f"stopped by {seen.stop_reason}"
    if seen.folder_gone:
        return RunStatus.FAILED, gone_reason(limits.run_dir)
    if not seen.flwr_run_alive:
        return flower() if limits.user_app else builtin_end(progress.said, flower, limits.run_dir)
    if not seen.superlink_alive:
        return RunStatus.FAILED, "the SuperLink exited"
    if progress.round == 0 and now - progress.started > limits.startup_timeout:
        return RunStatus.FAILED, (f"round 1 did not start within {limits.startup_timeout:.0f} s: "
                                  f"{progress.alive} of {progress.clients} clients alive")
    waited = now - progress.last_progress
    if progress.round > 0 and waited > limits.round_timeout + NO_PROGRESS_SLACK_S:
        return RunStatus.FAILED, f"no progress for {waited:.0f} s (round timeout {limits.round_timeout:.0f} s)"
    return None


def builtin_end(said: Outcome | None, flower: Callable[[], Outcome], run_dir: Path) -> Outcome:
    """The built-in app ended: its own [run] line, and Flower's record of the run besides (a user's app has
    only Flower's)."""
    if said is not None and said[0] == RunStatus.FAILED:
        return said  # the ServerApp's own reason (a round not aggregated, ...) says more
    recorded = flower()
    if recorded[0] == RunStatus.FAILED or said is not None:
        return recorded
    return RunStatus.FAILED, f"the Flower run ended without a result (see {run_dir / 'server'})"
