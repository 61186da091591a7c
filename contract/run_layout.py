"""Where a client's files lie, named the same way by the launcher, the device agent and the built-in app.

    client_dir(run_dir, 3)          # run_dir/client_3: its logs, node_config.toml, its bells' address
    partition_file("data", 3)       # data/client_3.npz: its partition (x_train, y_train, x_test, y_test)
    DATA_DIR                        # "data": where a run folder keeps the partitions it made
    RUN_JSON                        # "run.json": the run's record; a folder without it is no (longer a) run's

The client folder's name, client_<i>, is also what MindSpore's x86 simulation uses and what
fl-stats and the grep examples of docs/run-folder.md expect.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = "data"
RUN_JSON = "run.json"


def client_dir_name(client: int) -> str:
    return f"client_{client}"


def client_dir(run_dir: str | Path, client: int) -> Path:
    return Path(run_dir) / client_dir_name(client)


def partition_name(client: int) -> str:
    return f"client_{client}.npz"


def partition_file(folder: str | Path, client: int) -> Path:
    return Path(folder) / partition_name(client)
