"""The emulated clock's model of Flower's object exchange (simulator.exchange_clock), on cases worked by hand.

The model's constants are pinned against Flower by tests/test_flower_internals.py; whether it predicts what
process mode measures is benchmarks/fleet_emulation.py's process-vs-virtual row and tests/test_fleet_process.py.
"""

from __future__ import annotations

import pytest

from contract.fleet_record import Profile
from simulator import exchange_clock
from simulator.exchange_clock import exchange_times, message_objects


def test_a_message_is_its_chunks_heads_and_records_in_post_order():
    sizes = message_objects([1000, 12_000_000])
    chunk = exchange_clock.CHUNK_BYTES
    head = exchange_clock.CHUNK_HEAD
    # 1000 B: one chunk and its array; 12 MB: three chunks (5 MiB, 5 MiB, the rest) and its array
    assert sizes[:6] == [head + 1000, exchange_clock.ARRAY_HEAD, head + chunk, head + chunk,
                         head + 12_000_000 - 2 * chunk, exchange_clock.ARRAY_HEAD]
    assert len(sizes) == 6 + 1 + 3  # the ArrayRecord, the other record, the RecordDict, the message


def test_no_link_adds_nothing():
    assert exchange_times(Profile("none"), [10**6], [10**6]).total_s == 0.0


def test_latency_alone_counts_round_trips_and_one_backoff():
    """100 ms one way, no rate limit, one small array: 6 objects each way.
    Down: PullMessages (1 round trip), 6 object pulls two at a time (3), the confirmation (1): 5 x 0.2 s.
    Up: the server sees the reply at 0.1 s (+0.05, half its poll); the first two objects land at 0.3 s (the
    push starts after PushMessages' reply at 0.2), so both first tries fail and each is tried again after
    1 s +-20%; the other four have landed (0.5, 0.7 s) by then. Held at 0.15 + E[max of two U(0.8, 1.2)]
    = 0.15 + 1.0667 s."""
    times = exchange_times(Profile("lat", latency=0.1), [1000], [1000])
    assert times.down_s == pytest.approx(1.0, abs=1e-6)
    assert times.up_s == pytest.approx(0.15 + 0.8 + 0.4 * 2 / 3, abs=0.04)


def test_rate_alone_is_the_bytes_and_the_backoff_step_the_upload_ends_in(monkeypatch):
    """8 Mbit/s each way, no latency, one 1 MB array. Down: the bytes (and ~1% of requests and heads).
    Up without jitter: the server tries the big chunk at ~0.05 s (half its poll), again at 1.05 s: it landed
    at ~1.01 s, so the reply is held at 1.05 s; at 4 Mbit/s it lands at ~2.01 s, after the 1.05 s try, and
    the next try is 2 s later: 3.05 s."""
    monkeypatch.setattr(exchange_clock, "JITTER", 0.0)
    fast = exchange_times(Profile("fast", down=8e6, up=8e6), [10**6], [10**6])
    assert 1.0 <= fast.down_s <= 1.02
    assert fast.up_s == pytest.approx(1.05, abs=0.005)
    slow = exchange_times(Profile("slow", down=4e6, up=4e6), [10**6], [10**6])
    assert 2.0 <= slow.down_s <= 2.04
    assert slow.up_s == pytest.approx(3.05, abs=0.005)


def test_two_objects_at_once_share_the_rate():
    """Two 500 kB arrays at 4 Mbit/s down: pulled at once, each at half the rate: 2 s together, not 1 s."""
    times = exchange_times(Profile("two", down=4e6), [500_000, 500_000], [10])
    assert 2.0 <= times.down_s <= 2.05


def test_slower_links_never_predict_faster_exchanges():
    last = 0.0
    for up in (8e6, 4e6, 2e6, 1e6, 0.5e6, 0.25e6):
        total = exchange_times(Profile("p", down=8e6, up=up, latency=0.02), [247_312], [247_312]).total_s
        assert total >= last
        last = total


def test_a_model_of_gigabytes_ends():
    """Large transfers at a fast rate: a due flow ends even when float rounding leaves it a few bits.
    2 GB at 1 Gbit/s is 16 s of bytes; its 382 chunks of 5 MiB, pulled two at a time, each wait a 40 ms round
    trip for their request: at most 191 x 0.04 s more."""
    times = exchange_times(Profile("big", down=1e9, up=1e9, latency=0.02), [2_000_000_000], [2_000_000_000])
    assert 16.0 <= times.down_s <= 16.0 + 191 * 0.04 + 0.5 and times.up_s >= 16.0


