"""Flower's strategies where a round is one train message, logged through contract.loglines.

    strategy = logged_strategy(settings, server_log)      # settings.strategy: "fedavg", "fedprox", ...
    strategy.start(grid=grid, initial_arrays=arrays, num_rounds=settings.rounds,
                       timeout=settings.round_timeout, evaluate_fn=strategy.checkpoint)

Flower's FedAvg, FedProx, FedAdam, FedYogi or FedAdagrad does the aggregation
(the run settings carry their knobs); ``RoundRunner``, mixed in before it, picks
the round's clients by partition id with ``clients_per_round``
(simulator.sampling), else every connected client takes part. It turns off the
separate evaluate phase (clients evaluate the received model inside the train
message, as MindSpore does), refuses to aggregate a round with fewer than
``min_clients`` replies (``skipped`` keeps why), checkpoints every aggregated round (and marks
each round failed at its deadline) and logs each round's numbers. A round whose aggregate is NaN or infinite ends the
run (simulator.round_outcome.RunNotDone) before anything checkpoints it.

With a fleet (RUN/fleet.json), ``round_deadline`` or ``overcommit`` the round follows
simulator.fleet_rounds: offline clients are left out of the draw (RUN/server/fleet_round.json tells
the launcher who they are), ceil(K x overcommit) are sampled, the first K good replies (or, in
virtual mode, the K smallest emulated durations) within the deadline are aggregated, the others are
stragglers; a round short of ``min_clients`` at the deadline fails and the run goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvg, FedProx, FedYogi

from contract.fleet_record import FleetRound, round_acknowledged, write_fleet_round
from contract.loglines import LogWriter, client_log_path
from contract.lost_nodes import read_lost, read_lost_clients, read_renewals
from contract.run_layout import client_dir_name
from contract.run_settings import STRATEGY_NAMES, RunSettings, checkpoint_path, failed_round_path
from simulator.fleet_rounds import Cut, FleetRounds
from simulator.model import model_for
from simulator.round_outcome import Missing, RunNotDone, is_finite
from simulator.sampling import ChosenNodes, NodeDirectory, choose_partitions
from simulator.wire import unpack


def test_counts(msg: Message) -> tuple[int, int] | None:
    """(correct, tested) of one reply's test split; None for an error reply."""
    if msg.has_error():
        return None
    metrics = msg.content["metrics"] if "metrics" in msg.content else {}
    return int(metrics.get("eval-correct", 0)), int(metrics.get("eval-total", 0))


def pooled_counts(counts: Iterable[tuple[int, int] | None]) -> tuple[float, int]:
    """Accuracy over the union of the test splits that ``counts`` (test_counts of each reply) describe."""
    correct = total = 0
    for count in counts:
        if count is not None:
            correct, total = correct + count[0], total + count[1]
    return (correct / total if total else float("nan")), total


def pooled_accuracy(replies: Iterable[Message]) -> tuple[float, int]:
    """Accuracy over the union of the replying clients' test splits."""
    return pooled_counts(map(test_counts, replies))


RENEWAL_WAIT_S = 120.0  # the most a round waits for a client restarting as it asked (its memory grew)


def wait_for_nodes(grid: Grid, count: int, run_dir: str, poll: float = 0.2) -> list[int]:
    """The connected nodes not known to be lost or away, once there are at least ``count`` less the clients
    lost for good before they ever connected, and the clients whose node left to be restarted (its memory grew)
    are connected again, for up to RENEWAL_WAIT_S: a round does not go on without them (contract.lost_nodes)."""
    deadline = time.monotonic() + RENEWAL_WAIT_S
    while True:
        renewals, gone = read_renewals(run_dir), read_lost_clients(run_dir)
        skip = read_lost(run_dir) | renewals.nodes
        nodes = [n for n in grid.get_node_ids() if n not in skip]
        renewing = renewals.pending - gone
        if len(nodes) >= max(1, count - len(gone)) and (not renewing or time.monotonic() > deadline):
            return nodes
        time.sleep(poll)


LINK_SWITCH_SECONDS = 3.0  # process mode: the most a round waits for the launcher's links to switch


