"""Docstring examples either run (as doctests, here) or are plain code without a ``>>>`` prompt."""

import doctest
import importlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCTESTED = ["partitions", "partitions.schemes", "launcher.processes.node_config"]


@pytest.mark.parametrize("name", DOCTESTED)
def test_the_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_no_other_module_shows_a_prompt_it_does_not_run():
    listed = subprocess.run(["git", "grep", "-l", ">>>", "--", "launcher", "simulator", "contract", "partitions"],
                            cwd=ROOT, capture_output=True, text=True).stdout.split()
    as_modules = {path.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for path in listed}
    assert as_modules <= set(DOCTESTED)
