"""Virtual clients: the ServerApp knows each node's client without a message per node.

A real 40-client virtual run on digits with a Dirichlet split (partitions of different sizes), 5 per round.
Every message the simulation runtime's ServerApp pushes is counted where Flower stores it
(``InMemoryLinkState.store_message_ins``, wrapped by a sitecustomize this test puts on PYTHONPATH): the
count, not the launcher's word, says no ``query.partition`` message was sent. Each sampled client's own
client.log (grep) says it trained, with the sizes of that client's partition file in the run's data/.
"""

import re
import textwrap
from collections import Counter

import numpy as np
import pytest

from tests.helpers import run, run_json, runs, wait_until_nothing_tagged

COUNTER = """
import importlib.abc, importlib.util, os, sys

_TARGET = "flwr.server.superlink.linkstate.in_memory_linkstate"
_OUT = os.environ.get("FL_TEST_MESSAGE_TYPES")


class _CountMessages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_count(module):
            exec_module(module)
            store = module.InMemoryLinkState.store_message_ins

            def counted(self, message):
                with open(_OUT, "a") as out:
                    out.write(message.metadata.message_type + "\\n")
                return store(self, message)

            module.InMemoryLinkState.store_message_ins = counted

        spec.loader.exec_module = exec_and_count
        return spec


if _OUT:
    sys.meta_path.insert(0, _CountMessages())
"""


@pytest.mark.slow  # about 70 s on a quiet machine, most of it Ray starting its workers
def test_virtual_nodes_are_mapped_to_clients_without_a_message_each(tmp_path, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(COUNTER))
    counted = tmp_path / "message_types.txt"
    monkeypatch.setenv("PYTHONPATH", f"{hook}:{__import__('os').environ.get('PYTHONPATH', '')}".rstrip(":"))
    monkeypatch.setenv("FL_TEST_MESSAGE_TYPES", str(counted))
    tag = "test-virtual-no-query"
    result = run("fl-launch", "--client-num", "40", "--clients-per-round", "5", "--rounds", "2",
                 "--local-epochs", "1", "--partition", "dirichlet", "--alpha", "0.5", "--mode", "virtual",
                 "--seed", "3", "--log-dir", str(tmp_path / "logs"), "--kill-tag", tag, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = runs(tmp_path / "logs")
    assert run_json(run_dir)["status"] == "finished"
    types = Counter(counted.read_text().split())
    # two rounds of 5 train messages, then 40 final evaluations: nothing else, no query per node
    assert types == {"train": 10, "evaluate": 40}, types
    sampled = {int(m.group(1)): [int(p) for p in m.group(2).split(", ")] for m in re.finditer(
        r"\[round\] iteration:(\d+) clients:\[([\d, ]+)\]", (run_dir / "server" / "server.log").read_text())}
    assert sorted(sampled) == [1, 2] and all(len(p) == 5 for p in sampled.values())
    sizes = set()
    for i in range(40):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        with np.load(run_dir / "data" / f"client_{i}.npz") as part:
            n_train, n_test = len(part["y_train"]), len(part["y_test"])
        sizes.add((n_train, n_test))
        trained = [int(r) for r in re.findall(r"\[round\] iteration:(\d+)/2 start", text)]
        # the sampled clients, and only they, trained, each on its own partition
        assert trained == [r for r in (1, 2) if i in sampled[r]], (i, trained, sampled)
        ends = re.findall(r"train_samples:(\d+) test_samples:(\d+)", text)
        assert ends == [(str(n_train), str(n_test))] * len(trained), (i, ends)
        assert re.findall(r"\[final\] final model accuracy: [\d.]+ test_samples:(\d+)", text) == [str(n_test)]
    assert len(sizes) > 10  # partitions of different sizes: a client on another's data would show
    assert wait_until_nothing_tagged(tag) == []
