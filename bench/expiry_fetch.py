"""expiry_fetch: the second sync step, one ``cekperizinan`` per permit.

A loopback sandbox answers in 300 ms +/- 100 ms; the client may send 10
requests per second. Fetching the details of 500 listed permits therefore
takes at least 500 / 10 = 50 s: the benchmark checks that the client gets
within 95 % of that bound (ratio = bound / measured >= 0.95) while the sandbox
never counts more than 10 arrivals in any 1 s window.

Concurrency: at 10 req/s and up to 400 ms per answer, 4 requests must be in
flight just to keep pace, so the client runs with ``WORKERS = 8`` (rate x worst
latency, doubled for headroom); the rate limiter, not the pool, sets the pace.
"""

import sys
import time

from sandbox import SandboxServer
from tools import SicantikApi

NAME = "expiry_fetch"
PERMITS = 500
RATE_LIMIT = 10
LATENCY = 0.3
JITTER = 0.1
WORKERS = 8
DATASET_PERMITS = 600  # about 96 % are listed, a few have no number
SEED = 1
MIN_RATIO = 0.95


def _items(dataset, count):
    """(key, no_surat, pendaftaran_id) of the first listed permits with a number."""
    items, seen = [], set()
    for permit, _applicant in dataset.rows:
        if permit.pendaftaran_id in seen or not permit.no_surat.strip():
            continue
        seen.add(permit.pendaftaran_id)
        items.append((permit.pendaftaran_id, permit.no_surat, permit.pendaftaran_id))
        if len(items) == count:
            return items
    raise RuntimeError(f"the dataset lists fewer than {count} permits with a number")


def _mismatches(dataset, results):
    """Results that disagree with the dataset (wrong expiry, unexpected error)."""
    wrong = []
    for key, result in results:
        permit = dataset.by_pendaftaran_id[key]
        if not permit.answers_cekperizinan:
            expected_ok = result is None
        else:
            expected_ok = (
                result is not None
                and not isinstance(result, Exception)
                and result.expiry_raw == permit.d_berlaku_izin
            )
        if not expected_ok:
            wrong.append((key, result))
    return wrong


def run():
    """Run once; return (line, ok)."""
    with SandboxServer(permits=DATASET_PERMITS, seed=SEED) as server:
        items = _items(server.dataset, PERMITS)
        server.configure(latency=LATENCY, jitter=JITTER, seed=SEED)
        server.reset_stats()
        with SicantikApi(server.url, rate_limit=RATE_LIMIT, max_workers=WORKERS) as api:
            started = time.monotonic()
            results = list(api.fetch_permit_details(items))
            elapsed = time.monotonic() - started
        stats = server.stats()
        wrong = _mismatches(server.dataset, results)
    bound = PERMITS / RATE_LIMIT
    ratio = bound / elapsed
    # peak_rate: the most arrivals in any 1 s window, not per whole second
    violations = 1 if stats["peak_rate"] > RATE_LIMIT else 0
    line = (
        f"{NAME}: permits={PERMITS} requests={stats['requests']} "
        f"elapsed={elapsed:.2f}s peak_rate={stats['peak_rate']}/s "
        f"limit={RATE_LIMIT} violations={violations} ratio={ratio:.3f}"
    )
    ok = ratio >= MIN_RATIO and not violations
    if len(results) != PERMITS or wrong:
        sys.stderr.write(
            f"{NAME}: {len(results)} results, {len(wrong)} wrong "
            f"(first: {wrong[:3]!r})\n"
        )
        ok = False
    return line, ok
