"""A run's plan: what prepare_run decided and the Supervisor carries out.

    plan = RunRecord.read(folder).plan                       # launcher.run.record: run.json's one reader
    [node.client for node in plan.nodes if node.local]      # the clients this machine starts
    plan.tls.under(folder.path).ca if plan.tls else None       # TlsPaths, relative in run.json

run.json's "plan" keeps only what the launch made that the options do not say (facts_json: the app's
folder, the nodes and their partitions' sizes, the devices, TLS files, the workers chosen, the data's
shape, the checkpoint it starts from); from_facts rebuilds the rest from the options. from_json reads
the "plan" of a run.json written before (issue 27), which held it all. Paths in it are relative to the
run folder, which may have moved since.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.devices.hosts import DevicePlacement
from launcher.devices.tls import TlsPaths
from launcher.processes.node_config import parse_node_config_option

if TYPE_CHECKING:
    from launcher.run.options import LaunchOptions

LOCALHOST = "localhost"


@dataclass(frozen=True)
class NodePlacement:
    """One client node: where it runs, its node config (local nodes), its partition's size."""

    client: int
    host: str = LOCALHOST
    node_config: str | None = None  # client_<i>/node_config.toml, relative; None: virtual, or a device writes it
    samples: int = 0

    @property
    def local(self) -> bool:
        return self.host == LOCALHOST

    def to_json(self) -> dict:
        return {"client": self.client, "host": self.host, "node_config": self.node_config, "samples": self.samples}

    @classmethod
    def from_json(cls, data: dict) -> NodePlacement:
        return cls(data["client"], data.get("host", LOCALHOST), data.get("node_config"), data.get("samples", 0))


@dataclass(frozen=True)
class Virtual:
    """Flower's simulation runtime runs the clients (``--mode virtual``), on this many worker processes."""

    workers: int
    ray_address: str | None = None  # an existing Ray cluster the run joins (--ray-address), HOST:PORT

    def to_json(self) -> dict:
        return {"workers": self.workers, **({"ray_address": self.ray_address} if self.ray_address else {})}

    @classmethod
    def from_json(cls, data: dict) -> Virtual:
        return cls(data["workers"], data.get("ray_address"))


@dataclass(frozen=True)
class RunPlan:
    app_dir: str  # the Flower app: relative to the run folder (built-in), or the user's --app folder
    nodes: tuple[NodePlacement, ...]
    startup_timeout: float  # seconds for every client to connect and round 1 to start
    grace: float  # seconds between SIGTERM and SIGKILL when stopping
    torch_threads: int
    devices: tuple[DevicePlacement, ...] = ()
    ssh_config: str | None = None
    tls: TlsPaths | None = None  # relative to the run folder
    server_address: str | None = None  # devices reach the Fleet API here directly (nodes' keys in tls/nodes)
    remote_data_dir: str | None = None
    max_restarts: int = 0
    virtual: Virtual | None = None
    user_app: bool = False  # --app: the user's own Flower app
    run_config: str | None = None  # --app: its run config overrides, "key=value ..."
    node_config: dict = field(default_factory=dict)  # --node-config, added to every client's
    # the built-in app's facts of the launch: the data's shape, and the checkpoint a served or resumed run starts
    # from (relative), and where a --model module is imported from (the launch's working directory)
    channels: int = 1
    classes: int = 10
    checkpoint: str = ""
    model_path: str = ""

    def facts_json(self) -> dict:
        """run.json's "plan": what the launch made that the options do not say (from_facts adds the rest)."""
        return {
            "app_dir": self.app_dir, "nodes": [node.to_json() for node in self.nodes],
            "devices": [placed.to_json() for placed in self.devices],
            "tls": {name: str(path) for name, path in asdict(self.tls).items()} if self.tls else None,
            "virtual": {"workers": self.virtual.workers} if self.virtual else None,
            "channels": self.channels, "classes": self.classes, "checkpoint": self.checkpoint,
            "model_path": self.model_path,
        }

    @classmethod
    def from_facts(cls, opts: LaunchOptions, facts: dict) -> RunPlan:
        """The plan of run.json's facts_json and the options it was made of; KeyError or TypeError: a "plan"
        of another shape than fl-launch writes."""
        tls, virtual = facts.get("tls"), facts.get("virtual")
        return cls(
            app_dir=facts["app_dir"], nodes=tuple(map(NodePlacement.from_json, facts["nodes"])),
            startup_timeout=opts.startup_deadline(), grace=opts.grace, torch_threads=opts.torch_threads,
            devices=tuple(map(DevicePlacement.from_json, facts.get("devices", []))), ssh_config=opts.ssh_config,
            tls=TlsPaths(**{name: Path(path) for name, path in tls.items()}) if tls else None,
            server_address=opts.server_address, remote_data_dir=opts.remote_data_dir,
            max_restarts=opts.max_restarts,
            virtual=Virtual(virtual["workers"], opts.ray_address) if virtual else None, user_app=opts.app is not None,
            run_config=opts.run_config,
            node_config=parse_node_config_option(opts.node_config) if opts.node_config else {},
            channels=facts["channels"], classes=facts["classes"], checkpoint=facts.get("checkpoint", ""),
            model_path=facts.get("model_path", ""),
        )

    @classmethod
    def from_json(cls, data: dict) -> RunPlan:
        """The "plan" of a run.json written before issue 27 (it held every field; the data's facts were in its
        "settings", which RunRecord adds); KeyError or TypeError: one of another shape than fl-launch wrote."""
        tls, virtual = data.get("tls"), data.get("virtual")
        return cls(
            app_dir=data["app_dir"], nodes=tuple(map(NodePlacement.from_json, data["nodes"])),
            startup_timeout=data["startup_timeout"], grace=data["grace"], torch_threads=data["torch_threads"],
            devices=tuple(map(DevicePlacement.from_json, data.get("devices", []))),
            ssh_config=data.get("ssh_config"),
            tls=TlsPaths(**{name: Path(path) for name, path in tls.items()}) if tls else None,
            server_address=data.get("server_address"),
            remote_data_dir=data.get("remote_data_dir"), max_restarts=data.get("max_restarts", 0),
            virtual=Virtual.from_json(virtual) if virtual else None, user_app=bool(data.get("user_app")),
            run_config=data.get("run_config"), node_config=data.get("node_config") or {},
        )

    def local_nodes(self) -> list[NodePlacement]:
        """The nodes this machine starts (none in virtual mode: the simulation runtime has them)."""
        return [] if self.virtual else [node for node in self.nodes if node.local]
