"""Thread-safe statistics of one client (one sync run).

``as_dict()`` is what the Odoo layer stores in its sync log.
"""

import math
import threading

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none")


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

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self._requests = 0
            self._by_class = dict.fromkeys(STATUS_CLASSES, 0)
            self._by_endpoint = {}
            self._retries = 0
            self._latencies_ms = []
            self._rate_limit_wait = 0.0
            self._bytes = 0
            self._pace_lowest = None
            self._slowdowns = 0

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

    def record_wait(self, seconds):
        if seconds > 0:
            with self._lock:
                self._rate_limit_wait += seconds

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
        with self._lock:
            latencies = list(self._latencies_ms)
            data = {
                "requests": self._requests,
                "by_status": dict(self._by_class),
                "by_endpoint": dict(self._by_endpoint),
                "retries": self._retries,
                "rate_limit_wait_s": round(self._rate_limit_wait, 3),
                "bytes_received": self._bytes,
                "pace_lowest": None
                if self._pace_lowest is None
                else round(self._pace_lowest, 3),
                "slowdowns": self._slowdowns,
            }
        p50 = percentile(latencies, 0.50)
        p95 = percentile(latencies, 0.95)
        data["latency_p50_ms"] = None if p50 is None else round(p50, 1)
        data["latency_p95_ms"] = None if p95 is None else round(p95, 1)
        return data

    def __repr__(self):
        return f"ClientStats({self.as_dict()!r})"
