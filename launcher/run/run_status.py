"""The statuses run.json's "status" takes, and the exit code each end gives.

    folder.update(status=RunStatus.RUNNING)        # a str enum: written as "running"
    info["status"] in LIVE                           # run.json's strings compare equal
    RunStatus.INTERRUPTED.exit_code()                # 130

prepared (by fl-launch) -> starting -> running -> finished | failed | interrupted (by the supervisor);
orphaned is what launcher.run.liveness says of a run whose supervisor is gone while its processes live.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PREPARED = "prepared"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ORPHANED = "orphaned"

    def exit_code(self) -> int:
        """The supervisor's (and fl-launch's) exit status for a run that ended so."""
        return {RunStatus.FINISHED: 0, RunStatus.INTERRUPTED: 130}.get(self, 1)


LIVE = (RunStatus.PREPARED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.ORPHANED)
