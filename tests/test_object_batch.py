"""launcher.flower.object_batch: frames, and what the client leaves to Flower's own per-object calls."""

from __future__ import annotations

import flwr.supercore.inflatable.inflatable_utils as objects

from launcher.flower import object_batch
from launcher.flower.object_batch import BatchablePull, join_answers, join_calls, split_answers, split_calls


def test_frames_round_trip_with_empty_and_binary_bodies():
    calls = [("/v1/runtime/pull-object", b""), ("/v1/fleet/push-object", bytes(range(256)) * 300)]
    assert list(split_calls(join_calls(calls))) == calls
    answers = [(200, b"\x00\x01"), (404, b""), (401, b'{"detail":"no"}')]
    assert split_answers(join_answers(answers)) == answers


def test_objects_a_batch_did_not_settle_are_pulled_one_by_one_as_flower_does(monkeypatch):
    """The oracle: which ids reached the per-object function (Flower's pull_objects, retries included)."""
    import flwr.supernode.runtime.run_clientapp as task

    for module, name in ((objects, "pull_objects"), (task, "push_objects"), (task, "make_pull_object_fn_protobuf"),
                         (task, "make_push_object_fn_protobuf")):
        monkeypatch.setattr(module, name, getattr(module, name))  # Flower's own, restored after the test
    object_batch.install_in_task_process()
    singles = []

    def single(object_id: str) -> bytes:
        singles.append(object_id)
        return b"single:" + object_id.encode()

    pull = BatchablePull(single, client=None, node=None, run_id=1)
    monkeypatch.setattr(pull, "pull_many", lambda ids: {i: b"batched:" + i.encode() for i in ids if i != "b"})
    got = objects.pull_objects(["a", "b", "c"], pull)
    assert got == {"a": b"batched:a", "b": b"single:b", "c": b"batched:c"} and singles == ["b"]

    monkeypatch.setattr(object_batch, "_exchange_one", lambda *a, **k: None)  # a server without the batch path
    singles.clear()
    pull = BatchablePull(single, client=object(), node=None, run_id=1)
    assert objects.pull_objects(["x", "y"], pull) == {"x": b"single:x", "y": b"single:y"}
    assert sorted(singles) == ["x", "y"]
    assert objects.pull_objects(["z"], single) == {"z": b"single:z"}  # a plain function: Flower's own path