def _wait_for_links(run_dir, server_round: int) -> None:
    """Until the launcher says its links follow this round (cut or restored), or LINK_SWITCH_SECONDS."""
    deadline = time.monotonic() + LINK_SWITCH_SECONDS
    while not round_acknowledged(run_dir, server_round) and time.monotonic() < deadline:
        time.sleep(0.02)
STRATEGIES = dict(zip(STRATEGY_NAMES, (FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad)))


def strategy_knobs(settings: RunSettings) -> dict:
    """The keyword arguments of the run's strategy beyond FedAvg's (Flower's defaults where unset)."""
    name = settings.strategy
    if name == "fedprox":
        return {"proximal_mu": settings.proximal_mu}
    knobs: dict = {}
    if name in ("fedadam", "fedyogi", "fedadagrad"):
        knobs = {"eta_l": settings.lr, "tau": settings.tau}
        if settings.server_lr:
            knobs["eta"] = settings.server_lr
    if name in ("fedadam", "fedyogi"):
        knobs.update(beta_1=settings.beta_1, beta_2=settings.beta_2)
    return knobs


def logged_strategy(settings: RunSettings, log: LogWriter, rounds: FleetRounds | None = None) -> "RoundRunner":
    base = STRATEGIES[settings.strategy]
    return type(f"Logged{base.__name__}", (RoundRunner, base), {})(settings, log, rounds)


