"""Execute a prepared run: start the SuperLink, the Flower run and the client nodes; watch; stop.

    code = Supervisor(RunFolder("logs/20261124-053012-4f2a"), view=PlainView()).run()
    $ python -m launcher.run.supervisor logs/20261124-053012-4f2a    # what --detach starts

Local processes of a run (launcher.processes.roles), each in its own session and carrying the run's tag:

    superlink    flower-superlink (launcher.flower.quick_superlink) on 127.0.0.1 (its SuperExec and ServerApp below it)
    forkserver   launcher.processes.fork_server: imports torch and Flower once, forks the two below
    supernode i  flower-supernode --isolation process (launcher.flower.quick_supernode), Runtime API on its own port
    clientapp i  launcher.flower.warm_clientapp: serves node i's tasks
    flwr-run     `flwr run APP --stream`: submits the run, exits when the run ends
    tunnel       ssh -R to a device whose agent runs its clients (launcher.devices.run_devices)

The clients run in parts (launcher.run.parts: this machine's clients, the fleet's links, the devices), each
started, polled, recorded and stopped the same way. Stop order: the parts in reverse (the devices, the client
apps and SuperNodes with the fork server, the fleet's links), then `flwr run`, then the SuperLink, then whatever
is left in the run's cgroup (launcher.processes.cgroup).

The watch loop polls (processes reaped, server.log events, each part, the app's rounds), then decides
(launcher.run.outcome, pure: finished, failed with a reason, or keep going); only then does it restart a client
whose process exited, once that exit settled (launcher.processes.restarts.SettlingExits) with no stop begun: a
signal to the supervisor, the run's own end, a removed run folder (asked again as the new pair is about to
start: a restart takes seconds). A stop's SIGTERM that reaches a client before the supervisor (fl-finish, a
shutdown) is not taken for a crash. While it starts or restarts clients it says what it is doing in run.json's
``activity`` (fl-stats --runs shows it); launcher.run.journal writes run.json, launcher.run.flower_commands
holds Flower's command lines.

The supervisor holds the run folder's supervisor lock from start to end (the process that prepared
the run took it; a detached supervisor inherits it) and puts itself in the kill tag's cgroup, so
everything the run starts is found by the kernel, not by its environment. A signal during start-up
stops the start at once; later it ends the watch loop. A disk that fills up ends the run as failed,
with run.json's last write paid for by the folder's reserve (RunFolder.keep_reserve).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

from contract.fleet_record import read_fleet_json
from contract.fork_requests import FORK_SERVER_ENV
from launcher.devices.direct import bind_address, check_server_address, fleet_address, register_node_keys
from launcher.devices.remote import AgentStart, RemoteError, devices_of
from launcher.devices.run_devices import RunDevices
from launcher.fleet.emulation import EmulatedFleet
from launcher.fleet.profiles import holds_cpu
from launcher.flower.run_record import describe_failure, flower_run
from launcher.processes.cgroup import RunGroup, TagInUse
from launcher.processes.clock import now_iso
from launcher.processes.gpus import this_host_gpus, virtual_gpu_config
from launcher.processes.nodes import NODE_KEYS, NodeStart, flower_env
from launcher.processes.ports import free_ports, wait_for_port
from launcher.processes.roles import Role
from launcher.processes.table import ProcessTable, create_time, terminate_then_kill
from launcher.run.flower_commands import flwr_run_argv, superlink_argv, write_flwr_config
from launcher.run.folder import RunFolder, RunFolderGone
from launcher.run.journal import RunJournal
from launcher.run.liveness import processes_of
from launcher.run.outcome import Limits, Outcome, Progress, Seen, decide, gone_reason, stopping
from launcher.run.parts import DeviceClients, FleetLinks, LocalClients, Part
from launcher.run.ray_cluster import make_ray_temp_link, ray_env, remove_ray_temp_link
from launcher.run.record import RunRecord
from launcher.run.run_logs import RunLogs
from launcher.run.run_status import RunStatus

POLL_SECONDS = 0.25
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StopRun(Exception):
    """A stop signal arrived while the run was starting: leave the start where it is."""


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP to the supervisor: while the run starts they stop the start at once (StopRun);
    later the watch loop ends at its next poll."""

    def __init__(self) -> None:
        self.reason: str | None = None  # the signal's name, once one came
        self.starting = False  # a signal now raises StopRun instead of waiting for the watch loop

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        self.reason = signal.Signals(signum).name
        if self.starting:
            self.starting = False
            raise StopRun()


