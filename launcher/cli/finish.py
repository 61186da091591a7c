"""``fl-finish``: stop every process of a run by its kill tag, and nothing else.

What a run's processes are: its supervisor and the processes its run.json records (by pid and start
time) with their descendants, the members of the tag's cgroup (launcher.processes.cgroup) and of its fleet's
CPU and memory cgroups (launcher.fleet.cgroup_limits), and processes whose environment carries the tag and a run
id, as everything a run starts does. A process that merely has FL_LAUNCH_TAG set is not one of them. Once they are
gone, the cgroups the run made are removed too, whoever made them (a supervisor killed with SIGKILL leaves them).

    $ fl-finish --kill-tag my-run          # SIGTERM, then SIGKILL after --grace seconds
    $ fl-finish                            # the newest run's tag, from its run.json
    $ fl-finish --run 20261124-053012-4f2a # that run's tag
    $ fl-finish --kill-tag my-run --dry-run
    $ fl-finish --run r1 --ssh-config fleet.conf   # a run on devices: ssh reads this config, not run.json's

A run folder is data: its devices are checked as the hosts file's entries are before ssh sees them, and
ssh reads the config named here (else the user's own), never one the run.json names.

Exit 0 when all stopped, 1 when some could not be, 2 on bad input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import psutil
from rich.console import Console
from rich.table import Table

from launcher.cli.errors import CONTEXT, OneLineErrors, UserError
from launcher.cli.live_view import make_console
from launcher.cli.option_types import SECONDS_MAX, FiniteFloat, KillTag, PathText, Text
from launcher.devices.hosts import HostsError
from launcher.devices.remote import RemoteDevice, devices_of, unused_ssh_config
from launcher.fleet.cgroup_limits import TagGroups
from launcher.processes.cgroup import RunGroup
from launcher.processes.clock import now_iso
from launcher.processes.roles import Role
from launcher.processes.table import StopResult, command_of, terminate_then_kill
from launcher.processes.tagged import tagged_processes
from launcher.run.folder import RunFolder, RunFolderError, RunFolderGone, malformed_kill_tag
from launcher.run.liveness import LIVE, processes_of, recorded_alive, run_processes
from launcher.run.ray_cluster import remove_ray_temp_link
from launcher.run.record import recorded_ssh_config
from launcher.run.run_status import RunStatus


def runs_with_tag(log_dir: Path, tag: str) -> list[tuple[RunFolder, dict]]:
    """(folder, run.json) of each run in the log dir with this kill tag; others' files are skipped."""
    found = []
    for folder in RunFolder.listed(log_dir):
        try:
            info = folder.read()
        except RunFolderError:
            continue
        if info.get("kill_tag") == tag:
            found.append((folder, info))
    return found


def _supervisors(infos: list[dict]) -> list[psutil.Process]:
    """The runs' live supervisors, by the pid and start time they recorded (a foreground one carries no tag)."""
    return [proc for info in infos for record, proc in recorded_alive(info) if record["role"] == Role.SUPERVISOR]


def _targets(tag: str, infos: list[dict], group: RunGroup | None, fleet: TagGroups) -> list[psutil.Process]:
    """Every process the runs started: recorded ones and their descendants, the tag's cgroup and its fleet's
    cgroups, and what carries both the tag and a run id in its environment (as every process a run starts does)."""
    found: dict[int, psutil.Process] = {}
    everything = [*(p for info in infos for p in run_processes(info)), *processes_of(group.pids() if group else ()),
                  *processes_of(fleet.pids()), *tagged_processes(tag)]
    for proc in everything:
        found.setdefault(proc.pid, proc)
    for pid in (os.getpid(), os.getppid()):
        found.pop(pid, None)
    return list(found.values())


@click.command("fl-finish", cls=OneLineErrors, context_settings=CONTEXT)
@click.option("--kill-tag", type=KillTag(), default=None,
              help="The run's tag.  [default: the newest run's, from its run.json]")
@click.option("--run", "run", type=Text(), default=None, help="Take the tag from this run's run.json (id or folder).")
@click.option("--log-dir", type=PathText(file_okay=False), default="logs", help="Where the run folders are.")
@click.option("--grace", type=FiniteFloat(min=0, max=SECONDS_MAX), default=10.0,
              help="Seconds between SIGTERM and SIGKILL.")
@click.option("--dry-run", is_flag=True, help="List what would be stopped; stop nothing.")
@click.option("--local-only", is_flag=True, help="This machine only: skip the run's devices (what a device runs).")
@click.option("--ssh-config", type=PathText(dir_okay=False), default=None,
              help="A run on devices: the ssh config to reach them with (never the one run.json names).  "
                   "[default: your own]")
