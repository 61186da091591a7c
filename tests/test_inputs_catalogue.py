"""Every input a user can give fl-launch, fl-stats and fl-finish: a run that works, or one line and exit 2.

Named cases (issue 15's list) run through the real entry points, and a generated catalogue draws values for
every option of the three commands (nan, inf, negatives, huge integers, empty and non-UTF-8 text). Nothing
is ever started: fl-launch runs in-process with the step after planning (_foreground, _detach, and what
--check/--install would do on devices) replaced by recorders, so an accepted input yields a prepared run
folder whose plan is checked, and fl-finish always runs with --dry-run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from launcher.cli import finish, launch, stats
from tests.helpers import run, runs

APP = Path(__file__).parent / "apps" / "numpy_app"
EARLIER = "20260101-000000-aaaa"
COMMANDS = {"fl-launch": launch.main, "fl-stats": stats.main, "fl-finish": finish.main}


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    folders: list  # run folders fl-launch prepared (nothing started in them)

    def one_line(self) -> str:
        lines = self.err.strip().splitlines()
        assert self.code == 2, (self.code, self.out[-2000:], self.err[-2000:])
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


def call(command: str, *args: str) -> Outcome:
    """The command's click entry point in-process, as its console script calls it; planning is real,
    starting is not (the recorder stands in for what would start processes or reach devices)."""
    prepared: list = []

    def record(folder, *_):
        folder.release()
        prepared.append(folder.path)
        return 0

    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        for name in ("_foreground", "_detach"):
            stack.enter_context(mock.patch.object(launch, name, record))
        stack.enter_context(mock.patch.object(launch, "check_devices", lambda devices, ssh_config: []))
        stack.enter_context(mock.patch.object(launch, "build_wheel", lambda folder: folder / "fl_launch.whl"))
        stack.enter_context(mock.patch.object(launch, "install_on", lambda *args: (True, "not installed")))
        try:
            COMMANDS[command].main(args=list(args), prog_name=command)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        except BaseException:  # a traceback: the outcome the catalogue forbids
            err.write(traceback.format_exc())
            code = -1
    return Outcome(code, out.getvalue(), err.getvalue(), prepared)


# ---------------------------------------------------------------------------------------------- fixtures
def _npz(folder: Path, clients: int = 2, x_dtype=np.float32, edit=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for client in range(clients):
        arrays = {"x_train": rng.uniform(-1, 1, (6, 1, 28, 28)).astype(x_dtype),
                  "y_train": np.array([0, 1, 2, 0, 1, 2]), "x_test": rng.uniform(-1, 1, (2, 1, 28, 28)).astype(x_dtype),
                  "y_test": np.array([0, 1])}
        if edit is not None and client == clients - 1:
            edit(arrays)
        np.savez(folder / f"client_{client}.npz", **arrays)
    return folder


def _earlier_run(log_dir: Path) -> Path:
    """A finished run (no checkpoint) with one client log, pointed at by ``latest``."""
    earlier = log_dir / EARLIER
    (earlier / "client_0").mkdir(parents=True)
    (earlier / "run.json").write_text(json.dumps({
        "run_id": EARLIER, "kill_tag": EARLIER, "status": "finished", "task": "train", "settings": {"rounds": 3},
        "options": {"client_num": 1}, "plan": {"nodes": [{"client": 0, "host": "localhost"}]}, "processes": []}))
    (earlier / "client_0" / "client.log").write_text(
        "2026-01-01 00:00:00.000 INFO: <FLClient> [round] iteration:1 start type:train\n"
        "2026-01-01 00:00:01.000 INFO: <FLClient> [evaluate] evaluate acc: 0.5\n")
    (log_dir / "latest").symlink_to(EARLIER)
    return earlier


@pytest.fixture
def sandbox(tmp_path):
    """cwd = tmp_path/work, a log dir with an earlier run, and the inputs the cases point at."""
    work = tmp_path / "work"
    work.mkdir()
    logs = work / "logs"
    _earlier_run(logs)
    inputs = tmp_path / "inputs"
    _npz(inputs / "npz-good")
    _npz(inputs / "npz-nan", edit=lambda a: a["x_train"].__setitem__((0, 0, 0, 0), np.nan))
    _npz(inputs / "npz-huge-label", edit=lambda a: a.__setitem__("y_test", np.array([0, 10**12])))
    (inputs / "empty").mkdir()
    (inputs / "a-file").write_text("x")
    shutil.copytree(APP, inputs / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (inputs / "hosts.toml").write_text('[[device]]\nhost = "pi"\n')
    (inputs / "half.toml").write_text('rounds = 2\nclient-num = 2.5\n')
    (inputs / "whole.toml").write_text('rounds = 2\nclient-num = 3.0\n')
    (inputs / "nan.toml").write_text('# exp\n\nlr = "nan"\n')
    (inputs / "bool.toml").write_text('client-num = true\n')
    (inputs / "ok.toml").write_text('rounds = 2\n')
    (inputs / "fleet.toml").write_text('[[profile]]\nname = "pi"\nclients = 1\ncpu = 0.5\nlatency = "5ms"\n')
    (inputs / "fleet-bad.toml").write_text('[[profile]]\nname = "pi"\nclients = 1\ncpu = 1.5\n')
    old = Path.cwd()
    os.chdir(work)
    try:
        yield work, logs, inputs
    finally:
        os.chdir(old)


def _plan_ok(outcome: Outcome, client_num: int) -> dict:
    """An accepted launch: exit 0, one prepared folder whose run.json plans client_num clients."""
    assert outcome.code == 0, (outcome.out[-2000:], outcome.err[-3000:])
    assert len(outcome.folders) == 1
    info = json.loads((outcome.folders[0] / "run.json").read_text())
    assert info["status"] == "prepared" and len(info["plan"]["nodes"]) == client_num
    assert info["options"]["client_num"] == client_num
    return info


# ------------------------------------------------------------------------------------------- named cases
NAMED_REFUSED = {  # name: (command, args, fragment of the one line); {i}: the inputs folder, {e}: the earlier run
    "lr nan": ("fl-launch", ["--lr", "nan"], "--lr"),
    "lr inf": ("fl-launch", ["--lr", "inf"], "--lr"),
    "round-timeout nan": ("fl-launch", ["--round-timeout", "nan"], "--round-timeout"),
    "round-timeout inf": ("fl-launch", ["--round-timeout", "inf"], "--round-timeout"),
    "fraction-fit nan": ("fl-launch", ["--fraction-fit", "nan"], "--fraction-fit"),
    "seed -1": ("fl-launch", ["--seed", "-1"], "--seed"),
    "seed 10**23": ("fl-launch", ["--seed", str(10**23)], "--seed"),
    "num-classes 10**12": ("fl-launch", ["--dataset", "synthetic", "--num-classes", str(10**12)], "--num-classes"),
    "synthetic 10**9 samples per client": ("fl-launch", ["--dataset", "synthetic", "--samples-per-client",
                                                         str(10**9)], "of memory"),
    "app with --model": ("fl-launch", ["--app", "{i}/app", "--model", "torch.nn:Linear"], "--model"),
    "app with --dataset npz": ("fl-launch", ["--app", "{i}/app", "--dataset", "npz"], "--dataset"),
    "app with --data-dir": ("fl-launch", ["--app", "{i}/app", "--data-dir", "{i}/npz-good"], "--data-dir"),
    "app with --partition": ("fl-launch", ["--app", "{i}/app", "--partition", "iid"], "--partition"),
    "app with --rounds": ("fl-launch", ["--app", "{i}/app", "--rounds", "3"], "--rounds"),
    "alpha without dirichlet": ("fl-launch", ["--alpha", "0.3"], "--alpha"),
    "beta-1 with fedavg": ("fl-launch", ["--beta-1", "0.5"], "--beta-1"),
    "npz with a NaN image": ("fl-launch", ["--dataset", "npz", "--data-dir", "{i}/npz-nan", "--client-num", "2"],
                             "npz-nan/client_1.npz: x_train holds 1 NaN"),
    "npz with a label of 10**12": ("fl-launch", ["--dataset", "npz", "--data-dir", "{i}/npz-huge-label",
                                                 "--client-num", "2"], "client_1.npz: label 1000000000000"),
    "config client-num = 2.5": ("fl-launch", ["--config", "{i}/half.toml"], "half.toml:2: client-num = 2.5"),
    "config client-num = true": ("fl-launch", ["--config", "{i}/bool.toml"], "bool.toml:1: client-num"),
    "config lr = 'nan'": ("fl-launch", ["--config", "{i}/nan.toml"], "nan.toml:3: lr = 'nan'"),
    "resume with --grace": ("fl-launch", ["--resume", EARLIER, "--grace", "5"], "drop --grace"),
    "resume with --config": ("fl-launch", ["--resume", EARLIER, "--config", "{i}/ok.toml"], "drop --config"),
    "empty log dir": ("fl-launch", ["--log-dir", ""], "--log-dir"),
    "non-UTF-8 kill tag": ("fl-launch", ["--kill-tag", os.fsdecode(b"run\xff")], "UTF-8"),
    "fl-stats plot into a missing folder": ("fl-stats", ["--plot", "{i}/nope/acc.png"], "does not exist"),
    "fl-stats csv -o into a missing folder": ("fl-stats", ["--csv", "-o", "{i}/nope/t.csv"], "does not exist"),
    "fl-stats json -o into a missing folder": ("fl-stats", ["--json", "-o", "{i}/nope/t.json"], "does not exist"),
    "fl-stats csv -o into /proc": ("fl-stats", ["--csv", "-o", "/proc/fl-stats.csv"], "-o /proc/fl-stats.csv"),
    "fl-stats plot into /proc": ("fl-stats", ["--plot", "/proc/acc.png"], "--plot /proc/acc.png"),
    "fl-stats json -o onto a folder": ("fl-stats", ["--json", "-o", "{i}/empty"], "is a directory"),
    "fl-stats -o without csv or json": ("fl-stats", ["-o", "t.txt"], "-o is for"),
    "fl-stats interval nan": ("fl-stats", ["--watch", "--interval", "nan"], "--interval"),
    "gpus-per-client 0": ("fl-launch", ["--gpus-per-client", "0"], "--gpus-per-client"),
    "gpus-per-client above one GPU": ("fl-launch", ["--gpus-per-client", "1.5"], "--gpus-per-client"),
    "gpus-per-client nan": ("fl-launch", ["--gpus-per-client", "nan"], "--gpus-per-client"),
    "gpus-per-client on the CPU": ("fl-launch", ["--device", "cpu", "--gpus-per-client", "0.5"],
                                   "--gpus-per-client is for --device auto or cuda"),
    "device unknown": ("fl-launch", ["--device", "tpu"], "--device"),
    "device cuda in virtual mode without a share": ("fl-launch", ["--device", "cuda", "--mode", "virtual"],
                                                    "--device cuda in virtual mode needs --gpus-per-client"),
    "fl-finish grace inf": ("fl-finish", ["--grace", "inf", "--dry-run"], "--grace"),
    "fl-finish grace nan": ("fl-finish", ["--grace", "nan", "--dry-run"], "--grace"),
}


def _fill(args, inputs: Path, logs: Path) -> list[str]:
    filled = [a.replace("{i}", str(inputs)) for a in args]
    return filled if "--log-dir" in filled else [*filled, "--log-dir", str(logs)]


LOCKS = (".supervisor.lock", ".run.json.lock")  # flock files that a look at a run creates (never content)


def _tree(root: Path) -> set:
    return {p for p in root.rglob("*") if p.name not in LOCKS}


@pytest.mark.parametrize("name", list(NAMED_REFUSED))
def test_named_case_is_refused_in_one_line(sandbox, name):
    work, logs, inputs = sandbox
    command, args, fragment = NAMED_REFUSED[name]
    before = _tree(work)
    line = call(command, *_fill(args, inputs, logs)).one_line()
    assert line.startswith(f"{command}: error: ") and fragment in line, line
    assert _tree(work) == before  # nothing prepared, nothing written


TRACEBACKS_ON_MAIN = {  # the tracebacks, through the console scripts
    "seed -1": ["--seed", "-1"],
    "num-classes 10**12": ["--dataset", "synthetic", "--num-classes", str(10**12)],
    "app with --model": ["--app", "{i}/app", "--model", "torch.nn:Linear"],
    "app with --dataset npz": ["--app", "{i}/app", "--dataset", "npz"],
}


@pytest.mark.parametrize("name", list(TRACEBACKS_ON_MAIN))
def test_named_traceback_is_one_line_from_the_console_script(sandbox, name):
    work, logs, inputs = sandbox
    result = run("fl-launch", *_fill(TRACEBACKS_ON_MAIN[name], inputs, logs), cwd=work, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert runs(logs) == [logs / EARLIER]


def test_config_whole_float_is_taken_as_the_integer(sandbox):
    work, logs, inputs = sandbox
    outcome = call("fl-launch", *_fill(["--config", f"{inputs}/whole.toml"], inputs, logs))
    info = _plan_ok(outcome, 3)
    assert info["options"]["rounds"] == 2 and sorted(os.listdir(outcome.folders[0] / "data")) == \
        [f"client_{c}.npz" for c in range(3)]


def test_resume_names_no_option_it_would_ignore(sandbox):
    """--resume with only --log-dir gets past the option checks to the run's own state (no checkpoint)."""
    work, logs, inputs = sandbox
    line = call("fl-launch", "--resume", EARLIER, "--log-dir", str(logs)).one_line()
    assert "has no checkpoint" in line


