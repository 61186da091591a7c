"""A run's options (what fl-launch takes) and every check of them that needs no data read.

    opts = LaunchOptions(client_num=3, clients_per_round=4)
    opts.validate()                # OptionsError: --clients-per-round 4 exceeds --client-num 3
    checked = opts.validate({"alpha"})   # the CLI also names the options the user set: unused ones are refused
    prepare_run(checked)           # CheckedOptions: the options, and the fleet file read to check them

prepare_run (launcher.run.plan) takes the CheckedOptions, or calls validate() itself, so a caller without
the CLI gets the same refusals, in the same words, and a launch checks (and reads the fleet file) once;
only the CLI knows which options were given (click's parameter sources), so only it refuses an option this
run would not use. The last check, whether the data fits this
machine's memory and the log dir's disk (launcher.run.resources), reads the disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Set
from dataclasses import dataclass, fields

from contract.errors import InputError
from contract.fleet_record import Fleet
from contract.run_settings import AppOptions, RunSettings
from launcher.devices.direct import check_server_address
from launcher.fleet.profiles import read_fleet_file
from launcher.processes.gpus import this_host_gpus
from launcher.run.folder import malformed_kill_tag
from launcher.run.ray_cluster import check_ray_address
from launcher.run.resources import check_fits, estimate

TASKS = ("train", "getModel", "inference")
MODES = ("auto", "process", "virtual")
NATURAL = "natural"  # the data set's own grouping: one writer (femnist) or one file (npz) per client
SPLIT_BY_THE_DATA = ("femnist", "npz")
MIN_SAMPLES_PER_CLIENT = 2  # one train and one test sample
PROCESS_MODE_UP_TO = 100  # auto: one process per client up to this many clients (~75 MiB each), virtual above
FOR_ANY_APP = ("task", "round_timeout", "torch_threads")  # the AppOptions that a user's --app takes too
BUILT_IN_APP = (*(f.name for f in fields(AppOptions) if f.name not in FOR_ANY_APP),  # refused with --app
                "dataset", "data_dir", "partition", "alpha", "samples_per_client", "num_classes", "fraction_fit",
                "clients_per_round", "min_clients", "run", "round_deadline")
FEDOPT = ("fedadam", "fedyogi", "fedadagrad")


class OptionsError(InputError):
    """Options that contradict each other, or one this run would not use; the message names them."""


@dataclass(frozen=True)
class LaunchOptions(AppOptions):
    """Every option of fl-launch: the built-in app's own (AppOptions, contract.run_settings: their defaults
    are the app's), and the launcher's."""

    client_num: int = 10
    fraction_fit: float | None = None
    clients_per_round: int | None = None
    min_clients: int | None = None
    log_dir: str = "logs"
    kill_tag: str | None = None
    dataset: str = "digits"
    data_dir: str | None = None
    partition: str | None = None  # natural for femnist, iid for the others
    alpha: float = 0.5
    samples_per_client: int = 500
    num_classes: int = 10
    detach: bool = False
    run: str | None = None
    startup_timeout: float | None = None
    grace: float = 10.0
    hosts: str | None = None
    ssh_config: str | None = None
    tls: bool = False
    server_address: str | None = None  # devices reach the SuperLink's Fleet API here directly (no SSH tunnel)
    max_restarts: int = 3
    remote_data_dir: str | None = None
    mode: str = "auto"
    workers: int | None = None  # virtual: worker processes; default one per core
    ray_address: str | None = None  # virtual: an existing Ray cluster's head, HOST:PORT (else a Ray of its own)
    app: str | None = None  # a user's Flower app folder instead of the built-in one
    run_config: str | None = None  # --app: its run config overrides, "key=value ..."
    node_config: str | None = None  # added to every client's node config, "key=value ..." ({i}, {n})
    fleet: str | None = None  # a fleet file: each client emulated as a device profile (launcher.fleet)
    round_deadline: float | None = None  # seconds after which a round closes with the replies it has
    gpus_per_client: float | None = None  # each client's share of a GPU: how many compute on it at once, its memory

    def startup_deadline(self) -> float:
        """Seconds for every client to import torch and connect (2 cores share the work)."""
        if self.is_virtual():
            return self.startup_timeout or 120.0 + 0.05 * self.client_num
        return self.startup_timeout or 60.0 + 3.0 * self.client_num

    def scheme(self) -> str:
        return self.partition or (NATURAL if self.dataset in SPLIT_BY_THE_DATA else "iid")

    def per_round(self) -> int:
        """Clients taking part in each round."""
        if self.clients_per_round is not None:
            return self.clients_per_round
        return max(1, int(self.client_num * (self.fraction_fit or 1.0)))

    def is_virtual(self) -> bool:
        if self.mode != "auto":
            return self.mode == "virtual"
        return self.hosts is None and self.client_num > PROCESS_MODE_UP_TO

    def sampled_per_round(self) -> int:
        """Clients sampled each round: the clients taking part, over-committed."""
        return math.ceil(self.per_round() * self.overcommit - 1e-9)

    def app_settings(self, channels: int, num_classes: int, checkpoint: str = "") -> RunSettings:
        """The built-in app's settings: its options (AppOptions) as given, the rest derived from the other
        options and the data (its channels and classes; the checkpoint a served or resumed run starts from)."""
        return RunSettings(
            **{f.name: getattr(self, f.name) for f in fields(AppOptions)},
            min_clients=self.min_clients or 0,
            clients_per_round=self.per_round() if self.per_round() < self.client_num else 0,
            num_clients=self.client_num, channels=channels, num_classes=num_classes, checkpoint=checkpoint,
            model_path=os.getcwd() if self.model else "", round_deadline=self.round_deadline or 0.0,
            virtual=self.is_virtual(), gpus_per_client=self.gpus_per_client or 0.0,
        )

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def unused(self) -> dict[str, str]:
        """{option: why this run would ignore it}: each is refused when the user set it."""
        if self.app is not None:  # the user's app brings its own data, model, rounds and strategy
            return {name: "--app runs your app as it is (its data, model, rounds and strategy are its own; "
                          "--run-config sets its config)" for name in BUILT_IN_APP}
        unused = {}
        if self.scheme() != "dirichlet":
            unused["alpha"] = "is for --partition dirichlet"
        if self.dataset != "synthetic":
            unused.update(samples_per_client="is for --dataset synthetic", num_classes="is for --dataset synthetic")
        if self.strategy != "fedprox":
            unused["proximal_mu"] = "is for --strategy fedprox"
        if self.strategy not in FEDOPT:
            unused.update(server_lr=f"is for --strategy {', '.join(FEDOPT)}",
                          tau=f"is for --strategy {', '.join(FEDOPT)}")
        if self.strategy not in FEDOPT[:2]:
            unused.update(beta_1="is for --strategy fedadam, fedyogi", beta_2="is for --strategy fedadam, fedyogi")
        if self.task == "train":
            unused["run"] = "is for --task getModel or inference (to go on with a run: --resume RUN)"
        if self.hosts is None:
            unused["ssh_config"] = "is for --hosts"
        if self.ray_address is not None:
            unused["workers"] = "on a Ray cluster (--ray-address) its nodes' CPUs decide"
        if self.device == "cpu":
            unused["gpus_per_client"] = "is for --device auto or cuda"
        return unused

    def validate(self, given: Set[str] = frozenset()) -> CheckedOptions:
        """Refuse options that contradict each other (OptionsError), the ones in ``given`` (those the user
        set) that this run would not use, and a run whose data cannot fit this machine (ResourceError);
        the options that passed, with the fleet file read to check them."""
        if self.kill_tag is not None and (why := malformed_kill_tag(self.kill_tag)):
            raise OptionsError(f"Invalid value for '--kill-tag': {why}")  # as the CLI's type says it
        if "'" in self.log_dir or "\n" in self.log_dir:
            raise OptionsError(f"--log-dir {self.log_dir!r} must not hold a quote or newline")
        if self.fraction_fit is not None and self.clients_per_round is not None:
            raise OptionsError("give --fraction-fit or --clients-per-round, not both")
        if self.clients_per_round is not None and self.clients_per_round > self.client_num:
            raise OptionsError(f"--clients-per-round {self.clients_per_round} exceeds --client-num {self.client_num}")
        sampled = self.per_round()
        if self.min_clients is not None and self.min_clients > sampled:
            raise OptionsError(f"--min-clients {self.min_clients} exceeds the {sampled} clients taking part per round")
        if self.dataset in SPLIT_BY_THE_DATA and self.scheme() != NATURAL:
            raise OptionsError(f"--dataset {self.dataset} comes split by client: --partition natural, "
                               f"not {self.partition}")
        if self.dataset not in SPLIT_BY_THE_DATA and self.scheme() == NATURAL:
            raise OptionsError(f"--partition natural needs a data set split by client (femnist, npz), "
                               f"not {self.dataset}")
        if self.mode == "virtual" and self.hosts is not None:
            raise OptionsError("--mode virtual runs its clients on this machine: drop --hosts, or use --mode process")
        if self.run_config is not None and self.app is None:
            raise OptionsError("--run-config is for --app (the built-in app takes its options directly)")
        if self.app is not None and self.task != "train":
            raise OptionsError(f"--task {self.task} serves the built-in app's model; --app runs the app as it is")
        if self.workers is not None and not self.is_virtual():
            raise OptionsError("--workers is for --mode virtual (in process mode each client is its own process)")
        if self.ray_address is not None and not self.is_virtual():
            raise OptionsError("--ray-address is for --mode virtual (its clients run on that Ray cluster)")
        if self.remote_data_dir is not None and self.hosts is None:
            raise OptionsError("--remote-data-dir needs --hosts")
        if self.server_address is not None:
            if self.hosts is None:
                raise OptionsError("--server-address is where devices reach the SuperLink: it needs --hosts FILE")
            if why := check_server_address(self.server_address):
                raise OptionsError(why)
        if self.remote_data_dir is not None and any(c in self.remote_data_dir for c in "\n\0"):
            raise OptionsError("--remote-data-dir must be a path on one line")
        if self.data_dir is not None and self.dataset in ("digits", "synthetic") and self.app is None:
            raise OptionsError(f"--data-dir is not used by --dataset {self.dataset}")
        fleet = self._validate_fleet()
        unused = self.unused()
        for name in sorted(set(given) & set(unused)):
            flag = "--" + name.replace("_", "-")
            raise OptionsError(f"{flag} {unused[name]}" if unused[name].startswith("is for")
                               else f"{flag} is not used: {unused[name]}")
        check_fits(estimate(self), self.log_dir)  # reads the disk
        self._check_gpus()
        if self.ray_address is not None:  # a TCP connect: last
            check_ray_address(self.ray_address)
        return CheckedOptions(self, fleet)

    def _check_gpus(self) -> None:
        """--device cuda with the clients on this machine: torch here must see a GPU (asked in a process of
        its own, launcher.processes.gpus). A device's own GPU is its --check's to show; a Ray cluster's, Ray's."""
        if self.device == "cuda" and self.is_virtual() and self.gpus_per_client is None:
            raise OptionsError("--device cuda in virtual mode needs --gpus-per-client F: Ray shows a GPU only to "
                               "clients given a share of one")
        if self.device != "cuda" or self.hosts is not None or self.ray_address is not None:
            return
        found = this_host_gpus()
        if not found.cuda:
            raise OptionsError(f"--device cuda: torch on this machine sees {found.describe()}; "
                               f"use --device auto or cpu")

    def _validate_fleet(self) -> Fleet | None:
        """--fleet, --round-deadline, --overcommit: together and with the rest; the fleet file read."""
        if self.fleet is not None and self.hosts is not None:
            raise OptionsError("--fleet emulates devices with this machine's clients: drop --hosts, or --fleet")
        if self.fleet is not None and self.app is not None and self.is_virtual():
            raise OptionsError("--fleet with --app needs --mode process (in virtual mode the built-in app emulates "
                               "the profiles)")
        if self.sampled_per_round() > self.client_num:
            raise OptionsError(f"--overcommit {self.overcommit:g} samples {self.sampled_per_round()} clients a round, "
                               f"more than --client-num {self.client_num}")
        if self.round_deadline is not None and self.round_deadline >= self.round_timeout:
            raise OptionsError(f"--round-deadline {self.round_deadline:g} must be below --round-timeout "
                               f"{self.round_timeout:g}")
        return read_fleet_file(self.fleet, self.client_num) if self.fleet is not None else None  # FleetError: one line


@dataclass(frozen=True)
class CheckedOptions:
    """Options that passed LaunchOptions.validate, with what it read to check them (prepare_run reads
    nothing of it again)."""

    options: LaunchOptions
    fleet: Fleet | None  # the --fleet file, read and checked
