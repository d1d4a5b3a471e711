"""The deployment-wide limiter against a real PostgreSQL, with real processes.

A throwaway database is created on the local server (socket, trust auth) and
dropped afterwards; the tests are skipped where no server answers. Several
processes draw from one bucket; the checks are made on what they recorded:

* the slots (database times) every process used are all distinct and at least
  one spacing apart: exact, no timing margin involved;
* the local send times hold the limit in any sliding 1 s window; the margin
  for that is the one production uses (``RATE_SAFETY_MARGIN``: 30.9 ms of
  send-time jitter at any rate), nothing more.
"""

import multiprocessing
import os
import signal
import time
import uuid

import pytest

psycopg2 = pytest.importorskip("psycopg2")

from tools.adaptive_pace import PaceRule  # noqa: E402
from tools.const import RATE_SAFETY_MARGIN  # noqa: E402
from tools.pg_rate_limiter import (  # noqa: E402
    TABLE_DDL,
    LimiterUnavailable,
    PgRateLimiter,
)
from tools.sicantik_exceptions import (  # noqa: E402
    SicantikError,
    SicantikLimiterUnavailable,
)

LIMIT = 40  # req/s the "server" allows
SPACING = 1.0 / (LIMIT * (1 - RATE_SAFETY_MARGIN))
# Slot times are exact up to the float rounding of epoch seconds (~1 µs).
EXACT = 1e-5
JOIN_TIMEOUT = 60

CTX = multiprocessing.get_context("fork")


