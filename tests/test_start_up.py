"""What stands between `fl-launch` and its first process: the command's own imports.

Every second before the fork server and the SuperLink start is a second of the time to round 1 that nothing
overlaps. The oracle: the modules a fresh interpreter holds after importing fl-launch's command and loading the
seed's data set (sys.modules, read in that interpreter), and `python -X importtime`'s own figure.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
# each of these costs the command 0.3-1.5 s of import where it needs none of them before its processes start
NOT_BEFORE_START = ("flwr", "fastapi", "torch", "sklearn", "scipy", "ray", "pandas", "grpc")


def test_the_command_imports_neither_flower_nor_torch_nor_scikit_learn_before_it_starts_processes():
    probe = ("import json, sys; from launcher.cli.launch import main; from launcher.run.supervisor import Supervisor; "
             "from simulator.datasets import load_dataset; load_dataset('digits'); "
             f"print(json.dumps(sorted(m for m in {NOT_BEFORE_START!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout


def test_the_command_imports_under_half_the_modules_it_did():
    """Before: launcher.cli.launch pulled 1243 modules (fastapi and Flower's HTTP stack through the restart rules,
    Flower's Message through the journal); after: 553. A module count holds on a loaded machine where times do not."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import launcher.cli.launch"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    modules = len(re.findall(r"^import time:", out.stderr, re.MULTILINE))
    assert re.search(r"\| launcher\.cli\.launch$", out.stderr, re.MULTILINE), out.stderr[-2000:]
    assert modules < 800, f"{modules} modules imported by the command"


def test_the_superexec_asks_for_the_runs_serverapp_five_times_a_second(tmp_path, monkeypatch):
    """The ServerApp's start (its imports) is round 1's critical path and begins when Flower's SuperExec, polling,
    acquires the run's task: it polls every 0.2 s here (Flower's default 1 s). The oracle: the SuperExec's own
    acquire-task requests in the SuperLink's access lines over the run's span, at least 2.5 a second (1 before)."""
    import datetime

    from tests.helpers import superlink_log_of_a_run

    log = superlink_log_of_a_run(tmp_path, monkeypatch, clients=2, rounds=2)
    stamps = [datetime.datetime.fromisoformat(m.replace("Z", "+00:00")) for m in re.findall(
        r"^(\S+Z) \w+ \[uvicorn\.access\] [^\n]*\"POST /v1/runtime/acquire-task HTTP", log, re.M)]
    span = (stamps[-1] - stamps[0]).total_seconds()
    assert span > 2 and (len(stamps) - 1) / span >= 2.5, (len(stamps), span)


def test_the_runs_serverapp_is_forked_by_the_fork_server_and_run_to_its_end(tmp_path):
    """A fresh ServerApp imports torch, Flower and the app (~3 CPU-s) while fifty clients start on the same cores;
    forked by the run's fork server it has them already. The oracles, read from /proc while round 1 runs: the
    process named flwr-serverapp has the fork server's command line (forked, not exec'd), the supervisor for its
    parent (the fork server's subreaper; a Popen'd one's is the SuperExec), and the streams Flower asked for; the
    run then finishes with every round aggregated, its lines in serverapp.log."""
    import psutil

    from tests.helpers import run_json, running

    tag = f"forked-serverapp-{tmp_path.name}"
    with running("--client-num", "2", "--task", "train", "--rounds", "3", "--kill-tag", tag,
                 log_dir=tmp_path) as (proc, run_dir):
        supervisor = proc.pid  # a foreground fl-launch is its run's supervisor: the PID this test started
        assert run_json(run_dir)["supervisor"]["pid"] == supervisor
        found = {}
        deadline = time.monotonic() + 30
        while set(found) != {"serverapp", "superexec"} and time.monotonic() < deadline:
            for p in psutil.process_iter(["name", "cmdline", "ppid"]):
                if p.info["name"] == "flwr-serverapp" or "flower-superexec" in " ".join(p.info["cmdline"] or []):
                    try:
                        if p.environ().get("FL_LAUNCH_TAG") == tag:
                            found["serverapp" if p.info["name"] == "flwr-serverapp" else "superexec"] = p
                    except psutil.Error:
                        continue
            time.sleep(0.1)
        assert set(found) == {"serverapp", "superexec"}, found
        serverapp, superexec = found["serverapp"], found["superexec"]
        assert "launcher.processes.fork_server" in " ".join(serverapp.cmdline())
        assert serverapp.ppid() == supervisor != superexec.pid
        # what Flower's SuperExec asks Popen for (its output reaches serverapp.log through the SuperLink's stream)
        assert [os.readlink(f"/proc/{serverapp.pid}/fd/{fd}") for fd in (1, 2)] == [os.devnull] * 2
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "status: finished" in out, out[-2000:]
    ends = re.findall(r"\[round\] iteration:\d+/3 end replies:2 failures:0 aggregated:yes",
                      (run_dir / "server" / "server.log").read_text())
    assert len(ends) == 3
    assert "[ROUND 3/3]" in (run_dir / "server" / "serverapp.log").read_text()