def _foreign_files(logs: Path) -> None:
    """A run.json that is a list, one whose processes are text, and ``latest`` as a plain folder."""
    for name, body in (("20260102-000000-bbbb", "[1, 2]"), ("20260103-000000-cccc", '{"processes": "all"}'),
                       ("20260104-000000-dddd", '{"kill_tag": "shared", "plan": {"devices": [{"hostx": 1}]}}')):
        (logs / name).mkdir()
        (logs / name / "run.json").write_text(body)
    (logs / "latest").unlink()
    (logs / "latest").mkdir()
    (logs / "latest" / "notes.txt").write_text("mine")


def test_foreign_files_in_the_log_dir_break_no_command(sandbox):
    work, logs, inputs = sandbox
    _foreign_files(logs)
    listed = call("fl-stats", "--runs", "--json", "--log-dir", str(logs))
    assert listed.code == 0, listed.err
    rows = {r["run"]: r["status"] for r in json.loads(listed.out)}
    assert rows[EARLIER] == "finished" and rows["20260102-000000-bbbb"] == "unreadable run.json"
    assert rows["20260103-000000-cccc"] == "unreadable run.json"
    stats = call("fl-stats", "--json", "--run", EARLIER, "--log-dir", str(logs))
    assert stats.code == 0 and json.loads(stats.out)["clients"] == 1, stats.err
    finish = call("fl-finish", "--kill-tag", "shared", "--dry-run", "--log-dir", str(logs))
    assert finish.code == 0, finish.err
    assert "has no checkpoint" in call("fl-launch", "--resume", EARLIER, "--log-dir", str(logs)).one_line()
    assert "not a run's record" in call("fl-launch", "--resume", "20260102-000000-bbbb",
                                        "--log-dir", str(logs)).one_line()
    outcome = call("fl-launch", "--client-num", "2", "--log-dir", str(logs))
    _plan_ok(outcome, 2)
    assert (logs / "latest" / "notes.txt").read_text() == "mine" and not (logs / "latest").is_symlink()
    assert outcome.folders[0].resolve().parent == logs.resolve()


