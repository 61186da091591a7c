"""A round's stragglers, over-commit and availability: who is sampled, whose reply is taken, the run's clock.

    rounds = FleetRounds(settings, read_fleet_json(settings.run_dir), virtual=True)
    rounds.active                                 # False: a run exactly as without a fleet
    online, offline = rounds.split(known_partitions, server_round=3)
    k, size = rounds.sizes(len(online))           # K clients per round, ceil(K x overcommit) sampled
    cut = rounds.cut(replies, partition_of, sent_partitions, k, grid_cut=None)
    cut.taken, cut.stragglers, cut.emulated_s     # replies aggregated, partitions discarded, round's emulated time

Two clocks. Process mode (one process per client, the launcher enforces each profile): the run's clock is
real seconds since its first round; a deadline and over-commit cut the replies as they arrive (the
grid stops pulling: simulator.deadline_grid), so the first K to arrive are taken. Virtual mode (Flower's
simulation runtime; every task runs at full speed, nothing waits): each reply carries its emulated duration
(metric "emulated-s": compute / cpu share + bytes over the profile's link + 2 latencies, computed by the
client); the K replies with the smallest, within the deadline, are taken, and the round lasts the K-th
smallest (the deadline when fewer than K are within it). The emulated clock advances by each round's time;
trace profiles are read at that clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Message

from contract.fleet_record import Fleet
from contract.run_settings import RunSettings

EMULATED_METRIC = "emulated-s"


def emulated_of(reply: Message) -> float:
    metrics = reply.content["metrics"] if "metrics" in reply.content else {}
    return float(metrics.get(EMULATED_METRIC, 0.0))


@dataclass
class Cut:
    taken: list[Message]
    stragglers: list[int]  # partition ids whose reply was discarded (or not waited for)
    emulated_s: float
    why: dict[int, str] = field(default_factory=dict)  # partition -> why its reply was discarded


class FleetRounds:
    def __init__(self, settings: RunSettings, fleet: Fleet | None, virtual: bool) -> None:
        self.settings = settings
        self.fleet = fleet
        self.virtual = virtual
        self.deadline = settings.round_deadline if settings.round_deadline > 0 else 0.0
        self.overcommit = max(1.0, settings.overcommit)
        self.active = fleet is not None or self.deadline > 0 or self.overcommit > 1.0
        self.emulated_clock = 0.0
        self._started: float | None = None  # process mode: when the first round was sampled

    def clock(self) -> float:
        """The run's clock in seconds from its first round: emulated in virtual mode, real otherwise (so a
        trace means the same in both modes, whatever the start-up took)."""
        if self.virtual:
            return self.emulated_clock
        if self._started is None:
            self._started = time.monotonic()
        return time.monotonic() - self._started

    def split(self, partitions: Iterable[int], server_round: int) -> tuple[list[int], list[int]]:
        """(online, offline) partitions in this round: by availability (seeded) or trace (at the run's clock)."""
        partitions = sorted(set(partitions))
        if self.fleet is None:
            return partitions, []
        now = self.clock()
        seed = self.settings.seed
        online = [p for p in partitions
                  if p >= self.fleet.num_clients
                  or (self.fleet.online(p, server_round, seed) and self.fleet.online_at(p, now))]
        chosen = set(online)
        return online, [p for p in partitions if p not in chosen]

    def sizes(self, online: int) -> tuple[int, int]:
        """(K, how many to sample): K = clients per round (every online client when 0), over-committed."""
        k = min(self.settings.clients_per_round or online, online)
        return k, min(online, math.ceil(k * self.overcommit - 1e-9))

    def needed(self, k: int) -> int:
        """Good replies a round needs: min_clients; 0 means K, or 1 under a deadline (it closes with what it has)."""
        if self.settings.min_clients:
            return self.settings.min_clients
        return 1 if self.deadline else k

    def cut(self, valid: list[Message], partition_of: dict[int, int], sent: list[int], k: int,
            grid_cut: str | None, lost: set[int] = frozenset()) -> Cut:
        """Which of the round's good replies are taken; ``sent``: the node ids the round went to."""
        def part(node: int) -> int:
            return partition_of.get(node, -1)

        durations = {id(m): emulated_of(m) for m in valid}
        why: dict[int, str] = {}
        if self.virtual:
            ordered = sorted(valid, key=lambda m: (durations[id(m)], part(m.metadata.src_node_id)))
            within = [m for m in ordered if not self.deadline or durations[id(m)] <= self.deadline]
            taken = within[:k]
            for m in ordered:
                if m not in taken:
                    d = durations[id(m)]
                    why[part(m.metadata.src_node_id)] = (
                        f"emulated {d:.3f} s is over the {self.deadline:g} s deadline"
                        if self.deadline and d > self.deadline else f"emulated {d:.3f} s, after the first {k} replies")
        else:
            taken = valid[:k]
            for m in valid[k:]:
                why[part(m.metadata.src_node_id)] = f"replied after the first {k} replies"
            if grid_cut:
                replied = {m.metadata.src_node_id for m in valid}
                for node in sent:
                    if node not in replied and node not in lost:
                        why[part(node)] = ("no reply by the deadline" if grid_cut == "deadline"
                                           else f"no reply among the first {k}")
        ordered_durations = sorted(durations.values())
        within_count = sum(1 for d in ordered_durations if not self.deadline or d <= self.deadline)
        if self.deadline and within_count < k:
            emulated = self.deadline
        elif len(ordered_durations) >= k > 0:
            emulated = ordered_durations[k - 1]
        else:
            emulated = ordered_durations[-1] if ordered_durations else 0.0
        return Cut(taken=taken, stragglers=sorted(why), emulated_s=emulated, why=why)

    def advance(self, emulated_s: float) -> None:
        self.emulated_clock += emulated_s
