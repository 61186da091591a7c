"""Bad input: one clear line, exit code 2, no folder, no process."""

import numpy as np
import pytest

from benchmarks.femnist_files import write_leaf
from tests.helpers import run, runs
from tests.test_user_app import APP


def _cases(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data_batch_1").write_bytes(b"\x80\x04not really")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    femnist = tmp_path / "femnist"
    write_leaf(femnist, writers=3, per_writer=(4, 6))
    (tmp_path / "badnet.py").write_text("from torch import nn\n\nclass Net(nn.Module):\n"
                                        "    def __init__(self):\n        super().__init__()\n"
                                        "        self.f = nn.Sequential(nn.Flatten(), nn.Linear(1024, 3))\n\n"
                                        "    def forward(self, x):\n        return self.f(x)\n")
    for name, ending in (("exits0", "import sys\nsys.exit(0)\n"), ("exits3", "import sys\nsys.exit(3)\n"),
                         ("hardexit", "import os\nos._exit(0)\n"), ("aborts", "import os\nos.abort()\n")):
        (tmp_path / f"{name}.py").write_text(f"print('importing {name}', flush=True)\n{ending}")
    gap, half = tmp_path / "gap", tmp_path / "half"
    for folder, names in ((gap, ("client_0.npz", "client_2.npz")), (half, ("client_0.npz",))):
        folder.mkdir()
        for name in names:
            arrays = {"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(4, dtype=int)}
            if folder == gap:
                arrays.update(x_test=np.zeros((2, 8, 8)), y_test=np.zeros(2, dtype=int))
            np.savez(folder / name, **arrays)
    no_client = tmp_path / "no-client"
    no_client.mkdir()
    (no_client / "pyproject.toml").write_text('[tool.flwr.app.components]\nserverapp = "a.b:app"\n')
    (tmp_path / "unknown.toml").write_text("client-num = 2\nclients = 3\n")
    (tmp_path / "not-a-run.json").write_text("{}")
    (tmp_path / "not-toml.toml").write_text("client-num = 2\nrounds = \n")
    hosts = {}
    for label, body in (("inject", '[[device]]\nhost = "pi; reboot"\n'),
                        ("dup", '[[device]]\nhost = "pi"\n\n[[device]]\nhost = "pi"\n'),
                        ("key", '[[device]]\nhost = "pi"\ncores = 4\n'), ("one", '[[device]]\nhost = "pi"\n'),
                        ("toml", '[[device]]\nhost = "pi"\nslots = \n')):
        hosts[label] = tmp_path / f"hosts-{label}.toml"
        hosts[label].write_text(body)
    return {
        "client-num below 1": (["--client-num", "0"], "--client-num"),
        "unknown data set": (["--dataset", "mnist-9000"], "--dataset"),
        "missing data dir": (["--dataset", "cifar10", "--data-dir", str(tmp_path / "nope")], "does not exist"),
        "no data dir": (["--dataset", "cifar10"], "needs --data-dir"),
        "empty data dir": (["--dataset", "cifar10", "--data-dir", str(empty)], "holds none of"),
        "malformed data dir": (["--dataset", "cifar10", "--data-dir", str(garbage)], "not a CIFAR-10"),
        "more clients than samples": (["--client-num", "1000"], "cannot give 1000 clients"),
        "unwritable log dir": (["--log-dir", str(a_file / "logs")], "log dir"),
        "unknown task": (["--task", "fly"], "--task"),
        "getModel with no earlier run": (["--task", "getModel"], "needs an earlier"),
        "inference with an unknown run": (["--task", "inference", "--run", "20990101-000000-dead"], "unknown run"),
        "bad kill tag": (["--kill-tag", "a b;c"], "--kill-tag"),
        "fraction above 1": (["--fraction-fit", "1.5"], "--fraction-fit"),
        "min-clients above sampled": (["--client-num", "3", "--min-clients", "4"], "--min-clients"),
        "negative lr": (["--lr", "-1"], "--lr"),
        "zero alpha": (["--partition", "dirichlet", "--alpha", "0"], "--alpha"),
        "unknown partition": (["--partition", "zipf"], "--partition"),
        "hosts entry injecting shell": (["--hosts", str(hosts["inject"])], "hosts-inject.toml:2: host must be"),
        "hosts file with a duplicate host": (["--hosts", str(hosts["dup"])], "hosts-dup.toml:5: duplicate host"),
        "hosts file with an unknown key": (["--hosts", str(hosts["key"])], "hosts-key.toml:3: unknown key 'cores'"),
        "missing hosts file": (["--hosts", str(tmp_path / "nope.toml")], "cannot read the hosts file"),
        "hosts file that is not TOML": (["--hosts", str(hosts["toml"])], "hosts-toml.toml:3: Invalid value"),
        "resume of an unknown run": (["--resume", "20990101-000000-dead"], "unknown run"),
        "remote data dir without hosts": (["--remote-data-dir", "data"], "needs --hosts"),
        "server address without hosts": (["--server-address", "10.1.2.3"], "it needs --hosts"),
        "server address on loopback": (["--hosts", str(hosts["one"]), "--server-address", "127.0.0.1"],
                                       "is a loopback address"),
        "server address of the wildcard": (["--hosts", str(hosts["one"]), "--server-address", "0.0.0.0"],
                                           "not the wildcard"),
        "server address not of this machine": (["--hosts", str(hosts["one"]), "--server-address", "198.51.100.77"],
                                               "198.51.100.77 is not an address of this machine"),
        "server address that does not resolve": (["--hosts", str(hosts["one"]), "--server-address",
                                                  "no-such-host.invalid"], "nor a name this machine resolves"),
        "fraction and per-round count": (["--fraction-fit", "0.5", "--clients-per-round", "2"], "not both"),
        "more per round than clients": (["--client-num", "3", "--clients-per-round", "4"], "exceeds --client-num 3"),
        "femnist split iid": (["--dataset", "femnist", "--data-dir", str(femnist), "--partition", "iid",
                               "--client-num", "2"], "--partition natural"),
        "natural split of digits": (["--partition", "natural"], "needs a data set split by client"),
        "more clients than writers": (["--dataset", "femnist", "--data-dir", str(femnist), "--client-num", "4"],
                                      "more clients than writers"),
        "femnist without data dir": (["--dataset", "femnist"], "needs --data-dir"),
        "virtual clients on devices": (["--mode", "virtual", "--hosts", str(hosts["one"])], "--mode virtual"),
        "workers in process mode": (["--client-num", "4", "--workers", "2"], "--workers"),
        "unknown mode": (["--mode", "threads"], "--mode"),
        "unknown strategy": (["--strategy", "fedsgd"], "--strategy"),
        "model without a class": (["--model", "badnet"], "must be module:Class"),
        "model that does not import": (["--model", "no_such_module_xyz:Net"], "cannot import no_such_module_xyz"),
        "model with the wrong output": (["--model", "badnet:Net"], "one logit per class"),
        "model that calls sys.exit(0) at import": (["--model", "exits0:Net"], "exits0:Net: it called sys.exit(0)"),
        "model that calls sys.exit(3) at import": (["--model", "exits3:Net"], "exits3:Net: it called sys.exit(3)"),
        "model that calls os._exit(0) at import": (["--model", "hardexit:Net"], "--model hardexit:Net: the process "
                                                   "importing, building and running it exited with code 0"),
        "model that aborts at import": (["--model", "aborts:Net"], "was killed by signal SIGABRT"),
        "npz split with a gap": (["--dataset", "npz", "--data-dir", str(gap), "--client-num", "2"], "without gaps"),
        "npz file without a test split": (["--dataset", "npz", "--data-dir", str(half), "--client-num", "1"],
                                          "lacks x_test, y_test"),
        "config with an unknown option": (["--config", str(tmp_path / "unknown.toml")], "unknown option 'clients'"),
        "json config that is not a run": (["--config", str(tmp_path / "not-a-run.json")], "run.json"),
        "config that is not TOML": (["--config", str(tmp_path / "not-toml.toml")], "not-toml.toml:2: Invalid value"),
        "app folder without pyproject": (["--app", str(empty)], "no pyproject.toml"),
        "app without a ClientApp": (["--app", str(no_client)], "lacks clientapp"),
        "run config key the app lacks": (["--app", str(APP), "--run-config", "epochs=3"], "declares no 'epochs'"),
        "run config that is not key=value": (["--app", str(APP), "--run-config", "lr"], "key=value"),
        "run config without an app": (["--run-config", "lr=1"], "--run-config is for --app"),
    }


NAMES = [
    "client-num below 1", "unknown data set", "missing data dir", "no data dir", "empty data dir",
    "malformed data dir", "more clients than samples", "unwritable log dir", "unknown task",
    "getModel with no earlier run", "inference with an unknown run", "bad kill tag", "fraction above 1",
    "min-clients above sampled", "negative lr", "zero alpha", "unknown partition", "hosts entry injecting shell",
    "hosts file with a duplicate host", "hosts file with an unknown key", "missing hosts file",
    "hosts file that is not TOML",
    "resume of an unknown run", "remote data dir without hosts", "server address without hosts",
    "server address on loopback", "server address of the wildcard", "server address not of this machine",
    "server address that does not resolve", "fraction and per-round count",
    "more per round than clients", "femnist split iid", "natural split of digits", "more clients than writers",
    "femnist without data dir", "virtual clients on devices", "workers in process mode", "unknown mode",
    "unknown strategy", "model without a class", "model that does not import", "model with the wrong output",
    "model that calls sys.exit(0) at import", "model that calls sys.exit(3) at import",
    "model that calls os._exit(0) at import", "model that aborts at import",
    "npz split with a gap", "npz file without a test split", "config with an unknown option",
    "json config that is not a run", "config that is not TOML", "app folder without pyproject",
    "app without a ClientApp",
    "run config key the app lacks", "run config that is not key=value", "run config without an app",
]


OTHER = {  # the other two commands: (command, args, expected)
    "fl-stats: unknown client": ("fl-stats", ["client_9"], "no client_9/client.log"),
    "fl-stats: unknown run": ("fl-stats", ["--run", "20990101-000000-dead"], "unknown run"),
    "fl-stats: malformed run id": ("fl-stats", ["--run", "..;rm"], "malformed run id"),
    "fl-stats: csv and json": ("fl-stats", ["--csv", "--json"], "exclude each other"),
    "fl-stats: plot of one client": ("fl-stats", ["client_0", "--plot", "x.png"], "--plot draws across"),
    "fl-stats: metric of one client": ("fl-stats", ["client_0", "--metric", "eval_acc"], "--metric picks"),
    "fl-stats: pull without devices": ("fl-stats", ["--pull"], "has no devices"),
    "fl-stats: ssh config without pull": ("fl-stats", ["--ssh-config", "cfg"], "--ssh-config is for --pull"),
    "fl-stats: tensorboard with csv": ("fl-stats", ["--tensorboard", "tb", "--csv"], "--tensorboard writes event"),
    "fl-stats: tensorboard of one client": ("fl-stats", ["client_0", "--tensorboard", "tb"], "--tensorboard writes a"),
    "fl-finish: empty tag": ("fl-finish", ["--kill-tag", ""], "malformed kill tag"),
    "fl-finish: tag with shell": ("fl-finish", ["--kill-tag", "a;reboot"], "malformed kill tag"),
    "fl-finish: unknown run": ("fl-finish", ["--run", "20990101-000000-dead"], "unknown run"),
    "fl-finish: tag and run": ("fl-finish", ["--kill-tag", "a", "--run", "b"], "not both"),
    "fl-finish: negative grace": ("fl-finish", ["--grace", "-1"], "--grace"),
    "fl-finish: ssh config, local only": ("fl-finish", ["--local-only", "--ssh-config", "cfg"], "--local-only skips"),
}


def _earlier_run(log_dir):
    """A finished run already in the log dir: no bad input may touch its files."""
    earlier = log_dir / "20260101-000000-aaaa"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "client_0").mkdir()
    (earlier / "run.json").write_text('{"run_id": "20260101-000000-aaaa", "kill_tag": "20260101-000000-aaaa", '
                                      '"status": "finished", "task": "train"}')
    (earlier / "client_0" / "client.log").write_text("INFO: <FLClient> [evaluate] evaluate acc: 0.5\n")
    (log_dir / "latest").symlink_to(earlier.name)
    return earlier


def _snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", NAMES + ["read-only log dir"] + list(OTHER))
def test_bad_input_is_one_line_and_exit_2(tmp_path, name):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    earlier = _earlier_run(log_dir)
    before = _snapshot(log_dir)
    if name in OTHER:
        command, args, expected = OTHER[name]
    elif name == "read-only log dir":
        command, args, expected = "fl-launch", ["--log-dir", "/proc/self/fl-logs"], "log dir"
    else:
        command = "fl-launch"
        args, expected = _cases(tmp_path)[name]
        if name == "getModel with no earlier run":
            expected = "none in"  # the earlier run has no checkpoint
    if "--log-dir" not in args:
        args = [*args, "--log-dir", str(log_dir)]
    result = run(command, *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert runs(log_dir) == [earlier]  # nothing prepared, so nothing started
    assert _snapshot(log_dir) == before  # and nothing of the earlier run touched


def test_corrupt_checkpoint_for_get_model_touches_nothing(tmp_path):
    """An earlier run whose newest checkpoint is damaged: refused, and that run's files stay as they were."""
    earlier = tmp_path / "logs" / "20260101-000000-aaaa"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "run.json").write_text('{"run_id": "20260101-000000-aaaa", "status": "finished"}')
    (earlier / "checkpoints" / "round_0003.pt").write_bytes(b"PK\x03\x04 truncated zip")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in earlier.rglob("*") if p.is_file()}
    result = run("fl-launch", "--task", "getModel", "--client-num", "2", "--log-dir", str(tmp_path / "logs"))
    assert result.returncode == 2 and "cannot be read" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert runs(tmp_path / "logs") == [earlier]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in earlier.rglob("*") if p.is_file()} == before
