"""One run record, built once: options checked once (the fleet file read once, the resources checked once),
run.json holding the options as given and only the launch's facts beside them (the app's settings and the
plan's other fields derived), and a run.json of the format before (options, settings and plan in full, issue
27) still read by everything that reads one: --resume, --config, the supervisor, fl-stats and fl-finish.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli.config_file import read_config
from launcher.cli.launch import OPTION_NAMES
from launcher.run.folder import RunFolder
from launcher.run.options import LaunchOptions
from launcher.run.plan import prepare_run
from launcher.run.record import RunRecord
from launcher.run.supervisor import Supervisor
from tests.helpers import run, run_json, runs, wait_until_nothing_tagged
from tests.test_app_requirements import with_dependencies

ROOT = Path(__file__).resolve().parents[1]
# run.json as prepare_run wrote it before issue 27's record (main at e86275b): LaunchOptions(client_num=2,
# rounds=1, local_epochs=1, log_dir="/tmp/h14fix", kill_tag="before-27"), prepared, not run
BEFORE = ROOT / "tests" / "data" / "run-json-before-issue-27.json"
OPTIONS = {"client_num": 2, "rounds": 1, "local_epochs": 1, "kill_tag": "before-27"}
SECTIONS = ("options", "settings", "plan")
ROUND_END = re.compile(r"<FLServer> \[round\] iteration:(\d+)/(\d+) end .*aggregated:yes")

# fl-launch in a process whose interpreter counts each open() of the files named (Python's audit events)
COUNTING = """
import atexit, json, runpy, sys
out, watched = sys.argv[1], sys.argv[2:4]
counts = {w: 0 for w in watched}
def hook(event, args):
    if event == "open" and args and str(args[0]) in counts:
        counts[str(args[0])] += 1
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
sys.addaudithook(hook)
sys.argv = ["fl-launch", *sys.argv[4:]]
runpy.run_module("launcher.cli.launch", run_name="__main__")
"""


def test_a_launch_reads_the_fleet_file_and_checks_the_memory_once(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[profile]]\nname = "a"\nclients = 2\ncpu = 0.5\n')
    app = with_dependencies(tmp_path, "not-a-dist-anyone-has>=2.1")  # refused once the run is planned
    counts = tmp_path / "counts.json"
    done = subprocess.run([sys.executable, "-c", COUNTING, str(counts), str(fleet), "/proc/meminfo",
                           "--client-num", "2", "--app", str(app), "--fleet", str(fleet),
                           "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "not-a-dist-anyone-has" in done.stderr, done.stdout + done.stderr
    assert json.loads(counts.read_text()) == {str(fleet): 1, "/proc/meminfo": 1}
    assert runs(tmp_path / "logs") == []


def _before(log_dir: Path, **changed) -> dict:
    """The old format's record of OPTIONS (with ``changed``) in ``log_dir``: options, settings and plan."""
    data = json.loads(BEFORE.read_text())
    data["options"].update(log_dir=str(log_dir), **changed)
    data["settings"].update({key.replace("_", "-"): value for key, value in changed.items()})
    return {part: data[part] for part in SECTIONS}


def repeated(data: dict) -> list[tuple[str, object]]:
    """The fields (key, value) that two of run.json's sections both hold (keys compared with '-' as '_'),
    at any depth: the test's own walk of the JSON."""
    def leaves(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, k.replace("-", "_"))
        elif isinstance(value, list):
            for v in value:
                yield from leaves(v, key)
        else:
            yield key, json.dumps(value)

    held = [set(leaves(data[part])) for part in SECTIONS if part in data]
    return sorted({(k, json.loads(v)) for i, a in enumerate(held) for b in held[i + 1:] for k, v in a & b})


def test_run_json_holds_each_field_of_the_record_once_and_the_same_record(tmp_path):
    folder = prepare_run(LaunchOptions(**OPTIONS, log_dir=str(tmp_path)))
    folder.release()
    written = run_json(folder.path)
    before = _before(tmp_path)
    assert len(repeated(before)) >= 20  # the oracle sees the old format's repeats (rounds, seed, grace, ...)
    assert "settings" not in written and repeated(written) == []
    # the options as given, key for key (--resume and --config's); options added since the fixture at their defaults
    assert {k: written["options"][k] for k in before["options"]} == before["options"]
    added = {k: v for k, v in written["options"].items() if k not in before["options"]}
    assert added == {k: getattr(LaunchOptions(), k) for k in added}
    new_size = len(json.dumps({part: written[part] for part in SECTIONS if part in written}))
    assert new_size < 0.75 * len(json.dumps(before))
    # the same run: the app's settings and the plan derived from the record are what the old format stored
    now, then = RunRecord.from_json(written), RunRecord.from_json(before)
    assert now.settings == then.settings and now.plan == then.plan
    assert (now.plan.startup_timeout, now.settings.num_clients, now.settings.round_timeout) == (66.0, 2, 300.0)


