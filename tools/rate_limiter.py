"""A thread-safe token bucket that paces requests to the SICANTIK server.

Tokens refill continuously at ``rate`` per second up to ``burst``; every request
takes one. With the default ``burst=1`` the bucket is a minimum spacing of
``1 / rate`` seconds between two releases.

Spacing is measured on *actual* release times: a waiting thread sleeps, then
re-reads the clock and only leaves when a whole token is there. A thread that
wakes up late therefore pushes the following releases back instead of letting
them catch up, so late wake-ups never bring two releases closer than
``1 / rate``. Waiters queue on a turnstile lock, so only one thread at a time
sleeps for the next token (no thundering herd, no token handed out twice).

A release is a send time (slot) for the thread that took it. The request
leaves later: the connection may still have to be opened (DNS, TCP, TLS), the
thread may run late. :meth:`RateLimiter.confirm`, called by the HTTP layer
right before the request's first byte is written (``http_guard.SendGate``),
drops a slot older than ``const.LATE_SLOT_TOLERANCE_S`` and waits for a new
one, so a request never leaves more than that tolerance after its release.
What is left between the send and the arrival (network, the server's own
scheduling) is covered by a small margin: :meth:`RateLimiter.for_server_limit`
applies ``const.RATE_SAFETY_MARGIN``.

The sliding-window guarantee (at most ``limit`` releases in any 1 s window)
needs ``burst=1``: after an idle period a bucket of ``burst`` tokens lets
``burst`` requests go back to back, and the window that holds them also holds
the ``rate - 1`` paced ones behind them. ``for_server_limit`` therefore
refuses any other burst.

With a ``pace`` (:class:`~.adaptive_pace.AdaptivePace`) the refill rate is
``rate * pace.factor()``: the server's 429/503 answers, fed back through
:meth:`RateLimiter.feedback`, slow the bucket down for a while. This bucket
holds for one process; ``pg_rate_limiter.py`` holds one quota for every
process of a deployment.
"""

import threading
import time

from .adaptive_pace import AdaptivePace
from .const import LATE_SLOT_TOLERANCE_S, RATE_SAFETY_MARGIN

# Float tolerance on the token count (refill arithmetic is not exact).
_EPSILON = 1e-9


def check_rate(rate):
    """``rate`` as a float, refused unless > 0."""
    rate = float(rate)
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    return rate


def paced_rate(limit, margin):
    """The pace that keeps a server-side ``limit``: ``limit * (1 - margin)``."""
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    return float(limit) * (1.0 - margin)


class RateLimiter:
    """Token bucket limiter; share one instance between clients to share a quota.

    :param rate: tokens per second (> 0)
    :param burst: bucket size, i.e. releases allowed back to back after an idle
        period (>= 1)
    :param clock: monotonic clock in seconds (injectable for tests)
    :param sleep: sleep function in seconds (injectable for tests)
    :param pace: an :class:`AdaptivePace` scaling the rate down, or None
    :param late_tolerance: seconds a send may leave after its release before
        :meth:`confirm` drops the release and waits for a new one
    """

    def __init__(
        self,
        rate,
        burst=1,
        *,
        clock=time.monotonic,
        sleep=time.sleep,
        pace=None,
        late_tolerance=LATE_SLOT_TOLERANCE_S,
    ):
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._rate = check_rate(rate)
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._pace = pace
        self._turnstile = threading.Lock()  # one waiter at a time
        self._state_lock = threading.Lock()  # tokens / timestamps
        self._tokens = self._burst
        self._updated = clock()
        self._released = 0
        self._late = float(late_tolerance)
        self._thread = threading.local()  # the release this thread holds
        self.dropped = 0  # releases lost to a late send (never reused)

    @classmethod
    def for_server_limit(
        cls, limit, *, margin=RATE_SAFETY_MARGIN, adaptive=True, **kwargs
    ):
        """Limiter that keeps a server-side limit of ``limit`` req/s.

        Paces at ``limit * (1 - margin)`` so that the delays between a
        release and the arrival (the client's own, at most
        ``const.LATE_SLOT_TOLERANCE_S`` with the send gate, then the
        network's and the server's) do not push an observed 1 s window over
        the limit (see ``const.RATE_SAFETY_MARGIN``), with ``burst=1`` (the only
        burst that keeps every 1 s window at the limit), and with an adaptive
        pace unless ``adaptive=False``.
        """
        rate = paced_rate(limit, margin)
        if kwargs.setdefault("burst", 1) != 1:
            raise ValueError("a server-side limit needs burst=1")
        if adaptive and kwargs.get("pace") is None:
            kwargs["pace"] = AdaptivePace(clock=kwargs.get("clock", time.monotonic))
        return cls(rate, **kwargs)

    @property
    def rate(self):
        return self._rate

    @property
    def burst(self):
        return int(self._burst)

    @property
    def released(self):
        """Number of tokens handed out so far."""
        return self._released

    @property
    def pace(self):
        return self._pace

    def pace_factor(self):
        """Fraction of ``rate`` the bucket refills at now (1 without a pace)."""
        return 1.0 if self._pace is None else self._pace.factor()

    def feedback(self, status, latency_s):
        """One answer of the server; True when it slowed the pace down."""
        return self._pace is not None and self._pace.feedback(status, latency_s)

    def _current_rate(self):
        return self._rate * self.pace_factor()

    def _refill(self, now):
        elapsed = now - self._updated
        if elapsed > 0:
            rate = self._current_rate()
            self._tokens = min(self._burst, self._tokens + elapsed * rate)
            self._updated = now

    def _try_take(self):
        """Take a token if one is there; else return the seconds to wait."""
        with self._state_lock:
            now = self._clock()
            self._refill(now)
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens -= 1.0
                self._released += 1
                self._thread.slot = now  # the send time this thread holds
                return 0.0
            return (1.0 - self._tokens) / self._current_rate()

    def try_acquire(self):
        """Take a token without waiting; return True when one was available."""
        if not self._turnstile.acquire(blocking=False):
            return False  # somebody is already waiting: they go first
        try:
            return self._try_take() == 0.0
        finally:
            self._turnstile.release()

    def acquire(self):
        """Block until a token is available, take it, return the seconds waited."""
        start = self._clock()
        with self._turnstile:
            while True:
                wait = self._try_take()
                if not wait:
                    return max(0.0, self._clock() - start)
                self._sleep(wait)

    def confirm(self):
        """At the send: keep this thread's release, or replace a stale one.

        Called right before the request's first byte is written. Returns
        None when the release is at most ``late_tolerance`` old (or this
        thread holds none); else the release is dropped (its token is spent:
        a gap, never a second send on it), a new one is waited for, and the
        seconds waited are returned. Either way the release is used up.
        """
        waited = None
        while True:
            slot = self._thread.__dict__.pop("slot", None)
            if slot is None or self._clock() - slot <= self._late:
                return waited
            with self._state_lock:
                self.dropped += 1
            waited = (waited or 0.0) + self.acquire()

    def __repr__(self):
        return f"RateLimiter(rate={self._rate:g}, burst={self.burst})"


_SHARED = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(key, make):
    """The limiter of this process registered under ``key``, made once by
    ``make()``: every run of one server or gateway in a process draws from
    the same bucket, so two jobs in a row never go faster together."""
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = _SHARED[key] = make()
        return limiter
