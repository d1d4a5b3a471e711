"""One rate limit for every process of a deployment, kept in PostgreSQL.

All Odoo processes (workers, cron workers, several servers) share one
database, so the quota of a remote server lives there: one row per bucket in
``sicantik_rate_bucket`` (the Odoo model ``sicantik.rate.bucket`` creates the
table; :data:`TABLE_DDL` is the same table for tests without Odoo).

**Claiming (GCRA).** A request needs a *send time*. One statement, alone in
its autocommit transaction on the limiter's own connection, moves the row's
``next_at`` forward and returns it::

    next_at = GREATEST(next_at, now) + n * spacing

where ``now`` is the database's ``clock_timestamp()`` (processes on several
hosts agree on it) and ``spacing = 1 / (rate * pace)``. The ``n`` slots claimed
are ``next_at - n*spacing``, ``+ spacing``, ... : every slot handed out by the
row, to whatever process, is at least one ``spacing`` after the previous one,
so ``rate`` + 1 slots span at least ``rate * spacing`` >= 1 s divided by
``(1 - margin)``. The row lock lasts for that one statement; the caller
sleeps afterwards, outside any transaction.

**Converting to local time.** The statement also returns its clock,
``db_now``, read somewhere between the local times the statement was sent
(``asked``) and its answer read (``local``): the offset of the database clock
from the local monotonic one lies in ``[db_now - local, db_now - asked]``.
Slots are converted with a lower bound of that offset, so a send is never
early on the database's clock; it is late by the bound's error. A process
descheduled between the answer and reading its clock (a busy machine) makes
``db_now - local`` far too low, and every slot of that claim late by as much,
which would close them up on the next process's slots unseen by the late-slot
checks below. So the bound kept is the best of all claims, aged by the most a
clock may drift (``CLOCK_DRIFT``, as NTP slews at most 500 ppm): the error is
that of the quickest recent round trip, not of the last one. A slow claim
with no good bound yet (a process just started, on a machine busy starting
it) reads the database clock once more before converting its slots.

**Late sends.** A slot is only used between its time and
``LATE_SLOT_TOLERANCE_S`` after it, checked twice: when the thread wakes up
for it (:meth:`PgRateLimiter.acquire`), and when the request's first byte is
about to be written, after the connection was opened (DNS, TCP, TLS):
:meth:`PgRateLimiter.confirm`, called by ``http_guard.SendGate``. A slot
found late is dropped (lost, never reused) and a new one is taken, so a send
never closes up on the next slot by more than that tolerance.

**Claiming ahead** (``batch`` > 1) saves round trips. It does not change the
guarantee (every slot is a distinct time, used within the tolerance or
dropped). A process holds at most ``batch`` unused slots.

**Failures.** A killed process loses the slots it claimed (a gap on the
server, never a double spend: a slot exists only in the process that claimed
it). A statement that cannot reach the database is retried on a new
connection every ``LIMITER_RECONNECT_PAUSE_S``; meanwhile nothing is sent.
After ``LIMITER_UNREACHABLE_GIVE_UP_S`` :class:`~.api_errors.LimiterUnavailable`
(or the subclass given as ``unavailable``) is raised: the request is not sent.

**Adaptive pace.** The row also holds the AIMD state (``pace``, ``pace_at``,
``slowdowns``; see ``adaptive_pace.py``), so a 429 seen by one process slows
every process down. A decrease is a compare-and-set on ``slowdowns``: several
processes seeing the same 429 storm decrease once.
"""

import contextlib
import logging
import os
import threading
import time
from collections import deque

import psycopg2

from .adaptive_pace import CongestionSignal, PaceRule
from .api_errors import LimiterUnavailable
from .const import (
    LATE_SLOT_TOLERANCE_S,
    LIMITER_RECONNECT_PAUSE_S,
    LIMITER_STATEMENT_TIMEOUT_MS,
    LIMITER_UNREACHABLE_GIVE_UP_S,
    RATE_SAFETY_MARGIN,
)
from .rate_limiter import check_rate, paced_rate

_logger = logging.getLogger(__name__)

# A claim slower than this is followed by a read of the database clock alone,
# which bounds the clock offset better (see _probe_offset).
OFFSET_PROBE_ABOVE_S = 0.005
# The most two clocks may drift apart, in seconds per second (NTP's slew
# limit): how fast an old bound of the clock offset loses its worth.
CLOCK_DRIFT = 5e-4

TABLE = "sicantik_rate_bucket"