def test_a_run_json_of_the_format_before_is_read_by_config_the_supervisor_stats_and_finish(tmp_path):
    folder = prepare_run(LaunchOptions(**OPTIONS, log_dir=str(tmp_path)))
    folder.release()
    run_json_path = folder.path / "run.json"
    before = _before(tmp_path, round_deadline=30.0, rounds=2)
    run_json_path.write_text(json.dumps({**run_json(folder.path), **before, "supervisor": None}, indent=2))
    # --config RUN/run.json: the options, each with its line in the file
    entries = {e.name: e.value for e in read_config(run_json_path, OPTION_NAMES)}
    assert entries == {k: v for k, v in before["options"].items() if k not in ("kill_tag", "detach")}
    # the supervisor: the plan, the app's settings as stored, and the limits it watches by
    sup = Supervisor(RunFolder(folder.path))
    assert [n.client for n in sup.plan.local_nodes()] == [0, 1]
    assert (sup.progress.rounds, sup.progress.rounds_done, sup.progress.clients) == (2, 0, 2)
    assert (sup.limits.startup_timeout, sup.limits.round_timeout, sup.settings.round_deadline) == (66.0, 300.0, 30.0)
    # fl-stats --runs: its rounds; fl-finish: nothing of it lives, its record left as it was
    listed = run("fl-stats", "--runs", "--json", "--log-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert [(r["run"], r["rounds"], r["clients"]) for r in json.loads(listed.stdout)] == [(folder.run_id, 2, 2)]
    finished = run("fl-finish", "--run", folder.run_id, "--log-dir", str(tmp_path), "--grace", "1")
    assert finished.returncode == 0 and "Traceback" not in finished.stderr, finished.stdout + finished.stderr
    assert {part: run_json(folder.path)[part] for part in SECTIONS} == before


@pytest.mark.slow
def test_resume_goes_on_with_a_run_json_of_either_format(tmp_path):
    """A real 1-round run, copied twice, each copy marked failed and given a second round: one in today's
    format, one in the format before; --resume trains round 2 of each and leaves today's format."""
    done = run("fl-launch", "--client-num", "2", "--rounds", "1", "--local-epochs", "1", "--grace", "3",
               "--kill-tag", "h14-resume", "--log-dir", str(tmp_path / "first"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [first] = runs(tmp_path / "first")
    assert wait_until_nothing_tagged("h14-resume") == []
    samples = [n["samples"] for n in run_json(first)["plan"]["nodes"]]
    for fmt in ("today", "before"):
        log_dir = tmp_path / fmt
        copy = log_dir / first.name
        shutil.copytree(first, copy, symlinks=True)
        data = run_json(copy)
        if fmt == "today":
            data["options"].update(rounds=2, log_dir=str(log_dir))
        else:
            data.update(_before(log_dir, rounds=2, kill_tag="h14-resume"))
            for node, n in zip(data["plan"]["nodes"], samples):
                node["samples"] = n
        data["status"] = "failed"
        (copy / "run.json").write_text(json.dumps(data, indent=2))
        again = run("fl-launch", "--resume", first.name, "--log-dir", str(log_dir), timeout=300)
        assert again.returncode == 0, fmt + again.stdout + again.stderr
        info = run_json(copy)
        assert info["status"] == "finished" and info["rounds_done"] == 2 and info["resumed_from_round"] == 2, fmt
        assert "settings" not in info and repeated(info) == [], fmt
        log = (copy / "server" / "server.log").read_text()
        assert ROUND_END.findall(log) == [("1", "1"), ("2", "2")], fmt  # round 2 of 2 trained by the resume
        assert "[launcher] resumed from round 2" in log, fmt
        assert sorted(p.name for p in (copy / "checkpoints").iterdir())[-1] == "round_0002.pt", fmt
        assert wait_until_nothing_tagged("h14-resume") == []
