"""Execute a prepared run: start the SuperLink, the client nodes and the Flower run; watch; stop.

    code = Supervisor(RunFolder("logs/20261124-053012-4f2a"), view=PlainView()).run()
    $ python -m launcher.run.supervisor logs/20261124-053012-4f2a    # what --detach starts

Local processes of a run (launcher.processes.roles), each in its own session and carrying the run's tag:

    superlink    flower-superlink (launcher.flower.quick_superlink) on 127.0.0.1 (its SuperExec and ServerApp below it)
    forkserver   launcher.processes.fork_server: imports torch and Flower once, forks the two below
    supernode i  flower-supernode --isolation process (launcher.flower.quick_supernode), Runtime API on its own port
    clientapp i  launcher.flower.warm_clientapp: serves node i's tasks
    flwr-run     `flwr run APP --stream`: submits the run, exits when the run ends
    tunnel       ssh -R to a device whose agent runs its clients (launcher.devices.run_devices)

Stop order: client apps and SuperNodes, the fork server, then `flwr run`, then the SuperLink, then
whatever is left in the run's cgroup (launcher.processes.cgroup).

The watch loop polls (processes reaped, server.log events, the app's rounds, the devices), then
decides: finished, failed with a reason, or keep going; only then does it restart a client whose
process exited, once that exit settled (launcher.processes.restarts.SettlingExits) with no stop begun: a
signal to the supervisor, the run's own end, a removed run folder (asked again as the new pair is about to
start: a restart takes seconds). A stop's SIGTERM that reaches a client before the supervisor (fl-finish, a
shutdown) is not taken for a crash. While it starts or restarts clients it says
what it is doing in run.json's ``activity`` (fl-stats --runs shows it).

The supervisor holds the run folder's supervisor lock from start to end (the process that prepared
the run took it; a detached supervisor inherits it) and puts itself in the kill tag's cgroup, so
everything the run starts is found by the kernel, not by its environment. A signal during start-up
stops the start at once; later it ends the watch loop. A disk that fills up ends the run as failed,
with run.json's last write paid for by the folder's reserve (RunFolder.keep_reserve).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contract.fleet_record import read_fleet_json
from contract.loglines import Event, LogWriter
from contract.lost_nodes import add_lost, add_lost_client
from launcher.devices.direct import bind_address, check_server_address, fleet_address, register_node_keys
from launcher.devices.remote import AgentStart, RemoteError, devices_of
from launcher.devices.run_devices import RunDevices
from launcher.fleet.emulation import EmulatedFleet
from launcher.flower.node_log import registered_since
from launcher.flower.plain_logs import plain
from launcher.flower.run_record import describe_failure, flower_run
from launcher.flower.strategy_log import read_strategy_log, round_started
from launcher.flower.task_log import task_failures
from launcher.processes.cgroup import RunGroup, TagInUse
from launcher.processes.clock import now_iso
from launcher.processes.entry_modules import QUICK_SUPERLINK
from launcher.processes.gpus import this_host_gpus, virtual_gpu_config
from launcher.processes.nodes import NODE_KEYS, NodeStart, flower_env, start_node
from launcher.processes.ports import free_ports, wait_for_port
from launcher.processes.restarts import SettlingExits, restart_client
from launcher.processes.roles import CLIENT_ROLES, Role
from launcher.processes.table import ProcessTable, create_time, terminate_then_kill
from launcher.run.folder import RunFolder, RunFolderGone
from launcher.run.liveness import processes_of
from launcher.run.ray_cluster import make_ray_temp_link, ray_env, remove_ray_temp_link
from launcher.run.run_plan import RunPlan
from launcher.run.run_status import RunStatus
from launcher.stats.follow import LogFollower
from simulator.flower_app import run_dir_config

POLL_SECONDS = 0.25
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
Outcome = tuple[RunStatus, str]  # how the run ended, and why (empty when it finished)


class StopRun(Exception):
    """A stop signal arrived while the run was starting: leave the start where it is."""


class NullView:
    def update(self, **state) -> None: ...
    def event(self, event) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class Watched:
    """What the watch loop has seen of the run so far."""

    server_log: LogFollower
    app_log: LogFollower | None  # --app: Flower's strategy log, for the rounds
    started: float
    last_progress: float
    outcome: Outcome | None = None  # the built-in app's own [run] line
    exits: SettlingExits = field(default_factory=SettlingExits)  # client exits not restarted yet


class Supervisor:
    def __init__(self, folder: RunFolder, view=None, ssh_config: str | None = None) -> None:
        """``ssh_config``: the one the user named to this fl-launch (never run.json's: a run folder is data)."""
        self.folder = folder
        self.view = view or NullView()
        self.info = folder.read()
        self.plan = RunPlan.from_json(self.info["plan"])
        self.table = ProcessTable(self.info["kill_tag"], self.info["run_id"])
        self._stop_reason: str | None = None
        self._starting = False  # a signal now raises StopRun instead of waiting for the watch loop
        self.group: RunGroup | None = None
        self.state = {"round": 0, "rounds": self.info["settings"]["rounds"], "acc": None,
                      "clients": len(self.plan.nodes), "alive": 0, "phase": "starting",
                      "rounds_done": self.info["settings"].get("start-round", 1) - 1}
        self.events = []
        self.user_app = self.plan.user_app  # fl-launch --app: the user's Flower app
        self.devices = RunDevices(devices_of(self.info, ssh_config), folder.path, self.table, self.view,
                                 on_restart=self._record_restart, on_change=self._devices_changed)
        self.restarts: dict[int, int] = {}
        self._node_log_at: dict[int, int] = {}  # client -> its supernode.log's size when its node (last) started
        self._reconnecting: set[int] = set()  # restarted clients whose new node has not registered yet
        self._registered: set[int] = set()  # local clients whose (newest) node was seen registered
        self._activity: str | None = None
        self._folder_ident = folder.path.stat().st_ino  # a folder removed and made again is not the run's
        self.outcome: Outcome | None = None  # how the run ended, once it did
        self._nodes: NodeStart | None = None  # how a local node starts, once the SuperLink is up
        fleet = None if self.plan.virtual else read_fleet_json(folder.path)  # virtual: the app emulates it
        self.fleet = EmulatedFleet(fleet, folder.path, self.table, seed=int(self.info["settings"]["seed"]),
                                   name=self.info["kill_tag"]) if fleet is not None else None

    # signals ---------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self._stop_reason = signal.Signals(signum).name
        if self._starting:
            self._starting = False
            raise StopRun()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    # run -------------------------------------------------------------------
    def run(self) -> int:
        self.install_signal_handlers()
        if not self.folder.claim(wait=0):
            self.view.message(f"run {self.folder.run_id} has a supervisor already")
            return 2
        status, reason = RunStatus.FAILED, ""
        self._starting = True
        try:
            self._take_group()
            status, reason = self._run()
        except StopRun:
            status, reason = RunStatus.INTERRUPTED, f"stopped by {self._stop_reason} during start-up"
        except TagInUse as err:
            status, reason = RunStatus.FAILED, str(err)
        except (OSError, RunFolderGone) as err:
            if self._folder_gone():  # removed under the run (a restart found no node config, ...)
                status, reason = RunStatus.FAILED, self._gone_reason()
            elif isinstance(err, RunFolderGone) or err.errno not in DISK_ERRORS:
                status, reason = RunStatus.FAILED, f"supervisor error: {type(err).__name__}: {err}"
                raise
            else:
                status, reason = RunStatus.FAILED, f"cannot write {err.filename or 'the run folder'}: {err.strerror}"
        except Exception as err:  # never leave processes behind on a bug of ours
            status, reason = RunStatus.FAILED, f"supervisor error: {type(err).__name__}: {err}"
            raise
        finally:
            self._starting = False
            self.outcome = status, reason
            self.view.message(f"stopping the run's processes ({reason or status})")
            self._stop_all()
            self._record_end(status, reason)
            self.folder.release()
        return status.exit_code()

    def _take_group(self) -> None:
        """Join the kill tag's cgroup (where there is one) and record who supervises the run."""
        self.folder.keep_reserve()
        self.group = RunGroup.claim(self.info["kill_tag"])
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
        if self._folder_gone():  # nothing to record into: the reason says so, and nothing is made again
            return
        try:
            self._finish(status, reason)
            self.folder.drop_reserve()
        except RunFolderGone:
            return
        except OSError as err:  # the disk is full and the reserve spent: the lock's release still tells the truth
            self.view.message(f"cannot record the run's end in {self.folder.run_json}: {err.strerror}")

    # start -----------------------------------------------------------------
    def _run(self) -> Outcome:
        """Start the SuperLink, the nodes (here and on devices) and the Flower run; then watch it."""
        plan = self.plan
        env = flower_env(self.folder.path, plan.torch_threads)
        if plan.virtual:  # Ray joins the cluster of --ray-address, or starts its own; its logs go to RUN/ray
            env.update(ray_env(plan.virtual.ray_address, make_ray_temp_link(self.folder.path)))
        link_port, *node_ports = free_ports(1 + (0 if plan.virtual else len(plan.nodes)))
        direct = self._direct_listener()
        if isinstance(direct, str):
            return RunStatus.FAILED, direct
        if plan.local_nodes():
            self.table.start_fork_server(self.folder.path, env)
        tls = plan.tls.under(self.folder.path) if plan.tls else None
        ca = str(tls.ca) if tls else None
        self.write_flwr_config(env, link_port, ca)
        security = (["--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key), "--ssl-ca-certfile", ca]
                    if tls else ["--insecure"])
        if direct:  # the Fleet API (only it) on that address too; nodes must hold a registered key
            security += ["--enable-supernode-auth", "--fleet-host", direct[0], "--fleet-port", str(direct[1])]
        superlink = self.table.spawn(
            Role.SUPERLINK,
            [sys.executable, "-m", QUICK_SUPERLINK, *security, "--host", "127.0.0.1", "--port", str(link_port),
             "--disable-runtime-dependency-installation", *(["--simulation"] if plan.virtual else [])],
            log=self.folder.server_dir / "superlink.log", env=env, cwd=self.folder.path, port=link_port,
        )
        self.update_processes(status=RunStatus.STARTING, started=now_iso(), superlink=f"127.0.0.1:{link_port}",
                              fleet_api=fleet_address(plan.server_address, direct[1]) if direct else None,
                              activity="the SuperLink starting")
        if not wait_for_port("127.0.0.1", link_port, 30, alive=lambda: self._alive(superlink)):
            return RunStatus.FAILED, f"the SuperLink did not start (see {superlink.log})"
        node_keys = self.folder.path / NODE_KEYS if direct else None
        if node_keys is not None and (why := register_node_keys(node_keys, env)):
            return RunStatus.FAILED, why
        gpus, share = self._gpu_share()
        self._nodes = NodeStart(self.folder.path, f"127.0.0.1:{link_port}", env, plan.torch_threads,
                                root_certificates=ca, user_app=self.user_app, node_keys=node_keys,
                                gpus=gpus, gpus_per_client=share)
        if self.fleet is not None:
            self._start_fleet(link_port)
        self._set_activity(f"0 of {len(plan.nodes)} clients connected")
        for node, port in zip([] if plan.virtual else plan.nodes, node_ports):
            if node.local:
                self._start_node(node.client, port)
        self.update_processes()
        start_round = self.info["settings"].get("start-round", 1)
        try:
            self.devices.start(AgentStart(link_port, len(plan.nodes), plan.torch_threads, plan.grace, tls=bool(tls),
                                        remote_data_dir=plan.remote_data_dir, max_restarts=plan.max_restarts,
                                        resume_round=start_round if start_round > 1 else 0, user_app=self.user_app,
                                        direct=fleet_address(plan.server_address, direct[1]) if direct else None,
                                        gpus_per_client=self._gpu_fraction()),
                             ca=tls.ca if tls else None, node_keys=node_keys)
        except RemoteError as err:
            return RunStatus.FAILED, str(err)
        self.update_processes()
        self._start_flwr_run(env)
        self.update_processes()
        return self._watch(float(plan.startup_timeout), float(self.info["settings"]["round-timeout"]))

    def _direct_listener(self) -> tuple[str, int] | str | None:
        """--server-address: the address and a free port the Fleet API listens on for the devices; None without
        it; a string: why it cannot (the address is no longer this machine's, as on a resume elsewhere)."""
        if self.plan.server_address is None:
            return None
        if why := check_server_address(self.plan.server_address):
            return why
        address = bind_address(self.plan.server_address)
        return address, free_ports(1, host=address)[0]

    def _start_flwr_run(self, env: dict[str, str]) -> None:
        """`flwr run`: submits the app's run to the SuperLink, and streams its ServerApp's log until it ends."""
        # the built-in app learns where its run folder is now (it may have been copied or moved since)
        overrides = self.plan.run_config if self.user_app else run_dir_config(self.folder.path)
        run_cmd = plain(["flwr", "run", str(self.folder.path / self.plan.app_dir), "local", "--stream",
                         *(["--run-config", overrides] if overrides else [])])
        if self.plan.virtual:  # the SuperLink's simulation runtime: N virtual nodes, one Ray worker per CPU given
            # (joining a cluster, its nodes' CPUs decide: Ray refuses num_cpus there)
            workers = "" if self.plan.virtual.ray_address else f" init-args-num-cpus={self.plan.virtual.workers}"
            gpu = virtual_gpu_config(*self._gpu_share(), on_cluster=bool(self.plan.virtual.ray_address))
            run_cmd += ["--federation-config",
                        f"num-supernodes={len(self.plan.nodes)} client-resources-num-cpus=1{workers}{gpu}"]
        self.table.spawn(Role.FLWR_RUN, run_cmd, log=self.folder.server_dir / "serverapp.log", env=env,
                         cwd=self.folder.path)

    def _gpu_share(self) -> tuple[tuple[str, ...], float]:
        """(this machine's GPUs, each client's share of one) for --gpus-per-client; ((), 0.0) without it, or
        with --device cpu. Asked in a process of its own (launcher.processes.gpus): this one forks none of CUDA."""
        share = self._gpu_fraction()
        return (this_host_gpus().ids, share) if share > 0 else ((), 0.0)

    def _gpu_fraction(self) -> float:
        """--gpus-per-client (0.0 without it, or with --device cpu): each host asks its own GPUs."""
        settings = self.info["settings"]
        return 0.0 if settings.get("device") == "cpu" else float(settings.get("gpus-per-client", 0.0))

    @staticmethod
    def write_flwr_config(env: dict[str, str], link_port: int, ca: str | None) -> None:
        """The run's own FLWR_HOME: `flwr run` finds its SuperLink there, never in ~/.flwr."""
        home = Path(env["FLWR_HOME"])
        home.mkdir(exist_ok=True)
        security = f"root-certificates = {json.dumps(ca)}" if ca else "insecure = true"
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "127.0.0.1:{link_port}"\n{security}\n'
        )

    # clients ---------------------------------------------------------------
    def _client_exited(self, proc, may_start: Callable[[], bool]) -> dict | None:
        """A local client process died mid-run: its node is lost; the pair starts again as a new node
        while it has restarts left. None: a stop began meanwhile (``may_start``), nothing done."""
        cause = self.fleet.exit_cause(proc.client) if self.fleet is not None else None
        entry = restart_client(self.table, self.folder.path, proc, self.restarts, int(self.plan.max_restarts),
                               start=lambda: self._start_node(proc.client, free_ports(1)[0]), may_start=may_start,
                               cause=cause)
        if entry is not None:
            self._record_restart(entry, host="localhost")
        return entry

    def _record_restart(self, entry: dict, host: str) -> None:
        if entry["node_id"] is not None:
            add_lost(self.folder.path, entry["node_id"])  # the server stops sampling it and waiting for it
        if not entry["restarted"]:  # gone for good: the server no longer waits for it to connect either
            add_lost_client(self.folder.path, entry["client"])
        what = f"restarted ({entry['restart']})" if entry["restarted"] else "no restart left"
        self.view.message(f"client {entry['client']} on {host}: {entry['role']} {entry['cause']}; {what}")
        self.folder.edit(lambda d: d.setdefault("restarts", []).append(dict(entry, host=host)))

    def _start_node(self, client: int, port: int) -> None:
        """A local client's two processes; with a fleet, through its link and held to its profile."""
        log = self.folder.client_dir(client) / "supernode.log"
        self._node_log_at[client] = log.stat().st_size if log.exists() else 0
        self._registered.discard(client)  # its new node registers anew
        if self.fleet is None:
            start_node(self.table, self._nodes, client, port, incarnation=self.restarts.get(client, 0))
            return
        self.fleet.adopt(client, start_node(self.table, self.fleet.superlink_of(client, self._nodes), client, port))

    def _start_fleet(self, link_port: int) -> None:
        """--fleet: say how each limit is enforced (console and run.json), then start the clients' links."""
        enforcement = self.fleet.describe()
        for what, how in enforcement.items():
            if how:
                self.view.message(f"fleet {what}: {how}")
        self.folder.update(fleet_enforcement=enforcement)
        self.fleet.start_links(link_port, [node.client for node in self.plan.local_nodes()])

    def _see_registrations(self) -> None:
        """Note the local clients whose node registered with the SuperLink since it (last) started; a client
        once seen is not read again until its node starts again (_start_node)."""
        for client in {p.client for p in self.table.alive(Role.SUPERNODE)} - self._registered:
            log = self.folder.client_dir(client) / "supernode.log"
            if client in self._node_log_at and registered_since(log, self._node_log_at[client]):
                self._registered.add(client)

    def _connected_clients(self) -> int:
        """Clients whose node registered with the SuperLink since it (last) started: here and on devices."""
        if self.plan.virtual:
            return self._alive_clients()
        local = {p.client for p in self.table.alive(Role.SUPERNODE)}
        return len(local & self._registered) + self.devices.alive_clients()

    def _alive_clients(self) -> int:
        if self.plan.virtual:  # virtual clients live as long as the simulation does
            return self.state["clients"] if self.table.alive(Role.FLWR_RUN) else 0
        return len({p.client for p in self.table.alive(Role.CLIENTAPP)}) + self.devices.alive_clients()

    # watch: poll, then decide ----------------------------------------------
    def _watch(self, startup_timeout: float, round_timeout: float) -> Outcome:
        resumed = self.info["settings"].get("start-round", 1) > 1
        now = time.monotonic()
        seen = Watched(LogFollower(self.folder.server_dir / "server.log", from_end=resumed),
                       LogFollower(self.folder.server_dir / "serverapp.log") if self.user_app else None, now, now)
        self._starting = False  # from here a signal ends the loop below
        if self._stop_reason:
            return RunStatus.INTERRUPTED, f"stopped by {self._stop_reason}"
        while True:
            self._poll(seen)
            outcome = self._decide(seen, startup_timeout, round_timeout)
            if outcome is not None:
                return outcome
            self._restart_settled(seen)
            self._say_activity(seen)
            time.sleep(POLL_SECONDS)

    def _poll(self, seen: Watched) -> None:
        """Take in what happened since the last poll: exits, server.log events, the devices, the app's rounds."""
        ended = self.table.reap()
        seen.exits.add(ended)  # restarted after the decision, once settled (_restart_settled)
        if ended:
            self.update_processes()
        self._read_server_log(seen)
        self.devices.tend()
        if self.fleet is not None:
            self.fleet.tend()
        for started, rounds in filter(None, map(round_started, seen.app_log.lines() if seen.app_log else [])):
            if self.state["round"] == 0:  # a user's app: its rounds, from Flower's strategy log
                self.folder.update(status=RunStatus.RUNNING, running_since=now_iso())
            self.state.update(round=started, rounds=rounds, phase="training")
            seen.last_progress = time.monotonic()
        self.state["alive"] = self._alive_clients()
        self.view.update(**self.state)

    def _stopping(self, seen: Watched) -> bool:
        """Has a stop begun: a signal to the supervisor, the run's own end (in the ServerApp's log, or
        `flwr run` gone), or the run folder removed?"""
        return (self._stop_reason is not None or seen.outcome is not None or self._folder_gone()
                or not self.table.alive(Role.FLWR_RUN))

    def _may_restart(self, seen: Watched) -> bool:
        """Asked before each restart and again as it is about to start (its stop window takes seconds):
        the server log read up to now first, so that the run's own end counts as soon as it is written."""
        if self._stopping(seen):
            return False
        self._read_server_log(seen)
        return not self._stopping(seen)

    def _restart_settled(self, seen: Watched) -> None:
        """Restart the clients whose exit settled with no stop begun; a stop leaves them down for good."""
        changed = False
        for proc in seen.exits.settled():
            if not self._may_restart(seen):
                break
            entry = self._client_exited(proc, may_start=lambda: self._may_restart(seen))
            changed = changed or entry is not None
            if entry is not None and entry["restarted"]:
                self._reconnecting.add(proc.client)
        if self._stopping(seen):  # none of them will be restarted: not "restarting" while the run stops
            seen.exits.drop()
            self._reconnecting.clear()
        if changed:  # the new pair's processes into run.json now, not at the next exit
            self.update_processes()

    def _say_activity(self, seen: Watched) -> None:
        """What the run is doing while it is not simply at work: starting, or restarting clients."""
        starting = self.state["phase"] == "starting"  # until round 1 starts (or getModel's first serve)
        if (starting and not self.plan.virtual) or self._reconnecting:
            self._see_registrations()
            self._reconnecting -= self._registered
        connected = self._connected_clients() if starting else 0
        restarting = sorted(seen.exits.clients() | self._reconnecting)
        if restarting:
            self._set_activity(f"restarting client{'s' if len(restarting) > 1 else ''} "
                               f"{', '.join(map(str, restarting))}")
        elif starting and self.plan.virtual:
            self._set_activity(f"the simulation runtime starting ({self.state['clients']} virtual clients)")
        elif starting:
            self._set_activity(f"{connected} of {self.state['clients']} clients connected")
        else:
            self._set_activity(None)

    def _set_activity(self, text: str | None) -> None:
        if text != self._activity:
            self._activity = text
            self.folder.update(activity=text)

    def _folder_gone(self) -> bool:
        """Was the run folder removed (or replaced by another of the same name) under the run?"""
        try:
            return self.folder.path.stat().st_ino != self._folder_ident or self.folder.gone()
        except OSError:
            return True

    def _gone_reason(self) -> str:
        return f"the run folder {self.folder.path} was removed while the run went on"

    def _read_server_log(self, seen: Watched) -> None:
        for event in seen.server_log.events():
            seen.last_progress = time.monotonic()
            seen.outcome = self._apply(event) or seen.outcome

    def _decide(self, seen: Watched, startup_timeout: float, round_timeout: float) -> Outcome | None:
        """The run's outcome once there is one; None: keep going."""
        if self._stop_reason:
            return RunStatus.INTERRUPTED, f"stopped by {self._stop_reason}"
        if self._folder_gone():
            return RunStatus.FAILED, self._gone_reason()
        if not self.table.alive(Role.FLWR_RUN):
            if self.user_app:
                return self._app_outcome()
            self._read_server_log(seen)  # its last lines
            return self._builtin_outcome(seen.outcome)
        if not self.table.alive(Role.SUPERLINK):
            return RunStatus.FAILED, "the SuperLink exited"
        now = time.monotonic()
        if self.state["round"] == 0 and now - seen.started > startup_timeout:
            return RunStatus.FAILED, (f"round 1 did not start within {startup_timeout:.0f} s: "
                                      f"{self.state['alive']} of {self.state['clients']} clients alive")
        waited = now - seen.last_progress
        if self.state["round"] > 0 and waited > round_timeout + 60:
            return RunStatus.FAILED, f"no progress for {waited:.0f} s (round timeout {round_timeout:.0f} s)"
        return None

    def _flower_says(self) -> Outcome:
        """The run's end as its SuperLink records it (``flwr run --stream`` exits 0 whatever happened)."""
        [run] = [p for p in self.table.procs if p.role == Role.FLWR_RUN]
        flower = flower_run(self._nodes.env)
        if flower is not None and flower.succeeded:
            return RunStatus.FINISHED, ""
        return RunStatus.FAILED, describe_failure(flower, Path(run.log), run.exit_code)

    def _app_outcome(self) -> Outcome:
        """A user's app: finished only when Flower records its run as completed."""
        return self._flower_says()

    def _builtin_outcome(self, outcome: Outcome | None) -> Outcome:
        """The built-in app: its own ``[run]`` line, and Flower's record of the run besides."""
        if outcome is not None and outcome[0] == RunStatus.FAILED:
            return outcome  # the ServerApp's own reason (a round not aggregated, ...) says more
        flower = self._flower_says()
        if flower[0] == RunStatus.FAILED or outcome is not None:
            return flower
        return RunStatus.FAILED, f"the Flower run ended without a result (see {self.folder.server_dir})"

    def _apply(self, event) -> Outcome | None:
        """Take in one server.log event (kept for the summary); the run's outcome when it is one."""
        self.events.append(event)
        self.view.event(event)
        kind, v = event.kind, event.values
        if kind == "server_round_start":
            if self.state["round"] == 0:  # the first round of this attempt: every client is in
                self.folder.update(status=RunStatus.RUNNING, running_since=now_iso())
            self.state.update(round=v["round"], phase="training")
        elif kind == "final_start" and self.state["round"] == 0:  # resumed after its last round: the final
            self.folder.update(status=RunStatus.RUNNING, running_since=now_iso())  # evaluation is all it does
            self.state.update(round=self.state["rounds"], phase="final evaluation")
        elif kind == "server_round_end":
            self.state.update(acc=v["acc"])
            if v["aggregated"] and v["round"] == self.state["rounds_done"] + 1:
                self.state.update(rounds_done=v["round"])  # done without a gap (resume starts at a gap)
        elif kind == "served" and self.info["task"] != "train":
            self.folder.update(status=RunStatus.RUNNING)
            self.state["phase"] = "serving"
        elif kind == "run_finished":
            return RunStatus.FINISHED, ""
        elif kind == "run_failed":
            return RunStatus.FAILED, v["reason"]
        return None

    def _alive(self, proc) -> bool:
        self.table.reap()
        return proc.alive

    # end -------------------------------------------------------------------
    def update_processes(self, **fields) -> None:
        records = [p.record(self.folder.path) for p in self.table.procs] + self.devices.records()
        self.folder.update(processes=records, **fields)

    def _devices_changed(self) -> None:
        """The devices' process records changed: into run.json, unless the run folder is gone (the watch loop
        ends the run for that; a stop's last pull must not end the stop)."""
        try:
            self.update_processes()
        except RunFolderGone:
            pass

    def _stop_all(self) -> None:
        """Each step on its own: one that fails (a device, a folder removed under the run) leaves the others
        to do, so no process of the run is left behind."""
        grace = float(self.plan.grace)
        steps = [("the devices", lambda: self.devices.stop(grace)),
                 ("the clients", lambda: self.table.stop(CLIENT_ROLES, grace=grace)),
                 ("the fork server", lambda: self.table.stop([Role.FORKSERVER], grace=grace)),
                 ("the tunnels and links", lambda: self.table.stop([Role.TUNNEL, Role.LINK], grace=grace)),
                 ("flwr run", lambda: self.table.stop([Role.FLWR_RUN], grace=grace)),
                 ("the SuperLink", lambda: self.table.stop([Role.SUPERLINK], grace=grace)),
                 ("what is left", lambda: self.table.stop_all(grace=grace)),
                 ("the run's cgroup", lambda: self._clear_group(grace)),
                 ("the fleet", lambda: self.fleet.close() if self.fleet is not None else None),
                 ("Ray's temp dir link", lambda: remove_ray_temp_link(self.folder.path) if self.plan.virtual else None)]
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

    def _finish(self, status: RunStatus, reason: str) -> None:
        summary = {}
        for event in self.events:
            if event.kind == "server_final":
                summary = {"final_accuracy": event.values["acc"], "final_test_samples": event.values["num_test"]}
        rounds_done = self.state["rounds_done"]  # without a gap, as _apply counts them
        if self.user_app:  # the rounds whose replies Flower's strategy aggregated
            rounds_done = max((r["round"] for r in read_strategy_log(self.folder.server_dir / "serverapp.log")),
                              default=0)
            summary["client_failures"] = self._record_task_failures()
        self.update_processes(status=status, reason=reason, ended=now_iso(), rounds_done=rounds_done, activity=None,
                              **summary)

    def _record_task_failures(self) -> list[dict]:
        """--app: the rounds in which clients' ClientApps raised, into server.log (and the summary's events)."""
        failures = task_failures(self.folder.path)
        if not failures:
            return []
        log = LogWriter(self.folder.server_dir / "server.log", "FLServer")
        for f in failures:
            values = {"round": f.round, "task": f.task, "failures": len(f.failed), "clients": f.clients,
                      "path": f.where()}
            log.write("app_clients_failed", level="WARNING", **values)
            self.events.append(Event("FLServer", "app_clients_failed", values))
        log.close()
        return [{"round": f.round, "task": f.task, "failed": f.failed, "clients": f.clients} for f in failures]


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