def max_in_window(times, width=1.0):
    """The most events inside one half-open window [t, t + width)."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= width:
            first += 1
        best = max(best, last - first + 1)
    return best


@pytest.fixture(scope="module")
def dbname():
    name = f"sicantik_limiter_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(dbname="postgres")
    except psycopg2.OperationalError as err:
        pytest.skip(f"no local PostgreSQL: {err}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg2.connect(dbname=name) as conn, conn.cursor() as cur:
            cur.execute(TABLE_DDL)
        conn.close()
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def key():
    return f"sicantik:test-{uuid.uuid4().hex[:8]}"


def connector(dbname):
    return lambda: psycopg2.connect(dbname=dbname)


def make(dbname, key, **kwargs):
    kwargs.setdefault("adaptive", False)
    return PgRateLimiter.for_server_limit(key, LIMIT, connector(dbname), **kwargs)


def draw(dbname, key, count, batch, sends, slots, done, started=None, **kw):
    """Process body: ``count`` acquires, each send recorded in shared memory
    at once (a SIGKILL loses nothing that was sent)."""
    limiter = make(dbname, key, batch=batch, **kw)
    for i in range(count):
        limiter.acquire()
        sends[i] = time.monotonic()
        slots[i] = limiter.last_slot
        done.value = i + 1
        if started is not None and i + 1 == 3:
            started.set()
    limiter.close()


def spawn(dbname, key, count, batch, started=None):
    sends = CTX.Array("d", count, lock=False)
    slots = CTX.Array("d", count, lock=False)
    done = CTX.Value("i", 0, lock=False)
    proc = CTX.Process(
        target=draw,
        args=(dbname, key, count, batch, sends, slots, done, started),
    )
    proc.start()
    return proc, sends, slots, done


def recorded(workers):
    sends, slots = [], []
    for _proc, s, sl, done in workers:
        sends += list(s[: done.value])
        slots += list(sl[: done.value])
    return sends, slots


def assert_slots_apart(slots):
    ordered = sorted(slots)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    assert min(gaps) >= SPACING - EXACT, "two sends shared a slot"


def test_several_processes_one_bucket_hold_the_limit_in_every_window(dbname, key):
    workers = [spawn(dbname, key, 30, batch) for batch in (1, 1, 3, 3)]
    for proc, *_ in workers:
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == 0
    sends, slots = recorded(workers)
    assert len(sends) == 120
    assert_slots_apart(slots)
    assert max_in_window(slots) <= LIMIT
    assert max_in_window(sends) <= LIMIT
    # 120 slots need 119 spacings: the processes together went no faster.
    assert max(sends) - min(sends) >= 119 * SPACING - RATE_SAFETY_MARGIN


def test_a_killed_holder_loses_its_slots_the_others_carry_on(dbname, key):
    started = CTX.Event()
    # The holder claims 5 slots ahead, so it holds unused slots when killed.
    holder = spawn(dbname, key, 200, batch=5, started=started)
    assert started.wait(JOIN_TIMEOUT)
    running = CTX.Event()
    others = [spawn(dbname, key, 25, 1, started=running), spawn(dbname, key, 25, 2)]
    assert running.wait(JOIN_TIMEOUT)  # the others draw while the holder holds
    os.kill(holder[0].pid, signal.SIGKILL)
    holder[0].join(JOIN_TIMEOUT)
    assert holder[0].exitcode == -signal.SIGKILL
    for proc, *_ in others:
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == 0
    assert [w[3].value for w in others] == [25, 25]
    sends, slots = recorded([holder, *others])
    assert_slots_apart(slots)  # no slot of the dead holder was spent twice
    assert max_in_window(sends) <= LIMIT


def test_a_broken_connection_is_reopened(dbname, key):
    limiter = make(dbname, key)
    limiter.acquire()
    first = limiter.last_slot
    pid = limiter._conn.get_backend_pid()
    with psycopg2.connect(dbname="postgres") as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    limiter.acquire()  # the dead connection fails, a new one claims
    assert limiter._conn.get_backend_pid() != pid
    assert limiter.last_slot - first >= SPACING - EXACT
    limiter.close()


def test_an_unreachable_database_means_waiting_never_sending(dbname, key):
    now = [0.0]
    attempts = []

    def down():
        attempts.append(now[0])
        raise psycopg2.OperationalError("connection refused")

    def sleep(seconds):
        now[0] += seconds

    limiter = PgRateLimiter(
        key,
        LIMIT,
        down,
        give_up_after=5.0,
        reconnect_pause=0.5,
        clock=lambda: now[0],
        sleep=sleep,
    )
    with pytest.raises(LimiterUnavailable):
        limiter.acquire()
    assert now[0] >= 5.0 and len(attempts) == 11  # tried every 0.5 s, then gave up

    # Down for a while, then back: the claim goes through after the outage.
    real = connector(dbname)
    calls = []

    def flaky():
        calls.append(now[0])
        if len(calls) <= 3:
            raise psycopg2.OperationalError("the database system is starting up")
        return real()

    limiter = PgRateLimiter(
        key, LIMIT, flaky, clock=lambda: now[0], sleep=sleep, reconnect_pause=0.5
    )
    start = now[0]
    assert limiter.acquire() >= 1.5  # three pauses of 0.5 s, no send meanwhile
    assert now[0] - start >= 1.5
    limiter.close()


def test_a_slow_down_is_shared_by_every_process(dbname, key):
    rule = PaceRule()
    one = PgRateLimiter(key, LIMIT, connector(dbname), rule=rule)
    two = PgRateLimiter(key, LIMIT, connector(dbname), rule=rule)
    one.acquire()
    two.acquire()
    assert one.feedback(429, 0.01) is True
    # The same storm seen by the other process: no second decrease.
    assert two.feedback(429, 0.01) is False
    two.acquire()  # learns the new pace from the row
    two.acquire()
    before = two.last_slot
    two.acquire()
    assert two.pace_factor() == pytest.approx(0.5, abs=0.01)
    assert two.last_slot - before >= 2 / LIMIT - EXACT
    assert (one.slowdowns, two.slowdowns) == (1, 0)
    one.close()
    two.close()


def test_an_unreachable_database_raises_the_families_typed_error(key):
    """The SICANTIK flavour is a system-scope, retryable SicantikError: the
    syncs stop, log it in staff words and try again later, never crash. Its
    text never repeats the driver's message (which may name the database)."""
    now = [0.0]

    def down():
        raise psycopg2.OperationalError('could not connect to "secretdb" as "odoo"')

    def sleep(seconds):
        now[0] += seconds

    limiter = PgRateLimiter(
        key,
        LIMIT,
        down,
        give_up_after=2.0,
        clock=lambda: now[0],
        sleep=sleep,
        unavailable=SicantikLimiterUnavailable,
    )
    with pytest.raises(SicantikError) as info:
        limiter.acquire()
    err = info.value
    assert isinstance(err, LimiterUnavailable)
    assert (err.failure_type, err.scope, err.retryable) == ("limiter", "system", True)
    assert "secretdb" not in str(err) and "OperationalError" in str(err)
    assert isinstance(err.__cause__, psycopg2.OperationalError)


