"""Thread-safe statistics of one client (one sync run).

``as_dict()`` is what the Odoo layer stores in its sync log.
"""

import math
import threading
import time

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none")
# Waits that ended longer ago than this are folded into a total: a later
# wait can no longer overlap them (a limiter gives a request up well before).
WAIT_HORIZON_S = 120.0


def status_class(status):
    """``200`` -> ``"2xx"``; ``None`` (no answer) -> ``"none"``."""
    if status is None:
        return "none"
    label = f"{int(status) // 100}xx"
    return label if label in STATUS_CLASSES else "none"


def percentile(values, fraction):
    """Nearest-rank percentile of ``values`` (``fraction`` in [0, 1]); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class ClientStats:
    """Counters of HTTP attempts, answers, retries, waits and bytes."""

    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.reset()

    def reset(self):
        with self._lock:
            self._clear()

    def _clear(self):
        """Zero every counter (lock held)."""
        self._requests = 0
        self._by_class = dict.fromkeys(STATUS_CLASSES, 0)
        self._by_endpoint = {}
        self._retries = 0
        self._latencies_ms = []
        # Per-request waits summed (threads wait side by side, so this
        # can exceed the run's duration) and the wall-clock time during
        # which at least one request waited: disjoint intervals still
        # open to merging, and the total of those folded before.
        self._wait_sum = 0.0
        self._waits = 0
        self._wait_spans = []
        self._wait_folded = 0.0
        self._wait_folded_until = None
        self._bytes = 0
        self._pace_lowest = None
        self._slowdowns = 0
        self._late_slots = 0

    def record_attempt(self, endpoint, status, latency_s, nbytes=0):
        """One HTTP attempt finished with ``status`` (None: no answer)."""
        with self._lock:
            self._requests += 1
            self._by_class[status_class(status)] += 1
            self._by_endpoint[endpoint] = self._by_endpoint.get(endpoint, 0) + 1
            if status is not None and latency_s is not None:
                self._latencies_ms.append(latency_s * 1000.0)
            self._bytes += nbytes

    def record_retry(self):
        with self._lock:
            self._retries += 1

    def record_wait(self, seconds, end=None):
        """A request waited ``seconds`` for the rate limiter, until ``end``
        (this client's clock; default now)."""
        if seconds <= 0:
            return
        end = self._clock() if end is None else end
        with self._lock:
            self._wait_sum += seconds
            self._waits += 1
            self._add_wait_span(end - seconds, end)

    def _add_wait_span(self, start, end):
        """Merge ``[start, end]`` into the union of waits (lock held)."""
        if self._wait_folded_until is not None:
            # Never count twice what is folded already (a wait longer than
            # the horizon: counted from where the fold ends).
            start = max(start, self._wait_folded_until)
            if end <= start:
                return
        spans = []
        for span_start, span_end in self._wait_spans:
            if span_end < start or span_start > end:
                spans.append((span_start, span_end))
            else:
                start, end = min(start, span_start), max(end, span_end)
        spans.append((start, end))
        spans.sort()
        cutoff = self._clock() - WAIT_HORIZON_S
        while spans and spans[0][1] < cutoff:
            span_start, span_end = spans.pop(0)
            self._wait_folded += span_end - span_start
            self._wait_folded_until = span_end
        self._wait_spans = spans

    def record_late_slot(self, waited):
        """A request's slot was stale at the send (``http_guard.SendGate``):
        dropped, and a new one waited for during ``waited`` seconds."""
        with self._lock:
            self._late_slots += 1
        self.record_wait(waited)

    @property
    def late_slots(self):
        """Requests whose rate-limiter slot was re-taken at the send."""
        return self._late_slots

    @property
    def rate_limit_wait(self):
        """Wall-clock seconds during which at least one request waited."""
        with self._lock:
            return self._wait_folded + sum(e - s for s, e in self._wait_spans)

    def record_pace(self, factor, slowed=False):
        """The limiter's adaptive pace now (fraction of the rate); ``slowed``
        when this client's answer made it go down."""
        with self._lock:
            if self._pace_lowest is None or factor < self._pace_lowest:
                self._pace_lowest = factor
            if slowed:
                self._slowdowns += 1

    @property
    def requests(self):
        return self._requests

    @property
    def retries(self):
        return self._retries

    def as_dict(self):
        """Snapshot: plain types only, safe to serialise to JSON."""
        return self._snapshot(reset=False)

    def take(self):
        """Snapshot and reset in one step: what was counted since the last
        ``take`` (a client that outlives one log write adds each part once,
        while its threads go on counting)."""
        return self._snapshot(reset=True)

    def _snapshot(self, reset):
        with self._lock:
            latencies = list(self._latencies_ms)
            data = {
                "requests": self._requests,
                "by_status": dict(self._by_class),
                "by_endpoint": dict(self._by_endpoint),
                "retries": self._retries,
                "rate_limit_wait_s": round(
                    self._wait_folded + sum(e - s for s, e in self._wait_spans), 3
                ),
                "rate_limit_wait_sum_s": round(self._wait_sum, 3),
                "rate_limit_waits": self._waits,
                "bytes_received": self._bytes,
                "pace_lowest": None
                if self._pace_lowest is None
                else round(self._pace_lowest, 3),
                "slowdowns": self._slowdowns,
                "late_slots": self._late_slots,
            }
            if reset:
                self._clear()
        p50 = percentile(latencies, 0.50)
        p95 = percentile(latencies, 0.95)
        data["latency_p50_ms"] = None if p50 is None else round(p50, 1)
        data["latency_p95_ms"] = None if p95 is None else round(p95, 1)
        return data

    def __repr__(self):
        return f"ClientStats({self.as_dict()!r})"
