"""The keys the built-in app reads from Flower's run config and node config.

    s = RunSettings.from_config(context.run_config)
    s.rounds, s.lr
    # (5, 0.001)

fl-launch writes these into the app's ``pyproject.toml`` and ``node_config.toml``
(``flower-supernode --node-config``); under plain Flower a user sets them the same
way, so the app runs without fl-launch too. Paths in them may be relative to
``run-dir`` (a run folder stores no absolute path of itself: fl-launch gives
``run-dir`` and the node's paths, absolute, on the command line of every start).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from contract.run_layout import DATA_DIR, client_dir_name, partition_file

DEVICES = ("auto", "cpu", "cuda")  # --device: where the built-in app computes (simulator.device)
STRATEGY_NAMES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad")  # Flower's: simulator.strategy


@dataclass(frozen=True)
class AppOptions:
    """The built-in app's settings that are fl-launch options of the same name (``--local-epochs`` is
    ``local_epochs`` here, ``local-epochs`` in the run config): fl-launch's LaunchOptions and RunSettings both
    extend this, so a new one is declared here once (then given its flag in launcher/cli/launch.py, and read
    by the app)."""

    task: str = "train"
    rounds: int = 10
    local_epochs: int = 3  # tuned on digits: see docs/performance.md
    batch_size: int = 32
    lr: float = 0.001
    round_timeout: float = 300.0
    seed: int = 0
    torch_threads: int = 1
    model: str = ""  # module:Class of a torch module; "": LeNet5 (simulator.model)
    strategy: str = "fedavg"  # one of STRATEGY_NAMES
    proximal_mu: float = 0.01  # fedprox
    server_lr: float = 0.0  # fedadam, fedyogi, fedadagrad: eta; 0: Flower's default
    beta_1: float = 0.9  # fedadam, fedyogi
    beta_2: float = 0.99  # fedadam, fedyogi
    tau: float = 0.001  # fedadam, fedyogi, fedadagrad
    overcommit: float = 1.0  # > 1: sample ceil(K x overcommit) clients, aggregate the first K replies
    device: str = "auto"  # auto|cpu|cuda: where a task computes (simulator.device); auto: CUDA where torch sees it


@dataclass(frozen=True)
class RunSettings(AppOptions):
    """AppOptions, and what fl-launch derives for the app from its other options and the data."""

    clients_per_round: int = 0  # 0: every client, every round
    min_clients: int = 0  # 0: every sampled client must reply
    num_clients: int = 1
    channels: int = 1
    num_classes: int = 10
    run_dir: str = "."  # fl-launch: the run folder where it is now, given at each start (flwr run --run-config)
    checkpoint: str = ""  # getModel / inference: the state_dict to serve; train: the one to resume from (under run_dir)
    start_round: int = 1  # > 1: a resumed run, continuing from `checkpoint`
    model_path: str = ""  # a folder appended to sys.path to import it from
    virtual: bool = False  # the clients run on Flower's simulation runtime (fl-launch --mode virtual)
    round_deadline: float = 0.0  # seconds; > 0: a round closes then with the replies it has (simulator.strategy)
    gpus_per_client: float = 0.0  # > 0: a client's share of a GPU, its memory bound there (simulator.device)

    def checkpoint_file(self) -> Path:
        """``checkpoint``, relative to ``run_dir`` unless it is absolute."""
        return Path(self.run_dir) / self.checkpoint

    @classmethod
    def from_config(cls, config) -> "RunSettings":
        names = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in dict(config).items():
            name = key.replace("-", "_")
            if name in names:
                values[name] = type(getattr(cls, name))(value)
        return cls(**values)

    def to_config(self) -> dict:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}


def checkpoint_path(run_dir: str | Path, server_round: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"round_{server_round:04d}.pt"


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """(round, path) of the newest checkpoint in a run folder, or None."""
    found = sorted(Path(run_dir, "checkpoints").glob("round_*.pt"))
    if not found:
        return None
    path = found[-1]
    return int(path.stem.split("_")[1]), path


def failed_round_path(run_dir: str | Path, server_round: int) -> Path:
    """The mark of a round that failed at its deadline: done, the model as it was (no checkpoint of its own)."""
    return Path(run_dir) / "checkpoints" / f"round_{server_round:04d}.failed"


def resume_checkpoint(run_dir: str | Path, last_round: int | None = None) -> tuple[int, Path] | None:
    """(round, path): the last round (up to ``last_round``) with every round before it done, and the newest
    checkpoint up to it; None without a round 0 checkpoint.

    A round is done when it was aggregated (its checkpoint) or failed at its deadline (its mark,
    failed_round_path: the run went on with the model as it was). A round that was not aggregated otherwise
    has neither; rounds after it may have one, but the run goes on from the gap (``--resume`` trains that
    round again, then the ones after it)."""
    if not checkpoint_path(run_dir, 0).exists():
        return None
    done, path = 0, checkpoint_path(run_dir, 0)
    while last_round is None or done < last_round:
        if checkpoint_path(run_dir, done + 1).exists():
            path = checkpoint_path(run_dir, done + 1)
        elif not failed_round_path(run_dir, done + 1).exists():
            break
        done += 1
    return done, path


def node_paths(node_config, run_dir: str | Path) -> tuple[int, Path, Path]:
    """(partition id, client folder, partition file) of this node; relative paths are under ``run_dir``."""
    partition = int(node_config["partition-id"])
    client = Path(run_dir) / str(node_config.get("client-dir") or client_dir_name(partition))
    data_file = Path(run_dir) / str(node_config.get("data-file") or partition_file(DATA_DIR, partition))
    return partition, client, data_file
