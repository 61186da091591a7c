"""How long Flower 1.41 takes to move one task's messages over an emulated link: the emulated clock's transfer.

    times = exchange_times(profile, down=[600, 9600, 192000], up=[600, 9600, 192000])  # each array's bytes
    times.wait_s     # round start -> the node's next pull (a device's node pulls every 3 s while idle): a mean
    times.wait_after(idle_s)  # the same for a node that went back to pulling idle_s before the round started
    times.down_s     # then -> the node holds the task (pull the message, pull its objects, confirm)
    times.up_s       # reply ready -> the server holds all of it (push the message and its objects; the
                     # server's own pulls of those objects, each retried with Flower's backoff until it is there)
    times.total_s    # what the profile's link adds to a task: the "transfer" of its round end line

A model of what the link emulator shows Flower doing in process mode (launcher.fleet.link between a SuperNode
and the SuperLink), so that virtual mode predicts the round times process mode measures:
- A message travels as objects, in post-order (children first, the message last): per array its bytes in
  chunks of at most 5 MiB and a head, then the records, then the message. Each pull or push of an object is
  one HTTP request (about 0.9 kB up) and its reply; two run at once (Flower's object pull and push pools) and
  share the link's rate while both send (processor sharing, as the emulator's one bucket per way does).
- Down: the node's next pull: a device's SuperNode pulls every NODE_IDLE_PULL s while idle (no bell reaches it
  from another machine; in process mode a client behind a shaped link is not rung either): once it has pushed
  a reply it pulls at once, then after each sleep and empty pull (its cycle). A round's message waits for the
  first of those pulls to reach the SuperLink after it: the emulated clock keeps each node's phase (when it went
  back to pulling) from round to round (simulator.client_app), so the wait is where the round's start falls in
  that node's cycle; a node's first task, whose phase is unknown, waits half a cycle (the mean). Then
  PullMessages (the message and its object tree), the objects, ConfirmMessageReceived.
- Up: PushMessages, then the objects; the server sees the reply message once PushMessages has arrived (it
  polls every 0.1 s: half of that on average), pulls its objects two at a time in the same order, and an
  object not there yet is tried again after 1 s, then 2, 4, ... at most 10 s, each with +-20% jitter, its
  backoff starting afresh for each object. The reply is held when the last object is pulled: the mean over
  JITTER_DRAWS seeded draws of that jitter (a deterministic figure; a real run varies around it).
The node's own work (its SuperNode's, NODE_WORK_S of a core per task, node_work_seconds at its CPU share) is
added beside these by the client's figures (simulator.client_app), half before the task.
Left out: a round's replies pulled one message after another by the server (the first one's backoff delays the
rest).
The Flower constants this copies are pinned by tests/test_flower_internals.py.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

# Flower 1.41 (pinned by tests/test_flower_internals.py)
CHUNK_BYTES = 5_242_880      # flwr.common.constant.FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE
CONCURRENT = 2               # FLWR_PRIVATE_MAX_CONCURRENT_OBJ_PULLS and _PUSHES (at most the host's cores)
INITIAL_BACKOFF = 1.0        # flwr.supercore.constant.PULL_INITIAL_BACKOFF
BACKOFF_CAP = 10.0           # PULL_BACKOFF_CAP
JITTER = 0.2                 # inflatable_utils.pull_objects: delay * (1 + uniform(-0.2, 0.2))
SERVER_POLL = 0.1            # simulator.deadline_grid.POLL_SECONDS: the server's wait between reply pulls
NODE_IDLE_PULL = 3.0         # flwr.supernode.start_client_internal: a node whose pull brought nothing sleeps 3 s

# Bytes on the wire, measured through the link emulator (one HTTP request or reply each)
REQUEST = 900                # an object pull, a confirmation, ... (request line, headers, protobuf)
REPLY = 130                  # an empty reply, or the envelope around an object
CHUNK_HEAD = 147             # an ArrayChunk's head around its bytes
ARRAY_HEAD = 160             # an Array object (dtype, shape, chunk ids)
RECORD_PER_ARRAY = 140       # an ArrayRecord's entry per array
SMALL_OBJECTS = (100, 300, 600)  # the config or metric record, the RecordDict, the message itself
MESSAGE_CALL = 1500          # PullMessages' reply, PushMessages' request: the message head and object tree

JITTER_DRAWS = 32
# A node's own work per task, at a whole core of this machine: its SuperNode pulling, storing and pushing the
# objects and handing the task to its task thread (the task's decoding is its compute). Fitted 2026-12-06 on the
# closed loop (benchmarks.closed_loop, 250 kB model, a built-in client being one process): a device's node whose
# round's message waits for its idle pull starts its tasks one node cycle apart (sleep and empty pull, download,
# node work, task, push), 6.49-6.51 s on the device held to 0.3 core; the cycle less this model's sleep, empty
# pull, download and push and the task's own logged seconds is the node's work at that share: 0.23 s there,
# 0.07 s of a core (three processes per client, before: ~0.25 s).
NODE_WORK_S = 0.07


@dataclass(frozen=True)
class ExchangeTimes:
    down_s: float
    up_s: float
    wait_s: float = 0.0  # before down_s: the round's message waiting for the node's next idle pull (a mean)
    cycle_s: float = 0.0  # an idle node's pull cycle: its sleep and an empty pull there and back
    reach_s: float = 0.0  # a pull's request: sent -> at the SuperLink
    pushed_s: float = 0.0  # reply ready -> the node has pushed it all and pulls again (its first pull at once)

    @property
    def total_s(self) -> float:
        return self.wait_s + self.down_s + self.up_s

    @property
    def before_task_s(self) -> float:
        return self.wait_s + self.down_s

    def wait_after(self, idle_s: float) -> float:
        """The round's message's wait for the node's next pull when the node went back to pulling ``idle_s``
        before the round started: it pulls at once, then every cycle; the message is found by the first pull
        that reaches the SuperLink after it was stored."""
        if not self.cycle_s:
            return self.wait_s
        pulls = max(0, math.ceil((idle_s - self.reach_s) / self.cycle_s - 1e-9))
        return max(0.0, pulls * self.cycle_s - idle_s)

    def at_phase(self, idle_s: float | None) -> ExchangeTimes:
        """These times with the wait of a node whose pull phase is known (``idle_s``; None: the mean)."""
        return self if idle_s is None else replace(self, wait_s=self.wait_after(idle_s))


def message_objects(array_bytes: Sequence[int]) -> list[int]:
    """The sizes of a message's objects in Flower's post-order, from its arrays' byte counts."""
    sizes: list[int] = []
    for nbytes in array_bytes:
        chunks = max(1, -(-nbytes // CHUNK_BYTES))
        for i in range(chunks):
            sizes.append(CHUNK_HEAD + min(CHUNK_BYTES, nbytes - i * CHUNK_BYTES))
        sizes.append(ARRAY_HEAD)
    sizes.append(RECORD_PER_ARRAY * len(array_bytes) + 10)
    return sizes + list(SMALL_OBJECTS)


class _Link:
    """Two ways, each shared fairly by the flows sending on it, each delivering a latency after sending.

    ``send(way, t, nbytes, then)`` calls ``then(arrival)`` when the bytes have arrived; ``run()`` plays it out."""

    def __init__(self, rates: dict[str, float | None], latency: float) -> None:
        self.rates, self.latency = rates, latency
        self.now = 0.0
        self.flows: dict[str, list[list]] = {way: [] for way in rates}  # [bytes left, then]
        self.events: list[tuple[float, int, Callable[[float], None]]] = []
        self._order = 0

    def at(self, t: float, action: Callable[[float], None]) -> None:
        self._order += 1
        heapq.heappush(self.events, (t, self._order, action))

    def send(self, way: str, t: float, nbytes: int, then: Callable[[float], None]) -> None:
        if not self.rates[way]:
            self.at(t + self.latency, then)
        else:
            self.at(t, lambda now: self.flows[way].append([nbytes * 8.0, then]))

    def _next_finish(self) -> tuple[float, str] | None:
        best = None
        for way, flows in self.flows.items():
            if flows:
                t = self.now + min(f[0] for f in flows) * len(flows) / self.rates[way]
                if best is None or t < best[0]:
                    best = (t, way)
        return best

    def _progress(self, until: float) -> None:
        for way, flows in self.flows.items():
            if flows:
                sent = (until - self.now) * self.rates[way] / len(flows)
                for f in flows:
                    f[0] -= sent
        self.now = until

    def run(self) -> None:
        while self.events or any(self.flows.values()):
            finish = self._next_finish()
            if self.events and (finish is None or self.events[0][0] <= finish[0]):
                t, _, action = heapq.heappop(self.events)
                self._progress(max(t, self.now))
                action(self.now)
                continue
            t, way = finish
            first = min(self.flows[way], key=lambda f: f[0])
            self._progress(t)
            # the flow that was due ends even when rounding left it a few bits (at large times t may equal now)
            done = [f for f in self.flows[way] if f is first or f[0] <= 1e-6]
            self.flows[way] = [f for f in self.flows[way] if not (f is first or f[0] <= 1e-6)]
            for _, then in done:
                self.at(t + self.latency, then)


def _workers(link: _Link, start: float, sizes: list[int], one: Callable, finished: Callable[[float], None]) -> None:
    """CONCURRENT workers take the objects in order; ``one(t, size, done)`` moves one, ``finished`` at the end."""
    queue = list(sizes)
    busy = [0]

    def take(t: float) -> None:
        if queue:
            busy[0] += 1
            one(t, queue.pop(0), lambda t_done: (busy.__setitem__(0, busy[0] - 1), take(t_done)))
        elif busy[0] == 0:
            finished(t)

    for _ in range(min(CONCURRENT, len(sizes)) or 1):
        link.at(start, take)


def _download(down: float | None, up: float | None, latency: float, sizes: list[int]) -> float:
    link = _Link({"down": down, "up": up}, latency)
    end = [0.0]

    def confirm(t: float) -> None:
        link.send("up", t, REQUEST, lambda t1: link.send("down", t1, REPLY, lambda t2: end.__setitem__(0, t2)))

    def pull(t: float, size: int, done) -> None:
        link.send("up", t, REQUEST, lambda t1: link.send("down", t1, size + REPLY, done))

    link.send("up", 0.0, REQUEST, lambda t1: link.send(
        "down", t1, MESSAGE_CALL + 70 * len(sizes), lambda t2: _workers(link, t2, sizes, pull, confirm)))
    link.run()
    return end[0]


def _empty_pull(down: float | None, up: float | None, latency: float) -> tuple[float, float]:
    """(request at the SuperLink, reply back at the node) of a PullMessages that brings nothing."""
    link = _Link({"down": down, "up": up}, latency)
    reach, end = [0.0], [0.0]

    def arrived(t1: float) -> None:
        reach[0] = t1
        link.send("down", t1, REPLY, lambda t2: end.__setitem__(0, t2))
    link.send("up", 0.0, REQUEST, arrived)
    link.run()
    return reach[0], end[0]


def _upload_arrivals(up: float | None, down: float | None, latency: float,
                     sizes: list[int]) -> tuple[float, list[float], float]:
    """(when the server sees the message, when each object is at the SuperLink, when the node has pushed them
    all), from the reply's push."""
    link = _Link({"down": down, "up": up}, latency)
    seen, pushed = [0.0], [0.0]
    arrived = [0.0] * len(sizes)
    index = iter(range(len(sizes)))

    def push(t: float, size: int, done) -> None:
        i = next(index)

        def landed(t1: float) -> None:
            arrived[i] = t1
            link.send("down", t1, REPLY, done)
        link.send("up", t, size + REQUEST, landed)

    def pushed_message(t1: float) -> None:
        seen[0] = t1
        link.send("down", t1, REPLY, lambda t2: _workers(link, t2, sizes, push, lambda t: pushed.__setitem__(0, t)))

    link.send("up", 0.0, MESSAGE_CALL + 70 * len(sizes), pushed_message)
    link.run()
    return seen[0], arrived, pushed[0]


def _server_pulls(start: float, arrived: list[float], rng: random.Random) -> float:
    """When the server has pulled every object: two at a time, in order, each retried with Flower's backoff."""
    free = [start] * min(CONCURRENT, len(arrived))
    for at in arrived:
        w = min(range(len(free)), key=free.__getitem__)
        t, delay = free[w], INITIAL_BACKOFF
        while t < at - 1e-9:
            t += delay * (1 + rng.uniform(-JITTER, JITTER))
            delay = min(delay * 2, BACKOFF_CAP)
        free[w] = t
    return max(free)


def node_work_seconds(profile) -> float:
    """NODE_WORK_S as the profile's CPU share takes it (split evenly around the task: receiving, replying)."""
    return NODE_WORK_S / profile.cpu if getattr(profile, "cpu", None) else NODE_WORK_S


def exchange_times(profile, down: Sequence[int], up: Sequence[int], seed: int = 0) -> ExchangeTimes:
    """The model's figures for one task on ``profile``'s link (anything with down, up and latency: bits per
    second or None, one-way seconds); ``down``/``up``: the byte count of each array of the task and reply."""
    latency = float(profile.latency or 0.0)
    if not (profile.down or profile.up or latency):
        return ExchangeTimes(0.0, 0.0)
    down_sizes, up_sizes = message_objects(down), message_objects(up)
    down_s = _download(profile.down, profile.up, latency, down_sizes)
    seen, arrived, pushed = _upload_arrivals(profile.up, profile.down, latency, up_sizes)
    rng = random.Random(seed)
    start = seen + SERVER_POLL / 2
    held = sum(_server_pulls(start, arrived, rng) for _ in range(JITTER_DRAWS)) / JITTER_DRAWS
    reach, empty = _empty_pull(profile.down, profile.up, latency)
    cycle = NODE_IDLE_PULL + empty
    return ExchangeTimes(down_s=down_s, up_s=held, wait_s=cycle / 2, cycle_s=cycle, reach_s=reach, pushed_s=pushed)
