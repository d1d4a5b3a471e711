"""Adaptive pace (AIMD): slow down when the server pushes back, then recover.

The pace is a fraction of the configured rate, between ``PACE_FLOOR`` and 1.
A congestion signal (an HTTP 429 or 503, or a latency that climbed well above
its usual level) multiplies it by ``PACE_DECREASE``; afterwards it holds for
``PACE_HOLD_S`` and then grows back by ``PACE_RECOVERY_PER_S`` every second
(additive increase, multiplicative decrease). The answers still in flight when
the first 429 arrives are part of the same event: one decrease per hold period.

The state is two numbers, ``base`` (the pace set by the last decrease) and
``changed_at`` (when), so it can live in a database row shared by processes:
:class:`PaceRule` holds the arithmetic, :class:`CongestionSignal` reads the
answers of one process, :class:`AdaptivePace` combines both for one process.
The pace never raises the configured rate, so it never weakens the limiter's
guarantee.
"""

import threading
import time

from .const import (
    CONGESTION_STATUSES,
    LATENCY_CLIMB_FACTOR,
    LATENCY_CLIMB_MIN_S,
    PACE_DECREASE,
    PACE_FLOOR,
    PACE_HOLD_S,
    PACE_RECOVERY_PER_S,
)

# Smoothing of the latency average, and how fast its "usual level" follows a
# lasting change (so a server that got slower for good is not punished forever).
_LATENCY_ALPHA = 0.2
_BASELINE_DRIFT = 0.01
_LATENCY_WARMUP = 5


class PaceRule:
    """The AIMD arithmetic on a ``(base, changed_at)`` state (pure functions)."""

    def __init__(
        self,
        *,
        floor=PACE_FLOOR,
        decrease=PACE_DECREASE,
        recovery_per_s=PACE_RECOVERY_PER_S,
        hold_s=PACE_HOLD_S,
    ):
        if not 0 < floor <= 1 or not 0 < decrease < 1:
            raise ValueError("floor must be in (0, 1] and decrease in (0, 1)")
        if recovery_per_s < 0 or hold_s < 0:
            raise ValueError("recovery_per_s and hold_s must be >= 0")
        self.floor = float(floor)
        self.decrease = float(decrease)
        self.recovery_per_s = float(recovery_per_s)
        self.hold_s = float(hold_s)

    def factor(self, base, changed_at, now):
        """The pace at ``now``: ``base`` after a decrease, growing back to 1."""
        if changed_at is None:
            return min(1.0, base)
        grown = self.recovery_per_s * max(0.0, now - changed_at - self.hold_s)
        return max(self.floor, min(1.0, base + grown))

    def may_decrease(self, changed_at, now):
        """False within the hold period of the last decrease (same event)."""
        return changed_at is None or now - changed_at >= self.hold_s

    def decreased(self, base, changed_at, now):
        """The new ``base`` after a congestion signal at ``now``."""
        return max(self.floor, self.factor(base, changed_at, now) * self.decrease)


class CongestionSignal:
    """Reads answers: 429/503, or a latency that keeps climbing.

    The latency signal compares a moving average with its usual level (the
    lowest average seen, drifting slowly towards the current one): more than
    ``LATENCY_CLIMB_FACTOR`` times it and ``LATENCY_CLIMB_MIN_S`` above it is
    congestion. Network errors (no status) are not a pace signal.
    """

    def __init__(
        self, *, climb_factor=LATENCY_CLIMB_FACTOR, climb_min_s=LATENCY_CLIMB_MIN_S
    ):
        self._lock = threading.Lock()
        self.climb_factor = climb_factor
        self.climb_min_s = climb_min_s
        self._average = None
        self._usual = None
        self._samples = 0

    def observe(self, status, latency_s):
        """Record one answer; True when it says "slow down"."""
        if status in CONGESTION_STATUSES:
            return True
        if status is None or latency_s is None or not 200 <= status < 300:
            return False
        with self._lock:
            self._samples += 1
            if self._average is None:
                self._average = latency_s
            else:
                self._average += _LATENCY_ALPHA * (latency_s - self._average)
            average = self._average
            if self._samples < _LATENCY_WARMUP:
                return False
            if self._usual is None or average < self._usual:
                self._usual = average
            else:
                self._usual += _BASELINE_DRIFT * (average - self._usual)
            usual = self._usual
        return (
            average > usual * self.climb_factor and average - usual > self.climb_min_s
        )


class AdaptivePace:
    """AIMD pace of one process (the in-process limiter's).

    :param clock: monotonic clock in seconds (injectable for tests)
    """

    def __init__(self, rule=None, signal=None, *, clock=time.monotonic):
        self.rule = rule or PaceRule()
        self.signal = signal or CongestionSignal()
        self._clock = clock
        self._lock = threading.Lock()
        self._base = 1.0
        self._changed_at = None
        self.slowdowns = 0
        self.lowest = 1.0

    def factor(self):
        """Current pace, a fraction of the configured rate in (0, 1]."""
        with self._lock:
            return self.rule.factor(self._base, self._changed_at, self._clock())

    def feedback(self, status, latency_s):
        """One answer; True when it made the pace go down."""
        if not self.signal.observe(status, latency_s):
            return False
        with self._lock:
            now = self._clock()
            if not self.rule.may_decrease(self._changed_at, now):
                return False
            self._base = self.rule.decreased(self._base, self._changed_at, now)
            self._changed_at = now
            self.slowdowns += 1
            self.lowest = min(self.lowest, self._base)
            return True

    def __repr__(self):
        return f"AdaptivePace(factor={self.factor():.2f}, slowdowns={self.slowdowns})"
