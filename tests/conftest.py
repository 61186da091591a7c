"""Every test's runs convert into a cache of the test session's own, not the user's ~/.cache/fl-launch."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _own_conversion_cache(tmp_path_factory):
    if "FL_LAUNCH_CACHE" not in os.environ:
        os.environ["FL_LAUNCH_CACHE"] = str(tmp_path_factory.mktemp("fl-launch-cache"))
    yield
