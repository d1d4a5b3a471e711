"""Token bucket limiter: fake clock for exact pacing, real threads for safety."""

import sys
import threading
import time

import pytest

from tools.const import RATE_SAFETY_MARGIN
from tools.rate_limiter import RateLimiter


class FakeClock:
    """A clock that only moves when somebody sleeps (thread-safe)."""

    def __init__(self, start=1000.0, *, yielding=False):
        self._now = start
        self._lock = threading.Lock()
        self.sleeps = []
        self.yielding = yielding

    def __call__(self):
        if self.yielding:
            time.sleep(0)  # a thread switch here exposes unguarded state
        with self._lock:
            return self._now

    def sleep(self, seconds):
        assert seconds > 0, "the limiter never sleeps for nothing"
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds
        time.sleep(0.0002)  # really let other threads run, as a sleep would

    def advance(self, seconds):
        with self._lock:
            self._now += seconds


def make(rate, burst=1, **clock_options):
    clock = FakeClock(**clock_options)
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_rate_is_held_from_the_first_token():
    limiter, clock = make(10)
    start = clock()
    releases = []
    for _ in range(21):
        limiter.acquire()
        releases.append(clock())
    gaps = [b - a for a, b in zip(releases, releases[1:], strict=False)]
    assert releases[0] == start  # a full bucket: no wait for the first one
    assert min(gaps) == pytest.approx(0.1)
    assert clock() - start == pytest.approx(2.0)
    assert limiter.released == 21


def test_acquire_returns_the_seconds_waited():
    limiter, clock = make(4)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.25)
    clock.advance(0.1)
    assert limiter.acquire() == pytest.approx(0.15)


def test_idle_time_refills_up_to_the_burst_only():
    limiter, clock = make(10, burst=3)
    for _ in range(3):
        limiter.acquire()
    clock.advance(60)  # a long idle period still gives only 3 tokens
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)
    assert waits[4] == pytest.approx(0.1)


def test_burst_one_spaces_requests_even_after_idle():
    limiter, clock = make(10)
    limiter.acquire()
    clock.advance(5)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.1)


def test_try_acquire_does_not_wait():
    limiter, clock = make(2)
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False
    clock.advance(0.5)
    assert limiter.try_acquire() is True
    assert clock.sleeps == []


@pytest.fixture
def eager_thread_switches():
    """Switch threads as often as the interpreter allows: accounting must hold."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_real_threads_fake_clock_no_token_is_handed_out_twice(eager_thread_switches):
    rate, threads, each = 20.0, 8, 50
    limiter, clock = make(rate, yielding=True)
    start = clock()
    counts = [0] * threads
    barrier = threading.Barrier(threads)

    def worker(i):
        barrier.wait()
        for _ in range(each):
            limiter.acquire()
            counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    total = threads * each
    assert counts == [each] * threads
    assert limiter.released == total
    # The clock only moves by the limiter's own sleeps: exactly one interval per
    # token after the first. A race handing out a token twice would make this
    # shorter; a waiter sleeping in parallel would make it longer.
    assert clock() - start == pytest.approx((total - 1) / rate)


def test_real_threads_real_clock_never_exceed_the_rate():
    rate, threads, each = 50.0, 4, 10
    limiter = RateLimiter(rate)
    started = time.monotonic()
    stamps = []
    lock = threading.Lock()

    def worker():
        for _ in range(each):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    total = threads * each
    assert len(stamps) == total
    # Count-based: 40 tokens at 50/s need at least 39 intervals.
    assert max(stamps) - started >= (total - 1) / rate - 0.005


def test_server_limit_margin():
    limiter = RateLimiter.for_server_limit(10)
    assert limiter.rate == pytest.approx(10 * (1 - RATE_SAFETY_MARGIN))
    assert 0 < RATE_SAFETY_MARGIN <= 0.04  # keeps throughput >= 96 %
    assert RateLimiter.for_server_limit(10, margin=0).rate == 10
    with pytest.raises(ValueError):
        RateLimiter.for_server_limit(10, margin=1)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (5, 0)])
def test_invalid_settings(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


# --------------------------------------------------------------------------
# The sliding-window guarantee: at most `limit` releases in ANY 1 s window
# --------------------------------------------------------------------------


def max_in_window(times, width=1.0):
    """The most events inside one half-open window [t, t + width)."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= width - 1e-9:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_server_limit_holds_in_every_sliding_window_after_idle_periods():
    clock = FakeClock()
    limiter = RateLimiter.for_server_limit(10, clock=clock, sleep=clock.sleep)
    releases = []
    rng = __import__("random").Random(7)
    for _ in range(400):
        # Idle periods of every length, the case where a bigger bucket would
        # let a burst through on top of the paced releases.
        if rng.random() < 0.2:
            clock.advance(rng.choice([0.01, 0.05, 0.3, 0.9, 1.0, 2.5]))
        limiter.acquire()
        releases.append(clock())
    assert max_in_window(releases) <= 10


def test_a_burst_above_one_would_break_the_window_so_it_is_refused():
    clock = FakeClock()
    limiter = RateLimiter(
        10 * (1 - RATE_SAFETY_MARGIN), 3, clock=clock, sleep=clock.sleep
    )
    clock.advance(5)  # idle: the bucket is full
    releases = []
    for _ in range(12):
        limiter.acquire()
        releases.append(clock())
    assert max_in_window(releases) == 12  # 3 back to back + 9 paced: over 10
    with pytest.raises(ValueError):
        RateLimiter.for_server_limit(10, burst=3)


def test_an_adaptive_pace_slows_the_bucket_down_and_recovers():
    clock = FakeClock()
    limiter = RateLimiter.for_server_limit(10, margin=0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(0.1)
    assert limiter.feedback(429, 0.05) is True
    assert limiter.pace_factor() == pytest.approx(0.5)
    assert limiter.acquire() == pytest.approx(0.2)  # 5 req/s now
    clock.advance(2.0 + 10.0)  # the hold, then 10 s of additive increase
    assert limiter.pace_factor() == pytest.approx(1.0)
    assert limiter.feedback(200, 0.05) is False
    assert RateLimiter.for_server_limit(10, adaptive=False).feedback(429, 0) is False
