"""Peak request rates: sliding 1 s windows against whole calendar seconds.

Timestamps are fed straight to the counters (and to ``Stats`` through its
clock), so nothing here sleeps or depends on the machine's speed.
"""

import pytest

from sandbox.stats import RateWindow, SecondBuckets, Stats

# 10 arrivals in the second half of second 0, 10 in the first half of second
# 1: every whole second holds 10, the interval [0.5, 1.5) holds all 20.
STRADDLING = [0.5 + 0.05 * i for i in range(10)] + [1.0 + 0.05 * i for i in range(10)]


def peaks(times):
    window, seconds = RateWindow(1.0), SecondBuckets()
    for t in times:
        window.add(t)
        seconds.add(t)
    return window.peak, seconds.peak


def test_burst_across_a_second_boundary():
    assert peaks(STRADDLING) == (20, 10)


def test_even_pace_gives_the_same_figure_both_ways():
    eight_per_second = [i / 8 for i in range(40)]  # exact in binary
    assert peaks(eight_per_second) == (8, 8)


@pytest.mark.parametrize(
    ("times", "sliding", "calendar"),
    [
        ([], 0, 0),
        ([3.2], 1, 1),
        ([0.0, 1.0, 2.0], 1, 1),  # windows are half-open: 1.0 is not in [0, 1)
        ([0.0, 0.999, 1.998], 2, 2),
        ([0.9, 1.1], 2, 1),
        ([0.0, 0.2, 0.4, 5.0, 5.1], 3, 3),  # an old burst is not forgotten
    ],
)
def test_peaks(times, sliding, calendar):
    assert peaks(times) == (sliding, calendar)


def test_sliding_peak_is_never_below_the_calendar_one():
    times = sorted((i * 7919 % 1000) / 137 for i in range(400))
    sliding, calendar = peaks(times)
    assert calendar <= sliding <= 2 * calendar


def test_stats_report_both_peaks_and_reset_them():
    clock = iter(STRADDLING)
    stats = Stats(clock=lambda: next(clock))
    for _ in STRADDLING:
        stats.arrive("cekperizinan")
        stats.leave()
    snapshot = stats.snapshot()
    assert snapshot["requests"] == 20
    assert snapshot["peak_rate"] == 20
    assert snapshot["peak_rate_calendar"] == 10
    stats.reset()
    assert stats.snapshot()["peak_rate"] == stats.snapshot()["peak_rate_calendar"] == 0


def test_second_buckets_clear():
    seconds = SecondBuckets()
    assert [seconds.add(t) for t in (0.1, 0.2, 1.5)] == [1, 2, 1]
    seconds.clear()
    assert seconds.peak == 0 and seconds.add(1.6) == 1  # a new second after clear
