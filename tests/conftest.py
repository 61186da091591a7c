"""Every test's runs convert into a cache of the test session's own, not the user's ~/.cache/fl-launch; what a
test's fl-launch runs left running is stopped after it (a failure must not slow or break the tests after it)."""

import os

import pytest

from tests.helpers import stop_runs_left


@pytest.fixture(autouse=True, scope="session")
def _own_conversion_cache(tmp_path_factory):
    if "FL_LAUNCH_CACHE" not in os.environ:
        os.environ["FL_LAUNCH_CACHE"] = str(tmp_path_factory.mktemp("fl-launch-cache"))
    yield


@pytest.fixture(autouse=True)
def _stop_the_runs_a_test_left():
    yield
    stop_runs_left()