class NullView:
    def update(self, **state) -> None: ...
    def event(self, event) -> None: ...
    def message(self, text: str) -> None: ...


class Supervisor:
    def __init__(self, folder: RunFolder, view=None, ssh_config: str | None = None) -> None:
        """``ssh_config``: the one the user named to this fl-launch (never run.json's: a run folder is data)."""
        self.folder = folder
        self.view = view or NullView()
        recorded = folder.read()
        record = RunRecord.from_json(recorded)
        self.plan = record.plan
        self.settings = record.settings  # the built-in app's, derived from the options
        self.table = ProcessTable(recorded["kill_tag"], recorded["run_id"])
        self.journal = RunJournal(folder, self.view)
        self.progress = Progress(rounds=self.settings.rounds, rounds_done=self.settings.start_round - 1,
                                 clients=len(self.plan.nodes), task=recorded["task"], started=time.monotonic())
        self.limits = Limits(float(self.plan.startup_timeout), self.settings.round_timeout, self.plan.user_app,
                             folder.path)
        self.logs = RunLogs(folder.server_dir, self.progress, self.view, self.plan.user_app)
        self.events = self.logs.events  # server.log's, for the summary
        self.signals = StopSignals()
        self.outcome: Outcome | None = None  # how the run ended, once it did
        self.group: RunGroup | None = None
        self.parts: list[Part] = []  # in start order; stopped in reverse
        self.local_clients: LocalClients | None = None  # the one part that restarts clients here
        self._devices = devices_of(recorded, ssh_config)
        self._node_keys: Path | None = None  # --server-address: the nodes' keys (tls/nodes), made by the plan
        self._direct: str | None = None  # --server-address: HOST:PORT of the Fleet API the devices reach
        self._env: dict[str, str] = {}
        fleet = None if self.plan.virtual else read_fleet_json(folder.path)  # virtual: the app emulates it
        self.fleet = EmulatedFleet(fleet, folder.path, self.table, seed=self.settings.seed,
                                   name=self.table.tag) if fleet is not None else None

    # run -------------------------------------------------------------------
    def run(self) -> int:
        self.signals.install()
        if not self.folder.claim(wait=0):
            self.view.message(f"run {self.folder.run_id} has a supervisor already")
            return 2
        status, reason = RunStatus.FAILED, ""
        self.signals.starting = True
        try:
            self._take_group()
            status, reason = self._start() or self._watch()
        except StopRun:
            status, reason = RunStatus.INTERRUPTED, f"stopped by {self.signals.reason} during start-up"
        except TagInUse as err:
            status, reason = RunStatus.FAILED, str(err)
        except (OSError, RunFolderGone) as err:
            if self.journal.folder_gone():  # removed under the run (a restart found no node config, ...)
                status, reason = RunStatus.FAILED, gone_reason(self.folder.path)
            elif isinstance(err, RunFolderGone) or err.errno not in DISK_ERRORS:
                status, reason = RunStatus.FAILED, f"supervisor error: {type(err).__name__}: {err}"
                raise
            else:
                status, reason = RunStatus.FAILED, f"cannot write {err.filename or 'the run folder'}: {err.strerror}"
        except Exception as err:  # never leave processes behind on a bug of ours
            status, reason = RunStatus.FAILED, f"supervisor error: {type(err).__name__}: {err}"
            raise
        finally:
            self.signals.starting = False
            self.outcome = status, reason
            self.view.message(f"stopping the run's processes ({reason or status})")
            self._stop_all()
            self._record_end(status, reason)
            self.folder.release()
        return status.exit_code()

    def _take_group(self) -> None:
        """Join the kill tag's cgroup (where there is one) and record who supervises the run."""
        self.folder.keep_reserve()
        self.group = RunGroup.claim(self.table.tag)
        if self.fleet is not None:  # the tag is this run's now: what an earlier attempt of it left goes
            self.fleet.clear_leftovers()
        if self.group is not None:
            try:
                self.group.join()
            except OSError:  # a cgroup we may make but not enter: do without, as where there is none
                self.group.remove()
                self.group = None
        self.folder.update(supervisor={"pid": os.getpid(), "created": create_time(os.getpid()), "host": "localhost"},
                           cgroup=self.group.ident if self.group else None)

    def _record_end(self, status: RunStatus, reason: str) -> None:
        if self.journal.folder_gone():  # nothing to record into: the reason says so, and nothing is made again
            return
        try:
            self.journal.end(self._records(), status, reason, self.events, self.progress.rounds_done,
                             self.plan.user_app)
            self.folder.drop_reserve()
        except RunFolderGone:
            return
        except OSError as err:  # the disk is full and the reserve spent: the lock's release still tells the truth
            self.view.message(f"cannot record the run's end in {self.folder.run_json}: {err.strerror}")

    # start -----------------------------------------------------------------
    def _start(self) -> Outcome | None:
        """The SuperLink, the Flower run, the parts that run the clients (here, the fleet's links, on devices).
        None: all started, to be watched; else how the start failed."""
        plan = self.plan
        self._env = env = flower_env(self.folder.path, plan.torch_threads)
        if plan.virtual:  # Ray joins the cluster of --ray-address, or starts its own; its logs go to RUN/ray
            env.update(ray_env(plan.virtual.ray_address, make_ray_temp_link(self.folder.path)))
        link_port, *node_ports = free_ports(1 + (0 if plan.virtual else len(plan.nodes)))
        link_env = env
        if plan.local_nodes():  # imports torch while the SuperLink starts; forks the clients (and the ServerApp)
            forks = self.table.start_fork_server(self.folder.path, env)
            if not plan.user_app:  # the built-in ServerApp, asked for by the SuperExec; a user's starts fresh
                link_env = dict(env, **{FORK_SERVER_ENV: forks.to_env()})
        direct = self._direct_listener()
        if isinstance(direct, str):
            return RunStatus.FAILED, direct
        tls = plan.tls.under(self.folder.path) if plan.tls else None
        write_flwr_config(env, link_port, str(tls.ca) if tls else None)
        superlink = self.table.spawn(Role.SUPERLINK, superlink_argv(link_port, tls, bool(plan.virtual), direct),
                                     log=self.folder.server_dir / "superlink.log", env=link_env, cwd=self.folder.path,
                                     port=link_port)
        self._write_processes(status=RunStatus.STARTING, started=now_iso(), superlink=f"127.0.0.1:{link_port}",
                              fleet_api=fleet_address(plan.server_address, direct[1]) if direct else None,
                              activity="the SuperLink starting")
        if not wait_for_port("127.0.0.1", link_port, 30, alive=lambda: self._alive(superlink)):
            return RunStatus.FAILED, f"the SuperLink did not start (see {superlink.log})"
        self._node_keys = self.folder.path / NODE_KEYS if direct else None
        if self._node_keys is not None and (why := register_node_keys(self._node_keys, env)):
            return RunStatus.FAILED, why
        self._direct = fleet_address(plan.server_address, direct[1]) if direct else None
        self.journal.activity(f"0 of {len(plan.nodes)} clients connected")
        # the run is submitted before its clients start: the ServerApp starts (imports torch, builds its model) while
        # they do, and its first round waits for every client to connect (simulator.strategy.wait_for_nodes)
        gpu = virtual_gpu_config(*self._gpu_share(), on_cluster=bool(plan.virtual.ray_address)) if plan.virtual else ""
        self.table.spawn(Role.FLWR_RUN, flwr_run_argv(self.folder.path, plan, gpu),
                         log=self.folder.server_dir / "serverapp.log", env=env, cwd=self.folder.path)
        self._write_processes()
        try:
            for part in self._parts(link_port, node_ports):
                self.parts.append(part)  # stopped at the end, even when its start fails half way
                part.start()
                self._write_processes()
        except RemoteError as err:
            return RunStatus.FAILED, str(err)
        return None

    def _parts(self, link_port: int, node_ports: list[int]) -> list[Part]:
        """The parts this run has, in start order: the fleet's links, this machine's clients, the devices."""
        plan, parts = self.plan, []
        tls = plan.tls.under(self.folder.path) if plan.tls else None
        ports = {node.client: port for node, port in zip([] if plan.virtual else plan.nodes, node_ports) if node.local}
        if self.fleet is not None:
            parts.append(FleetLinks(self.fleet, self.table, link_port, list(ports), describe=self._describe_fleet))
        if ports:
            gpus, share = self._gpu_share()
            nodes = NodeStart(self.folder.path, f"127.0.0.1:{link_port}", self._env, plan.torch_threads,
                              root_certificates=str(tls.ca) if tls else None, user_app=plan.user_app,
                              node_keys=self._node_keys, gpus=gpus, gpus_per_client=share,
                              held=self.fleet is not None and holds_cpu(self.fleet.fleet, ports))
            self.local_clients = LocalClients(self.table, nodes, ports, int(plan.max_restarts), self.fleet,
                                              on_restart=self.journal.restart)
            parts.append(self.local_clients)
        if self._devices:
            start_round = self.settings.start_round
            spec = AgentStart(link_port, len(plan.nodes), plan.torch_threads, plan.grace, tls=bool(tls),
                              remote_data_dir=plan.remote_data_dir, max_restarts=plan.max_restarts,
                              resume_round=start_round if start_round > 1 else 0, user_app=plan.user_app,
                              direct=self._direct, gpus_per_client=self._gpu_fraction())
            devices = RunDevices(self._devices, self.folder.path, self.table, self.view,
                                 on_restart=self.journal.restart, on_change=self._devices_changed)
            parts.append(DeviceClients(devices, self.table, spec, ca=tls.ca if tls else None,
                                       node_keys=self._node_keys))
        return parts

    def _direct_listener(self) -> tuple[str, int] | str | None:
        """--server-address: the address and a free port the Fleet API listens on for the devices; None without
        it; a string: why it cannot (the address is no longer this machine's, as on a resume elsewhere)."""
        if self.plan.server_address is None:
            return None
        if why := check_server_address(self.plan.server_address):
            return why
        address = bind_address(self.plan.server_address)
        return address, free_ports(1, host=address)[0]

    def _gpu_share(self) -> tuple[tuple[str, ...], float]:
        """(this machine's GPUs, each client's share of one) for --gpus-per-client; ((), 0.0) without it, or
        with --device cpu. Asked in a process of its own (launcher.processes.gpus): this one forks none of CUDA."""
        share = self._gpu_fraction()
        return (this_host_gpus().ids, share) if share > 0 else ((), 0.0)

    def _gpu_fraction(self) -> float:
        """--gpus-per-client (0.0 without it, or with --device cpu): each host asks its own GPUs."""
        return 0.0 if self.settings.device == "cpu" else float(self.settings.gpus_per_client)

    def _describe_fleet(self, enforcement: dict) -> None:
        """--fleet: how each limit is enforced, on the console and in run.json."""
        for what, how in enforcement.items():
            if how:
                self.view.message(f"fleet {what}: {how}")
        self.folder.update(fleet_enforcement=enforcement)

    # watch: poll, decide, then act -----------------------------------------
    def _watch(self) -> Outcome:
        self.logs.follow(resumed=self.settings.start_round > 1)
        self.progress.started = self.progress.last_progress = time.monotonic()
        self.signals.starting = False  # from here a signal ends the loop below
        while True:
            self._poll()
            seen = self._seen()
            if not seen.flwr_run_alive:
                self._read_logs()  # their last lines
            outcome = decide(self.progress, seen, self.limits, time.monotonic(), flower=self._flower_says)
            if outcome is not None:
                return outcome
            self._restart_settled()
            self._say_activity()
            time.sleep(POLL_SECONDS)

    def _poll(self) -> None:
        """Take in what happened since the last poll: exits, the logs, each part's news."""
        ended = self.table.reap()
        if self.local_clients is not None:
            self.local_clients.exited(ended)  # restarted after the decision, once settled
        if ended:
            self._write_processes()
        self._read_logs()
        for part in self.parts:
            part.poll()
        self.progress.alive = self._clients_alive()
        self.view.update(**self.progress.view())

    def _seen(self) -> Seen:
        return Seen(stop_reason=self.signals.reason, folder_gone=self.journal.folder_gone(),
                    flwr_run_alive=bool(self.table.alive(Role.FLWR_RUN)),
                    superlink_alive=bool(self.table.alive(Role.SUPERLINK)))

    def _read_logs(self) -> None:
        if self.logs.read(time.monotonic()):
            self.journal.running()

    def _may_restart(self) -> bool:
        """Asked before each restart and again as it is about to start (its stop window takes seconds):
        the server log read up to now first, so that the run's own end counts as soon as it is written."""
        if stopping(self.progress, self._seen()):
            return False
        self._read_logs()
        return not stopping(self.progress, self._seen())

    def _restart_settled(self) -> None:
        """Restart the clients whose exit settled with no stop begun; a stop leaves them down for good."""
        if self.local_clients is None:
            return
        changed = self.local_clients.restart_settled(self._may_restart)
        if stopping(self.progress, self._seen()):  # none of them will be restarted: not "restarting" now
            self.local_clients.give_up_restarts()
        if changed:  # the new pair's processes into run.json now, not at the next exit
            self._write_processes()

    def _say_activity(self) -> None:
        """What the run is doing while it is not simply at work: starting, or restarting clients."""
        restarting = self.local_clients.restarting() if self.local_clients else []
        starting = self.progress.phase == "starting"  # until round 1 starts (or getModel's first serve)
        if restarting:
            self.journal.activity(f"restarting client{'s' if len(restarting) > 1 else ''} "
                                  f"{', '.join(map(str, restarting))}")
        elif starting and self.plan.virtual:
            self.journal.activity(f"the simulation runtime starting ({self.progress.clients} virtual clients)")
        elif starting:
            connected = sum(part.clients_connected() for part in self.parts)
            self.journal.activity(f"{connected} of {self.progress.clients} clients connected")
        else:
            self.journal.activity(None)

    def _clients_alive(self) -> int:
        if self.plan.virtual:  # virtual clients live as long as the simulation does
            return self.progress.clients if self.table.alive(Role.FLWR_RUN) else 0
        return sum(part.clients_alive() for part in self.parts)

    def _flower_says(self) -> Outcome:
        """The run's end as its SuperLink records it (``flwr run --stream`` exits 0 whatever happened)."""
        [run] = [p for p in self.table.procs if p.role == Role.FLWR_RUN]
        flower = flower_run(self._env)
        if flower is not None and flower.succeeded:
            return RunStatus.FINISHED, ""
        return RunStatus.FAILED, describe_failure(flower, Path(run.log), run.exit_code)

    def _alive(self, proc) -> bool:
        self.table.reap()
        return proc.alive

    # records and stop ------------------------------------------------------
    def _records(self) -> list[dict]:
        """run.json's processes: every local one (the run's process table), then what the parts add."""
        return [p.record(self.folder.path) for p in self.table.procs] + [r for part in self.parts
                                                                          for r in part.records()]

    def _write_processes(self, **fields) -> None:
        self.journal.processes(self._records(), **fields)

    def _devices_changed(self) -> None:
        """The devices' process records changed: into run.json, unless the run folder is gone (the watch loop
        ends the run for that; a stop's last pull must not end the stop)."""
        try:
            self._write_processes()
        except RunFolderGone:
            pass

    def _stop_all(self) -> None:
        """Each step on its own: one that fails (a device, a folder removed under the run) leaves the others
        to do, so no process of the run is left behind."""
        grace = float(self.plan.grace)
        steps = [(part.what, lambda part=part: part.stop(grace)) for part in reversed(self.parts)]
        steps += [("flwr run", lambda: self.table.stop([Role.FLWR_RUN], grace=grace)),
                  ("the SuperLink", lambda: self.table.stop([Role.SUPERLINK], grace=grace)),
                  ("what is left", lambda: self.table.stop_all(grace=grace)),
                  ("the run's cgroup", lambda: self._clear_group(grace)),
                  ("the fleet", lambda: self.fleet.close() if self.fleet is not None else None),
                  ("Ray's temp dir link",
                   lambda: remove_ray_temp_link(self.folder.path) if self.plan.virtual else None)]
        for what, step in steps:
            try:
                step()
            except Exception as err:  # noqa: BLE001  said, and the next step still runs
                self.view.message(f"stopping {what} failed: {type(err).__name__}: {err}")

    def _clear_group(self, grace: float) -> None:
        """What left the tree (daemons re-parented away, environments rewritten), found by the run's cgroup."""
        if self.group is None:
            return
        self.group.leave()
        left = processes_of(self.group.pids())
        terminate_then_kill(left, grace=min(grace, 5.0), on_wait=self.table.reap)
        self.group.clear(5)
        self.table.reap()


def main(argv: list[str] | None = None) -> None:
    """Entry of the detached supervisor: ``python -m launcher.run.supervisor RUN_DIR [LOCK_FD] [--ssh-config FILE]``
    (LOCK_FD: the supervisor lock, inherited from the fl-launch that prepared the run; FILE: its --ssh-config)."""
    argv = sys.argv[1:] if argv is None else argv
    ssh_config = None
    if "--ssh-config" in argv:
        at = argv.index("--ssh-config")
        ssh_config, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    lock_fd = int(argv[1]) if len(argv) > 1 else None
    if lock_fd is not None:
        os.set_inheritable(lock_fd, False)  # a child that kept it would keep the run "supervised"
    folder = RunFolder(argv[0], lock_fd=lock_fd)
    sys.exit(Supervisor(folder, ssh_config=ssh_config).run())


if __name__ == "__main__":
    main()
