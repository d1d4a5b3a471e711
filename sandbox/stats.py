"""Request counters shared by the handler threads."""

import bisect
import math
import threading
import time
from collections import deque
from typing import NamedTuple


class RateWindow:
    """Largest number of events inside any half-open window [t, t + width).

    Only the events of the last ``width`` seconds are kept, so memory stays
    bounded whatever the traffic. Times must be added in increasing order.
    """

    def __init__(self, width=1.0):
        self.width = width
        self.peak = 0
        self._times = deque()

    def add(self, t):
        """Record an event at ``t``; return how many fall in (t - width, t]."""
        times = self._times
        edge = t - self.width
        while times and times[0] <= edge:
            times.popleft()
        times.append(t)
        if len(times) > self.peak:
            self.peak = len(times)
        return len(times)

    def clear(self):
        self._times.clear()
        self.peak = 0


class UnorderedWindow:
    """:class:`RateWindow` for times that may come slightly out of order.

    Kernel receive stamps are read by several handler threads, so they reach
    the counter in the order the threads ran, not the order the bytes came.
    Times are kept sorted for ``keep`` seconds behind the latest one; a time
    older than that is still counted in :attr:`peak` only as far as the
    kept times allow.
    """

    def __init__(self, width=1.0, keep=5.0):
        self.width = width
        self.keep = max(keep, 2 * width)
        self.peak = 0
        self._times = []

    def add(self, t):
        """Record ``t``; return the most events in a window holding it."""
        times = self._times
        bisect.insort(times, t)
        edge = times[-1] - self.keep
        if times[0] < edge:
            del times[: bisect.bisect_left(times, edge)]
        # The windows (end - width, end] holding t, as RateWindow counts
        # them, end at an event from t on, less than width after it.
        most = 0
        j = bisect.bisect_left(times, t)
        while j < len(times) and times[j] - self.width < t:
            end = times[j]
            count = bisect.bisect_right(times, end) - bisect.bisect_right(
                times, end - self.width
            )
            most = max(most, count)
            j += 1
        self.peak = max(self.peak, most)
        return most

    def clear(self):
        self._times.clear()
        self.peak = 0


class SecondBuckets:
    """Largest number of events inside one whole second [n, n + 1) of the clock.

    The figure a per-second counter gives: it can miss a burst that straddles
    a second boundary, which :class:`RateWindow` catches. Times must be added
    in increasing order.
    """

    def __init__(self):
        self.peak = 0
        self._second = None
        self._count = 0

    def add(self, t):
        """Record an event at ``t``; return how many its second holds so far."""
        second = math.floor(t)
        if second != self._second:
            self._second, self._count = second, 0
        self._count += 1
        if self._count > self.peak:
            self.peak = self._count
        return self._count

    def clear(self):
        self._second = None
        self._count = 0
        self.peak = 0


class Arrival(NamedTuple):
    """When a request arrived (the kernel's stamp) and was counted."""

    at: float
    handled: float


class Stats:
    """Thread-safe API request statistics (control endpoints never count).

    ``peak_rate`` is the most arrivals in any 1 s window (sliding), the
    figure to hold against a "N requests per second" limit. An arrival is
    the kernel's receive time of the request when the handler passes it
    (``wire.py``), so the figure counts what reached the machine, not when
    a busy sandbox got round to it; ``peak_rate_handled`` is the same
    figure on the handlers' own stamps. ``peak_rate_calendar`` counts per
    whole second of the clock only, so for the same traffic it can be as
    low as half the sliding figure.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._window = UnorderedWindow(1.0)
        self._handled = RateWindow(1.0)
        self._seconds = SecondBuckets()
        self._in_flight = 0
        self._reset()

    def _reset(self):
        self._requests = 0
        self._by_endpoint = {}
        self._by_status = {}
        self._by_fault = {}
        self._window.clear()
        self._handled.clear()
        self._seconds.clear()
        self._peak_concurrency = self._in_flight
        self._first = self._last = None

    def reset(self):
        # In-flight requests survive a reset: they still leave later.
        with self._lock:
            self._reset()

    def arrive(self, endpoint, at=None):
        """Count an API request that arrived at ``at`` (the kernel's stamp,
        on this clock; default: now); returns its :class:`Arrival`."""
        with self._lock:
            # The clock read under the lock: the handled stamps come in order.
            now = self._clock()
            at = now if at is None else min(at, now)
            self._requests += 1
            self._by_endpoint[endpoint] = self._by_endpoint.get(endpoint, 0) + 1
            self._window.add(at)
            self._handled.add(now)
            self._seconds.add(now)
            self._in_flight += 1
            self._peak_concurrency = max(self._peak_concurrency, self._in_flight)
            self._first = at if self._first is None else min(self._first, at)
            self._last = at if self._last is None else max(self._last, at)
            return Arrival(at, now)

    def leave(self):
        with self._lock:
            self._in_flight -= 1

    def answered(self, status):
        with self._lock:
            self._by_status[status] = self._by_status.get(status, 0) + 1

    def faulted(self, fault):
        key = str(fault)
        with self._lock:
            self._by_fault[key] = self._by_fault.get(key, 0) + 1

    def snapshot(self):
        with self._lock:
            return {
                "requests": self._requests,
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "by_fault": dict(self._by_fault),
                "peak_rate": self._window.peak,
                "peak_rate_handled": self._handled.peak,
                "peak_rate_calendar": self._seconds.peak,
                "peak_concurrency": self._peak_concurrency,
                "in_flight": self._in_flight,
                "first_request_at": self._first,
                "last_request_at": self._last,
            }
