"""launcher.flower.reply_batch: a ServerApp takes the replies a pull brings in one exchange for all their objects and
one for all their confirmations, judged by the SuperLink's own access and handler lines."""

from __future__ import annotations

import re

from tests.helpers import superlink_log_of_a_run


def test_a_serverapp_confirms_its_replies_in_batches_and_pulls_their_objects_together(tmp_path, monkeypatch):
    """A real run, 8 clients, 2 rounds, Flower's DEBUG lines on: every reply a node pushed is confirmed by the
    ServerApp (the SuperLink's Runtime handler line, once each), yet no confirmation came as a request of its own
    (before: one request each), and the ServerApp made no more requests for its replies than before (before: an
    object exchange and a confirmation for each; now an exchange for the objects and one for the confirmations of
    every pull that brought replies, however many it brought: how many a pull brings depends on when they come)."""
    log = superlink_log_of_a_run(tmp_path, monkeypatch, clients=8, rounds=2)
    replies = len(re.findall(r"\[Fleet\.PushMessages\] Push replies from node_id=\d+", log))
    confirmed = len(re.findall(r"^DEBUG [^\n]*\s{2,}Runtime\.ConfirmMessageReceived$", log, re.M))
    alone = len(re.findall(r'"POST /v1/runtime/confirm-message-received HTTP', log))
    batches = len(re.findall(r'"POST /v1/runtime/fl-launch-batch HTTP', log))
    pushes = len(re.findall(r'"POST /v1/runtime/push-messages HTTP', log))  # each with its own object batch
    assert replies >= 16 and confirmed == replies, (replies, confirmed)
    assert alone == 0
    assert batches - pushes <= 2 * replies, (batches, pushes, replies)
