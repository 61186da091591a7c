"""What a live run writes into its folder as it goes: run.json's processes, status, activity, restarts, its end.

    journal = RunJournal(folder, view)
    journal.folder_gone()                                   # removed (or replaced) under the run: nothing to write
    journal.processes(records, status=RunStatus.STARTING)   # run.json's "processes" (and any other fields)
    journal.running()                                       # status running, from now
    journal.activity("2 of 5 clients connected")            # written only when it changed
    journal.restart(entry, host="localhost")                # a client restarted (or lost): the server told
    journal.end(records, RunStatus.FINISHED, "", events, rounds_done=3, user_app=False)
    write_record(folder, record, status=RunStatus.PREPARED)  # the run's record (launcher.run.record), as planned

The supervisor decides; this writes. Nothing here starts or stops a process.
"""

from __future__ import annotations

from contract.loglines import Event, LogWriter
from contract.lost_nodes import add_lost, add_lost_client
from launcher.flower.strategy_log import aggregated_rounds
from launcher.flower.task_log import task_failures
from launcher.processes.clock import now_iso
from launcher.run.folder import RunFolder
from launcher.run.record import RunRecord
from launcher.run.run_status import RunStatus


def write_record(folder: RunFolder, record: RunRecord, before=None, **fields) -> dict:
    """run.json's record of the run (its options and plan; a record of before issue 27 loses its "settings",
    derived now), with ``fields`` beside it; ``before(data)``: what else changes in the same write."""

    def write(data: dict) -> None:
        if before is not None:
            before(data)
        data.pop("settings", None)
        data.update(record.to_json(), **fields)

    return folder.edit(write)


class RunJournal:
    def __init__(self, folder: RunFolder, view) -> None:
        self.folder = folder
        self.view = view
        self._activity: str | None = None
        self._ident = folder.path.stat().st_ino  # a folder removed and made again is not the run's

    def folder_gone(self) -> bool:
        """Was the run folder removed (or replaced by another of the same name) under the run?"""
        try:
            return self.folder.path.stat().st_ino != self._ident or self.folder.gone()
        except OSError:
            return True

    def processes(self, records: list[dict], **fields) -> None:
        self.folder.update(processes=records, **fields)

    def running(self) -> None:
        self.folder.update(status=RunStatus.RUNNING, running_since=now_iso())

    def activity(self, text: str | None) -> None:
        """What the run is doing while it is not simply at work (fl-stats --runs shows it)."""
        if text != self._activity:
            self._activity = text
            self.folder.update(activity=text)

    def restart(self, entry: dict, host: str) -> None:
        """A client's process died and was restarted, or had no restart left: the server stops waiting for its
        old node (and for the client, when it is gone for good); the console and run.json's restarts say so."""
        if entry["node_id"] is not None:
            add_lost(self.folder.path, entry["node_id"])  # the server stops sampling it and waiting for it
        if not entry["restarted"]:  # gone for good: the server no longer waits for it to connect either
            add_lost_client(self.folder.path, entry["client"])
        what = f"restarted ({entry['restart']})" if entry["restarted"] else "no restart left"
        self.view.message(f"client {entry['client']} on {host}: {entry['role']} {entry['cause']}; {what}")
        self.folder.edit(lambda d: d.setdefault("restarts", []).append(dict(entry, host=host)))

    def end(self, records: list[dict], status: RunStatus, reason: str, events: list[Event], rounds_done: int,
            user_app: bool) -> None:
        """The run's end: its summary (the final evaluation; --app: the rounds Flower's strategy aggregated and
        the clients' task failures, also told in server.log) beside its status and reason."""
        summary = {}
        for event in events:
            if event.kind == "server_final":
                summary = {"final_accuracy": event.values["acc"], "final_test_samples": event.values["num_test"]}
        if user_app:  # the rounds whose replies Flower's strategy aggregated
            rounds_done = max(aggregated_rounds(self.folder.server_dir / "serverapp.log"), default=0)
            summary["client_failures"] = self._task_failures(events)
        self.processes(records, status=status, reason=reason, ended=now_iso(), rounds_done=rounds_done,
                       activity=None, **summary)

    def _task_failures(self, events: list[Event]) -> list[dict]:
        """--app: the rounds in which clients' ClientApps raised, into server.log (and the summary's events)."""
        failures = task_failures(self.folder.path)
        if not failures:
            return []
        log = LogWriter(self.folder.server_dir / "server.log", "FLServer")
        for f in failures:
            values = {"round": f.round, "task": f.task, "failures": len(f.failed), "clients": f.clients,
                      "path": f.where()}
            log.write("app_clients_failed", level="WARNING", **values)
            events.append(Event("FLServer", "app_clients_failed", values))
        log.close()
        return [{"round": f.round, "task": f.task, "failed": f.failed, "clients": f.clients} for f in failures]
