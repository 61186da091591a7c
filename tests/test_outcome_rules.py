"""The end-of-run rules (launcher.run.outcome): events, liveness and the clock in, an outcome out. No processes."""

from pathlib import Path

import pytest

from contract.loglines import Event
from launcher.run.outcome import Limits, Progress, Seen, decide, stopping
from launcher.run.run_status import RunStatus

RUN = Path("/runs/r1")
LIMITS = Limits(startup_timeout=60.0, round_timeout=100.0, user_app=False, run_dir=RUN)
LIVE = Seen(stop_reason=None, folder_gone=False, flwr_run_alive=True, superlink_alive=True)
ENDED = Seen(stop_reason=None, folder_gone=False, flwr_run_alive=False, superlink_alive=True)


def progress(**kw) -> Progress:
    return Progress(**{"rounds": 3, "rounds_done": 0, "clients": 2, "task": "train", "started": 1000.0, **kw})


def event(kind: str, **values) -> Event:
    return Event("FLServer", kind, values)


def never_asked():
    raise AssertionError("Flower's record was asked while `flwr run` lives")


def test_a_live_run_within_its_limits_goes_on():
    assert decide(progress(), LIVE, LIMITS, 1059.0, never_asked) is None


def test_a_signal_wins_over_everything_else():
    seen = Seen(stop_reason="SIGTERM", folder_gone=True, flwr_run_alive=False, superlink_alive=False)
    assert decide(progress(), seen, LIMITS, 1000.0, never_asked) == (RunStatus.INTERRUPTED, "stopped by SIGTERM")


def test_a_removed_run_folder_fails_the_run_before_flowers_record_is_asked():
    seen = Seen(stop_reason=None, folder_gone=True, flwr_run_alive=False, superlink_alive=True)
    assert decide(progress(), seen, LIMITS, 1000.0, never_asked) == (
        RunStatus.FAILED, f"the run folder {RUN} was removed while the run went on")


def test_the_superlink_gone_fails_the_run():
    seen = Seen(stop_reason=None, folder_gone=False, flwr_run_alive=True, superlink_alive=False)
    assert decide(progress(), seen, LIMITS, 1000.0, never_asked) == (RunStatus.FAILED, "the SuperLink exited")


def test_round_one_not_started_by_the_startup_timeout_fails_the_run():
    p = progress(alive=1)
    assert decide(p, LIVE, LIMITS, 1060.0, never_asked) is None
    assert decide(p, LIVE, LIMITS, 1060.5, never_asked) == (
        RunStatus.FAILED, "round 1 did not start within 60 s: 1 of 2 clients alive")


def test_silence_past_the_round_timeout_and_a_minute_fails_a_started_run():
    p = progress()
    p.take(event("server_round_start", round=1), now=1010.0)
    assert decide(p, LIVE, LIMITS, 1010.0 + 160.0, never_asked) is None  # the startup limit no longer applies
    assert decide(p, LIVE, LIMITS, 1010.0 + 161.0, never_asked) == (
        RunStatus.FAILED, "no progress for 161 s (round timeout 100 s)")


@pytest.mark.parametrize("said, flower, expected", [
    ([event("run_finished")], (RunStatus.FINISHED, ""), (RunStatus.FINISHED, "")),
    ([event("run_finished")], (RunStatus.FAILED, "flwr says no"), (RunStatus.FAILED, "flwr says no")),
    ([event("run_failed", reason="round 2 not aggregated")], (RunStatus.FINISHED, ""),
     (RunStatus.FAILED, "round 2 not aggregated")),  # the app's own reason says more
    ([], (RunStatus.FINISHED, ""),
     (RunStatus.FAILED, f"the Flower run ended without a result (see {RUN / 'server'})")),
    ([], (RunStatus.FAILED, "the ServerApp raised"), (RunStatus.FAILED, "the ServerApp raised")),
])
def test_the_built_in_apps_end_is_its_run_line_checked_against_flowers_record(said, flower, expected):
    p = progress()
    for e in said:
        p.take(e, now=1001.0)
    assert decide(p, ENDED, LIMITS, 1002.0, lambda: flower) == expected


@pytest.mark.parametrize("flower", [(RunStatus.FINISHED, ""), (RunStatus.FAILED, "exit code 1")])
def test_a_user_apps_end_is_flowers_record_alone(flower):
    p = progress()
    p.take(event("run_failed", reason="never written by a user's app"), now=1001.0)
    limits = Limits(60.0, 100.0, user_app=True, run_dir=RUN)
    assert decide(p, ENDED, limits, 1002.0, lambda: flower) == flower


def test_rounds_done_counts_aggregated_rounds_without_a_gap():
    p = progress(rounds_done=1)  # resumed after round 1
    began = [p.take(event("server_round_start", round=2), 1.0), p.take(event("server_round_start", round=3), 2.0)]
    assert began == [True, False]  # the first round of an attempt marks it running, once
    for rnd, aggregated in [(2, False), (3, True)]:
        p.take(event("server_round_end", round=rnd, acc=0.5, aggregated=aggregated), 3.0)
    assert p.rounds_done == 1 and p.acc == 0.5 and p.round == 3
    p.take(event("server_round_end", round=2, acc=0.6, aggregated=True), 4.0)
    assert p.rounds_done == 2


def test_a_resumed_run_with_only_the_final_evaluation_left_is_running_at_once():
    p = progress(rounds_done=3)
    assert p.take(event("final_start"), 1.0) is True
    assert (p.round, p.phase) == (3, "final evaluation")


def test_serving_runs_are_running_at_their_first_serve_but_training_ignores_serves():
    serving, training = progress(task="getModel"), progress()
    assert serving.take(event("served"), 1.0) and serving.phase == "serving"
    assert not training.take(event("served"), 1.0) and training.phase == "starting"


def test_a_user_apps_rounds_come_from_flowers_strategy_log():
    p = progress()
    assert p.app_round(1, 5, now=1100.0) is True and p.app_round(2, 5, now=1200.0) is False
    assert (p.round, p.rounds, p.phase, p.last_progress) == (2, 5, "training", 1200.0)


def test_a_stop_has_begun_on_a_signal_the_runs_own_end_a_removed_folder_or_flwr_run_gone():
    assert not stopping(progress(), LIVE)
    assert stopping(progress(said=(RunStatus.FINISHED, "")), LIVE)
    assert stopping(progress(), ENDED)
    assert stopping(progress(), Seen("SIGINT", False, True, True))
    assert stopping(progress(), Seen(None, True, True, True))
    assert not stopping(progress(), Seen(None, False, True, False))  # the SuperLink gone: a failure, not a stop
