"""FedScale's device capacity and behaviour traces made into a fleet (python -m launcher.fleet.fedscale): files
written here in FedScale's exact layout (pickled dicts, as its aggregator and ClientMetadata load them), the
fleet read back by the fleet file's own reader, the figures computed here from the dicts; a pickle that would
run code is refused and its code does not run."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.fleet.profiles import read_fleet_file

# FedScale's layout: client id -> {'computation': ms per sample, 'communication': kbit/s}
CAPACITY = {1: {"computation": 40.0, "communication": 5648.109619499134},
            2: {"computation": 162.0, "communication": 1200.0},
            3: {"computation": 20.0, "communication": 30000.0}}
# client id -> {'duration', 'inactive', 'finish_time', 'active', 'model'}: windows repeat every finish_time
BEHAVIOUR = {3834: {"duration": 211625, "inactive": [30, 90], "finish_time": 100, "active": [10, 60],
                    "model": "CPH1801"},
             4000: {"duration": 5000, "inactive": [100], "finish_time": 100, "active": [0], "model": "SM-G950F"}}


def _convert(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.fleet.fedscale", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)


def _write(path: Path, value) -> Path:
    path.write_bytes(pickle.dumps(value))
    return path


def test_fedscale_traces_become_a_fleet(tmp_path):
    capacity, behaviour = _write(tmp_path / "client_device_capacity", CAPACITY), \
        _write(tmp_path / "client_behave_trace", BEHAVIOUR)
    done = _convert(tmp_path, str(capacity), str(behaviour), "--reference", "1", "--clients", "4",
                    "--out", str(tmp_path / "fleet"), "--horizon", "250")
    assert done.returncode == 0, done.stderr
    fleet = read_fleet_file(tmp_path / "fleet" / "fleet.toml", 4)  # the checks fl-launch --fleet makes
    caps = [CAPACITY[k] for k in sorted(CAPACITY)]
    behaves = [BEHAVIOUR[k] for k in sorted(BEHAVIOUR)]
    for client in range(4):
        profile = fleet.profile_of(client)
        cap = caps[client % 3]
        # the reference (40 ms per sample) is a full core: 162 ms -> 40/162, 20 ms (faster) -> held to 1
        assert profile.cpu == pytest.approx(min(1.0, 40.0 / cap["computation"]), rel=1e-3)
        assert profile.down == profile.up == pytest.approx(cap["communication"] * 1000, rel=1e-3)
        trace = behaves[client % 2]
        want = []
        for shift in (0, 100, 200):  # the windows unrolled over the 250 s horizon
            want += [(shift + a, min(shift + b, 250)) for a, b in zip(trace["active"], trace["inactive"])
                     if shift + a < 250]
        assert [(w.start, w.end) for w in profile.trace] == pytest.approx(want)
    assert fleet.online_at(0, 15.0) and not fleet.online_at(0, 45.0) and fleet.online_at(0, 265.0) is False
    assert fleet.online_at(1, 45.0) and fleet.online_at(0, 215.0)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __reduce__(self):
        return eval, ("__import__('os').system('true')",)


@pytest.mark.parametrize("which", ["capacity", "behaviour"])
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, which):
    marker = tmp_path / "payload-ran"
    evil = {1: {"computation": 40.0, "communication": _Payload(marker)}}
    good = {"capacity": CAPACITY, "behaviour": BEHAVIOUR}
    files = {name: _write(tmp_path / name, evil if name == which else good[name]) for name in good}
    done = _convert(tmp_path, str(files["capacity"]), str(files["behaviour"]), "--reference", "1", "--clients", "2",
                    "--out", str(tmp_path / "fleet"))
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.count("\n") == 1 and "refused" in done.stderr and "system" in done.stderr, done.stderr
    assert not marker.exists() and not (tmp_path / "fleet").exists()
    # pickle.load itself would have run it: the payload works
    pickle.loads(files[which].read_bytes())
    assert marker.exists()


def test_bad_files_and_options_are_one_line_and_exit_2(tmp_path):
    capacity, behaviour = _write(tmp_path / "cap", CAPACITY), _write(tmp_path / "beh", BEHAVIOUR)
    cases = {
        "a builtin that is not data": (_write(tmp_path / "eval", {1: _Eval()}), behaviour, "1", "builtins.eval"),
        "a truncated pickle": (_write(tmp_path / "cut", CAPACITY), behaviour, "1", "not a readable pickle"),
        "not a dict": (_write(tmp_path / "list", [1, 2]), behaviour, "1", "expected a non-empty dict"),
        "no computation": (_write(tmp_path / "nocomp", {1: {"communication": 5.0}}), behaviour, "1", "'computation'"),
        "a window backwards": (capacity, _write(tmp_path / "back", {1: {"active": [50], "inactive": [10],
                                                                        "finish_time": 100}}), "1", "ends before"),
        "an unknown reference": (capacity, behaviour, "99", "--reference 99"),
        "a missing file": (tmp_path / "missing", behaviour, "1", "cannot read"),
    }
    (tmp_path / "cut").write_bytes((tmp_path / "cut").read_bytes()[:20])
    for case, (cap, beh, reference, words) in cases.items():
        done = _convert(tmp_path, str(cap), str(beh), "--reference", reference, "--clients", "2",
                        "--out", str(tmp_path / "out"))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, (case, done.stderr)
        assert "Traceback" not in done.stderr
    done = _convert(tmp_path, str(capacity), str(behaviour), "--reference", "1", "--clients", "0", "--out", "o")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--clients" in done.stderr
    assert not (tmp_path / "out").exists()
