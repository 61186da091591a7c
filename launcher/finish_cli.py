"""``fl-finish``: stop every process of a run by its kill tag, and nothing else.

    $ fl-finish --kill-tag my-run          # SIGTERM, then SIGKILL after --grace seconds
    $ fl-finish                            # the newest run's tag, from its run.json
    $ fl-finish --run 20261124-053012-4f2a # that run's tag
    $ fl-finish --kill-tag my-run --dry-run

Exit 0 when all stopped, 1 when some could not be, 2 on bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import psutil
from rich.console import Console
from rich.table import Table

from launcher.cli_errors import OneLineErrors, UserError
from launcher.live_view import make_console
from launcher.processes import StopResult, command_of, terminate_then_kill
from launcher.remote import RemoteDevice, devices_of
from launcher.run_folder import RUN_ID_RE, RunFolder, RunFolderError, now_iso
from launcher.tagged import tagged_processes


def runs_with_tag(log_dir: Path, tag: str) -> list[RunFolder]:
    found = []
    for run_json in sorted(log_dir.glob("*/run.json")):
        if run_json.parent.is_symlink():
            continue
        folder = RunFolder(run_json.parent)
        try:
            if folder.read().get("kill_tag") == tag:
                found.append(folder)
        except RunFolderError:
            continue
    return found


def _supervisor(folder: RunFolder, candidates: list[psutil.Process]) -> psutil.Process | None:
    pid = (folder.read().get("supervisor") or {}).get("pid")
    return next((p for p in candidates if p.pid == pid), None)


@click.command("fl-finish", cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kill-tag", default=None, help="The run's tag.  [default: the newest run's, from its run.json]")
@click.option("--run", "run", default=None, help="Take the tag from this run's run.json (id or folder).")
@click.option("--log-dir", type=click.Path(file_okay=False), default="logs", help="Where the run folders are.")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, help="Seconds between SIGTERM and SIGKILL.")
@click.option("--dry-run", is_flag=True, help="List what would be stopped; stop nothing.")
@click.option("--local-only", is_flag=True, help="This machine only: skip the run's devices (what a device runs).")
def main(kill_tag: str | None, run: str | None, log_dir: str, grace: float, dry_run: bool, local_only: bool) -> None:
    """Stop every process fl-launch started with a kill tag: supervisor first, then the rest."""
    log_path = Path(log_dir)
    if kill_tag is not None and run is not None:
        raise UserError("give --kill-tag or --run, not both")
    if kill_tag is None:
        try:
            folder = RunFolder.resolve(log_path, run)
            kill_tag = folder.read().get("kill_tag", "")
        except RunFolderError as err:
            raise UserError(f"no --kill-tag given and {err}") from None
    if not kill_tag or not RUN_ID_RE.match(kill_tag):
        raise UserError(f"malformed kill tag {kill_tag!r}: 1-64 letters, digits, '.', '_' or '-'")
    folders = runs_with_tag(log_path, kill_tag) if log_path.is_dir() and not local_only else []
    procs = tagged_processes(kill_tag)
    console = make_console()
    devices = [] if local_only else _devices(folders, kill_tag)
    if dry_run:
        _print(console, kill_tag, [StopResult(p.pid, command_of(p), "would stop") for p in procs])
        for device in devices:
            console.print(f"{device.host}: would run fl-finish --local-only over ssh")
        sys.exit(0)
    if not procs and not devices:
        console.print(f"no process carries kill tag {kill_tag}")
        sys.exit(0)
    results: list[StopResult] = []
    supervisors = [s for f in folders if (s := _supervisor(f, procs)) is not None]
    if supervisors:  # it stops and reaps its own children; give it the grace plus its own
        results += terminate_then_kill(supervisors, grace=grace + 15)
        procs = [p for p in tagged_processes(kill_tag) if p.pid not in {s.pid for s in supervisors}]
    results += terminate_then_kill(procs, grace=grace)
    if results:
        _print(console, kill_tag, results)
    survived = [r for r in results if r.outcome == "survived"]
    for device in devices:  # the same exact-tag rule, run where the processes are
        code, output = device.stop(grace)
        console.print(f"[{device.host}] " + (output.strip() or f"exit {code}").replace("\n", f"\n[{device.host}] "))
        if code != 0:
            survived.append(StopResult(0, device.host, "survived"))
    for folder in folders:
        folder.edit(lambda d: _record(d, results))
    sys.exit(1 if survived else 0)


def _devices(folders: list[RunFolder], tag: str) -> list[RemoteDevice]:
    found = {}
    for folder in folders:
        for device, _ in devices_of(folder.read(), tag):
            found[device.host] = device
    return list(found.values())


def _record(data: dict, results: list[StopResult]) -> None:
    data.setdefault("finish", []).append({
        "at": now_iso(), "stopped": len([r for r in results if r.outcome != "survived"]),
        "survived": [r.pid for r in results if r.outcome == "survived"],
    })
    if data.get("status") in ("prepared", "starting", "running"):
        data["status"] = "interrupted"
        data["reason"] = "stopped by fl-finish"
        data["ended"] = now_iso()


def _print(console: Console, tag: str, results: list[StopResult]) -> None:
    table = Table(title=f"kill tag {tag}")
    for col in ("pid", "host", "command", "result"):
        table.add_column(col)
    for r in results:
        table.add_row(str(r.pid), "localhost", r.name[:80], r.outcome)
    console.print(table)


if __name__ == "__main__":
    main()
