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

What the limiter cannot control is the delay between its release and the
request's arrival at the server (thread scheduling, network). Callers that must
stay under a server-side limit leave a small margin for that:
:meth:`RateLimiter.for_server_limit` applies ``const.RATE_SAFETY_MARGIN``.
"""

import threading
import time

from .const import RATE_SAFETY_MARGIN

# Float tolerance on the token count (refill arithmetic is not exact).
_EPSILON = 1e-9


class RateLimiter:
    """Token bucket limiter; share one instance between clients to share a quota.

    :param rate: tokens per second (> 0)
    :param burst: bucket size, i.e. releases allowed back to back after an idle
        period (>= 1)
    :param clock: monotonic clock in seconds (injectable for tests)
    :param sleep: sleep function in seconds (injectable for tests)
    """

    def __init__(self, rate, burst=1, *, clock=time.monotonic, sleep=time.sleep):
        rate = float(rate)
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._turnstile = threading.Lock()  # one waiter at a time
        self._state_lock = threading.Lock()  # tokens / timestamps
        self._tokens = self._burst
        self._updated = clock()
        self._released = 0

    @classmethod
    def for_server_limit(cls, limit, *, margin=RATE_SAFETY_MARGIN, **kwargs):
        """Limiter that keeps a server-side limit of ``limit`` req/s.

        Paces at ``limit * (1 - margin)`` so that arrival jitter between the
        client and the server does not push an observed 1 s window over the
        limit (see ``const.RATE_SAFETY_MARGIN``).
        """
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        return cls(float(limit) * (1.0 - margin), **kwargs)

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

    def _refill(self, now):
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._updated = now

    def _try_take(self):
        """Take a token if one is there; else return the seconds to wait."""
        with self._state_lock:
            self._refill(self._clock())
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens -= 1.0
                self._released += 1
                return 0.0
            return (1.0 - self._tokens) / self._rate

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
