"""The built-in ServerApp: FedAvg rounds, a final evaluation, or serving a saved model.

    flwr run RUN/app CONNECTION --run-config "run-dir='/abs/RUN'"

``task = "train"`` runs ``rounds`` rounds of the run's strategy (FedAvg unless told) from the seeded model, then has
every client evaluate the final model. ``getModel`` and ``inference`` send the
checkpoint named by ``checkpoint`` (under ``run-dir``) to every client in one query message.
Everything worth reading goes to ``<run-dir>/server/server.log``; it ends with
``[run] finished`` only when the run did what was asked: every round aggregated,
every client served. Otherwise ``[run] failed: <reason>`` (simulator.round_outcome).
With ``round-deadline``, ``overcommit`` or a fleet (``<run-dir>/fleet.json``, contract.fleet_record) the rounds
follow simulator.fleet_rounds: offline clients are not sampled, late replies are stragglers, and a round
with too few replies by the deadline is failed while the run goes on.
"""

from __future__ import annotations

import random
import traceback
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from contract.fleet_record import read_fleet_json
from contract.loglines import LogWriter
from contract.lost_nodes import read_lost
from contract.run_layout import client_dir_name
from contract.run_settings import RunSettings
from contract.wakeups import SERVER_PUSHED, wake_all
from simulator.deadline_grid import DeadlineGrid
from simulator.fleet_rounds import FleetRounds
from simulator.model import model_for
from simulator.round_outcome import Missing, RunNotDone, not_aggregated_reason
from simulator.simulation_nodes import index_messages_by_node
from simulator.strategy import logged_strategy, pooled_accuracy, pooled_counts, test_counts, wait_for_nodes
from simulator.wire import pack

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_config(context.run_config)
    torch.set_num_threads(max(1, settings.torch_threads))
    log = LogWriter(Path(settings.run_dir) / "server" / "server.log", "FLServer")
    # a fleet (RUN/fleet.json), a deadline, over-commit: on the emulated clock under the simulation runtime
    fleet = read_fleet_json(settings.run_dir)
    rounds = FleetRounds(settings, fleet, virtual=settings.virtual)
    index_messages_by_node(grid)  # the simulation runtime: a node's messages found without scanning all
    # SuperNodes on this host hear a push at once by their bells; virtual nodes have none to ring, and a node
    # behind an emulated link stands for a device, which no bell reaches: it pulls as Flower's does (every 3 s)
    remote = {client_dir_name(c) for c in range(fleet.num_clients) if fleet.profile_of(c).shapes_link} if fleet else ()
    wake = (lambda: None) if settings.virtual else (lambda: wake_all(settings.run_dir, "supernode", SERVER_PUSHED,
                                                                     skip=remote))
    grid = DeadlineGrid(grid, lost_nodes=lambda: read_lost(settings.run_dir), after_push=wake)
    try:
        if settings.task == "train":
            _train(grid, settings, log, rounds)
        else:
            _serve_model(grid, settings, log)
        log.write("run_finished")
    except RunNotDone as err:  # an outcome, not a bug: its text is the whole reason
        log.write("run_failed", reason=str(err))
        raise
    except BaseException as err:
        log.text(traceback.format_exc().rstrip().replace("\n", "\n    "), level="ERROR")
        log.write("run_failed", reason=f"{type(err).__name__}: {err}".splitlines()[0] or "unknown")
        raise
    finally:
        log.close()


