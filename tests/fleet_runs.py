"""Real runs of the built-in app with a fleet, a deadline or over-commit, as the launcher will start them.

    run_dir = fleet_run(tmp_path, fleet, clients=10, rounds=3, deadline=10.0, tag="t-fleet")

The launcher does not pass --fleet, --round-deadline or --overcommit on yet: this prepares the run folder as
fl-launch does (launcher.run.plan.prepare_run), writes RUN/fleet.json (contract.fleet_record.write_fleet) and the
app's run config with the new settings, then runs the supervisor in its own process.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from contract.fleet_record import Fleet, write_fleet
from launcher.run.journal import write_record
from launcher.run.options import LaunchOptions
from launcher.run.plan import prepare_run
from launcher.run.record import RunRecord
from simulator.flower_app import write_app_dir


def fleet_run(log_dir: Path, fleet: Fleet | None, *, timeout: float = 300,
              **how) -> tuple[Path, subprocess.CompletedProcess]:
    """The run (prepare_fleet_run's keywords), to its end."""
    path = prepare_fleet_run(log_dir, fleet, **how)
    done = subprocess.run([sys.executable, "-m", "launcher.run.supervisor", str(path)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return path, done


def prepare_fleet_run(log_dir: Path, fleet: Fleet | None, *, clients: int, rounds: int, tag: str,
                      per_round: int | None = None, min_clients: int | None = None, deadline: float = 0.0,
                      overcommit: float = 1.0, seed: int = 0, mode: str = "virtual", samples: int = 40,
                      model: str = "") -> Path:
    """The run folder, ready for ``python -m launcher.run.supervisor FOLDER``."""
    opts = LaunchOptions(client_num=clients, rounds=rounds, local_epochs=1, samples_per_client=samples, mode=mode,
                         log_dir=str(log_dir), kill_tag=tag, seed=seed, clients_per_round=per_round,
                         min_clients=min_clients, model=model)
    folder = prepare_run(opts)
    try:
        if fleet is not None:
            write_fleet(folder.path, fleet)
        record = RunRecord.read(folder)
        record = RunRecord.made(replace(record.options, round_deadline=deadline or None, overcommit=overcommit),
                                record.plan)
        write_app_dir(folder.path / "app", record.settings)
        write_record(folder, record)
    finally:
        folder.release()
    return folder.path