def test_a_devices_node_waits_half_an_idle_cycle_for_the_rounds_message():
    """A device's SuperNode pulls every 3 s while idle (no bell reaches it): the round's message waits half of
    that cycle, the sleep and an empty pull's exchange (here a 100 ms round trip), on average."""
    times = exchange_times(Profile("lat", latency=0.05), [1000], [1000])
    assert 0.5 * (3.0 + 0.1) <= times.wait_s <= 0.5 * (3.0 + 0.1) + 0.01
    assert times.total_s == times.wait_s + times.down_s + times.up_s
    assert exchange_times(Profile("none"), [1000], [1000]).wait_s == 0.0  # no link: a node on this host, rung


def test_a_node_whose_pull_phase_is_known_waits_for_its_next_pull():
    """A node pulls at once when its reply is pushed, then every cycle (3 s and an empty pull: 3.1 s at 50 ms
    one way); a pull finds the round's message when it reaches the SuperLink (50 ms after it is sent) after the
    message was stored. By hand, with the node gone back to pulling idle_s before the round started."""
    times = exchange_times(Profile("lat", latency=0.05), [1000], [1000])
    assert times.cycle_s == pytest.approx(3.1, abs=0.005) and times.reach_s == pytest.approx(0.05, abs=0.001)
    assert times.wait_after(0.02) == 0.0  # its first pull reaches the SuperLink after the message
    assert times.wait_after(1.0) == pytest.approx(2.1, abs=0.005)  # the pull after the first sleep
    assert times.wait_after(3.0) == pytest.approx(0.1, abs=0.005)
    assert times.wait_after(3.2) == pytest.approx(3.0, abs=0.005)  # that pull reached it at 3.15 s: the next
    assert times.wait_after(-0.4) == pytest.approx(0.4)  # still pushing a late reply: it pulls once done
    # over a phase spread evenly across the cycle, the mean is the half cycle a first task waits
    phases = [i * times.cycle_s / 1000 for i in range(1000)]
    assert sum(map(times.wait_after, phases)) / 1000 == pytest.approx(times.wait_s, abs=0.06)
    assert times.at_phase(None) == times and times.at_phase(1.0).wait_s == times.wait_after(1.0)


def test_a_node_pulls_again_once_its_reply_is_pushed():
    """100 ms one way, one small array: PushMessages there and back (0.2 s), then 6 objects pushed two at a
    time, each there and back (3 x 0.2 s): the node pulls again at 0.8 s, before the server holds the reply
    (its pull backoff: ~1.2 s)."""
    times = exchange_times(Profile("lat", latency=0.1), [1000], [1000])
    assert times.pushed_s == pytest.approx(0.8, abs=1e-6) and times.up_s > times.pushed_s + 0.2


def test_the_emulated_clock_carries_each_nodes_pull_phase_to_its_next_round():
    """A virtual client's figures (simulator.client_app) on one device node, two rounds: its first task waits half
    a cycle; the node goes back to pulling when its reply is pushed (before the server holds it, which ends the
    round), so its next round's message, stored when the round starts, waits the rest of that node's cycle."""
    from flwr.app import RecordDict

    from contract.fleet_record import Fleet
    from simulator.client_app import _fleet_figures

    profile = Profile("dev", range(0, 1), cpu=0.5, latency=0.05)
    fleet = Fleet.of("fleet.toml", 1, (profile,))
    times = exchange_times(profile, [1000], [1000])
    node = exchange_clock.node_work_seconds(profile)
    state = RecordDict()

    def task(now: float) -> dict:
        return _fleet_figures(fleet, 0, {"fleet-clock": "emulated", "fleet-time": now}, seconds=9.0,
                              cpu_seconds=1.0, began=0.0, recv=(1000,), sent=(1000,), node_state=state)

    first = task(0.0)
    assert first["compute_s"] == 2.0 and first["download_s"] == pytest.approx(times.wait_s + times.down_s + node / 2)
    pulls_again = first["download_s"] + node / 2 + 2.0 + times.pushed_s
    second = task(first["emulated_s"])  # the round lasted this client's time
    idle = first["emulated_s"] - pulls_again
    assert idle == pytest.approx(times.up_s - times.pushed_s) and idle > times.reach_s
    assert second["download_s"] - first["download_s"] == pytest.approx((times.cycle_s - idle) - times.wait_s)
    later = task(first["emulated_s"] + second["emulated_s"] + 10.0)  # a round without it: still in phase
    idle = second["emulated_s"] + 10.0 - (second["download_s"] + node / 2 + 2.0 + times.pushed_s)
    assert later["download_s"] == pytest.approx(times.down_s + node / 2 + times.cycle_s * 4 - idle)
    # process mode (the real clock) logs the model's mean beside the real times
    real = _fleet_figures(fleet, 0, {"fleet-clock": "real", "fleet-time": 30.0}, seconds=2.0, cpu_seconds=1.0,
                          began=0.0, recv=(1000,), sent=(1000,), node_state=state)
    assert real["download_s"] == pytest.approx(times.wait_s + times.down_s + node / 2)