def main(kill_tag: str | None, run: str | None, log_dir: str, grace: float, dry_run: bool, local_only: bool,
         ssh_config: str | None) -> None:
    """Stop every process fl-launch started with a kill tag: supervisor first, then the rest."""
    log_path = Path(log_dir)
    if kill_tag is not None and run is not None:
        raise UserError("give --kill-tag or --run, not both")
    if ssh_config is not None and local_only:
        raise UserError("--ssh-config is for the run's devices; --local-only skips them")
    named = None  # the run --run names (or the newest): stopped as one of the tag's runs, wherever it lies
    if kill_tag is None:
        try:
            folder = RunFolder.resolve(log_path, run)
            named = (folder, folder.read())
            kill_tag = named[1].get("kill_tag", "")
        except RunFolderError as err:
            raise UserError(f"no --kill-tag given and {err}") from None
        if (why := malformed_kill_tag(kill_tag)) is not None:  # --kill-tag's own type checked a given one
            raise UserError(why)
    runs = [] if local_only else runs_with_tag(log_path, kill_tag)
    if named is not None and not local_only and all(f.path != named[0].path for f, _ in runs):
        runs.append(named)
    infos = [info for _, info in runs]
    group = None if local_only else RunGroup.find(kill_tag)
    fleet = TagGroups.find(kill_tag)
    procs = _targets(kill_tag, infos, group, fleet)
    console = make_console()
    devices, refused = ([], []) if local_only else _devices(infos, kill_tag, ssh_config)
    if dry_run:
        _print(console, kill_tag, [StopResult(p.pid, command_of(p), "would stop") for p in procs])
        for path in fleet.paths:
            console.print(f"would remove cgroup {path}")
        for device in devices:
            console.print(f"{device.host}: would run fl-finish --local-only over ssh")
        sys.exit(0)
    for folder, _ in runs:  # a supervisor killed with SIGKILL leaves its Ray temp dir link in /tmp
        remove_ray_temp_link(folder.path)
    if not procs and not devices and not refused:
        console.print(f"no process of a run carries kill tag {kill_tag}")
        if group is not None:
            group.remove()
        sys.exit(0 if _remove_fleet_groups(console, fleet) else 1)
    results: list[StopResult] = []
    supervisors = _supervisors(infos)
    if supervisors:  # it stops and reaps its own children; give it the grace plus its own
        results += terminate_then_kill(supervisors, grace=grace + 15)
    done = {r.pid for r in results}
    results += terminate_then_kill([p for p in _targets(kill_tag, infos, group, fleet) if p.pid not in done],
                                   grace=grace)
    if results:
        _print(console, kill_tag, results)
    survived = [r for r in results if r.outcome == "survived"] + refused
    if group is not None:  # what hid from the rest (a re-parented daemon with a rewritten environment)
        if not group.clear(10):
            survived += [StopResult(pid, "?", "survived") for pid in group.pids() - {os.getpid()}]
    groups_left = not _remove_fleet_groups(console, TagGroups.find(kill_tag))  # their members are stopped now
    for device in devices:  # the same exact-tag rule, run where the processes are
        code, output = device.stop(grace)
        console.print(f"[{device.host}] " + (output.strip() or f"exit {code}").replace("\n", f"\n[{device.host}] "),
                      markup=False, highlight=False)  # ssh's words and a host name, not rich markup
        if code != 0:
            survived.append(StopResult(0, device.host, "survived"))
    for folder, _ in runs:
        try:
            folder.edit(lambda d: _record(d, results))
        except RunFolderGone:  # a run stopped while it prepared removes its folder
            continue
        except (OSError, RunFolderError) as err:  # stopped all the same; only the note is missing
            click.echo(f"fl-finish: could not note the stop in {folder.run_json}: {err}", err=True)
    sys.exit(1 if survived or groups_left else 0)


def _remove_fleet_groups(console: Console, fleet: TagGroups) -> bool:
    """Remove the fleet's CPU and memory cgroups of the tag; False when a live member holds one."""
    left = fleet.remove(timeout=5.0)  # for all of them together
    for path in fleet.paths:
        console.print(f"could not remove cgroup {path}: {left[path]}" if path in left else f"removed cgroup {path}")
    return not left


def _devices(infos: list[dict], tag: str, ssh_config: str | None) -> tuple[list[RemoteDevice], list[StopResult]]:
    """The runs' devices to reach (a line on stderr for a run.json's ssh config left out), and the runs whose
    devices fail the hosts file's checks or are recorded in another shape: left alone, said on stderr, and not
    counted as stopped."""
    found, refused = {}, []
    for info in infos:
        if not (info.get("plan") or {}).get("devices"):
            continue
        try:
            devices = devices_of(info, ssh_config, tag)
        except (KeyError, TypeError, HostsError) as err:  # another shape, or failing the hosts file's checks
            why = err if isinstance(err, HostsError) else "its run.json's devices are not fl-launch's"
            click.echo(f"fl-finish: run {info.get('run_id')}: {why}; its devices are not contacted", err=True)
            refused.append(StopResult(0, f"devices of run {info.get('run_id')}", "survived"))
            continue
        if devices and (note := unused_ssh_config(recorded_ssh_config(info), ssh_config)):
            click.echo(f"fl-finish: run {info.get('run_id')}: {note}", err=True)
        for device, _ in devices:
            found[device.host] = device
    return list(found.values()), refused


def _record(data: dict, results: list[StopResult]) -> None:
    data.setdefault("finish", []).append({
        "at": now_iso(), "stopped": len([r for r in results if r.outcome != "survived"]),
        "survived": [r.pid for r in results if r.outcome == "survived"],
    })
    if data.get("status") in LIVE:
        data["status"] = RunStatus.INTERRUPTED
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