def test_npz_split_within_bounds_is_planned(sandbox):
    work, logs, inputs = sandbox
    info = _plan_ok(call("fl-launch", *_fill(["--dataset", "npz", "--data-dir", f"{inputs}/npz-good",
                                               "--client-num", "2"], inputs, logs)), 2)
    assert [n["samples"] for n in info["plan"]["nodes"]] == [8, 8]


# ----------------------------------------------------------------------------------- generated catalogue
NON_UTF8 = st.binary(min_size=1, max_size=6).map(os.fsdecode)
WEIRD_TEXT = st.one_of(st.just(""), NON_UTF8, st.text(max_size=12), st.sampled_from(["\n", "a\0b", " ", "-1"]))
INTS = st.one_of(st.integers(-3, 12), st.sampled_from([0, -1, 2**31, 2**32, 2**63, 10**12, 10**23, -10**23]))
FLOATS = st.one_of(st.sampled_from([0.0, -1.0, 0.5, 1.0, 1e-300, 1e300, 3.5e38, 1e6]),
                   st.floats(allow_nan=True, allow_infinity=True))
NUMBER_TEXT = st.one_of(INTS.map(str), FLOATS.map(repr), st.sampled_from(["nan", "inf", "-inf", "2.5", "1e3", "x"]),
                        WEIRD_TEXT)
