"""A Grid that ends a round's wait at its deadline, at enough replies or when only lost nodes are left, and polls
for replies every 0.1 s instead of every 3 s.

    grid = DeadlineGrid(grid)                # inside ServerApp.main
    strategy.start(grid=grid, ...)           # Flower's strategy, unchanged
    grid.send_and_receive(messages, timeout=300, enough=4, deadline=30.0)   # the first 4 good replies, 30 s at most
    grid.expect(enough=4, deadline=30.0)    # the same for the next send_and_receive (Flower's own call)
    grid.cut                                # why that call stopped early: "enough", "deadline" or None
    grid.send_in_window(messages, window=50, timeout=300)   # at most 50 awaiting replies; the next sent as one comes

Flower 1.41's HTTP grid sleeps 3 s between reply pulls, so a round that is
done waits 1.5 s on average before the server notices. This wrapper keeps
Flower's own push_messages/pull_messages and only shortens the wait; every
other call goes to the wrapped grid. With ``enough`` it stops once that many
good (non-error) replies came, with ``deadline`` at that many seconds after the
push (a round deadline, simulator.strategy): the replies it returns are in the
order they arrived; the ones that come later are never pulled. ``arrivals`` holds when (time.time()) each
node's reply was pulled: the moment the server holds it.

Flower's pull of a reply whose head has arrived but whose objects are still uploading
blocks, retrying after 1 s, 2 s, 4 s... Under a deadline each pull runs in a thread the
round waits on only until the deadline: a round ends on time, and that pull's replies
(the one still uploading, and any that came in the same pull) count as late.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable

from flwr.app import Message

POLL_SECONDS = 0.1


class DeadlineGrid:
    """``lost_nodes()``: node ids known to be gone; waiting ends once only they are left.
    ``after_push()``: called once messages are on the SuperLink (the ServerApp rings the nodes' bells); not after a
    push of none: a ring makes every idle node pull, and a pull that brings nothing is a Fleet call for nothing."""

    def __init__(self, grid, poll: float = POLL_SECONDS, lost_nodes=lambda: set(), after_push=lambda: None) -> None:
        self._grid = grid
        self._after_push = after_push
        self._poll = poll
        self._lost_nodes = lost_nodes
        self._expect: tuple[int | None, float | None] = (None, None)
        self.cut: str | None = None  # why the last send_and_receive stopped before every reply came
        self.arrivals: dict[int, float] = {}  # the last send_and_receive: node id -> when its reply was pulled

    def expect(self, enough: int | None = None, deadline: float | None = None) -> None:
        """``enough`` and ``deadline`` for the next send_and_receive only."""
        self._expect = (enough, deadline)

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None,
                         enough: int | None = None, deadline: float | None = None) -> Iterable[Message]:
        expected, self._expect = self._expect, (None, None)
        enough = enough if enough is not None else expected[0]
        deadline = deadline if deadline is not None else expected[1]
        self.cut = None
        self.arrivals = {}
        messages = list(messages)
        started = time.monotonic()
        ids = list(self._grid.push_messages(messages))
        destination = {mid: m.metadata.dst_node_id for mid, m in zip(ids, messages) if mid is not None}
        if destination:  # an empty push (Flower's evaluate step with fraction_evaluate 0, every round) rings nobody
            self._after_push()
        pending = set(destination)
        replies: list[Message] = []
        ends = [started + t for t in (timeout, deadline if deadline and deadline > 0 else None) if t is not None]
        end = min(ends) if ends else None
        cut_by_deadline = bool(deadline and deadline > 0 and (timeout is None or deadline <= timeout))
        while pending and (end is None or time.monotonic() < end):
            got = self._pull(pending, end if cut_by_deadline else None)
            if got is None:  # the deadline came while Flower was still pulling a reply's objects
                self.cut = "deadline"
                break
            replies.extend(got)
            pulled = time.time()
            self.arrivals.update((m.metadata.src_node_id, pulled) for m in got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if pending and enough and sum(not m.has_error() for m in replies) >= enough:
                self.cut = "enough"
                break
            if pending and {destination[mid] for mid in pending} <= self._lost_nodes():
                break  # everyone still owing a reply is gone
            if pending:
                time.sleep(self._poll if end is None else max(0.0, min(self._poll, end - time.monotonic())))
        else:
            if pending and cut_by_deadline:
                self.cut = "deadline"
        return replies

    def send_in_window(self, messages: Iterable[Message], *, window: int, timeout: float | None = None,
                       keep: Callable[[Message], object] = lambda reply: reply) -> list:
        """Each message sent once fewer than ``window`` await their replies; the replies, each within ``timeout``
        of its own push (a message past it, or to a lost node, is given up). No wait for a batch's slowest
        reply before the next is sent: the clients' workers stay busy, and at most ``window`` are in flight.
        ``keep``: what of each reply is kept as it comes (the final evaluation of N clients keeps two numbers
        each, not N messages)."""
        unsent = iter(messages)  # made as they are sent when a generator: no N messages held at once
        pending: dict[str, tuple[int, float]] = {}  # message id -> (its node, when it was pushed)
        replies: list = []
        more = True
        while more or pending:
            batch = list(itertools.islice(unsent, max(0, window - len(pending)))) if more else []
            more = more and len(batch) == max(0, window - len(pending))
            if batch:
                ids = list(self._grid.push_messages(batch))
                self._after_push()
                pushed = time.monotonic()
                pending.update((mid, (m.metadata.dst_node_id, pushed)) for mid, m in zip(ids, batch) if mid is not None)
            got = list(self._grid.pull_messages(set(pending))) if pending else []
            for reply in got:
                pending.pop(reply.metadata.reply_to_message_id, None)
                replies.append(keep(reply))
            lost, now = self._lost_nodes(), time.monotonic()
            for mid, (node, pushed) in list(pending.items()):
                if node in lost or (timeout is not None and now - pushed >= timeout):
                    del pending[mid]
            if pending and not got:
                time.sleep(self._poll)
        return replies

    def _pull(self, pending: set[str], end: float | None) -> list[Message] | None:
        """The replies Flower pulls for ``pending``; None when ``end`` came first (the pull is left to finish
        in its thread, its replies unused)."""
        if end is None:
            return list(self._grid.pull_messages(pending))
        box: dict = {}

        def pull() -> None:
            try:
                box["replies"] = list(self._grid.pull_messages(set(pending)))
            except BaseException as err:  # noqa: BLE001 (raised again in the round's thread)
                box["error"] = err

        thread = threading.Thread(target=pull, name="reply-pull", daemon=True)
        thread.start()
        thread.join(max(0.0, end - time.monotonic()))
        if "error" in box:
            raise box["error"]
        return box.get("replies")
