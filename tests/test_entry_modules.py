"""Every module fl-launch runs by name (``python -m``, a fork, a preload, over SSH on a device) is there."""

import importlib
import importlib.util
import subprocess

import pytest

from launcher.processes import entry_modules
from launcher.processes.entry_modules import BUILT_IN_PRELOAD, ENTRY_MODULES


@pytest.mark.parametrize("name", ENTRY_MODULES)
def test_each_entry_module_is_importable_and_has_main(name):
    module = importlib.import_module(name)
    assert callable(module.main)
    source = importlib.util.find_spec(name).origin
    assert "if __name__ == \"__main__\":" in open(source).read()  # `python -m NAME` runs main


def test_the_preload_target_exists():
    module, attr = BUILT_IN_PRELOAD.split(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_every_dotted_launcher_name_in_the_code_is_a_module_named_there():
    """No module path is written out elsewhere: a literal "launcher.x.y" in the code is one of these."""
    names = set(ENTRY_MODULES)
    root = entry_modules.__file__.rsplit("/launcher/", 1)[0]
    listed = subprocess.run(["git", "grep", "-hoE", r"\"launcher\.[a-z_.]+\"", "--", "launcher"],
                            capture_output=True, text=True, cwd=root)
    literals = {text.strip('"') for text in listed.stdout.split()}
    assert names <= literals and literals - names == set()



def test_a_flower_command_runs_through_the_plain_logs_entry_module():
    """launcher/flower/ names its own module (it imports nothing of processes/): the same name as the list's."""
    from launcher.flower.plain_logs import plain  # noqa: PLC0415
    from launcher.processes.entry_modules import PLAIN_LOGS  # noqa: PLC0415

    command = plain(["flwr", "run"])
    assert command[1:] == ["-m", PLAIN_LOGS, "flwr", "run"]