class SkewedClock:
    """``time.monotonic()`` plus ``skew``: the test adds the time a
    connection took (DNS, TCP, TLS) without waiting for it."""

    def __init__(self):
        self.skew = 0.0

    def __call__(self):
        return time.monotonic() + self.skew


@pytest.mark.parametrize("batch", [1, 3])
def test_a_slot_stale_at_the_send_is_dropped_and_never_reused(dbname, key, batch):
    """The gate's check at the write (``confirm()``): a slot that went stale
    while the connection was opened is lost; the new one, and every slot any
    limiter of the bucket uses afterwards, is a distinct slot a spacing away.
    Exact: the slots are database times, no timing margin involved."""
    clock = SkewedClock()
    late = make(dbname, key, batch=batch, clock=clock)
    other = make(dbname, key, batch=batch)
    late.acquire()
    stale = late.last_slot
    clock.skew += 0.05  # the handshake took 50 ms: past the tolerance
    assert late.confirm() is not None  # dropped, a new slot waited for
    assert late.dropped >= 1
    assert late.confirm() is None  # used up: nothing held any more
    used = [late.last_slot]
    for limiter in (other, late, other, late, other):
        limiter.acquire()
        used.append(limiter.last_slot)
    assert stale not in used  # lost, never sent on
    assert_slots_apart([stale, *used])  # claimed once, like every slot
    if batch == 1:
        # every claim is one slot: used once, or dropped
        assert late.claims == 3 + late.dropped
    late.close()
    other.close()


class LateReader:
    """A connection whose next answer is read ``delay`` seconds after the
    database sent it: the process was descheduled in between (a busy
    machine), really, so both clocks moved on meanwhile."""

    def __init__(self, conn):
        self._conn = conn
        self.delay = 0.0

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):
        if name in ("autocommit",):
            setattr(self._conn, name, value)
        else:
            super().__setattr__(name, value)

    def cursor(self):
        reader = self

        class Cursor:
            def __init__(self, cur):
                self._cur = cur

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._cur.close()

            def execute(self, *args):
                return self._cur.execute(*args)

            def fetchone(self):
                row = self._cur.fetchone()
                delay, reader.delay = reader.delay, 0.0
                time.sleep(delay)  # the delay under test, not a wait for anything
                return row

        return Cursor(self._conn.cursor())


@pytest.fixture
def db_clock(dbname):
    """Reads the database's clock (epoch seconds) on a connection of its own."""
    conn = psycopg2.connect(dbname=dbname)
    conn.autocommit = True

    def read():
        with conn.cursor() as cur:
            cur.execute(
                "SELECT EXTRACT(EPOCH FROM clock_timestamp() AT TIME ZONE 'UTC')"
                "::float8"
            )
            return cur.fetchone()[0]

    yield read
    conn.close()


def test_a_claim_read_late_does_not_make_its_slots_late(dbname, key, db_clock):
    """A claim's answer read 200 ms after the database sent it must not move
    its slots 200 ms late on the database's clock (they would close up on the
    next process's slots, unseen by the late-slot checks): the clock offset
    comes from the quickest recent round trip, not the last one."""
    conns = []

    def connect():
        conns.append(LateReader(psycopg2.connect(dbname=dbname)))
        return conns[-1]

    limiter = PgRateLimiter.for_server_limit(key, LIMIT, connect, adaptive=False)
    limiter.acquire()
    assert 0 <= db_clock() - limiter.last_slot < 0.1
    conns[-1].delay = 0.2
    limiter.acquire()
    # Never early on the database's clock, and not late by the delay: the
    # slot the late answer brought is seen as stale (dropped), a new one used.
    assert 0 <= db_clock() - limiter.last_slot < 0.1
    assert limiter.dropped >= 1
    limiter.close()


def test_a_first_claim_read_late_is_corrected_by_a_clock_read(dbname, key, db_clock):
    """A process's first claim has no earlier round trip to compare with: one
    read late (a worker just started on a busy machine) is followed by a read
    of the database clock alone, and its slots are converted with that."""

    def connect():
        conn = LateReader(psycopg2.connect(dbname=dbname))
        conn.delay = 0.2  # the first answer (the claim) is read late
        return conn

    limiter = PgRateLimiter.for_server_limit(key, LIMIT, connect, adaptive=False)
    limiter.acquire()
    assert 0 <= db_clock() - limiter.last_slot < 0.1
    limiter.close()
