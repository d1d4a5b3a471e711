"""Peak request rates: sliding 1 s windows against whole calendar seconds.

Timestamps are fed straight to the counters (and to ``Stats`` through its
clock), so nothing here sleeps or depends on the machine's speed.
"""

import socket
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.common import ArrivalLog
from sandbox import SandboxServer
from sandbox.stats import RateWindow, SecondBuckets, Stats, UnorderedWindow

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


@given(
    st.lists(st.floats(min_value=0, max_value=4, allow_nan=False), max_size=60),
    st.randoms(use_true_random=False),
)
def test_unordered_window_finds_the_sorted_peak(times, rng):
    """Stamps read by several threads come slightly out of order; the peak
    is the one of the sorted times, whatever the order they came in."""
    window = UnorderedWindow(1.0, keep=5.0)
    shuffled = list(times)
    rng.shuffle(shuffled)
    for t in shuffled:
        window.add(t)
    assert window.peak == peaks(sorted(times))[0]


def test_stats_count_the_arrival_stamp_not_the_handling_time():
    """A request stamped on arrival but handled late counts at its arrival."""
    clock = iter([10.0, 10.5, 11.2, 11.3])
    stats = Stats(clock=lambda: next(clock))
    assert stats.arrive("cekperizinan", at=9.95) == (9.95, 10.0)  # both stamps
    stats.arrive("cekperizinan", at=10.45)
    stats.arrive("cekperizinan", at=10.96)  # within 1 s of the first arrival
    snapshot = stats.snapshot()
    assert snapshot["peak_rate"] == 2  # 9.95, 10.45 | 10.45, 10.96
    assert snapshot["peak_rate_handled"] == 2  # 10.0, 10.5 | 10.5, 11.2
    stats.arrive("cekperizinan", at=11.2 - 0.3)  # late-read, earlier stamp
    assert stats.snapshot()["peak_rate"] == 3  # 10.45 .. 10.96 with 10.9


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS")
def test_the_sandbox_counts_when_the_bytes_arrived_not_when_it_got_to_them():
    """The sandbox stands for a remote server: a request its own busy thread
    handles late still counts at the kernel's receive time."""
    with SandboxServer(permits=5) as server:
        log = ArrivalLog(server)
        conn = socket.create_connection(("127.0.0.1", server.port))
        try:
            with server._stats._lock:  # the handler cannot count it meanwhile
                before = time.monotonic()
                conn.sendall(b"GET /backoffice/api/jenisperizinanlist HTTP/1.1\r\n\r\n")
                after = time.monotonic()
                time.sleep(0.3)  # the late handling under test
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        finally:
            conn.close()
    ((arrival, endpoint, handled),) = log.arrivals
    assert endpoint == "jenisperizinanlist"
    assert before - 0.002 <= arrival <= after + 0.002  # clock conversion: µs
    assert handled - arrival >= 0.29