# What the limiter needs of the table (the Odoo model adds its usual columns).
TABLE_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id SERIAL PRIMARY KEY,
    key VARCHAR NOT NULL UNIQUE,
    next_at TIMESTAMP,
    pace DOUBLE PRECISION,
    pace_at TIMESTAMP,
    slowdowns INTEGER
)
"""

# The statements, written out (literal SQL only; times are naive UTC, as Odoo
# stores them). The claim creates the row on first use, else pushes next_at;
# the slow-down is a compare-and-set, so only the first process to report an
# event decreases the pace.
# Errors that mean "the database is not reachable now": retry, never send.
_UNREACHABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)


__all__ = ["TABLE", "TABLE_DDL", "LimiterUnavailable", "PgRateLimiter"]


class PgRateLimiter:
    """A limiter drawing from one bucket row that every process shares.

    :param key: the bucket, e.g. ``"sicantik:perizinan.karokab.go.id"``
    :param rate: sends per second (the pace the row spaces slots at)
    :param connect: callable returning a new psycopg2 connection to the
        database holding :data:`TABLE`; called again after a failure
    :param batch: slots claimed per statement (>= 1)
    :param rule: the :class:`~.adaptive_pace.PaceRule`, or None for a fixed pace
    :param clock: monotonic clock in seconds (injectable for tests)
    :param sleep: sleep function in seconds (injectable for tests)
    :param unavailable: the :class:`LimiterUnavailable` class to raise when
        the database stays unreachable (a client family's subclass)
    """

    def __init__(
        self,
        key,
        rate,
        connect,
        *,
        batch=1,
        rule=None,
        signal=None,
        late_tolerance=LATE_SLOT_TOLERANCE_S,
        give_up_after=LIMITER_UNREACHABLE_GIVE_UP_S,
        reconnect_pause=LIMITER_RECONNECT_PAUSE_S,
        clock=time.monotonic,
        sleep=time.sleep,
        unavailable=LimiterUnavailable,
    ):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch!r}")
        self.key = key
        self._rate = check_rate(rate)
        self._connect = connect
        self._batch = int(batch)
        self._rule = rule
        self._signal = (signal or CongestionSignal()) if rule else None
        self._late = float(late_tolerance)
        self._give_up_after = float(give_up_after)
        self._reconnect_pause = float(reconnect_pause)
        self._clock = clock
        self._sleep = sleep
        self._unavailable = unavailable
        self._lock = threading.Lock()  # connection, slots, pace view
        self._conn = None
        self._conn_pid = None
        self._slots = deque()  # (local time, db epoch) of claimed slots
        self._thread = threading.local()
        # The row's pace as last seen: base, changed_at (db), version, and
        # the db clock at a local time (to estimate the db clock later).
        self._pace_seen = (1.0, None, 0)
        self._db_offset = 0.0  # a lower bound of (db clock - local clock)
        self._offset_at = None  # local time that bound was last aged to
        self.claims = 0  # statements that claimed slots
        self.dropped = 0  # slots lost to a late wake-up or a late send
        self.slowdowns = 0  # decreases this process made
        self.lowest = 1.0

    @classmethod
    def for_server_limit(
        cls, key, limit, connect, *, margin=RATE_SAFETY_MARGIN, adaptive=True, **kw
    ):
        """Keeps a server-side limit of ``limit`` req/s in any 1 s window:
        slots ``1 / (limit * (1 - margin))`` apart (``const.RATE_SAFETY_MARGIN``)."""
        rate = paced_rate(limit, margin)
        if adaptive and kw.get("rule") is None:
            kw["rule"] = PaceRule()
        return cls(key, rate, connect, **kw)

    @property
    def rate(self):
        return self._rate

    # ------------------------------------------------------------------
    # The limiter protocol: acquire(), confirm(), feedback(), pace_factor()
    # ------------------------------------------------------------------
    def acquire(self):
        """Block until this process's next send time; return the seconds waited.

        Raises ``unavailable`` (:class:`LimiterUnavailable`) when the database stayed
        unreachable for ``give_up_after`` seconds (nothing may be sent then).
        """
        start = self._clock()
        while True:
            with self._lock:
                slot, db_slot = self._take_slot(start)
            wait = slot - self._clock()
            if wait > 0:
                self._sleep(wait)
            now = self._clock()
            if now - slot <= self._late:
                self._thread.slot = slot  # held until confirm() or the next one
                self._thread.last_slot = db_slot
                if _logger.isEnabledFor(logging.DEBUG):
                    # Here, not at confirm(): a log write must not come
                    # between the last check of the slot and the send.
                    _logger.debug(
                        "rate bucket %s: slot pid=%s slot=%.6f late_ms=%.2f",
                        self.key,
                        os.getpid(),
                        db_slot,
                        (now - slot) * 1000,
                    )
                return max(0.0, now - start)
            with self._lock:
                self.dropped += 1  # woke up too late: this slot is lost

    def confirm(self):
        """At the send: keep this thread's slot, or replace a stale one.

        Called right before the request's first byte is written, once the
        connection exists. Returns None when the slot is at most
        ``late_tolerance`` old (or this thread holds none); else the slot is
        dropped (lost: claimed by this process only, it is never handed out
        again), a new one is taken with :meth:`acquire` (which may raise
        ``unavailable``), and the seconds waited are returned. Either way
        the slot is used up.
        """
        waited = None
        while True:
            slot = self._thread.__dict__.pop("slot", None)
            if slot is None or self._clock() - slot <= self._late:
                return waited
            with self._lock:
                self.dropped += 1
            waited = (waited or 0.0) + self.acquire()

    @property
    def last_slot(self):
        """Database time (epoch s) of the slot the calling thread used last."""
        return getattr(self._thread, "last_slot", None)

    def pace_factor(self):
        """The shared pace as last seen, a fraction of ``rate`` in (0, 1]."""
        if self._rule is None:
            return 1.0
        with self._lock:
            base, changed_at, _version = self._pace_seen
            return self._rule.factor(base, changed_at, self._db_now())

    def feedback(self, status, latency_s):
        """One answer of the server; True when this process slowed the bucket."""
        if self._rule is None or not self._signal.observe(status, latency_s):
            return False
        with self._lock:
            base, changed_at, version = self._pace_seen
            now = self._db_now()
            if not self._rule.may_decrease(changed_at, now):
                return False
            pace = self._rule.decreased(base, changed_at, now)
            params = {
                "key": self.key,
                "pace": pace,
                "seen": version,
                "hold": self._rule.hold_s,
            }
            try:
                with self._statement() as cur:
                    cur.execute(
                        """
                        UPDATE sicantik_rate_bucket
                           SET pace = %(pace)s,
                               pace_at = clock_timestamp() AT TIME ZONE 'UTC',
                               slowdowns = COALESCE(slowdowns, 0) + 1
                         WHERE key = %(key)s
                           AND COALESCE(slowdowns, 0) = %(seen)s
                           AND (pace_at IS NULL
                                OR pace_at <= clock_timestamp() AT TIME ZONE 'UTC'
                                              - %(hold)s * INTERVAL '1 second')
                        RETURNING slowdowns
                        """,
                        params,
                    )
                    row = cur.fetchone()
            except _UNREACHABLE as err:
                # The pace is advice; the spacing of slots does not depend on it.
                _logger.warning(
                    "rate bucket %s: slow-down not stored (%s)", self.key, err
                )
                return False
            if row is None:
                return False  # another process already slowed down for this
            self._pace_seen = (pace, now, row[0])
            self._slots.clear()  # claimed at the old pace: too close together
            self.slowdowns += 1
            self.lowest = min(self.lowest, pace)
            return True

    def close(self):
        with self._lock:
            self._drop_connection()

    def __repr__(self):
        return f"PgRateLimiter({self.key!r}, rate={self._rate:g}, batch={self._batch})"

    # ------------------------------------------------------------------
    # Slots
    # ------------------------------------------------------------------
    def _take_slot(self, start):
        """The next usable slot (local time); claims when none is left."""
        now = self._clock()
        while self._slots and self._slots[0][0] < now - self._late:
            self._slots.popleft()
            self.dropped += 1
        if not self._slots:
            self._claim(start)
        return self._slots.popleft()

    def _claim(self, start):
        """Claim ``batch`` slots in one statement, retrying while the database
        is unreachable (no slot, no send, until it answers or we give up)."""
        spacing = 1.0 / (self._rate * self._current_factor())
        params = {"key": self.key, "span": self._batch * spacing}
        while True:
            asked = self._clock()
            try:
                with self._statement() as cur:
                    cur.execute(
                        """
                        INSERT INTO sicantik_rate_bucket AS b
                               (key, next_at, pace, slowdowns)
                        VALUES (%(key)s,
                                (clock_timestamp() AT TIME ZONE 'UTC')
                                + %(span)s * INTERVAL '1 second',
                                1.0, 0)
                        ON CONFLICT (key) DO UPDATE
                           SET next_at = GREATEST(
                                   b.next_at, clock_timestamp() AT TIME ZONE 'UTC'
                               ) + %(span)s * INTERVAL '1 second'
                        RETURNING
                            EXTRACT(EPOCH FROM b.next_at)::float8,
                            EXTRACT(EPOCH FROM clock_timestamp() AT TIME ZONE 'UTC')
                                ::float8,
                            COALESCE(b.pace, 1.0),
                            EXTRACT(EPOCH FROM b.pace_at)::float8,
                            COALESCE(b.slowdowns, 0)
                        """,
                        params,
                    )
                    row = cur.fetchone()
                break
            except _UNREACHABLE as err:
                waited = self._clock() - start
                if waited >= self._give_up_after:
                    raise self._unavailable(
                        f"rate bucket {self.key}: database unreachable for "
                        f"{waited:.0f} s ({type(err).__name__})"
                    ) from err
                _logger.warning(
                    "rate bucket %s: database unreachable (%s), waiting", self.key, err
                )
                self._sleep(self._reconnect_pause)
        local = self._clock()
        next_at, db_now, base, changed_at, version = row
        if _logger.isEnabledFor(logging.DEBUG):
            _logger.debug(
                "rate bucket %s: claim pid=%s db_now=%.6f round_trip_ms=%.2f",
                self.key,
                os.getpid(),
                db_now,
                (local - asked) * 1000,
            )
        self._learn_offset(db_now, asked, local)
        if local - asked > OFFSET_PROBE_ABOVE_S:
            self._probe_offset()
        self._pace_seen = (base, changed_at, version)
        if self._rule is not None:
            self.lowest = min(self.lowest, self._rule.factor(base, changed_at, db_now))
        first = next_at - self._batch * spacing
        for k in range(self._batch):
            slot = first + k * spacing
            self._slots.append((slot - self._db_offset, slot))
        self.claims += 1

    def _probe_offset(self):
        """A slow claim (a process just started, or descheduled on a busy
        machine) gives a poor bound of the clock offset: read the database
        clock again, alone, to tighten it before its slots are converted."""
        asked = self._clock()
        try:
            with self._statement() as cur:
                cur.execute(
                    "SELECT EXTRACT(EPOCH FROM clock_timestamp() AT TIME ZONE 'UTC')"
                    "::float8"
                )
                (db_now,) = cur.fetchone()
        except _UNREACHABLE:
            return  # the claim's own bound stands: late sends, never early
        self._learn_offset(db_now, asked, self._clock())

    def _learn_offset(self, db_now, asked, local):
        """Keep the best lower bound of the clock offset, given a statement
        sent at ``asked`` and answered by ``local`` that read ``db_now``: it
        bounds the offset to ``[db_now - local, db_now - asked]``; the last
        bound, aged by ``CLOCK_DRIFT``, stays if it is higher and possible."""
        low, high = db_now - local, db_now - asked
        if self._offset_at is not None:
            aged = self._db_offset - CLOCK_DRIFT * (local - self._offset_at)
            if low < aged <= high:
                low = aged
        self._db_offset, self._offset_at = low, local

    def _current_factor(self):
        if self._rule is None:
            return 1.0
        base, changed_at, _version = self._pace_seen
        return self._rule.factor(base, changed_at, self._db_now())

    def _db_now(self):
        return self._clock() + self._db_offset

    # ------------------------------------------------------------------
    # Connection: one per limiter and process, autocommit, reopened on failure
    # ------------------------------------------------------------------
    @contextlib.contextmanager
    def _statement(self):
        """A cursor for one statement, alone in its autocommit transaction;
        a broken connection is dropped (the next statement opens a new one)."""
        try:
            with self._connection().cursor() as cur:
                yield cur
        except _UNREACHABLE:
            self._drop_connection()
            raise

    def _connection(self):
        if self._conn_pid != os.getpid():
            # Inherited through fork: the socket is the parent's, leave it be.
            self._conn = None
        if self._conn is None or self._conn.closed:
            conn = self._connect()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SET statement_timeout = %s; SET lock_timeout = %s",
                    (LIMITER_STATEMENT_TIMEOUT_MS, LIMITER_STATEMENT_TIMEOUT_MS),
                )
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    def _drop_connection(self):
        conn, self._conn = self._conn, None
        if conn is not None and self._conn_pid == os.getpid() and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error as err:
                _logger.debug(
                    "rate bucket %s: closing a broken connection: %s", self.key, err
                )
