"""Execute a prepared run: start the SuperLink, the client nodes and the Flower run; watch; stop.

    code = Supervisor(RunFolder("logs/20261124-053012-4f2a"), view=PlainView()).run()
    $ python -m launcher.run.supervisor logs/20261124-053012-4f2a    # what --detach starts

Local processes of a run, each in its own session and carrying the run's tag:

    superlink    flower-superlink on 127.0.0.1 (its SuperExec and ServerApp below it)
    forkserver   launcher.processes.fork_server: imports torch and Flower once, forks the two below
    supernode i  flower-supernode --isolation process (launcher.flower.quick_supernode), Runtime API on its own port
    clientapp i  launcher.flower.warm_clientapp: serves node i's tasks
    flwr-run     `flwr run APP --stream`: submits the run, exits when the run ends

Stop order: client apps and SuperNodes, the fork server, then `flwr run`, then the SuperLink, then
whatever is left in the run's cgroup (launcher.processes.cgroup).

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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from contract.loglines import Event, LogWriter
from contract.lost_nodes import add_lost, set_away
from launcher.apps.task_log import task_failures
from launcher.devices.remote import RemoteDevice, RemoteError, devices_of
from launcher.flower.node_log import supernode_id
from launcher.flower.run_record import describe_failure, flower_run
from launcher.flower.strategy_log import read_strategy_log, round_started
from launcher.processes.cgroup import RunGroup, TagInUse
from launcher.processes.clock import now_iso
from launcher.processes.nodes import flower_env, flwr_bin, start_node
from launcher.processes.ports import free_ports, wait_for_port
from launcher.processes.restarts import CLIENT_ROLES, first_exit_per_client, restart_client
from launcher.processes.table import ProcessTable, create_time, describe_exit, terminate_then_kill
from launcher.run.folder import RunFolder
from launcher.run.status import processes_of
from launcher.stats.follow import LogFollower
from simulator.flower_app import run_dir_config

POLL_SECONDS = 0.25
PULL_SECONDS = 3.0  # how often a device's logs are brought over while the run goes on
TUNNEL_RETRY_SECONDS = 2.0  # a device off the network: try its tunnel again this often
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StopRun(Exception):
    """A stop signal arrived while the run was starting: leave the start where it is."""


class NullView:
    def update(self, **state) -> None: ...
    def event(self, event) -> None: ...
    def message(self, text: str) -> None: ...


class Supervisor:
    def __init__(self, folder: RunFolder, view=None) -> None:
        self.folder = folder
        self.view = view or NullView()
        self.info = folder.read()
        self.table = ProcessTable(self.info["kill_tag"], self.info["run_id"])
        self._stop_reason: str | None = None
        self._starting = False  # a signal now raises StopRun instead of waiting for the watch loop
        self.group: RunGroup | None = None
        self.state = {"round": 0, "rounds": self.info["settings"]["rounds"], "acc": None,
                      "clients": len(self.info["plan"]["nodes"]), "alive": 0, "phase": "starting",
                      "rounds_done": self.info["settings"].get("start-round", 1) - 1}
        self.events = []
        self.user_app = bool(self.info["plan"].get("user_app"))  # fl-launch --app: the user's Flower app
        self.devices = devices_of(self.info)
        self.remote_procs: dict[str, list[dict]] = {}
        self.restarts: dict[int, int] = {}
        self._away: dict[str, set[int]] = {}  # device -> its node ids while SSH cannot reach it
        self._tunnel_retry_at: dict[str, float] = {}
        self._device_restarts: dict[str, int] = {}
        self._node_start = None  # (env, link port, CA) once the SuperLink is up
        self.tunnels: dict[str, object] = {}
        self._pulls: dict[str, Future] = {}
        self._last_pull = 0.0
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.devices))) if self.devices else None

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
        status, reason = "failed", ""
        self._starting = True
        try:
            self._take_group()
            status, reason = self._run()
        except StopRun:
            status, reason = "interrupted", f"stopped by {self._stop_reason} during start-up"
        except TagInUse as err:
            status, reason = "failed", str(err)
        except OSError as err:
            if err.errno not in DISK_ERRORS:
                status, reason = "failed", f"supervisor error: {type(err).__name__}: {err}"
                raise
            status, reason = "failed", f"cannot write {err.filename or 'the run folder'}: {err.strerror}"
        except Exception as err:  # never leave processes behind on a bug of ours
            status, reason = "failed", f"supervisor error: {type(err).__name__}: {err}"
            raise
        finally:
            self._starting = False
            self.view.message(f"stopping the run's processes ({reason or status})")
            self._stop_all()
            self._record_end(status, reason)
            self.folder.release()
        return {"finished": 0, "interrupted": 130}.get(status, 1)

    def _take_group(self) -> None:
        """Join the kill tag's cgroup (where there is one) and record who supervises the run."""
        self.folder.keep_reserve()
        self.group = RunGroup.claim(self.info["kill_tag"])
        if self.group is not None:
            try:
                self.group.join()
            except OSError:  # a cgroup we may make but not enter: do without, as where there is none
                self.group.remove()
                self.group = None
        self.folder.update(supervisor={"pid": os.getpid(), "created": create_time(os.getpid()), "host": "localhost"},
                           cgroup=self.group.ident if self.group else None)

    def _record_end(self, status: str, reason: str) -> None:
        try:
            self._finish(status, reason)
            self.folder.drop_reserve()
        except OSError as err:  # the disk is full and the reserve spent: the lock's release still tells the truth
            self.view.message(f"cannot record the run's end in {self.folder.run_json}: {err.strerror}")

    def _run(self) -> tuple[str, str]:
        plan, settings = self.info["plan"], self.info["settings"]
        virtual = plan.get("virtual")
        env = flower_env(self.folder.path, plan["torch_threads"])
        nodes = plan["nodes"]
        link_port, *node_ports = free_ports(1 + (0 if virtual else len(nodes)))
        if not virtual and any(node["host"] == "localhost" for node in nodes):
            self.table.start_fork_server(self.folder.path, env)
        tls = self._in_folder(plan.get("tls"))
        self.write_flwr_config(env, link_port, tls["ca"] if tls else None)
        security = (["--ssl-certfile", tls["cert"], "--ssl-keyfile", tls["key"], "--ssl-ca-certfile", tls["ca"]]
                    if tls else ["--insecure"])
        superlink = self.table.spawn(
            "superlink",
            [flwr_bin("flower-superlink"), *security, "--host", "127.0.0.1", "--port", str(link_port),
             "--disable-runtime-dependency-installation", *(["--simulation"] if virtual else [])],
            log=self.folder.server_dir / "superlink.log", env=env, cwd=self.folder.path, port=link_port,
        )
        self.update_processes(status="starting", started=now_iso(), superlink=f"127.0.0.1:{link_port}")
        if not wait_for_port("127.0.0.1", link_port, 30, alive=lambda: self._alive(superlink)):
            return "failed", f"the SuperLink did not start (see {superlink.log})"
        self._node_start = (env, link_port, tls["ca"] if tls else None)
        for node, port in zip([] if virtual else nodes, node_ports):
            if node["host"] == "localhost":
                start_node(self.table, self.folder.path, node["client"], f"127.0.0.1:{link_port}", port, env,
                           plan["torch_threads"], root_certificates=tls["ca"] if tls else None,
                           user_app=self.user_app)
        self.update_processes()
        try:
            for device, clients in self.devices:
                self._start_device(device, clients, link_port, len(nodes))
        except RemoteError as err:
            return "failed", str(err)
        self.update_processes()
        # the built-in app learns where its run folder is now (it may have been copied or moved since)
        overrides = plan.get("run_config") if self.user_app else run_dir_config(self.folder.path)
        run_cmd = [flwr_bin("flwr"), "run", str(self.folder.path / plan["app_dir"]), "local", "--stream",
                   *(["--run-config", overrides] if overrides else [])]
        if virtual:  # the SuperLink's simulation runtime: N virtual nodes, one Ray worker per CPU it is given
            run_cmd += ["--federation-config", f"num-supernodes={len(nodes)} client-resources-num-cpus=1 "
                                               f"init-args-num-cpus={virtual['workers']}"]
        self.table.spawn("flwr-run", run_cmd, log=self.folder.server_dir / "serverapp.log", env=env,
                         cwd=self.folder.path)
        self.update_processes()
        return self._watch(float(plan["startup_timeout"]), float(settings["round-timeout"]))

    def _in_folder(self, paths: dict[str, str] | None) -> dict[str, str] | None:
        """run.json's paths (relative to the run folder) where the folder is now."""
        return {name: str(self.folder.path / path) for name, path in paths.items()} if paths else None

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

    def _start_device(self, device: RemoteDevice, clients: list[int], link_port: int, num_clients: int) -> None:
        """Partitions over, a tunnel to the SuperLink up, the agent started detached."""
        plan = self.info["plan"]
        self.view.message(f"{device.host}: staging {len(clients)} client(s)")
        tls = self._in_folder(plan.get("tls"))
        data_dir = plan.get("remote_data_dir")
        start_round = self.info["settings"].get("start-round", 1)
        device.stage(self.folder.path, clients, ca=Path(tls["ca"]) if tls else None, remote_data_dir=data_dir)
        self._start_tunnel(device, link_port)
        pid = device.start_agent(link_port, clients, num_clients, plan["torch_threads"], plan["grace"],
                                 tls=bool(tls), remote_data_dir=data_dir, max_restarts=plan.get("max_restarts", 0),
                                 resume_round=start_round if start_round > 1 else 0,
                                 user_app=self.user_app)
        self.remote_procs[device.host] = [{"role": "agent", "client": None, "host": device.host, "pid": pid,
                                           "exit_code": None, "exit": "running"}]
        self.view.message(f"{device.host}: agent pid {pid}, clients {', '.join(map(str, clients))}")

    def _start_tunnel(self, device: RemoteDevice, link_port: int) -> None:
        self.tunnels[device.host] = self.table.spawn(
            "tunnel", device.tunnel_argv(link_port, link_port),
            log=self.folder.path / "devices" / device.host / "tunnel.log", port=link_port,
        )
        self._link_port = link_port

    def _client_exited(self, proc) -> None:
        """A local client process died mid-run: its node is lost; the pair starts again as a new node."""
        env, link_port, ca = self._node_start
        limit = int(self.info["plan"].get("max_restarts", 0))
        entry = restart_client(
            self.table, self.folder.path, proc, self.restarts, limit,
            start=lambda: start_node(self.table, self.folder.path, proc.client, f"127.0.0.1:{link_port}",
                                     free_ports(1)[0], env, self.info["plan"]["torch_threads"], root_certificates=ca,
                                     user_app=self.user_app))
        self._record_restart(entry, host="localhost")

    def _record_restart(self, entry: dict, host: str) -> None:
        if entry["node_id"] is not None:
            add_lost(self.folder.path, entry["node_id"])  # the server stops sampling it and waiting for it
        what = f"restarted ({entry['restart']})" if entry["restarted"] else "no restart left"
        self.view.message(f"client {entry['client']} on {host}: {entry['role']} {entry['cause']}; {what}")
        self.folder.edit(lambda d: d.setdefault("restarts", []).append(dict(entry, host=host)))

    def _tend_devices(self, final: bool = False) -> None:
        """Pull logs and agent state every few seconds; bring a dropped tunnel back."""
        for device, _ in self.devices:
            tunnel = self.tunnels.get(device.host)
            if self._tunnel_holding(device):
                self._tunnel_retry_at.pop(device.host, None)  # holding: the next drop is news again
            if not final and tunnel is not None and not tunnel.alive:
                if device.host not in self._tunnel_retry_at:
                    self.view.message(f"{device.host}: SSH tunnel ended ({describe_exit(tunnel.exit_code)}); "
                                      f"reconnecting")
                if time.monotonic() >= self._tunnel_retry_at.get(device.host, 0.0):
                    self._tunnel_retry_at[device.host] = time.monotonic() + TUNNEL_RETRY_SECONDS
                    self._start_tunnel(device, self._link_port)
        now = time.monotonic()
        if not final and now - self._last_pull < PULL_SECONDS:
            return
        self._last_pull = now
        for device, clients in self.devices:
            future = self._pulls.get(device.host)
            if future is not None and future.done():
                self._absorb(device, future.result())
                self._update_away(device, clients)
                future = None
            if future is None:
                self._pulls[device.host] = self._pool.submit(device.pull, self.folder.path)
        if final:
            for device, _ in self.devices:
                self._absorb(device, self._pulls.pop(device.host).result())

    def _tunnel_holding(self, device: RemoteDevice) -> bool:
        """Its tunnel is up and has stayed up a while (not one that is about to fail again)."""
        tunnel = self.tunnels.get(device.host)
        return tunnel is not None and tunnel.alive and time.time() - tunnel.started > 2 * PULL_SECONDS

    def _update_away(self, device: RemoteDevice, clients: list[int]) -> None:
        """A device SSH cannot reach: its nodes sit out (no waiting, no sampling) until it is back."""
        if not device.reachable and device.host not in self._away:
            nodes = {n for c in clients if (n := supernode_id(self.folder.client_dir(c) / "supernode.log"))}
            self._away[device.host] = nodes
            set_away(self.folder.path, device.host, nodes)
            self.view.message(f"{device.host}: unreachable; its clients sit out until it is back")
        elif device.reachable and device.host in self._away and self._tunnel_holding(device):
            del self._away[device.host]  # reachable again, its tunnel holding: back in the rounds
            set_away(self.folder.path, device.host, set())
            self._tunnel_retry_at.pop(device.host, None)
            self.view.message(f"{device.host}: back")

    def _absorb(self, device: RemoteDevice, agent: dict | None) -> None:
        if not agent:
            return
        seen = self._device_restarts.setdefault(device.host, 0)
        for entry in agent.get("restarts", [])[seen:]:  # the agent restarted a client of its own
            self._record_restart(entry, host=device.host)
        self._device_restarts[device.host] = len(agent.get("restarts", []))
        agent_pid = device.agent_pid or agent.get("pid")
        state = agent.get("state")
        records = [{"role": "agent", "client": None, "host": device.host, "pid": agent_pid, "port": None,
                    "exit_code": 0 if state == "stopped" else None, "exit": state}]
        records += [dict(p, host=device.host) for p in agent.get("processes", [])]
        self.remote_procs[device.host] = records
        self.update_processes()

    def _remote_alive(self) -> int:
        return sum(1 for procs in self.remote_procs.values() for p in procs
                   if p["role"] == "clientapp" and p.get("exit_code") is None)

    def _watch(self, startup_timeout: float, round_timeout: float) -> tuple[str, str]:
        resumed = self.info["settings"].get("start-round", 1) > 1
        follower = LogFollower(self.folder.server_dir / "server.log", from_end=resumed)
        app_follower = LogFollower(self.folder.server_dir / "serverapp.log") if self.user_app else None
        start = time.monotonic()
        last_progress = start
        outcome = None
        self._starting = False  # from here a signal ends the loop below
        if self._stop_reason:
            return "interrupted", f"stopped by {self._stop_reason}"
        while True:
            ended = self.table.reap()
            for proc in first_exit_per_client(ended):
                self._client_exited(proc)
            if ended:
                self.update_processes()
            for event in follower.events():
                last_progress = time.monotonic()
                outcome = self._apply(event) or outcome
            if self.devices:
                self._tend_devices()
            for started, rounds in filter(None, map(round_started, app_follower.lines() if app_follower else [])):
                if self.state["round"] == 0:  # a user's app: its rounds, from Flower's strategy log
                    self.folder.update(status="running", running_since=now_iso())
                self.state.update(round=started, rounds=rounds, phase="training")
                last_progress = time.monotonic()
            if self.info["plan"].get("virtual"):  # virtual clients live as long as the simulation does
                self.state["alive"] = self.state["clients"] if self.table.alive("flwr-run") else 0
            else:
                self.state["alive"] = len({p.client for p in self.table.alive("clientapp")}) + self._remote_alive()
            self.view.update(**self.state)
            if self._stop_reason:
                return "interrupted", f"stopped by {self._stop_reason}"
            if not self.table.alive("flwr-run") and self.user_app:
                return self._app_outcome()
            if not self.table.alive("flwr-run"):
                for event in follower.events():
                    outcome = self._apply(event) or outcome
                return self._builtin_outcome(outcome)
            if not self.table.alive("superlink"):
                return "failed", "the SuperLink exited"
            waited = time.monotonic() - last_progress
            if self.state["round"] == 0 and time.monotonic() - start > startup_timeout:
                return "failed", (f"round 1 did not start within {startup_timeout:.0f} s: "
                                  f"{self.state['alive']} of {self.state['clients']} clients alive")
            if self.state["round"] > 0 and waited > round_timeout + 60:
                return "failed", f"no progress for {waited:.0f} s (round timeout {round_timeout:.0f} s)"
            time.sleep(POLL_SECONDS)

    def _flower_says(self) -> tuple[str, str]:
        """The run's end as its SuperLink records it (``flwr run --stream`` exits 0 whatever happened)."""
        [run] = [p for p in self.table.procs if p.role == "flwr-run"]
        flower = flower_run(self._node_start[0])
        if flower is not None and flower.succeeded:
            return "finished", ""
        return "failed", describe_failure(flower, Path(run.log), run.exit_code)

    def _app_outcome(self) -> tuple[str, str]:
        """A user's app: finished only when Flower records its run as completed."""
        return self._flower_says()

    def _builtin_outcome(self, outcome: tuple[str, str] | None) -> tuple[str, str]:
        """The built-in app: its own ``[run]`` line, and Flower's record of the run besides."""
        if outcome is not None and outcome[0] == "failed":
            return outcome  # the ServerApp's own reason (a round not aggregated, ...) says more
        flower = self._flower_says()
        if flower[0] == "failed" or outcome is not None:
            return flower
        return "failed", f"the Flower run ended without a result (see {self.folder.server_dir})"

    def _apply(self, event) -> tuple[str, str] | None:
        """Take in one server.log event (kept for the summary); the run's outcome when it is one."""
        self.events.append(event)
        self.view.event(event)
        kind, v = event.kind, event.values
        if kind == "server_round_start":
            if self.state["round"] == 0:  # the first round of this attempt: every client is in
                self.folder.update(status="running", running_since=now_iso())
            self.state.update(round=v["round"], phase="training")
        elif kind == "server_round_end":
            self.state.update(acc=v["acc"])
            if v["aggregated"] and v["round"] == self.state["rounds_done"] + 1:
                self.state.update(rounds_done=v["round"])  # done without a gap (resume starts at a gap)
        elif kind == "served" and self.info["task"] != "train":
            self.folder.update(status="running")
        elif kind == "run_finished":
            return "finished", ""
        elif kind == "run_failed":
            return "failed", v["reason"]
        return None

    def _alive(self, proc) -> bool:
        self.table.reap()
        return proc.alive

    def update_processes(self, **fields) -> None:
        remote = [p for procs in self.remote_procs.values() for p in procs]
        self.folder.update(processes=[p.record(self.folder.path) for p in self.table.procs] + remote, **fields)

    def _stop_devices(self, grace: float) -> None:
        if not self.devices:
            return
        stops = {device.host: self._pool.submit(device.stop, grace) for device, _ in self.devices}
        for host, future in stops.items():
            code, output = future.result()
            if code != 0:
                self.view.message(f"{host}: stopping its processes said: {output.strip().splitlines()[-1:] or code}")
        self._tend_devices(final=True)
        self._pool.shutdown(wait=True)

    def _stop_all(self) -> None:
        grace = float(self.info["plan"]["grace"])
        self._stop_devices(grace)
        self.table.stop(CLIENT_ROLES, grace=grace)
        self.table.stop(["forkserver"], grace=grace)
        self.table.stop(["tunnel"], grace=grace)
        self.table.stop(["flwr-run"], grace=grace)
        self.table.stop(["superlink"], grace=grace)
        self.table.stop_all(grace=grace)
        if self.group is not None:  # what left the tree (daemons re-parented away, environments rewritten)
            self.group.leave()
            left = processes_of(self.group.pids())
            terminate_then_kill(left, grace=min(grace, 5.0), on_wait=self.table.reap)
            self.group.clear(5)
            self.table.reap()

    def _finish(self, status: str, reason: str) -> None:
        summary = {}
        for event in self.events:
            if event.kind == "server_final":
                summary = {"final_accuracy": event.values["acc"], "final_test_samples": event.values["num_test"]}
        rounds_done = self.state["rounds_done"]  # without a gap, as _apply counts them
        if self.user_app:  # the rounds whose replies Flower's strategy aggregated
            rounds_done = max((r["round"] for r in read_strategy_log(self.folder.server_dir / "serverapp.log")),
                              default=0)
            summary["client_failures"] = self._record_task_failures()
        self.update_processes(status=status, reason=reason, ended=now_iso(), rounds_done=rounds_done, **summary)

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
    """Entry of the detached supervisor: ``python -m launcher.run.supervisor RUN_DIR [LOCK_FD]``
    (LOCK_FD: the supervisor lock, inherited from the fl-launch that prepared the run)."""
    argv = sys.argv[1:] if argv is None else argv
    lock_fd = int(argv[1]) if len(argv) > 1 else None
    if lock_fd is not None:
        os.set_inheritable(lock_fd, False)  # a child that kept it would keep the run "supervised"
    folder = RunFolder(argv[0], lock_fd=lock_fd)
    sys.exit(Supervisor(folder).run())


if __name__ == "__main__":
    main()