class RoundRunner:
    """Mixed in before one of Flower's strategies (see logged_strategy): runs each round of the built-in app:
    samples its clients, applies its deadline and over-commit, switches the fleet's links, checkpoints the model
    and writes the round's log lines."""

    def __init__(self, settings: RunSettings, log: LogWriter, rounds: FleetRounds | None = None) -> None:
        super().__init__(
            fraction_train=1.0,  # every node of the grid it is given: see configure_train
            fraction_evaluate=0.0,
            min_train_nodes=1,
            min_available_nodes=settings.num_clients,
            **strategy_knobs(settings),
        )
        self.settings = settings
        self.log = log
        self._template = model_for(settings).state_dict()
        self.offset = settings.start_round - 1  # Flower counts from 1; a resumed run does not
        self._sent: list[int] = []  # this round's nodes
        self._round_start = 0.0
        self._round_wall: float | None = None  # process mode under a fleet: the round's start the clients get
        self.replied_rounds = 0  # rounds with at least one good reply
        self.aggregated: set[int] = set()  # rounds (counted as the run counts them) whose model was updated
        self.skipped: dict[int, str] = {}  # round -> why it was not aggregated
        self.failed: dict[int, str] = {}  # round -> why it failed at its deadline
        self.directory = NodeDirectory()
        # a fleet, a deadline or over-commit (simulator.fleet_rounds); inactive: every line as without them
        self.rounds = rounds or FleetRounds(settings, None, virtual=False)
        self._k = 0  # replies this round aggregates
        self._offline = 0
        self._grid = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.offset
        # Flower sizes the sample from the nodes connected *before* it waits for min_available_nodes:
        # wait here first, so round 1 samples from every client.
        available = wait_for_nodes(grid, self.min_available_nodes, self.settings.run_dir)
        # Round 1 waits for every client; later rounds go on with those connected.
        self.min_available_nodes = 1
        if self.rounds.active or self.settings.clients_per_round:
            # which client each node is, asked before the round's clock starts: in process mode one query message a
            # node, and a node behind an emulated link answers at its next idle pull (up to 3 s): not the round's
            self.directory.learn(grid, available, timeout=self.settings.round_timeout)
        self._round_start = time.perf_counter()
        chosen, nodes = None, available
        if self.rounds.active:
            chosen, nodes = self._sample_fleet(grid, available, server_round, config)
        elif self.settings.clients_per_round:
            known = [self.directory.partition_of[n] for n in available if n in self.directory.partition_of]
            chosen = choose_partitions(known, self.settings.clients_per_round, self.settings.seed, server_round)
            nodes = self.directory.nodes_for(chosen, among=available)
        # Flower lists the grid's nodes twice (to size the sample, then to draw it): a node joining between
        # the two would make it draw a random subset. It gets this round's nodes as one fixed list.
        lost = read_lost(self.settings.run_dir)
        # No node (every client offline): Flower's sampler would wait for one forever; the round has no message.
        messages = [m for m in super().configure_train(server_round, arrays, config, ChosenNodes(grid, nodes))
                    if m.metadata.dst_node_id not in lost] if nodes else []
        self._sent = [m.metadata.dst_node_id for m in messages]
        self.log.write("server_round_start", round=server_round, rounds=self.settings.rounds, sampled=len(self._sent))
        if chosen is not None:
            self.log.write("server_sampled", round=server_round, partitions=chosen)
        if self.rounds.active and not self.rounds.virtual and hasattr(grid, "expect"):
            # process mode: the grid stops at the first K good replies, or at the deadline
            grid.expect(enough=min(self._k, len(self._sent)) or None, deadline=self.rounds.deadline or None)
        self._grid = grid
        return messages

    def _sample_fleet(self, grid: Grid, available: list[int], server_round: int, config: ConfigRecord):
        """(partitions, node ids) of a round under a fleet, a deadline or over-commit: the online clients,
        ceil(K x overcommit) of them; the launcher learns who is offline (contract.fleet_record's round file).
        Each node's client is known already (configure_train asked before the round's clock started)."""
        rounds = self.rounds
        known = [self.directory.partition_of[n] for n in available if n in self.directory.partition_of]
        online, offline = rounds.split(known, server_round)
        self._offline = len(offline)
        if rounds.fleet is not None:  # which clients, for fl-stats --by profile
            self.log.write("server_offline", round=server_round, partitions=offline)
        if rounds.fleet is not None:
            clock = rounds.clock()  # the launcher sets a schedule's link for this round at the same clock
            write_fleet_round(self.settings.run_dir, FleetRound(round=server_round, clock=clock,
                                                                offline=tuple(offline)))
            if not rounds.virtual and any(p.needs_link for p in rounds.fleet.profiles):
                _wait_for_links(self.settings.run_dir, server_round)
            config["fleet-clock"] = "emulated" if rounds.virtual else "real"
            config["fleet-time"] = clock  # the run's clock at the round's start: a schedule's link
            config["round-start"] = self._round_wall = time.time()
        self._k, size = rounds.sizes(len(online))
        chosen = choose_partitions(online, size, self.settings.seed, server_round)
        return chosen, self.directory.nodes_for(chosen, among=available)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.offset
        replies = list(replies)
        valid = [m for m in replies if not m.has_error()]
        self.replied_rounds += bool(valid)
        sampled = len(self._sent)
        needed = self.settings.min_clients or sampled
        cut = None
        if self.rounds.active:
            lost = read_lost(self.settings.run_dir)
            cut = self.rounds.cut(valid, self.directory.partition_of, self._sent, self._k,
                                  getattr(self._grid, "cut", None), lost)
            failures = sampled - len(cut.taken) - len(cut.stragglers)  # no good reply, and none cut
            valid, needed = cut.taken, self.rounds.needed(self._k)
        arrays = metrics = None
        if valid and len(valid) >= needed:
            arrays, metrics = super().aggregate_train(server_round, valid)
        acc, tested = pooled_accuracy(valid)
        weights = [int(m.content["metrics"]["num-examples"]) for m in valid]
        losses = [float(m.content["metrics"]["train-loss"]) for m in valid]
        loss = sum(w * x for w, x in zip(weights, losses)) / sum(weights) if valid else math.nan
        model_finite = arrays is None or is_finite(arrays)
        finite = arrays is None or (model_finite and math.isfinite(loss))
        seconds = time.perf_counter() - self._round_start
        self.log.write(
            "server_round_end", round=server_round, rounds=self.settings.rounds,
            replies=len(valid), failures=sampled - len(valid) if cut is None else failures,
            aggregated=arrays is not None and finite,
            acc=acc, num_test=tested, loss=loss, seconds=seconds,
        )
        if cut is not None:
            self._log_replies(server_round, replies)
            self._log_cut(server_round, cut, sampled, seconds)
        if not finite:  # the global model would be NaN from here on: nothing later can repair it
            what = "the aggregated model" if not model_finite else "the train loss"
            why = f"{what} became non-finite (NaN or infinite; train loss {loss}); it was not checkpointed"
            self.log.write("round_not_aggregated", level="ERROR", round=server_round, reason=why)
            raise RunNotDone(f"round {server_round}: {why}")
        if arrays is None and cut is not None and self.rounds.deadline:
            why = self.failed[server_round] = (f"{len(valid)} of {sampled} replies within "
                                               f"{self.rounds.deadline:g} s, {needed} needed")
            self.log.write("round_failed", level="WARNING", round=server_round, reason=why)
        elif arrays is None:
            missing = Missing.of(self._sent, replies, read_lost(self.settings.run_dir), self.settings.round_timeout)
            causes = missing.describe() or f"only {sampled} clients took part"
            why = self.skipped[server_round] = f"{len(valid)} of {sampled} replies, {needed} needed: {causes}"
            self.log.write("round_not_aggregated", level="WARNING", round=server_round, reason=why)
        else:
            self.aggregated.add(server_round)
        return arrays, metrics

    def _log_replies(self, server_round: int, replies: list[Message]) -> None:
        """Process mode under a fleet: when the server held each client's reply, from the round's start (the
        time the clients' waiting counts from): a client's real round time, its upload and backoff included."""
        arrivals = getattr(self._grid, "arrivals", None)
        if self.rounds.virtual or self.rounds.fleet is None or self._round_wall is None or not arrivals:
            return
        for reply in replies:
            node = reply.metadata.src_node_id
            partition = self.directory.partition_of.get(node)
            if partition is not None and node in arrivals:
                self.log.write("server_reply", round=server_round, client=partition,
                               seconds=arrivals[node] - self._round_wall)

    def _log_cut(self, server_round: int, cut: Cut, sampled: int, seconds: float) -> None:
        """The round's clock line; in virtual mode each straggler's own log says its reply was discarded."""
        self.rounds.advance(cut.emulated_s)
        self.log.write("server_round_clock", round=server_round, emulated_s=cut.emulated_s, seconds=seconds,
                       deadline_s=self.rounds.deadline, sampled=sampled, replies=len(cut.taken),
                       offline=self._offline, stragglers=cut.stragglers)
        if not self.rounds.virtual:
            return  # a process-mode client does not learn it (it may still be training)
        for partition, why in cut.why.items():
            if partition < 0:
                continue
            log = LogWriter(client_log_path(Path(self.settings.run_dir) / client_dir_name(partition)), "FLClient")
            log.write("client_straggler", level="WARNING", round=server_round, reason=why)
            log.close()

    def checkpoint(self, server_round: int, arrays: ArrayRecord) -> None:
        """evaluate_fn hook: Flower calls it with the global model after every round.

        Only a round that was aggregated has a checkpoint; one that failed at its deadline is done all the same
        (the run went on with the model as it was) and gets a mark instead (failed_round_path): resume
        (resume_checkpoint) goes on after both, and starts at the first round with neither."""
        if server_round == 0 and self.offset:
            return None  # a resumed run's starting model is the checkpoint it resumed from
        server_round += self.offset
        if server_round in self.failed:
            mark = failed_round_path(self.settings.run_dir, server_round)
            mark.parent.mkdir(exist_ok=True)
            mark.write_text(self.failed[server_round] + "\n")
            checkpoint_path(self.settings.run_dir, server_round).unlink(missing_ok=True)  # an earlier attempt's
            return None
        if server_round and server_round not in self.aggregated:
            return None
        path = checkpoint_path(self.settings.run_dir, server_round)
        path.parent.mkdir(exist_ok=True)  # never the run folder itself: one removed under the run stays removed
        tmp = path.with_suffix(".tmp")
        torch.save(unpack(arrays, self._template), tmp)
        tmp.replace(path)
        failed_round_path(self.settings.run_dir, server_round).unlink(missing_ok=True)  # an earlier attempt's
        self.log.write("checkpoint", round=server_round, path=str(path.relative_to(self.settings.run_dir)))
        return None


class LoggedFedAvg(RoundRunner, FedAvg):
    """The default: FedAvg, logged."""