def _train(grid: Grid, settings: RunSettings, log: LogWriter, rounds: FleetRounds) -> None:
    random.seed(settings.seed + settings.start_round)
    if settings.start_round > 1:  # resumed: continue from the last completed round's checkpoint
        arrays = pack(torch.load(settings.checkpoint_file(), map_location="cpu", weights_only=True))
    else:
        arrays = pack(model_for(settings, seed=settings.seed).state_dict())
    log.write("server_waiting", clients=settings.num_clients)
    if settings.start_round > settings.rounds:  # resumed after its last round: only the final evaluation is left
        final, skipped = arrays, []
        nodes = wait_for_nodes(grid, settings.num_clients, settings.run_dir)  # every client, as round 1 waits
    else:
        final, skipped = _rounds(grid, settings, log, rounds, arrays)
        nodes = wait_for_nodes(grid, 1, settings.run_dir)
    log.write("final_start", clients=len(nodes))
    counts = _to_all(grid, final, MessageType.EVALUATE, ConfigRecord({"server-round": settings.rounds}), settings,
                     nodes, keep=test_counts)  # two numbers a client kept, not its reply
    acc, tested = pooled_counts(counts)
    log.write("server_final", acc=acc, num_test=tested, replies=len([c for c in counts if c is not None]))
    if skipped:  # the rounds went on without them, but the run did not do what was asked
        raise RunNotDone(not_aggregated_reason(skipped))


def _rounds(grid: Grid, settings: RunSettings, log: LogWriter, rounds: FleetRounds, arrays):
    """The rounds from ``start_round`` on: (the final model, the rounds skipped)."""
    strategy = logged_strategy(settings, log, rounds)
    result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        num_rounds=settings.rounds - settings.start_round + 1,
        timeout=settings.round_timeout,
        evaluate_fn=strategy.checkpoint,
    )
    if not strategy.replied_rounds or not strategy.aggregated:  # nothing was learnt, nothing to evaluate
        raise RunNotDone(_nothing_learnt(strategy, settings))
    return (result.arrays if len(result.arrays) else arrays), strategy.skipped


def _nothing_learnt(strategy, settings: RunSettings) -> str:
    """Why a run none of whose rounds was aggregated failed: the rounds and their causes, in one line."""
    rounds = settings.rounds - settings.start_round + 1
    if strategy.replied_rounds and len(strategy.failed) == rounds:  # every round failed at its deadline
        return (f"no round was aggregated: each of the {rounds} rounds failed at its "
                f"{settings.round_deadline:g} s deadline")
    why = not_aggregated_reason({**strategy.failed, **strategy.skipped})
    head = "no client replied in any round" if not strategy.replied_rounds else "no round was aggregated"
    return head + (f": {why}" if why else "")


def _serve_model(grid: Grid, settings: RunSettings, log: LogWriter) -> None:
    path = settings.checkpoint_file()  # its name keeps the round: served/round_NNNN.pt
    model_round = int(path.stem.split("_")[-1]) if path.stem.startswith("round_") else 0
    arrays = pack(torch.load(path, map_location="cpu", weights_only=True))
    log.write("server_waiting", clients=settings.num_clients)
    config = ConfigRecord({"task": settings.task, "model-round": model_round})
    node_ids = wait_for_nodes(grid, settings.num_clients, settings.run_dir)
    replies = _to_all(grid, arrays, MessageType.QUERY, config, settings, node_ids)
    ok = [m for m in replies if not m.has_error()]
    log.write("served", task=settings.task, round=model_round, replies=len(ok), clients=settings.num_clients)
    if settings.task == "inference":
        acc, tested = pooled_accuracy(ok)
        log.write("server_final", acc=acc, num_test=tested, replies=len(ok))
    if len(ok) < settings.num_clients:
        missing = Missing.of(node_ids, replies, read_lost(settings.run_dir), settings.round_timeout)
        raise RunNotDone(f"{settings.task}: served the round {model_round} model to {len(ok)} of "
                         f"{settings.num_clients} clients: {missing.describe() or 'too few clients connected'}")


def _to_all(grid, arrays, message_type, config, settings, node_ids: list[int], keep=lambda reply: reply) -> list:
    """One message to each of ``node_ids``; what ``keep`` takes of each reply that came within the round timeout.

    With ``clients_per_round`` at most that many await replies at once (the next goes as a reply comes), so
    the model copies in flight follow the round's size, not the number of clients.
    """
    messages = (Message(RecordDict({"arrays": arrays, "config": config}), message_type=message_type, dst_node_id=node)
                for node in node_ids)
    window = settings.clients_per_round or len(node_ids) or 1
    return grid.send_in_window(messages, window=window, timeout=settings.round_timeout, keep=keep)
