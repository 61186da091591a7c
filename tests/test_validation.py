"""Validation in one place: prepare_run without the CLI refuses what fl-launch refuses, in the same words;
any module's InputError raised in a command is one line and exit 2."""

import click
import pytest

from contract.errors import InputError
from launcher.cli.errors import OneLineErrors
from launcher.run.options import LaunchOptions, OptionsError
from launcher.run.plan import prepare_run
from simulator.datasets import DataSetError
from tests.helpers import run, runs

CONFLICTS = {  # LaunchOptions fields, and the same on fl-launch's command line
    "more per round than clients": ({"client_num": 3, "clients_per_round": 4},
                                    ["--client-num", "3", "--clients-per-round", "4"]),
    "min-clients above sampled": ({"client_num": 3, "min_clients": 4}, ["--client-num", "3", "--min-clients", "4"]),
    "workers in process mode": ({"client_num": 4, "workers": 2}, ["--client-num", "4", "--workers", "2"]),
    "bad kill tag": ({"kill_tag": "a b;c"}, ["--kill-tag", "a b;c"]),
}


@pytest.mark.parametrize("name", list(CONFLICTS))
def test_prepare_run_refuses_what_the_cli_refuses_in_the_same_words(tmp_path, name):
    fields, args = CONFLICTS[name]
    logs = tmp_path / "logs"
    with pytest.raises(OptionsError) as refused:
        prepare_run(LaunchOptions(log_dir=str(logs), **fields))
    assert isinstance(refused.value, InputError) and runs(logs) == []
    result = run("fl-launch", *args, "--log-dir", str(logs), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"fl-launch: error: {refused.value}"]
    assert runs(logs) == []


def test_an_option_the_user_set_is_refused_only_when_given():
    opts = LaunchOptions(alpha=0.3)  # iid: alpha unused
    with pytest.raises(OptionsError, match="^--alpha is for --partition dirichlet$"):
        opts.validate({"alpha"})


@click.command("fl-demo", cls=OneLineErrors)
def _demo() -> None:
    raise DataSetError("data dir /x holds none of\n   data_batch_1, test_batch")


def test_an_input_error_inside_a_command_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        _demo.main(args=[], prog_name="fl-demo")
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == "fl-demo: error: data dir /x holds none of data_batch_1, test_batch\n"
    assert captured.out == ""
