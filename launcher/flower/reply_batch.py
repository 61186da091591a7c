"""A ServerApp's replies taken in one exchange each way: every reply's objects at once, their confirmations at once.

    install()   # in a ServerApp's process (launcher.flower.plain_logs), after object_batch.install_in_serverapp

Flower's HTTP grid takes the replies a pull-messages brings one at a time: an exchange for each reply's objects
(launcher.flower.object_batch), then a confirm-message-received for each: two requests a reply, a hundred a round
of fifty clients, each paying both HTTP stacks. Here, while the grid's ``pull_messages`` runs, its Runtime API
client is wrapped (RepliesInOne): the PullMessages answer is followed at once by one batch exchange for every
object of every reply it lists (at most MAX_BATCH_CALLS calls a batch); the grid's per-reply pulls are served
from those first (``pull_objects``, anything the batch did not bring pulled as before, with Flower's retries and
its error reply for an object that stays unavailable); its confirmations are held and sent together in one batch
exchange when ``pull_messages`` returns or raises, each one that exchange did not settle then made with Flower's
own call (its retries, its errors). Which replies are returned, in what order, with what content, is Flower's
code's doing, unchanged. tests/test_flower_internals.py pins the grid's shape this relies on.
"""

from __future__ import annotations

import functools
import threading
from logging import WARNING

from launcher.flower.object_batch import exchange, held_first, pull_many

CONFIRM = "/v1/runtime/confirm-message-received"
PULL_OBJECT = "/v1/runtime/pull-object"
_pending = threading.local()  # the running pull_messages' fetched objects and held confirmations (its thread's)


class RepliesInOne:
    """A grid's RuntimeHttpClient, its PullMessages followed by one pull of every listed object, its confirmations
    held while a pull_messages runs on this thread; everything else is the client's own."""

    def __init__(self, client, grid) -> None:
        self.wrapped, self.grid = client, grid

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def PullMessages(self, request):  # noqa: N802 (Flower's name)
        from flwr.supercore.inflatable.inflatable_object import iterate_object_tree

        answer = self.wrapped.PullMessages(request)
        fetched = getattr(_pending, "fetched", None)
        if fetched is not None and answer.message_object_trees:
            ids = [tree.object_id for root in answer.message_object_trees for tree in iterate_object_tree(root)]
            fetched.update(pull_many(self.wrapped, PULL_OBJECT, self.grid.node, self.grid._run.run_id, ids))  # noqa: SLF001
        return answer

    def ConfirmMessageReceived(self, request):  # noqa: N802 (Flower's name)
        from flwr.proto.message_pb2 import ConfirmMessageReceivedResponse  # pylint: disable=E0611

        held = getattr(_pending, "confirms", None)
        if held is None:
            return self.wrapped.ConfirmMessageReceived(request)
        held.append(request)
        return ConfirmMessageReceivedResponse()


def _send_confirms(client, requests: list) -> None:
    """The held confirmations in one exchange; each it did not settle with Flower's own call."""
    if not requests:
        return
    answers = exchange(client.wrapped, CONFIRM, requests)
    for request, (status, _) in zip(requests, answers):
        if status != 200:
            client.wrapped.ConfirmMessageReceived(request)


def install() -> None:
    """Flower's HTTP grid in this process takes its replies as the module says (installed once)."""
    import flwr.superlink.grid.http_grid as grid_module

    grid_class = grid_module.HttpGrid
    if getattr(grid_class.pull_messages, "replies_in_one", False):
        return
    pull_messages, pull_objects = grid_class.pull_messages, grid_module.pull_objects

    @functools.wraps(pull_messages)
    def pull_in_one(self, message_ids):
        client = self._runtime_client  # (connects if need be)
        if not isinstance(client, RepliesInOne):
            client = self._client = RepliesInOne(client, self)
        if getattr(_pending, "confirms", None) is not None:  # (not nested: a pull inside a pull is Flower's own)
            return pull_messages(self, message_ids)
        _pending.fetched, _pending.confirms = {}, []
        try:
            replies = pull_messages(self, message_ids)
        except BaseException:
            held = _pending.confirms
            _pending.fetched = _pending.confirms = None
            try:
                _send_confirms(client, held)  # those Flower would have sent before it raised
            except Exception as err:  # noqa: BLE001 (the pull's own error is the one to raise)
                from flwr.supercore import log  # noqa: PLC0415

                log(WARNING, "fl-launch: held confirmations not sent: %s", err)
            raise
        held = _pending.confirms
        _pending.fetched = _pending.confirms = None
        _send_confirms(client, held)
        return replies

    pull_in_one.replies_in_one = True
    grid_class.pull_messages = pull_in_one
    # (kept, not taken: two replies may share an object)
    grid_module.pull_objects = held_first(pull_objects, lambda: getattr(_pending, "fetched", None), keep=True)