SMALL_COUNT = st.one_of(st.integers(1, 6).map(str), NUMBER_TEXT)


def _paths(*names: str):
    """A fixture under the inputs folder (by name), or weird text (made relative: never outside the sandbox)."""
    return st.one_of(st.sampled_from(names).map(lambda n: "{i}/" + n),
                     WEIRD_TEXT.map(lambda t: t.replace("/", "_").replace("..", "__")))


def _num(good, bad=None):
    """A usable value (half the draws) or anything (NUMBER_TEXT, or ``bad``)."""
    return (good, NUMBER_TEXT if bad is None else bad)


def _ints(lo, hi):
    return st.integers(lo, hi).map(str)


def _pick(*values):
    return st.sampled_from(values)


FLAG = (st.none(), st.none())
LAUNCH = {  # option: (usable values, anything)
    "--config": (_pick("{i}/ok.toml", "{i}/whole.toml"), _paths("half.toml", "nan.toml", "missing.toml", "empty")),
    "--client-num": _num(_ints(1, 6)), "--task": (_pick("train"), _pick("getModel", "inference", "fly", "")),
    "--rounds": _num(_ints(1, 5)), "--local-epochs": _num(_ints(1, 3)), "--batch-size": _num(_ints(1, 64)),
    "--lr": _num(_pick("0.01", "1e-5", "3")), "--fraction-fit": _num(_pick("0.5", "1")),
    "--clients-per-round": _num(_ints(1, 2)), "--min-clients": _num(_ints(1, 2)),
    "--round-timeout": _num(_pick("30", "0.001")), "--seed": _num(_pick("0", "7", str(2**32 - 1))),
    "--log-dir": (_pick("{i}/logs-new"), _paths("a-file")), "--kill-tag": (_pick("catalogue-tag"), WEIRD_TEXT),
    "--dataset": (_pick("digits", "synthetic"), _pick("npz", "cifar10", "femnist", "mnist", "")),
    "--data-dir": (_pick("{i}/npz-good"), _paths("npz-nan", "npz-huge-label", "empty", "a-file", "missing")),
    "--partition": (_pick("iid", "dirichlet", "shards"), _pick("natural", "zipf", "")),
    "--app": (_pick("{i}/app"), _paths("empty", "a-file")), "--run-config": (_pick("lr=0.1"), WEIRD_TEXT),
    "--model": (_pick(""), _pick(":", "a:", ":B", "..:X", "torch.nn:Linear", "no_such_module_xyz:Net",
                                 os.fsdecode(b"m\xff:N"), "torch.nn:Linear\n")),
    "--strategy": (_pick("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad"), _pick("fedsgd", "")),
    "--proximal-mu": _num(_pick("0.1")), "--server-lr": _num(_pick("0.05")), "--beta-1": _num(_pick("0.5")),
    "--beta-2": _num(_pick("0.5")), "--tau": _num(_pick("1e-9")), "--alpha": _num(_pick("0.5")),
    "--samples-per-client": _num(_ints(2, 50)), "--num-classes": _num(_ints(2, 20)),
    "--torch-threads": _num(_ints(1, 4)), "--mode": (_pick("auto", "process", "virtual"), _pick("threads", "")),
    "--workers": _num(_ints(1, 3)), "--run": (_pick(EARLIER), WEIRD_TEXT), "--startup-timeout": _num(_pick("60")),
    "--max-restarts": _num(_ints(0, 5)), "--grace": _num(_pick("0", "5")),
    "--hosts": (_pick("{i}/hosts.toml"), _paths("half.toml", "missing")), "--ssh-config": (_pick("{i}/a-file"),
                                                                                             _paths("missing")),
    "--remote-data-dir": (_pick("data"), WEIRD_TEXT), "--tls": FLAG, "--check": FLAG, "--install": FLAG,
    "--resume": (_pick(EARLIER), WEIRD_TEXT), "--detach": FLAG, "--bench": FLAG,
    "--fleet": (_pick("{i}/fleet.toml"), _paths("fleet-bad.toml", "half.toml", "missing", "empty")),
    "--round-deadline": _num(_pick("5", "0.5")), "--overcommit": _num(_pick("1", "1.5")),
    "--device": (_pick("auto", "cpu"), _pick("cuda", "gpu", "")), "--gpus-per-client": _num(_pick("0.5", "1")),
}
STATS = {
    "TARGET": (_pick("client_0", "{l}/" + EARLIER, "{l}/" + EARLIER + "/client_0"), _pick("client_9") | WEIRD_TEXT),
    "--run": (_pick(EARLIER), WEIRD_TEXT), "--log-dir": (_pick("{l}"), _paths("empty", "a-file", "missing")),
    "--csv": FLAG, "--json": FLAG, "-o": (_pick("out.csv"), _paths("empty", "missing/t.csv")),
    "--plot": (_pick("acc.png"), _paths("empty", "missing/acc.png", "acc.unknown-format")), "--watch": FLAG,
    "--interval": _num(_pick("0.2", "5")), "--runs": FLAG, "--pull": FLAG,
    "--metric": (_pick("eval_acc"), WEIRD_TEXT), "--by": (_pick("profile"), WEIRD_TEXT),
    "--plot-timeline": (_pick("t.png"), _paths("empty", "missing/t.png")),
}
FINISH = {
    "--kill-tag": (_pick(EARLIER, "catalogue-nobody"), WEIRD_TEXT), "--run": (_pick(EARLIER), WEIRD_TEXT),
    "--log-dir": (_pick("{l}"), _paths("empty", "a-file", "missing")), "--grace": _num(_pick("0", "5")),
    "--local-only": FLAG,
}


