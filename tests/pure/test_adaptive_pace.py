"""Adaptive pace (AIMD): the arithmetic, the signals, and a throttling server."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox import KNOB_DEFAULTS, SandboxServer
from tools.adaptive_pace import AdaptivePace, CongestionSignal, PaceRule
from tools.rate_limiter import RateLimiter
from tools.sicantik_api import SicantikApi


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_multiplicative_decrease_once_per_event_then_additive_increase():
    clock = Clock()
    pace = AdaptivePace(PaceRule(), clock=clock)
    assert pace.factor() == 1.0
    assert pace.feedback(429, 0.1) is True
    # The answers still in flight during the hold belong to the same event.
    clock.now += 1.0
    assert pace.feedback(429, 0.1) is False
    assert pace.feedback(503, 0.1) is False
    assert pace.factor() == pytest.approx(0.5)
    clock.now += 1.0 + 4.0  # end of the 2 s hold, then 4 s of recovery
    assert pace.factor() == pytest.approx(0.5 + 4 * 0.05)
    assert pace.feedback(429, 0.1) is True
    assert pace.factor() == pytest.approx(0.35)
    assert (pace.slowdowns, pace.lowest) == (2, pytest.approx(0.35))
    clock.now += 2.0 + 100.0
    assert pace.factor() == 1.0  # never above the configured rate


def test_the_pace_never_goes_below_its_floor():
    clock = Clock()
    pace = AdaptivePace(PaceRule(floor=0.2), clock=clock)
    for _ in range(10):
        pace.feedback(429, None)
        clock.now += 2.0
    assert pace.factor() == pytest.approx(0.2)


@pytest.mark.parametrize("status", [200, 404, 500, None])
def test_other_answers_are_no_congestion(status):
    assert CongestionSignal().observe(status, 0.05) is False


def test_a_latency_that_keeps_climbing_is_congestion_jitter_is_not():
    signal = CongestionSignal()
    steady = [0.30, 0.32, 0.28, 0.31, 0.29, 0.33, 0.27] * 10
    assert not any(signal.observe(200, x) for x in steady)
    climbing = [0.3 + 0.1 * i for i in range(1, 20)]
    flags = [signal.observe(200, x) for x in climbing]
    assert any(flags)
    assert not any(flags[:3])  # one slow answer is not a trend


def test_a_lasting_new_latency_becomes_the_usual_level():
    signal = CongestionSignal()
    for _ in range(10):
        signal.observe(200, 0.05)
    flags = [signal.observe(200, 1.0) for _ in range(600)]
    assert any(flags[:50])
    assert not any(flags[-50:])


@pytest.fixture(scope="module")
def server():
    with SandboxServer(permits=50, seed=3) as srv:
        yield srv


def run(server, adaptive, threads=4, each=20):
    """``threads`` callers sharing one client (as the expiry sync's workers
    do) against a server that throttles at half the rate we were told;
    returns (429s the server sent, requests completed, client stats)."""
    server.configure(**dict(KNOB_DEFAULTS, throttle_above_rps=20, retry_after=1))
    server.reset_stats()
    limiter = RateLimiter.for_server_limit(40, adaptive=adaptive)
    with SicantikApi(
        server.url, limiter=limiter, timeout=(2, 5), max_retries=20, max_workers=4
    ) as api:

        def work(_):
            for _ in range(each):
                api.count_permit_types()
            return each

        with ThreadPoolExecutor(threads) as pool:
            done = sum(pool.map(work, range(threads)))
        stats = api.stats.as_dict()
    return server.stats()["by_status"].get(429, 0), done, stats


def test_adaptive_pace_gets_fewer_429s_than_a_fixed_pace_same_completion(server):
    fixed_429, fixed_done, fixed = run(server, adaptive=False)
    adaptive_429, adaptive_done, adaptive = run(server, adaptive=True)
    assert fixed_done == adaptive_done == 80
    # Fixed: the other callers keep going at the full pace while one waits
    # out its Retry-After, so the window stays over 20 (measured: 12).
    assert fixed["slowdowns"] == 0
    assert fixed_429 >= 6
    # Adaptive: the first 429 halves the pace of every caller (measured: 5).
    assert adaptive_429 < fixed_429
    assert adaptive["slowdowns"] >= 1
    assert adaptive["pace_lowest"] <= 0.5
