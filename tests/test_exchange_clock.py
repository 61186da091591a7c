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
