"""The rate-limit wait of a run is wall-clock time, not a sum over threads."""

import threading

import pytest

from tools.stats import WAIT_HORIZON_S, ClientStats


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_overlapping_waits_count_once():
    clock = Clock()
    stats = ClientStats(clock=clock)
    # Four threads wait side by side from t=0 to t=1 (ends 0.7 .. 1.0).
    for end, seconds in ((1000.7, 0.7), (1000.8, 0.8), (1000.9, 0.9), (1001, 1.0)):
        stats.record_wait(seconds, end=end)
    data = stats.as_dict()
    assert data["rate_limit_wait_s"] == pytest.approx(1.0)
    assert data["rate_limit_wait_sum_s"] == pytest.approx(3.4)
    assert data["rate_limit_waits"] == 4


def test_disjoint_waits_add_up_and_gaps_do_not_count():
    clock = Clock()
    stats = ClientStats(clock=clock)
    stats.record_wait(0.5, end=1000.5)
    stats.record_wait(0.25, end=1002.0)  # 1001.75 .. 1002
    stats.record_wait(0.5, end=1001.9)  # bridges into the previous one
    assert stats.as_dict()["rate_limit_wait_s"] == pytest.approx(0.5 + 0.6)


def test_the_wait_never_exceeds_the_elapsed_time_with_many_threads():
    stats = ClientStats()
    barrier = threading.Barrier(8)

    def wait():
        barrier.wait()
        for _ in range(50):
            stats.record_wait(0.01)

    threads = [threading.Thread(target=wait) for _ in range(8)]
    start = stats._clock()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = stats._clock() - start
    data = stats.as_dict()
    assert data["rate_limit_waits"] == 400
    assert data["rate_limit_wait_sum_s"] == pytest.approx(4.0)
    # Every wait is said to end "now": the union spans at most the run,
    # plus the first wait reaching back before it started.
    assert data["rate_limit_wait_s"] <= elapsed + 0.01 + 1e-9


def test_old_waits_are_folded_but_still_counted():
    clock = Clock()
    stats = ClientStats(clock=clock)
    for step in range(1000):
        clock.now = 1000.0 + step
        stats.record_wait(0.25)
    assert len(stats._wait_spans) <= WAIT_HORIZON_S + 2
    assert stats.as_dict()["rate_limit_wait_s"] == pytest.approx(250.0)
    # A very long wait reaching back into the folded time is counted only
    # from where the fold ends: never twice.
    stats.record_wait(1000.0)
    assert stats.as_dict()["rate_limit_wait_s"] <= 1000.0 + 1e-6


def test_reset_clears_waits():
    stats = ClientStats()
    stats.record_wait(1.0)
    stats.reset()
    data = stats.as_dict()
    assert data["rate_limit_wait_s"] == 0
    assert data["rate_limit_waits"] == 0