def _args(draw, options: dict, most: int) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=most, unique=True))
    args = []
    for name in names:
        value = draw(st.one_of(*options[name]))
        if name == "TARGET":
            args.insert(0, value)
        elif value is None:
            args.append(name)
        else:
            args += [name, value]
    return args


@st.composite
def invocations(draw):
    command = draw(st.sampled_from(["fl-launch"] * 6 + ["fl-stats"] * 2 + ["fl-finish"]))
    options = {"fl-launch": LAUNCH, "fl-stats": STATS, "fl-finish": FINISH}[command]
    args = _args(draw, options, 3)
    return command, args + (["--dry-run"] if command == "fl-finish" else [])


def _substitute(args: list[str], inputs: Path, logs: Path) -> list[str]:
    args = [a.replace("{i}", str(inputs)).replace("{l}", str(logs)) for a in args]
    return args if "--log-dir" in args else [*args, "--log-dir", str(logs)]


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=invocations())
def test_generated_catalogue(sandbox, case):
    """Each drawn invocation: exit 0 with a working plan (nothing started), or exit 2 with one line;
    no traceback, and no folder appears beyond the accepted run's own."""
    work, logs, inputs = sandbox
    command, args = case
    args = _substitute(args, inputs, logs)
    before = _tree(work) | _tree(inputs)
    outcome = call(command, *args)
    event(f"{command} exit {outcome.code}")
    assert "Traceback" not in outcome.err, outcome.err[-3000:]
    if outcome.code == 2:
        outcome.one_line()
        assert not outcome.folders and (_tree(work) | _tree(inputs)) == before, args  # refused: nothing written
    else:
        assert outcome.code == 0, (args, outcome.code, outcome.err[-2000:])
        for folder in outcome.folders:  # a working plan: every node has its data (or the user's app has it)
            info = json.loads((folder / "run.json").read_text())
            assert info["status"] == "prepared" and len(info["plan"]["nodes"]) == info["options"]["client_num"]
            assert info["options"]["app"] or all(n["samples"] >= 2 for n in info["plan"]["nodes"])
    new_dirs = {p for p in (_tree(work) | _tree(inputs)) - before if p.is_dir() and not p.is_symlink()}
    planned = {Path(f) for f in outcome.folders}
    stray = {p for p in new_dirs if not any(p == f or f in p.parents or p in f.parents for f in planned)}
    assert not stray, (args, sorted(map(str, stray))[:5])
    for folder in planned:  # each example starts from the same sandbox
        shutil.rmtree(folder)
    for path in sorted((_tree(work) | _tree(inputs)) - before, key=lambda p: -len(p.parts)):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    latest = logs / "latest"
    if not latest.is_symlink() or os.readlink(latest) != EARLIER:
        latest.unlink(missing_ok=True)
        latest.symlink_to(EARLIER)
