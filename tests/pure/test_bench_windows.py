"""The figures deploy-test and the deployment benchmarks judge the limit by."""

import urllib.request

from bench.common import ArrivalLog, over_limit, rate_ratio, window_figures
from sandbox import SandboxServer


def test_window_figures_counts_every_arrival_over_the_limit():
    # 0.0 .. 0.9: ten in one second, at the limit; 0.95 makes eleven in
    # (-0.05, 0.95], and 1.0 finds 0.0 gone but still ten others plus itself.
    times = [n / 10 for n in range(10)] + [0.95, 1.0]
    peak, violations = window_figures(times, limit=10)
    assert peak == 11
    assert violations == 2
    assert over_limit(times, limit=10) == [0.95, 1.0]


def test_window_figures_paced_traffic_never_violates():
    # Just under 10 per second for a minute: at most 10 in any window.
    times = [n * 0.1001 for n in range(600)]
    assert window_figures(times, limit=10) == (10, 0)


def test_window_figures_sliding_not_calendar():
    # Two bursts of 6 straddling a second boundary: 6 per calendar second,
    # 12 in the sliding window that holds both.
    times = [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25]
    peak, violations = window_figures(times, limit=10)
    assert peak == 12
    assert violations == 2


def test_rate_ratio_counts_the_half_open_span():
    times = [0.0, 0.5, 1.0, 1.5, 2.0]
    assert rate_ratio(times, 0.0, 2.0, limit=2) == 1.0  # 4 in 2 s at 2/s
    assert rate_ratio(times, 0.0, 2.0, limit=4) == 0.5
    assert rate_ratio(times, 1.0, 1.0, limit=4) == 0.0


def test_arrival_log_sees_what_the_sandbox_counts():
    with SandboxServer(permits=20, seed=3) as sandbox:
        log = ArrivalLog(sandbox)
        for path in ("jumlahPerizinan", "jumlahPerizinan", "jenisperizinanlist"):
            with urllib.request.urlopen(f"{sandbox.url}/{path}", timeout=5) as answer:
                answer.read()
        # Control endpoints are not API requests: not logged either.
        with urllib.request.urlopen(
            f"{sandbox.root_url}/_sandbox/stats", timeout=5
        ) as answer:
            answer.read()
        stats = sandbox.stats()
    assert len(log.times()) == stats["requests"] == 3
    assert len(log.times("jumlahperizinan")) == 2
    assert log.first("jenisperizinanlist") == log.times()[-1]
    assert window_figures(log.times(), limit=10)[0] == stats["peak_rate"]
